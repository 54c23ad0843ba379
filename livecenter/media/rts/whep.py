"""WHEP (RFC 9725) on the media node's HTTP port: the paths, and what an SDP
offer must have before it is worth a peer connection.

- `POST /{app}/{stream}.whep?auth_key=…` with `Content-Type:
  application/sdp` and an offer: `201 Created`, the answer, and `Location:
  /{app}/{stream}.whep/{session}` (RFC 9725 4.2).
- `DELETE` on that location ends the session (4.3).
- `PATCH` (trickle ICE, 4.4) is answered 405: the answer carries every
  candidate the node has, and the node learns the browser's from its
  connectivity checks (peer-reflexive, RFC 8445 7.3.1.3), so nothing needs
  trickling.

Pure: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# An SDP offer from a browser is 3-10 KB; this bounds what a peer can make us
# buffer and hand to the SDP parser.
MAX_OFFER_BYTES = 64 * 1024
SDP_CONTENT_TYPE = "application/sdp"

_NAME = r"[A-Za-z0-9_.-]{1,255}"
_ENDPOINT_RE = re.compile(rf"^/(?P<app>{_NAME})/(?P<stream>{_NAME})\.whep$")
_RESOURCE_RE = re.compile(rf"^/(?P<app>{_NAME})/(?P<stream>{_NAME})\.whep/(?P<session>[A-Za-z0-9_-]{{16,64}})$")


@dataclass(frozen=True, slots=True)
class WhepPath:
    app: str
    stream: str
    session: str | None = None  # None: the endpoint; else a session's resource

    @property
    def endpoint(self) -> str:
        return f"/{self.app}/{self.stream}.whep"

    @property
    def signed_uri(self) -> str:
        """What the Type A signature covers: RTS is signed like RTMP
        (DESIGN.md, URL signing), without the suffix."""
        return f"/{self.app}/{self.stream}"


def parse_whep_path(path: str) -> WhepPath | None:
    match = _ENDPOINT_RE.match(path)
    if match:
        return WhepPath(match["app"], match["stream"])
    match = _RESOURCE_RE.match(path)
    if match:
        return WhepPath(match["app"], match["stream"], match["session"])
    return None


def resource_location(path: WhepPath, session: str) -> str:
    return f"{path.endpoint}/{session}"


class OfferError(ValueError):
    """An offer the node cannot answer; the message is for the viewer."""


def check_offer(sdp: str) -> None:
    """Refuse an offer that cannot receive what RTS sends: H.264 video (and,
    if it has audio, Opus). The SDP parser proper is aiortc's."""
    if not sdp.startswith("v=0"):
        raise OfferError("the body is not an SDP offer")
    sections = re.split(r"\r?\nm=", sdp)[1:]
    kinds = {}
    for section in sections:
        kind = section.split(" ", 1)[0]
        kinds.setdefault(kind, []).append(section)
    videos = kinds.get("video", [])
    if not videos:
        raise OfferError("the offer has no video to receive")
    if not any(re.search(r"a=rtpmap:\d+ H264/90000", s, re.IGNORECASE) for s in videos):
        raise OfferError("the offer's video has no H.264: RTS sends H.264 only")
    for s in videos + kinds.get("audio", []):
        if re.search(r"^a=(sendonly|inactive)\s*$", s, re.MULTILINE):
            raise OfferError("WHEP plays: the offer must be recvonly or sendrecv")
