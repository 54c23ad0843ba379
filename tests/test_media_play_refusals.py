"""What the node answers a viewer it does not play to, per HTTP protocol
(HTTP-FLV, HLS, WHEP), so that a player can tell the cases apart and say
so (issue 19, the player): a stream that is not live (404, after the play
wait), a forbidden stream (403 at once: it cannot go live in the wait), and
a bad signature (403), each named in `X-LiveCenter-Error`, a header CORS
lets a page read."""

from __future__ import annotations

import time

import pytest

from livecenter.media.policy import StreamKey
from livecenter.media.signing import sign
from tests.mediasupport import INGEST, PLAY, PLAY_KEY, NodeThread, default_policy
from tests.mediasupport import http_request as request
from tests.test_rts_whep import browser_like_offer, policy

pytestmark = pytest.mark.media

# Longer than the requests' own timeout (30 s): a forbidden stream answered
# only after the wait would fail the test.
LONG_PLAY_WAIT_SECONDS = 120


@pytest.fixture(scope="module")
def offer() -> bytes:
    return browser_like_offer().encode()


def url(node, stream: str, ext: str, key: str = PLAY_KEY) -> str:
    uri = f"/live/{stream}" if ext == "whep" else f"/live/{stream}.{ext}"
    return f"{node.http}/live/{stream}.{ext}?auth_key={sign(uri, key, int(time.time()))}&domain={PLAY}"


def ask(node, stream: str, ext: str, offer: bytes, key: str = PLAY_KEY):
    if ext == "whep":
        return request(url(node, stream, ext, key), body=offer)
    return request(url(node, stream, ext, key), method="GET")


@pytest.mark.parametrize("ext", ["flv", "m3u8", "whep"])
def test_a_forbidden_stream_is_refused_at_once_and_says_so(ext, offer):
    rules = policy()
    rules.forbidden.add(StreamKey(INGEST, "live", "blocked"))
    node = NodeThread(rules, play_wait_seconds=LONG_PLAY_WAIT_SECONDS).start()
    try:
        status, headers, body = ask(node, "blocked", ext, offer)
        assert (status, headers["X-LiveCenter-Error"], body) == (403, "stream is forbidden", "stream is forbidden\n")
        assert "X-LiveCenter-Error" in headers["Access-Control-Expose-Headers"]
        status, headers, _ = ask(node, "blocked", ext, offer, key="wrongKey99")
        assert (status, headers["X-LiveCenter-Error"]) == (403, "invalid md5hash")
    finally:
        node.stop()


@pytest.mark.parametrize("ext", ["flv", "m3u8", "whep"])
def test_a_stream_that_is_not_live_is_a_404_after_the_wait(ext, offer):
    node = NodeThread(policy(), play_wait_seconds=0.5).start()
    try:
        status, headers, body = ask(node, "offline", ext, offer)
        assert (status, headers["X-LiveCenter-Error"], body) == (404, "stream is not live", "stream is not live\n")
        assert "X-LiveCenter-Error" in headers["Access-Control-Expose-Headers"]
    finally:
        node.stop()


def test_forbidding_a_stream_that_is_not_live_turns_its_404_into_a_403():
    rules = default_policy()
    node = NodeThread(rules, play_wait_seconds=0.5).start()
    try:
        assert request(url(node, "cam9", "flv"), method="GET")[0] == 404
        rules.forbidden.add(StreamKey(INGEST, "live", "cam9"))
        assert request(url(node, "cam9", "flv"), method="GET")[0] == 403
    finally:
        node.stop()
