"""The one HTTP plumbing both provider adapters share.

Every call has an explicit connect and read timeout and an explicit cap on the answer size, and
never raises for transport trouble: it returns a :class:`Reply` whose ``error`` names what went
wrong (``TIMEOUT``, ``CONNECT_ERROR``, ``NETWORK_ERROR``, ``HTTP_<status>``, ``RESPONSE_TOO_LARGE``).
The adapters turn those into UNKNOWN (or ERROR for queries), never FAILED (providers.md §0 rule 1).

Nothing here logs request or response bodies: they carry payment codes and signatures.
"""

from __future__ import annotations

import socket
import ssl
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import structlog

log = structlog.get_logger("tillit.providers")

#: Largest API answer we read (WeChat XML / Alipay JSON are a few KB).
MAX_API_BYTES = 1024 * 1024
#: Largest bill we read (a busy store's daily bill is a few MB; this is far above it).
MAX_BILL_BYTES = 256 * 1024 * 1024

DEFAULT_CONNECT_TIMEOUT_S = 3.0
DEFAULT_READ_TIMEOUT_S = 10.0


class BillDownloadError(RuntimeError):
    """A bill could not be fetched or verified (not the same as "no bill for that day").

    ``code`` is the transport code or the provider's error code.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class StatementNotReady(BillDownloadError):
    """The provider has not generated the day's statement yet (WeChat ``BILL_CREATING``; Alipay's
    ``isp.bill_not_exist`` before the file exists): try again later, it is not a failure."""


def gunzip_bounded(data: bytes, limit: int = MAX_BILL_BYTES) -> bytes:
    """``data`` gunzipped, refusing an expansion beyond ``limit`` bytes (a gzip bomb) or a broken file."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, limit + 1)
    except zlib.error as exc:
        raise BillDownloadError("BAD_GZIP", "the statement is not valid gzip") from exc
    if len(out) > limit or inflater.unconsumed_tail:
        raise BillDownloadError("RESPONSE_TOO_LARGE", "the statement expands beyond the size limit")
    if not inflater.eof:
        raise BillDownloadError("BAD_GZIP", "the gzip statement is cut short")
    return out


@dataclass(frozen=True, slots=True)
class Reply:
    """What came back: an HTTP status and body, or an ``error`` code when nothing usable did."""

    status: int | None
    body: bytes
    error: str | None
    latency_ms: int
    headers: Mapping[str, str] | None = None  # the response's headers (lower-case names), when any

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True, slots=True)
class StatementFile:
    """A downloaded statement with the digest the provider gave for it (WeChat: SHA-1 of the
    uncompressed file, v2 ``Digest: SHA=`` header / v3 ``hash_type`` + ``hash_value``, operations.md
    §1.1); ``hash_value`` is None when the provider gave none. The import checks it."""

    data: bytes
    hash_type: str | None = None
    hash_value: str | None = None


def timeout(read_s: float, connect_s: float) -> httpx.Timeout:
    """Read/write/pool timeouts of ``read_s`` and a separate connect timeout."""
    if read_s <= 0 or connect_s <= 0:
        raise ValueError("timeouts must be positive")
    return httpx.Timeout(read_s, connect=connect_s)


def make_client(
    *,
    read_s: float = DEFAULT_READ_TIMEOUT_S,
    connect_s: float = DEFAULT_CONNECT_TIMEOUT_S,
    cert_file: str | None = None,
    key_file: str | None = None,
) -> httpx.Client:
    """An ``httpx.Client`` with explicit timeouts, TLS verification on and no redirects.

    ``cert_file``/``key_file`` present a client certificate (WeChat's ``/secapi/`` calls need the
    merchant API certificate: mutual TLS, providers.md §1.1).
    """
    verify: ssl.SSLContext | bool = True
    if cert_file:
        context = ssl.create_default_context()
        context.load_cert_chain(cert_file, key_file)
        verify = context
    # TCP_NODELAY: a request is a header write plus a body write; without it Nagle's algorithm and
    # the peer's delayed ACK can add ~40 ms to every call.
    transport = httpx.HTTPTransport(
        verify=verify, socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
    )
    return httpx.Client(transport=transport, timeout=timeout(read_s, connect_s), follow_redirects=False)


def send(
    client: httpx.Client,
    method: str,
    url: str,
    *,
    read_s: float,
    connect_s: float,
    max_bytes: int = MAX_API_BYTES,
    content: bytes | None = None,
    params: Mapping[str, str] | None = None,
    data: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    follow_redirects: bool = False,
) -> Reply:
    """One HTTP exchange; never raises for transport trouble.

    A non-2xx status is an error (``HTTP_<status>``): neither provider answers business results
    with one, so such an answer says nothing about the payment.
    """
    started = time.monotonic()

    def elapsed() -> int:
        return int((time.monotonic() - started) * 1000)

    kwargs: dict[str, Any] = {
        "timeout": timeout(read_s, connect_s),
        "follow_redirects": follow_redirects,
    }
    if content is not None:
        kwargs["content"] = content
    if params is not None:
        kwargs["params"] = dict(params)
    if data is not None:
        kwargs["data"] = dict(data)
    if headers is not None:
        kwargs["headers"] = dict(headers)
    try:
        with client.stream(method, url, **kwargs) as response:
            chunks: list[bytes] = []
            size = 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > max_bytes:
                    return Reply(response.status_code, b"", "RESPONSE_TOO_LARGE", elapsed())
                chunks.append(chunk)
            body = b"".join(chunks)
            status = response.status_code
            received = {k.lower(): v for k, v in response.headers.items()}
    except httpx.TimeoutException:
        return Reply(None, b"", "TIMEOUT", elapsed())
    except httpx.ConnectError:
        return Reply(None, b"", "CONNECT_ERROR", elapsed())
    except (httpx.HTTPError, httpx.InvalidURL, OSError):
        return Reply(None, b"", "NETWORK_ERROR", elapsed())
    if not 200 <= status < 300:
        return Reply(status, body, f"HTTP_{status}", elapsed(), received)
    return Reply(status, body, None, elapsed(), received)


def log_call(
    provider: str,
    method: str,
    started: float,
    outcome: str,
    code: str | None,
    *,
    out_trade_no: str | None = None,
    out_refund_no: str | None = None,
) -> None:
    """One log line per provider call, timed from ``started`` (time.monotonic()): never secrets, payment
    codes or bodies."""
    fields: dict[str, Any] = {
        "provider": provider,
        "method": method,
        "outcome": outcome,
        "code": code,
        "latency_ms": int((time.monotonic() - started) * 1000),
    }
    if out_trade_no is not None:
        fields["out_trade_no"] = out_trade_no
    if out_refund_no is not None:
        fields["out_refund_no"] = out_refund_no
    log.info("provider_call", **fields)
