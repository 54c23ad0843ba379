"""`manage.py calibrator`: push the latency calibrator's live test stream
(streams/calibrator.py) over RTMP to a signed ingest URL, made by the URL
generator for the domain's owner, or given with --url (rtmp://, or srt://
for MPEG-TS over SRT)."""

from __future__ import annotations

import signal
import threading
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from domains import services
from domains.direct import media_host, via_media_host
from domains.models import Domain
from livecenter.lib.api import command_error
from livecenter.media.timecode import TimecodeError
from streams.calibrator import CalibratorConfig, parse_bit_rate, parse_size, push

OPTION_FOR_FIELD = {"domain": "--domain", "app": "--app", "stream": "--stream"}


class Command(BaseCommand):
    help = (
        "Push a live test stream whose frames carry their capture time, for the web player's"
        " glass-to-glass latency readout. Runs until --duration has passed or Ctrl-C."
    )

    def add_arguments(self, parser):
        parser.add_argument("--domain", help="an ingest domain, or a streaming domain associated with one")
        parser.add_argument("--app", default="live", help="the application name (default: live)")
        parser.add_argument("--stream", default="calibrator", help="the stream name (default: calibrator)")
        parser.add_argument(
            "--url",
            help="push to this rtmp:// or srt:// URL instead of one made by the URL generator"
            " (srt://: options as srt-live-transmit reads them, latency in ms)",
        )
        parser.add_argument(
            "--media-host",
            default=None,
            help="send the generated URL to this host, with &domain= naming the domain (default: as the player"
            " does, LIVECENTER_PLAYER_MEDIA_HOST: the domain itself where it resolves and is not local, else"
            " 127.0.0.1; empty: the domain itself)",
        )
        parser.add_argument("--size", default="1280x720", help="WIDTHxHEIGHT, at least 512 wide (default 1280x720)")
        parser.add_argument("--fps", type=int, default=30, help="frames per second (default 30)")
        parser.add_argument("--bitrate", default="2M", help="video bitrate, such as 2M or 800k (default 2M)")
        parser.add_argument("--gop-seconds", type=float, default=1.0, help="keyframe interval (default 1)")
        parser.add_argument("--bframes", type=int, default=0, help="B-frames between references (default 0)")
        parser.add_argument("--duration", type=float, metavar="SECONDS", help="stop after this long (default: never)")

    def handle(self, *args, **options):
        try:
            width, height = parse_size(options["size"])
            config = CalibratorConfig(
                width=width,
                height=height,
                fps=options["fps"],
                bit_rate=parse_bit_rate(options["bitrate"]),
                gop_seconds=options["gop_seconds"],
                bframes=options["bframes"],
                duration_seconds=options["duration"],
            )
        except (ValueError, TimecodeError) as exc:
            raise CommandError(str(exc)) from None
        url = options["url"] or self.generated_url(options)
        if urlsplit(url).scheme not in ("rtmp", "srt"):
            raise CommandError(f"--url must be an rtmp:// or srt:// URL, not {url!r}")
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        self.stdout.write(
            f"Calibrator: {config.width}x{config.height} at {config.fps} fps, {config.bit_rate // 1000} kbit/s,"
            f" keyframe every {config.gop_frames} frames, {config.bframes} B-frames, to {url}"
        )
        self.stdout.flush()
        try:
            report = push(url, config, stop)
        except OSError as exc:
            raise CommandError(f"could not push to {url}: {exc}") from None
        self.stdout.write(f"Calibrator stopped after {report.frames} frames ({report.late_frames} late)")

    def generated_url(self, options) -> str:
        name = options["domain"]
        if not name:
            raise CommandError("--domain is required unless --url is given")
        domain = Domain.objects.filter(domain_name=name.strip().lower()).select_related("owner").first()
        if domain is None:
            raise CommandError(f"--domain: there is no domain named {name!r}")
        try:
            urls = services.generate_urls(domain.owner, domain.domain_name, options["app"], options["stream"])
        except ValidationError as exc:
            raise command_error(exc, OPTION_FOR_FIELD) from None
        if "rtmp" not in urls.ingest:
            raise CommandError(f"--domain: {' '.join(urls.notes) or 'no ingest URL for this domain'}")
        host = options["media_host"]
        if host is None:
            host = media_host(Domain.objects.get(domain_name=urls.ingest_domain))
        return via_media_host(urls.ingest["rtmp"], host, urls.ingest_domain)
