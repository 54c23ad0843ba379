"""WHEP and WHIP (RFC 9725) on the media node's HTTP port: the paths, and
what an SDP offer must have before it is worth a peer connection.

- `POST /{app}/{stream}.whep?auth_key=…` (play) or `.whip` (publish, on an
  ingest domain) with `Content-Type: application/sdp` and an offer: `201
  Created`, the answer, and `Location: /{app}/{stream}.whep/{session}`
  (RFC 9725 4.2).
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
# Media sections an offer may have: a browser's has two or three (audio,
# video, data); this bounds the transceivers a peer can make us create.
MAX_MEDIA_SECTIONS = 8
SDP_CONTENT_TYPE = "application/sdp"

_NAME = r"[A-Za-z0-9_.-]{1,255}"
_ENDPOINT_RE = re.compile(rf"^/(?P<app>{_NAME})/(?P<stream>{_NAME})\.(?P<kind>whep|whip)$")
_RESOURCE_RE = re.compile(
    rf"^/(?P<app>{_NAME})/(?P<stream>{_NAME})\.(?P<kind>whep|whip)/(?P<session>[A-Za-z0-9_-]{{16,64}})$"
)
WHEP = "whep"  # play (RFC 9725 names the playing side WHEP)
WHIP = "whip"  # publish


@dataclass(frozen=True, slots=True)
class WhepPath:
    """A WHEP (play) or WHIP (publish) endpoint or session resource."""

    app: str
    stream: str
    session: str | None = None  # None: the endpoint; else a session's resource
    kind: str = WHEP

    @property
    def endpoint(self) -> str:
        return f"/{self.app}/{self.stream}.{self.kind}"

    @property
    def signed_uri(self) -> str:
        """What the Type A signature covers: RTS is signed like RTMP
        (DESIGN.md, URL signing), without the suffix."""
        return f"/{self.app}/{self.stream}"


def parse_whep_path(path: str) -> WhepPath | None:
    """A WHEP or WHIP path (`kind` says which), or None."""
    match = _ENDPOINT_RE.match(path)
    if match:
        return WhepPath(match["app"], match["stream"], None, match["kind"])
    match = _RESOURCE_RE.match(path)
    if match:
        return WhepPath(match["app"], match["stream"], match["session"], match["kind"])
    return None


def resource_location(path: WhepPath, session: str) -> str:
    return f"{path.endpoint}/{session}"


def created_headers(path: WhepPath, session: str) -> list[tuple[bytes, bytes]]:
    """The headers of a POST's `201 Created` (RFC 9725 4.2): the answer's
    type and the session's resource."""
    return [
        (b"Content-Type", SDP_CONTENT_TYPE.encode()),
        (b"Location", resource_location(path, session).encode()),
        (b"Cache-Control", b"no-store"),
    ]


class OfferError(ValueError):
    """An offer the node cannot answer; the message is for the viewer."""


# RFC 8866 5: every line is `<type>=<value>`, the type one letter.
_LINE_RE = re.compile(r"^[a-z]=")
# RFC 8866 5.14: `m=<media> <port>[/<number of ports>] <proto> <fmt> ...`; the
# protocols are registered in capitals (UDP/TLS/RTP/SAVPF, UDP/DTLS/SCTP).
_MEDIA_RE = re.compile(
    r"^m=(?P<kind>[a-z]+) (?P<port>\d{1,5})(?:/\d{1,5})? (?P<proto>[A-Z][A-Z/]*)(?P<fmts>(?: \S+)+)$"
)
# RFC 8866 5.7: `c=<nettype> <addrtype> <connection-address>`.
_CONNECTION_RE = re.compile(r"^c=IN (?:IP4|IP6) [^ ]+$")
# RFC 8866 6.6: `a=rtpmap:<payload type> <encoding name>/<clock rate>[/<parameters>]`.
_RTPMAP_RE = re.compile(r"^(?P<pt>\d{1,3}) [A-Za-z0-9_.-]+/\d{1,10}(?:/\d{1,3})?$")
# RFC 8842 5.1: the DTLS role.
_SETUP_ROLES = frozenset({"active", "passive", "actpass", "holdconn"})
_PAYLOAD_TYPE_MAX = 127  # RFC 3550 5.1: 7 bits
_PAYLOAD_TYPES_FORBIDDEN = range(72, 77)  # RFC 5761 4: they clash with RTCP packet types


def _attribute(line: str) -> tuple[str, str | None]:
    name, colon, value = line[2:].partition(":")
    return name, value if colon else None


def _check_line(number: int, line: str, kind: str | None, payload_types: set[int]) -> None:
    """One line of an offer; raises OfferError naming the line and the fault."""

    def bad(reason: str) -> OfferError:
        return OfferError(f"offer line {number} ({line[:40]!a}): {reason}")

    if not _LINE_RE.match(line):
        raise bad("not an SDP line (<letter>=<value>)")
    if line.startswith("c=") and not _CONNECTION_RE.match(line):
        raise bad("c= must be 'IN IP4|IP6 <address>'")
    if line.startswith("v=") and line != "v=0":
        raise bad("the SDP version must be 0")
    if not line.startswith("a="):
        return
    name, value = _attribute(line)
    if name == "setup":
        if value not in _SETUP_ROLES:
            raise bad("a=setup must be active, passive, actpass or holdconn")
    elif name == "fingerprint":
        if value is None or len(value.split()) != 2:
            raise bad("a=fingerprint must be '<hash function> <fingerprint>'")
    elif name == "group":
        if not value:
            raise bad("a=group needs a semantic")
    elif kind is None:
        return  # the rest are media-level attributes
    elif name == "rtpmap":
        match = _RTPMAP_RE.match(value or "")
        if match is None:
            raise bad("a=rtpmap must be '<payload type> <encoding>/<clock rate>[/<channels>]'")
        if int(match["pt"]) not in payload_types:
            raise bad("a=rtpmap names a payload type its m= line does not list")
    elif name in ("fmtp", "rtcp-fb"):
        pt, _, rest = (value or "").partition(" ")
        if not rest or not (pt == "*" and name == "rtcp-fb" or pt.isdigit() and int(pt) in payload_types):
            raise bad(f"a={name} must be '<payload type> <parameters>' for a payload type of its m= line")
    elif name == "ssrc":
        ssrc, _, rest = (value or "").partition(" ")
        if not ssrc.isdigit() or int(ssrc) >= 2**32 or ":" not in rest:
            raise bad("a=ssrc must be '<32-bit ssrc> <attribute>:<value>'")
    elif name == "ssrc-group":
        bits = (value or "").split()
        if len(bits) < 2 or not all(b.isdigit() and int(b) < 2**32 for b in bits[1:]):
            raise bad("a=ssrc-group must be '<semantic> <ssrc> ...'")
    elif name == "extmap":
        bits = (value or "").split()
        if len(bits) < 2 or not re.fullmatch(r"\d{1,2}(?:/(?:sendonly|recvonly|sendrecv|inactive))?", bits[0]):
            raise bad("a=extmap must be '<id>[/<direction>] <uri>'")
    elif name == "rtcp":
        port, _, address = (value or "").partition(" ")
        if not port.isdigit() or int(port) > 65535 or (address and not _CONNECTION_RE.match("c=" + address)):
            raise bad("a=rtcp must be '<port> [IN IP4|IP6 <address>]'")
    elif name == "candidate":
        bits = (value or "").split()
        if len(bits) < 8 or not (bits[1].isdigit() and bits[3].isdigit() and bits[5].isdigit()) or bits[6] != "typ":
            raise bad("a=candidate must be '<foundation> <component> <transport> <priority> <address> <port> typ ...'")
        for i in range(8, len(bits) - 1, 2):
            if bits[i] == "rport" and not bits[i + 1].isdigit():
                raise bad("a=candidate rport must be a port number")
    elif name in ("sctp-port", "max-message-size"):
        if not (value or "").isdigit():
            raise bad(f"a={name} must be a number")


def _media_section(number: int, line: str) -> tuple[str, set[int]]:
    """The kind and payload types of an m= line."""
    match = _MEDIA_RE.match(line)
    if match is None:
        raise OfferError(f"offer line {number} ({line[:40]!a}): m= must be '<media> <port> <proto> <formats>'")
    kind, formats = match["kind"], match["fmts"].split()
    payload_types: set[int] = set()
    if kind in ("audio", "video"):
        for fmt in formats:
            if not fmt.isdigit() or int(fmt) > _PAYLOAD_TYPE_MAX or int(fmt) in _PAYLOAD_TYPES_FORBIDDEN:
                raise OfferError(
                    f"offer line {number} ({line[:40]!a}): payload type {fmt[:8]!r} must be 0-127, not 72-76"
                )
            payload_types.add(int(fmt))
    return kind, payload_types


def _read_sections(sdp: str) -> dict[str, list[list[str]]]:
    """An offer checked line by line (before aiortc's SDP parser sees it: it
    answers bad lines with assertions and KeyErrors), as its media sections'
    lines by kind. Raises OfferError naming the line and the fault."""
    if not sdp.startswith("v=0"):
        raise OfferError("the body is not an SDP offer")
    kind: str | None = None
    payload_types: set[int] = set()
    sections: dict[str, list[list[str]]] = {}
    count = 0
    # Per media section: the payload types with an rtpmap, and the fmtp lines
    # (number, payload type): an fmtp describes a codec its rtpmap names.
    mapped: set[int] = set()
    formats: list[tuple[int, int]] = []

    def end_section() -> None:
        for number, pt in formats:
            if pt not in mapped:
                raise OfferError(f"offer line {number}: a=fmtp:{pt} describes a payload type with no a=rtpmap")

    for number, line in enumerate(sdp.splitlines(), 1):
        if not line:
            continue
        if line.startswith("m="):
            end_section()
            count += 1
            if count > MAX_MEDIA_SECTIONS:
                raise OfferError(f"the offer has more than {MAX_MEDIA_SECTIONS} media sections")
            kind, payload_types = _media_section(number, line)
            mapped, formats = set(), []
            sections.setdefault(kind, []).append([])
            continue
        _check_line(number, line, kind, payload_types)
        if kind is not None:
            sections[kind][-1].append(line)
            name, value = _attribute(line) if line.startswith("a=") else ("", None)
            if name in ("rtpmap", "fmtp"):
                pt = int((value or "").partition(" ")[0])  # _check_line made sure it is one
                if name == "rtpmap":
                    mapped.add(pt)
                else:
                    formats.append((number, pt))
    end_section()
    return sections


def _has_codec(section: list[str], codec: str, clock_rate: int) -> bool:
    pattern = re.compile(rf"a=rtpmap:\d+ {re.escape(codec)}/{clock_rate}(?:/\d+)?$", re.IGNORECASE)
    return any(pattern.match(line) for line in section)


def _direction(section: list[str]) -> str:
    for line in section:
        if line.rstrip() in ("a=sendonly", "a=recvonly", "a=sendrecv", "a=inactive"):
            return line.rstrip()[2:]
    return "sendrecv"  # RFC 8866 6.7: the default


def check_offer(sdp: str) -> None:
    """Refuse a WHEP offer that is malformed, or that cannot receive what
    RTS sends: H.264 video (and, if it has audio, Opus)."""
    sections = _read_sections(sdp)
    videos = sections.get("video", [])
    if not videos:
        raise OfferError("the offer has no video to receive")
    if not any(_has_codec(s, "H264", 90000) for s in videos):
        raise OfferError("the offer's video has no H.264: RTS sends H.264 only")
    for section in videos + sections.get("audio", []):
        if _direction(section) in ("sendonly", "inactive"):
            raise OfferError("WHEP plays: the offer must be recvonly or sendrecv")


class NoUsableCodec(OfferError):
    """A WHIP offer whose media the node cannot take (406, RFC 9725 4.2)."""


# What a WHIP publisher may send, in the node's order of preference: H.264
# passes through to every protocol; VP8 is transcoded to H.264 once.
WHIP_VIDEO_CODECS = ("H264", "VP8")
WHIP_AUDIO_CODECS = ("opus",)


def check_publish_offer(sdp: str) -> None:
    """Refuse a WHIP offer that is malformed (400) or has no media the node
    takes (NoUsableCodec, 406): at most one video section, with H.264 or
    VP8, and at most one audio section, with Opus, sending."""
    sections = _read_sections(sdp)
    videos, audios = sections.get("video", []), sections.get("audio", [])
    if len(videos) > 1 or len(audios) > 1:
        raise OfferError("a WHIP offer has at most one video and one audio section")
    if not videos and not audios:
        raise OfferError("the offer has no audio or video to publish")
    for section in videos + audios:
        if _direction(section) in ("recvonly", "inactive"):
            raise OfferError("WHIP publishes: the offer must be sendonly or sendrecv")
    if videos and not any(_has_codec(videos[0], c, 90000) for c in WHIP_VIDEO_CODECS):
        raise NoUsableCodec("the offer's video has neither H.264 nor VP8 (the codecs a WHIP publisher may send)")
    if audios and not _has_codec(audios[0], "opus", 48000):
        raise NoUsableCodec("the offer's audio has no Opus (the audio a WHIP publisher may send)")
