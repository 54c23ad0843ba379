"""The node side's answers to what streams/ announces (streams/signals.py);
nodes/apps.py connects them."""

from __future__ import annotations

from django.db import transaction

from domains.models import Domain
from livecenter.media.policy import StreamKey

from . import bridge, control


def kick_forbidden_publisher(sender, key: StreamKey, **kwargs) -> None:
    control.request_kick(key)


def forget_resumed_stream(sender, key: StreamKey, **kwargs) -> None:
    # This process's engine sees the resume at once; other nodes within their
    # policy cache's time.
    bridge.forget_stream(key)


def forget_changed_domain(sender, instance, **kwargs) -> None:
    """A domain, its certificate or its callbacks were saved or deleted: this process's
    engine asks again at the next connection (a TLS handshake gets a
    replaced certificate at once), once the change is committed; other
    nodes within their policy cache's time."""
    domain = instance if isinstance(instance, Domain) else Domain.objects.filter(pk=instance.domain_id).first()
    if domain is not None:  # a certificate deleted with its domain: the domain's own signal says it
        name = domain.domain_name
        transaction.on_commit(lambda: bridge.forget_domain(name))
