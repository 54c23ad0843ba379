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
    "capacity.py",
    "policy.py",
    "rtmp",
    "mpegts.py",
    "hls.py",
    "timecode.py",
    "rts/h264.py",
    "rts/whep.py",
}
FORBIDDEN_EVERYWHERE = {"django"}
FORBIDDEN_IN_PURE = {"asyncio", "socket", "time", "av", "django", "selectors"}


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_it_keeps_django_out_of_the_engine():
    offenders = {p.name: imported_roots(p) & FORBIDDEN_EVERYWHERE for p in MEDIA.rglob("*.py")}
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
    for path in files:
        assert not imported_roots(path) & FORBIDDEN_IN_PURE, path.relative_to(MEDIA)
