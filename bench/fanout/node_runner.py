"""Our media node alone in a process, for bench/fanout/run.py.

Signing is off on both domains (the bench measures fan-out, not MD5); the
publisher and the viewers name their domain with `domain=` as on a bare IP.
With --https-port, the streaming domain has HTTPS on with a self-signed
certificate made at start (TLS viewers name it by SNI and Host instead).
Prints READY once the servers listen; SIGTERM or SIGINT stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from livecenter.media.node import MediaNode, NodeConfig  # noqa: E402
from livecenter.media.policy import DomainConfig, MemoryPolicy, MemorySink, TlsCertificate  # noqa: E402

INGEST = "push.bench"
PLAY = "play.bench"
VALIDITY_SECONDS = 3600


def bench_policy(rts_enabled: bool = False, https: bool = False) -> MemoryPolicy:
    policy = MemoryPolicy(
        domains={
            INGEST: DomainConfig(INGEST, "ingest", True, None, VALIDITY_SECONDS),
            PLAY: DomainConfig(
                PLAY, "streaming", True, None, VALIDITY_SECONDS, ingest_domain=INGEST, rts_enabled=rts_enabled,
                https_enabled=https,
            ),
        }
    )  # fmt: skip
    if https:
        policy.certificates[PLAY] = self_signed(PLAY)
    return policy


def self_signed(name: str) -> TlsCertificate:
    """A P-256 certificate for `name`, valid for a day (what browsers get from most CAs: ECDSA P-256)."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()  # fmt: skip
    chain_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    fingerprint = cert.fingerprint(hashes.SHA256()).hex(":").upper()
    return TlsCertificate(name, chain_pem, key_pem, fingerprint, cert.not_valid_after_utc.timestamp())


async def serve(
    rtmp_port: int,
    http_port: int,
    node_id: str = "bench",
    rts_enabled: bool = False,
    every_second=None,
    max_egress_mbps: float = 0.0,
    srt_port: int | None = None,
    https_port: int | None = None,
    max_loop_lag_ms: float | None = None,
    rts_fast_path: bool | None = None,
    host: str = "127.0.0.1",
):
    """Run the node until SIGTERM or SIGINT; READY once it listens, then
    `every_second(node)` each second if given. The benches measure the node
    without a capacity (capacity.py) unless `max_egress_mbps` is given; it
    listens for SRT (UDP) on `srt_port` if given (0: a free port). It
    listens on `host` and offers its ICE candidates there (bench/rts's
    viewers in a namespace of their own reach it on its veth's address)."""
    config = NodeConfig(
        host=host,
        rts_ice_addresses=(host,),
        rtmp_port=rtmp_port,
        http_port=http_port,
        srt_port=srt_port,
        https_port=https_port,
        node_id=node_id,
        max_egress_mbps=max_egress_mbps,
        **({} if max_loop_lag_ms is None else {"max_loop_lag_ms": max_loop_lag_ms}),
        **({} if rts_fast_path is None else {"rts_fast_path": rts_fast_path}),
        # Every bench viewer comes from loopback: no cap per address.
        max_connections_per_address=1_000_000,
    )
    node = MediaNode(
        config,
        bench_policy(rts_enabled, https=https_port is not None),
        MemorySink(),
    )
    await node.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("READY", flush=True)
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), 1.0)
        except TimeoutError:
            if every_second is not None:
                every_second(node)
    await node.stop()


def cli(description: str, **options) -> None:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--rtmp-port", type=int, required=True)
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1", help="listen here (and offer ICE candidates here)")
    parser.add_argument("--max-egress-mbps", type=float, default=0.0, help="the node's capacity; 0: none")
    parser.add_argument("--srt-port", type=int, help="also listen for SRT (UDP) here")
    parser.add_argument("--https-port", type=int, help="also serve HTTPS here, the streaming domain's certificate")
    parser.add_argument("--max-loop-lag-ms", type=float, help="the node's loop-lag limit (0: none); default the node's")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(
        serve(args.rtmp_port, args.http_port, max_egress_mbps=args.max_egress_mbps, srt_port=args.srt_port,
              https_port=args.https_port, max_loop_lag_ms=args.max_loop_lag_ms, host=args.host,
              **options)
    )  # fmt: skip


if __name__ == "__main__":
    cli(__doc__)
