"""Encrypted HLS and LL-HLS served by the media node on real sockets: ffmpeg
publishes; ffprobe decrypts and decodes through the signed playlist; keys
are refused without the playlist's token; keys rotate; a domain without
encryption is unchanged, and so is HTTP-FLV on one with it."""

from __future__ import annotations

import re
import time
import urllib.error
import urllib.request
from urllib.parse import urljoin

import pytest
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from livecenter.media.policy import DomainConfig, MemoryPolicy
from livecenter.media.signing import make_segment_token, sign
from tests.mediasupport import (
    INGEST,
    INGEST_KEY,
    PLAY,
    PLAY_KEY,
    VALIDITY_SECONDS,
    NodeThread,
    probe_packets,
    start_publisher,
)

pytestmark = pytest.mark.media

PLAIN = "plain.test"  # a second streaming domain of the same ingest domain, in clear
ROTATION_SEGMENTS = 2
KEY_URI = re.compile(r'^#EXT-X-KEY:METHOD=AES-128,URI="([^"]+)"$', re.M)


@pytest.fixture
def media():
    policy = MemoryPolicy(
        domains={
            INGEST: DomainConfig(INGEST, "ingest", True, (INGEST_KEY,), VALIDITY_SECONDS),
            PLAY: DomainConfig(
                PLAY, "streaming", True, (PLAY_KEY,), VALIDITY_SECONDS, ingest_domain=INGEST,
                hls_encryption=True, hls_key_rotation_segments=ROTATION_SEGMENTS,
            ),
            PLAIN: DomainConfig(PLAIN, "streaming", True, (PLAY_KEY,), VALIDITY_SECONDS, ingest_domain=INGEST),
        }
    )  # fmt: skip
    node = NodeThread(policy=policy, play_wait_seconds=3).start()
    publisher = start_publisher(node.publish_url(), seconds=40, size="640x360")
    assert node.wait_for(lambda: bool(node.node.hub.live_keys())), publisher.stop()
    yield node
    publisher.stop()
    node.stop()


def m3u8_url(media, domain=PLAY, extra="") -> str:
    token = sign("/live/cam1.m3u8", PLAY_KEY, int(time.time()))
    return f"{media.http}/live/cam1.m3u8?auth_key={token}&domain={domain}{extra}"


def fetch(url: str, timeout: float = 15) -> tuple[int, dict, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def playlist(media, domain=PLAY) -> str:
    status, _, body = fetch(m3u8_url(media, domain))
    assert status == 200, body
    return body.decode()


def decrypt(key: bytes, msn: int, data: bytes) -> bytes:
    """AES-128-CBC with the sequence number as IV and PKCS7 padding (RFC 8216
    5.2), with the cryptography package directly, not the node's code."""
    decryptor = Cipher(algorithms.AES(key), modes.CBC(msn.to_bytes(16, "big"))).decryptor()
    unpadder = padding.PKCS7(128).unpadder()
    return unpadder.update(decryptor.update(data) + decryptor.finalize()) + unpadder.finalize()


def is_ts(data: bytes) -> bool:
    return len(data) > 0 and len(data) % 188 == 0 and all(data[i] == 0x47 for i in range(0, len(data), 188))


def key_in_effect(text: str, uri: str) -> str:
    """The URI of the EXT-X-KEY that applies to the media at `uri`."""
    return KEY_URI.findall(text[: text.index(uri)])[-1]


def key_starts(text: str) -> list[int]:
    """The MSN of the first segment or part each EXT-X-KEY applies to."""
    starts, after_key = [], False
    for line in text.splitlines():
        if line.startswith("#EXT-X-KEY:"):
            after_key = True
        elif after_key and (line.startswith("#EXT-X-PART:") or not line.startswith("#")):
            starts.append(int(re.search(r"cam1/(?:seg|part)_(\d+)", line).group(1)))
            after_key = False
    return starts


def test_an_encrypted_stream_is_decrypted_and_decoded_by_ffprobe(media):
    text = playlist(media)
    assert KEY_URI.search(text), text
    assert "IV=" not in text  # the IV is the sequence number (RFC 8216 5.2)
    segment = re.search(r"^(cam1/seg_\d+\.ts\?token=\S+)$", text, re.M).group(1)
    status, _, data = fetch(urljoin(m3u8_url(media), segment))
    assert status == 200 and not is_ts(data) and len(data) % 16 == 0
    packets = probe_packets(m3u8_url(media), seconds=4)
    times = [float(p["dts_time"]) for p in packets]
    assert len(times) >= 60
    assert all(b > a for a, b in zip(times, times[1:], strict=False)), "timestamps not increasing"


def test_a_segment_decrypts_with_the_key_the_playlist_names(media):
    text = playlist(media)
    match = re.search(r"^(cam1/seg_(\d+)\.ts\?token=\S+)$", text, re.M)
    key_uri = key_in_effect(text, match.group(1))
    status, headers, key = fetch(urljoin(m3u8_url(media), key_uri))
    assert status == 200 and len(key) == 16
    assert headers["Content-Type"] == "application/octet-stream"
    assert headers["Cache-Control"] == "private, no-store"
    data = fetch(urljoin(m3u8_url(media), match.group(1)))[2]
    assert is_ts(decrypt(key, int(match.group(2)), data))


def test_the_parts_of_an_encrypted_segment_each_decrypt_into_mpeg_ts(media):
    text = playlist(media)
    parts = re.findall(r'#EXT-X-PART:[^\n]*URI="(cam1/part_(\d+)_(\d+)\.ts\?token=[^"]+)"', text)
    assert len(parts) >= 3, text
    for uri, msn, _ in parts[-3:]:
        key = fetch(urljoin(m3u8_url(media), key_in_effect(text, uri)))[2]
        status, _, data = fetch(urljoin(m3u8_url(media), uri))
        assert status == 200 and len(data) % 16 == 0
        assert is_ts(decrypt(key, int(msn), data))  # on its own, with its segment's key and IV


def test_keys_rotate_every_n_segments(media):
    # Two keys in one playlist window: the window holds six one-second segments, a key lasts two.
    deadline = time.monotonic() + 30
    keys: list[str] = []
    while time.monotonic() < deadline:
        text = playlist(media)
        keys = KEY_URI.findall(text)
        if len(keys) >= 2:
            break
        time.sleep(0.5)
    assert len(set(keys)) == len(keys) >= 2, keys
    segments = [int(m) for m in re.findall(r"^cam1/seg_(\d+)\.ts", text, re.M)]
    # A key line before the first segment, then where (msn - 1) is a multiple of the period.
    starts = key_starts(text)
    assert starts[0] == min(segments)
    assert all((msn - 1) % ROTATION_SEGMENTS == 0 for msn in starts[1:]), (starts, text)
    values = {fetch(urljoin(m3u8_url(media), uri))[2] for uri in keys}
    assert len(values) == len(keys) and all(len(v) == 16 for v in values)


def test_the_key_url_needs_the_playlists_token(media):
    text = playlist(media)
    key_uri = KEY_URI.search(text).group(1)
    path, _, query = key_uri.partition("?token=")
    base = urljoin(m3u8_url(media), path)
    assert fetch(f"{base}?token={query}")[0] == 200

    code, headers, _ = fetch(base)
    assert (code, headers["X-LiveCenter-Error"]) == (403, "no token")
    tampered = query[:-1] + ("0" if query[-1] != "0" else "1")
    code, headers, _ = fetch(f"{base}?token={tampered}")
    assert (code, headers["X-LiveCenter-Error"]) == (403, "invalid token")
    name = media.run_sync(lambda: next(s.name for s in media.node.hls.streams.values() if s.key_rotation_segments))
    expired = make_segment_token(media.node.hls.secret, name, int(time.time()) - 1)
    code, headers, _ = fetch(f"{base}?token={expired}")
    assert (code, headers["X-LiveCenter-Error"]) == (403, "expired token")
    # The token of the same stream's playlist on a domain in clear opens no key.
    clear_token = re.search(r"^cam1/seg_\d+\.ts\?token=(\S+)$", playlist(media, PLAIN), re.M).group(1)
    code, headers, _ = fetch(f"{base}?token={clear_token}")
    assert (code, headers["X-LiveCenter-Error"]) == (403, "invalid token")
    # And the signed playlist URL's own auth_key is no token either.
    code, _, _ = fetch(f"{base}?auth_key={sign('/live/cam1.m3u8', PLAY_KEY, int(time.time()))}")
    assert code == 403


def test_a_domain_without_encryption_is_unchanged(media):
    text = playlist(media, PLAIN)
    assert "#EXT-X-KEY" not in text and "key_" not in text
    segment = re.search(r"^(cam1/seg_\d+\.ts\?token=\S+)$", text, re.M).group(1)
    status, _, data = fetch(urljoin(m3u8_url(media, PLAIN), segment))
    assert status == 200 and is_ts(data)


def test_http_flv_is_not_encrypted_on_an_encrypted_domain(media):
    with urllib.request.urlopen(media.flv_url(), timeout=15) as response:
        head = response.read(13)
    assert head[:3] == b"FLV"
