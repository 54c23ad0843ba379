"""A small HTTP/1.1 client for callbacks (webhooks.py): one POST, one
connection, bounded in time and size, to an address checked after DNS.

No library of requirements.txt does this on asyncio (aiohttp and httpx are
not dependencies), and a callback needs only this: resolve the name, refuse
the addresses AddressRule refuses (every address the name has, so a second
A record cannot slip past), connect to the address that was checked (not the
name again: DNS rebinding), send the body, read the status line, headers
and a capped body. Redirects are not followed: a 3xx is the answer. The
publish hook awaits it on the node's loop; the Celery delivery runs it with
asyncio.run in a worker thread.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from dataclasses import dataclass

from .webhooks import (
    MAX_RESPONSE_BODY_BYTES,
    MAX_RESPONSE_HEADER_BYTES,
    AddressRule,
    CallbackUrlError,
    parse_callback_url,
)


class WebhookError(Exception):
    """The call did not get an HTTP answer: refused address, DNS, connect,
    TLS, timeout, a malformed or oversized answer. The message says which."""


class WebhookRefused(WebhookError):
    """The URL or its address is one the product does not call (never retried
    into success: fix the URL or the setting)."""


@dataclass(frozen=True, slots=True)
class WebhookResponse:
    status: int
    body: bytes  # at most MAX_RESPONSE_BODY_BYTES
    latency_ms: float

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


async def resolve(host: str, port: int, rule: AddressRule) -> list[str]:
    """The addresses to connect to, in the resolver's order, once all pass `rule`."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise WebhookError(f"cannot resolve {host}: {exc.strerror or exc}") from None
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    if not addresses:
        raise WebhookError(f"{host} has no address")
    refusal = rule.first_refusal(addresses, port)
    if refusal:
        raise WebhookRefused(refusal)
    return addresses


def _request(target, body: bytes, headers: dict[str, str]) -> bytes:
    lines = [f"POST {target.target} HTTP/1.1", f"Host: {target.host_header}", "User-Agent: LiveCenter-Callbacks/1",
             f"Content-Length: {len(body)}", "Connection: close"]  # fmt: skip
    for name, value in headers.items():
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
            raise WebhookError(f"header {name} has a line break")
        lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError:
        raise WebhookError(f"response headers longer than {MAX_RESPONSE_HEADER_BYTES} bytes") from None
    except asyncio.IncompleteReadError:
        raise WebhookError("connection closed before a complete response") from None
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit() or len(parts[1]) != 3:
        raise WebhookError(f"not an HTTP response: {status_line[:80]!r}")
    status = int(parts[1])
    fields = {}
    for line in header_lines:
        name, sep, value = line.partition(":")
        if sep:
            fields[name.strip().lower()] = value.strip()
    if fields.get("transfer-encoding", "").lower() == "chunked":
        body = await _read_chunked(reader)
    else:
        length = fields.get("content-length", "")
        if length.isdigit():
            try:
                body = await reader.readexactly(min(int(length), MAX_RESPONSE_BODY_BYTES))
            except asyncio.IncompleteReadError as exc:
                body = exc.partial
        else:  # to the close, capped
            body = b""
            while len(body) < MAX_RESPONSE_BODY_BYTES:
                more = await reader.read(MAX_RESPONSE_BODY_BYTES - len(body))
                if not more:
                    break
                body += more
    return status, body[:MAX_RESPONSE_BODY_BYTES]


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    body = b""
    while len(body) < MAX_RESPONSE_BODY_BYTES:
        try:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
        except (asyncio.LimitOverrunError, asyncio.IncompleteReadError, ValueError):
            break  # the status is what counts; a broken body is cut where it broke
        if size == 0:
            break
        try:
            chunk = await reader.readexactly(min(size, MAX_RESPONSE_BODY_BYTES - len(body)))
        except asyncio.IncompleteReadError as exc:
            body += exc.partial
            break
        body += chunk
        if len(chunk) < size:
            break
        await reader.readexactly(2)
    return body


async def _post(url: str, body: bytes, headers: dict[str, str], rule: AddressRule) -> tuple[int, bytes]:
    try:
        target = parse_callback_url(url)
    except CallbackUrlError as exc:
        raise WebhookRefused(f"callback URL {exc}") from None
    tls = ssl.create_default_context() if target.scheme == "https" else None
    failures = []
    for address in await resolve(target.host, target.port, rule):
        try:
            reader, writer = await asyncio.open_connection(
                address, target.port, ssl=tls, server_hostname=target.host if tls else None,
                limit=MAX_RESPONSE_HEADER_BYTES,
            )  # fmt: skip
            break
        except ssl.SSLError as exc:
            raise WebhookError(f"TLS with {target.host} failed: {exc.reason or exc}") from None
        except OSError as exc:
            failures.append(f"{address} port {target.port}: {exc.strerror or exc}")
    else:
        raise WebhookError(f"cannot connect to {'; '.join(failures)}")
    try:
        writer.write(_request(target, body, headers))
        await writer.drain()
        return await _read_response(reader)
    except (ConnectionError, ssl.SSLError) as exc:
        raise WebhookError(f"connection to {target.host} lost: {exc}") from None
    finally:
        writer.close()


async def post(
    url: str, body: bytes, headers: dict[str, str], *, timeout_seconds: float, rule: AddressRule
) -> WebhookResponse:
    """POST `body` to `url`: the answer, or WebhookError (WebhookRefused for
    an address the product does not call). The whole call, DNS included,
    has `timeout_seconds`."""
    started = time.monotonic()
    try:
        status, answer = await asyncio.wait_for(_post(url, body, headers, rule), timeout_seconds)
    except TimeoutError:
        raise WebhookError(f"no answer within {timeout_seconds:g} s") from None
    return WebhookResponse(status, answer, (time.monotonic() - started) * 1000)
