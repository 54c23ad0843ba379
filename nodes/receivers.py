"""The node side's answers to what streams/ announces (streams/signals.py);
nodes/apps.py connects them."""

from __future__ import annotations

from django.db import transaction

from domains.models import Domain
from livecenter.media.policy import StreamKey
from mediajobs import jobs as media_jobs
from mediajobs.models import ANY_APP
from streams.models import PublishSession

from . import bridge, control


def kick_forbidden_publisher(sender, key: StreamKey, **kwargs) -> None:
    control.request_kick(key)


def forget_resumed_stream(sender, key: StreamKey, **kwargs) -> None:
    # Every node sees the resume at once (over the channel layer, as a kick).
    control.request_forget(key)


def forget_changed_domain(sender, instance, **kwargs) -> None:
    """A domain, its certificate or its callbacks were saved or deleted: this process's
    engine asks again at the next connection (a TLS handshake gets a
    replaced certificate at once), once the change is committed; other
    nodes within their policy cache's time."""
    domain = instance if isinstance(instance, Domain) else Domain.objects.filter(pk=instance.domain_id).first()
    if domain is not None:  # a certificate deleted with its domain: the domain's own signal says it
        name = domain.domain_name
        transaction.on_commit(lambda: bridge.forget_domain(name))


def start_capture_on_live_streams(sender, kind: str, domain_name: str, app: str, **kwargs) -> int:
    """Recording or snapshot settings were set: start the job on the streams
    of that app live now, at the center node carrying each (as a publish
    does, media_jobs.stream_published). Returns how many it started it on."""
    sessions = PublishSession.objects.filter(domain_name=domain_name, stopped_at__isnull=True)
    sessions = sessions.exclude(center_node_id="")
    if app != ANY_APP:
        sessions = sessions.filter(app=app)
    started = 0
    for session in sessions.only("app", "stream", "center_node_id"):
        key = StreamKey(domain_name, session.app, session.stream)
        node = bridge.node_address(session.center_node_id)
        if node is None or media_jobs.is_rendition(key):
            continue
        media_jobs.start_job(kind, key, node)
        started += 1
    return started
