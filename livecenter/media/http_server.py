"""The media node's HTTP playback on a streaming domain:
`GET /{app}/{stream}.flv?auth_key=…` (HTTP-FLV), `/{app}/{stream}.m3u8`
with its segments and parts (HLS and LL-HLS, hls_server.py), WHEP
(`POST /{app}/{stream}.whep`, RTS over WebRTC, rts/session.py), and
players' telemetry (`POST /{app}/{stream}.beacon`, beacon_http.py).

h11 parses every request and writes every response. Connections are
persistent (RFC 9112 9.3): an LL-HLS player makes about ten requests a
second, each of which would otherwise cost a TCP handshake. A connection
is closed when it idles `http_idle_seconds` between requests, after its
`http_max_requests`-th response (which says `Connection: close`), after a
response whose request body was not read whole, and after an HTTP-FLV
play: FLV is a plain byte stream closed by the connection's end (RFC 9112
6.3 item 8), so every viewer of a frame is sent the same shared bytes.

Play refusals (play.py) are 403 (or 404 for a stream that is not live, 503
for a node at capacity or a policy that cannot answer) with a header that
names the reason, never which key was tried.
"""

from __future__ import annotations

import asyncio
import logging
import re
from http import HTTPStatus
from urllib.parse import parse_qsl, urlsplit

import h11

from .access import address_of, tengine_error
from .admission import domain_of
from .beacon_http import serve_beacon
from .flv import flv_header
from .hls_crypto import KEY_FILE_SUFFIX
from .hls_master import master_playlist
from .listener import peer_name
from .node_status import NODE_STATUS_PATH, is_loopback_peer, node_status_body
from .play import PlayDecision, PlayRefusal, PlayRequest, admit_viewer, wait_live
from .policy import PolicyUnavailable
from .pump import FramePump
from .rts.whep import WHEP, parse_whep_path
from .signing import AuthFailure
from .tls import server_name

log = logging.getLogger(__name__)

# A request head (request line, header lines and the blank line) longer than
# this is refused with 431. 16 KiB holds any player's request and a signed
# URL many times over (nginx's large_client_header_buffers: 4 x 8 KiB).
MAX_REQUEST_HEAD_BYTES = 16 * 1024
# A request head must arrive whole within this: of accept for the first
# request, of its first byte for the ones that follow (a head dribbled a byte
# at a time is cut, not waited for read by read).
REQUEST_HEAD_TIMEOUT_SECONDS = 10
# The whole of a request body (a WHEP offer, 3-10 KB) must arrive within this:
# a peer dribbling it a byte at a time is cut, not waited for read by read.
REQUEST_BODY_TIMEOUT_SECONDS = 10
READ_BYTES = 8192
_PLAY_PATH_RE = re.compile(r"^/(?P<app>[A-Za-z0-9_.-]{1,255})/(?P<stream>[A-Za-z0-9_.-]{1,255})\.(?P<ext>flv|m3u8)$")
_HLS_MEDIA_PATH_RE = re.compile(
    r"^/(?P<app>[A-Za-z0-9_.-]{1,255})/(?P<stream>[A-Za-z0-9_.-]{1,255})/(?P<file>[A-Za-z0-9_]{1,64}\.(?:ts|key))$"
)
_BEACON_PATH_RE = re.compile(r"^/(?P<app>[A-Za-z0-9_.-]{1,255})/(?P<stream>[A-Za-z0-9_.-]{1,255})\.beacon$")
_AUTH_FAILURES = {f.value for f in AuthFailure}
# What a play refusal answers over HTTP.
PLAY_REFUSAL_STATUS = {
    PlayRefusal.DENIED: 403,
    PlayRefusal.UNAVAILABLE: 503,  # try again: the policy's database is unreachable
    PlayRefusal.AT_CAPACITY: 503,
    PlayRefusal.NOT_LIVE: 404,
}
# A viewer refused at capacity may try again this much later.
RETRY_AFTER_SECONDS = 10
# Statuses whose responses have no body (RFC 9110 8.6: and no Content-Length).
_NO_BODY_STATUSES = frozenset((204, 304))

CORS_HEADERS = [
    (b"Access-Control-Allow-Origin", b"*"),
    (b"Access-Control-Allow-Methods", b"GET, HEAD, OPTIONS, POST, DELETE, PATCH"),
    (b"Access-Control-Allow-Headers", b"Range, Origin, Accept, Content-Type, If-Match"),
    (b"Access-Control-Expose-Headers", b"X-LiveCenter-Error, X-Tengine-Error, Location"),
]


def refusal_headers(reason: str) -> list[tuple[bytes, bytes]]:
    # A reason may quote what the peer sent: ASCII on one line, so that it is a valid header value.
    value = reason.encode("ascii", "backslashreplace").replace(b"\r", b" ").replace(b"\n", b" ")
    headers = [(b"X-LiveCenter-Error", value)]
    # The CDN's header, for tools written against ApsaraVideo Live.
    if reason in _AUTH_FAILURES:
        headers.append((b"X-Tengine-Error", f"denied by req auth: {reason}".encode()))
    elif (acl := tengine_error(reason)) is not None:
        headers.append((b"X-Tengine-Error", acl.encode()))
    return headers


def flv_tag(frame) -> bytes:
    return frame.flv_tag


class RequestBodyError(Exception):
    """A request body that did not arrive whole; `status` is the answer."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class RequestHeadError(Exception):
    """A request head that was refused; `status` is the answer."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class MediaHttpServer:
    """`scheme` is what the port speaks: "http", or "https" behind a TLS listener (tls.py)."""

    def __init__(self, node, scheme: str = "http") -> None:
        self.node = node
        self.scheme = scheme

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handler = MediaHttpSession(self.node, reader, writer, self.scheme)
        self.node.connections[handler] = asyncio.current_task()
        try:
            await handler.run()
        except (ConnectionError, OSError):
            pass
        finally:
            self.node.connections.pop(handler, None)
            writer.close()
            try:
                await writer.wait_closed()
            except (ConnectionError, OSError):
                pass


class MediaHttpSession:
    """One HTTP connection: its requests one after the other (pipelined
    ones wait in h11's buffer), each answered through h11."""

    def __init__(self, node, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, scheme: str = "http") -> None:
        self.node = node
        self.scheme = scheme
        self.reader = reader
        self.writer = writer
        # The name the TLS client asked for (tls.py); None on the plain port.
        self.sni = server_name(writer) if scheme == "https" else None
        self.peer = peer_name(writer.get_extra_info("peername"))
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST_HEAD_BYTES)
        self.requests = 0  # requests read on this connection
        self.method = b""
        self.request_headers: dict[bytes, bytes] = {}

    def abort(self) -> None:
        self.writer.transport.abort()

    # --- reading -------------------------------------------------------------------

    async def read_request(self) -> h11.Request | None:
        """The next request's head; None when the peer closed or idled out
        between requests. Raises RequestHeadError."""
        conn, loop = self.conn, asyncio.get_running_loop()
        self.method = b""
        # Bytes h11 holds from before (a pipelined request), and what it is fed here.
        held = len(conn.trailing_data[0])
        fed = 0
        started = self.requests == 0 or held > 0
        idle = self.node.config.http_idle_seconds
        try:
            async with asyncio.timeout(REQUEST_HEAD_TIMEOUT_SECONDS if started else idle) as deadline:
                while True:
                    event = conn.next_event()
                    if event is h11.NEED_DATA:
                        data = await self.reader.read(READ_BYTES)
                        if data and not started:
                            started = True
                            deadline.reschedule(loop.time() + REQUEST_HEAD_TIMEOUT_SECONDS)
                        fed += len(data)
                        conn.receive_data(data)
                    elif isinstance(event, h11.Request):
                        break
                    else:  # ConnectionClosed
                        return None
        except TimeoutError:
            if not (held or fed):
                return None  # nothing sent: an idle connection, closed without a word
            reason = f"the request head did not arrive within {REQUEST_HEAD_TIMEOUT_SECONDS:g} s"
            raise RequestHeadError(408, reason) from None
        except h11.RemoteProtocolError as exc:
            raise RequestHeadError(exc.error_status_hint, f"bad request head: {exc}") from None
        self.method = event.method.upper()
        # h11 refuses a head that grows past the limit before it is complete;
        # one that arrived complete in a single read is measured here.
        head_bytes = held + fed - len(conn.trailing_data[0])
        if head_bytes > MAX_REQUEST_HEAD_BYTES:
            raise RequestHeadError(431, f"the request head is longer than {MAX_REQUEST_HEAD_BYTES} bytes")
        self.request_headers = {name.lower(): value for name, value in event.headers}
        return event

    async def read_body(self, max_bytes: int) -> bytes:
        """The request's body, read whole within REQUEST_BODY_TIMEOUT_SECONDS
        (one deadline for all of it: a body sent a byte at a time is cut, not
        waited for byte by byte). Raises RequestBodyError."""
        timeout = REQUEST_BODY_TIMEOUT_SECONDS
        # h11 has checked Content-Length is a number; refuse a long body before reading it.
        length = self.request_headers.get(b"content-length")
        if length is not None and int(length) > max_bytes:
            raise RequestBodyError(413, f"the body is longer than {max_bytes} bytes")
        if self.conn.they_are_waiting_for_100_continue:
            # RFC 9110 10.1.1: curl waits a second for this before a body of over 1 KiB.
            self.writer.write(self.conn.send(h11.InformationalResponse(status_code=100, headers=[])))
        body = bytearray()
        try:
            async with asyncio.timeout(timeout):
                while True:
                    event = self.conn.next_event()
                    if event is h11.NEED_DATA:
                        data = await self.reader.read(READ_BYTES)
                        if not data:
                            raise RequestBodyError(400, "the body ended early")
                        self.conn.receive_data(data)
                    elif isinstance(event, h11.Data):
                        body += event.data
                        if len(body) > max_bytes:
                            raise RequestBodyError(413, f"the body is longer than {max_bytes} bytes")
                    elif isinstance(event, h11.EndOfMessage):
                        return bytes(body)
                    else:
                        raise RequestBodyError(400, "the body ended early")
        except TimeoutError:
            raise RequestBodyError(408, f"the body did not arrive within {timeout:g} s") from None
        except h11.RemoteProtocolError as exc:
            raise RequestBodyError(400, f"bad body: {exc}") from None

    def _request_read_whole(self) -> bool:
        """Whether the request has been read to its end, so the connection
        can carry the next one. A body that is already here (none, or a
        small one in the same packets) is read and dropped; one that is not
        is never waited for: the connection closes after the response."""
        conn = self.conn
        try:
            while conn.their_state is h11.SEND_BODY:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    return False
        except h11.RemoteProtocolError:
            return False
        return conn.their_state is h11.DONE

    # --- writing -------------------------------------------------------------------

    def send_response(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes = b"") -> None:
        """A whole response, through h11. It says `Connection: close` (and
        the connection closes after it) when `headers` do, when it is the
        last the connection may carry, or when the request was not read whole."""
        headers = list(headers)
        if status not in _NO_BODY_STATUSES:
            headers.append((b"Content-Length", str(len(body)).encode()))
        if self.requests >= self.node.config.http_max_requests or not self._request_read_whole():
            headers.append((b"Connection", b"close"))
        conn = self.conn
        data = conn.send(h11.Response(status_code=status, headers=[*headers, *CORS_HEADERS], reason=_phrase(status)))
        if body and self.method != b"HEAD" and status not in _NO_BODY_STATUSES:
            data += conn.send(h11.Data(data=body))
        data += conn.send(h11.EndOfMessage())
        self.writer.write(data)

    def send_simple(self, status: int, text: str, extra: list | None = None) -> None:
        self.send_response(status, [(b"Content-Type", b"text/plain; charset=utf-8"), *(extra or [])], text.encode())

    def send_body(self, content_type: bytes, body: bytes, cache: bytes) -> None:
        self.send_response(200, [(b"Content-Type", content_type), (b"Cache-Control", cache)], body)

    def refuse_play(self, decision: PlayDecision) -> None:
        """A play refusal (play.py), logged there: its status and the header naming the reason."""
        extra = refusal_headers(decision.reason)
        if decision.refusal is PlayRefusal.AT_CAPACITY:
            extra.append((b"Retry-After", str(RETRY_AFTER_SECONDS).encode()))
        self.send_simple(PLAY_REFUSAL_STATUS[decision.refusal], f"{decision.reason}\n", extra)

    # --- the connection ------------------------------------------------------------

    async def run(self) -> None:
        conn = self.conn
        while True:
            try:
                request = await self.read_request()
            except RequestHeadError as exc:
                log.info("http %s: %s", self.peer, exc.reason)
                if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                    self.send_simple(exc.status, f"{exc.reason}\n", [(b"Connection", b"close")])
                    await self.writer.drain()
                return
            if request is None:
                return
            self.requests += 1
            await self.serve(request)
            await self.writer.drain()
            if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                return  # MUST_CLOSE, an FLV stream, or a body left unread
            conn.start_next_cycle()

    async def serve(self, request: h11.Request) -> None:
        """Answer one request."""
        method = self.method
        if method == b"OPTIONS":
            self.send_response(204, [])
            return
        try:
            target = urlsplit(request.target.decode("latin-1"))
        except ValueError as exc:  # "//[x": urlsplit takes it for an IPv6 host (found by bench/fuzz)
            log.info("http %s: bad request target: %s", self.peer, exc)
            # A peer that sends what is no URL is not asked for more.
            self.send_simple(400, f"bad request target: {exc}\n", [(b"Connection", b"close")])
            return
        query = dict(parse_qsl(target.query, keep_blank_values=True))
        if self.misdirected():
            return
        beacon = _BEACON_PATH_RE.match(target.path)
        if beacon and method == b"POST":
            await serve_beacon(self, beacon["app"], beacon["stream"], query)
            return
        whep = parse_whep_path(target.path)
        # A player may be sent to the other scheme; a WHIP publisher is not
        # (clients re-send a redirected POST as a GET).
        playing = (whep is not None and whep.kind == WHEP) or _PLAY_PATH_RE.match(target.path)
        if playing and await self.redirected(request, query):
            return
        if whep is not None:
            await self.node.rts.handle_http(self, request, method, whep, query)
            return
        if target.path == NODE_STATUS_PATH and method == b"GET" and is_loopback_peer(self.peer.rpartition(":")[0]):
            self.send_body(b"application/json", node_status_body(self.node), b"no-store")
            return
        if method not in (b"GET", b"HEAD"):
            self.send_simple(405, "only GET and HEAD\n", [(b"Allow", b"GET, HEAD, OPTIONS")])
            return
        media = _HLS_MEDIA_PATH_RE.match(target.path)
        if media:
            await self.hls_media(media["app"], media["stream"], media["file"], query)
            return
        match = _PLAY_PATH_RE.match(target.path)
        if not match:
            self.send_simple(404, "not found\n")
            return
        app, stream, ext = match["app"], match["stream"], match["ext"]
        protocol = "hls" if ext == "m3u8" else "flv"
        play = PlayRequest(
            protocol=protocol,
            peer=self.peer,
            domain=domain_of(self.request_headers.get(b"host", b"").decode("latin-1"), query),
            app=app,
            stream=stream,
            uri=target.path,
            query=query,
            client=self.peer.rpartition(":")[0] if protocol == "hls" else None,
            referer=self.referer(),
        )
        decision = await admit_viewer(self.node, play)
        if not decision.ok:
            self.refuse_play(decision)
            return
        if protocol == "hls":
            master = await master_playlist(self.node, decision.admission, app, stream, query)
            if master is not None:
                status, text = master
                if status != 200:
                    self.send_simple(status, f"{text}\n", refusal_headers(text))
                else:
                    self.send_body(b"application/vnd.apple.mpegurl", text.encode(), b"no-cache")
                return
        decision = await wait_live(self.node, play, decision)
        if not decision.ok:
            self.refuse_play(decision)
            return
        if protocol == "hls":
            domain = decision.admission.domain
            period = domain.hls_key_period(app) if domain is not None else 0
            await self.hls_playlist(decision.key, query, period, domain.name if domain is not None else "")
        else:
            # Players other than the media workers get AAC for Dolby audio (hub.py).
            await self.flv(decision.key, legacy_audio=not self.node.is_media_worker(play.uri, play.query))

    def referer(self) -> str | None:
        value = self.request_headers.get(b"referer")
        return value.decode("latin-1") if value is not None else None

    def misdirected(self) -> bool:
        """Over TLS, a request for another host than the one whose
        certificate the connection was given is answered 421 (RFC 9110
        15.5.20): one operator's certificate never fronts another's domain."""
        if self.sni is None:
            return False
        host = self.request_headers.get(b"host", b"").decode("latin-1")
        hostname = (urlsplit(f"//{host}").hostname or "").rstrip(".") if host else ""
        if hostname == self.sni:
            return False
        log.info("https %s: Host %r on a connection for %s", self.peer, host[:255], self.sni)
        self.send_simple(421, f"this connection is for {self.sni}\n", [(b"Connection", b"close")])
        return True

    async def redirected(self, request: h11.Request, query: dict[str, str]) -> bool:
        """Answer a 301 to the other scheme when the domain forces it
        (DomainConfig.https_redirect) and this node listens on that scheme."""
        host = self.request_headers.get(b"host", b"").decode("latin-1")
        try:
            domain = await self.node.policy.domain_config(domain_of(host, query))
        except PolicyUnavailable:
            return False  # admission answers for the domain
        wanted = domain.https_redirect if domain is not None else ""
        if not wanted or wanted == self.scheme:
            return False
        port = self.node.https_port if wanted == "https" else self.node.http_port
        if port is None:
            return False
        hostname = urlsplit(f"//{host}").hostname or ""
        if ":" in hostname:
            hostname = f"[{hostname}]"
        default = 443 if wanted == "https" else 80
        location = f"{wanted}://{hostname}{'' if port == default else f':{port}'}{request.target.decode('latin-1')}"
        self.send_simple(301, f"{location}\n", [(b"Location", location.encode("latin-1"))])
        return True

    # --- HTTP-FLV ------------------------------------------------------------------

    async def flv(self, key, legacy_audio: bool) -> None:
        conn = self.conn
        # RFC 9112 6.3 item 8: a body delimited by the connection's close, so
        # the frames are the same shared bytes for every viewer. h11 frames a
        # body of unknown length that way only for an HTTP/1.0 peer (it picks
        # chunked for 1.1), so it is told the peer is one (h11's only way;
        # tests/test_media_http.py checks the head).
        conn.their_http_version = b"1.0"
        headers = [(b"Content-Type", b"video/x-flv"), (b"Cache-Control", b"no-cache, no-store"),
                   (b"Connection", b"close"), *CORS_HEADERS]  # fmt: skip
        data = conn.send(h11.Response(status_code=200, headers=headers, reason=b"OK"))
        if self.method == b"HEAD":
            self.writer.write(data + conn.send(h11.EndOfMessage()))
            return
        self.writer.write(data + conn.send(h11.Data(data=flv_header(has_audio=True, has_video=True))))
        pump = FramePump(self.writer, flv_tag)
        subscription = self.node.hub.subscribe(
            key, protocol="flv", on_ready=pump.on_ready, legacy_audio=legacy_audio, viewer=self.viewer_identity()
        )
        log.info("http-flv %s playing %s", self.peer, key)
        pump.attach(subscription)
        # The viewer sends nothing more; its end of input means it left.
        client_left = asyncio.ensure_future(self.reader.read(1))
        pumped = asyncio.ensure_future(pump.finished.wait())
        try:
            await asyncio.wait({client_left, pumped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            client_left.cancel()
            pumped.cancel()
            pump.close()
            reason = "too slow, disconnected" if subscription.lagging_disconnect else "ended"
            log.info("http-flv %s play of %s %s", self.peer, key, reason)

    # --- HLS -----------------------------------------------------------------------

    async def hls_playlist(self, key, query: dict[str, str], key_rotation_segments: int = 0, domain: str = "") -> None:
        hls = self.node.hls
        status, text = await hls.playlist(
            key, query.get("_HLS_msn"), query.get("_HLS_part"), key_rotation_segments, domain
        )
        if status != 200:
            self.send_simple(status, f"{text}\n", refusal_headers(text))
            return
        body = text.encode()
        self.send_body(b"application/vnd.apple.mpegurl", body, b"no-cache")
        # A player asks for the playlist every target duration: that is what counts it as a viewer.
        sent = 0 if self.method == b"HEAD" else len(body)
        self.node.stats.served(key, "hls", sent, self.viewer_identity())

    def viewer_identity(self) -> str:
        """This client as a viewer (stats.viewer_identity): address and user agent."""
        agent = self.request_headers.get(b"user-agent", b"")[:512].decode("latin-1")
        return self.node.stats.viewer(self.peer.rpartition(":")[0], agent)

    async def media_access_refusal(self, app: str, stream: str, query: dict[str, str]) -> str | None:
        """Why a segment or part request is refused by a domain's access
        lists. Its token, not a signature, admits it, so it is held to the
        lists of the streaming domain it is fetched through: the one the
        request names (Host, `domain=`) if the stream's playlists were served
        through it, else those they were served through (a playlist's
        relative URIs drop its `domain=`), admitted by any one of them as
        the viewer could have named that one. Workers and other nodes play
        FLV or RTMP, never HLS, so there is no token to exempt here."""
        served = self.node.hls.served_domains(app, stream)
        if not served:
            return None  # not packaged: the token check answers
        named = domain_of(self.request_headers.get(b"host", b"").decode("latin-1"), query)
        address, referer = address_of(self.peer), self.referer()
        refusal = None
        for name in sorted([named] if named in served else served):
            try:
                domain = await self.node.policy.domain_config(name)
            except PolicyUnavailable:
                return None  # the playlist, asked every target duration, answers for the domain
            if domain is None:
                continue
            refusal = domain.access.refusal(address, referer, has_referer=True)
            if refusal is None:
                return None
        return refusal

    async def hls_media(self, app: str, stream: str, file_name: str, query: dict[str, str]) -> None:
        refusal = await self.media_access_refusal(app, stream, query)
        if refusal:
            log.info("http %s hls media refused: %s/%s/%s reason=%s", self.peer, app, stream, file_name, refusal)
            self.send_simple(403, f"{refusal}\n", refusal_headers(refusal))
            return
        is_key = file_name.endswith(KEY_FILE_SUFFIX)
        token = query.get("token", "")
        if is_key:
            status, body = self.node.hls.key(app, stream, file_name, token)
        else:
            status, body = await self.node.hls.media(app, stream, file_name, token)
        if status != 200:
            log.info("http %s hls media refused: %s/%s/%s reason=%s", self.peer, app, stream, file_name, body)
            self.send_simple(status, f"{body}\n", refusal_headers(str(body)))
            return
        if is_key:
            # A key is for the player that asked: no shared cache keeps it.
            self.send_body(b"application/octet-stream", body, b"private, no-store")
            return
        # Segments and parts never change once complete.
        self.send_body(b"video/mp2t", body, b"max-age=60")


def _phrase(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""
