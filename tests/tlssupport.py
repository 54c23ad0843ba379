"""A test certificate authority, made in the test (issue 15), and the
command-line TLS peers that check what the node serves."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import os
import socket
import ssl
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from livecenter.media.policy import TlsCertificate


@dataclass(frozen=True)
class Leaf:
    chain_pem: str  # leaf, then the CA
    key_pem: str
    fingerprint_sha256: str  # "AB:CD:..."
    not_after: dt.datetime

    def for_node(self, domain: str) -> TlsCertificate:
        return TlsCertificate(domain, self.chain_pem, self.key_pem, self.fingerprint_sha256, self.not_after.timestamp())


class TestCa:
    """A CA whose certificate is written to `path` (for curl's --cacert and
    openssl's -CAfile) and that issues leaves for domain names."""

    __test__ = False  # not a test class, for pytest

    def __init__(self, directory: Path, name: str = "LiveCenter Test CA") -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.pem = self.cert.public_bytes(serialization.Encoding.PEM).decode()
        self.path = Path(directory) / "ca.pem"
        self.path.write_text(self.pem)

    def issue(self, names: list[str], *, not_before=None, not_after=None) -> Leaf:
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        not_after = not_after or now + dt.timedelta(days=90)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before or now - dt.timedelta(days=1))
            .not_valid_after(not_after)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        chain = cert.public_bytes(serialization.Encoding.PEM).decode() + self.pem
        key_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        fingerprint = cert.fingerprint(hashes.SHA256()).hex(":").upper()
        return Leaf(chain, key_pem, fingerprint, not_after)


def served_certificate(port: int, servername: str | None, ca: TestCa, timeout: float = 20) -> tuple[str, str]:
    """What `openssl s_client` sees on 127.0.0.1:`port` asking for
    `servername`: (the leaf's SHA-256 fingerprint or "", its output)."""
    cmd = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-CAfile", str(ca.path), "-verify_return_error"]
    cmd += ["-servername", servername] if servername else ["-noservername"]
    run = subprocess.run(cmd, input="", capture_output=True, text=True, timeout=timeout)
    output = run.stdout + run.stderr
    start = run.stdout.find("-----BEGIN CERTIFICATE-----")
    if run.returncode != 0 or start < 0:
        return "", output
    end = run.stdout.index("-----END CERTIFICATE-----", start) + len("-----END CERTIFICATE-----")
    cert = x509.load_pem_x509_certificate(run.stdout[start:end].encode())
    return cert.fingerprint(hashes.SHA256()).hex(":").upper(), output


def hosts_file(names: list[str]) -> str:
    """A hosts file naming `names` as 127.0.0.1, for `resolving`."""
    fd, path = tempfile.mkstemp(prefix="livecenter-hosts-", suffix=".txt")
    with os.fdopen(fd, "w") as f:
        f.write("127.0.0.1 localhost\n" + "".join(f"127.0.0.1 {n}\n" for n in names))
    return path


def resolving(hosts_path: str, cmd: list[str]) -> list[str]:
    """`cmd` run in a mount namespace of its own whose /etc/hosts is
    `hosts_path`: a peer that takes its server name from the URL's host
    (ffmpeg's rtmps://, which sends no SNI for an IP address) reaches the
    node on loopback by a domain name. Needs root, as tests/netns.py does."""
    script = 'mount --bind "$0" /etc/hosts && exec "$@"'
    return ["unshare", "--mount", "sh", "-c", script, hosts_path, *cmd]


def tls_connect(port: int, ca: TestCa, name: str) -> ssl.SSLSocket:
    """A TLS client on 127.0.0.1:`port` asking for `name`, trusting `ca`."""
    ctx = ssl.create_default_context(cafile=str(ca.path))
    return ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=15), server_hostname=name)


def open_https_flv(port: int, ca: TestCa, name: str, target: str) -> ssl.SSLSocket:
    """An HTTP-FLV play of `target` over TLS, its 200 head read."""
    sock = tls_connect(port, ca, name)
    sock.sendall(f"GET {target} HTTP/1.1\r\nHost: {name}\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        data = sock.recv(4096)
        assert data, f"closed after {head!r}"
        head += data
    assert head.startswith(b"HTTP/1.1 200"), head
    return sock


def read_some(sock, n: int) -> int:
    """Read until `n` bytes came or the peer closed; how many came."""
    got = 0
    while got < n:
        data = sock.recv(65536)
        if not data:
            break
        got += len(data)
    return got


def spki_hash(ca: TestCa) -> str:
    """The base64 SHA-256 of the CA's public key, for Chromium's
    --ignore-certificate-errors-spki-list."""
    spki = ca.cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()
