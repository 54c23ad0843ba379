"""The media node's HTTP playback on a streaming domain:
`GET /{app}/{stream}.flv?auth_key=…` (HTTP-FLV), `/{app}/{stream}.m3u8`
with its segments and parts (HLS and LL-HLS, hls_server.py), and WHEP
(`POST /{app}/{stream}.whep`, RTS over WebRTC, rts/session.py).

The request head is parsed by h11. HTTP-FLV is a plain FLV byte stream closed
by the connection's end, so every viewer of a frame is sent the same shared
bytes. Refusals are 403 (or 404 for a stream that is not live, 503 for a
node at capacity) with a header that names the reason, never which key was
tried.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from http import HTTPStatus
from urllib.parse import parse_qsl, urlsplit

import h11

from .admission import admit_play, domain_of, refusal_status
from .capacity import REFUSAL_AT_CAPACITY
from .flv import flv_header
from .hls_master import master_playlist
from .node_status import NODE_STATUS_PATH, is_loopback_peer, node_status_body
from .pump import FramePump
from .rts.whep import parse_whep_path
from .signing import AuthFailure

log = logging.getLogger(__name__)

# A request head larger than this is refused (h11 answers it as an error).
MAX_REQUEST_HEAD_BYTES = 16 * 1024
REQUEST_HEAD_TIMEOUT_SECONDS = 10
# The whole of a request body (a WHEP offer, 3-10 KB) must arrive within this:
# a peer dribbling it a byte at a time is cut, not waited for read by read.
REQUEST_BODY_TIMEOUT_SECONDS = 10
_PLAY_PATH_RE = re.compile(r"^/(?P<app>[A-Za-z0-9_.-]{1,255})/(?P<stream>[A-Za-z0-9_.-]{1,255})\.(?P<ext>flv|m3u8)$")
_HLS_MEDIA_PATH_RE = re.compile(
    r"^/(?P<app>[A-Za-z0-9_.-]{1,255})/(?P<stream>[A-Za-z0-9_.-]{1,255})/(?P<file>[A-Za-z0-9_]{1,64}\.ts)$"
)
_AUTH_FAILURES = {f.value for f in AuthFailure}

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
    if reason in _AUTH_FAILURES:
        # The CDN's header, for tools written against ApsaraVideo Live.
        headers.append((b"X-Tengine-Error", f"denied by req auth: {reason}".encode()))
    return headers


def flv_tag(frame) -> bytes:
    return frame.flv_tag


def response_head(status: int, headers: list[tuple[bytes, bytes]]) -> bytes:
    lines = [b"HTTP/1.1 %d %s" % (status, HTTPStatus(status).phrase.encode())]
    lines += [name + b": " + value for name, value in headers]
    return b"\r\n".join(lines) + b"\r\n\r\n"


class RequestBodyError(Exception):
    """A request body that did not arrive whole; `status` is the answer."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class MediaHttpServer:
    def __init__(self, node) -> None:
        self.node = node

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handler = MediaHttpSession(self.node, reader, writer)
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
    def __init__(self, node, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.node = node
        self.reader = reader
        self.writer = writer
        peer = writer.get_extra_info("peername") or ("?", 0)
        self.peer = f"{peer[0]}:{peer[1]}"
        self.request_headers: dict[bytes, bytes] = {}

    def abort(self) -> None:
        self.writer.transport.abort()

    async def read_request(self) -> h11.Request | None:
        conn = self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST_HEAD_BYTES)
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await self.reader.read(8192)
                conn.receive_data(data)
                if not data:
                    return None
                continue
            if isinstance(event, h11.Request):
                self.request_headers = {name.lower(): value for name, value in event.headers}
                return event
            return None

    async def read_body(self, max_bytes: int) -> bytes:
        """The request's body, read whole within REQUEST_BODY_TIMEOUT_SECONDS
        (one deadline for all of it: a body sent a byte at a time is cut, not
        waited for byte by byte). Raises RequestBodyError."""
        timeout = REQUEST_BODY_TIMEOUT_SECONDS
        # h11 has checked Content-Length is a number; refuse a long body before reading it.
        length = self.request_headers.get(b"content-length")
        if length is not None and int(length) > max_bytes:
            raise RequestBodyError(413, f"the body is longer than {max_bytes} bytes")
        body = bytearray()
        try:
            async with asyncio.timeout(timeout):
                while True:
                    event = self.conn.next_event()
                    if event is h11.NEED_DATA:
                        data = await self.reader.read(8192)
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

    def send_simple(self, status: int, text: str, extra: list | None = None) -> None:
        body = text.encode()
        headers = [
            (b"Content-Type", b"text/plain; charset=utf-8"),
            (b"Content-Length", str(len(body)).encode()),
            (b"Connection", b"close"),
            *CORS_HEADERS,
            *(extra or []),
        ]
        self.writer.write(response_head(status, headers) + body)

    async def run(self) -> None:
        try:
            request = await asyncio.wait_for(self.read_request(), REQUEST_HEAD_TIMEOUT_SECONDS)
        except (TimeoutError, h11.RemoteProtocolError) as exc:
            log.info("http-flv %s: bad request head: %s", self.peer, exc or "timeout")
            self.send_simple(400, "bad request\n")
            return
        if request is None:
            return
        method = request.method.upper()
        if method == b"OPTIONS":
            self.writer.write(response_head(204, [*CORS_HEADERS, (b"Connection", b"close")]))
            return
        try:
            target = urlsplit(request.target.decode("latin-1"))
        except ValueError as exc:  # "//[x": urlsplit takes it for an IPv6 host (found by bench/fuzz)
            log.info("http %s: bad request target: %s", self.peer, exc)
            self.send_simple(400, f"bad request target: {exc}\n")
            return
        whep = parse_whep_path(target.path)
        if whep is not None:
            query = dict(parse_qsl(target.query, keep_blank_values=True))
            await self.node.rts.handle_http(self, request, method, whep, query)
            return
        if target.path == NODE_STATUS_PATH and method == b"GET" and is_loopback_peer(self.peer.rpartition(":")[0]):
            self.send_body(method, b"application/json", node_status_body(self.node), b"no-store")
            return
        if method not in (b"GET", b"HEAD"):
            self.send_simple(405, "only GET and HEAD\n", [(b"Allow", b"GET, HEAD, OPTIONS")])
            return
        query = dict(parse_qsl(target.query, keep_blank_values=True))
        media = _HLS_MEDIA_PATH_RE.match(target.path)
        if media:
            await self.hls_media(method, media["app"], media["stream"], media["file"], query)
            return
        match = _PLAY_PATH_RE.match(target.path)
        if not match:
            self.send_simple(404, "not found\n")
            return
        host = dict(request.headers).get(b"host", b"").decode("latin-1")
        domain = domain_of(host, query)
        app, stream = match["app"], match["stream"]
        admission = await admit_play(
            self.node.policy, domain, app, stream, target.path, query.get("auth_key"), time.time()
        )
        if not admission.ok:
            log.info("http %s play refused: stream=%s/%s/%s reason=%s", self.peer, domain, app, stream,
                     admission.refusal)  # fmt: skip
            status = refusal_status(admission.refusal)
            self.send_simple(status, f"{admission.refusal}\n", refusal_headers(str(admission.refusal)))
            return
        key = admission.key
        protocol = "hls" if match["ext"] == "m3u8" else "flv"
        client = self.peer.rpartition(":")[0] if protocol == "hls" else None
        if not self.node.admits_viewer(key, protocol, target.path, query, client):
            self.refuse_at_capacity(protocol, key)
            return
        if match["ext"] == "m3u8":
            master = await master_playlist(self.node, admission, app, stream, query)
            if master is not None:
                status, text = master
                if status != 200:
                    self.send_simple(status, f"{text}\n", refusal_headers(text))
                else:
                    self.send_body(method, b"application/vnd.apple.mpegurl", text.encode(), b"no-cache")
                return
        if not await self.node.hub.wait_live(key, self.node.config.play_wait_seconds):
            log.info("http %s play refused: stream=%s reason=stream is not live", self.peer, key)
            self.send_simple(404, "stream is not live\n", refusal_headers("stream is not live"))
            return
        if match["ext"] == "m3u8":
            await self.hls_playlist(method, key, query)
            return
        headers = [
            (b"Content-Type", b"video/x-flv"),
            (b"Cache-Control", b"no-cache, no-store"),
            (b"Connection", b"close"),
            *CORS_HEADERS,
        ]
        self.writer.write(response_head(200, headers))
        if method == b"HEAD":
            return
        self.writer.write(flv_header(has_audio=True, has_video=True))
        pump = FramePump(self.writer, flv_tag)
        subscription = self.node.hub.subscribe(key, protocol="flv", on_ready=pump.on_ready)
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

    def refuse_at_capacity(self, protocol: str, key) -> None:
        log.info("%s %s play refused: stream=%s reason=%s", protocol, self.peer, key, REFUSAL_AT_CAPACITY)
        self.send_simple(
            503, f"{REFUSAL_AT_CAPACITY}\n", [*refusal_headers(REFUSAL_AT_CAPACITY), (b"Retry-After", b"10")]
        )

    # --- HLS ---------------------------------------------------------------------

    def send_body(self, method: bytes, content_type: bytes, body: bytes, cache: bytes) -> None:
        headers = [
            (b"Content-Type", content_type),
            (b"Content-Length", str(len(body)).encode()),
            (b"Cache-Control", cache),
            (b"Connection", b"close"),
            *CORS_HEADERS,
        ]
        self.writer.write(response_head(200, headers) + (b"" if method == b"HEAD" else body))

    async def hls_playlist(self, method: bytes, key, query: dict[str, str]) -> None:
        status, text = await self.node.hls.playlist(key, query.get("_HLS_msn"), query.get("_HLS_part"))
        if status != 200:
            self.send_simple(status, f"{text}\n", refusal_headers(text))
            return
        body = text.encode()
        self.send_body(method, b"application/vnd.apple.mpegurl", body, b"no-cache")
        # A player asks for the playlist every target duration: that is what counts it as a viewer.
        self.node.stats.served(key, "hls", 0 if method == b"HEAD" else len(body), self.peer.rpartition(":")[0])

    async def hls_media(self, method: bytes, app: str, stream: str, file_name: str, query: dict[str, str]) -> None:
        status, body = await self.node.hls.media(app, stream, file_name, query.get("token", ""))
        if status != 200:
            log.info("http %s hls media refused: %s/%s/%s reason=%s", self.peer, app, stream, file_name, body)
            self.send_simple(status, f"{body}\n", refusal_headers(str(body)))
            return
        # Segments and parts never change once complete.
        self.send_body(method, b"video/mp2t", body, b"max-age=60")
