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
4. `listener`: with N connections (1 and 256, MAX_CONNECTIONS) on one
   listener, the CPU of a data packet to one of them (each connection
   receiving in turn) and of one handle_timer, as srt_server's 5 ms tick
   calls it, with nothing due and with every connection due.

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


def listener_with(count: int):
    from livecenter.media.srt.listener import SrtListener
    from livecenter.media.srt.packets import (
        SrtFlag,
        SrtHandshake,
        SrtHandshakeType,
        SrtHsExtension,
    )

    listener = SrtListener(latency_ms=120, max_connections=count)
    flags = SrtFlag.TSBPDSND | SrtFlag.TSBPDRCV | SrtFlag.TLPKTDROP | SrtFlag.PERIODICNAK | SrtFlag.REXMITFLG
    peers = []
    for k in range(count):
        peer = (f"10.{k >> 8}.{k & 255}.1", 5000)
        induction = SrtHandshake(
            version=4, handshake_type=SrtHandshakeType.INDUCTION, socket_id=k + 1, extension_field=2
        )
        listener.receive_datagram(bytes(induction), peer, 0.0)
        [(answer, _)] = listener.datagrams_to_send()
        conclusion = SrtHandshake(
            version=5,
            handshake_type=SrtHandshakeType.CONCLUSION,
            socket_id=k + 1,
            syn_cookie=parse_packet(answer).syn_cookie,
            extension_field=0x5,
            initial_seq=ISN,
            hs=SrtHsExtension(0x010501, flags, 120, 120),
        )
        listener.receive_datagram(bytes(conclusion), peer, 0.0)
        [request] = listener.events()
        connection = listener.accept(request, 0.0)
        listener.datagrams_to_send()
        peers.append((connection.socket_id, peer))
    return listener, peers


def listener_costs(count: int, packets: int) -> tuple[float, float, float]:
    """CPU per data packet, per idle tick and per tick with every connection due."""
    listener, peers = listener_with(count)
    began = time.process_time()
    for k in range(packets):
        socket_id, peer = peers[k % count]
        seq = seq_inc(ISN, k // count)
        now = 0.001 + k * 5e-6
        listener.receive_datagram(bytes(SrtDataPacket(seq, b"x" * 1316, int(now * 1e6), socket_id)), peer, now)
        listener.events(), listener.datagrams_to_send()
    per_packet = (time.process_time() - began) / packets
    now += 0.2  # everything received is delivered
    listener.handle_timer(now)
    listener.events(), listener.datagrams_to_send()
    began = time.process_time()
    for k in range(100):
        listener.handle_timer(now + k * 1e-6)  # nothing due: ACKs were just sent or are 10 ms away
    idle_tick = (time.process_time() - began) / 100
    busy = 0.0
    seq = seq_inc(ISN, packets // count + 1)
    for _ in range(20):
        for socket_id, peer in peers:  # one packet each: every connection has an ACK due
            listener.receive_datagram(bytes(SrtDataPacket(seq, b"x" * 1316, int(now * 1e6), socket_id)), peer, now)
        seq = seq_inc(seq)
        listener.events(), listener.datagrams_to_send()
        now += 0.010
        began = time.process_time()
        listener.handle_timer(now)
        listener.events(), listener.datagrams_to_send()
        busy += time.process_time() - began
    busy_tick = busy / 20
    return per_packet, idle_tick, busy_tick


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
    for count in (1, 256):
        packet, idle, busy = listener_costs(count, min(20_000, 4_000 * count))  # within each one's window
        print(
            f"listener with {count} connections: {packet * 1e6:.1f} µs per data packet, "
            f"handle_timer {idle * 1e6:.1f} µs with nothing due, {busy * 1e6:.0f} µs with every connection due"
        )
    times = replay()
    print(f"fuzz inputs replayed: {len(times)}; slowest:")
    for seconds, label in times[:5]:
        print(f"  {seconds * 1000:9.1f} ms  {label}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
