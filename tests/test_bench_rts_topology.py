"""bench/rts/topology.py: the loopback receive steering of the RTS viewer
bench (issue 18) against a stand-in sysfs and /proc, and, as root, the
real `lo`: its mask is set for the body and put back after."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from bench.rts import topology

SOFTIRQS = """                    CPU0       CPU1
          HI:          1          0
       TIMER:     100000      90000
      NET_TX:         10         20
      NET_RX:  140947849    7287827
"""
STAT = """cpu  309271 350817 191002 148909 763 0 33598 811 0 0
cpu0 165604 146162 94667 79550 134 0 31014 422 0 0
cpu1 143666 204654 96334 69359 629 0 2583 389 0 0
intr 1 2 3
"""


def _sysfs(tmp_path: Path, queues=("rx-0",), value="0") -> Path:
    for queue in queues:
        folder = tmp_path / "lo" / "queues" / queue
        folder.mkdir(parents=True)
        (folder / "rps_cpus").write_text(value + "\n")
    return tmp_path


def test_it_makes_the_hex_mask_of_a_set_of_cpus():
    assert topology.cpu_mask([1]) == "2"
    assert topology.cpu_mask([0, 1]) == "3"
    assert topology.cpu_mask([4, 0]) == "11"
    with pytest.raises(ValueError, match="at least one CPU"):
        topology.cpu_mask([])
    with pytest.raises(ValueError, match="cpu must be 0 or more, not -1"):
        topology.cpu_mask([-1])


def test_it_sets_every_receive_queues_mask_for_the_body_and_puts_the_old_back(tmp_path):
    sys_net = _sysfs(tmp_path, ("rx-0", "rx-1"), "1")
    files = topology.rps_files("lo", sys_net)
    with topology.receive_on([1], sys_net=sys_net) as mask:
        assert mask == "2"
        assert [f.read_text() for f in files] == ["2\n", "2\n"]
    assert [f.read_text() for f in files] == ["1\n", "1\n"]


def test_it_puts_the_old_mask_back_when_the_body_fails(tmp_path):
    sys_net = _sysfs(tmp_path)
    with pytest.raises(RuntimeError, match="the bench failed"):
        with topology.receive_on([1], sys_net=sys_net):
            raise RuntimeError("the bench failed")
    assert (sys_net / "lo/queues/rx-0/rps_cpus").read_text() == "0\n"


def test_a_device_without_rps_files_is_a_clear_error(tmp_path):
    (tmp_path / "lo" / "queues").mkdir(parents=True)
    with pytest.raises(RuntimeError, match="lo has no rps_cpus file"):
        with topology.receive_on([1], sys_net=tmp_path):
            pass


def test_steering_off_changes_nothing(tmp_path):
    sys_net = _sysfs(tmp_path)
    with topology.steering(False, 1) as mask:
        assert mask is None
    assert (sys_net / "lo/queues/rx-0/rps_cpus").read_text() == "0\n"


def test_it_reads_net_rx_counts_and_softirq_seconds_per_cpu():
    assert topology.parse_softirqs(SOFTIRQS) == [140947849, 7287827]
    assert topology.parse_softirqs(SOFTIRQS, "NET_TX") == [10, 20]
    with pytest.raises(ValueError, match="no BLOCK row"):
        topology.parse_softirqs(SOFTIRQS, "BLOCK")
    ticks = topology.CLOCK_TICKS
    assert topology.parse_softirq_seconds(STAT) == [31014 / ticks, 2583 / ticks]
    with pytest.raises(ValueError, match="no cpuN lines"):
        topology.parse_softirq_seconds("intr 1 2 3\n")
    assert topology.net_rx_shares([10, 10], [40, 20]) == [0.75, 0.25]
    assert topology.net_rx_shares([10, 10], [10, 10]) == [0.0, 0.0]


def test_the_sampler_gives_each_cpus_softirq_share_over_a_window(tmp_path, monkeypatch):
    monkeypatch.setattr(topology, "SAMPLE_SECONDS", 0.01)
    stat = tmp_path / "stat"
    ticks = topology.CLOCK_TICKS

    def write(cpu0: int, cpu1: int) -> None:
        stat.write_text(f"cpu  0 0 0 0 0 0 0 0 0 0\ncpu0 0 0 0 0 0 0 {cpu0} 0\ncpu1 0 0 0 0 0 0 {cpu1} 0\n")

    write(0, 0)
    start = time.time()
    sampler = topology.SoftirqSampler(stat)
    try:
        time.sleep(0.1)
        write(ticks, 0)  # one second of softirq on CPU 0 ...
        time.sleep(0.1)
    finally:
        sampler.stop()
    end = time.time()
    cores = sampler.cores(start, end)
    # ... within about 0.2 s of samples: far more than a core, CPU 1 none.
    assert cores[0] > 100 and cores[1] == 0
    assert sampler.cores(end + 1, end + 2) is None


@pytest.mark.skipif(os.geteuid() != 0 or not Path("/sys/class/net/lo/queues/rx-0/rps_cpus").exists(),
                    reason="needs root and a kernel with RPS")  # fmt: skip
def test_it_steers_the_real_loopback_and_restores_it():
    path = Path("/sys/class/net/lo/queues/rx-0/rps_cpus")
    before = path.read_text()
    with topology.receive_on([0]):
        assert int(path.read_text(), 16) == 1
    assert path.read_text() == before
