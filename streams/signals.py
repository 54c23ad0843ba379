"""What streams/ tells the apps above it (issue 12).

streams/ knows nothing of the media node or the media workers; they connect
these in their AppConfig.ready() (nodes/apps.py, mediajobs/apps.py), the way
monitoring's sink listens to the node's events.
"""

from django.dispatch import Signal

# A stream was forbidden or interrupted once: its live publisher must be cut,
# on whichever node carries it. Sent after the block is committed, so that a
# publisher who reconnects at once meets it. Arguments: key (a StreamKey).
stream_forbidden = Signal()

# A stream's block was lifted: an engine's cached "forbidden" answer must go.
# Arguments: key (a StreamKey), once per app that was blocked.
stream_resumed = Signal()

# The online list is about to show `sessions` (live PublishSessions). An app
# that holds something per stream sets it on each session (the media workers
# set `snapshot`, the stream's latest snapshot, or leave it unset).
online_streams_listed = Signal()
