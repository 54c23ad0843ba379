"""Callback signatures and the addresses callbacks may reach (livecenter/media/webhooks.py),
and the client's limits (webhook_client.py) against real loopback servers."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import socket
import threading

import pytest

from livecenter.media import webhooks
from livecenter.media.webhook_client import WebhookError, WebhookRefused, post
from livecenter.media.webhooks import AddressRule, CallbackUrlError, parse_callback_url, reason_text
from tests.callbacksupport import Receiver

SECRET = "s3cret-s3cret-s3cret"
BODY = b'{"event":"stream.published"}'
LOOPBACK = AddressRule(allow_private=True, own_ports=frozenset({8000, 1935}))


def test_it_signs_the_timestamp_and_body_with_hmac_sha256():
    expected = hmac.new(SECRET.encode(), b"1767225600." + BODY, hashlib.sha256).hexdigest()
    assert webhooks.signature(SECRET, 1767225600, BODY) == f"sha256={expected}"


def test_it_verifies_a_signature_and_refuses_a_replay_or_a_changed_body():
    headers = webhooks.signed_headers(SECRET, 1000, BODY, "stream.published", "abc")
    assert headers["X-LiveCenter-Delivery"] == "abc" and headers["X-LiveCenter-Event"] == "stream.published"
    assert webhooks.verify(SECRET, headers, BODY, now=1100)
    assert not webhooks.verify(SECRET, headers, BODY, now=1000 + 301)  # too old: a replay
    assert not webhooks.verify(SECRET, headers, BODY + b" ", now=1100)
    assert not webhooks.verify("another-secret-here", headers, BODY, now=1100)
    assert not webhooks.verify(SECRET, {**headers, "X-LiveCenter-Timestamp": "x"}, BODY, now=1100)


@pytest.mark.parametrize(
    ("address", "port", "rule", "words"),
    [
        ("169.254.169.254", 80, LOOPBACK, "link-local"),
        ("fe80::1", 80, LOOPBACK, "link-local"),
        ("::ffff:169.254.169.254", 80, LOOPBACK, "link-local"),
        ("0.0.0.0", 80, LOOPBACK, "not a host address"),
        ("224.0.0.1", 80, LOOPBACK, "not a host address"),
        ("127.0.0.1", 8000, LOOPBACK, "own port 8000"),
        ("127.0.0.1", 9999, AddressRule(), "loopback or private"),
        ("10.1.2.3", 443, AddressRule(), "loopback or private"),
        (
            "10.1.2.3",
            1935,
            AddressRule(allow_private=True, own_ports=frozenset({1935}), own_hosts=frozenset({"10.1.2.3"})),
            "own port",
        ),  # noqa: E501
    ],
)
def test_it_refuses_addresses_a_callback_may_not_reach(address, port, rule, words):
    assert words in rule.refusal(address, port)


@pytest.mark.parametrize(
    ("address", "port", "rule"),
    [("93.184.215.14", 443, AddressRule()), ("127.0.0.1", 9999, LOOPBACK), ("10.1.2.3", 8000, LOOPBACK)],
)
def test_it_admits_other_addresses(address, port, rule):
    assert rule.refusal(address, port) is None


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("ftp://example.com/x", "must start with http:// or https://"),
        ("example.com/hook", "must start with http:// or https://"),
        ("http:///hook", "must name a host"),
        ("http://user:pw@example.com/", "user name or password"),
        ("http://example.com/a b", "spaces"),
        ("http://example.com:99999/", "not a URL"),
        ("https://example.com/" + "a" * webhooks.MAX_URL_CHARS, "at most"),
    ],
)
def test_it_refuses_a_bad_callback_url(url, words):
    with pytest.raises(CallbackUrlError, match=words):
        parse_callback_url(url)


def test_it_reads_a_callback_url():
    target = parse_callback_url("https://Hooks.Example.com/live?x=1")
    assert (target.scheme, target.host, target.port, target.target) == ("https", "hooks.example.com", 443, "/live?x=1")
    assert target.host_header == "hooks.example.com"
    assert parse_callback_url("http://[::1]:8081").host_header == "[::1]:8081"


def test_it_makes_a_reason_of_a_body():
    assert reason_text(b"  not on the\r\nguest list\x00 ") == "not on the guest list"
    assert len(reason_text(b"x" * 10_000)) == webhooks.MAX_REASON_CHARS


def test_it_posts_and_reads_the_answer():
    with Receiver(lambda r, n: (403, "no thanks")) as receiver:
        response = asyncio.run(post(receiver.url, BODY, {"X-A": "1"}, timeout_seconds=10, rule=LOOPBACK))
    assert (response.status, response.body, response.ok) == (403, b"no thanks", False)
    assert receiver.requests[0].body == BODY and receiver.requests[0].headers["X-A"] == "1"


def test_it_refuses_a_name_that_resolves_to_loopback_without_the_setting():
    with Receiver() as receiver:
        port = receiver.server.server_address[1]
        with pytest.raises(WebhookRefused, match="127.0.0.1, a loopback or private address"):
            asyncio.run(post(f"http://localhost:{port}/", BODY, {}, timeout_seconds=10, rule=AddressRule()))
    assert receiver.requests == []


def silent_server(answer: bytes | None):
    """A TCP server that reads the request and sends `answer` (None: nothing, ever)."""
    server = socket.create_server(("127.0.0.1", 0))

    def serve():
        conn, _ = server.accept()
        conn.recv(65536)
        if answer is not None:
            conn.sendall(answer)
            conn.close()
        else:
            threading.Event().wait(5)
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    return server, f"http://127.0.0.1:{server.getsockname()[1]}/"


def test_it_gives_up_at_the_timeout():
    server, url = silent_server(None)
    with server, pytest.raises(WebhookError, match="no answer within 0.5 s"):
        asyncio.run(post(url, BODY, {}, timeout_seconds=0.5, rule=LOOPBACK))


def test_it_reads_at_most_the_body_cap():
    size = webhooks.MAX_RESPONSE_BODY_BYTES + 1
    server, url = silent_server(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size + b"x" * size)
    with server:
        response = asyncio.run(post(url, BODY, {}, timeout_seconds=10, rule=LOOPBACK))
    assert response.status == 200 and len(response.body) == webhooks.MAX_RESPONSE_BODY_BYTES


def test_it_refuses_headers_past_their_cap():
    head = b"HTTP/1.1 200 OK\r\nX-Big: " + b"x" * webhooks.MAX_RESPONSE_HEADER_BYTES + b"\r\n\r\n"
    server, url = silent_server(head)
    with server, pytest.raises(WebhookError, match="response headers longer than"):
        asyncio.run(post(url, BODY, {}, timeout_seconds=10, rule=LOOPBACK))


def test_it_does_not_follow_a_redirect():
    server, url = silent_server(b"HTTP/1.1 302 Found\r\nLocation: http://169.254.169.254/\r\nContent-Length: 0\r\n\r\n")
    with server:
        response = asyncio.run(post(url, BODY, {}, timeout_seconds=10, rule=LOOPBACK))
    assert response.status == 302 and not response.ok
