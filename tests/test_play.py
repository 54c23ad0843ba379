"""Admitting a viewer (livecenter/media/play.py), the steps every playing
protocol shares, against a MemoryPolicy, a real StreamHub and a stand-in for
the node's capacity: the order of the refusals, the reason each names, the
protocol's own switch, and the one log line."""

from __future__ import annotations

import asyncio
import logging
import time
from types import SimpleNamespace

import pytest

from livecenter.media.capacity import REFUSAL_AT_CAPACITY
from livecenter.media.hub import StreamHub
from livecenter.media.play import REFUSAL_NOT_LIVE, PlayRefusal, PlayRequest, admit_and_wait, admit_viewer, wait_live
from livecenter.media.policy import PolicyUnavailable, StreamKey
from livecenter.media.signing import sign

from .mediasupport import INGEST, PLAY, PLAY_KEY, default_policy

KEY = StreamKey(INGEST, "live", "cam1")


def fake_node(room: bool = True, wait_seconds: float = 0.2, relaying_node: str | None = None):
    """What play.py asks of a node: its policy, its capacity, its hub, and
    whether a request comes from another node of the cluster."""
    asked = []

    def admits_viewer(key, protocol, uri, query, client=None):
        asked.append((key, protocol, uri, client))
        return room

    node = SimpleNamespace(
        policy=default_policy(),
        hub=StreamHub(),
        config=SimpleNamespace(play_wait_seconds=wait_seconds),
        admits_viewer=admits_viewer,
        relayed_by=lambda uri, query: relaying_node,
        is_media_worker=lambda uri, query: False,
    )
    node.asked = asked
    return node


def request(protocol: str = "flv", signed: bool = True, **overrides) -> PlayRequest:
    uri = "/live/cam1.flv"
    query = {"auth_key": sign(uri, PLAY_KEY, int(time.time()))} if signed else {}
    fields = {"protocol": protocol, "peer": "127.0.0.1:5000", "domain": PLAY, "app": "live", "stream": "cam1",
              "uri": uri, "query": query, "client": None, **overrides}  # fmt: skip
    return PlayRequest(**fields)


def run(coro):
    return asyncio.run(coro)


def test_it_refuses_an_unsigned_play_as_denied_before_asking_for_room(caplog):
    node = fake_node()
    with caplog.at_level(logging.INFO):
        decision = run(admit_viewer(node, request(signed=False)))
    assert decision.refusal is PlayRefusal.DENIED and decision.reason == "no auth_key"
    assert node.asked == []
    assert "flv 127.0.0.1:5000 play refused: stream=play.test/live/cam1 reason=no auth_key" in caplog.text


def test_another_node_pulling_is_admitted_by_the_ingest_domain_without_a_signature():
    node = fake_node(relaying_node="edge-a")
    decision = run(admit_viewer(node, request("rtmp", signed=False, domain=INGEST, uri="/live/cam1")))
    assert decision.ok and decision.key == KEY
    # ... but only on an ingest domain it knows.
    for domain, reason in ((PLAY, "not an ingest domain"), ("nowhere.test", "non-existent domain")):
        decision = run(admit_viewer(node, request("rtmp", signed=False, domain=domain, uri="/live/cam1")))
        assert decision.refusal is PlayRefusal.DENIED and decision.reason == reason


def test_it_refuses_at_capacity_with_the_stream_played(caplog):
    node = fake_node(room=False)
    with caplog.at_level(logging.INFO):
        decision = run(admit_viewer(node, request("hls", client="127.0.0.1")))
    assert decision.refusal is PlayRefusal.AT_CAPACITY and decision.reason == REFUSAL_AT_CAPACITY
    assert node.asked == [(KEY, "hls", "/live/cam1.flv", "127.0.0.1")]
    assert f"hls 127.0.0.1:5000 play refused: stream={KEY} reason={REFUSAL_AT_CAPACITY}" in caplog.text


def test_it_applies_the_protocols_own_switch_after_the_signature():
    node = fake_node()
    decision = run(admit_viewer(node, request("rts"), lambda domain: "RTS is off for this domain"))
    assert decision.refusal is PlayRefusal.DENIED and decision.reason == "RTS is off for this domain"
    assert node.asked == []
    unsigned = run(admit_viewer(node, request("rts", signed=False), lambda domain: "RTS is off for this domain"))
    assert unsigned.reason == "no auth_key"


def test_it_refuses_a_stream_that_does_not_go_live_in_time(caplog):
    node = fake_node()
    with caplog.at_level(logging.INFO):
        decision = run(admit_and_wait(node, request("rtmp")))
    assert decision.refusal is PlayRefusal.NOT_LIVE and decision.reason == REFUSAL_NOT_LIVE
    assert decision.key == KEY
    assert f"rtmp 127.0.0.1:5000 play refused: stream={KEY} reason={REFUSAL_NOT_LIVE}" in caplog.text


def test_it_admits_a_viewer_of_a_stream_that_goes_live_while_it_waits():
    node = fake_node(wait_seconds=30)

    async def scenario():
        decision = await admit_viewer(node, request())
        assert decision.ok
        waiting = asyncio.ensure_future(wait_live(node, request(), decision))
        await asyncio.sleep(0)
        node.hub.publish(KEY)
        return await asyncio.wait_for(waiting, 10)

    decision = run(scenario())
    assert decision.ok and decision.key == KEY


@pytest.mark.parametrize("protocol", ["flv", "hls", "rtmp", "rts"])
def test_every_protocol_gets_the_same_decision(protocol):
    assert run(admit_viewer(fake_node(), request(protocol))).ok


def test_it_refuses_as_unavailable_when_the_policy_cannot_answer():
    node = fake_node()

    async def unavailable(host):
        raise PolicyUnavailable("database unreachable")

    node.policy.domain_config = unavailable
    decision = run(admit_viewer(node, request()))
    assert decision.refusal is PlayRefusal.UNAVAILABLE and decision.reason == "policy unavailable"
    assert node.asked == []
