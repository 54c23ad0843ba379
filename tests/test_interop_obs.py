"""OBS Studio publishing to the media node over RTMPS (issue 15), headless.

OBS runs under Xvfb (Mesa's llvmpipe for its OpenGL) with a config
directory made in the test: a profile in Simple output mode (x264 at a low
bitrate, 640x360, the Custom service with the rtmps:// server and the signed
stream key) and a scene collection whose one source loops a short clip made
by ffmpeg. `--startstreaming` starts the stream as the Start Streaming
button does.

OBS's librtmp checks the node's certificate with mbedTLS against every
certificate in /etc/ssl/certs/ (plugins/obs-outputs/librtmp/rtmp.c,
RTMP_TLS_LoadCerts: mbedtls_x509_crt_parse_path on Linux; OBS has no setting
for another CA), and sends the URL's host as SNI and checks the certificate
against it (mbedtls_ssl_set_hostname). OBS therefore runs in a mount
namespace of its own whose /etc/ssl/certs is a directory holding the test
CA alone and whose /etc/hosts names the test domains, as the GStreamer test
(tests/test_media_tls.py) does: the machine's trust store is never changed.
Needs root for that, as tests/tlssupport.py's `resolving` does.

OBS is not installed where CI runs (a large GUI package, not in `make
system-deps`): the tests are skipped without `obs` or `xvfb-run`. Debian:
`apt-get install --no-install-recommends obs-studio xvfb xauth`."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from livecenter.media.signing import sign
from tests.mediasupport import INGEST, INGEST_KEY, PLAY, NodeThread
from tests.test_media_tls import KEY, PLAY2, tls_policy
from tests.tlssupport import TestCa, hosts_file

pytestmark = [
    pytest.mark.media,
    pytest.mark.skipif(
        shutil.which("obs") is None or shutil.which("xvfb-run") is None,
        reason="needs OBS Studio and Xvfb (apt-get install obs-studio xvfb xauth; not in make system-deps)",
    ),
]

PROFILE = "LiveCenter"  # the profile's and the scene collection's name
STREAMING_SECONDS = 20  # how long OBS must stay live without a drop
START_SECONDS = 180  # OBS's start under llvmpipe on a loaded 2-core machine, and its RTMPS connect
# OBS's version as its config files carry it: (major << 24) | (minor << 16) | patch. Its
# presence keeps the auto-configuration wizard from opening on a "first run".
OBS_LAST_VERSION = (29 << 24) | 2


@pytest.fixture
def ca(tmp_path):
    return TestCa(tmp_path)


@pytest.fixture
def media(ca):
    leaves = {name: ca.issue([name]) for name in (INGEST, PLAY, PLAY2)}
    node = NodeThread(tls_policy(leaves), https_port=0, rtmps_port=0, play_wait_seconds=3).start()
    yield node
    node.stop()


def ini(sections: dict[str, dict[str, object]]) -> str:
    """An INI file's text: OBS's config files (libobs config_open) are INI."""
    lines = []
    for name, keys in sections.items():
        lines += [f"[{name}]", *(f"{k}={v}" for k, v in keys.items()), ""]
    return "\n".join(lines)


def obs_config(root: Path, server: str, stream_key: str, clip: Path) -> Path:
    """An OBS config directory (what $XDG_CONFIG_HOME/obs-studio holds)
    streaming `clip`, looped, to `server` with `stream_key`."""
    config = root / "obs-studio"
    (config / "basic" / "profiles" / PROFILE).mkdir(parents=True)
    (config / "basic" / "scenes").mkdir(parents=True)
    (config / "global.ini").write_text(ini({
        "General": {"FirstRun": "true", "LastVersion": OBS_LAST_VERSION, "Pre19Defaults": "true",
                    "Pre21Defaults": "true", "Pre23Defaults": "true", "Pre24.1Defaults": "true",
                    "ConfirmOnExit": "false", "EnableAutoUpdates": "false"},
        "Basic": {"Profile": PROFILE, "ProfileDir": PROFILE, "SceneCollection": PROFILE,
                  "SceneCollectionFile": PROFILE},
        "OBSWebSocket": {"FirstLoad": "false", "ServerEnabled": "false"},
    }))  # fmt: skip
    profile = config / "basic" / "profiles" / PROFILE
    (profile / "basic.ini").write_text(ini({
        "General": {"Name": PROFILE},
        "Output": {"Mode": "Simple", "Reconnect": "false"},
        # A keyframe every 2 s at 25 fps: players start without waiting long.
        "SimpleOutput": {"StreamEncoder": "x264", "VBitrate": 600, "ABitrate": 96, "Preset": "ultrafast",
                         "UseAdvanced": "true", "x264Settings": "keyint=50"},
        "Video": {"BaseCX": 640, "BaseCY": 360, "OutputCX": 640, "OutputCY": 360, "FPSType": 1, "FPSInt": 25},
        "Audio": {"SampleRate": 48000, "ChannelSetup": "Stereo"},
    }))  # fmt: skip
    service = {"type": "rtmp_custom", "settings": {"server": server, "key": stream_key, "use_auth": False}}
    (profile / "service.json").write_text(json.dumps(service))
    item = {"name": "Clip", "id": 1, "visible": True, "locked": False, "align": 5, "rot": 0.0,
            "pos": {"x": 0.0, "y": 0.0}, "scale": {"x": 1.0, "y": 1.0}, "bounds_type": 0}  # fmt: skip
    scene = {"id": "scene", "versioned_id": "scene", "name": "Scene", "settings": {"items": [item], "id_counter": 1}}
    clip_source = {
        "id": "ffmpeg_source", "versioned_id": "ffmpeg_source", "name": "Clip",
        "settings": {"is_local_file": True, "local_file": str(clip), "looping": True, "hw_decode": False,
                     "restart_on_activate": True, "close_when_inactive": False},
    }  # fmt: skip
    collection = {
        "name": PROFILE, "current_scene": "Scene", "current_program_scene": "Scene",
        "scene_order": [{"name": "Scene"}], "sources": [scene, clip_source], "groups": [],
        "transitions": [], "current_transition": "Fade", "transition_duration": 300,
    }  # fmt: skip
    (config / "basic" / "scenes" / f"{PROFILE}.json").write_text(json.dumps(collection))
    return config


def make_clip(path: Path) -> Path:
    """Four seconds of H.264 + AAC at 640x360 for OBS's media source to loop."""
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25",
         "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", "4", "-c:v", "libx264",
         "-preset", "ultrafast", "-g", "25", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "96k", str(path)],
        check=True, timeout=60,
    )  # fmt: skip
    return path


def obs_command(hosts: str, certs: Path) -> list[str]:
    """OBS under Xvfb streaming at start, in a mount namespace whose
    /etc/hosts is `hosts` and whose /etc/ssl/certs is `certs`."""
    script = 'mount --bind "$0" /etc/hosts && mount --bind "$1" /etc/ssl/certs && shift && exec "$@"'
    obs = ["obs", "--multi", "--startstreaming", "--minimize-to-tray", "--profile", PROFILE, "--collection", PROFILE]
    xvfb = ["xvfb-run", "-a", "-s", "-screen 0 1280x720x24"]
    return ["unshare", "--mount", "sh", "-c", script, hosts, str(certs), *xvfb, *obs]


def probe(url: str) -> dict:
    """Three seconds of `url`'s streams and packets, by ffprobe."""
    run = subprocess.run(
        ["ffprobe", "-v", "error", "-read_intervals", "%+3",
         "-show_entries", "stream=index,codec_type,codec_name,width,height,sample_rate:packet=stream_index,pts_time",
         "-of", "json", url],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    return json.loads(run.stdout)


class Obs:
    """OBS streaming to the node's RTMPS port as push.test, trusting the CA
    at `ca_path` alone; its output (OBS logs to stdout as to its log file)
    in `output`."""

    def __init__(self, media, ca_path: Path, directory: Path) -> None:
        self.server = f"rtmps://{INGEST}:{media.node.rtmps_port}/live"
        stream_key = f"cam1?auth_key={sign('/live/cam1', INGEST_KEY, int(time.time()))}"
        certs = directory / "certs"
        certs.mkdir()
        shutil.copy(ca_path, certs / "livecenter-test-ca.pem")  # the only CA OBS trusts
        home = directory / "home"
        home.mkdir()
        obs_config(home / ".config", self.server, stream_key, make_clip(directory / "clip.mp4"))
        env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
               "LIBGL_ALWAYS_SOFTWARE": "1", "QT_QPA_PLATFORM": "xcb"}  # fmt: skip
        env.pop("WAYLAND_DISPLAY", None)
        self.output = directory / "obs.log"
        with open(self.output, "w") as log_file:
            self.process = subprocess.Popen(obs_command(hosts_file([INGEST]), certs), env=env, stdout=log_file,
                                            stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip

    def log(self) -> str:
        return self.output.read_text(errors="replace")

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)  # OBS, Xvfb and xvfb-run: the session started above
        self.process.wait(30)


def test_obs_publishes_over_rtmps_with_the_ingest_domains_certificate(media, ca, tmp_path, caplog):
    caplog.set_level("INFO", logger="livecenter.media")
    obs = Obs(media, ca.path, tmp_path)
    try:
        media.wait_for(lambda: media.node.hub.is_live(KEY) or obs.process.poll() is not None, timeout=START_SECONDS)
        assert media.node.hub.is_live(KEY), obs.log()[-4000:]
        live_at = time.monotonic()

        # What OBS sends, played back over plain RTMP from the node (play.test plays push.test's streams).
        played = probe(media.rtmp_play_url())
        streams = {s["codec_type"]: s for s in played["streams"]}
        assert streams["video"]["codec_name"] == "h264", played["streams"]
        assert (streams["video"]["width"], streams["video"]["height"]) == (640, 360)
        assert streams["audio"]["codec_name"] == "aac" and streams["audio"]["sample_rate"] == "48000"
        for kind in ("video", "audio"):
            times = [float(p["pts_time"]) for p in played["packets"] if p["stream_index"] == streams[kind]["index"]]
            assert len(times) > 25 and times[-1] - times[0] > 1.5, (kind, times)

        # OBS stays live for STREAMING_SECONDS, then is stopped.
        remaining = STREAMING_SECONDS - (time.monotonic() - live_at)
        assert not media.wait_for(lambda: not media.node.hub.is_live(KEY), timeout=remaining), obs.log()[-4000:]
    finally:
        obs.stop()
    assert media.wait_for(lambda: not media.node.hub.is_live(KEY), timeout=30)

    # The node took the publish over TLS on the ingest domain's name (SNI), so with its certificate.
    assert re.search(rf"rtmp \S+ publishing {KEY} over TLSv1\.[23] \S+ for {INGEST}$", caplog.text, re.M), caplog.text
    # OBS connected over RTMPS, its certificate check passed (mbedTLS fails the connect otherwise).
    assert f"Connection to {obs.server} successful" in obs.log(), obs.log()[-4000:]


def test_obs_refuses_a_certificate_of_another_ca(media, tmp_path):
    """The trust store really is what OBS checks: with another CA in it the
    handshake fails, OBS says why, and nothing goes live."""
    (tmp_path / "other").mkdir()
    other = TestCa(tmp_path / "other")
    obs = Obs(media, other.path, tmp_path)
    try:
        failed = f"Connection to {obs.server} failed"
        assert media.wait_for(lambda: failed in obs.log() or obs.process.poll() is not None, timeout=START_SECONDS)
        assert failed in obs.log() and "Cert verify failed" in obs.log(), obs.log()[-4000:]
        assert not media.node.hub.is_live(KEY)
    finally:
        obs.stop()
