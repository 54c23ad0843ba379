"""AMF0: every type both ways, the nesting limit, and what bad data raises."""

import datetime as dt
import math
import struct

import pytest

from livecenter.media.amf0 import MAX_AMF_DEPTH, AmfEcmaArray, AmfError, AmfUndefined, decode_all, encode


def nested(depth: int) -> dict:
    value: dict = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


def test_it_encodes_each_type_as_the_spec_lays_it_out():
    assert encode(1.5) == b"\x00" + struct.pack(">d", 1.5)
    assert encode(3) == b"\x00" + struct.pack(">d", 3.0)
    assert encode(True, False) == b"\x01\x01\x01\x00"
    assert encode("ab") == b"\x02\x00\x02ab"
    assert encode(None) == b"\x05"
    assert encode(AmfUndefined) == b"\x06"
    assert encode({"k": "v"}) == b"\x03\x00\x01k\x02\x00\x01v\x00\x00\x09"
    assert encode(AmfEcmaArray(k=1)) == b"\x08\x00\x00\x00\x01\x00\x01k\x00" + struct.pack(">d", 1) + b"\x00\x00\x09"
    assert encode([None, True]) == b"\x0a\x00\x00\x00\x02\x05\x01\x01"
    moment = dt.datetime(2021, 5, 28, 9, 29, 57, tzinfo=dt.UTC)
    assert encode(moment) == b"\x0b" + struct.pack(">dh", 1622194197000.0, 0)


def test_it_round_trips_every_type():
    values = [
        0.0,
        -1.25,
        math.inf,
        True,
        False,
        "",
        "héllo ✓",
        "x" * 70000,  # a long string
        None,
        AmfUndefined,
        {"app": "live", "n": 3.0, "inner": {"list": [1.0, "two", None]}},
        AmfEcmaArray(width=1280.0, height=720.0, stereo=True),
        [],
        [AmfEcmaArray(), {}, []],
        dt.datetime(2021, 5, 28, 9, 29, 57, 123000, tzinfo=dt.UTC),
    ]
    decoded = decode_all(encode(*values))
    assert decoded == values
    assert type(decoded[11]) is AmfEcmaArray
    assert type(decoded[10]) is dict
    assert decoded[9] is AmfUndefined
    assert encode("x" * 70000)[0] == 0x0C


def test_it_round_trips_nan():
    (value,) = decode_all(encode(math.nan))
    assert math.isnan(value)


def test_it_treats_a_naive_datetime_as_utc():
    (value,) = decode_all(encode(dt.datetime(1970, 1, 2)))
    assert value == dt.datetime(1970, 1, 2, tzinfo=dt.UTC)


def test_it_decodes_the_types_it_only_reads():
    xml = b"\x0f\x00\x00\x00\x03<a>"
    typed = b"\x10\x00\x03Cls\x00\x01k\x05\x00\x00\x09"
    unsupported = b"\x0d"
    assert decode_all(xml + typed + unsupported) == ["<a>", {"k": None}, AmfUndefined]


def test_it_decodes_an_ecma_array_by_its_end_marker_not_its_count():
    # Encoders get the count wrong; the end marker is what ends it.
    data = b"\x08\x00\x00\x00\x00\x00\x01a\x05\x00\x01b\x05\x00\x00\x09"
    assert decode_all(data) == [AmfEcmaArray(a=None, b=None)]


def test_it_accepts_an_ecma_array_that_ends_with_the_data_at_its_count():
    data = b"\x08\x00\x00\x00\x01\x00\x01a\x05"
    assert decode_all(data) == [AmfEcmaArray(a=None)]


def test_it_replaces_invalid_utf8_instead_of_failing():
    assert decode_all(b"\x02\x00\x02\xff\xfe") == ["\ufffd\ufffd"]


def test_it_decodes_from_a_memoryview_and_a_bytearray():
    data = encode("a", 1.0)
    assert decode_all(memoryview(data)[4:]) == [1.0]
    assert decode_all(bytearray(data)) == ["a", 1.0]


def test_it_allows_nesting_at_the_limit():
    assert decode_all(encode(nested(MAX_AMF_DEPTH))) == [nested(MAX_AMF_DEPTH)]


def test_it_refuses_nesting_past_the_limit():
    with pytest.raises(AmfError, match=f"^AMF0 nesting deeper than {MAX_AMF_DEPTH}$"):
        decode_all(encode(nested(MAX_AMF_DEPTH + 1)))


def test_it_counts_every_kind_of_container_towards_the_depth():
    value = [AmfEcmaArray(a={"b": [[]]})]  # five levels
    assert decode_all(encode(value), max_depth=5) == [value]
    with pytest.raises(AmfError, match="^AMF0 nesting deeper than 4$"):
        decode_all(encode(value), max_depth=4)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x00\x00\x00", "truncated AMF0 number at byte 1"),
        (b"\x01", "truncated AMF0 boolean at byte 1"),
        (b"\x02\x00", "truncated AMF0 string length at byte 1"),
        (b"\x02\x00\x05ab", "truncated AMF0 string at byte 3"),
        (b"\x0c\x00\x00\x00\x09abc", "truncated AMF0 long string at byte 5"),
        (b"\x03\x00\x01k", "truncated AMF0 type marker at byte 4"),
        (b"\x03\x00\x01k\x05", "truncated AMF0 property name length at byte 5"),
        (b"\x03", "truncated AMF0 property name length at byte 1"),
        (b"\x08\x00\x00", "truncated AMF0 ECMA array count at byte 1"),
        (b"\x08\x00\x00\x00\x02\x00\x01a\x05", "truncated AMF0 property name length at byte 9"),
        (b"\x0a\x00\x00\x00\x03\x05\x05", "truncated AMF0 strict array at byte 5"),
        (b"\x0a\xff\xff\xff\xff", "truncated AMF0 strict array at byte 5"),
        (b"\x0b\x00\x00\x00\x00\x00\x00\x00\x00\x00", "truncated AMF0 date at byte 1"),
        (b"\x0f\x00\x00\x00\x05<", "truncated AMF0 XML document at byte 5"),
    ],
)
def test_it_reports_truncated_data(data, reason):
    with pytest.raises(AmfError) as caught:
        decode_all(data)
    assert str(caught.value) == reason


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x07\x00\x01", "AMF0 references are not supported (byte 0)"),
        (b"\x05\x09", "unexpected AMF0 object end at byte 1"),
        (b"\x04", "unsupported AMF0 type marker 0x04 at byte 0"),
        (b"\x0e", "unsupported AMF0 type marker 0x0e at byte 0"),
        (b"\x11\x01", "unsupported AMF0 type marker 0x11 at byte 0"),
        (b"\xff", "unsupported AMF0 type marker 0xff at byte 0"),
        (b"\x0b" + struct.pack(">dh", 1e300, 0), "AMF0 date out of range: 1e+300"),
        (b"\x0b" + struct.pack(">dh", math.nan, 0), "AMF0 date out of range: nan"),
    ],
)
def test_it_refuses_what_it_does_not_decode(data, reason):
    with pytest.raises(AmfError) as caught:
        decode_all(data)
    assert str(caught.value) == reason


def test_it_is_a_value_error():
    assert issubclass(AmfError, ValueError)


def test_it_refuses_to_encode_what_amf0_has_no_type_for():
    with pytest.raises(TypeError, match="cannot encode set as AMF0"):
        encode({1, 2})
    with pytest.raises(TypeError, match="property names must be str"):
        encode({1: "a"})
    with pytest.raises(ValueError, match="longer than 65535 bytes"):
        encode({"k" * 65536: 1})


def test_it_decodes_nothing_from_nothing():
    assert decode_all(b"") == []


def test_it_shows_undefined_plainly():
    assert repr(AmfUndefined) == "AmfUndefined"
    assert not AmfUndefined
