"""The native sender's SRTP AES-GCM, nanoseconds per packet (issue 18;
bench/README.md, "bench/rts: SRTP AES-GCM per packet").

Builds bench/rts/gcm_micro.c once per `--source` (a copy of
livecenter/media/rts/_rtssend.c: this tree's by default; another commit's
with `git show COMMIT:livecenter/media/rts/_rtssend.c > /tmp/old.c`), each
binary including that source and timing its `gcm_protect` alone, and runs
them alternately: both GCM profiles, a video packet (1,200 bytes of payload,
six a frame) and an Opus one (100 bytes, one), for one session (everything
cached), 1,000 sessions in turn, and 1,000 with `--pollute-kb` of other
memory written between two sessions (the kernel's send for the previous
viewer, in the node). Every source must give the same checksum of its last
packets, or the run stops: the output is byte-identical or it is not
compared. Bounded: a few seconds a row.

    flock /tmp/livecenter-bench.lock nice -n -20 .venv/bin/python bench/rts/gcm_micro.py \
        [--source /tmp/old.c --source livecenter/media/rts/_rtssend.c] [--repeats 7] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HARNESS = ROOT / "bench/rts/gcm_micro.c"
DEFAULT_SOURCE = ROOT / "livecenter/media/rts/_rtssend.c"
PROFILES = {"AES_128_GCM": 7, "AES_256_GCM": 8}  # libsrtp2's srtp_profile_aead_aes_{128,256}_gcm
SHAPES = {"video 1200 B x6": (1200, 6), "opus 100 B x1": (100, 1)}
PACKETS_PER_RUN = 120_000


def build(source: Path, directory: str, index: int) -> str:
    binary = os.path.join(directory, f"gcm_micro{index}")
    libdir = sysconfig.get_config_var("LIBDIR")
    version = sysconfig.get_config_var("LDVERSION")
    command = [
        os.environ.get("CC", "cc"), "-O2", "-Wall", "-Wno-unused-function", "-Wno-unused-parameter",
        f'-DRTSSEND_SOURCE="{source.resolve()}"', f"-I{sysconfig.get_paths()['include']}",
        "-o", binary, str(HARNESS), f"-L{libdir}", f"-Wl,-rpath,{libdir}", f"-lpython{version}",
        "-lsrtp2", "-lcrypto",
    ]  # fmt: skip
    subprocess.run(command, check=True)
    return binary


def run(binary: str, profile: int, sessions: int, payload: int, packets: int, pollute_kb: int, repeats: int):
    frames = max(1, PACKETS_PER_RUN // (sessions * packets))
    arguments = [profile, sessions, frames, packets, payload, pollute_kb, repeats]
    out = subprocess.run([binary, *map(str, arguments)], check=True, capture_output=True, text=True).stdout
    nanoseconds, checksum = out.split()
    return float(nanoseconds), checksum


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", action="append", type=Path, help="an _rtssend.c (repeatable; default this tree's)")
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--pollute-kb", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    sources = args.source or [DEFAULT_SOURCE]
    rows = []
    with tempfile.TemporaryDirectory(prefix="gcm_micro") as directory:
        binaries = [build(source, directory, index) for index, source in enumerate(sources)]
        print("ns per packet (median of", args.repeats, "runs);", " | ".join(str(s) for s in sources))
        for profile_name, profile in PROFILES.items():
            for shape, (payload, packets) in SHAPES.items():
                for sessions, pollute_kb in ((1, 0), (args.sessions, 0), (args.sessions, args.pollute_kb)):
                    results = [
                        run(binary, profile, sessions, payload, packets, pollute_kb, args.repeats)
                        for binary in binaries
                    ]
                    if len({checksum for _, checksum in results}) != 1:
                        sys.exit(f"the sources' packets differ: {profile_name} {shape} {results}")
                    label = f"{profile_name} {shape}, {sessions} session(s)" + (
                        f", {pollute_kb} KB between" if pollute_kb else ""
                    )
                    figures = [nanoseconds for nanoseconds, _ in results]
                    print(f"{label:<60}" + "".join(f"{n:>9.1f}" for n in figures))
                    rows.append({"row": label, "ns_per_packet": figures})
    print("load average:", Path("/proc/loadavg").read_text().strip())
    if args.json:
        args.json.write_text(json.dumps({"sources": [str(s) for s in sources], "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
