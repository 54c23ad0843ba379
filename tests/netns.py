"""Network namespaces for the tests that cross a network (issues 13 and 14).

`Network(["center", "edge-a", "edge-b"])` makes one namespace per host, each
with `lo` up and an `eth0` whose other end sits on a bridge in the root
namespace. The hosts share a /24 of their own (10.64.0.0–10.127.255.0, picked
from the pid so parallel pytest-xdist workers do not collide, and never one
this machine already routes); host i is .i+1, the root namespace is .254
(`network.gateway`), so a relay in the root namespace or in a host reaches
every host and can sit between two of them.

Everything is named `lc-<id>…` (namespaces `lc-<id>-<host>`, bridge
`lc-<id>`, root ends of the veth pairs `lc-<id>-<n>`) and removed on close,
also when the test fails. A run registers itself under REGISTRY_DIR before it
makes anything; `cleanup_stale()` (run on every start) removes what runs that
are no longer alive left behind.

    with Network(["a", "b"]) as net:
        net.run("a", ["ping", "-c1", net.address("b")])
        proc = net.popen("b", [sys.executable, "-m", "tests.netimpair", ...])
        with net.enter("a"):
            sock = socket.socket(...)  # this socket lives in namespace a

The `netns` pytest fixture (a factory) skips the test with the reason when
namespaces cannot be made (not root, no iproute2, `ip netns add` refused).
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

PREFIX = "lc-"
REGISTRY_DIR = Path("/run/livecenter-netns")
NETNS_DIR = Path("/run/netns")
# 10.64.0.0/10: 16384 /24s to pick from.
SUBNET_POOL = ipaddress.IPv4Network("10.64.0.0/10")
HOST_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,19}$")
RUN_ID = re.compile(r"^[0-9a-f]{6}$")
COMMAND_SECONDS = 20
STOP_SECONDS = 5
CLONE_NEWNET = 0x40000000

_libc = ctypes.CDLL(None, use_errno=True)
_counter = 0


class NetnsUnavailable(RuntimeError):
    """Namespaces cannot be made here; the message is the reason."""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=COMMAND_SECONDS)
    if check and result.returncode != 0:
        raise subprocess.CalledProcessError(result.returncode, ["ip", *args], result.stdout, result.stderr)
    return result


def check_available() -> None:
    """Raise NetnsUnavailable with the reason when namespaces cannot be made."""
    if not sys.platform.startswith("linux"):
        raise NetnsUnavailable("network namespaces are Linux only")
    if os.geteuid() != 0:
        raise NetnsUnavailable("network namespaces need root (CI runs as root)")
    if shutil.which("ip") is None:
        raise NetnsUnavailable("iproute2 `ip` is not installed")


# -- entering a namespace from Python


def enter_netns(name: str) -> None:
    """Move the calling thread into namespace `name` (sockets it makes from
    now on live there). Other threads are not affected."""
    _setns_path(NETNS_DIR / name)


def _setns_path(path: Path | str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"setns({path}): {os.strerror(errno)}")
    finally:
        os.close(fd)


@contextlib.contextmanager
def in_netns(name: str) -> Iterator[None]:
    """The calling thread in namespace `name` for the block, then back."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        enter_netns(name)
        try:
            yield
        finally:
            if _libc.setns(own, CLONE_NEWNET) != 0:  # pragma: no cover - would leave the thread astray
                raise OSError(ctypes.get_errno(), "setns back to the original namespace failed")
    finally:
        os.close(own)


# -- leftovers of runs that died


def _process_start(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 22 (starttime), counted after the ")" that closes the command name.
    return stat.rsplit(")", 1)[1].split()[19]


def _namespaces() -> list[str]:
    result = _ip("netns", "list", check=False)
    return [line.split()[0] for line in result.stdout.splitlines() if line.strip()]


def _links() -> list[str]:
    result = _ip("-j", "link", "show", check=False)
    try:
        return [link["ifname"] for link in json.loads(result.stdout or "[]")]
    except ValueError:
        return []


def _run_of(name: str) -> str | None:
    """The run id in an `lc-<id>…` name, or None for a name not ours."""
    if not name.startswith(PREFIX):
        return None
    run_id = name[len(PREFIX) : len(PREFIX) + 6]
    rest = name[len(PREFIX) + 6 :]
    if RUN_ID.match(run_id) and (rest == "" or rest.startswith("-")):
        return run_id
    return None


def remove_run(run_id: str) -> None:
    """Remove every namespace and link of run `run_id` and its registration."""
    for ns in _namespaces():
        if _run_of(ns) == run_id:
            pids = _ip("netns", "pids", ns, check=False).stdout.split()
            for pid in pids:
                # Only processes inside this run's namespace: a test started them.
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            _ip("netns", "del", ns, check=False)
    for link in _links():
        name = link.split("@", 1)[0]
        if _run_of(name) == run_id:
            _ip("link", "del", name, check=False)
    with contextlib.suppress(FileNotFoundError):
        (REGISTRY_DIR / run_id).unlink()


def _alive(run_id: str) -> bool:
    """Whether run `run_id` is registered by a process still running."""
    try:
        pid_text, start = (REGISTRY_DIR / run_id).read_text().split()
        return _process_start(int(pid_text)) == start
    except (OSError, ValueError):
        return False


def cleanup_stale() -> list[str]:
    """Remove what runs no longer alive left behind; return their ids."""
    candidates = {entry.name for entry in REGISTRY_DIR.iterdir()} if REGISTRY_DIR.is_dir() else set()
    # A name of ours with no live registration is a leftover too.
    for name in _namespaces() + [link.split("@", 1)[0] for link in _links()]:
        run_id = _run_of(name)
        if run_id is not None:
            candidates.add(run_id)
    stale = []
    for run_id in sorted(candidates):
        # Decided now, after the names were listed: a run registers before it
        # makes anything, so one that started meanwhile is seen alive here.
        if _alive(run_id):
            continue
        stale.append(run_id)
        if RUN_ID.match(run_id):
            remove_run(run_id)
        else:
            with contextlib.suppress(OSError):
                (REGISTRY_DIR / run_id).unlink()
    return stale


# -- the network


class Network:
    """Hosts in namespaces of their own on one bridge; see the module docstring."""

    def __init__(self, hosts: Sequence[str] = ("a", "b")) -> None:
        if len(set(hosts)) != len(hosts) or not 1 <= len(hosts) <= 200:
            raise ValueError("hosts must be 1 to 200 distinct names")
        for host in hosts:
            if not HOST_NAME.match(host):
                raise ValueError(f"host name {host!r}: lowercase letters, digits and '-', at most 20")
        self.hosts = list(hosts)
        self.id = secrets.token_hex(3)
        self.bridge = f"{PREFIX}{self.id}"
        self.subnet: ipaddress.IPv4Network | None = None
        self._processes: list[subprocess.Popen] = []
        self._open = False

    # names and addresses

    def netns(self, host: str) -> str:
        """The namespace name of `host`."""
        self._index(host)
        return f"{PREFIX}{self.id}-{host}"

    def address(self, host: str) -> str:
        return str(self.subnet.network_address + self._index(host) + 1)

    @property
    def gateway(self) -> str:
        """The root namespace's address on the bridge."""
        return str(self.subnet.network_address + 254)

    def veth(self, host: str) -> str:
        """The root-namespace end of `host`'s veth pair (on the bridge)."""
        return f"{PREFIX}{self.id}-{self._index(host)}"

    def _index(self, host: str) -> int:
        try:
            return self.hosts.index(host)
        except ValueError:
            raise KeyError(f"no host {host!r} in this network (hosts: {', '.join(self.hosts)})") from None

    # lifecycle

    def __enter__(self) -> Network:
        self.create()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def create(self) -> None:
        check_available()
        cleanup_stale()
        REGISTRY_DIR.mkdir(parents=True, exist_ok=True)
        pid = os.getpid()
        (REGISTRY_DIR / self.id).write_text(f"{pid} {_process_start(pid)}\n")
        self._open = True
        try:
            self._make()
        except BaseException:
            self.close()
            raise

    def _make(self) -> None:
        first = self.netns(self.hosts[0])
        result = _ip("netns", "add", first, check=False)
        if result.returncode != 0:
            raise NetnsUnavailable(f"`ip netns add` failed: {result.stderr.strip()}")
        self.subnet = self._pick_subnet()
        prefix = self.subnet.prefixlen
        _ip("link", "add", self.bridge, "type", "bridge")
        # Bridged frames must not go through the host's iptables (br_netfilter
        # may be loaded, and a FORWARD policy of DROP would eat them).
        _ip("link", "set", self.bridge, "type", "bridge", "nf_call_iptables", "0", check=False)
        _ip("addr", "add", f"{self.gateway}/{prefix}", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        for host in self.hosts:
            ns = self.netns(host)
            if host != self.hosts[0]:
                _ip("netns", "add", ns)
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("link", "add", self.veth(host), "type", "veth", "peer", "name", "eth0", "netns", ns)
            _ip("link", "set", self.veth(host), "master", self.bridge, "up")
            _ip("-n", ns, "addr", "add", f"{self.address(host)}/{prefix}", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            _ip("-n", ns, "route", "add", "default", "via", self.gateway)

    def _pick_subnet(self) -> ipaddress.IPv4Network:
        global _counter
        _counter += 1
        used = []
        for family_args in (("-4", "route", "show", "table", "all"), ("-4", "addr", "show")):
            text = _ip("-j", *family_args, check=False).stdout or "[]"
            for item in json.loads(text):
                for dst in [item.get("dst")] + [a.get("local") for a in item.get("addr_info", [])]:
                    if dst and dst != "default":
                        with contextlib.suppress(ValueError):
                            used.append(ipaddress.IPv4Network(dst, strict=False))
        slots = SUBNET_POOL.num_addresses // 256
        start = (os.getpid() * 31 + _counter * 4099) % slots
        for attempt in range(slots):
            slot = (start + attempt * 101) % slots
            candidate = ipaddress.IPv4Network((int(SUBNET_POOL.network_address) + slot * 256, 24))
            if not any(candidate.overlaps(net) for net in used):
                return candidate
        raise NetnsUnavailable("no free /24 left in 10.64.0.0/10")

    def close(self) -> None:
        """Stop the processes started here, then remove every namespace and link."""
        for proc in self._processes:
            _stop(proc)
        self._processes.clear()
        if self._open:
            remove_run(self.id)
            self._open = False

    # running things inside

    def command(self, host: str, argv: Sequence[str]) -> list[str]:
        """`argv` run inside `host`'s namespace."""
        return ["ip", "netns", "exec", self.netns(host), *argv]

    def run(self, host: str, argv: Sequence[str], *, check: bool = True, timeout: float = COMMAND_SECONDS, **kwargs):
        """subprocess.run inside `host` (output captured as text unless told)."""
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        return subprocess.run(self.command(host, argv), check=check, timeout=timeout, **kwargs)

    def popen(self, host: str, argv: Sequence[str], **kwargs) -> subprocess.Popen:
        """subprocess.Popen inside `host`, in a session of its own; stopped on close."""
        kwargs.setdefault("start_new_session", True)
        proc = subprocess.Popen(self.command(host, argv), **kwargs)
        self._processes.append(proc)
        return proc

    def enter(self, host: str):
        """The calling thread in `host`'s namespace for a `with` block."""
        return in_netns(self.netns(host))

    # shaping

    def rate_limit(
        self,
        host: str,
        rate_kbit: int,
        *,
        burst_bytes: int = 16 * 1024,
        latency_ms: int = 50,
        direction: str = "egress",
    ) -> None:
        """A `tc tbf` rate limit on `host`'s link: "egress" shapes what the
        host sends, "ingress" what it receives (tbf on the bridge end)."""
        tbf = ["qdisc", "replace", "dev"]
        limits = ["root", "tbf", "rate", f"{rate_kbit}kbit", "burst", str(burst_bytes), "latency", f"{latency_ms}ms"]
        if direction == "egress":
            self.run(host, ["tc", *tbf, "eth0", *limits])
        elif direction == "ingress":
            subprocess.run(["tc", *tbf, self.veth(host), *limits], check=True, capture_output=True, timeout=10)
        else:
            raise ValueError("direction must be 'egress' or 'ingress'")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(STOP_SECONDS)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(STOP_SECONDS)


@pytest.fixture
def netns():
    """A factory: `net = netns("center", "edge-a")` is a created Network,
    removed after the test; skips the test when namespaces cannot be made."""
    networks: list[Network] = []

    def make(*hosts: str) -> Network:
        network = Network(hosts or ("a", "b"))
        try:
            network.create()
        except NetnsUnavailable as exc:
            pytest.skip(f"cannot make network namespaces: {exc}")
        networks.append(network)
        return network

    yield make
    for network in reversed(networks):
        network.close()
