"""AES-128 HLS encryption (livecenter/media/hls_crypto.py and the packager's
use of it in hls.py): the key schedule, the IV, the playlist text and the
encrypted bytes, without sockets. Media comes from the ffmpeg CLI (as in
test_hls.py); the decrypted segments and parts are judged as MPEG-TS."""

from __future__ import annotations

import itertools
import re

import pytest

from livecenter.media import hls
from livecenter.media.hls import HlsPackager, parse_key_uri, parse_media_uri
from livecenter.media.hls_crypto import (
    KEY_MARGIN_KEYS,
    HlsKeyring,
    decrypt_aes128,
    encrypt_aes128,
    encrypt_vod_playlist,
    key_tag,
    sequence_iv,
)
from livecenter.media.policy import DomainConfig
from tests.test_hls import Playlist, check_playlist_rules, feed
from tests.test_mpegts import ffmpeg_decode_errors, ffmpeg_flv, flv_tags, ts_packets

FIRST = hls.FIRST_MEDIA_SEQUENCE
KEY_LINE = re.compile(r'^#EXT-X-KEY:METHOD=AES-128,URI="([^"]+)"$', re.M)


def counting_keys():
    """A key source whose keys are 16 bytes and tell apart: 00.., 01.., ..."""
    counter = itertools.count()
    return lambda size: bytes([next(counter)]) * size


def encrypted(seconds: float = 6, rotation: int = 2, **options) -> HlsPackager:
    packager = HlsPackager(
        window_segments=options.pop("window_segments", 10),
        key_rotation_segments=rotation,
        random_bytes=counting_keys(),
        uri_prefix="cam1/",
        **options,
    )
    feed(packager, flv_tags(ffmpeg_flv(seconds=seconds)))
    return packager


def key_of(packager: HlsPackager, uri: str) -> bytes:
    name = uri.split("?")[0].rsplit("/", 1)[-1]
    return packager.key(parse_key_uri(name))


def listed_keys(text: str) -> list[tuple[str, int]]:
    """(key URI, MSN of the first segment or part after it) of each EXT-X-KEY."""
    keys, lines = [], text.splitlines()
    for index, line in enumerate(lines):
        match = KEY_LINE.match(line)
        if match is None:
            continue
        media = (t for t in lines[index + 1 :] if t.startswith("#EXT-X-PART:") or (t and not t.startswith("#")))
        following = next(media, None)
        if following is None:
            continue  # the key of the hinted part's segment, before EXT-X-PRELOAD-HINT
        uri = re.search(r'URI="([^"]+)"', following)[1] if following.startswith("#") else following
        keys.append((match[1], parse_media_uri(uri.split("?")[0].rsplit("/", 1)[-1]).msn))
    return keys


# --- the pieces -----------------------------------------------------------------------


def test_it_takes_the_iv_from_the_media_sequence_number():
    # RFC 8216 5.2: big-endian, 16 bytes.
    assert sequence_iv(1) == bytes(15) + b"\x01"
    assert sequence_iv(0x0102) == bytes(14) + b"\x01\x02"


def test_it_round_trips_aes_128_cbc_with_pkcs7_padding():
    key, iv = bytes(range(16)), sequence_iv(7)
    for size in (0, 1, 15, 16, 17, 188 * 7):
        data = bytes(range(256)) * (size // 256 + 1)
        data = data[:size]
        sealed = encrypt_aes128(key, iv, data)
        assert len(sealed) == (size // 16 + 1) * 16  # PKCS7 always pads, a whole block at a boundary
        assert decrypt_aes128(key, iv, sealed) == data
    with pytest.raises(ValueError):
        decrypt_aes128(bytes(16), iv, encrypt_aes128(key, iv, b"x" * 40))  # wrong key: bad padding


def test_it_makes_a_key_every_n_segments_and_destroys_old_ones():
    ring = HlsKeyring(3, FIRST, counting_keys())
    ids = [ring.key_for(msn)[0] for msn in range(FIRST, FIRST + 9)]
    assert ids == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert ring.get(0) == bytes(16) and ring.get(1) == b"\x01" * 16
    ring.keep_from(FIRST + 7)  # key 2's; one more is kept as a margin
    assert ring.key_ids == list(range(2 - KEY_MARGIN_KEYS, 3))
    assert "\\x" not in repr(ring) and "b'" not in repr(ring)  # keys never in a log line


def test_it_refuses_a_rotation_out_of_range():
    for bad in (0, 1001):
        with pytest.raises(ValueError, match="key rotation must be 1-1000 segments"):
            HlsKeyring(bad, FIRST, counting_keys())


def test_it_writes_the_key_tag_without_an_iv():
    assert key_tag("cam1/key_3.key?token=t") == '#EXT-X-KEY:METHOD=AES-128,URI="cam1/key_3.key?token=t"'


def test_it_reads_key_uris_back():
    assert parse_key_uri("key_12.key") == 12
    for bad in ("key_.key", "key_1.ts", "seg_1.ts", "key_1.key.key", "key_" + "9" * 19 + ".key"):
        assert parse_key_uri(bad) is None


def test_a_domain_encrypts_the_apps_it_names_or_all():
    base = DomainConfig("play.example.com", "streaming", True, None, 3600)
    assert base.hls_key_period("live") == 0
    on = DomainConfig("play.example.com", "streaming", True, None, 3600, hls_encryption=True)
    assert on.hls_key_period("live") == 10
    some = DomainConfig(
        "p", "streaming", True, None, 3600, hls_encryption=True, hls_key_rotation_segments=2, hls_encryption_apps=("a",)
    )
    assert (some.hls_key_period("a"), some.hls_key_period("b")) == (2, 0)


# --- the packager ---------------------------------------------------------------------


def test_an_unencrypted_packager_writes_no_key_and_serves_clear_ts():
    packager = HlsPackager(window_segments=10, random_bytes=lambda n: pytest.fail("no key is made"))
    feed(packager, flv_tags(ffmpeg_flv(seconds=4)))
    for low_latency in (False, True):
        assert "#EXT-X-KEY" not in packager.playlist(low_latency=low_latency, token="t")
    assert packager.segment(FIRST)[0] == 0x47 and packager.key(0) is None


def test_it_rotates_keys_at_the_configured_period_and_says_so_where_they_change():
    packager = encrypted(seconds=6, rotation=2)
    text = packager.playlist(low_latency=False, token="tok")
    check_playlist_rules(Playlist(text))
    keys = listed_keys(text)
    msns = [int(m) for m in re.findall(r"^cam1/seg_(\d+)\.ts", text, re.M)]
    assert len(msns) >= 5
    # One EXT-X-KEY before the first segment, then one where (msn - 1) // 2 changes.
    assert [msn for _, msn in keys] == [msns[0]] + [m for m in msns[1:] if (m - FIRST) % 2 == 0]
    assert all(uri.startswith("cam1/key_") and uri.endswith("?token=tok") for uri, _ in keys)
    assert len({uri for uri, _ in keys}) == len(keys) >= 2  # different keys, each named once
    assert len({key_of(packager, uri) for uri, _ in keys}) == len(keys)


def test_its_segments_decrypt_with_their_key_and_sequence_iv_into_decodable_ts(tmp_path):
    packager = encrypted(seconds=6, rotation=2)
    text = packager.playlist(low_latency=False, token="tok")
    keys = listed_keys(text)
    decoded = bytearray()
    for msn in (int(m) for m in re.findall(r"^cam1/seg_(\d+)\.ts", text, re.M)):
        uri = [u for u, first in keys if first <= msn][-1]
        sealed = packager.segment(msn)
        assert sealed[0] != 0x47 or sealed[188] != 0x47  # not clear TS
        clear = decrypt_aes128(key_of(packager, uri), sequence_iv(msn), sealed)
        assert len(ts_packets(clear)) > 0
        decoded += clear
    path = tmp_path / "all.ts"
    path.write_bytes(bytes(decoded))
    assert ffmpeg_decode_errors(path) == ""


def test_each_part_decrypts_on_its_own_and_the_parts_make_up_the_segment():
    packager = encrypted(seconds=4, rotation=1)
    text = packager.playlist(low_latency=True, token="tok")
    check_playlist_rules(Playlist(text))
    keys = listed_keys(text)
    playlist = Playlist(text)
    checked = 0
    for segment in playlist.segments:
        if not segment["parts"]:
            continue
        msn = parse_media_uri(segment["uri"].split("?")[0].rsplit("/", 1)[-1]).msn
        key = key_of(packager, [u for u, first in keys if first <= msn][-1])
        clear_parts = []
        for part in segment["parts"]:
            ref = parse_media_uri(part["uri"].split("?")[0].rsplit("/", 1)[-1])
            clear = decrypt_aes128(key, sequence_iv(msn), packager.part(ref.msn, ref.part))
            ts_packets(clear)  # whole TS packets, as hls.js parses a part
            assert clear[0] == 0x47
            clear_parts.append(clear)
        whole = decrypt_aes128(key, sequence_iv(msn), packager.segment(msn))
        assert whole == b"".join(clear_parts)
        checked += 1
    assert checked >= 2


def test_the_open_segment_names_its_key_before_its_first_part():
    packager = encrypted(seconds=3.5, rotation=1)
    text = packager.playlist(low_latency=True, token="tok")
    assert Playlist(text).open is not None
    tail = text[text.rindex("\ncam1/seg_") + 1 :]  # after the last complete segment
    assert KEY_LINE.search(tail).start() < tail.index("#EXT-X-PART:")


def test_it_keeps_the_keys_of_the_media_it_holds_plus_a_margin_only():
    packager = encrypted(seconds=12, rotation=1, window_segments=3, retained_segments=1)
    held = [msn for msn in range(FIRST, FIRST + 20) if packager.segment(msn) is not None]
    assert len(held) == 4  # the window and the retained segment
    oldest = packager.keyring.key_id(held[0])
    assert packager.keyring.key_ids[0] == oldest - KEY_MARGIN_KEYS
    assert packager.key(oldest - KEY_MARGIN_KEYS - 1) is None
    assert len(packager.keyring.key_ids) <= len(held) + KEY_MARGIN_KEYS + 1  # + the open segment's


def test_it_names_one_key_in_a_vod_playlist_and_gives_each_segment_its_sequence_number():
    text = (
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:5\n#EXT-X-PLAYLIST-TYPE:VOD\n"
        "#EXTINF:2.000000,\nrec_00000.ts\n#EXTINF:1.500000,\nrec_00001.ts\n#EXT-X-ENDLIST\n"
    )
    sealed, segments = encrypt_vod_playlist(text, "rec.key")
    assert segments == [("rec_00000.ts", 5), ("rec_00001.ts", 6)]
    lines = sealed.splitlines()
    assert lines[lines.index('#EXT-X-KEY:METHOD=AES-128,URI="rec.key"') + 1] == "#EXTINF:2.000000,"
    assert sealed.count("#EXT-X-KEY") == 1 and sealed.endswith("#EXT-X-ENDLIST\n")
    assert encrypt_vod_playlist("#EXTM3U\n#EXTINF:1,\na.ts\n", "k")[1] == [("a.ts", 0)]  # RFC 8216 4.3.3.2
    with pytest.raises(ValueError, match="already encrypted"):
        encrypt_vod_playlist(sealed, "rec.key")


def test_a_hinted_part_under_a_new_key_has_its_key_named_before_the_hint():
    packager = encrypted(seconds=3, rotation=1)
    text = packager.playlist(low_latency=True, token="tok")
    hint = Playlist(text).preload_hint
    ref = parse_media_uri(re.search(r'URI="cam1/([^"?]+)', hint)[1])
    before_hint = text[: text.index("#EXT-X-PRELOAD-HINT")]
    last_key = KEY_LINE.findall(before_hint)[-1]
    assert parse_key_uri(last_key.split("?")[0].rsplit("/", 1)[-1]) == packager.keyring.key_id(ref.msn)
    assert key_of(packager, last_key) is not None
