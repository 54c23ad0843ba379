"""DESIGN.md: the engine never imports Django; its protocol modules are pure."""

import ast
from pathlib import Path

MEDIA = Path(__file__).resolve().parent.parent / "livecenter" / "media"
# Modules that must stay pure (sans-IO): no event loop, sockets, clock or codecs.
PURE_MODULES = {"signing.py"}
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


def test_it_keeps_protocol_modules_pure():
    for name in PURE_MODULES:
        assert not imported_roots(MEDIA / name) & FORBIDDEN_IN_PURE, name
