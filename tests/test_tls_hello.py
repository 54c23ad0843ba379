"""tls_hello: the server name of a ClientHello, read before the handshake."""

import random
import ssl
import struct

import pytest

from livecenter.media.tls_hello import (
    MAX_CLIENT_HELLO_BYTES,
    MAX_CLIENT_HELLO_STREAM_BYTES,
    MAX_SERVER_NAME_CHARS,
    ClientHello,
    TlsHelloError,
    read_client_hello,
)


def openssl_hello(server_name: str | None = "play.example.com", alpn=("http/1.1",)) -> bytes:
    """The ClientHello this Python's OpenSSL sends."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname=server_name)
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return outgoing.read()


def built_hello(extensions: bytes, record_sizes=None) -> bytes:
    """A ClientHello with `extensions` (already encoded), in records of
    `record_sizes` bytes (one record when None)."""
    body = b"\x03\x03" + bytes(32) + b"\x00" + b"\x00\x02\x13\x01" + b"\x01\x00"
    body += struct.pack("!H", len(extensions)) + extensions
    message = b"\x01" + len(body).to_bytes(3, "big") + body
    sizes = record_sizes or [len(message)]
    out, offset = b"", 0
    while offset < len(message):
        size = sizes[0] if len(sizes) == 1 else sizes.pop(0)
        chunk = message[offset : offset + size]
        out += b"\x16\x03\x01" + struct.pack("!H", len(chunk)) + chunk
        offset += size
    return out


def sni_extension(*names: bytes, name_type: int = 0) -> bytes:
    entries = b"".join(bytes([name_type]) + struct.pack("!H", len(n)) + n for n in names)
    data = struct.pack("!H", len(entries)) + entries
    return b"\x00\x00" + struct.pack("!H", len(data)) + data


def padding_extension(n: int) -> bytes:
    return b"\x00\x15" + struct.pack("!H", n) + bytes(n)  # RFC 7685


def test_it_reads_the_server_name_and_alpn_of_openssl():
    hello = openssl_hello("Play.Example.com.")
    result = read_client_hello(hello)
    assert result == ClientHello("play.example.com", ("http/1.1",), len(hello))


def test_it_reads_a_hello_without_a_name():
    hello = openssl_hello(None, alpn=())
    assert read_client_hello(hello) == ClientHello(None, (), len(hello))


def test_it_asks_for_the_bytes_it_needs_fed_a_byte_at_a_time():
    hello = openssl_hello()
    needs = []
    for n in range(len(hello)):
        need = read_client_hello(hello[:n])
        assert isinstance(need, int) and n < need <= len(hello)
        needs.append(need)
    assert needs[0] == 5 and needs[-1] == len(hello)
    assert read_client_hello(hello).server_name == "play.example.com"


def test_it_ignores_what_follows_the_hello():
    hello = openssl_hello()
    result = read_client_hello(hello + b"\x17\x03\x03\x00\x10" + bytes(16))
    assert result.server_name == "play.example.com" and result.stream_bytes == len(hello)


def test_it_reads_a_hello_cut_into_one_byte_records():
    hello = built_hello(sni_extension(b"a.example"), record_sizes=[1])
    result = read_client_hello(hello)
    assert result.server_name == "a.example" and result.stream_bytes == len(hello)


def test_it_skips_other_name_types():
    assert read_client_hello(built_hello(sni_extension(b"x", name_type=7))).server_name is None


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"GET / HTTP/1.1\r\n\r\n", "the first record is not a TLS handshake (content type 71)"),
        (b"\x16\x02\x00\x00\x05" + bytes(5), "record version 2.x is not TLS"),
        (b"\x16\x03\x01\x00\x00", "a handshake record of 0 bytes (1 to 16384)"),
        (b"\x16\x03\x01\x40\x01", "a handshake record of 16385 bytes (1 to 16384)"),
        (b"\x16\x03\x01\x00\x04\x02\x00\x00\x00", "the first handshake message is type 2, not a ClientHello"),
        (b"\x16\x03\x01\x00\x06\x01\x00\x00\x02\x03\x03", "the ClientHello ends inside its version and random"),
    ],
)
def test_it_refuses_what_is_no_client_hello(data, error):
    with pytest.raises(TlsHelloError) as exc:
        read_client_hello(data)
    assert str(exc.value) == error


def test_it_refuses_two_host_names():
    with pytest.raises(TlsHelloError, match="two host names"):
        read_client_hello(built_hello(sni_extension(b"a.example", b"b.example")))


def test_it_refuses_a_name_that_is_not_ascii():
    with pytest.raises(TlsHelloError, match="not ASCII"):
        read_client_hello(built_hello(sni_extension("bücher.example".encode())))


def test_it_takes_a_name_at_the_limit_and_refuses_one_past_it():
    at_limit = b"a" * MAX_SERVER_NAME_CHARS
    assert read_client_hello(built_hello(sni_extension(at_limit))).server_name == at_limit.decode()
    with pytest.raises(TlsHelloError, match="is not a host name"):
        read_client_hello(built_hello(sni_extension(at_limit + b"a")))


def test_it_takes_a_hello_at_the_limit_and_refuses_one_past_it():
    base = built_hello(sni_extension(b"a.example") + padding_extension(0))
    fill = MAX_CLIENT_HELLO_BYTES - (len(base) - 5 - 4)
    at_limit = built_hello(sni_extension(b"a.example") + padding_extension(fill), record_sizes=[4096])
    assert read_client_hello(at_limit).server_name == "a.example"
    past = built_hello(sni_extension(b"a.example") + padding_extension(fill + 1), record_sizes=[4096])
    with pytest.raises(TlsHelloError, match=f"at most {MAX_CLIENT_HELLO_BYTES}"):
        read_client_hello(past)


def test_it_refuses_records_past_the_stream_limit():
    # 1-byte records: 6 bytes of stream per byte of hello, which is within its own limit.
    hello = built_hello(sni_extension(b"a.example") + padding_extension(MAX_CLIENT_HELLO_STREAM_BYTES // 5), [1])
    with pytest.raises(TlsHelloError, match=f"more than {MAX_CLIENT_HELLO_STREAM_BYTES} bytes"):
        read_client_hello(hello)


def test_garbage_gives_a_hello_a_need_or_a_tls_hello_error():
    rng = random.Random(15)
    hello = openssl_hello()
    for _ in range(3000):
        data = bytearray(hello)
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        data = bytes(data[: rng.randint(0, len(data))])
        try:
            result = read_client_hello(data)
        except TlsHelloError:
            continue
        assert isinstance(result, (ClientHello, int))
