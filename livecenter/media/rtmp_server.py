"""The RTMP server: asyncio around the sans-IO connection (livecenter.media.rtmp).

It only moves bytes, asks admission at session start, and connects a
publisher or a player to the stream hub. Refusals are the matching onStatus
error, one INFO line naming peer, stream and reason, and a close; a refused
publisher is also reported to the sink (node.publish_refused), so the
console's troubleshooting tool can explain it.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from urllib.parse import parse_qsl, urlsplit

from . import rtmp
from .access import address_of
from .admission import Client, Refusal, admit_publish, domain_of
from .capacity import WORKER_TOKEN_PARAM
from .edge import NODE_QUERY_PARAMS, relay_facts
from .flv import FrameKind
from .hub import AlreadyPublishing
from .listener import peer_name
from .play import PlayRefusal, PlayRequest, admit_and_wait
from .policy import (
    CENTER_PUBLISH,
    CONNECTION_LOST,
    EDGE_PUBLISH,
    NODE_STOPPED,
    PUBLISHER_ENDED,
    PublishRefused,
    StreamKey,
    StreamPublished,
)
from .pump import FramePump
from .stats import NODE_LINK_PROTOCOL
from .tls import server_name, tls_session

log = logging.getLogger(__name__)

READ_BYTES = 64 * 1024
CSID = {
    FrameKind.AUDIO: rtmp.AUDIO_CHUNK_STREAM_ID,
    FrameKind.VIDEO: rtmp.VIDEO_CHUNK_STREAM_ID,
    FrameKind.META: rtmp.DATA_CHUNK_STREAM_ID,
}
KIND_OF_EVENT = {
    rtmp.VideoReceived: FrameKind.VIDEO,
    rtmp.AudioReceived: FrameKind.AUDIO,
    rtmp.MetadataReceived: FrameKind.META,
}

# onStatus codes for refusals (RTMP spec 7.2.2; the codes players know).
PUBLISH_REJECTED = "NetStream.Publish.Rejected"
PUBLISH_BAD_NAME = "NetStream.Publish.BadName"
PLAY_FAILED = "NetStream.Play.Failed"
PLAY_NOT_FOUND = "NetStream.Play.StreamNotFound"
PLAY_REFUSAL_CODE = {
    PlayRefusal.DENIED: PLAY_FAILED,
    PlayRefusal.UNAVAILABLE: PLAY_FAILED,
    PlayRefusal.AT_CAPACITY: PLAY_FAILED,
    PlayRefusal.NOT_LIVE: PLAY_NOT_FOUND,
}


def split_query(text: str) -> tuple[str, dict[str, str]]:
    """`name?a=1&b=2` -> ("name", {"a": "1", "b": "2"})."""
    name, _, query = text.partition("?")
    return name, dict(parse_qsl(query, keep_blank_values=True))


def encoded_media(frame, message_stream_id: int, chunk_size: int) -> bytes:
    """The RTMP bytes of a hub frame, made once per (stream id, chunk size)
    and shared by every player that needs the same."""
    cache_key = ("rtmp", message_stream_id, chunk_size)
    data = frame.encoded.get(cache_key)
    if data is None:
        data = rtmp.encode_media_message(
            CSID[frame.kind], frame.kind.tag_type, message_stream_id, frame.timestamp, frame.body, chunk_size
        )
        frame.encoded[cache_key] = data
    return data


class RtmpServer:
    def __init__(self, node) -> None:
        self.node = node

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await RtmpSession(self.node, reader, writer).run()


class RtmpSession:
    def __init__(self, node, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.node = node
        self.reader = reader
        self.writer = writer
        self.peer = peer_name(writer.get_extra_info("peername"))
        # RTMPS (tls.py): the name the client's certificate was chosen by; None over plain RTMP.
        self.sni = server_name(writer)
        config = node.config
        self.conn = rtmp.RtmpServerConnection(
            max_buffered_bytes=config.rtmp_buffered_bytes,
            max_buffered_bytes_before_publish=config.rtmp_buffered_bytes_before_publish,
            budget=node.rtmp_budget,
        )
        self.tc_url = ""
        self.tc_host = ""
        self.app = ""
        self.connect_query: dict[str, str] = {}
        self.publication = None
        self.publish_stream_id: int | None = None
        self.session_id = ""
        self.key: StreamKey | None = None
        self.players: dict[int, asyncio.Task] = {}
        self.kick_watch: asyncio.Task | None = None
        self.closing = False

    def abort(self) -> None:
        self.writer.transport.abort()

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.writer.write(data)

    def read_deadline(self, now: float, accepted_at: float, idle_since: float | None) -> tuple[float | None, str]:
        """How long the next read may wait, and what to call it if it times out.

        A peer holds a connection without a signature only so long: the
        whole handshake has `handshake_timeout_seconds` from accept, and a
        connection that neither publishes nor plays is closed
        `session_start_timeout_seconds` after accept or after its last
        publication or play ended. A publisher must keep sending; a player
        may stay silent."""
        config = self.node.config
        if self.publication is not None:
            return config.publish_idle_seconds, "no data"
        if self.players:
            return None, ""
        if not self.conn.handshake_complete:
            return accepted_at + config.handshake_timeout_seconds - now, "handshake not complete in time"
        return idle_since + config.session_start_timeout_seconds - now, "no publish or play in time"

    async def run(self) -> None:
        self.node.connections[self] = asyncio.current_task()
        loop = asyncio.get_running_loop()
        accepted_at = idle_since = loop.time()
        reason = PUBLISHER_ENDED
        try:
            while not self.closing:
                now = loop.time()
                if self.publication is not None or self.players:
                    idle_since = None
                elif idle_since is None:
                    idle_since = now
                timeout, reason = self.read_deadline(now, accepted_at, idle_since)
                try:
                    data = await asyncio.wait_for(self.reader.read(READ_BYTES), timeout)
                except TimeoutError:
                    log.info("rtmp %s stream=%s: %s, closing", self.peer, self.key or "-", reason)
                    break
                reason = PUBLISHER_ENDED
                for event in self.conn.receive_data(data):
                    await self.on_event(event)
                self.flush()
                await self.writer.drain()
                if not data:
                    # Had the peer ended its publication, on_stream_end
                    # would have ended it already.
                    reason = self.lost_reason()
                    break
        except rtmp.RtmpProtocolError as exc:
            reason = exc.reason
            log.info("rtmp %s stream=%s: protocol error, closing: %s", self.peer, self.key or "-", exc.reason)
        except (ConnectionError, OSError):
            reason = self.lost_reason()
        finally:
            await self.cleanup(reason)

    def lost_reason(self) -> str:
        """Why a connection that closed under a publication ended it: the
        node stopping closed it, or else the peer went without a word."""
        return NODE_STOPPED if self.node.stopping else CONNECTION_LOST

    async def cleanup(self, reason: str) -> None:
        self.node.connections.pop(self, None)
        self.conn.close()
        for task in self.players.values():
            task.cancel()
        if self.players:
            await asyncio.gather(*self.players.values(), return_exceptions=True)
        self.end_publication(reason)
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (ConnectionError, OSError):
            pass

    # --- events -------------------------------------------------------------------

    async def on_event(self, event) -> None:
        handler = self.HANDLERS.get(type(event))
        if handler is not None:
            await handler(self, event)

    async def on_connect(self, event) -> None:
        self.tc_url = event.tc_url or ""
        self.app, self.connect_query = split_query(event.app or "")
        try:
            tc_url = urlsplit(self.tc_url)
        except ValueError as exc:  # "rtmp://[x": urlsplit takes it for an IPv6 host (as bench/fuzz found for HTTP)
            self.conn.reject_connect(event, f"tcUrl is not a URL: {exc}")
            self.refuse("connect", self.app, f"tcUrl is not a URL: {exc}")
            return
        self.tc_host = tc_url.hostname or ""
        if self.sni is not None and self.tc_host.rstrip(".") != self.sni:
            # One domain's certificate never fronts another domain's streams (as HTTPS's 421).
            reason = f"tcUrl names {self.tc_host or 'no host'} on a connection for {self.sni}"
            self.conn.reject_connect(event, reason)
            self.refuse("connect", self.app, reason)
            return
        self.connect_query.update(dict(parse_qsl(tc_url.query)))
        self.conn.accept_connect(event)

    def _target(self, stream_query: dict[str, str]) -> tuple[str, dict[str, str]]:
        query = {**self.connect_query, **stream_query}
        return domain_of(self.tc_host, query), query

    def refuse(self, action: str, stream: str, reason: str) -> None:
        log.info("rtmp %s %s refused: stream=%s reason=%s", self.peer, action, stream, reason)
        self.closing = True

    def refuse_publish(self, event, domain: str, code: str, reason: str) -> None:
        """The onStatus error, the log line, the close, and the report to the sink."""
        self.conn.reject_publish(event.stream_id, code, reason)
        self.refuse("publish", f"{domain}/{self.app}/{event.stream_name}", reason)
        # RTMP has no numeric refusal code (the onStatus code is a string): 0.
        self.node.publish_refused(
            PublishRefused(domain, self.app, event.stream_name, "rtmp", self.peer, reason, 0, time.time(),
                           self.node.config.node_id)
        )  # fmt: skip

    async def on_publish(self, event) -> None:
        domain, query = self._target(event.query)
        if self.publication is not None:
            return self.refuse_publish(event, domain, PUBLISH_BAD_NAME, "already publishing on this connection")
        uri = f"/{self.app}/{event.stream_name}"
        relayed_from = self.node.relayed_by(uri, query)
        # A transcode publishing its rendition back (mediajobs.jobs.publish_url)
        # carries a worker token: the ingest domain's IP list is about the
        # operator's encoders, not the machines that run the node's jobs.
        client = None if self.node.is_media_worker(uri, query) else Client(address_of(self.peer))
        admission = await admit_publish(
            self.node.policy, domain, self.app, event.stream_name, query.get("auth_key"), time.time(),
            relayed_from is not None, client,
        )  # fmt: skip
        if not admission.ok:
            code = PUBLISH_BAD_NAME if admission.refusal == Refusal.NAME_TOO_LONG else PUBLISH_REJECTED
            return self.refuse_publish(event, domain, code, str(admission.refusal))
        # The operator's publish callback, after the signature (an edge's relay was asked at the edge).
        if relayed_from is None and (denied := await self.node.publish_hooks.refusal(admission.key, "rtmp", self.peer)):
            return self.refuse_publish(event, domain, PUBLISH_REJECTED, denied)
        # An edge's relay: the publish session is its publisher's, which the edge has claimed.
        facts = relay_facts(query) if relayed_from is not None else None
        if relayed_from is None and (taken := await self.node.claim_publish(admission.key)) is not None:
            return self.refuse_publish(event, domain, PUBLISH_BAD_NAME, taken)
        try:
            self.publication = self.node.hub.publish(admission.key)
        except AlreadyPublishing:
            return self.refuse_publish(event, domain, PUBLISH_BAD_NAME, "stream is already being published")
        self.key = admission.key
        self.publish_stream_id = event.stream_id
        self.session_id = facts.session_id if facts is not None else uuid.uuid4().hex
        self.conn.accept_publish(event.stream_id, event.name)
        hidden = NODE_QUERY_PARAMS | {"auth_key", WORKER_TOKEN_PARAM}
        args = {k: v for k, v in query.items() if k not in hidden}
        url = f"rtmp://{domain}/{self.app}/{event.stream_name}"
        if args:
            url += "?" + "&".join(f"{k}={v}" for k, v in args.items())
        self.node.stream_started(
            StreamPublished(
                key=self.key,
                session_id=self.session_id,
                protocol="rtmp",
                client_addr=facts.client_addr if facts is not None else self.peer,
                publish_url=url,
                started_at=time.time(),
                node_id=self.node.config.node_id,
                publish_type=EDGE_PUBLISH if facts is not None else CENTER_PUBLISH,
                relayed_from=relayed_from if facts is not None else "",
            )
        )
        self.kick_watch = asyncio.get_running_loop().create_task(self._watch_kick(self.publication))
        # RTMPS: what the client negotiated, and the name its certificate was chosen by.
        session = tls_session(self.writer)
        over = f" over {session} for {self.sni or 'no name'}" if session else ""
        log.info("rtmp %s publishing %s%s", self.peer, self.key, over)

    async def _watch_kick(self, publication) -> None:
        await publication.kicked.wait()
        if self.publication is publication:
            log.info("rtmp %s stream=%s: publisher kicked (forbidden)", self.peer, self.key)
            self.end_publication("forbidden")
            self.abort()

    def end_publication(self, reason: str) -> None:
        if self.publication is None:
            return
        publication, self.publication = self.publication, None
        if self.kick_watch is not None and self.kick_watch is not asyncio.current_task():
            self.kick_watch.cancel()
        publication.close(reason)
        self.node.stream_ended(self.key, self.session_id, reason)
        log.info("rtmp %s stopped publishing %s%s", self.peer, self.key, f" ({reason})" if reason else "")

    async def on_media(self, event) -> None:
        if self.publication is None or event.stream_id != self.publish_stream_id:
            return
        self.publication.push(KIND_OF_EVENT[type(event)], event.timestamp, event.payload)

    async def on_stream_end(self, event) -> None:
        if event.stream_id == self.publish_stream_id:
            self.end_publication(PUBLISHER_ENDED)
        task = self.players.pop(event.stream_id, None)
        if task is not None:
            task.cancel()

    async def on_play(self, event) -> None:
        domain, query = self._target(event.query)
        play = PlayRequest(
            protocol="rtmp",
            peer=self.peer,
            domain=domain,
            app=self.app,
            stream=event.stream_name,
            uri=f"/{self.app}/{event.stream_name}",
            query=query,
        )
        decision = await admit_and_wait(self.node, play)
        if not decision.ok:
            # play.py has logged it.
            self.conn.reject_play(event.stream_id, PLAY_REFUSAL_CODE[decision.refusal], decision.reason)
            self.closing = True
            return
        self.conn.accept_play(event.stream_id, event.name)
        self.flush()
        stream_id, chunk_size = event.stream_id, self.conn.out_chunk_size
        pump = FramePump(self.writer, lambda frame: encoded_media(frame, stream_id, chunk_size))
        # Players other than the media workers get AAC for Dolby audio (hub.py).
        # Another node pulling it passes it on as it is too (edge.py).
        pulled_by = self.node.relayed_by(play.uri, play.query)
        passthrough = pulled_by is not None or self.node.is_media_worker(play.uri, play.query)
        legacy_audio = not passthrough
        subscription = self.node.hub.subscribe(
            decision.key,
            protocol=NODE_LINK_PROTOCOL if pulled_by is not None else "rtmp",
            on_ready=pump.on_ready,
            legacy_audio=legacy_audio,
            viewer="" if pulled_by is not None else self.node.stats.viewer(self.peer.rpartition(":")[0]),
        )
        pump.attach(subscription)
        self.players[stream_id] = asyncio.get_running_loop().create_task(self._play(stream_id, pump))
        log.info("rtmp %s playing %s", self.peer, decision.key)

    async def _play(self, stream_id: int, pump: FramePump) -> None:
        subscription = pump.subscription
        try:
            await pump.finished.wait()
            if subscription.lagging_disconnect:
                # The pump aborted the connection (pump.py): nothing more to send.
                log.info("rtmp %s play of %s ended: too slow, disconnected", self.peer, subscription.key)
                self.closing = True
            elif not self.closing and not self.writer.transport.is_closing():
                self.conn.send_unpublish_notify(stream_id)
                self.flush()
                log.info("rtmp %s play of %s ended: stream ended", self.peer, subscription.key)
                self.closing = True
                self.writer.close()
        finally:
            pump.close()

    HANDLERS = {
        rtmp.ConnectRequested: on_connect,
        rtmp.PublishRequested: on_publish,
        rtmp.PlayRequested: on_play,
        rtmp.VideoReceived: on_media,
        rtmp.AudioReceived: on_media,
        rtmp.MetadataReceived: on_media,
        rtmp.UnpublishRequested: on_stream_end,
        rtmp.DeleteStreamRequested: on_stream_end,
        rtmp.CloseStreamRequested: on_stream_end,
    }
