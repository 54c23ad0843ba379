"""The troubleshooting tool: given an ingest or playback URL, check in order
what the media node would check and what the stream's samples show, and say
for each step whether it passes, why, and what to do (the console page, the
API and `manage.py troubleshoot` all call `check_url`).

Steps that depend on one that failed are skipped rather than guessed. The
advice for encoders is the seed's OBS settings (Settings → Output, Advanced:
keyframe interval 1 s, preset veryfast, profile baseline, tune zerolatency).
"""

from __future__ import annotations

import datetime as dt
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field

from django.utils import timezone

from domains.lib.hostnames import HostnameError, normalize_domain_name
from domains.models import CnameStatus, Domain
from livecenter.media.access import is_access_refusal
from livecenter.media.admission import Refusal
from livecenter.media.liveurl import LiveUrl, LiveUrlError, parse_live_url
from livecenter.media.node import NodeConfig
from livecenter.media.signing import AuthFailure, verify
from livecenter.media.srt.connection import PEER_IDLE_TIMEOUT_US
from livecenter.media.srt.packets import SrtRejectReason
from streams.models import PublishSession, PublishType, StreamBlock

from .models import PublishRefusal, StreamSample

PASS, FAIL, WARN, SKIP = "pass", "fail", "warn", "skip"
# The samples the findings look at, and how many they need to say anything.
FINDINGS_WINDOW = dt.timedelta(seconds=30)
MIN_FINDING_SAMPLES = 3
# A live stream whose node has not reported for this long is in doubt.
STALE_SAMPLES = dt.timedelta(seconds=10)
MAX_KEYFRAME_INTERVAL_MS = 3000  # the rule; 1-2 s is what RTS and LL-HLS want
# Frame rate: a second below this share of the median, or a coefficient of
# variation above the next, is unstable.
MIN_FRAME_RATE_SHARE = 0.7
MAX_FRAME_RATE_VARIATION = 0.15
MAX_BITRATE_VARIATION = 0.5

OBS_OUTPUT = (
    "In OBS: Settings → Output, Output Mode Advanced: Keyframe Interval 1, CPU Usage Preset veryfast, "
    "Profile baseline, Tune zerolatency."
)
OBS_STREAM = "In OBS: Settings → Stream, Service Custom…, the signed ingest URL as the Server, Stream Key empty."


@dataclass
class CheckStep:
    name: str
    title: str
    status: str
    reason: str
    advice: str = ""


@dataclass
class TroubleshootReport:
    url: str
    kind: str = ""  # "ingest" | "playback" | "" (the URL did not parse)
    steps: list[CheckStep] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(s.status == FAIL for s in self.steps)

    def add(self, name: str, title: str, status: str, reason: str, advice: str = "") -> CheckStep:
        step = CheckStep(name, title, status, reason, advice)
        self.steps.append(step)
        return step

    def skip(self, name: str, title: str, because: str) -> None:
        self.add(name, title, SKIP, f"not checked: {because}")


STEPS = (
    ("url", "The URL parses"),
    ("domain", "The domain exists"),
    ("enabled", "The domain is enabled"),
    ("cname", "The domain's CNAME points at LiveCenter"),
    ("association", "The streaming domain is associated"),
    ("signature", "The signature verifies"),
    ("forbidden", "The stream is not forbidden"),
    ("live", "The stream is live"),
    ("center", "The stream reaches its live center"),
    ("bframes", "B-frames"),
    ("keyframes", "Keyframe interval"),
    ("frame_rate", "Frame rate is steady"),
    ("bitrate", "Bitrate is steady"),
    ("timestamps", "Timestamps are continuous"),
    ("audio", "Audio codec"),
)
# Only for ingest URLs of the protocols whose refused publishers the nodes
# report (PublishRefusal), after the others.
REFUSAL_STEPS = (("refusals", "Publishers are not refused"),)
REFUSAL_PROTOCOLS = ("rtmp", "srt", "whip")
# An ingest domain's RTS URL (artc://) is published over WHIP (issue 17).
PUBLISH_PROTOCOLS = {"rts": "whip"}
# Only for SRT ingest URLs, last.
SRT_STEPS = (
    ("srt_latency", "SRT latency covers the round trip"),
    ("srt_loss", "SRT packet loss"),
)
# Only for WHIP ingest URLs, last.
WHIP_STEPS = (
    ("whip_connection", "The WebRTC connection is up"),
    ("whip_rtt", "WebRTC round-trip time leaves room for repair"),
    ("whip_loss", "WebRTC packet loss"),
)
# Only for https:// and rtmps:// URLs, after the domain's steps.
TLS_STEPS = (("certificate", "The domain's certificate is served"),)
# The console warns this long before a certificate expires.
CERTIFICATE_WARNING_DAYS = 30
TITLES = dict(STEPS + REFUSAL_STEPS + SRT_STEPS + WHIP_STEPS + TLS_STEPS)


def _find_domain(owner, name: str) -> Domain | None:
    try:
        name = normalize_domain_name(name)
    except HostnameError:
        return None
    domains = Domain.objects.select_related("ingest_domain", "main_domain__ingest_domain")
    if owner is not None:
        domains = domains.filter(owner=owner)
    return domains.filter(domain_name=name).first()


def check_url(owner, url: str, now: dt.datetime | None = None) -> TroubleshootReport:
    """Check `url` as the operator `owner` (None: any domain, for the command line)."""
    now = now or timezone.now()
    report = TroubleshootReport(url)
    rest = [name for name, _ in STEPS[1:]]
    try:
        parsed = parse_live_url(url)
    except LiveUrlError as exc:
        report.add("url", TITLES["url"], FAIL, str(exc), "Copy the URL from the URL generator (Tools → URL generator).")
        for name in rest:
            report.skip(name, TITLES[name], "the URL does not parse")
        return report
    mode = f" (m={parsed.srt_mode})" if parsed.srt_mode else ""
    report.add(
        "url", TITLES["url"], PASS, f"{parsed.protocol.upper()} URL{mode} of {parsed.stream_path} on {parsed.host}"
    )
    ingest = _check_domain(report, owner, parsed, now)
    if parsed.url.split("://", 1)[0].lower() in ("https", "rtmps"):
        _check_certificate(report, owner, parsed, now)
    protocol = PUBLISH_PROTOCOLS.get(parsed.protocol, parsed.protocol)
    if report.kind == "ingest" and protocol in REFUSAL_PROTOCOLS:
        session = _live_session(ingest, parsed)
        _check_refusals(report, ingest, parsed, protocol, session, now)
        if protocol == "srt":
            _check_srt(report, ingest, parsed, session, now)
        elif protocol == "whip":
            _check_whip(report, ingest, parsed, session, now)
    return report


def _check_certificate(report: TroubleshootReport, owner, url: LiveUrl, now: dt.datetime) -> None:
    """What the node serves to a TLS client naming the URL's domain (tls.py)."""
    title = TITLES["certificate"]
    domain = None if url.names_ip_only else _find_domain(owner, url.host)
    if domain is None:
        return report.skip("certificate", title, "the domain is unknown")
    name = domain.domain_name
    certificate = getattr(domain, "certificate", None)
    if certificate is None:
        return report.add("certificate", title, FAIL, f"{name} has no certificate: the node refuses TLS clients"
                          " naming it", "Upload its certificate on the domain's Certificate page.")  # fmt: skip
    if certificate.not_after <= now:
        return report.add("certificate", title, FAIL, f"the certificate of {name} expired on"
                          f" {certificate.not_after:%Y-%m-%d %H:%M} UTC: the node no longer serves it",
                          "Upload its renewal on the domain's Certificate page.")  # fmt: skip
    if not domain.https_enabled:
        return report.add("certificate", title, FAIL, f"HTTPS is off for {name}: the node refuses TLS clients"
                          " naming it", "Turn HTTPS on on the domain's Certificate page.")  # fmt: skip
    days = certificate.days_left(now)
    if days < CERTIFICATE_WARNING_DAYS:
        return report.add("certificate", title, WARN, f"the certificate of {name} expires in {days} days",
                          "Upload its renewal before then on the domain's Certificate page.")  # fmt: skip
    report.add("certificate", title, PASS, f"{certificate.name} is served for {name} ({days} days left)")


def _live_session(ingest: Domain, url: LiveUrl) -> PublishSession | None:
    return (
        PublishSession.objects.filter(domain=ingest, app=url.app, stream=url.stream, stopped_at__isnull=True)
        .order_by("-started_at")
        .first()
    )


def _skip_from(report: TroubleshootReport, first: str, because: str) -> None:
    names = [name for name, _ in STEPS]
    for name in names[names.index(first) :]:
        report.skip(name, TITLES[name], because)


def _check_domain(report: TroubleshootReport, owner, url: LiveUrl, now: dt.datetime) -> Domain | None:
    """The domain steps and the stream's; returns the stream's ingest domain if known."""
    if url.names_ip_only:
        report.add(
            "domain",
            TITLES["domain"],
            FAIL,
            f"{url.host or 'the URL'} names no domain",
            "Use the domain as the host, or on one machine without DNS add &domain=<your domain> to the URL.",
        )
        return _skip_from(report, "enabled", "no domain")
    domain = _find_domain(owner, url.host)
    if domain is None:
        report.add(
            "domain",
            TITLES["domain"],
            FAIL,
            f"{url.host} is not one of your domains",
            "Add it under Domains, or check the host name in the URL.",
        )
        return _skip_from(report, "enabled", "the domain is unknown")
    kind = domain.get_domain_type_display().lower()
    report.add("domain", TITLES["domain"], PASS, f"{domain.domain_name} is your {kind}")
    if domain.enabled:
        report.add("enabled", TITLES["enabled"], PASS, f"{domain.domain_name} is enabled")
    else:
        report.add(
            "enabled",
            TITLES["enabled"],
            FAIL,
            f"{domain.domain_name} is disabled: the node refuses its URLs",
            "Enable it on the domain's page.",
        )
    if domain.cname_status == CnameStatus.CONFIGURED:
        report.add("cname", TITLES["cname"], PASS, f"{domain.domain_name} has its CNAME record ({domain.cname})")
    elif domain.local:
        # Not a pass: nothing was checked. A local domain has no DNS to check.
        report.skip(
            "cname",
            TITLES["cname"],
            f"{domain.domain_name} is marked as a local or test domain (no DNS): clients reach the node by its"
            " address with domain=",
        )
    else:
        report.add(
            "cname",
            TITLES["cname"],
            FAIL,
            f"no CNAME record of {domain.domain_name} pointing at {domain.cname} was found yet",
            f"Add the DNS record {domain.domain_name} CNAME {domain.cname}, then Verify on the domain's CNAME"
            " page. Until then only the domain= fallback on an IP address reaches the node.",
        )

    ingest = _check_association(report, domain, url)
    _check_signature(report, domain, url, now)
    if ingest is None:
        return _skip_from(report, "forbidden", "the stream's ingest domain is not known")
    _check_stream(report, ingest, domain, url, now)
    return ingest


def _check_association(report: TroubleshootReport, domain: Domain, url: LiveUrl) -> Domain | None:
    title = TITLES["association"]
    if domain.is_ingest:
        if url.protocol in ("flv", "hls") or url.srt_mode == "request":
            report.kind = "playback"
            streaming = domain.main_streaming_domain()
            where = f" on {streaming.domain_name}" if streaming else " on an associated streaming domain"
            advice = f"Play the stream{where}; the URL generator makes its URLs."
            if url.srt_mode == "request":
                # libsrt callers that leave m= out ask to play (SRT access control).
                advice = f"To publish, end the stream ID with m=publish. {advice}"
            report.add(
                "association",
                title,
                FAIL,
                f"{domain.domain_name} is an ingest domain: it takes streams, it does not play them",
                advice,
            )
            return domain
        report.kind = "ingest"
        streaming = domain.main_streaming_domain()
        if streaming is None:
            report.add(
                "association",
                title,
                WARN,
                f"no streaming domain plays {domain.domain_name}: the stream can be pushed, but nobody can watch it",
                "Associate a streaming domain with it on the streaming domain's page.",
            )
        else:
            report.add("association", title, PASS, f"ingest URL; its streams play on {streaming.domain_name}")
        return domain
    report.kind = "playback"
    ingest = domain.effective_ingest_domain()
    if url.srt_mode == "publish" or url.protocol == "whip":
        plays, ingest_url = ("SRT m=request", "SRT") if url.protocol == "srt" else ("WHEP", "WHIP")
        report.add(
            "association",
            title,
            FAIL,
            f"{domain.domain_name} is a streaming domain: it plays streams ({plays}), it does not take them",
            f"Push to {ingest.domain_name if ingest else 'the ingest domain'} with its {ingest_url} URL;"
            " the URL generator makes its URLs.",
        )
        return ingest
    if ingest is None:
        report.add(
            "association",
            title,
            FAIL,
            f"{domain.domain_name} is associated with no ingest domain, so it plays nothing",
            "Associate it with an ingest domain on its page, or bind it to a main streaming domain.",
        )
        return None
    if ingest.enabled:
        report.add(
            "association",
            title,
            PASS,
            f"playback URL; {domain.domain_name} plays streams pushed to {ingest.domain_name}",
        )
    else:
        report.add(
            "association",
            title,
            FAIL,
            f"{domain.domain_name} plays streams pushed to {ingest.domain_name},"
            " which is disabled and takes no streams",
            f"Enable {ingest.domain_name}.",
        )
    return ingest


SIGNATURE_ADVICE = {
    AuthFailure.MISSING: "Sign the URL: take it from the URL generator, or add auth_key as the URL signing page says.",
    AuthFailure.MALFORMED: "auth_key is {timestamp}-{rand}-{uid}-{md5hash}: rand and uid are 0 or letters and"
    " digits without '-', md5hash is 32 lower-case hex digits.",
    AuthFailure.EXPIRED: "Generate a fresh URL; a URL is valid for the domain's validity period after its timestamp.",
    AuthFailure.BAD_HASH: "md5hash is md5('{uri}-{timestamp}-{rand}-{uid}-{key}') with the domain's primary or"
    " secondary key; check the key and that the URI is the path alone.",
}


def _check_signature(report: TroubleshootReport, domain: Domain, url: LiveUrl, now: dt.datetime) -> None:
    title = TITLES["signature"]
    if not domain.auth_enabled:
        report.add("signature", title, PASS, f"URL signing is off for {domain.domain_name}")
        return
    result = verify(url.signed_uri, url.auth_key, domain.signing_keys(), domain.validity_seconds, now.timestamp())
    if result.ok:
        expires = dt.datetime.fromtimestamp(result.expires_at, dt.UTC)
        report.add(
            "signature", title, PASS, f"signed for {url.signed_uri}, valid until {expires:%Y-%m-%d %H:%M:%S} UTC"
        )
        return
    reason = result.failure.value
    if result.failure is AuthFailure.EXPIRED:
        expired = dt.datetime.fromtimestamp(result.expires_at, dt.UTC)
        reason += f": it expired at {expired:%Y-%m-%d %H:%M:%S} UTC"
    elif result.failure is AuthFailure.BAD_HASH:
        reason += f": it matches neither key of {domain.domain_name} for the URI {url.signed_uri}"
    report.add("signature", title, FAIL, reason, SIGNATURE_ADVICE[result.failure])


def _check_stream(report: TroubleshootReport, ingest: Domain, domain: Domain, url: LiveUrl, now: dt.datetime) -> None:
    block = StreamBlock.objects.filter(domain=ingest, app=url.app, stream=url.stream, resume_at__gt=now).first()
    if block is not None:
        report.add(
            "forbidden",
            TITLES["forbidden"],
            FAIL,
            f"{ingest.domain_name}/{url.stream_path} is forbidden until {block.resume_at:%Y-%m-%d %H:%M:%S} UTC",
            "Resume it under Streams → Forbidden streams.",
        )
    else:
        report.add("forbidden", TITLES["forbidden"], PASS, "the stream is not forbidden")
    session = _live_session(ingest, url)
    if session is None:
        report.add(
            "live",
            TITLES["live"],
            FAIL,
            f"nobody is publishing {ingest.domain_name}/{url.stream_path}",
            f"Start the encoder with the signed ingest URL. {OBS_STREAM}",
        )
        return _skip_from(report, "center", "the stream is not live")
    samples = list(
        StreamSample.objects.filter(
            domain_name=ingest.domain_name,
            app=url.app,
            stream=url.stream,
            session_id=session.session_id,
            upstream_node="",  # the publisher's node's: its center's say the same, later
            at__gt=now - FINDINGS_WINDOW,
            at__lte=now,
        ).order_by("at", "id")
    )
    since = f"live since {session.started_at:%Y-%m-%d %H:%M:%S} UTC from {session.client_ip} on node {session.node_id}"
    if not samples or samples[-1].at < now - STALE_SAMPLES:
        report.add(
            "live",
            TITLES["live"],
            WARN,
            f"{since}, but its node has sent no samples for {STALE_SAMPLES.seconds} s",
            "Check that the media node runs and reaches the database.",
        )
    else:
        report.add("live", TITLES["live"], PASS, since)
    _check_center(report, ingest, session)
    if len(samples) < MIN_FINDING_SAMPLES:
        return _skip_from(report, "bframes", f"fewer than {MIN_FINDING_SAMPLES} seconds of samples yet")
    _findings(report, domain if domain.is_streaming else ingest.main_streaming_domain(), samples)


@dataclass(frozen=True)
class EdgeRelay:
    """An edge's relay of a stream, as the edge's heartbeat tells it."""

    up: bool  # the edge beats
    error: str  # why no center takes the stream; "" if one does (or it is not relaying it)


# (edge node id, stream key) -> its EdgeRelay, or None while the heartbeats
# cannot be read: the node registry's (nodes/apps.py sets it; monitoring
# does not import nodes).
edge_relay: Callable[[str, str], EdgeRelay | None] | None = None


def _check_center(report: TroubleshootReport, ingest: Domain, session: PublishSession) -> None:
    """Where the stream is at its live center: an edge that holds the
    publisher relays it there, and its heartbeat says why when no center
    takes it (livecenter/media/edge.py, RelayState.error)."""
    title = TITLES["center"]
    if session.publish_type != PublishType.EDGE:
        return report.add("center", title, PASS, f"published on the center node {session.node_id}")
    edge = session.node_id
    state = edge_relay(edge, session.stream_url) if edge_relay is not None else EdgeRelay(True, "")
    if state is None:
        return report.add("center", title, WARN, f"the heartbeat of edge {edge} cannot be read")
    region = ingest.get_live_center_display() if ingest.live_center else "its live center"
    reason = state.error
    if reason:
        return report.add(
            "center",
            title,
            FAIL,
            f"the edge {edge} holds the publisher, but no center takes the stream: {reason}",
            f"Start a center node of {region}, or check that the edge reaches the centers (Nodes page).",
        )
    if not state.up:
        return report.add(
            "center", title, WARN, f"the edge {edge} that holds the publisher is down", "Check the Nodes page."
        )
    if not session.center_node_id:
        return report.add("center", title, WARN, f"the edge {edge} holds the publisher; no center has it yet")
    return report.add("center", title, PASS, f"relayed by the edge {edge} to the center node {session.center_node_id}")


def _findings(report: TroubleshootReport, streaming: Domain | None, samples: list[StreamSample]) -> None:
    last = samples[-1]
    rts = streaming is not None and streaming.rts_enabled
    transcodes = streaming is not None and streaming.html5_transcode
    window = f"the last {len(samples)} s"

    if any(s.bframes for s in samples):
        if rts and not transcodes:
            report.add(
                "bframes",
                TITLES["bframes"],
                FAIL,
                "the stream has B-frames, which browsers' WebRTC cannot"
                f" play, and HTML5 auto transcoding is off on {streaming.domain_name}",
                f"Turn off B-frames in the encoder ({OBS_OUTPUT}), or turn on HTML5 auto transcoding on the"
                " domain's RTS page.",
            )
        else:
            report.add(
                "bframes",
                TITLES["bframes"],
                WARN,
                "the stream has B-frames: fine for RTMP, FLV and HLS; RTS"
                " in a browser needs them removed (HTML5 auto transcoding does, at a cost)",
                f"For RTS, encode without B-frames. {OBS_OUTPUT}",
            )
    else:
        report.add("bframes", TITLES["bframes"], PASS, "no B-frames")

    intervals = [s.keyframe_interval_ms for s in samples if s.keyframe_interval_ms]
    if not intervals:
        report.add(
            "keyframes",
            TITLES["keyframes"],
            WARN,
            f"fewer than two keyframes in {window}",
            f"Set the keyframe interval to 1-2 s. {OBS_OUTPUT}",
        )
    elif max(intervals) > MAX_KEYFRAME_INTERVAL_MS:
        report.add(
            "keyframes",
            TITLES["keyframes"],
            FAIL,
            f"keyframes come every {max(intervals) / 1000:.1f} s, more"
            f" than {MAX_KEYFRAME_INTERVAL_MS // 1000} s: viewers wait that long for a first picture and"
            " latency grows",
            f"Set the keyframe interval to 1-2 s. {OBS_OUTPUT}",
        )
    else:
        report.add("keyframes", TITLES["keyframes"], PASS, f"a keyframe every {intervals[-1] / 1000:.1f} s")

    # The first second of a publication is often partial; judge the rest.
    steady = samples[1:] if len(samples) > MIN_FINDING_SAMPLES else samples
    rates = [s.video_frame_rate for s in steady]
    if last.video_codec or any(rates):
        median = statistics.median(rates)
        low, high = min(rates), max(rates)
        variation = statistics.pstdev(rates) / median if median else 1.0
        if median <= 0 or low < MIN_FRAME_RATE_SHARE * median or variation > MAX_FRAME_RATE_VARIATION:
            report.add(
                "frame_rate",
                TITLES["frame_rate"],
                FAIL,
                f"the frame rate went from {low:.1f} to {high:.1f} fps in {window} (median {median:.1f})",
                "The encoder drops frames: lower its"
                " preset, resolution or frame rate, and check the uplink (OBS: Stats shows frames skipped for"
                " encoding lag and dropped for the network).",
            )
        else:
            report.add("frame_rate", TITLES["frame_rate"], PASS, f"{median:.1f} fps ({low:.1f}-{high:.1f})")
    else:
        report.add("frame_rate", TITLES["frame_rate"], WARN, "the stream has no video", "Add a video source.")

    bitrates = [s.bitrate for s in steady]
    mean = statistics.fmean(bitrates)
    variation = statistics.pstdev(bitrates) / mean if mean else 1.0
    if mean <= 0 or variation > MAX_BITRATE_VARIATION:
        report.add(
            "bitrate",
            TITLES["bitrate"],
            FAIL,
            f"the bitrate went from {min(bitrates) / 1000:.0f} to {max(bitrates) / 1000:.0f} kbit/s in {window}",
            "Use constant bitrate (OBS: Rate Control CBR) at a rate the uplink carries with room to spare.",
        )
    else:
        report.add("bitrate", TITLES["bitrate"], PASS, f"about {mean / 1000:.0f} kbit/s")

    jumps = sum(s.timestamp_jumps for s in samples)
    if jumps:
        report.add(
            "timestamps",
            TITLES["timestamps"],
            FAIL,
            f"{jumps} timestamp jumps in {window}: players stall or skip there",
            "Restart the encoder; when relaying a source with ffmpeg, read it with -re and"
            " let ffmpeg generate timestamps (-fflags +genpts).",
        )
    else:
        report.add("timestamps", TITLES["timestamps"], PASS, f"no jumps in {window}")

    codec = last.audio_codec
    if not codec:
        report.add(
            "audio",
            TITLES["audio"],
            WARN,
            "the stream has no audio",
            "Add an audio source if viewers should hear anything.",
        )
    elif codec != "AAC":
        report.add(
            "audio",
            TITLES["audio"],
            FAIL,
            f"audio is {codec}: HLS and browsers' players expect AAC",
            "Encode audio as AAC (OBS: Settings → Output → Audio, AAC).",
        )
    elif rts and not transcodes:
        report.add(
            "audio",
            TITLES["audio"],
            WARN,
            "audio is AAC, which browsers' WebRTC cannot play, and HTML5 auto"
            f" transcoding is off on {streaming.domain_name}",
            "Turn on HTML5 auto transcoding on the domain's RTS page so RTS viewers get Opus.",
        )
    else:
        report.add("audio", TITLES["audio"], PASS, f"AAC, {last.audio_sample_rate} Hz, {last.audio_channels} ch")


# --- Refused publishers ----------------------------------------------------------------

# Refusals older than this are not what the operator is troubleshooting now.
REFUSALS_WINDOW = dt.timedelta(minutes=15)

OBS_WHIP = "In OBS 30 or later: Settings → Stream, Service WHIP, the WHIP URL as the Server, Bearer Token empty."
URL_ADVICE = {
    "rtmp": f"Copy the RTMP URL from the URL generator (Tools → URL generator). {OBS_STREAM}",
    "srt": "Copy the SRT URL from the URL generator (Tools → URL generator).",
    "whip": f"Copy the WHIP URL (RTS over WHIP) from the URL generator (Tools → URL generator). {OBS_WHIP} Or"
    " publish from the browser with the URL generator's Go live button.",
}
# Where each protocol carries the stream's name and its auth_key.
SIGNED_PART = {"rtmp": "the URL", "srt": "the stream ID", "whip": "the URL"}
# How long a publisher that vanished without closing holds its stream:
# RTMP and WHIP until they have sent nothing for the node's publish idle
# timeout, SRT until the SRT peer idle timeout.
GONE_AFTER_SECONDS = {
    "rtmp": NodeConfig.publish_idle_seconds,
    "srt": PEER_IDLE_TIMEOUT_US / 1_000_000,
    "whip": NodeConfig.publish_idle_seconds,
}
# The WHIP endpoint's HTTP statuses for an offer it could not take
# (rts/ingest.py): 406 has no codec the node takes, the others are not a
# usable offer (malformed, too large, not application/sdp).
WHIP_NO_CODEC = 406
WHIP_BAD_OFFER = (400, 413, 415)
WHIP_CODECS = (
    "Send H.264 (constrained baseline, main or high) without B-frames, or VP8, and Opus audio"
    " (OBS: Settings → Output, an H.264 video encoder, B-frames 0)."
)
SRT_PASSPHRASE_PAGE = "the SRT passphrase on the ingest domain's SRT page (Domains → the domain → SRT)"
NOT_INGEST_REFUSALS = (Refusal.UNKNOWN_DOMAIN, Refusal.NOT_INGEST, Refusal.NOT_ASSOCIATED)


def _srt_passphrase_explained(refusal: PublishRefusal, domain_name: str) -> tuple[str, str] | None:
    """SRT's own refusals: the passphrase (the listener's rejection reasons)."""
    code, reason = refusal.code, refusal.reason
    if code == SrtRejectReason.BADSECRET:
        return (
            f"the publisher's passphrase is not {domain_name}'s SRT passphrase",
            f"Set passphrase= in the publisher's SRT URL (ffmpeg, OBS: srt://…&passphrase=…) to {SRT_PASSPHRASE_PAGE}.",
        )
    if code == SrtRejectReason.UNSECURE and "no passphrase" in reason:
        return (
            f"{domain_name} takes encrypted SRT only and the publisher sent no passphrase",
            f"Add passphrase= to the publisher's SRT URL with {SRT_PASSPHRASE_PAGE}.",
        )
    if code == SrtRejectReason.UNSECURE:
        return (
            f"the publisher encrypts, but {domain_name} has no SRT passphrase",
            "Remove passphrase= from the publisher's URL, or set the same passphrase on the ingest domain's SRT page.",
        )
    return None


def _refusal_explained(refusal: PublishRefusal, domain_name: str) -> tuple[str, str]:
    """(what happened, what to do) for a refused publisher, in its protocol's
    terms. The node reports the reason in the words it logs (admission's
    Refusal, signing's AuthFailure, the hub's one-publisher rule) and, for
    SRT, the rejection reason it sent."""
    protocol, code, reason = refusal.protocol, refusal.code, refusal.reason
    if protocol == "srt" and (explained := _srt_passphrase_explained(refusal, domain_name)) is not None:
        return explained
    url_advice = URL_ADVICE[protocol]
    if is_access_refusal(reason):
        return (
            f"refused by {domain_name}'s IP list: {reason}",
            f"Publish from an address the list admits, or change it on {domain_name}'s Access lists page"
            " (Domains → the domain → Access lists).",
        )
    failure = next((f for f in AuthFailure if f.value == reason), None)
    if failure is not None:
        return f"{SIGNED_PART[protocol]}'s signature failed: {reason}", SIGNATURE_ADVICE[failure]
    if reason == Refusal.FORBIDDEN:
        return f"refused: {reason}", "Resume the stream under Streams → Forbidden streams."
    if reason == Refusal.DOMAIN_DISABLED:
        return f"refused: {reason}", f"Enable {domain_name} on its page."
    if reason == "stream is already being published":
        gone = GONE_AFTER_SECONDS[protocol]
        return (
            "another publisher was already publishing the stream",
            f"Stop the other encoder; one publisher per stream. A publisher that vanished is taken as gone"
            f" once it has been silent for {gone:g} s.",
        )
    if reason == "already publishing on this connection":
        return (
            "the encoder asked to publish a second stream on a connection that already publishes one",
            "Publish one stream per RTMP connection: one output (OBS: one Stream setting) per stream.",
        )
    if reason == Refusal.POLICY_UNAVAILABLE:
        return "the media node could not reach the console's database", "Try again; check the database."
    if reason in NOT_INGEST_REFUSALS:
        return f"{SIGNED_PART[protocol]} names no ingest domain of yours: {reason}", url_advice
    if protocol == "srt" and code in (1400, 1404, 1405):  # the stream ID did not parse, or asked for a mode not served
        return f"the stream ID was refused: {reason}", url_advice
    if protocol == "srt":
        return (
            f"refused: {reason} (SRT rejection reason {code})",
            "Publish in SRT live mode (the default) with libsrt 1.3 or later, without a packet filter (FEC).",
        )
    if protocol == "whip" and code == WHIP_NO_CODEC:
        return f"the publisher's offer has no codec the node takes: {reason}", WHIP_CODECS
    if protocol == "whip" and code in WHIP_BAD_OFFER:
        return (
            f"the publisher's SDP offer was refused: {reason} (HTTP {code})",
            "Publish with a WHIP client (RFC 9725: OBS 30 or later, GStreamer whipsink, a browser's"
            " RTCPeerConnection) that POSTs its SDP offer as application/sdp.",
        )
    if protocol == "whip":
        return f"refused: {reason} (HTTP {code})", url_advice
    return f"refused: {reason}", url_advice


def _check_refusals(
    report, ingest: Domain, url: LiveUrl, publish_protocol: str, session: PublishSession | None, now
) -> None:
    title = TITLES["refusals"]
    protocol = publish_protocol.upper()
    refusals = list(
        PublishRefusal.objects.filter(
            domain_name__in={url.host, ingest.domain_name},
            app=url.app,
            stream=url.stream,
            protocol=publish_protocol,
            at__gt=now - REFUSALS_WINDOW,
            at__lte=now,
        ).order_by("-at", "-id")[:50]
    )
    minutes = REFUSALS_WINDOW.seconds // 60
    if not refusals:
        passed = f"no {protocol} publisher of the stream was refused in the last {minutes} min"
        report.add("refusals", title, PASS, passed)
        return
    last = refusals[0]
    what, advice = _refusal_explained(last, ingest.domain_name)
    count = f"{len(refusals)} {protocol} refusal{'s' if len(refusals) > 1 else ''} in the last {minutes} min"
    when = f"at {last.at:%Y-%m-%d %H:%M:%S} UTC from {last.client_addr}"
    if session is not None and last.at < session.started_at:
        report.add("refusals", title, PASS, f"{count}; the last {when} ({what}), before the stream went live")
    elif session is not None:
        article = "a" if publish_protocol == "whip" else "an"  # an RTMP, an SRT; a WHIP
        live = f"the stream is live, but {article} {protocol} publisher was refused {when}: {what}"
        report.add("refusals", title, WARN, live, advice)
    else:
        report.add("refusals", title, FAIL, f"{count}; the last {when}: {what}", advice)


# --- SRT ------------------------------------------------------------------------------

# libsrt's guidance (SRT deployment guide, "Latency"): the receiver latency
# should be at least 4x the RTT on a lossy link, so that a lost packet can
# be asked for and resent more than once before its play time. Below 2.5x
# even one retransmission often comes too late.
SRT_LATENCY_RTT_ADVISED = 4.0
SRT_LATENCY_RTT_MIN = 2.5
# Of the packets received in the window: lost (recovered or not) past this
# is a poor link; dropped (never played) past this is a broken picture.
SRT_MAX_LOSS_SHARE = 0.05
SRT_MAX_DROP_SHARE = 0.01


def _link_samples(
    report: TroubleshootReport,
    ingest: Domain,
    url: LiveUrl,
    session: PublishSession | None,
    now,
    protocol: str,
    steps: tuple[str, ...],
) -> list[StreamSample] | None:
    """The live session's samples of its publisher's link (`protocol`: "srt"
    or "whip", the sample's field of the same name) over FINDINGS_WINDOW, or
    None when there are too few: `steps` are then skipped with the reason."""
    samples = []
    if session is not None:
        samples = [
            s
            for s in StreamSample.objects.filter(
                domain_name=ingest.domain_name,
                app=url.app,
                stream=url.stream,
                session_id=session.session_id,
                at__gt=now - FINDINGS_WINDOW,
                at__lte=now,
            ).order_by("at", "id")
            if getattr(s, protocol)
        ]
    if len(samples) >= MIN_FINDING_SAMPLES:
        return samples
    label = protocol.upper()
    because = (
        "the stream is not live"
        if session is None
        else f"the stream is not live over {label}"
        if session.protocol != protocol
        else f"fewer than {MIN_FINDING_SAMPLES} seconds of {label} samples yet"
    )
    for name in steps:
        report.skip(name, TITLES[name], because)
    return None


def _check_srt(report: TroubleshootReport, ingest: Domain, url: LiveUrl, session: PublishSession | None, now) -> None:
    samples = _link_samples(report, ingest, url, session, now, "srt", ("srt_latency", "srt_loss"))
    if samples is None:
        return
    _srt_findings(report, ingest, samples)


def _srt_findings(report: TroubleshootReport, ingest: Domain, samples: list[StreamSample]) -> None:
    window = f"the last {len(samples)} s"
    last = samples[-1].srt
    rtt = statistics.median(s.srt["rtt_ms"] for s in samples)
    latency = last["latency_ms"]
    advised = round(SRT_LATENCY_RTT_ADVISED * rtt)
    raise_it = (
        f"Raise the SRT latency to at least {SRT_LATENCY_RTT_ADVISED:g}× the RTT (here {max(advised, 120)} ms or"
        " more): on the ingest domain's SRT page, or in the publisher (ffmpeg: latency= in microseconds); the"
        " larger of the two applies."
    )
    title = TITLES["srt_latency"]
    ratio = latency / rtt if rtt > 0 else float("inf")
    measured = f"latency {latency} ms, round-trip time {rtt:.1f} ms (median of {window})"
    if ratio < SRT_LATENCY_RTT_MIN:
        report.add(
            "srt_latency",
            title,
            FAIL,
            f"{measured}: the latency is only {ratio:.1f}× the RTT, too low for a lost packet to be resent in time",
            raise_it,
        )
    elif ratio < SRT_LATENCY_RTT_ADVISED:
        report.add(
            "srt_latency",
            title,
            WARN,
            f"{measured}: {ratio:.1f}× the RTT leaves room for about one retransmission; on a lossy link packets"
            " will be dropped",
            raise_it,
        )
    else:
        report.add("srt_latency", title, PASS, measured)

    received = sum(s.srt["packets_received_per_second"] for s in samples)  # one second each
    lost = sum(s.srt["packets_lost_per_second"] for s in samples)  # one second each
    retransmitted = sum(s.srt["packets_retransmitted_per_second"] for s in samples)  # one second each
    dropped = sum(s.srt["packets_dropped_per_second"] for s in samples)  # one second each
    expected = received + dropped
    loss_share = lost / expected if expected else 0.0
    drop_share = dropped / expected if expected else 0.0
    figures = (
        f"{loss_share:.1%} of packets lost, {retransmitted:.0f} retransmitted and {dropped:.0f} dropped in {window}"
    )
    title = TITLES["srt_loss"]
    headroom = (
        "Check the publisher's uplink, and keep the bitrate at most about 75 % of its bandwidth (SRT needs room"
        " for retransmissions)."
    )
    if drop_share > SRT_MAX_DROP_SHARE:
        report.add(
            "srt_loss",
            title,
            FAIL,
            f"{figures}: dropped packets came too late to play, and viewers see the gaps",
            f"{headroom} {raise_it}",
        )
    elif dropped > 0 or loss_share > SRT_MAX_LOSS_SHARE:
        report.add(
            "srt_loss", title, WARN, f"{figures}: the link is lossy; retransmissions recovered most of it", headroom
        )
    else:
        report.add("srt_loss", title, PASS, figures)


# --- WHIP -----------------------------------------------------------------------------

# The node waits this long for a lost video packet to be sent again after
# its NACK before it gives the frame up and asks for a keyframe
# (rts/ingest.py VIDEO_LOSS_WAIT_MS; not imported, which would load aiortc
# into the console; a test holds the two equal). A round trip past half of
# it leaves time for one request at most; past all of it, for none.
WHIP_LOSS_WAIT_MS = 500.0
WHIP_MAX_RTT_SHARE = 0.5
# Of the packets expected in the window: lost past this is a poor link,
# even where NACKs repaired it.
WHIP_MAX_LOSS_SHARE = 0.05
WHIP_UPLINK = (
    "Check the publisher's uplink (a wired connection, no other uploads), and keep the bitrate at most about"
    " 75 % of its bandwidth: WebRTC repairs loss by sending packets again, which needs room."
)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _check_whip(report: TroubleshootReport, ingest: Domain, url: LiveUrl, session: PublishSession | None, now) -> None:
    samples = _link_samples(report, ingest, url, session, now, "whip", tuple(name for name, _ in WHIP_STEPS))
    if samples is None:
        return
    _whip_findings(report, samples)


def _whip_findings(report: TroubleshootReport, samples: list[StreamSample]) -> None:
    window = f"the last {len(samples)} s"
    first, last = samples[0].whip, samples[-1].whip
    codecs = " and ".join(c for c in (last["video_codec"], last["audio_codec"]) if c) or "no media"
    state = last["connection_state"]
    title = TITLES["whip_connection"]
    if state == "connected":
        report.add("whip_connection", title, PASS, f"connected from {last['peer']}, sending {codecs}")
    else:
        report.add(
            "whip_connection",
            title,
            FAIL,
            f"the publisher at {last['peer']} POSTed its offer, but the WebRTC connection is {state}: ICE or DTLS"
            " has not completed, and no media comes",
            "WebRTC media goes over UDP: allow UDP between the publisher and the node (firewalls, VPNs), and"
            " read the publisher's log for its ICE state.",
        )

    title = TITLES["whip_rtt"]
    measured = [s.whip["rtt_ms"] for s in samples if s.whip["rtt_ms"] > 0]
    if not measured:
        report.add("whip_rtt", title, PASS, f"not measured yet in {window}")
    else:
        rtt = statistics.median(measured)
        figures = f"round-trip time {rtt:.1f} ms (median of {window})"
        wait = f"the node waits {WHIP_LOSS_WAIT_MS:.0f} ms for a lost video packet to be sent again"
        nearer = (
            "Publish from a network nearer the node (fewer hops, no VPN), or stop what fills the publisher's"
            " uplink queue (bufferbloat)."
        )
        if rtt >= WHIP_LOSS_WAIT_MS:
            report.add("whip_rtt", title, FAIL, f"{figures}: {wait}, less than one round trip: a lost packet"
                       " is never repaired, and each loss costs a keyframe", nearer)  # fmt: skip
        elif rtt > WHIP_MAX_RTT_SHARE * WHIP_LOSS_WAIT_MS:
            report.add("whip_rtt", title, WARN, f"{figures}: {wait}, room for one request at most", nearer)
        else:
            report.add("whip_rtt", title, PASS, figures)

    received = sum(s.whip["packets_received_per_second"] for s in samples)  # one second each
    lost = sum(s.whip["packets_lost_per_second"] for s in samples)  # one second each
    nacked = sum(s.whip["nacks_sent_per_second"] for s in samples)  # one second each
    expected = received + lost
    loss_share = lost / expected if expected else 0.0
    frames_lost = max(0, last["frames_lost"] - first["frames_lost"])
    keyframes = max(0, last["keyframe_requests"] - first["keyframe_requests"])
    figures = f"{loss_share:.1%} of packets lost, {nacked:.0f} asked for again (NACK) in {window}"
    title = TITLES["whip_loss"]
    if frames_lost:
        report.add(
            "whip_loss",
            title,
            FAIL,
            f"{figures}; {_count(frames_lost, 'frame')} {'was' if frames_lost == 1 else 'were'} not repaired in"
            f" time ({_count(keyframes, 'keyframe request')}): viewers see the picture break until the next keyframe",
            WHIP_UPLINK,
        )
    elif loss_share > WHIP_MAX_LOSS_SHARE:
        report.add("whip_loss", title, WARN, f"{figures}: the link is lossy; retransmissions repaired it", WHIP_UPLINK)
    else:
        report.add("whip_loss", title, PASS, figures)
