"""Admission decisions without sockets or a database (MemoryPolicy)."""

import asyncio
import time

import pytest

from livecenter.media.admission import MAX_NAME_CHARS, Refusal, admit_play, admit_publish, domain_of
from livecenter.media.policy import DomainConfig, MemoryPolicy, StreamKey
from livecenter.media.signing import sign

NOW = 1_800_000_000


def policy(**overrides) -> MemoryPolicy:
    ingest = DomainConfig("push.test", "ingest", True, ("pushKey1",), 600)
    play = DomainConfig("play.test", "streaming", True, ("playKey1", "playOld1"), 600, ingest_domain="push.test")
    domains = {"push.test": ingest, "play.test": play, "lonely.test": DomainConfig("lonely.test", "streaming", True,
               None, 600)}  # fmt: skip
    domains.update(overrides)
    return MemoryPolicy(domains=domains)


def publish(p, host="push.test", stream="cam1", auth_key=None, now=NOW):
    if auth_key is None:
        auth_key = sign(f"/live/{stream}", "pushKey1", now)
    return asyncio.run(admit_publish(p, host, "live", stream, auth_key, now))


def play(p, host="play.test", uri="/live/cam1.flv", auth_key=None, now=NOW, key="playKey1"):
    if auth_key is None:
        auth_key = sign(uri, key, now)
    return asyncio.run(admit_play(p, host, "live", "cam1", uri, auth_key, now))


def test_it_admits_a_signed_publish():
    admission = publish(policy())
    assert admission.ok
    assert admission.key == StreamKey("push.test", "live", "cam1")


@pytest.mark.parametrize(
    ("kwargs", "refusal"),
    [
        ({"host": "nobody.test"}, Refusal.UNKNOWN_DOMAIN),
        ({"host": "play.test"}, Refusal.NOT_INGEST),
        ({"auth_key": ""}, "no auth_key"),
        ({"auth_key": "garbage"}, "invalid auth_key"),
        ({"auth_key": sign("/live/cam1", "pushKey1", NOW - 601)}, "expired timestamp"),
        ({"auth_key": sign("/live/cam1", "wrongKey1", NOW)}, "invalid md5hash"),
        ({"auth_key": sign("/live/cam2", "pushKey1", NOW)}, "invalid md5hash"),
    ],
)
def test_it_refuses_a_publish_with_the_reason(kwargs, refusal):
    assert publish(policy(), **kwargs).refusal == refusal


def test_it_takes_app_and_stream_names_up_to_the_longest_and_refuses_one_character_more():
    longest = "s" * MAX_NAME_CHARS
    assert publish(policy(), stream=longest).key == StreamKey("push.test", "live", longest)
    assert publish(policy(), stream=longest + "s").refusal == Refusal.NAME_TOO_LONG
    app = "a" * (MAX_NAME_CHARS + 1)
    token = sign(f"/{app}/cam1", "pushKey1", NOW)
    refused = asyncio.run(admit_publish(policy(), "push.test", app, "cam1", token, NOW))
    assert refused.refusal == Refusal.NAME_TOO_LONG
    assert str(MAX_NAME_CHARS) in refused.refusal


def test_it_refuses_a_disabled_domain():
    disabled = DomainConfig("push.test", "ingest", False, ("pushKey1",), 600)
    assert publish(policy(**{"push.test": disabled})).refusal == Refusal.DOMAIN_DISABLED


def test_it_refuses_a_forbidden_stream_after_checking_the_signature():
    p = policy()
    p.forbidden.add(StreamKey("push.test", "live", "cam1"))
    assert publish(p).refusal == Refusal.FORBIDDEN
    assert publish(p, auth_key="").refusal == "no auth_key"


def test_it_admits_any_url_when_signing_is_off():
    open_ingest = DomainConfig("push.test", "ingest", True, None, 600)
    assert publish(policy(**{"push.test": open_ingest}), auth_key="").ok


def test_it_admits_play_with_either_key_and_maps_to_the_ingest_domain():
    assert play(policy()).key == StreamKey("push.test", "live", "cam1")
    assert play(policy(), key="playOld1").ok
    assert play(policy(), uri="/live/cam1", key="playOld1").ok


@pytest.mark.parametrize(
    ("kwargs", "refusal"),
    [
        ({"host": "push.test", "key": "pushKey1"}, Refusal.NOT_STREAMING),
        ({"host": "lonely.test"}, Refusal.NOT_ASSOCIATED),
        ({"key": "pushKey1"}, "invalid md5hash"),
        ({"auth_key": sign("/live/cam1", "playKey1", NOW)}, "invalid md5hash"),  # an RTMP token on FLV
    ],
)
def test_it_refuses_a_play_with_the_reason(kwargs, refusal):
    assert play(policy(), **kwargs).refusal == refusal


@pytest.mark.parametrize(
    ("host", "query", "domain"),
    [
        ("push.test", {}, "push.test"),
        ("Push.Test.:1935", {"domain": "other.test"}, "push.test"),
        ("127.0.0.1", {"domain": "push.test"}, "push.test"),
        ("127.0.0.1:8080", {"domain": "Push.Test"}, "push.test"),
        ("[::1]:8080", {"domain": "push.test"}, "push.test"),
        ("localhost", {"domain": "push.test"}, "push.test"),
        ("127.0.0.1", {}, "127.0.0.1"),
    ],
)
def test_it_finds_the_domain_from_the_host_or_the_fallback_parameter(host, query, domain):
    assert domain_of(host, query) == domain


def test_it_uses_the_clock_it_is_given():
    assert publish(policy(), now=int(time.time())).ok
