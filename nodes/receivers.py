"""The node side's answers to what streams/ announces (streams/signals.py);
nodes/apps.py connects them."""

from __future__ import annotations

from livecenter.media.policy import StreamKey

from . import bridge, control


def kick_forbidden_publisher(sender, key: StreamKey, **kwargs) -> None:
    control.request_kick(key)


def forget_resumed_stream(sender, key: StreamKey, **kwargs) -> None:
    # This process's engine sees the resume at once; other nodes within their
    # policy cache's time.
    bridge.forget_stream(key)
