"""The publish authorisation callback (issue 16; SRS's on_publish,
OvenMediaEngine's admission webhook): before a publish is accepted, and
after its signed URL passed, the node POSTs the publish to the ingest
domain's URL, signed like every callback (webhooks.py):

    {"event": "publish.authorize", "domain": …, "app": …, "stream": …,
     "protocol": "rtmp"|"srt"|"whip", "client_ip": …, "node_id": …, "time": …}

A 2xx allows it; any other status refuses it, with the receiver's body
(webhooks.reason_text) as the reason the publisher is told. A receiver that
does not answer within the domain's timeout (or may not be called) allows or
refuses as the domain says. Answers are kept `cache_seconds` per stream and
client address, so a publisher that reconnects does not ask again.

Each publisher's session awaits its own ask, so a slow receiver delays only
that publisher, by at most the timeout.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections import OrderedDict

from .policy import Policy, PolicyUnavailable, PublishHook, StreamKey
from .webhook_client import WebhookError, post
from .webhooks import reason_text, signed_headers

log = logging.getLogger(__name__)

PUBLISH_HOOK_EVENT = "publish.authorize"
DEFAULT_CACHE_SECONDS = 30.0
# Answers kept at most (the oldest go first): one per live publisher is plenty.
MAX_CACHED_ANSWERS = 4096


def client_ip(peer: str) -> str:
    """ "1.2.3.4:5678" or "[::1]:5678" -> the address."""
    return peer.rsplit(":", 1)[0].strip("[]")


class PublishHooks:
    """The node's asker; `refusal` is what the servers call."""

    def __init__(self, policy: Policy, node_id: str, cache_seconds: float = DEFAULT_CACHE_SECONDS) -> None:
        self.policy = policy
        self.node_id = node_id
        self.cache_seconds = cache_seconds
        # (url, stream key, client ip) -> (when asked, monotonic; refusal or None)
        self._answers: OrderedDict[tuple[str, StreamKey, str], tuple[float, str | None]] = OrderedDict()

    async def refusal(self, key: StreamKey, protocol: str, peer: str) -> str | None:
        """Why the domain's hook refuses this publish, or None to go on."""
        ask = getattr(self.policy, "publish_hook", None)
        if ask is None:
            return None
        try:
            hook = await ask(key.domain)
        except PolicyUnavailable:
            # As for a block nobody could look up (nodes/bridge.py): the
            # signature passed; refusing every publish of the outage is worse.
            log.info("publish hook of %s unknown while the policy is unavailable; not asked", key.domain)
            return None
        if hook is None:
            return None
        ip = client_ip(peer)
        cache_key = (hook.url, key, ip)
        now = time.monotonic()
        cached = self._answers.get(cache_key)
        if cached is not None and cached[0] + self.cache_seconds > now:
            return cached[1]
        answer = await self._ask(hook, key, protocol, ip)
        if answer is not _UNREACHABLE:
            self._answers[cache_key] = (now, answer)
            self._answers.move_to_end(cache_key)
            while len(self._answers) > MAX_CACHED_ANSWERS:
                self._answers.popitem(last=False)
            return answer
        return None if hook.allow_when_unreachable else "publish authorisation callback unreachable"

    async def _ask(self, hook: PublishHook, key: StreamKey, protocol: str, ip: str):
        at = time.time()
        body = json.dumps(
            {"event": PUBLISH_HOOK_EVENT, "domain": key.domain, "app": key.app, "stream": key.stream,
             "protocol": protocol, "client_ip": ip, "node_id": self.node_id, "time": int(at)},
            separators=(",", ":"),
        ).encode()  # fmt: skip
        headers = signed_headers(hook.secret, int(at), body, PUBLISH_HOOK_EVENT, uuid.uuid4().hex)
        try:
            response = await post(hook.url, body, headers, timeout_seconds=hook.timeout_seconds, rule=hook.rule)
        except WebhookError as exc:
            verdict = "allowed" if hook.allow_when_unreachable else "refused"
            log.info("publish hook of %s for %s: %s; publish %s", key.domain, key, exc, verdict)
            return _UNREACHABLE
        if response.ok:
            return None
        reason = reason_text(response.body)
        return f"refused by the publish callback ({response.status}){': ' + reason if reason else ''}"


_UNREACHABLE = object()
