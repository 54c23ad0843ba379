"""CPU a hostile or lossy SRT peer costs the receiving connection, per
datagram (bench/README.md, "SRT and the TS demuxer", and issue 13):

1. `drop`: a drop request (SrtDropRequest) naming the whole receive window,
   each one the next window along (the sender gave up everything).
2. `gap`: a data packet 8,191 past the next one to deliver (a gap of the
   whole window), already due, so the gap is dropped at once and the next
   one can open another.
3. `fuzz`: every srt_listener and srt_packets input of bench/fuzz
   (regressions, seeds, and var/fuzz/corpus if a campaign left one) replayed
   through bench/fuzz/targets.py uninstrumented, plus two made here through
   the listener: a handshake then 579 whole-window drop requests, and a
   handshake then 800 gap-opening packets (the two "Open" cases of
   bench/README.md). CPU time per input (time.process_time); the bound is
   100 ms.

    nice -n 19 .venv/bin/python bench/srt/receiver_cost.py [--repeat 200]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FUZZ = ROOT / "bench" / "fuzz"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(FUZZ))

from livecenter.media.srt.connection import MAX_REORDER_PACKETS, SrtConnection  # noqa: E402
from livecenter.media.srt.packets import SrtDataPacket, SrtDropRequest, parse_packet  # noqa: E402
from livecenter.media.srt.sequence import SEQ_MASK, seq_inc  # noqa: E402

ISN = SEQ_MASK - 3000  # the sequence numbers wrap during the runs


def connection() -> SrtConnection:
    return SrtConnection(
        socket_id=1, peer_socket_id=2, initial_seq=ISN, latency_ms=120, peer_start_timestamp=0, now=0.0
    )


def per_drop_request(repeat: int) -> float:
    conn = connection()
    start = ISN
    began = time.process_time()
    for k in range(repeat):
        conn.receive_packet(SrtDropRequest(1, start, seq_inc(start, MAX_REORDER_PACKETS - 1)), 0.001 * k)
        conn.events(), conn.datagrams_to_send()
        start = seq_inc(start, MAX_REORDER_PACKETS)
    return (time.process_time() - began) / repeat


def per_gap_packet(repeat: int) -> float:
    conn = connection()
    seq = ISN
    began = time.process_time()
    for k in range(repeat):
        seq = seq_inc(seq, MAX_REORDER_PACKETS - 1)
        now = 1.0 + 0.001 * k
        conn.receive_packet(SrtDataPacket(seq, b"x", 0), now)  # timestamp 0: due at once
        conn.handle_timer(now)
        conn.events(), conn.datagrams_to_send()
        seq = seq_inc(seq)
    assert conn.stats.packets_dropped >= repeat * (MAX_REORDER_PACKETS - 2), conn.stats
    return (time.process_time() - began) / repeat


def made_inputs() -> dict[str, bytes]:
    import targets

    from tests.test_srt_libsrt_vectors import CONCLUSION

    def record(clock: int, flags: int, datagram: bytes) -> bytes:
        return bytes((clock, flags)) + len(datagram).to_bytes(2, "big") + datagram

    # The seed that is the libsrt publisher's handshake (make_seeds.py).
    for path in sorted((FUZZ / "seeds" / "srt_listener").iterdir()):
        first_two = list(targets.srt_datagrams(path.read_bytes()))[:2]
        if first_two[1][2] == CONCLUSION:
            handshake = b"".join(record(c, f, d) for c, f, d in first_two)
    isn = parse_packet(CONCLUSION).initial_seq
    to_conn = targets.SRT_TO_CONNECTION
    drops, start = [], isn
    for _ in range(579):
        drops.append(record(1, to_conn, bytes(SrtDropRequest(1, start, seq_inc(start, MAX_REORDER_PACKETS - 1)))))
        start = seq_inc(start, MAX_REORDER_PACKETS)
    gaps, seq = [], isn
    for k in range(800):
        seq = seq_inc(seq, MAX_REORDER_PACKETS - 1)
        gaps.append(record(100, to_conn, bytes(SrtDataPacket(seq, b"x", k * 1_666_000))))
        seq = seq_inc(seq)
    return {
        "made: 579 whole-window drop requests": handshake + b"".join(drops),
        "made: 800 gap-opening packets": handshake + b"".join(gaps),
    }


def replay() -> list[tuple[float, str]]:
    import targets

    inputs: dict[str, bytes] = {}
    for name in ("srt_listener", "srt_packets"):
        for folder in (FUZZ / "regressions" / name, FUZZ / "seeds" / name, ROOT / "var" / "fuzz" / "corpus" / name):
            if folder.is_dir():
                for path in sorted(folder.iterdir()):
                    inputs[f"{name}:{path.relative_to(ROOT)}"] = path.read_bytes()
    inputs.update({f"srt_listener:{k}": v for k, v in made_inputs().items()})
    times = []
    for label, data in inputs.items():
        target = targets.TARGETS[label.split(":")[0]]
        began = time.process_time()
        try:
            target.run(data)
        except target.errors:
            pass
        times.append((time.process_time() - began, label))
    return sorted(times, reverse=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()
    print(f"drop request of the whole window: {per_drop_request(args.repeat) * 1e6:,.0f} µs CPU each")
    print(f"data packet opening an 8,191-packet gap: {per_gap_packet(args.repeat) * 1e6:,.0f} µs CPU each")
    times = replay()
    print(f"fuzz inputs replayed: {len(times)}; slowest:")
    for seconds, label in times[:5]:
        print(f"  {seconds * 1000:9.1f} ms  {label}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
