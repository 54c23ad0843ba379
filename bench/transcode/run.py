"""Transcoding bench: CPU seconds per second of video for the lld + lhd
ladder, our worker's pipeline against the ffmpeg CLI, side by side.

    .venv/bin/python bench/transcode/run.py               # 3 rounds of a 20 s clip, ~3 min
    .venv/bin/python bench/transcode/run.py --rounds 5 --seconds 30

The input is prepared once: 720p30 H.264 at 2 Mbit/s with a keyframe every
second and AAC (DESIGN.md's bench stream; testsrc2 and a tone). Each round
transcodes it into both renditions as fast as the machine goes (not in real
time), once with each side, alternating:

- `livecenter`: mediajobs/transcode/pipeline.py's `transcode()` as a worker
  runs it (decode once, scale with swscale bicubic, libx264 per rendition
  with the worker's settings, keyframes forced at the source's, audio
  copied), reading the file and writing each rendition to an FLV file
  instead of publishing it. CPU is the process's own, around the call.
- `ffmpeg`: one ffmpeg process doing the same ladder: one decode, `split`,
  `scale` (bicubic) and libx264 with the same options, keyframes forced
  every second (the source's), audio copied. CPU is the process's.

Reported: CPU seconds (user + system) per second of video, the median of the
rounds, and our figure as a ratio of ffmpeg's (DESIGN.md's target: within
10 %). PyAV bundles its own FFmpeg and libx264 builds; the CLI is Debian's,
so the two encoders are not the same build (both printed).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import log  # noqa: E402
from livecenter.media.renditions import output_size, standard_spec  # noqa: E402

LADDER = ("lld", "lhd")
SOURCE_SIZE = (1280, 720)
FPS = 30


def prepare(path: Path, seconds: int) -> None:
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
         "-f", "lavfi", "-i", f"testsrc2=size={SOURCE_SIZE[0]}x{SOURCE_SIZE[1]}:rate={FPS}",
         "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100", "-t", str(seconds),
         "-c:v", "libx264", "-preset", "veryfast", "-g", str(FPS), "-keyint_min", str(FPS), "-sc_threshold", "0",
         "-b:v", "2M", "-maxrate", "2M", "-bufsize", "2M", "-pix_fmt", "yuv420p",
         "-c:a", "aac", "-b:a", "128k", "-f", "flv", str(path)],
        check=True,
    )  # fmt: skip


# Run in a child process: our pipeline, timed with the process's own CPU clock.
OURS = """
import json, resource, sys, time
sys.path.insert(0, {root!r})
from livecenter.media.renditions import standard_spec
from mediajobs.transcode import pipeline

class Files:
    def should_stop(self): return False
    def wanted(self): return {{t: (standard_spec(t), f"{out}/ours_{{t}}.flv") for t in {ladder!r}}}
    def published(self, *args): pass

before = resource.getrusage(resource.RUSAGE_SELF)
wall = time.monotonic()
report = pipeline.transcode({source!r}, Files(), poll_seconds=3600)
after = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({{"cpu": after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime,
                   "wall": time.monotonic() - wall, "frames": report.frames_out, "reason": report.reason}}))
"""


def run_ours(source: Path, out: Path) -> dict:
    code = OURS.format(root=str(ROOT), out=str(out), ladder=LADDER, source=str(source))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def ffmpeg_command(source: Path, out: Path) -> list[str]:
    from mediajobs.transcode.pipeline import x264_options

    n = len(LADDER)
    chains = [f"[0:v]split={n}" + "".join(f"[s{i}]" for i in range(n))]
    outputs: list[str] = []
    for i, template in enumerate(LADDER):
        spec = standard_spec(template)
        width, height = output_size(spec, *SOURCE_SIZE)
        chains.append(f"[s{i}]scale={width}:{height}:flags=bicubic,format=yuv420p[v{i}]")
        options = x264_options(spec, FPS)
        rate = f"{spec.video_bitrate_kbps}k"
        outputs += ["-map", f"[v{i}]", "-map", "0:a", "-c:v", "libx264", "-preset", options["preset"],
                    "-tune", options["tune"], "-profile:v", options["profile"], "-b:v", rate, "-maxrate", rate,
                    "-bufsize", rate, "-g", options["g"], "-sc_threshold", "0", "-forced-idr", "1",
                    "-force_key_frames", "expr:gte(t,n_forced*1)", "-c:a", "copy", "-f", "flv",
                    str(out / f"ffmpeg_{template}.flv")]  # fmt: skip
    return ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-i", str(source),
            "-filter_complex", ";".join(chains), *outputs]  # fmt: skip


def run_ffmpeg(source: Path, out: Path) -> dict:
    process = subprocess.Popen(ffmpeg_command(source, out))
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise RuntimeError(f"ffmpeg exited with {process.returncode}")
    return {"cpu": usage.ru_utime + usage.ru_stime}


def check_outputs(out: Path) -> dict[str, tuple[int, int]]:
    sizes = {}
    for path in sorted(out.glob("*.flv")):
        probe = subprocess.run(
            ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "stream=width,height", "-of", "json",
             str(path)], capture_output=True, text=True, check=True,
        )  # fmt: skip
        stream = json.loads(probe.stdout)["streams"][0]
        sizes[path.stem] = (stream["width"], stream["height"])
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=20, help="length of the clip")
    args = parser.parse_args()
    import av

    log(f"ffmpeg CLI: {subprocess.run(['ffmpeg', '-version'], capture_output=True, text=True).stdout.splitlines()[0]}")
    log(f"PyAV {av.__version__}, libavcodec {'.'.join(map(str, av.library_versions['libavcodec']))}")
    with tempfile.TemporaryDirectory(prefix="bench-transcode-") as tmp:
        tmp_path = Path(tmp)
        source = tmp_path / "source.flv"
        prepare(source, args.seconds)
        ours, theirs = [], []
        for index in range(args.rounds):
            result = run_ours(source, tmp_path)
            ours.append(result["cpu"])
            log(f"round {index + 1}: livecenter {result['cpu']:.2f} CPU s ({result['wall']:.1f} s wall, "
                f"frames {result['frames']})")  # fmt: skip
            cpu = run_ffmpeg(source, tmp_path)["cpu"]
            theirs.append(cpu)
            log(f"round {index + 1}: ffmpeg     {cpu:.2f} CPU s")
        log(f"outputs: {check_outputs(tmp_path)}")
    ours_rate = statistics.median(ours) / args.seconds
    theirs_rate = statistics.median(theirs) / args.seconds
    print(json.dumps({
        "ladder": list(LADDER), "clip_seconds": args.seconds, "rounds": args.rounds,
        "livecenter_cpu_s_per_video_s": round(ours_rate, 3), "ffmpeg_cpu_s_per_video_s": round(theirs_rate, 3),
        "ratio": round(ours_rate / theirs_rate, 3), "livecenter_runs": ours, "ffmpeg_runs": theirs,
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
