"""The till's HTTP client for the Tillit server: explicit timeouts, no retries of its own (the outbox
retries with the same Idempotency-Key), and one exception for "the link is down"."""

from __future__ import annotations

from typing import Any

import httpx

CONNECT_TIMEOUT_S = 2.0
READ_TIMEOUT_S = 15.0  # a provider payment answers within the server's provider timeout


class LinkDown(Exception):
    """The server could not be reached, or did not answer. ``sent`` is False when the request certainly
    never reached it (no connection could be made); otherwise its outcome is unknown."""

    def __init__(self, message: str, sent: bool = True) -> None:
        super().__init__(message)
        self.sent = sent


class ServerClient:
    def __init__(self, base_url: str, key: str, transport: httpx.BaseTransport | None = None) -> None:
        self.http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {key}"},
            timeout=httpx.Timeout(READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S),
            transport=transport,
        )

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        key: str | None = None,
        params: dict[str, Any] | None = None,
        content: bytes | None = None,
    ) -> httpx.Response:
        """``json`` is encoded by the client; ``content`` is a body already encoded as JSON."""
        headers = {"Idempotency-Key": key} if key else {}
        if content is not None:
            headers["Content-Type"] = "application/json"
        try:
            response = self.http.request(
                method, path, json=json, content=content, headers=headers, params=params
            )
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise LinkDown(type(exc).__name__, sent=False) from exc
        except httpx.HTTPError as exc:
            raise LinkDown(type(exc).__name__) from exc
        if response.status_code >= 500:
            raise LinkDown(f"server error {response.status_code}")
        return response

    def close(self) -> None:
        self.http.close()
