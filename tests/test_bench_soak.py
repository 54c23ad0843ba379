"""bench/soak's growth criterion (pure): descriptors and tasks that follow
the live connections are not growth; a trend with time beside them is."""

import random

import pytest

from bench.soak.run import connection_adjusted_growth, growth


def samples(leak_per_minute: float, seed: int = 1) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for minute in range(1, 31):
        conns = rng.randint(500, 1100)  # the gauge admits more and fewer viewers as the run goes
        node = {"connections": {"http": conns}, "rss_kib": 200_000, "threads": 13,
                "fds": 170 + conns + leak_per_minute * minute + rng.gauss(0, 5), "tasks": 300 + 2 * conns}  # fmt: skip
        out.append({"minute": minute, "node": node, "worker": {}, "rows": {}})
    return out


def test_descriptors_that_follow_the_connections_do_not_count_as_growth():
    grown = growth(samples(0), warmup_minutes=5)
    assert abs(grown["node.fds"]["growth"]) < 0.01 and abs(grown["node.tasks"]["growth"]) < 0.01
    assert grown["node.fds"]["per_connection"] == pytest.approx(1.0, abs=0.05)


def test_a_leak_beside_the_connections_does():
    adjusted = connection_adjusted_growth(samples(5)[5:], "fds")
    assert adjusted["growth"] > 0.05 and adjusted["per_minute"] > 4


def test_too_few_samples_or_a_constant_count_keep_the_plain_growth():
    assert connection_adjusted_growth(samples(0)[:3], "fds") is None
    flat = samples(0)
    for s in flat:
        s["node"]["connections"] = {"http": 800}
    assert connection_adjusted_growth(flat, "fds") is None
