"""Dolby audio (AC-3, E-AC-3: Dolby Digital, Dolby Digital Plus with Atmos)
in the hub, as Enhanced RTMP carries it.

The hub carries FLV tag bodies. Enhanced RTMP v2 ("Enhancing Audio") gives
FLV a way to carry AC-3 and E-AC-3: SoundFormat 9 (ExHeader) and the FourCC
'ac-3' or 'ec-3', an empty SequenceStart, then each access unit as
CodedFrames, which is exactly what FFmpeg 7.1 and later write and read. So
a Dolby track is an audio track like AAC for the hub, its GOP cache, its
counters and rebasing, and for what reads the hub:

- HLS, LL-HLS and SRT playback mux it into MPEG-TS untouched (mpegts.py:
  stream type 0x81/0x87, as ATSC A/52 and Apple's HLS specify).
- Media workers reading HTTP-FLV (their `lc_worker` token, capacity.py)
  get the Enhanced RTMP tags: FFmpeg 7.1+ decodes them, and the recordings
  (PyAV) copy the E-AC-3 into the MP4. Other HTTP-FLV and RTMP viewers are
  players that may know only the legacy SoundFormats (FFmpeg 5/6, flv.js/
  mpegts.js in the web player): they get AAC-LC stereo 48 kHz made once per
  stream while they watch (legacy_audio.py, hub.py), with the shared video.
- RTS (WebRTC): the shared RTS source decodes the Dolby audio to Opus once
  per stream (rts/media.py), as it does AAC.

`DolbyAudioTrack` turns the demuxer's PassthroughAudioReceived into hub
pushes. A program that also has an AAC track keeps the AAC as the stream's
audio (every protocol plays it) and its Dolby track is not taken: one FLV
audio track cannot interleave two codecs.

Pure: no I/O, no clock.
"""

from __future__ import annotations

from .flv import (
    AUDIO_FOURCC_AC3,
    AUDIO_FOURCC_EAC3,
    AUDIO_PACKET_CODED_FRAMES,
    AUDIO_PACKET_SEQUENCE_START,
    ex_audio_body,
)
from .mpegts_demux import CODEC_AAC, CODEC_AC3, CODEC_EAC3, ProgramReceived

FOURCC_OF_CODEC = {CODEC_AC3: AUDIO_FOURCC_AC3, CODEC_EAC3: AUDIO_FOURCC_EAC3}
# The FFmpeg decoder of each Dolby FourCC (what RTS and legacy_audio.py decode with).
DECODER_OF_FOURCC = {AUDIO_FOURCC_AC3: "ac3", AUDIO_FOURCC_EAC3: "eac3"}


class DolbyAudioTrack:
    """One publisher's Dolby track, made into Enhanced RTMP audio bodies."""

    __slots__ = ("fourcc", "taken", "refusal")

    def __init__(self) -> None:
        self.fourcc = b""  # the codec of the SequenceStart last sent
        self.taken = True
        self.refusal = ""  # why the Dolby track is not taken, once it is known

    def on_program(self, program: ProgramReceived) -> None:
        """A program with AAC keeps the AAC (module docstring)."""
        has_aac = any(stream.codec == CODEC_AAC for stream in program.streams)
        has_dolby = any(stream.codec in FOURCC_OF_CODEC for stream in program.streams)
        self.taken = not has_aac
        self.refusal = "the program's AAC track is the stream's audio" if has_aac and has_dolby else ""
        if has_aac:
            self.fourcc = b""

    def bodies(self, codec: str, data: bytes) -> list[bytes]:
        """The tag bodies for one access unit: a SequenceStart first, and
        again when the codec changes (AC-3 to E-AC-3), then CodedFrames."""
        fourcc = FOURCC_OF_CODEC.get(codec)
        if not self.taken or fourcc is None or not data:
            return []
        out = []
        if fourcc != self.fourcc:
            self.fourcc = fourcc
            out.append(ex_audio_body(fourcc, AUDIO_PACKET_SEQUENCE_START))
        out.append(ex_audio_body(fourcc, AUDIO_PACKET_CODED_FRAMES, data))
        return out
