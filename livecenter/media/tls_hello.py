"""The server name (SNI) of a TLS ClientHello, read before the handshake.

The media node's TLS listeners (tls.py) choose a certificate by the name a
client asks for, and that certificate comes from the policy, which answers
asynchronously; OpenSSL's SNI callback cannot wait. So the listener peeks
at the ClientHello first (without consuming it), reads the name here, looks
the certificate up, and only then lets OpenSSL run the handshake, whose SNI
callback finds the answer already at hand.

Pure: `read_client_hello(data)` takes the bytes received so far from the
start of the connection and returns either how many bytes it needs in all
(an int) or a `ClientHello`. Bad bytes raise `TlsHelloError`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

# RFC 8446 5.1: a record's header, and the most plaintext one may carry.
RECORD_HEADER_BYTES = 5
MAX_RECORD_PAYLOAD_BYTES = 2**14
# A ClientHello (the handshake message, across as many records as it takes)
# longer than this is refused. Browsers send 0.5-2 KB (with a post-quantum
# key share); nothing real comes near one record's 16 KiB.
MAX_CLIENT_HELLO_BYTES = 16 * 1024
# All the bytes of the records that carry it, headers included: a hello cut
# into 1-byte records costs 6 bytes a byte, and is still bounded.
MAX_CLIENT_HELLO_STREAM_BYTES = 32 * 1024
# RFC 1035 2.3.4: a host name is at most 253 characters written out.
MAX_SERVER_NAME_CHARS = 253

_HANDSHAKE = 22  # RFC 8446 5.1 ContentType.handshake
_CLIENT_HELLO = 1  # RFC 8446 4 HandshakeType.client_hello
_SERVER_NAME = 0  # RFC 6066 3 ExtensionType.server_name
_ALPN = 16  # RFC 7301 3.1
_HOST_NAME = 0  # RFC 6066 3 NameType.host_name


class TlsHelloError(ValueError):
    """The peer sent what is no TLS ClientHello; the message says what."""


@dataclass(frozen=True, slots=True)
class ClientHello:
    server_name: str | None  # lower-case, without a trailing dot; None when the client sent none
    alpn: tuple[str, ...]  # the protocols it offers, in its order
    stream_bytes: int  # the bytes of the records that carried it


def read_client_hello(data: bytes) -> ClientHello | int:
    """The ClientHello at the start of `data`, or the total number of bytes
    needed before it can be read."""
    view = memoryview(data)
    message = bytearray()
    offset = 0
    while True:
        if len(view) < offset + RECORD_HEADER_BYTES:
            return offset + RECORD_HEADER_BYTES
        kind, major, length = struct.unpack_from("!BBxH", view, offset)
        if kind != _HANDSHAKE:
            raise TlsHelloError(f"the first record is not a TLS handshake (content type {kind})")
        if major != 3:
            raise TlsHelloError(f"record version {major}.x is not TLS")
        if length == 0 or length > MAX_RECORD_PAYLOAD_BYTES:
            raise TlsHelloError(f"a handshake record of {length} bytes (1 to {MAX_RECORD_PAYLOAD_BYTES})")
        end = offset + RECORD_HEADER_BYTES + length
        if end > MAX_CLIENT_HELLO_STREAM_BYTES:
            raise TlsHelloError(f"the ClientHello takes more than {MAX_CLIENT_HELLO_STREAM_BYTES} bytes of records")
        if len(view) < end:
            return end
        message += view[offset + RECORD_HEADER_BYTES : end]
        offset = end
        if len(message) >= 4:
            msg_type, high, low = struct.unpack_from("!BBH", message)
            if msg_type != _CLIENT_HELLO:
                raise TlsHelloError(f"the first handshake message is type {msg_type}, not a ClientHello")
            size = high << 16 | low
            if size > MAX_CLIENT_HELLO_BYTES:
                raise TlsHelloError(f"a ClientHello of {size} bytes (at most {MAX_CLIENT_HELLO_BYTES})")
            if len(message) >= 4 + size:
                server_name, alpn = _parse_body(memoryview(message)[4 : 4 + size])
                return ClientHello(server_name, alpn, offset)


class _Reader:
    """Bounds-checked reads from a ClientHello body; every overrun is a TlsHelloError."""

    __slots__ = ("view", "offset", "end")

    def __init__(self, view: memoryview, offset: int = 0, end: int | None = None) -> None:
        self.view, self.offset, self.end = view, offset, len(view) if end is None else end

    def take(self, n: int, what: str) -> memoryview:
        if self.offset + n > self.end:
            raise TlsHelloError(f"the ClientHello ends inside its {what}")
        chunk = self.view[self.offset : self.offset + n]
        self.offset += n
        return chunk

    def u8(self, what: str) -> int:
        return self.take(1, what)[0]

    def u16(self, what: str) -> int:
        return struct.unpack("!H", self.take(2, what))[0]

    def vector(self, length_bytes: int, what: str) -> _Reader:
        n = self.u8(what) if length_bytes == 1 else self.u16(what)
        start = self.offset
        self.take(n, what)
        return _Reader(self.view, start, start + n)

    def take_all(self) -> memoryview:
        return self.take(self.left, "value")

    @property
    def left(self) -> int:
        return self.end - self.offset


def _parse_body(body: memoryview) -> tuple[str | None, tuple[str, ...]]:
    # RFC 8446 4.1.2: legacy_version, random, legacy_session_id,
    # cipher_suites, legacy_compression_methods, extensions.
    r = _Reader(body)
    r.take(2 + 32, "version and random")
    r.vector(1, "session id")
    suites = r.vector(2, "cipher suites")
    if suites.left == 0 or suites.left % 2:
        raise TlsHelloError("the ClientHello's cipher suites are not a whole, non-empty list")
    r.vector(1, "compression methods")
    if r.left == 0:
        return None, ()  # no extensions at all (RFC 5246 7.4.1.2 allows it)
    extensions = r.vector(2, "extensions")
    if r.left:
        raise TlsHelloError("bytes after the ClientHello's extensions")
    server_name, alpn, seen = None, (), set()
    while extensions.left:
        kind = extensions.u16("extension type")
        data = extensions.vector(2, "extension")
        if kind in seen:
            raise TlsHelloError(f"extension {kind} appears twice")  # RFC 8446 4.2
        seen.add(kind)
        if kind == _SERVER_NAME:
            server_name = _server_name(data)
        elif kind == _ALPN:
            alpn = _alpn(data)
    return server_name, alpn


def _server_name(data: _Reader) -> str | None:
    names = data.vector(2, "server name list")
    found = None
    while names.left:
        name_type = names.u8("server name type")
        name = bytes(names.vector(2, "server name").take_all())
        if name_type != _HOST_NAME:
            continue  # RFC 6066 3: unknown name types are skipped
        if found is not None:
            raise TlsHelloError("the ClientHello names two host names")  # RFC 6066 3
        try:
            text = name.decode("ascii")
        except UnicodeDecodeError:
            raise TlsHelloError("the server name is not ASCII (an IDN goes as its A-label)") from None
        text = text.rstrip(".").lower()
        if not text or len(text) > MAX_SERVER_NAME_CHARS or not text.isprintable() or " " in text:
            raise TlsHelloError(f"the server name {text[:64]!r} is not a host name")
        found = text
    return found


def _alpn(data: _Reader) -> tuple[str, ...]:
    protocols = data.vector(2, "ALPN list")
    out = []
    while protocols.left:
        out.append(bytes(protocols.vector(1, "ALPN protocol").take_all()).decode("latin-1"))
    return tuple(out)
