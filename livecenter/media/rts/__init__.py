"""RTS: WebRTC playback over WHEP (RFC 9725), issue 5.

- `h264.py` (pure): FLV/AVCC access units to Annex B for RTP, and B-frame
  detection from slice headers.
- `whep.py` (pure): the WHEP resource paths and what an SDP offer asks for.
- `media.py`: one shared source per stream for every WebRTC viewer: H.264
  passed through (or, with B-frames, transcoded once), AAC decoded and
  encoded to Opus once; per-viewer bounded queues (on the event loop).
- `threads.py`: the conversions that run in threads (one per stream and
  kind), fed by and answering to the loop.
- `session.py`: the aiortc glue and the registry of WHEP sessions.
- `aiortc_compat.py`: every private aiortc/aioice name RTS relies on.
"""
