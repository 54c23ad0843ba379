"""bench/rts/viewer_host.py: the RTS viewers on a host of their own (issue
18): its parsers against stand-ins, and, as root, a real namespace whose
veth end receives in a threaded NAPI pinned where asked, reached from the
node's address, and gone after."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from bench.rts import viewer_host
from tests import netns


def test_it_finds_a_devices_napi_threads_by_their_cut_name(tmp_path):
    for pid, comm in ((10, "napi/vabc123-81"), (11, "napi/vabc124-82"), (12, "python"), (13, "napi/eth0-8193")):
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "comm").write_text(comm + "\n")
    (tmp_path / "self").mkdir()
    assert viewer_host.napi_threads("vabc123", tmp_path) == [10]
    assert viewer_host.napi_threads("eth0", tmp_path) == [13]
    assert viewer_host.napi_threads("vzzzzzz", tmp_path) == []


def _affinity(pid: int) -> str:
    status = Path(f"/proc/{pid}/status").read_text()
    return next(line.split()[1] for line in status.splitlines() if line.startswith("Cpus_allowed_list:"))


def test_the_viewers_host_receives_in_a_pinned_napi_thread_and_is_removed_after():
    try:
        netns.check_available()
    except netns.NetnsUnavailable as exc:
        pytest.skip(str(exc))
    if shutil.which("tc") is None:
        pytest.skip("tc (iproute2) is not installed")
    cpu = min(os.sched_getaffinity(0))
    host = viewer_host.ViewerHost(cpu)
    try:
        host.create()
    except netns.NetnsUnavailable as exc:
        pytest.skip(f"cannot make the viewers' host here: {exc}")
    try:
        assert host.napi_pids and all(_affinity(pid) == str(cpu) for pid in host.napi_pids)
        assert all(os.sched_getscheduler(pid) == os.SCHED_FIFO for pid in host.napi_pids)
        with host.enter(viewer_host.HOST):
            assert viewer_host.ethtool_value(host.device, viewer_host.ETHTOOL_GGRO) == 1
            receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        assert viewer_host.ethtool_value(host.veth(viewer_host.HOST), viewer_host.ETHTOOL_GTSO) == 0
        qdisc = subprocess.run(["tc", "qdisc", "show", "dev", host.veth(viewer_host.HOST)], capture_output=True,
                               text=True, check=True).stdout  # fmt: skip
        assert "pfifo" in qdisc
        with receiver, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            receiver.bind((host.viewer_address, 0))
            receiver.settimeout(10)
            sender.bind((host.node_address, 0))
            sender.sendto(b"rtp", receiver.getsockname())
            data, source = receiver.recvfrom(100)
        assert (data, source[0]) == (b"rtp", host.node_address)
        assert host.link_drops() == {"rx": 0, "tx": 0, "qdisc": 0}
        assert host.viewer_command(["true"])[:3] == ["ip", "netns", "exec"]
        name = host.netns(viewer_host.HOST)
    finally:
        host.close()
    assert name not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not viewer_host.napi_threads(host.device)
