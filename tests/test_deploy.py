"""deploy/ (README "Several machines"): the systemd units read the example
environment files, every variable those set is one the code reads, and the
media node's command line, filled from them, is one `manage.py medianode`
takes."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from nodes.management.commands.medianode import Command as MediaNodeCommand

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
UNITS = sorted(DEPLOY.glob("*.service"))
EXAMPLES = sorted(DEPLOY.glob("*.env.example"))
# A variable set in an example, or shown commented out as one to set.
ASSIGNMENT = re.compile(r"^#?([A-Z][A-Z0-9_]*)=(.*)$", re.M)


def example_values(example: Path) -> dict[str, str]:
    return {name: value for name, value in ASSIGNMENT.findall(example.read_text())}


def unit_entries(unit: Path, key: str) -> list[str]:
    return [line.split("=", 1)[1] for line in unit.read_text().splitlines() if line.startswith(f"{key}=")]


def test_there_are_the_units_the_readme_names():
    readme = (ROOT / "README.md").read_text()
    names = {unit.name for unit in UNITS}
    assert names == {"livecenter-console.service", "livecenter-medianode.service", "livecenter-worker.service",
                     "livecenter-beat.service"}  # fmt: skip
    assert all(name in readme or name.removesuffix(".service") in readme for name in names)


@pytest.mark.parametrize("unit", UNITS, ids=lambda unit: unit.name)
def test_each_unit_reads_environment_files_deploy_has_an_example_of(unit):
    files = unit_entries(unit, "EnvironmentFile")
    assert files and files[0] == "/etc/livecenter/livecenter.env"
    for path in files:
        assert path.startswith("/etc/livecenter/")
        assert (DEPLOY / (Path(path).name + ".example")).exists(), path


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda example: example.name)
def test_every_variable_an_example_sets_is_read_by_the_settings(example):
    settings_source = (ROOT / "livecenter" / "settings.py").read_text()
    names = example_values(example)
    assert names
    unread = [name for name in names if f'"{name}"' not in settings_source]
    assert not unread, f"{example.name} sets what livecenter/settings.py never reads: {unread}"


def test_the_media_node_units_command_line_is_one_medianode_takes():
    [exec_start] = unit_entries(DEPLOY / "livecenter-medianode.service", "ExecStart")
    env = example_values(DEPLOY / "livecenter.env.example") | example_values(DEPLOY / "medianode.env.example")
    argv = shlex.split(re.sub(r"\$\{(\w+)\}", lambda m: env[m.group(1)], exec_start))
    assert argv[:3] == ["/opt/livecenter/.venv/bin/python", "manage.py", "medianode"]
    options = MediaNodeCommand().create_parser("manage.py", "medianode").parse_args(argv[3:])
    assert (options.role, options.region, options.advertise) == (
        env["LIVECENTER_NODE_ROLE"], env["LIVECENTER_NODE_REGION"], env["LIVECENTER_MEDIA_INTERNAL_HOST"]
    )  # fmt: skip
