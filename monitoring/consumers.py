"""The live pages' WebSockets (routing.py): a page joins its stream's or
domain's channel-layer group (live.py) and is sent what the media nodes
report, as JSON, with no polling.

    ws/monitoring/stream/?domain=&app=&stream=
        -> {"type": "history", "live", "session_id", "samples": [...]}, then
           {"type": "sample", "sample": {...}} every second and
           {"type": "state", "live", "session_id", "at", "reason", "stream_url"} on start and stop
    ws/monitoring/domain/?domain=
        -> {"type": "snapshot", "domain", "streams": [{"stream_url", "session_id", "sample"}],
            "stopped": [{"stream_url", "session_id", "stopped_at", "reason", "sample"}]}, then
           {"type": "samples", "samples": [...]} every second and "state" as above

Only a logged-in operator's own streams: anyone else is closed with 4403.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.core.exceptions import ValidationError

from . import live, services

CLOSE_UNAUTHORISED = 4401
CLOSE_FORBIDDEN = 4403


def _stream_group(user, query: dict[str, str]) -> str:
    key = services.stream_key(user, query.get("domain", ""), query.get("app", ""), query.get("stream", ""))
    return live.stream_group(key)


def _stream_opening(user, query: dict[str, str]) -> dict:
    view = services.stream_view(user, query.get("domain", ""), query.get("app", ""), query.get("stream", ""))
    return {
        "type": "history",
        "live": view.is_live,
        "session_id": view.session.session_id if view.session else "",
        "samples": [services.sample_json(s) for s in view.history],
    }


def _domain_group(user, query: dict[str, str]) -> str:
    return live.domain_group(services.ingest_domain_for(user, query.get("domain", "")).domain_name)


def _domain_opening(user, query: dict[str, str]) -> dict:
    view = services.domain_view(user, query.get("domain", ""))
    streams = [
        {
            "stream_url": s.stream_url,
            "session_id": s.session_id,
            "sample": services.sample_json(view.latest[s.stream_url]) if s.stream_url in view.latest else None,
        }
        for s in view.sessions
    ]
    stopped = [services.stopped_json(s) for s in view.stopped]
    return {"type": "snapshot", "domain": view.domain.domain_name, "streams": streams, "stopped": stopped}


class _MonitoringConsumer(AsyncJsonWebsocketConsumer):
    group = ""
    group_of = staticmethod(_stream_group)
    opening_of = staticmethod(_stream_opening)

    def query(self) -> dict[str, str]:
        return dict(parse_qsl(self.scope.get("query_string", b"").decode("latin-1")))

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHORISED)
            return
        query = self.query()
        try:
            group = await database_sync_to_async(self.group_of)(user, query)
        except ValidationError:
            await self.close(code=CLOSE_FORBIDDEN)
            return
        # Join before reading what to open with, so no sample falls between
        # the two; the page drops what it already has.
        self.group = group
        await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()
        await self.send_json(await database_sync_to_async(self.opening_of)(user, query))

    async def disconnect(self, code) -> None:
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content, **kwargs) -> None:
        pass  # the page only listens

    async def monitoring_state(self, event) -> None:
        await self.send_json({**{k: v for k, v in event.items() if k != "type"}, "type": "state"})


class StreamMonitorConsumer(_MonitoringConsumer):
    async def monitoring_sample(self, event) -> None:
        await self.send_json({"type": "sample", "sample": event["sample"]})


class DomainMonitorConsumer(_MonitoringConsumer):
    group_of = staticmethod(_domain_group)
    opening_of = staticmethod(_domain_opening)

    async def monitoring_samples(self, event) -> None:
        await self.send_json({"type": "samples", "samples": event["samples"]})
