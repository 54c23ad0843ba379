"""A domain's access lists on a running node (issue 16), with real clients
whose source address the test chooses by binding (loopback takes the whole
of 127/8): 127.0.0.2 is the address the lists name, 127.0.0.3 another.
HTTP-FLV, HLS (playlist, segment, part) and WHEP over http.client; RTMP
publish and play with the project's RTMP client; SRT ingest and play with
its SRT caller. Then the same through the console's database: a change
reaches a running node within seconds."""

from __future__ import annotations

import asyncio
import dataclasses
import http.client
import logging
import re
import time
from urllib.parse import urljoin, urlsplit

import pytest

from livecenter.media.access import AccessPolicy
from livecenter.media.capacity import WORKER_TOKEN_PARAM, worker_token
from livecenter.media.edge import NODE_PARAM, RELAY_TOKEN_PARAM, node_token
from livecenter.media.policy import PublishRefused, StreamKey
from livecenter.media.rtmp.client import PlayStarted, PublishStarted, Refused, RtmpClientConnection
from livecenter.media.signing import sign
from livecenter.media.srt_call import SrtCall, SrtCallFailed
from livecenter.media.srt_server import REJECT_FORBIDDEN

from .mediasupport import INGEST, INGEST_KEY, PLAY, PLAY_KEY, NodeThread, default_policy, start_publisher
from .test_rts_whep import browser_like_offer

pytestmark = pytest.mark.media

LISTED = "127.0.0.2"
OTHER = "127.0.0.3"
WORKER_KEY = b"worker-key-for-access-tests"
CLUSTER_KEY = b"cluster-key-for-access-tests"


@pytest.fixture(scope="module")
def node():
    policy = default_policy()
    policy.domains[PLAY] = dataclasses.replace(policy.domains[PLAY], rts_enabled=True, html5_transcode=True)
    node = NodeThread(policy, srt_port=0, play_wait_seconds=5, worker_key=WORKER_KEY, cluster_key=CLUSTER_KEY)
    node.start()
    publisher = start_publisher(node.publish_url(), seconds=300, size="320x240")
    try:
        assert node.wait_for(lambda: node.node.hub.is_live(StreamKey(INGEST, "live", "cam1")), timeout=30)
        yield node
    finally:
        publisher.stop()
        node.stop()


def set_lists(node: NodeThread, domain: str, **lists) -> None:
    """The domain's lists, as the console would have them (AccessPolicy.build's arguments)."""
    config = node.policy.domains[domain]
    node.policy.domains[domain] = dataclasses.replace(config, access=AccessPolicy.build(**lists))


@pytest.fixture(autouse=True)
def no_lists(node):
    yield
    for domain in (INGEST, PLAY):
        set_lists(node, domain, ip_mode="off", ip_entries=())


# --- clients ------------------------------------------------------------------------


def fetch(url: str, source: str, method: str = "GET", referer: str | None = None, body: bytes | None = None,
         content_type: str | None = None, read: int | None = None) -> tuple[int, dict, bytes]:  # fmt: skip
    """One request from `source`: (status, headers, body); `read` bytes of
    the body only (an FLV stream has no end)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30, source_address=(source, 0))
    headers = {}
    if referer is not None:
        headers["Referer"] = referer
    if content_type is not None:
        headers["Content-Type"] = content_type
    try:
        conn.request(method, f"{parts.path}?{parts.query}", body=body, headers=headers)
        response = conn.getresponse()
        data = response.read(read) if read and response.status == 200 else response.read()
        return response.status, dict(response.getheaders()), data
    finally:
        conn.close()


def refusal(answer: tuple[int, dict, bytes]) -> tuple[int, str | None]:
    status, headers, _ = answer
    return status, headers.get("X-LiveCenter-Error")


def flv(node: NodeThread, source: str, **options) -> tuple[int, dict, bytes]:
    return fetch(node.flv_url(), source, read=3, **options)


def m3u8_url(node: NodeThread) -> str:
    token = sign("/live/cam1.m3u8", PLAY_KEY, int(time.time()))
    return f"{node.http}/live/cam1.m3u8?auth_key={token}&domain={PLAY}"


def media_urls(node: NodeThread, referer: str | None = None) -> tuple[str, str]:
    """The newest segment's and the oldest listed part's URL, from a playlist 127.0.0.3 is given."""
    status, _, body = fetch(m3u8_url(node), OTHER, referer=referer)
    assert status == 200, body
    text = body.decode()
    segment = re.findall(r"^(cam1/seg_\d+\.ts\?token=\S+)$", text, re.M)[-1]
    part = re.search(r'#EXT-X-PART:.*URI="([^"]+)"', text).group(1)
    return urljoin(m3u8_url(node), segment), urljoin(m3u8_url(node), part)


def whep_url(node: NodeThread) -> str:
    token = sign("/live/cam1", PLAY_KEY, int(time.time()))
    return f"{node.http}/live/cam1.whep?auth_key={token}&domain={PLAY}"


def rtmp(url: str, source: str, publish: bool):
    """Publish or play `url` from `source` with the project's RTMP client:
    the server's answer (PublishStarted, PlayStarted or Refused)."""

    async def attempt():
        parts = urlsplit(url)
        app, _, stream = parts.path.lstrip("/").partition("/")
        tc_url = f"rtmp://{parts.hostname}:{parts.port}/{app}"
        conn = RtmpClientConnection(app, tc_url, f"{stream}?{parts.query}", publish=publish)
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port, local_addr=(source, 0))
        try:
            async with asyncio.timeout(30):
                writer.write(conn.data_to_send())
                while data := await reader.read(65536):
                    events = conn.receive_data(data)
                    writer.write(conn.data_to_send())
                    for event in events:
                        if isinstance(event, (Refused, PublishStarted, PlayStarted)):
                            return event
        finally:
            writer.close()
        return None

    return asyncio.run(attempt())


def srt(node: NodeThread, source: str, stream_id: str) -> int:
    """Call the node's SRT port from `source`: 0 when accepted, else the rejection reason."""

    async def attempt():
        call = SrtCall("127.0.0.1", node.node.srt_port, stream_id=stream_id, local_address=(source, 0))
        try:
            await call.connect()
        except SrtCallFailed as exc:
            return exc.reason
        call.close()
        return 0

    return asyncio.run(attempt())


def srt_publish_id(stream: str) -> str:
    token = sign(f"/live/{stream}", INGEST_KEY, int(time.time()))
    return f"#!::h={INGEST},r=/live/{stream}?auth_key={token},m=publish"


def srt_play_id() -> str:
    token = sign("/live/cam1", PLAY_KEY, int(time.time()))
    return f"#!::h={PLAY},r=/live/cam1?auth_key={token},m=request"


# --- the IP list, viewers ---------------------------------------------------------------------


def test_a_deny_list_refuses_its_addresses_on_flv_and_admits_the_others(node, caplog):
    caplog.set_level(logging.INFO, logger="livecenter.media")
    set_lists(node, PLAY, ip_mode="deny", ip_entries=(LISTED,))
    status, headers, _ = flv(node, LISTED)
    assert (status, headers["X-LiveCenter-Error"]) == (403, "address 127.0.0.2 is on the domain's deny list")
    assert headers["X-Tengine-Error"] == "denied by IP ACL = blacklist"
    status, _, data = flv(node, OTHER)
    assert (status, data) == (200, b"FLV")
    lines = [r.getMessage() for r in caplog.records if "play refused" in r.getMessage()]
    assert len(lines) == 1
    assert "reason=address 127.0.0.2 is on the domain's deny list" in lines[0]
    assert "auth_key" not in caplog.text


def test_an_allow_list_admits_only_its_addresses_on_flv(node):
    set_lists(node, PLAY, ip_mode="allow", ip_entries=("127.0.0.3/32", "10.0.0.0/8"))
    assert refusal(flv(node, LISTED)) == (403, "address 127.0.0.2 is not on the domain's allow list")
    assert flv(node, OTHER)[0] == 200


def test_hls_playlists_segments_and_parts_follow_the_ip_list(node):
    segment, part = media_urls(node)
    set_lists(node, PLAY, ip_mode="deny", ip_entries=(LISTED,))
    reason = "address 127.0.0.2 is on the domain's deny list"
    assert refusal(fetch(m3u8_url(node), LISTED)) == (403, reason)
    # A segment URL handed on by an admitted viewer is refused too: its token admits it, not its address.
    assert refusal(fetch(segment, LISTED)) == (403, reason)
    assert refusal(fetch(part, LISTED)) == (403, reason)
    assert fetch(segment, OTHER)[0] == 200
    assert fetch(m3u8_url(node), OTHER)[0] == 200


def test_whep_follows_the_ip_list_before_reading_the_offer(node):
    set_lists(node, PLAY, ip_mode="allow", ip_entries=(OTHER,))
    offer = browser_like_offer().encode()
    answer = fetch(whep_url(node), LISTED, "POST", body=offer, content_type="application/sdp")
    assert refusal(answer) == (403, "address 127.0.0.2 is not on the domain's allow list")
    status, headers, _ = fetch(whep_url(node), OTHER, "POST", body=offer, content_type="application/sdp")
    assert status == 201
    assert fetch(urljoin(node.http, headers["Location"]), OTHER, "DELETE")[0] == 200


def test_rtmp_play_follows_the_ip_list(node):
    set_lists(node, PLAY, ip_mode="deny", ip_entries=("127.0.0.0/30",))
    refused = rtmp(node.rtmp_play_url(), LISTED, publish=False)
    assert refused == Refused("NetStream.Play.Failed", "address 127.0.0.2 is on the domain's deny list")
    assert isinstance(rtmp(node.rtmp_play_url(), "127.0.0.4", publish=False), PlayStarted)


def test_srt_play_follows_the_ip_list(node):
    set_lists(node, PLAY, ip_mode="deny", ip_entries=(LISTED,))
    assert srt(node, LISTED, srt_play_id()) == REJECT_FORBIDDEN
    assert srt(node, OTHER, srt_play_id()) == 0


def test_the_nodes_media_workers_and_other_nodes_are_not_viewers(node):
    set_lists(node, PLAY, ip_mode="allow", ip_entries=("192.0.2.1",))
    url = node.flv_url()
    token = worker_token(WORKER_KEY, urlsplit(url).path, int(time.time()) + 60)
    assert refusal(flv(node, LISTED)) == (403, "address 127.0.0.2 is not on the domain's allow list")
    status, _, data = fetch(f"{url}&{WORKER_TOKEN_PARAM}={token}", LISTED, read=3)
    assert (status, data) == (200, b"FLV")
    # An edge pulling by the ingest domain with its node token.
    query = {NODE_PARAM: "edge-a", RELAY_TOKEN_PARAM: node_token(CLUSTER_KEY, "/live/cam1", "edge-a", time.time())}
    pull = f"{node.rtmp}/live/cam1?domain={INGEST}&" + "&".join(f"{k}={v}" for k, v in query.items())
    assert isinstance(rtmp(pull, LISTED, publish=False), PlayStarted)


# --- the Referer list -----------------------------------------------------------------------


def test_a_referer_allow_list_on_flv_hls_and_whep(node):
    set_lists(node, PLAY, ip_mode="off", ip_entries=(), referer_mode="allow", referer_entries=("*.example.com",))
    good, bad = "https://player.example.com/watch?v=1", "https://evil.example/embed"
    offer = browser_like_offer().encode()
    for url, options in (
        (node.flv_url(), {"read": 3}),
        (m3u8_url(node), {}),
        (media_urls(node, referer=good)[0], {}),
        (whep_url(node), {"method": "POST", "body": offer, "content_type": "application/sdp"}),
    ):
        assert refusal(fetch(url, OTHER, referer=bad, **options)) == (
            403, "Referer evil.example is not on the domain's allow list"
        ), url  # fmt: skip
        assert refusal(fetch(url, OTHER, **options)) == (403, "empty Referer is not on the domain's allow list"), url
        status, headers, _ = fetch(url, OTHER, referer=good, **options)
        assert status in (200, 201), url
        if status == 201:
            fetch(urljoin(node.http, headers["Location"]), OTHER, "DELETE")
    set_lists(node, PLAY, ip_mode="off", ip_entries=(), referer_mode="allow", referer_entries=("*.example.com",),
              referer_allow_empty=True)  # fmt: skip
    assert flv(node, OTHER)[0] == 200
    assert refusal(flv(node, OTHER, referer=bad))[0] == 403


def test_a_referer_deny_list_and_rtmp_which_has_no_referer(node):
    set_lists(node, PLAY, ip_mode="off", ip_entries=(), referer_mode="deny", referer_entries=("evil.example",))
    assert refusal(flv(node, OTHER, referer="http://evil.example/")) == (
        403, "Referer evil.example is on the domain's deny list"
    )  # fmt: skip
    assert refusal(fetch(m3u8_url(node), OTHER, referer="http://evil.example/"))[0] == 403
    assert flv(node, OTHER, referer="http://fine.example/")[0] == 200
    assert flv(node, OTHER)[0] == 200
    # An allow list that takes no empty Referer does not refuse RTMP, which has no Referer at all.
    set_lists(node, PLAY, ip_mode="off", ip_entries=(), referer_mode="allow", referer_entries=("player.example",))
    assert isinstance(rtmp(node.rtmp_play_url(), OTHER, publish=False), PlayStarted)


# --- the IP list, publishers ---------------------------------------------------------------------


def test_rtmp_publish_follows_the_ingest_domains_ip_list(node):
    set_lists(node, INGEST, ip_mode="deny", ip_entries=(LISTED,))
    refused = rtmp(node.publish_url(stream="deny1"), LISTED, publish=True)
    assert refused == Refused("NetStream.Publish.Rejected", "address 127.0.0.2 is on the domain's deny list")
    # Reported to the sink too, for the troubleshooting tool.
    assert node.wait_for(
        lambda: any(
            isinstance(e, PublishRefused) and e.reason == "address 127.0.0.2 is on the domain's deny list"
            for e in node.sink.events
        )
    )
    assert isinstance(rtmp(node.publish_url(stream="deny2"), OTHER, publish=True), PublishStarted)
    # A viewer list is not a publisher list: the streaming domain's does not touch the ingest side.
    set_lists(node, INGEST, ip_mode="off", ip_entries=())
    set_lists(node, PLAY, ip_mode="deny", ip_entries=(LISTED,))
    assert isinstance(rtmp(node.publish_url(stream="deny3"), LISTED, publish=True), PublishStarted)


def test_a_relay_from_an_edge_is_not_held_to_the_ingest_list(node):
    set_lists(node, INGEST, ip_mode="allow", ip_entries=("192.0.2.1",))
    token = node_token(CLUSTER_KEY, "/live/relayed", "edge-a", time.time())
    url = f"{node.rtmp}/live/relayed?domain={INGEST}&{NODE_PARAM}=edge-a&{RELAY_TOKEN_PARAM}={token}"
    assert isinstance(rtmp(url, LISTED, publish=True), PublishStarted)
    assert isinstance(rtmp(node.publish_url(stream="direct"), LISTED, publish=True), Refused)


def test_srt_ingest_follows_the_ingest_domains_ip_list(node):
    set_lists(node, INGEST, ip_mode="allow", ip_entries=(OTHER,))
    assert srt(node, LISTED, srt_publish_id("srt1")) == REJECT_FORBIDDEN
    assert srt(node, OTHER, srt_publish_id("srt2")) == 0
    assert node.wait_for(
        lambda: any(
            isinstance(e, PublishRefused)
            and (e.protocol, e.stream, e.code) == ("srt", "srt1", REJECT_FORBIDDEN)
            and e.reason == "address 127.0.0.2 is not on the domain's allow list"
            for e in node.sink.events
        )
    )


# --- from the console to a running node ---------------------------------------------------------


@pytest.mark.backends
@pytest.mark.django_db(transaction=True)
def test_a_change_in_the_console_reaches_a_running_node_within_seconds(owner, monkeypatch):
    from domains import services
    from nodes import bridge
    from tests.test_streams_live import DatabaseNode, local, wait_until

    push = services.add_domain(owner, "push.acl.test", "ingest", "overseas", "ap-southeast-1")
    play = services.add_domain(owner, "play.acl.test", "streaming", "overseas", "ap-southeast-1")
    services.associate_ingest(play, push.domain_name)
    with DatabaseNode() as media:
        urls = services.generate_urls(owner, "push.acl.test", "live", "cam1")
        publisher = start_publisher(local(urls.ingest["rtmp"], media.node.rtmp_port), seconds=90, size="320x240")
        try:
            url = local(urls.playback["flv"], media.node.http_port)
            assert wait_until(lambda: fetch(url, LISTED, read=3)[0] == 200, timeout=30)
            # A node in another process hears of no save: its policy cache
            # (LIVECENTER_POLICY_CACHE_SECONDS) brings the change within seconds.
            with monkeypatch.context() as patch:
                patch.setattr(bridge, "forget_domain", lambda host: None)
                services.configure_access_control(play, ip_mode="deny", ip_entries=[LISTED])
                assert wait_until(lambda: fetch(url, LISTED, read=3)[0] == 403, timeout=10)
            assert refusal(fetch(url, LISTED, read=3)) == (403, "address 127.0.0.2 is on the domain's deny list")
            assert fetch(url, OTHER, read=3)[0] == 200
            # This process's node is told at once (nodes.receivers.forget_changed_domain).
            services.configure_access_control(play, ip_mode="off")
            assert wait_until(lambda: fetch(url, LISTED, read=3)[0] == 200, timeout=10)
        finally:
            publisher.stop()
