"""AMF0, the Action Message Format RTMP commands and FLV script tags use
(Adobe, "Action Message Format -- AMF 0", December 2007).

Pure: bytes in, Python values out, and back. Decoding is O(bytes): one
memoryview and an offset, `struct.unpack_from`, no per-byte loops; nesting is
bounded by `max_depth`, and a count in the data never makes us loop more
than the bytes that are there.

    number -> float         boolean -> bool        string, long string -> str
    object -> dict          ECMA array -> AmfEcmaArray (a dict)
    strict array -> list    null -> None           undefined -> AmfUndefined
    date -> datetime (UTC)  XML document -> str    typed object -> dict
"""

from __future__ import annotations

import datetime as dt
import struct
from collections.abc import Callable

# AMF0 2.1: type markers.
NUMBER = 0x00
BOOLEAN = 0x01
STRING = 0x02
OBJECT = 0x03
MOVIECLIP = 0x04  # reserved, not supported
NULL = 0x05
UNDEFINED = 0x06
REFERENCE = 0x07
ECMA_ARRAY = 0x08
OBJECT_END = 0x09
STRICT_ARRAY = 0x0A
DATE = 0x0B
LONG_STRING = 0x0C
UNSUPPORTED = 0x0D
RECORDSET = 0x0E  # reserved, not supported
XML_DOCUMENT = 0x0F
TYPED_OBJECT = 0x10
AVMPLUS = 0x11  # switch to AMF3

# Objects and arrays nested deeper than this are refused: real commands and
# metadata nest two or three levels; the limit keeps recursion (and the work a
# hostile peer can ask for) small.
MAX_AMF_DEPTH = 16

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MAX_SHORT_STRING_BYTES = 0xFFFF
_OBJECT_END_BYTES = b"\x00\x00\x09"


class AmfError(ValueError):
    """The bytes are not valid AMF0 (or use a part of it we do not decode)."""


class _Undefined:
    """AMF0 `undefined`, which is not `null` (None)."""

    _instance: _Undefined | None = None

    def __new__(cls) -> _Undefined:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "AmfUndefined"

    def __bool__(self) -> bool:
        return False


AmfUndefined = _Undefined()


class AmfEcmaArray(dict):
    """An AMF0 ECMA (associative) array: a dict that encodes with marker 8,
    as `onMetaData` is sent."""


def decode_all(data: bytes | bytearray | memoryview, max_depth: int = MAX_AMF_DEPTH) -> list:
    """Every value in `data`, in order. Raises AmfError on bad or truncated data."""
    with memoryview(data) as view:
        decoder = _Decoder(view.cast("B") if view.format != "B" else view, max_depth)
        values = []
        while decoder.offset < decoder.end:
            values.append(decoder.value(0))
        return values


def encode(*values: object) -> bytes:
    """The AMF0 encoding of `values`, one after another."""
    out = bytearray()
    for value in values:
        _encode(out, value)
    return bytes(out)


class _Decoder:
    __slots__ = ("data", "end", "offset", "max_depth")

    def __init__(self, data: memoryview, max_depth: int) -> None:
        self.data = data
        self.end = len(data)
        self.offset = 0
        self.max_depth = max_depth

    def _need(self, size: int, what: str) -> int:
        """Claim `size` bytes; return where they start."""
        start = self.offset
        if self.end - start < size:
            raise AmfError(f"truncated AMF0 {what} at byte {start}")
        self.offset = start + size
        return start

    def _text(self, size: int, what: str) -> str:
        start = self._need(size, what)
        # Peers do send Latin-1 in metadata (encoder and device names);
        # that is no reason to drop a connection.
        return str(self.data[start : start + size], "utf-8", "replace")

    def value(self, depth: int) -> object:
        start = self._need(1, "type marker")
        marker = self.data[start]
        handler = _DECODERS.get(marker)
        if handler is None:
            raise AmfError(f"unsupported AMF0 type marker {marker:#04x} at byte {start}")
        return handler(self, depth)

    def _number(self, depth: int) -> float:
        return struct.unpack_from(">d", self.data, self._need(8, "number"))[0]

    def _boolean(self, depth: int) -> bool:
        return self.data[self._need(1, "boolean")] != 0

    def _string(self, depth: int) -> str:
        (size,) = struct.unpack_from(">H", self.data, self._need(2, "string length"))
        return self._text(size, "string")

    def _long_string(self, depth: int) -> str:
        (size,) = struct.unpack_from(">I", self.data, self._need(4, "long string length"))
        return self._text(size, "long string")

    def _null(self, depth: int) -> None:
        return None

    def _undefined(self, depth: int) -> _Undefined:
        return AmfUndefined

    def _reference(self, depth: int) -> object:
        raise AmfError(f"AMF0 references are not supported (byte {self.offset - 1})")

    def _object_end(self, depth: int) -> object:
        raise AmfError(f"unexpected AMF0 object end at byte {self.offset - 1}")

    def _enter(self, depth: int) -> None:
        if depth >= self.max_depth:
            raise AmfError(f"AMF0 nesting deeper than {self.max_depth}")

    def _properties(self, result: dict, depth: int, count: int | None = None) -> dict:
        """Key/value pairs up to the object end marker (AMF0 2.5)."""
        data = self.data
        while True:
            if count is not None and self.offset == self.end and len(result) >= count:
                # Some encoders end an ECMA array at its count without the end
                # marker; accept that when the data ends there.
                return result
            (size,) = struct.unpack_from(">H", data, self._need(2, "property name length"))
            if size == 0 and self.offset < self.end and data[self.offset] == OBJECT_END:
                self.offset += 1
                return result
            key = self._text(size, "property name")
            result[key] = self.value(depth + 1)

    def _object(self, depth: int) -> dict:
        self._enter(depth)
        return self._properties({}, depth)

    def _ecma_array(self, depth: int) -> AmfEcmaArray:
        self._enter(depth)
        (count,) = struct.unpack_from(">I", self.data, self._need(4, "ECMA array count"))
        return self._properties(AmfEcmaArray(), depth, count)

    def _strict_array(self, depth: int) -> list:
        self._enter(depth)
        (count,) = struct.unpack_from(">I", self.data, self._need(4, "strict array count"))
        # Every value takes at least one byte: a count larger than what is
        # left is truncated data, found before looping over it.
        if count > self.end - self.offset:
            raise AmfError(f"truncated AMF0 strict array at byte {self.offset}")
        return [self.value(depth + 1) for _ in range(count)]

    def _date(self, depth: int) -> dt.datetime:
        # AMF0 2.13: milliseconds since the epoch (UTC), then a time zone
        # field that "should be" zero and is ignored.
        (millis, _zone) = struct.unpack_from(">dh", self.data, self._need(10, "date"))
        try:
            return _EPOCH + dt.timedelta(milliseconds=millis)
        except (OverflowError, ValueError):
            raise AmfError(f"AMF0 date out of range: {millis!r}") from None

    def _xml_document(self, depth: int) -> str:
        (size,) = struct.unpack_from(">I", self.data, self._need(4, "XML document length"))
        return self._text(size, "XML document")

    def _typed_object(self, depth: int) -> dict:
        self._enter(depth)
        self._string(depth)  # the class name; we keep the properties only
        return self._properties({}, depth)


_DECODERS: dict[int, Callable[[_Decoder, int], object]] = {
    NUMBER: _Decoder._number,
    BOOLEAN: _Decoder._boolean,
    STRING: _Decoder._string,
    OBJECT: _Decoder._object,
    NULL: _Decoder._null,
    UNDEFINED: _Decoder._undefined,
    REFERENCE: _Decoder._reference,
    ECMA_ARRAY: _Decoder._ecma_array,
    OBJECT_END: _Decoder._object_end,
    STRICT_ARRAY: _Decoder._strict_array,
    DATE: _Decoder._date,
    LONG_STRING: _Decoder._long_string,
    UNSUPPORTED: _Decoder._undefined,
    XML_DOCUMENT: _Decoder._xml_document,
    TYPED_OBJECT: _Decoder._typed_object,
}

_NUMBER = struct.Struct(">Bd")
_DATE = struct.Struct(">Bdh")


def _encode_key(out: bytearray, key: object) -> None:
    if not isinstance(key, str):
        raise TypeError(f"AMF0 property names must be str, not {type(key).__name__}")
    raw = key.encode()
    if len(raw) > _MAX_SHORT_STRING_BYTES:
        raise ValueError("AMF0 property name longer than 65535 bytes")
    out += struct.pack(">H", len(raw))
    out += raw


def _encode_properties(out: bytearray, value: dict) -> None:
    for key, item in value.items():
        _encode_key(out, key)
        _encode(out, item)
    out += _OBJECT_END_BYTES


def _encode(out: bytearray, value: object) -> None:
    if value is None:
        out.append(NULL)
    elif value is AmfUndefined:
        out.append(UNDEFINED)
    elif isinstance(value, bool):  # before int: bool is an int
        out += bytes((BOOLEAN, value))
    elif isinstance(value, int | float):
        out += _NUMBER.pack(NUMBER, value)
    elif isinstance(value, str):
        raw = value.encode()
        if len(raw) <= _MAX_SHORT_STRING_BYTES:
            out += struct.pack(">BH", STRING, len(raw))
        else:
            out += struct.pack(">BI", LONG_STRING, len(raw))
        out += raw
    elif isinstance(value, AmfEcmaArray):
        out += struct.pack(">BI", ECMA_ARRAY, len(value))
        _encode_properties(out, value)
    elif isinstance(value, dict):
        out.append(OBJECT)
        _encode_properties(out, value)
    elif isinstance(value, list | tuple):
        out += struct.pack(">BI", STRICT_ARRAY, len(value))
        for item in value:
            _encode(out, item)
    elif isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        out += _DATE.pack(DATE, (value - _EPOCH) / dt.timedelta(milliseconds=1), 0)
    else:
        raise TypeError(f"cannot encode {type(value).__name__} as AMF0")
