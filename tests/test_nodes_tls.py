"""Certificates from the console to the node (issue 15): a media node on
the database policy serves what the API uploads, and a replacement or a
switch reaches it at the next connection, though its policy cache would
keep the old answer for a minute."""

from __future__ import annotations

import logging
import socket
import time

import pytest

from domains import services
from nodes.bridge import DatabasePolicy
from tests.apisupport import add_ingest, add_streaming, client_for, domain_url
from tests.mediasupport import NodeThread, start_publisher
from tests.tlssupport import TestCa, open_https_flv, read_some, served_certificate

pytestmark = [pytest.mark.media, pytest.mark.django_db(transaction=True)]

INGEST, PLAY = "push.example.com", "play.example.com"


def upload(owner, leaf, name=PLAY):
    body = {"certificate": leaf.chain_pem, "private_key": leaf.key_pem}
    response = client_for(owner).put(domain_url(name, "certificate"), body, format="json")
    assert response.status_code == 200, response.json()


@pytest.fixture
def domains(owner):
    ingest, streaming = add_ingest(owner), add_streaming(owner)
    services.associate_ingest(streaming, ingest.domain_name)
    for domain in (ingest, streaming):
        services.configure_url_signing(domain, enabled=False)
    return ingest, streaming


@pytest.fixture
def node():
    # A minute's cache: what the test sees at once comes from the
    # invalidation on commit, not from the cache running out.
    media = NodeThread(DatabasePolicy(ttl_seconds=60), https_port=0, play_wait_seconds=3).start()
    yield media
    media.stop()


def key_lines(leaf) -> list[str]:
    return [line for line in leaf.key_pem.splitlines() if not line.startswith("-----")]


def test_a_certificate_replaced_through_the_api_is_served_next_while_an_open_flv_play_goes_on(
    owner, domains, node, tmp_path, caplog
):
    caplog.set_level(logging.DEBUG)
    ca = TestCa(tmp_path)
    first = ca.issue([PLAY])
    upload(owner, first)
    port = node.node.https_port
    assert served_certificate(port, PLAY, ca)[0] == first.fingerprint_sha256
    publisher = start_publisher(f"{node.rtmp}/live/cam1?domain={INGEST}", seconds=60, size="640x360")
    try:
        assert node.wait_for(lambda: bool(node.node.hub.live_keys()), timeout=30), publisher.stop()
        viewer = open_https_flv(port, ca, PLAY, "/live/cam1.flv")
        assert read_some(viewer, 100_000) >= 100_000
        second = ca.issue([PLAY])
        upload(owner, second)
        assert served_certificate(port, PLAY, ca)[0] == second.fingerprint_sha256
        assert read_some(viewer, 200_000) >= 200_000  # the play under the first goes on
        viewer.close()
    finally:
        publisher.stop()
    # The keys went from the database to the node: none of it is in any log line.
    assert caplog.records and not any(line in caplog.text for line in key_lines(first) + key_lines(second))


def test_https_switched_off_or_a_removed_certificate_is_refused_at_the_next_handshake(owner, domains, node, tmp_path):
    ca = TestCa(tmp_path)
    upload(owner, ca.issue([PLAY]))
    port = node.node.https_port
    assert served_certificate(port, PLAY, ca)[0]
    assert client_for(owner).patch(domain_url(PLAY), {"https_enabled": False}, format="json").status_code == 200
    fingerprint, output = served_certificate(port, PLAY, ca)
    assert fingerprint == "" and "alert number 112" in output
    assert client_for(owner).patch(domain_url(PLAY), {"https_enabled": True}, format="json").status_code == 200
    assert served_certificate(port, PLAY, ca)[0]
    assert client_for(owner).delete(domain_url(PLAY, "certificate")).status_code == 204
    assert served_certificate(port, PLAY, ca)[0] == ""


def test_a_domain_forcing_https_sends_plain_requests_there(owner, domains, node, tmp_path):
    upload(owner, TestCa(tmp_path).issue([PLAY]))
    body = {"https_redirect": "https"}
    assert client_for(owner).patch(domain_url(PLAY), body, format="json").status_code == 200
    with socket.create_connection(("127.0.0.1", node.node.http_port), timeout=15) as sock:
        sock.sendall(f"GET /live/cam1.m3u8?a=1 HTTP/1.1\r\nHost: {PLAY}\r\n\r\n".encode())
        deadline, head = time.monotonic() + 15, b""
        while b"\r\n\r\n" not in head and time.monotonic() < deadline:
            head += sock.recv(4096)
    assert head.startswith(b"HTTP/1.1 301 "), head
    assert f"Location: https://{PLAY}:{node.node.https_port}/live/cam1.m3u8?a=1\r\n".encode() in head
