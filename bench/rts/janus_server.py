"""Debian's Janus (1.1) as the C reference for bench/rts's viewer count (issue 18).

A minimal configuration written at run time into a temporary directory:
only the streaming plugin and the HTTP transport are loaded (a plugins and
a transports folder of one symlink each, so nothing else Debian ships
starts), the HTTP API listens on 127.0.0.1 and ICE gathers on `lo` only
with no STUN (with `host`, another address: both there, as bench/rts's
`--viewers-netns` needs), and the log goes to a file. The streaming plugin has one RTP
mountpoint (MOUNTPOINT_ID): H.264 (pt 96) and Opus (pt 111) on loopback
ports, fed by ffmpeg from the same clip the node gets (`feed`): the video
copied as it is, the clip's AAC made Opus (Janus does not transcode, and
WebRTC has no AAC; LiveCenter's node makes the same Opus itself, inside the
measured core).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

JANUS = "/usr/bin/janus"
JANUS_LIB = Path("/usr/lib/x86_64-linux-gnu/janus")
MOUNTPOINT_ID = 1
VIDEO_PT, AUDIO_PT = 96, 111
# Janus's own session timeout; the viewers send a keepalive well within it.
SESSION_TIMEOUT_SECONDS = 60
# The packet size ffmpeg cuts RTP to: under the 1200 bytes WebRTC senders
# keep to, so Janus passes them on without the MTU warnings.
RTP_PACKET_SIZE = 1200
START_SECONDS = 20


def available() -> str | None:
    """None when Janus and its two modules are installed, else why not."""
    if not Path(JANUS).exists():
        return f"{JANUS} is not installed (apt-get install janus)"
    for part in ("plugins/libjanus_streaming.so", "transports/libjanus_http.so"):
        if not (JANUS_LIB / part).exists():
            return f"{JANUS_LIB / part} is missing"
    return None


def write_config(workdir: Path, http_port: int, video_port: int, audio_port: int, event_loops: int = 0,
                 host: str = "127.0.0.1") -> Path:  # fmt: skip
    """The configuration folder for one Janus; returns its janus.jcfg.
    `event_loops`: Janus's static pool of event loops (0: its default, a
    thread and GLib loop per handle, i.e. per viewer)."""
    conf, plugins, transports = workdir / "conf", workdir / "plugins", workdir / "transports"
    for folder in (conf, plugins, transports, workdir / "none"):
        folder.mkdir(parents=True, exist_ok=True)
    for folder, name in ((plugins, "libjanus_streaming.so"), (transports, "libjanus_http.so")):
        link = folder / name
        if not link.exists():
            link.symlink_to(JANUS_LIB / folder.name / name)
    (conf / "janus.jcfg").write_text(
        "general: {\n"
        f'  configs_folder = "{conf}"\n'
        f'  plugins_folder = "{plugins}"\n'
        f'  transports_folder = "{transports}"\n'
        f'  events_folder = "{workdir / "none"}"\n'
        f'  loggers_folder = "{workdir / "none"}"\n'
        f'  log_to_file = "{workdir / "janus.log"}"\n'
        "  log_to_stdout = false\n"
        "  debug_level = 4\n"
        f"  session_timeout = {SESSION_TIMEOUT_SECONDS}\n"
        + (f"  event_loops = {event_loops}\n" if event_loops else "")
        + "}\n"
        "certificates: {\n}\n"
        'media: {\n  rtp_port_range = "20000-40000"\n}\n'
        f'nat: {{\n  ice_enforce_list = "{"lo" if host == "127.0.0.1" else host}"\n  ice_ipv6 = false\n}}\n'
        "plugins: {\n}\ntransports: {\n}\nevents: {\n}\nloggers: {\n}\n"
    )
    (conf / "janus.transport.http.jcfg").write_text(
        "general: {\n"
        '  json = "compact"\n  base_path = "/janus"\n  http = true\n'
        f'  port = {http_port}\n  ip = "{host}"\n  https = false\n'
        "}\nadmin: {\n  admin_http = false\n}\n"
    )
    (conf / "janus.plugin.streaming.jcfg").write_text(
        "general: {\n}\n"
        "bench: {\n"
        '  type = "rtp"\n'
        f"  id = {MOUNTPOINT_ID}\n"
        '  description = "bench/rts clip"\n'
        "  media = (\n"
        f'    {{ type = "video" mid = "v" port = {video_port} pt = {VIDEO_PT} codec = "h264"'
        f' fmtp = "profile-level-id=42e01f;packetization-mode=1" iface = "127.0.0.1" }},\n'
        f'    {{ type = "audio" mid = "a" port = {audio_port} pt = {AUDIO_PT} codec = "opus" iface = "127.0.0.1" }}\n'
        "  )\n"
        "}\n"
    )
    return conf / "janus.jcfg"


def start(workdir: Path, http_port: int, video_port: int, audio_port: int, core: str,
          event_loops: int = 0, host: str = "127.0.0.1") -> subprocess.Popen:  # fmt: skip
    """Janus pinned to `core`, once its HTTP API answers `info` on `host`."""
    config = write_config(workdir, http_port, video_port, audio_port, event_loops, host)
    janus = subprocess.Popen(
        ["taskset", "-c", core, JANUS, "-C", str(config), "-F", str(config.parent), "-N", "-o"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=open(workdir / "janus.stderr", "w"),
    )  # fmt: skip
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if janus.poll() is not None:
            raise RuntimeError(f"janus stopped: {log_tail(workdir)}")
        try:
            with urllib.request.urlopen(f"http://{host}:{http_port}/janus/info", timeout=1) as response:
                if json.loads(response.read()).get("janus") == "server_info":
                    return janus
        except OSError:
            time.sleep(0.1)
    janus.terminate()
    janus.wait(10)
    raise RuntimeError(f"janus did not answer on port {http_port}: {log_tail(workdir)}")


def annex_b_copy(clip: Path) -> Path:
    """The clip remuxed once to MPEG-TS (its H.264 as Annex B, the same
    frames): `feed` loops it. ffmpeg 5.1 cannot loop the FLV itself to RTP:
    with `-stream_loop` the explicit `h264_mp4toannexb` filter gets an EOF
    at the first loop and the video stops for good ("A non-NULL packet sent
    after an EOF"), which looked like Janus dropping frames past 24 s."""
    copy = clip.with_suffix(".ts")
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-i", str(clip), "-c", "copy",
                    "-bsf:v", "h264_mp4toannexb", "-f", "mpegts", str(copy)], check=True, timeout=120)  # fmt: skip
    return copy


def feed(clip: Path, video_port: int, audio_port: int, core: str) -> subprocess.Popen:
    """ffmpeg sending `clip` (annex_b_copy's MPEG-TS) in real time, looped,
    to the mountpoint: the H.264 copied, the AAC made Opus."""
    return subprocess.Popen(
        ["taskset", "-c", core, "nice", "-n", "-10", shutil.which("ffmpeg") or "ffmpeg",
         "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", str(clip),
         "-map", "0:v", "-c:v", "copy", "-payload_type", str(VIDEO_PT),
         "-f", "rtp", f"rtp://127.0.0.1:{video_port}?pkt_size={RTP_PACKET_SIZE}",
         "-map", "0:a", "-c:a", "libopus", "-b:a", "64k", "-ar", "48000", "-payload_type", str(AUDIO_PT),
         "-f", "rtp", f"rtp://127.0.0.1:{audio_port}?pkt_size={RTP_PACKET_SIZE}"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def log_tail(workdir: Path, lines: int = 5) -> str:
    path = workdir / "janus.log"
    if not path.exists():
        return "(no log)"
    return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
