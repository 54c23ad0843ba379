"""The fuzz campaign's harnesses (bench/fuzz/targets.py) replayed as tests:
every seed of every target and every "at the limits" input gives the
parser's own protocol error or nothing, and each limit is taken exactly at
the limit and refused one past it. Findings of the campaign are added here
as inputs with what they must give."""

from __future__ import annotations

import importlib.util
import socket
import sys
from pathlib import Path

import pytest

from tests.mediasupport import NodeThread
from tests.test_rtmp_connection import C0C1, C2, Client

FUZZ = Path(__file__).resolve().parents[1] / "bench" / "fuzz"


def _load_targets():
    spec = importlib.util.spec_from_file_location("fuzz_targets", FUZZ / "targets.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


targets = _load_targets()
SEEDS = sorted((FUZZ / "seeds").glob("*/*"))


def test_it_has_seeds_for_every_target():
    assert {path.parent.name for path in SEEDS} == set(targets.TARGETS)


@pytest.mark.parametrize("seed", SEEDS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_it_parses_every_seed_with_no_exception_but_the_protocol_error(seed):
    target = targets.TARGETS[seed.parent.name]
    data = seed.read_bytes()
    for cut in (data, data[:-1] + b"\x00", data[: len(data) // 2]):  # as captured, byte-a-time tail, truncated
        try:
            target.run(cut)
        except target.errors:
            pass


LIMITS = [(name, limit) for name, target in targets.TARGETS.items() for limit in target.limits()]


@pytest.mark.parametrize(("name", "limit"), LIMITS, ids=[f"{n}: {x.label}" for n, x in LIMITS])
def test_it_takes_each_limit_exactly_and_refuses_one_past(name, limit, monkeypatch):
    target = targets.TARGETS[name]
    monkeypatch.setattr(targets, "FEED_WHOLE", True)
    if limit.refused:
        with pytest.raises(target.errors):
            target.run(limit.data)
    else:
        target.run(limit.data)


# --- findings -------------------------------------------------------------------------

OFFER = (
    "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"
    "m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:96 H264/90000\r\na=setup:actpass\r\na=recvonly\r\n"
)


@pytest.mark.parametrize(
    ("good", "bad"),
    [
        ("m=video 9 UDP/TLS/RTP/SAVPF 96", "m=video abc UDP/TLS/RTP/SAVPF 96"),  # AssertionError in aiortc
        ("a=recvonly", "a=rtpmap:97 H264\r\na=recvonly"),  # IndexError
        ("c=IN IP4 0.0.0.0", "c=IN IP4"),  # AssertionError
        ("a=setup:actpass", "a=setup:zzz"),  # KeyError
    ],
)
def test_it_refuses_malformed_offers_with_offer_error(good, bad):
    target = targets.TARGETS["sdp"]
    with pytest.raises(target.errors):
        target.run(OFFER.replace(good, bad).encode())


def _read_all(sock: socket.socket) -> bytes:
    sock.settimeout(30)
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except (ConnectionError, TimeoutError):
        pass
    return received


@pytest.fixture
def node():
    media = NodeThread().start()
    yield media
    media.stop()


def test_it_answers_400_to_a_request_target_urlsplit_cannot_read(node, caplog):
    # bench/fuzz hls_request: "//sl.wh]p" made urlsplit raise ValueError ("Invalid IPv6 URL")
    # out of MediaHttpSession.run: a traceback and no reply.
    with socket.create_connection(("127.0.0.1", node.node.http_port)) as sock:
        sock.sendall(b"GET //x[/live/s.flv HTTP/1.1\r\nHost: a.test\r\n\r\n")
        reply = _read_all(sock)
    assert reply.startswith(b"HTTP/1.1 400"), reply
    assert b"bad request target: Invalid IPv6 URL" in reply
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


def test_it_refuses_a_connect_whose_tcurl_urlsplit_cannot_read(node, caplog):
    # The same ValueError from the tcUrl of an RTMP connect, in RtmpSession.on_connect.
    with socket.create_connection(("127.0.0.1", node.node.rtmp_port)) as sock:
        sock.sendall(C0C1 + C2 + Client().connect(tc_url="rtmp://[x/live"))
        reply = _read_all(sock)
    assert b"_error" in reply and b"tcUrl is not a URL" in reply
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


# Every input the campaign found (bench/fuzz/regressions/TARGET/), replayed.
# The SDP ones are offers aiortc's parser fails on other than with ValueError
# (AssertionError, IndexError, KeyError, AttributeError, StopIteration);
# the offer validation in rts/whep.py (issue 11 item 6) refuses all 20 with OfferError.
FOUND = sorted((FUZZ / "regressions").glob("*/*"))


@pytest.mark.parametrize(
    "found",
    FOUND,
    ids=lambda p: f"{p.parent.name}/{p.name}",
)
def test_it_gives_only_the_protocol_error_on_what_the_fuzzer_found(found):
    target = targets.TARGETS[found.parent.name]
    refused_by_aiortc = targets.AIORTC_REFUSED["offers"]
    try:
        target.run(found.read_bytes())
    except target.errors:
        pass
    # The SDP findings are refused by check_offer itself, with the line, not left to aiortc.
    assert targets.AIORTC_REFUSED["offers"] == refused_by_aiortc


def test_it_writes_back_an_srt_ack_without_a_receive_rate_as_it_read_it():
    # bench/fuzz srt_packets: a full ACK of SRT before 1.2 stops after the link
    # capacity (24 bytes); parse_packet gives receive_rate None, and bytes()
    # wrote a receive rate of 0 that parsed back as 0, not None.
    from livecenter.media.srt.packets import SrtAck, parse_packet

    old = bytes.fromhex("80020000 00000004 00000000 00000000") + bytes(range(24))
    ack = parse_packet(old)
    assert ack.receive_rate_bytes_per_second is None and ack.link_capacity_packets_per_second is not None
    assert bytes(ack) == old
    assert parse_packet(bytes(SrtAck(1, 2, 3, 4, 5, 6, 7, 0))).receive_rate_bytes_per_second == 0


def test_an_srt_connection_behind_a_gap_does_not_walk_its_window_per_datagram():
    # Found reading the srt_listener target's slowest inputs: with one packet
    # held 8,191 past a gap, every later datagram (a keepalive will do)
    # walked the whole window three times (the oldest packet held, twice, and
    # the first lost one for the ACK). The input: a handshake, that packet,
    # then 810 keepalives, which took 2 s of CPU (7 ms now). Replayed here for
    # what it must give; its cost is what the campaign measures.
    target = targets.TARGETS["srt_listener"]
    target.run((FUZZ / "regressions" / "srt_listener" / "srt_listener-37daadba10fc").read_bytes())
