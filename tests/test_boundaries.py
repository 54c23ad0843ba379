"""DESIGN.md: the engine never imports Django; its protocol modules are pure."""

import ast
from pathlib import Path

MEDIA = Path(__file__).resolve().parent.parent / "livecenter" / "media"
# Modules that must stay pure (sans-IO): no event loop, sockets, clock or codecs.
# A package (a folder) stands for every module in it.
PURE_MODULES = {
    "signing.py",
    "access.py",
    "amf0.py",
    "flv.py",
    "gop.py",
    "codecs.py",
    "admission.py",
    "capacity.py",
    "cluster.py",
    "policy.py",
    "rtmp",
    "mpegts.py",
    "mpegts_demux.py",
    "hls.py",
    "hls_crypto.py",
    "timecode.py",
    "rts/h264.py",
    "rts/whep.py",
    "rts/fastpath.py",
    "rts/assembly.py",
    "rts/bitrate.py",
    "avc_flv.py",
    "rts/srtp.py",
    "liveurl.py",
    "redact.py",
    "tls_hello.py",
    "webhooks.py",
    "beacon.py",
    "srt",
}
FORBIDDEN_EVERYWHERE = {"django"}
# Sans-IO means no threads and no WebRTC stack either: those belong to the
# session code that drives the protocol modules.
FORBIDDEN_IN_PURE = {
    "asyncio",
    "socket",
    "time",
    "av",
    "django",
    "selectors",
    "threading",
    "concurrent",
    "multiprocessing",
    "aiortc",
    "aioice",
}


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_it_keeps_django_out_of_the_engine():
    # Keyed by the path inside the engine: three packages have an __init__.py.
    offenders = {str(p.relative_to(MEDIA)): imported_roots(p) & FORBIDDEN_EVERYWHERE for p in MEDIA.rglob("*.py")}
    assert len(offenders) == len(list(MEDIA.rglob("*.py")))
    assert not {k: v for k, v in offenders.items() if v}


def pure_files() -> list[Path]:
    files = []
    for name in PURE_MODULES:
        path = MEDIA / name
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return files


def test_it_keeps_protocol_modules_pure():
    files = pure_files()
    assert MEDIA / "rtmp" / "connection.py" in files
    offenders = {str(p.relative_to(MEDIA)): imported_roots(p) & FORBIDDEN_IN_PURE for p in files}
    assert not {k: v for k, v in offenders.items() if v}


def test_it_sees_a_forbidden_import(tmp_path):
    module = tmp_path / "bad.py"
    module.write_text(
        "import threading\nfrom concurrent.futures import ThreadPoolExecutor\nfrom aiortc import RTCPeerConnection\n"
    )
    assert imported_roots(module) & FORBIDDEN_IN_PURE == {"threading", "concurrent", "aiortc"}


# DESIGN.md "The parts": the console's apps import one way, node side →
# callbacks → media workers → streams → domains; monitoring reads streams and domains,
# and callbacks tells its alarms (monitoring/signals.py).
# A lower app tells a higher one through a signal the higher one connects in
# its AppConfig.ready() (streams/signals.py), never by importing it.
ROOT = MEDIA.parent.parent
APP_MAY_IMPORT = {
    "domains": set(),
    "streams": {"domains"},
    "mediajobs": {"streams", "domains"},
    "monitoring": {"streams", "domains"},
    "callbacks": {"mediajobs", "monitoring", "streams", "domains"},
    "nodes": {"callbacks", "mediajobs", "streams", "domains", "monitoring"},
}


def arrows_against_the_layers(root: Path) -> dict[str, set[str]]:
    """For each module of an app, the apps it imports but may not; function-level
    imports count too (ast.walk sees every statement)."""
    offenders = {}
    for app, allowed in APP_MAY_IMPORT.items():
        for path in sorted((root / app).rglob("*.py")):
            bad = (imported_roots(path) & set(APP_MAY_IMPORT)) - allowed - {app}
            if bad:
                offenders[str(path.relative_to(root))] = bad
    return offenders


def test_it_keeps_the_apps_imports_one_way():
    assert all((ROOT / app / "apps.py").exists() for app in APP_MAY_IMPORT)
    assert arrows_against_the_layers(ROOT) == {}


def test_it_sees_an_import_against_the_layers_inside_a_function(tmp_path):
    (tmp_path / "streams").mkdir()
    (tmp_path / "streams" / "services.py").write_text(
        "from domains.models import Domain\n\n\ndef forbid():\n    from nodes import control\n"
    )
    (tmp_path / "domains").mkdir()
    (tmp_path / "domains" / "views.py").write_text("import streams.views\n")
    assert arrows_against_the_layers(tmp_path) == {"streams/services.py": {"nodes"}, "domains/views.py": {"streams"}}


# Issue 12, "written once": a helper one app needs from another has one public
# home (livecenter/lib/ or a public name in the owning app), so no app reaches
# for another's leading-underscore names, by `from x import _y` or `x._y`.
PACKAGES = set(APP_MAY_IMPORT) | {"accounts", "livecenter"}


def is_module(root: Path, dotted: str) -> bool:
    path = root.joinpath(*dotted.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def private_names_from_other_packages(root: Path) -> dict[str, set[str]]:
    """For each module of a package, the `module._name`s it takes from another
    package; a name bound to another package's module counts when used as `m._x`."""
    offenders = {}
    for package in sorted(PACKAGES):
        for path in sorted((root / package).rglob("*.py")):
            tree = ast.parse(path.read_text())
            foreign = {}  # local name -> the other package's module it is bound to
            found = set()
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    if node.module.split(".")[0] not in PACKAGES - {package}:
                        continue
                    for alias in node.names:
                        full = f"{node.module}.{alias.name}"
                        if alias.name.startswith("_") and not alias.name.startswith("__"):
                            found.add(full)
                        elif is_module(root, full):
                            foreign[alias.asname or alias.name] = full
                elif isinstance(node, ast.Import):
                    for alias in node.names:
                        if alias.name.split(".")[0] in PACKAGES - {package}:
                            bound = alias.asname or alias.name.split(".")[0]
                            foreign[bound] = alias.name if alias.asname else bound
            for node in ast.walk(tree):
                if not (isinstance(node, ast.Attribute) and node.attr.startswith("_")):
                    continue
                if node.attr.startswith("__"):
                    continue
                chain, base = [], node.value
                while isinstance(base, ast.Attribute):
                    chain.insert(0, base.attr)
                    base = base.value
                if isinstance(base, ast.Name) and base.id in foreign:
                    found.add(".".join([foreign[base.id], *chain, node.attr]))
            if found:
                offenders[str(path.relative_to(root))] = found
    return offenders


def test_it_keeps_each_apps_private_names_to_itself():
    assert private_names_from_other_packages(ROOT) == {}


def test_it_sees_a_private_name_taken_from_another_app(tmp_path):
    for package in PACKAGES:
        (tmp_path / package).mkdir()
    (tmp_path / "streams" / "services.py").write_text("def _name():\n    pass\n")
    (tmp_path / "streams" / "views.py").write_text("from .services import _name\nfrom . import services\n")
    (tmp_path / "monitoring" / "services.py").write_text(
        "from streams.services import _name\nfrom streams.models import Stream\n\nStream._meta\n"
    )
    (tmp_path / "mediajobs" / "views.py").write_text(
        "import streams.services\nfrom streams import services as s\n\n"
        "def f():\n    return streams.services._name(), s._name(), s.__name__\n"
    )
    assert private_names_from_other_packages(tmp_path) == {
        "monitoring/services.py": {"streams.services._name"},
        "mediajobs/views.py": {"streams.services._name"},
    }
