"""Make the seed corpora in bench/fuzz/seeds/ from real peers.

- RTMP: the bytes ffmpeg sends publishing 1 s of 64x48 H.264 + AAC to our
  connection (the test listener of tests/test_rtmp_ffmpeg.py);
- AMF0: the command and data message payloads of that capture;
- FLV and MPEG-TS (the muxer's input): FLV files ffmpeg writes (with and
  without B-frames, audio only);
- codecs: the sequence headers, SPS, and frames of those files;
- HLS requests: the request heads ffmpeg sends for a playlist, with the
  delivery directives and segment tokens a player adds;
- SDP: offers from aiortc and from Chromium (playwright);
- MPEG-TS demuxer (SRT ingest): TS files ffmpeg writes (H.264 + AAC,
  H.264 + E-AC-3, AC-3 in a private stream);
- SRT packets and listener: the datagrams of a real libsrt publisher
  (tests/test_srt_libsrt_vectors.py: its CONCLUSION with HSREQ, stream ID
  and KMREQ, and an encrypted data packet), the control packets of
  tests/test_srt_packets.py, and the publishing session of
  tests/test_srt_fuzz.py; for the listener also a playing session.

    .venv/bin/python bench/fuzz/make_seeds.py            # every target
    .venv/bin/python bench/fuzz/make_seeds.py srt_packets srt_listener mpegts_demux
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from livecenter.media import flv  # noqa: E402
from livecenter.media.rtmp.chunk import RtmpChunkReader  # noqa: E402
from tests.test_rtmp_ffmpeg import answer_all, run_ffmpeg  # noqa: E402
from tests.test_rtmp_fuzz import play_session  # noqa: E402

SEEDS = Path(__file__).resolve().parent / "seeds"
HANDSHAKE_BYTES = 1 + 1536 + 1536
TINY = ("-f", "lavfi", "-i", "testsrc=size=64x48:rate=10", "-f", "lavfi", "-i", "sine=sample_rate=22050")


def save(target: str, data: bytes) -> None:
    folder = SEEDS / target
    folder.mkdir(parents=True, exist_ok=True)
    (folder / hashlib.sha1(data).hexdigest()[:16]).write_bytes(data)


def rtmp_capture() -> bytes:
    args = [*TINY, "-t", "1", "-c:v", "libx264", "-preset", "ultrafast", "-g", "5", "-c:a", "aac", "-b:a", "16k"]
    result, client_bytes, _ = run_ffmpeg([*args, "-f", "flv", "{url}/live/s?auth_key=x"], answer_all)
    assert result.returncode == 0, result.stderr
    return client_bytes


def messages(chunk_stream: bytes) -> list:
    reader = RtmpChunkReader()
    reader.feed(chunk_stream)
    out = []
    while (message := reader.next_message()) is not None:
        out.append(message)
        if message.message_type == 1:
            reader.set_chunk_size(int.from_bytes(message.payload[:4], "big"))
    return out


def ffmpeg_flv(*args: str) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.flv"
        subprocess.run(["ffmpeg", "-nostdin", "-v", "error", *TINY, *args, "-y", str(out)], check=True, timeout=60)
        return out.read_bytes()


def ffmpeg_http_requests() -> list[bytes]:
    """The request head ffmpeg's HLS/HTTP client sends."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(20)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/live/s.m3u8?auth_key=1700000000-0-0-abcdef"
        got: list[bytes] = []

        def serve() -> None:
            sock, _ = listener.accept()
            with sock:
                sock.settimeout(10)
                data = b""
                while b"\r\n\r\n" not in data and (chunk := sock.recv(4096)):
                    data += chunk
                got.append(data)
                sock.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

        thread = threading.Thread(target=serve)
        thread.start()
        subprocess.run(["ffmpeg", "-nostdin", "-v", "quiet", "-i", url, "-f", "null", "-"], timeout=30, check=False)
        thread.join(20)
    head = got[0]
    first, _, rest = head.partition(b"\r\n")
    variants = [
        b"GET /live/s.m3u8?_HLS_msn=12&_HLS_part=3&auth_key=x HTTP/1.1",
        b"GET /live/s.m3u8?_HLS_msn=12 HTTP/1.1",
        b"GET /live/s/seg_12.ts?token=1800000060-0123456789abcdef0123456789abcdef HTTP/1.1",
        b"GET /live/s/part_12_3.ts?token=1800000060-0123456789abcdef0123456789abcdef HTTP/1.1",
        b"GET /live/s.flv?domain=play.test&auth_key=x HTTP/1.1",
        b"OPTIONS /live/s.whep HTTP/1.1",
        b"DELETE /live/s.whep/abcdefghijklmnopqrstuvwx HTTP/1.1",
    ]
    return [head] + [v + b"\r\n" + rest for v in variants]


def aiortc_offer() -> str:
    from tests.test_rts_whep import browser_like_offer

    return browser_like_offer()


def chromium_offer() -> str | None:
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        return None
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page()
            return page.evaluate(
                """async () => {
                const pc = new RTCPeerConnection();
                pc.addTransceiver('video', {direction: 'recvonly'});
                pc.addTransceiver('audio', {direction: 'recvonly'});
                await pc.setLocalDescription(await pc.createOffer());
                await new Promise(r => { if (pc.iceGatheringState === 'complete') r();
                    pc.onicegatheringstatechange = () => pc.iceGatheringState === 'complete' && r();
                    setTimeout(r, 3000); });
                return pc.localDescription.sdp; }"""
            )
        finally:
            browser.close()


def ffmpeg_ts(audio: str, *extra: str) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.ts"
        args = ["-t", "1", "-c:v", "libx264", "-preset", "ultrafast", "-bf", "2", "-g", "5", "-c:a", audio]
        subprocess.run(
            ["ffmpeg", "-nostdin", "-v", "error", *TINY, *args, *extra, "-y", str(out)], check=True, timeout=60
        )
        return out.read_bytes()


def mpegts_demux_seeds() -> None:
    for data in (ffmpeg_ts("aac"), ffmpeg_ts("eac3"), ffmpeg_ts("ac3", "-mpegts_flags", "system_b")):
        save("mpegts_demux", data[:60000])
        save("mpegts_demux", data[len(data) // 2 :])  # joined in the middle: PSI repeats, no start


def srt_packets_seeds() -> None:
    from livecenter.media.srt.packets import SrtHandshake, SrtHandshakeType, parse_packet
    from tests.test_srt_libsrt_vectors import CONCLUSION, DATA
    from tests.test_srt_packets import make_conclusion, test_it_round_trips_control_packets

    for datagram in (CONCLUSION, DATA):
        save("srt_packets", b"\x00" + datagram)
    for mark in test_it_round_trips_control_packets.pytestmark:
        if mark.name == "parametrize":
            for packet in mark.args[1]:
                save("srt_packets", b"\x00" + bytes(packet))
    save("srt_packets", b"\x00" + bytes(make_conclusion()))
    save(
        "srt_packets", b"\x00" + bytes(SrtHandshake(version=4, handshake_type=SrtHandshakeType.INDUCTION, socket_id=1))
    )
    save("srt_packets", b"\x00" + bytes(SrtHandshake(version=5, handshake_type=1000 + 1403, socket_id=1)))
    save("srt_packets", b"\x01" + parse_packet(CONCLUSION).km)


def srt_listener_seeds() -> None:
    """Sessions as targets.srt_datagrams reads them. The handshakes go with
    SRT_FIX_COOKIE, what follows with SRT_TO_CONNECTION."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import targets

    from livecenter.media.srt.packets import SrtAck, SrtHandshake, SrtHandshakeType, SrtHsExtension, SrtNak
    from tests.test_srt_fuzz import session
    from tests.test_srt_libsrt_vectors import CONCLUSION, DATA

    right = 1 << 5  # bits 5-6: accept with the right passphrase

    def record(clock: int, flags: int, datagram: bytes) -> bytes:
        return bytes((clock, flags)) + len(datagram).to_bytes(2, "big") + datagram

    fix, to_conn = targets.SRT_FIX_COOKIE, targets.SRT_TO_CONNECTION
    # A real libsrt publisher (encrypted): its INDUCTION, CONCLUSION and a data packet.
    libsrt_induction = bytes(
        SrtHandshake(version=4, handshake_type=SrtHandshakeType.INDUCTION, socket_id=0x27254B74, extension_field=2)
    )
    save(
        "srt_listener",
        record(1, fix | right, libsrt_induction)
        + record(5, fix | right, CONCLUSION)
        + record(5, to_conn, DATA)
        + record(60, to_conn, DATA)
        + record(200, 0, b""),
    )
    # tests/test_srt_fuzz.py's session: encrypted data, ACKACK, keepalive, NAK, drop request, KMREQ, shutdown.
    datagrams = session()
    save("srt_listener", b"".join(record(3, (fix | right) if k < 2 else to_conn, d) for k, d in enumerate(datagrams)))
    # A player (m=request, no passphrase): we send, it acknowledges and asks again.
    play = bytes(
        SrtHandshake(
            version=5,
            handshake_type=SrtHandshakeType.CONCLUSION,
            socket_id=78,
            extension_field=0x5,
            initial_seq=100,
            hs=SrtHsExtension(0x010503, 0xBF, 120, 120),
            stream_id="#!::r=live/cam,m=request",
        )
    )
    send = targets.SRT_SEND_FIRST | to_conn
    save(
        "srt_listener",
        record(
            1,
            fix,
            bytes(SrtHandshake(version=4, handshake_type=SrtHandshakeType.INDUCTION, socket_id=78, extension_field=2)),
        )
        + record(3, fix, play)
        + record(10, send, bytes(SrtAck(101, 1, 20_000, 5_000, 8000, 100, 100, 10_000)))
        + record(10, send, bytes(SrtNak(((101, 102),))))
        + record(10, send, bytes(SrtAck(104)))
        + record(150, send, b"")
        + record(250, 0, b""),
    )


def rtmp_client_seeds() -> None:
    """What our server says to our client, publishing and playing (a
    keyframe, audio and the end of the stream), after the handshake."""
    from tests.test_rtmp_client import AAC, KEYFRAME, META, Pair

    for publish in (True, False):
        pair = Pair(publish=publish)
        server_bytes = bytearray()
        while True:
            to_server, to_client = pair.client.data_to_send(), pair.server.data_to_send()
            if not to_server and not to_client:
                break
            server_bytes += to_client
            if to_server:
                pair.server_events += pair.server.receive_data(to_server)
            if to_client:
                pair.client_events += pair.client.receive_data(to_client)
            pair._answer()
        if not publish:
            stream_id = pair.client.stream_id
            pair.server.send_ping(7)
            pair.server.send_metadata(stream_id, 0, META)
            pair.server.send_video(stream_id, 33, KEYFRAME)
            pair.server.send_audio(stream_id, 34, AAC)
            pair.server.send_unpublish_notify(stream_id)
            server_bytes += pair.server.data_to_send()
        flags = (1 if publish else 0) | 2
        save("rtmp_client", bytes((flags,)) + bytes(server_bytes[HANDSHAKE_BYTES:]))


EXTRA = {
    "rtmp_client": rtmp_client_seeds,
    "mpegts_demux": mpegts_demux_seeds,
    "srt_packets": srt_packets_seeds,
    "srt_listener": srt_listener_seeds,
}


def main() -> None:
    if only := sys.argv[1:]:
        for name in only:
            shutil.rmtree(SEEDS / name, ignore_errors=True)
            EXTRA[name]()
        report()
        return
    shutil.rmtree(SEEDS, ignore_errors=True)
    capture = rtmp_capture()
    chunks = capture[HANDSHAKE_BYTES:]
    save("rtmp_connection", b"\x00" + chunks[:60000])
    save("rtmp_connection", b"\x01" + capture[:20000])
    save("rtmp_connection", b"\x00" + play_session()[HANDSHAKE_BYTES:])
    save("rtmp_chunk", chunks[:60000])
    save("rtmp_chunk", play_session()[HANDSHAKE_BYTES:])
    for message in messages(chunks):
        if message.message_type in (18, 20):
            save("amf0", message.payload)

    files = {
        "av": ffmpeg_flv("-t", "1", "-c:v", "libx264", "-preset", "ultrafast", "-g", "5", "-c:a", "aac"),
        "bframes": ffmpeg_flv("-t", "1", "-c:v", "libx264", "-bf", "2", "-g", "10", "-an"),
        "audio": ffmpeg_flv("-t", "1", "-vn", "-c:a", "aac", "-b:a", "16k"),
    }
    for data in files.values():
        save("flv", data[:60000])
        save("mpegts", data[:60000])
    for data in files.values():
        for tag in flv.FlvReader().receive_data(data)[:12]:
            body = tag.body
            if tag.tag_type == flv.VIDEO and flv.video_is_sequence_header(body):
                save("codecs", b"\x01" + body)
                save("codecs", b"\x02" + body[5:])
                sps_length = int.from_bytes(body[11:13], "big")
                save("codecs", b"\x00" + body[13 : 13 + sps_length])
            elif tag.tag_type == flv.VIDEO:
                save("codecs", b"\x1b" + body[5:])  # selector 3, 4-byte lengths
                save("codecs", b"\x1e" + body)  # selector 6, 4-byte lengths
                save("codecs", b"\x07" + body[9 : 9 + 32])
            elif tag.tag_type == flv.AUDIO and flv.audio_is_sequence_header(body):
                save("codecs", b"\x04" + body)
                save("codecs", b"\x05" + body[2:])

    for request in ffmpeg_http_requests():
        save("hls_request", request)

    save("sdp", aiortc_offer().encode())
    offer = chromium_offer()
    if offer:
        save("sdp", offer.encode())
    for make in EXTRA.values():
        make()
    report()


def report() -> None:
    for folder in sorted(SEEDS.iterdir()):
        files_ = list(folder.iterdir())
        print(f"{folder.name}: {len(files_)} seeds, {sum(f.stat().st_size for f in files_)} bytes")


if __name__ == "__main__":
    asyncio.set_event_loop_policy(None)
    main()
