"""Type A signing: the published vector, and properties of sign/verify."""

import re
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from livecenter.media.signing import (
    AuthFailure,
    check_segment_token,
    make_segment_token,
    md5hash,
    parse_auth_key,
    sign,
    verify,
)

DAY_SECONDS = 1440 * 60


def test_it_matches_the_published_vector():
    assert md5hash("/video/standard", 1622194197, "0", "0", "aliyunliveexp1234") == "5552ff52b5e4e20387c6dc18afce206b"
    assert sign("/video/standard", "aliyunliveexp1234", 1622194197) == "1622194197-0-0-5552ff52b5e4e20387c6dc18afce206b"


def test_it_matches_the_cdn_vector():
    assert md5hash("/video/standard/1K.html", 1444435200, "0", "0", "aliyuncdnexp1234") == (
        "80cd3862d699b7118eed99103f2a3a4f"
    )


def test_it_verifies_the_published_url_inside_its_validity():
    result = verify(
        "/video/standard",
        "1622194197-0-0-5552ff52b5e4e20387c6dc18afce206b",
        ["aliyunliveexp1234"],
        40 * 60,
        now=1622194197 + 40 * 60,
    )
    assert result.ok
    assert result.expires_at == 1622194197 + 40 * 60


def test_it_fails_one_second_after_expiry_with_the_expired_reason():
    result = verify(
        "/video/standard",
        "1622194197-0-0-5552ff52b5e4e20387c6dc18afce206b",
        ["aliyunliveexp1234"],
        40 * 60,
        now=1622194197 + 40 * 60 + 1,
    )
    assert not result.ok
    assert result.failure is AuthFailure.EXPIRED
    assert result.header_value == "denied by req auth: expired timestamp"


def test_it_accepts_the_secondary_key():
    token = sign("/live/a.flv", "secondkey99", 1000)
    assert verify("/live/a.flv", token, ["primarykey1", "secondkey99"], 60, now=1000).ok


def test_it_names_a_missing_token():
    result = verify("/live/a", None, ["k" * 8], 60, now=0)
    assert result.failure is AuthFailure.MISSING
    assert result.header_value == "denied by req auth: no auth_key"
    assert verify("/live/a", "", ["k" * 8], 60, now=0).failure is AuthFailure.MISSING


@pytest.mark.parametrize(
    "token",
    [
        "abc",
        "1-0-0",
        "1-0-0-0-0",
        "x-0-0-5552ff52b5e4e20387c6dc18afce206b",
        "1-0-0-5552FF52B5E4E20387C6DC18AFCE206B",
        "1-0-0-5552ff52b5e4e20387c6dc18afce206",
        "1--0-5552ff52b5e4e20387c6dc18afce206b",
        "1" * 300,
    ],
)
def test_it_refuses_a_malformed_token(token):
    assert verify("/live/a", token, ["key123"], 60, now=0).failure is AuthFailure.MALFORMED


def test_it_says_invalid_md5hash_for_a_wrong_key_without_naming_keys():
    token = sign("/live/a", "rightkey1", 100)
    result = verify("/live/a", token, ["wrongkey1", "wrongkey2"], 60, now=100)
    assert result.failure is AuthFailure.BAD_HASH
    assert "wrongkey" not in result.header_value and "rightkey" not in result.header_value


def test_it_binds_the_token_to_the_uri():
    token = sign("/live/a.flv", "key123", 100)
    assert verify("/live/a.m3u8", token, ["key123"], 60, now=100).failure is AuthFailure.BAD_HASH


def test_it_rejects_bad_arguments_to_sign():
    with pytest.raises(ValueError, match="uri"):
        sign("live/a", "k", 1)
    with pytest.raises(ValueError, match="key"):
        sign("/live/a", "", 1)
    with pytest.raises(ValueError, match="rand"):
        sign("/live/a", "k", 1, rand="a-b")


def test_it_parses_the_four_fields():
    parsed = parse_auth_key("1622194197-477b3bbc-7-5552ff52b5e4e20387c6dc18afce206b")
    assert (parsed.timestamp, parsed.rand, parsed.uid) == (1622194197, "477b3bbc", "7")


paths = st.from_regex(r"\A/[A-Za-z0-9_-]{1,20}/[A-Za-z0-9_-]{1,40}(\.flv|\.m3u8)?\Z")
keys = st.text(alphabet=string.ascii_letters + string.digits, min_size=6, max_size=32)
fields = st.text(alphabet=string.ascii_letters + string.digits, min_size=1, max_size=16)
timestamps = st.integers(min_value=0, max_value=4_000_000_000)


@given(uri=paths, key=keys, ts=timestamps, rand=fields, uid=fields)
def test_it_verifies_a_url_signed_now(uri, key, ts, rand, uid):
    assert verify(uri, sign(uri, key, ts, rand, uid), [key], DAY_SECONDS, now=ts).ok


@given(uri=paths, key=keys, ts=timestamps, data=st.data())
def test_it_refuses_a_url_with_one_character_changed(uri, key, ts, data):
    token = sign(uri, key, ts)
    target = data.draw(st.sampled_from(["uri", "token"]))
    if target == "uri":
        text = uri
        index = data.draw(st.integers(min_value=1, max_value=len(text) - 1))
    else:
        text = token
        index = data.draw(st.integers(min_value=0, max_value=len(text) - 1))
    replacement = data.draw(st.sampled_from(string.ascii_lowercase + string.digits).filter(lambda c: c != text[index]))
    changed = text[:index] + replacement + text[index + 1 :]
    if target == "uri":
        result = verify(changed, token, [key], DAY_SECONDS, now=ts)
    else:
        result = verify(uri, changed, [key], 10**10, now=0)
    assert not result.ok


@given(
    uri=paths, key=keys, ts=timestamps, validity=st.integers(min_value=60, max_value=10**7), late=st.integers(1, 10**6)
)
def test_it_refuses_an_expired_url_with_the_expired_reason(uri, key, ts, validity, late):
    result = verify(uri, sign(uri, key, ts), [key], validity, now=ts + validity + late)
    assert result.failure is AuthFailure.EXPIRED


# --- HLS segment tokens ----------------------------------------------------------

SECRET = b"segment-secret"


def test_it_accepts_a_valid_token_until_it_expires():
    token = make_segment_token(SECRET, "play.test/live/cam1", 1000)
    assert re.fullmatch(r"1000-[0-9a-f]{32}", token)
    assert check_segment_token(SECRET, "play.test/live/cam1", token, now=1000) is None
    assert check_segment_token(SECRET, "play.test/live/cam1", token, now=1001) == "expired token"


def test_it_refuses_tampered_missing_and_foreign_tokens():
    token = make_segment_token(SECRET, "play.test/live/cam1", 1000)
    expires, mac = token.split("-")
    flipped = mac[:-1] + ("0" if mac[-1] != "0" else "1")
    assert check_segment_token(SECRET, "play.test/live/cam1", f"{expires}-{flipped}", 0) == "invalid token"
    assert check_segment_token(SECRET, "play.test/live/cam1", f"2000-{mac}", 0) == "invalid token"
    assert check_segment_token(SECRET, "play.test/live/cam2", token, 0) == "invalid token"
    assert check_segment_token(b"other-secret", "play.test/live/cam1", token, 0) == "invalid token"
    assert check_segment_token(SECRET, "play.test/live/cam1", None, 0) == "no token"
    assert check_segment_token(SECRET, "play.test/live/cam1", "", 0) == "no token"
    assert check_segment_token(SECRET, "play.test/live/cam1", token + "0", 0) == "malformed token"
    assert check_segment_token(SECRET, "play.test/live/cam1", token.upper(), 0) == "malformed token"
