"""The media engine (DESIGN.md): protocol codecs, stream hub, servers, stats.

Nothing here imports Django; the engine asks `streams/` for policy and emits
events back to it.
"""
