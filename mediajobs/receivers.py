"""The media workers' answers to what streams/ announces (streams/signals.py);
mediajobs/apps.py connects them."""

from __future__ import annotations

from . import services


def attach_latest_snapshots(sender, sessions, **kwargs) -> None:
    """The online list shows each live stream's latest snapshot (issue 7)."""
    snapshots = services.latest_snapshots(sessions)
    for session in sessions:
        session.snapshot = snapshots.get((session.domain_name, session.app, session.stream))
