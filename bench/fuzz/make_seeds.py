"""Make the seed corpora in bench/fuzz/seeds/ from real peers.

- RTMP: the bytes ffmpeg sends publishing 1 s of 64x48 H.264 + AAC to our
  connection (the test listener of tests/test_rtmp_ffmpeg.py);
- AMF0: the command and data message payloads of that capture;
- FLV and MPEG-TS (the muxer's input): FLV files ffmpeg writes (with and
  without B-frames, audio only);
- codecs: the sequence headers, SPS, and frames of those files;
- HLS requests: the request heads ffmpeg sends for a playlist, with the
  delivery directives and segment tokens a player adds;
- SDP: offers from aiortc and from Chromium (playwright).

    .venv/bin/python bench/fuzz/make_seeds.py
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


def main() -> None:
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
    for folder in sorted(SEEDS.iterdir()):
        files_ = list(folder.iterdir())
        print(f"{folder.name}: {len(files_)} seeds, {sum(f.stat().st_size for f in files_)} bytes")


if __name__ == "__main__":
    asyncio.set_event_loop_policy(None)
    main()
