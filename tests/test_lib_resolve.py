"""domains/lib/resolve.py: whether a name resolves, bounded in time and cached."""

from __future__ import annotations

import threading

from domains.lib import resolve
from domains.lib.resolve import BoundedResolver, system_lookup


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def hanging(release: threading.Event, started: list[str], answer: tuple[str, ...]):
    """A lookup that hangs until `release` is set, noting each name it is asked."""

    def lookup(name):
        started.append(name)
        release.wait(30)
        return answer

    return lookup


def test_it_answers_and_caches_for_the_ttl():
    calls = []

    def lookup(name):
        calls.append(name)
        return ("192.0.2.1",) if name == "play.example.com" else ()

    clock = FakeClock()
    resolver = BoundedResolver(timeout_seconds=5, ttl_seconds=60, lookup=lookup, clock=clock)
    assert resolver.addresses("Play.Example.com.") == ("192.0.2.1",)
    assert resolver.resolves("play.example.com")
    assert not resolver.resolves("nowhere.example.com")
    assert calls == ["play.example.com", "nowhere.example.com"]
    clock.now += 61
    assert resolver.resolves("play.example.com")
    assert calls == ["play.example.com", "nowhere.example.com", "play.example.com"]


def test_it_gives_up_on_a_resolver_that_hangs_and_starts_no_second_lookup():
    release, started = threading.Event(), []
    resolver = BoundedResolver(0.05, 60, lookup=hanging(release, started, ("192.0.2.7",)))
    # Not resolving, for now: the page goes on with the direct form.
    assert resolver.addresses("slow.example.com") == ()
    assert resolver.addresses("slow.example.com") == ()
    assert started == ["slow.example.com"]  # one thread for the name, not one a request
    pending = resolver._pending["slow.example.com"]
    release.set()
    assert pending.done.wait(10)
    # Once the lookup ends its answer is cached.
    assert resolver.addresses("slow.example.com") == ("192.0.2.7",)
    assert started == ["slow.example.com"]


def test_it_runs_at_most_max_pending_lookups(monkeypatch):
    monkeypatch.setattr(resolve, "MAX_PENDING_LOOKUPS", 2)
    release, started = threading.Event(), []
    resolver = BoundedResolver(0.01, 60, lookup=hanging(release, started, ("192.0.2.1",)))
    for name in ("a.example.com", "b.example.com", "c.example.com"):
        assert not resolver.resolves(name)
    assert sorted(started) == ["a.example.com", "b.example.com"]
    release.set()


def test_it_keeps_at_most_max_cached_names(monkeypatch):
    monkeypatch.setattr(resolve, "MAX_CACHED_NAMES", 2)
    resolver = BoundedResolver(timeout_seconds=5, ttl_seconds=60, lookup=lambda name: ("192.0.2.1",))
    for name in ("a.example.com", "b.example.com", "c.example.com"):
        assert resolver.resolves(name)
    assert list(resolver._cache) == ["b.example.com", "c.example.com"]


def test_a_lookup_that_raises_does_not_resolve():
    def broken(name):
        raise RuntimeError("resolver library bug")

    assert not BoundedResolver(timeout_seconds=5, ttl_seconds=60, lookup=broken).resolves("x.example.com")


def test_the_system_lookup_reads_the_hosts_file_and_refuses_test_names():
    assert "127.0.0.1" in system_lookup("localhost")
    assert system_lookup("nothing.invalid") == ()  # RFC 6761 6.4: never resolves
