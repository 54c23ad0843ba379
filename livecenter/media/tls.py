"""TLS for the media node: HTTPS and RTMPS with the operators' own
certificates, chosen by the name the client asks for (SNI; issue 15).

A TLS listener (`TlsListener`) accepts like the plain ones (listener.py)
and then, before OpenSSL sees a byte:

1. peeks at the ClientHello (MSG_PEEK, so the bytes stay for OpenSSL) and
   reads its server name (tls_hello.py). SO_RCVLOWAT makes the socket
   readable only once the bytes the reader asks for are all there, so a
   hello that arrives in pieces is waited for, not polled;
2. asks the policy for that name's certificate (`TlsCertificates.prefetch`,
   the policy's cached lookup: a database round trip at most once per
   cache lifetime), and builds or reuses its `ssl.SSLContext` (one per
   certificate fingerprint, so a replaced certificate gets a new one and
   connections under the old one go on with it);
3. runs the handshake on asyncio's SSL transport, whose SNI callback picks
   the context prefetched for the name, synchronously. A name with no
   certificate (unknown, HTTPS off, expired) gets an `unrecognized_name`
   alert, or the node's default certificate when one is configured; never
   the certificate of another domain.

Then the connection is the plain server's (the same HTTP or RTMP handler).

Limits: the whole of steps 1-3 must finish within the handshake timeout;
at most `max_pending` handshakes are under way at once and at most
`max_per_second` start a second (past either a new connection is reset at
once); a ClientHello that is not one closes that connection with one INFO
line.

Memory: asyncio's SSL transport gives every connection a 256 KiB read
buffer (`SSLProtocol.max_size`, zero-filled, so resident) and lets its
socket transport buffer 64 KiB beyond what the writer counts; that made an
HTTPS-FLV viewer cost 300-390 KiB against 16 KiB for a plain one
(bench/README.md). `LeanSSLProtocol` starts each connection with a
TLS_READ_BUFFER_BYTES buffer that grows (to TLS_MAX_READ_BUFFER_BYTES) only
for a peer whose reads fill it, a publisher, encrypts TLS_WRITE_PIECE_BYTES
at a time (OpenSSL's memory BIO keeps its largest size), and counts the
socket transport's buffer in the write buffer size, so a viewer's pump
bounds all of what waits for its socket (pump.py).

Private keys reach OpenSSL through memfd files (anonymous memory, never a
path on disk) that are closed as soon as the context has read them; they
live on in the process's memory only, and `TlsCertificate`'s repr leaves
them out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import ssl
import time
from asyncio import sslproto
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from .listener import _LINGER_RESET, ConnectionGate, Handler, MediaListener, peer_name
from .policy import Policy, PolicyUnavailable, TlsCertificate
from .tls_hello import RECORD_HEADER_BYTES, ClientHello, TlsHelloError, read_client_hello

log = logging.getLogger(__name__)

# The whole of a TLS connection's start (its ClientHello, the certificate's
# lookup and the handshake) must finish within this: a client that stalls
# is cut. Browsers finish in one or two round trips.
TLS_HANDSHAKE_TIMEOUT_SECONDS = 10.0
# Handshakes under way at once, per listener; past it a new connection is
# reset. A pending handshake mostly waits for its client (the rate below
# bounds the CPU they cost), so this bounds the descriptors and memory a
# flood of slow handshakes holds; 256 reset viewers of a 1000-a-second join
# burst in bench/fanout (bench/README.md), so it is well above a burst.
MAX_PENDING_TLS_HANDSHAKES = 4096
# Handshakes started per second, per listener (a token bucket holding a
# second's worth, at least one); past it a new connection is reset. About
# a core's worth of handshakes: a flood of them cannot take the loop from
# the media, while a thousand viewers joining at once get in within a
# second (players retry a reset connection). 0: no limit.
MAX_TLS_HANDSHAKES_PER_SECOND = 1000.0
# SSL contexts kept, one per certificate: a node serves one per domain with
# HTTPS on; the least recently used goes first past this.
MAX_TLS_CONTEXTS = 1024
# TLS 1.2's suites (1.3's are all AEAD and forward-secret): Mozilla's
# "intermediate" profile, what browsers of the last ten years speak.
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"
ALPN_HTTP = ("http/1.1",)
# A TLS connection's read buffer (ciphertext from the socket) at first: a
# viewer sends a request or two, a few hundred bytes each. A read that fills
# it makes the next one four times as large, up to the most: a publisher's
# stream is read in as few calls as over plain RTMP (asyncio's own default
# is the most, for every connection).
TLS_READ_BUFFER_BYTES = 4 * 1024
TLS_MAX_READ_BUFFER_BYTES = 256 * 1024
# The socket transport under a TLS connection buffers ciphertext up to this
# before the TLS layer stops handing it more (what is past it waits in the
# TLS layer, counted in the connection's write buffer size). It must not
# exceed a quarter of the high-water mark a writer sets (the low-water mark
# asyncio derives from it): the pump's 64 KiB.
TLS_SOCKET_HIGH_WATER_BYTES = 16 * 1024
# Plaintext is encrypted this much at a time, each piece's records taken out
# of OpenSSL before the next is encrypted: its outgoing memory BIO keeps the largest
# size it ever held for the connection's life, and a 64 KiB write encrypted
# at once left every viewer's at 64 KiB and more. While the socket transport
# is paused the plaintext waits unencrypted (counted all the same).
TLS_WRITE_PIECE_BYTES = 16 * 1024
# RFC 8446 6: a plaintext alert record (TLS 1.2 record version, as a 1.3
# server writes it before any keys), level fatal, unrecognized_name (112).
UNRECOGNIZED_NAME_ALERT = bytes((21, 3, 3, 0, 2, 2, ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME))


# Where the SNI callback leaves the name a connection asked for, on its
# ssl.SSLObject (a plain Python object), for `server_name`.
_SERVER_NAME_ATTRIBUTE = "livecenter_server_name"


def server_name(writer) -> str | None:
    """The name (SNI) a TLS connection's client asked for, as its
    certificate was chosen by; None on a plain connection or without one."""
    ssl_object = writer.get_extra_info("ssl_object")
    return getattr(ssl_object, _SERVER_NAME_ATTRIBUTE, None) if ssl_object is not None else None


def tls_session(writer) -> str | None:
    """The TLS version and cipher a connection negotiated ("TLSv1.3
    TLS_AES_128_GCM_SHA256"), for log lines; None on a plain connection."""
    ssl_object = writer.get_extra_info("ssl_object")
    return f"{ssl_object.version()} {ssl_object.cipher()[0]}" if ssl_object is not None else None


class _ClientHelloEnded(Exception):
    """The peer closed (or reset) before its ClientHello was whole."""


def _memfd(name: str, text: str) -> int:
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    try:
        os.write(fd, text.encode())
    except BaseException:
        os.close(fd)
        raise
    return fd


def server_context(alpn: tuple[str, ...] = ()) -> ssl.SSLContext:
    """A server context with the settings every one of ours has: TLS 1.2
    and 1.3 only, forward-secret AEAD suites, no compression or
    renegotiation, and `alpn` offered."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    ctx.set_ciphers(TLS12_CIPHERS)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    # The client's order of suites, not ours (Mozilla's profiles: "prefer
    # server ciphers off"; Python turns it on). Every suite offered is
    # strong, and the client knows which its hardware runs fastest: browsers
    # on AES-NI put AES-128-GCM first, phones without it ChaCha20. OpenSSL's
    # own order would give every viewer AES-256-GCM, which costs the node
    # more per byte for each of thousands of viewers (bench/README.md).
    ctx.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    return ctx


def certificate_context(certificate: TlsCertificate, alpn: tuple[str, ...] = ()) -> ssl.SSLContext:
    """`server_context` serving `certificate`. Raises ssl.SSLError when the
    chain and key do not load (or do not match)."""
    ctx = server_context(alpn)
    chain_fd = _memfd("livecenter-tls-chain", certificate.chain_pem)
    try:
        key_fd = _memfd("livecenter-tls-key", certificate.key_pem)
        try:
            ctx.load_cert_chain(f"/proc/self/fd/{chain_fd}", f"/proc/self/fd/{key_fd}")
        finally:
            os.close(key_fd)
    finally:
        os.close(chain_fd)
    return ctx


class LeanSSLProtocol(sslproto.SSLProtocol):
    """asyncio's SSL protocol with a read buffer that starts small and grows
    for a peer that fills it, and a write buffer size that counts the socket
    transport's buffer too (the module's docstring)."""

    max_size = TLS_READ_BUFFER_BYTES  # asyncio's: the read buffer's size, and the most read at once

    def connection_made(self, transport) -> None:
        transport.set_write_buffer_limits(high=TLS_SOCKET_HIGH_WATER_BYTES)
        super().connection_made(transport)

    def buffer_updated(self, nbytes: int) -> None:
        if nbytes >= len(self._ssl_buffer) and self.max_size < TLS_MAX_READ_BUFFER_BYTES:
            # get_buffer makes the next buffer this large.
            self.max_size = min(TLS_MAX_READ_BUFFER_BYTES, self.max_size * 4)
        super().buffer_updated(nbytes)

    def _write_appdata(self, list_of_data) -> None:
        # A viewer's merged write (pump.py: one every 50 ms) in one step while
        # nothing waits before it: encrypted a piece at a time, the BIO
        # emptied after each, the records sent in one write, and the writer's
        # flow control checked; not through the backlog (_do_write's way,
        # which is what anything else, and what this leaves, takes).
        if not (
            len(list_of_data) == 1
            and self._state == sslproto.SSLProtocolState.WRAPPED
            and not self._write_backlog
            and not self._ssl_writing_paused
        ):
            super()._write_appdata(list_of_data)
            return
        data = list_of_data[0]
        size = len(data)
        sent, records = 0, []
        try:
            while sent < size:
                if sent == 0 and size <= TLS_WRITE_PIECE_BYTES:
                    piece = data
                else:
                    piece = memoryview(data).cast("B")[sent : sent + TLS_WRITE_PIECE_BYTES]
                sent += self._sslobj.write(piece)
                records.append(self._outgoing.read())
        except sslproto.SSLAgainErrors:
            pass  # the rest goes the long way below
        if records:
            self._transport.write(records[0] if len(records) == 1 else b"".join(records))
        if sent >= size:
            self._control_app_writing()
            return
        super()._write_appdata((memoryview(data).cast("B")[sent:],))

    def _do_write(self) -> None:
        # asyncio's encrypts the whole backlog into the outgoing BIO at once.
        # Here: a piece at a time, the BIO emptied after each (so it never
        # grows past a piece's records), and what they make sent in one
        # write (one send, as asyncio's). While the socket transport is
        # paused the backlog waits as plaintext, unless the connection is
        # closing (it must all go before close_notify).
        backlog, records = self._write_backlog, []
        try:
            while backlog and not (self._ssl_writing_paused and self._state == sslproto.SSLProtocolState.WRAPPED):
                data = backlog[0]
                view = memoryview(data).cast("B")
                count = self._sslobj.write(view[:TLS_WRITE_PIECE_BYTES])
                if count < len(view):
                    backlog[0] = view[count:]  # no copy of the rest
                else:
                    del backlog[0]
                self._write_buffer_size -= count
                records.append(self._outgoing.read())
        except sslproto.SSLAgainErrors:
            pass
        if records:
            self._transport.write(records[0] if len(records) == 1 else b"".join(records))
        self._process_outgoing()

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._write_backlog and self._state == sslproto.SSLProtocolState.WRAPPED:
            try:
                self._do_write()
            except Exception as exc:  # as asyncio's own callers of _do_write
                self._fatal_error(exc, "Fatal error on SSL protocol")

    def _do_flush(self) -> None:
        # Closing: what still waits as plaintext is encrypted now (_do_write
        # holds nothing back once the state is no longer WRAPPED).
        if self._write_backlog:
            self._do_write()
        super()._do_flush()

    def _get_write_buffer_size(self) -> int:
        size = super()._get_write_buffer_size()
        if self._transport is not None:
            size += self._transport.get_write_buffer_size()
        return size


async def accept_tls(
    loop: asyncio.AbstractEventLoop,
    conn: socket.socket,
    protocol: asyncio.BaseProtocol,
    context: ssl.SSLContext,
    handshake_timeout: float,
) -> asyncio.Transport:
    """What `loop.connect_accepted_socket(..., ssl=context)` does, with a
    `LeanSSLProtocol`: the TLS transport of `conn` once its handshake is
    done. Raises as that does (OSError, ssl.SSLError, TimeoutError)."""
    waiter = loop.create_future()
    tls = LeanSSLProtocol(loop, protocol, context, waiter, server_side=True, ssl_handshake_timeout=handshake_timeout)
    transport = tls._app_transport  # the protocol forgets it once the connection is lost
    await loop.connect_accepted_socket(lambda: tls, conn)
    try:
        await waiter
    except BaseException:
        transport.close()
        raise
    return transport


class TlsCertificates:
    """Which context a TLS client gets, by the name it asks for.

    `prefetch(name)` (async) asks the policy and readies the answer;
    `context` is the context handshakes start with: its SNI callback swaps
    in the prefetched one, or refuses. Contexts are kept per certificate
    fingerprint (at most MAX_TLS_CONTEXTS)."""

    def __init__(
        self,
        policy: Policy,
        alpn: tuple[str, ...] = (),
        default: TlsCertificate | None = None,
        clock: Callable[[], float] = time.time,
        max_contexts: int = MAX_TLS_CONTEXTS,
    ) -> None:
        self.policy = policy
        self.alpn = alpn
        self.clock = clock
        self.max_contexts = max_contexts
        self._contexts: OrderedDict[tuple[str, int], ssl.SSLContext] = OrderedDict()
        # name -> (certificate, its context): what the SNI callback serves.
        # Only names with a certificate are kept, so it holds no more
        # entries than there are domains with HTTPS on.
        self._ready: dict[str, tuple[TlsCertificate, ssl.SSLContext]] = {}
        self._expired_logged: set[str] = set()  # fingerprints
        self.default = None
        if default is not None:
            self.default = (default, certificate_context(default, alpn))
        self.context = server_context(alpn)
        self.context.sni_callback = self._choose

    async def prefetch(self, name: str | None) -> str | None:
        """Ready the certificate for `name`; None when one will be served
        for it, else why not (for the caller's log line)."""
        if name is None:
            return None if self.default is not None else "no server name (SNI) and no default certificate"
        lookup = getattr(self.policy, "certificate", None)
        try:
            certificate = await lookup(name) if lookup is not None else None
        except PolicyUnavailable:
            # The policy serves what it knew up to its stale limit; past
            # that the name's last context is not trusted either.
            certificate = None
        reason = None
        if certificate is None:
            reason = f"no certificate for {name} (unknown domain, or HTTPS off)"
        elif certificate.not_after <= self.clock():
            reason = f"the certificate of {name} expired"
            if certificate.fingerprint_sha256 not in self._expired_logged:
                self._expired_logged.add(certificate.fingerprint_sha256)
                expired_at = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(certificate.not_after))
                log.warning("tls: the certificate of %s (%s) expired at %s; not served",
                            name, certificate.fingerprint_sha256, expired_at)  # fmt: skip
            certificate = None
        if certificate is None:
            self._ready.pop(name, None)
            return reason if self.default is None else None
        try:
            ctx = self._context(certificate)
        except (ssl.SSLError, OSError) as exc:
            # The console checked the pair on upload; a pair OpenSSL will
            # not load is a bug somewhere, never a reason to serve another.
            log.error("tls: the certificate of %s (%s) does not load: %s", name, certificate.fingerprint_sha256, exc)
            self._ready.pop(name, None)
            return f"the certificate of {name} does not load"
        self._ready[name] = (certificate, ctx)
        return None

    def _context(self, certificate: TlsCertificate) -> ssl.SSLContext:
        # The leaf's fingerprint, and the chain: a re-upload of the same
        # leaf with other intermediates gets a context of its own.
        key = (certificate.fingerprint_sha256, hash(certificate.chain_pem))
        ctx = self._contexts.get(key)
        if ctx is None:
            ctx = certificate_context(certificate, self.alpn)
            self._contexts[key] = ctx
            while len(self._contexts) > self.max_contexts:
                self._contexts.popitem(last=False)
        else:
            self._contexts.move_to_end(key)
        return ctx

    def chosen(self, name: str | None) -> tuple[TlsCertificate, ssl.SSLContext] | None:
        """What a handshake for `name` is served now: the prefetched
        certificate while it is current, else the default, else None."""
        entry = self._ready.get(name) if name is not None else None
        if entry is not None and entry[0].not_after > self.clock():
            return entry
        return self.default

    def _choose(self, ssl_object, server_name: str | None, _context) -> int | None:
        # OpenSSL's servername callback, in the middle of the handshake: no waiting here.
        name = server_name.rstrip(".").lower() if server_name else None
        entry = self.chosen(name)
        if entry is None:
            return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME
        ssl_object.context = entry[1]
        setattr(ssl_object, _SERVER_NAME_ATTRIBUTE, name)
        return None

    def __len__(self) -> int:
        return len(self._contexts)


@dataclass(frozen=True)
class TlsLimits:
    """What a TLS listener allows a connection's start (the module's docstring)."""

    handshake_timeout_seconds: float = TLS_HANDSHAKE_TIMEOUT_SECONDS
    max_pending: int = MAX_PENDING_TLS_HANDSHAKES
    max_per_second: float = MAX_TLS_HANDSHAKES_PER_SECOND  # 0: no limit


class TlsListener(MediaListener):
    """A MediaListener whose connections speak TLS (HTTPS, RTMPS): each is
    handed to `handler` once its handshake is done."""

    def __init__(
        self, name: str, handler: Handler, gate: ConnectionGate, certificates: TlsCertificates, limits: TlsLimits
    ) -> None:
        super().__init__(name, handler, gate)
        self.certificates = certificates
        self.handshake_timeout_seconds = limits.handshake_timeout_seconds
        self.max_pending = limits.max_pending
        self.max_per_second = limits.max_per_second
        self.pending = 0  # handshakes under way
        self._handshaking: set[asyncio.Task] = set()  # their tasks
        self.handshakes_failed = 0
        self._tokens = max(1.0, self.max_per_second)
        self._tokens_at: float | None = None

    def _take_token(self) -> bool:
        if self.max_per_second <= 0:
            return True  # no limit
        now = self._loop.time()
        burst = max(1.0, self.max_per_second)
        if self._tokens_at is not None:
            self._tokens = min(burst, self._tokens + (now - self._tokens_at) * self.max_per_second)
        self._tokens_at = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True

    async def _connect(self, conn: socket.socket, protocol: asyncio.BaseProtocol, host: str):
        refusal = None
        if self.pending >= self.max_pending:
            refusal = f"pending TLS handshake limit ({self.max_pending})"
        elif not self._take_token():
            refusal = f"TLS handshake rate limit ({self.max_per_second:g} a second)"
        if refusal is not None:
            self.refusals.note(refusal, f"from {host}")
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
            conn.close()
            return None
        loop = self._loop
        peer = peer_name(_peername(conn))
        self.pending += 1
        task = asyncio.current_task()
        self._handshaking.add(task)
        try:
            deadline = loop.time() + self.handshake_timeout_seconds
            try:
                async with asyncio.timeout_at(deadline):
                    hello = await self._peek_hello(conn)
                    refusal = await self.certificates.prefetch(hello.server_name)
            except TimeoutError:
                return self._failed(conn, peer, f"no handshake within {self.handshake_timeout_seconds:g} s")
            except TlsHelloError as exc:
                return self._failed(conn, peer, f"bad ClientHello: {exc}")
            except (_ClientHelloEnded, OSError):
                return self._failed(conn, peer, "closed before its ClientHello was whole")
            if refusal is not None:
                return self._refuse(conn, peer, hello, refusal)
            remaining = max(0.001, deadline - loop.time())
            try:
                transport = await accept_tls(loop, conn, protocol, self.certificates.context, remaining)
            except (OSError, TimeoutError) as exc:  # ssl.SSLError is an OSError
                return self._failed(conn, peer, f"handshake failed: {_reason(exc)}")
            return transport
        except asyncio.CancelledError:  # the listener closed (close())
            conn.close()
            raise
        finally:
            self.pending -= 1
            self._handshaking.discard(task)

    def close(self) -> None:
        """Stop accepting, and end the handshakes under way: their
        connections are no handler's yet, so the node's stop would not."""
        super().close()
        for task in self._handshaking:
            task.cancel()

    async def wait_closed(self) -> None:
        await asyncio.gather(*self._handshaking, return_exceptions=True)

    def _failed(self, conn: socket.socket, peer: str, reason: str) -> None:
        self.handshakes_failed += 1
        log.info("%s %s: %s", self.name, peer, reason)
        with contextlib.suppress(OSError):
            conn.close()
        return None

    def _refuse(self, conn: socket.socket, peer: str, hello: ClientHello, reason: str) -> None:
        """Answer a name the node has no certificate for with a fatal
        unrecognized_name alert, without OpenSSL (asyncio's SSL transport
        drops the alert OpenSSL writes when its handshake fails)."""
        self.handshakes_failed += 1
        log.info("%s %s: %s; handshake refused", self.name, peer, reason)
        with contextlib.suppress(OSError):
            # Take the ClientHello first: a socket closed with unread bytes
            # resets, and the reset can overtake the alert.
            conn.recv(hello.stream_bytes)
            conn.send(UNRECOGNIZED_NAME_ALERT)
            conn.shutdown(socket.SHUT_WR)
        with contextlib.suppress(OSError):
            conn.close()
        return None

    async def _peek_hello(self, conn: socket.socket) -> ClientHello:
        need = RECORD_HEADER_BYTES
        try:
            while True:
                await self._readable(conn, need)
                try:
                    data = conn.recv(need, socket.MSG_PEEK)
                except (BlockingIOError, InterruptedError):
                    continue
                # Readable (SO_RCVLOWAT) yet short: the peer has closed.
                if len(data) < need:
                    raise _ClientHelloEnded()
                result = read_client_hello(data)
                if isinstance(result, ClientHello):
                    return result
                need = result
        finally:
            with contextlib.suppress(OSError):
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, 1)

    async def _readable(self, conn: socket.socket, need: int) -> None:
        """Until `need` bytes wait in the socket (or it is closed)."""
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, need)
        loop, fd = self._loop, conn.fileno()
        ready = loop.create_future()
        loop.add_reader(fd, lambda: ready.done() or ready.set_result(None))
        try:
            await ready
        finally:
            loop.remove_reader(fd)


def _peername(conn: socket.socket):
    try:
        return conn.getpeername()
    except OSError:
        return None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        return exc.reason or str(exc)
    return str(exc) or type(exc).__name__
