"""DESIGN.md: the engine never imports Django; its protocol modules are pure."""

import ast
from pathlib import Path

MEDIA = Path(__file__).resolve().parent.parent / "livecenter" / "media"
# Modules that must stay pure (sans-IO): no event loop, sockets, clock or codecs.
# A package (a folder) stands for every module in it.
PURE_MODULES = {
    "signing.py",
    "amf0.py",
    "flv.py",
    "codecs.py",
    "admission.py",
    "policy.py",
    "rtmp",
    "mpegts.py",
    "hls.py",
    "timecode.py",
    "rts/h264.py",
    "rts/whep.py",
    "liveurl.py",
    "redact.py",
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
