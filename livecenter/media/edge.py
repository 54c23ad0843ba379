"""A node's part in a cluster of centers and edges (DESIGN.md, "Scaled";
issue 14).

An **edge** relays each stream its publishers send to a center node of the
stream's live center (`EdgeRelays`), and pulls from the center node that
carries a stream what its own viewers ask for and it does not carry
(`EdgePulls`): one pull per stream, shared by its viewers, dropped
`pull_idle_seconds` after the last one has gone, and made again from the
stream's next center when its center goes away while they watch. A
**center** serves its viewers directly and takes relays and pulls from
edges. The embedded node (`make run`) is both and does neither.

Where to relay to and pull from is a `Router`'s answer (the node registry's,
in the nodes app: the engine never touches the ORM or Redis). What moves the
bytes is relay.py. Between nodes a stream is admitted by a **node token**
(`lc_node`, `lc_relay`: an HMAC with the cluster's shared key over the URI,
the sending node and an expiry) instead of the domain's signature, which
the edge has already checked: a center takes a relayed publish under the
domain's switches and forbidden list as any other, and a pull by its
ingest-domain key past the capacity limit, as it does for media workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from .capacity import is_worker, worker_token
from .policy import PolicyUnavailable, StreamKey
from .relay import RelayError, RelayTarget, pull, push, push_srt
from .renditions import split_rendition_name
from .srt.packets import MAX_STREAM_ID_BYTES

log = logging.getLogger(__name__)

NODE_PARAM = "lc_node"
RELAY_TOKEN_PARAM = "lc_relay"
# A relay carries its publisher's facts to the center, under the token:
# the publish session's id (one session per publish, the edge's) and the
# publisher's own address (DescribeLiveStreamsOnlineList's ClientIp).
SESSION_PARAM = "lc_session"
CLIENT_PARAM = "lc_client"
NODE_QUERY_PARAMS = frozenset({NODE_PARAM, RELAY_TOKEN_PARAM, SESSION_PARAM, CLIENT_PARAM})
# The facts' sizes (streams.PublishSession's columns). They come from a
# node that holds the cluster key, and are bounded all the same.
MAX_SESSION_ID_CHARS = 64
MAX_CLIENT_ADDR_CHARS = 64
# How long a node token is good for: long enough for a connection to start,
# short enough that a leaked one soon is not.
NODE_TOKEN_SECONDS = 300
# Between attempts to relay a stream when no center took it.
RELAY_RETRY_SECONDS = 2.0
# A center's refusals that are passing faults, not verdicts on the stream:
# the edge tries another center. Any other refusal (forbidden, the domain
# disabled, published elsewhere) ends the edge's publisher too.
PASSING_REFUSALS = frozenset({"policy unavailable"})
# A pulled stream no viewer has watched for this long is dropped.
PULL_IDLE_SECONDS = 10.0
PULL_CHECK_SECONDS = 1.0
# Between attempts to pull a stream again for viewers whose pull ended.
PULL_RETRY_SECONDS = 1.0


def is_edge_only(roles: Collection[str]) -> bool:
    """An edge that is not also a center relays and pulls; a node that is
    both (`make run`'s) carries every stream itself."""
    return "edge" in roles and "center" not in roles


def _signed(uri: str, node_id: str, facts: Mapping[str, str]) -> str:
    """What a node token signs: the URI, the node, and a relay's facts."""
    if SESSION_PARAM not in facts and CLIENT_PARAM not in facts:
        return f"{uri}|{node_id}"
    return f"{uri}|{node_id}|{facts.get(SESSION_PARAM, '')}|{facts.get(CLIENT_PARAM, '')}"


def node_token(key: bytes, uri: str, node_id: str, now: float, facts: Mapping[str, str] | None = None) -> str:
    """What a node puts in `lc_relay` to publish or play `uri` on another
    node; `facts` (a relay's SESSION_PARAM and CLIENT_PARAM) are signed too."""
    return worker_token(key, _signed(uri, node_id, facts or {}), int(now) + NODE_TOKEN_SECONDS)


def relayed_by(key: bytes, uri: str, query: Mapping[str, str], now: float) -> str | None:
    """The id of the node a request comes from, when its node token is good."""
    node_id = query.get(NODE_PARAM)
    if not key or not node_id:
        return None
    return node_id if is_worker(key, _signed(uri, node_id, query), query.get(RELAY_TOKEN_PARAM), now) else None


@dataclass(frozen=True, slots=True)
class RelayFacts:
    """A relayed publish's publisher, as the edge that holds it says."""

    session_id: str
    client_addr: str


def _fact(value: str | None, max_chars: int) -> str | None:
    if not value or len(value) > max_chars or not value.isascii() or not value.isprintable():
        return None
    return value


def relay_facts(query: Mapping[str, str]) -> RelayFacts | None:
    """The facts a relay's query carries (check `relayed_by` first); None
    when it carries none or they are out of bounds."""
    session_id = _fact(query.get(SESSION_PARAM), MAX_SESSION_ID_CHARS)
    client_addr = _fact(query.get(CLIENT_PARAM), MAX_CLIENT_ADDR_CHARS)
    if session_id is None or client_addr is None:
        return None
    return RelayFacts(session_id, client_addr)


@dataclass(frozen=True, slots=True)
class Route:
    """A node to relay to or pull from: its RTMP address, and its SRT port
    if it takes SRT."""

    node_id: str
    host: str
    rtmp_port: int
    srt_port: int | None = None


class Router(Protocol):
    """The registry's answers (nodes app), awaited on the node's loop."""

    async def relay_route(self, key: StreamKey, avoid: Collection[str]) -> Route | str:
        """The center node `key` should be relayed to, not one of `avoid`
        (nodes that failed it just now); or why there is none."""

    async def pull_route(self, key: StreamKey) -> Route | None:
        """The node carrying `key` live for this edge to pull from, if any."""

    async def claim(self, key: StreamKey, node_id: str) -> str | None:
        """Optional: take `key` for a publisher on `node_id`, the one
        publisher of the cluster; the reason it is taken elsewhere if so."""

    async def release(self, key: StreamKey, node_id: str) -> None:
        """Optional, with `claim`: `node_id`'s publisher of `key` has gone."""


def _target(
    route: Route,
    key: StreamKey,
    cluster_key: bytes,
    node_id: str,
    facts: RelayFacts | None = None,
    protocol: str = "rtmp",
) -> RelayTarget:
    uri = f"/{key.app}/{key.stream}"
    signed = {SESSION_PARAM: facts.session_id, CLIENT_PARAM: facts.client_addr} if facts is not None else {}
    token = node_token(cluster_key, uri, node_id, time.time(), signed)
    query = (("domain", key.domain), (NODE_PARAM, node_id), *signed.items(), (RELAY_TOKEN_PARAM, token))
    port = route.srt_port if protocol == "srt" else route.rtmp_port
    return RelayTarget(route.host, port, key.app, key.stream, query, protocol)


@dataclass
class RelayState:
    """What the console and troubleshooting tool are told about one relay."""

    center: str = ""  # the center node carrying it now ("" while none)
    # The publish it relays (the current one, after a returning publisher).
    facts: RelayFacts | None = None
    since: float = field(default_factory=time.time)
    failovers: int = 0
    error: str = ""  # the last failure, or why no center could take it

    def as_dict(self) -> dict:
        return {"center": self.center, "since": self.since, "failovers": self.failovers, "error": self.error}


class EdgeRelays:
    """Relays every stream published on this edge to a center, moving it
    to another center of the region when its center fails, for as long as
    the stream is live here; the publisher never notices."""

    def __init__(self, node, router: Router, retry_seconds: float = RELAY_RETRY_SECONDS) -> None:
        self.node = node
        self.router = router
        self.retry_seconds = retry_seconds
        self.states: dict[StreamKey, RelayState] = {}
        self._tasks: dict[StreamKey, asyncio.Task] = {}

    def start(self, key: StreamKey, facts: RelayFacts | None = None) -> None:
        """Relay the publish `facts` says of `key` (its publisher's session)."""
        self.ended(key)  # a relay still ending (its publisher just left) is the old publish's
        self.states[key] = RelayState(facts=facts)
        self._tasks[key] = asyncio.get_running_loop().create_task(self._run(key), name=f"relay {key}")

    def ended(self, key: StreamKey) -> None:
        """The publisher of `key` has left this edge: its relay ends now,
        rather than after the hub's reconnect grace, so that the stream's
        claim is released at once and the publisher may come back on
        another edge; the center's own grace holds its viewers meanwhile."""
        task = self._tasks.pop(key, None)
        self.states.pop(key, None)
        if task is not None:
            task.cancel()

    async def _run(self, key: StreamKey) -> None:
        state = self.states[key]
        avoid: set[str] = set()
        try:
            while self.node.hub.is_live(key):
                route = await self.router.relay_route(key, avoid)
                if isinstance(route, str):
                    if state.error != route:
                        log.warning("relay of %s: no center takes it: %s", key, route)
                    state.center, state.error = "", route
                    avoid.clear()  # the next round tries every center again
                    await asyncio.sleep(self.retry_seconds)
                    continue
                config = self.node.config
                # Over SRT when the node is set so and the center takes SRT;
                # a center without an SRT port still gets the stream, over RTMP.
                protocol = "srt" if config.relay_protocol == "srt" and route.srt_port else "rtmp"
                target = _target(route, key, config.cluster_key, config.node_id, state.facts, protocol)
                if protocol == "srt" and len(target.srt_stream_id.encode()) > MAX_STREAM_ID_BYTES:
                    # Long names with the node token and the facts past SRT's
                    # 512-byte stream ID: this stream goes over RTMP.
                    protocol = "rtmp"
                    target = _target(route, key, config.cluster_key, config.node_id, state.facts, protocol)

                def started(route=route, target=target) -> None:
                    state.center, state.since, state.error = route.node_id, time.time(), ""
                    log.info("relay of %s: to %s (%s)", key, route.node_id, target)

                try:
                    if protocol == "srt":
                        await push_srt(self.node.hub, key, target, latency_ms=config.relay_srt_latency_ms,
                                       passphrase=await self._passphrase(key), on_started=started)  # fmt: skip
                    else:
                        await push(self.node.hub, key, target, on_started=started)
                    return  # the stream ended here
                except RelayError as exc:
                    log.warning("relay of %s to %s failed: %s", key, route.node_id, exc.reason)
                    if exc.refusal and exc.refusal not in PASSING_REFUSALS:
                        # A verdict on the stream, which every center would give.
                        log.info("stream %s: publisher ended, the center refused it: %s", key, exc.refusal)
                        state.error = exc.refusal
                        self.node.kick(key)
                        return
                    if state.center:
                        state.failovers += 1
                    state.center, state.error = "", exc.reason
                    avoid.add(route.node_id)
        finally:
            if self._tasks.get(key) is asyncio.current_task():
                del self._tasks[key]
                self.states.pop(key, None)

    async def _passphrase(self, key: StreamKey) -> str | None:
        """The ingest domain's SRT passphrase, which the center asks of an
        SRT relay as of any SRT publisher (and which keeps the stream
        encrypted across the link)."""
        try:
            config = await self.node.policy.domain_config(key.domain)
        except PolicyUnavailable:
            raise RelayError(f"the settings of {key.domain} cannot be read (its SRT passphrase)") from None
        return (config.srt_passphrase or None) if config is not None else None

    async def stop(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


class EdgePulls:
    """Pulls a stream from the node carrying it when a viewer here asks for
    one that is not live here; one pull per stream, dropped when it has had
    no viewer for `idle_seconds`."""

    def __init__(self, node, router: Router, idle_seconds: float = PULL_IDLE_SECONDS) -> None:
        self.node = node
        self.router = router
        self.idle_seconds = idle_seconds
        self.sources: dict[StreamKey, str] = {}  # key -> the node id pulled from
        self._tasks: dict[StreamKey, asyncio.Task] = {}
        self._idle_since: dict[StreamKey, float] = {}
        self._watcher: asyncio.Task | None = None

    def wanted(self, key: StreamKey) -> None:
        """A viewer waits for `key` (the hub's on_wait)."""
        if key in self._tasks or self.node.hub.is_live(key):
            return
        loop = asyncio.get_running_loop()
        self._tasks[key] = loop.create_task(self._run(key), name=f"pull {key}")
        if self._watcher is None:
            self._watcher = loop.create_task(self._drop_idle(), name="pull-idle")

    async def _run(self, key: StreamKey) -> None:
        try:
            while True:
                route = await self._route(key)
                if route is not None:
                    self.sources[key] = route.node_id
                    target = _target(route, key, self.node.config.cluster_key, self.node.config.node_id)
                    log.info("pulling %s from %s (%s)", key, route.node_id, target)
                    try:
                        await pull(self.node.hub, key, target)
                        log.info("pull of %s ended: the source's stream ended", key)
                    except RelayError as exc:
                        log.warning("pull of %s failed: %s", key, exc.reason)
                    self.sources.pop(key, None)
                # Ask again while viewers wait: the first ones for up to the
                # play wait (the router learns that a center carries a stream
                # from its next beat, a second or two after it went live
                # there), and those of a pull that ended (its center died and
                # the stream moved to another) for the hub's reconnect grace.
                if not self._viewers_waiting(key):
                    return
                await asyncio.sleep(PULL_RETRY_SECONDS)
        except asyncio.CancelledError:
            log.info("pull of %s dropped: no viewer for %g s", key, self.idle_seconds)
            raise
        finally:
            self._tasks.pop(key, None)
            self.sources.pop(key, None)
            self._idle_since.pop(key, None)

    async def _route(self, key: StreamKey) -> Route | None:
        """Where to pull `key` from: the node carrying it; for a rendition
        no node carries yet (`{stream}_lld`), the center carrying its
        source, which makes the rendition for the pull as for a viewer of
        its own (the pull waits there in its play wait, and here the
        viewers wait for the pull)."""
        route = await self.router.pull_route(key)
        split = split_rendition_name(key.stream) if route is None else None
        if split is not None:
            route = await self.router.pull_route(StreamKey(key.domain, key.app, split[0]))
        return route

    def under_way(self, key: StreamKey) -> bool:
        """Whether `key` is being pulled here from a node that carries it
        (connecting, or live)."""
        return key in self.sources

    def _viewers_waiting(self, key: StreamKey) -> bool:
        hub = self.node.hub
        if hub.is_live(key):
            return False
        stream = hub.stream(key)
        return key in hub.waiting_keys() or (stream is not None and stream.viewer_count > 0)

    def _viewers(self, key: StreamKey) -> int:
        stream = self.node.hub.stream(key)
        if stream is None:
            return 0
        return sum(stream.counters.request_viewers(time.monotonic(), stream.viewers()).values())

    async def _drop_idle(self) -> None:
        while True:
            await asyncio.sleep(PULL_CHECK_SECONDS)
            now = time.monotonic()
            for key, task in list(self._tasks.items()):
                # Idle counts from when the pull is live: its first viewer
                # is still waiting while it connects.
                if not self.node.hub.is_live(key) or self._viewers(key):
                    self._idle_since.pop(key, None)
                elif now - self._idle_since.setdefault(key, now) >= self.idle_seconds:
                    task.cancel()

    async def stop(self) -> None:
        tasks = list(self._tasks.values()) + ([self._watcher] if self._watcher is not None else [])
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
