"""Pure ASGI middleware enforcing the request body limit before any handler reads the body."""

from __future__ import annotations

import json
from typing import Any

Scope = dict[str, Any]

#: After a 413, at most this much more of an over-limit body is read and dropped before answering.
DRAIN_MAX_BYTES = 1024 * 1024


class BodyLimit:
    """``max_bytes`` for every request, except the paths in ``overrides`` (path -> bytes): routes that
    take files (bill uploads) declare their own, larger, limit explicitly."""

    def __init__(
        self,
        app: Any,
        max_bytes: int,
        overrides: dict[str, int] | None = None,
        prefix_overrides: dict[str, int] | None = None,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.overrides = dict(overrides or {})
        # path prefix -> bytes, for routes with a path parameter (the customer page's photo upload)
        self.prefix_overrides = dict(prefix_overrides or {})

    def _limit(self, path: str) -> int:
        if path in self.overrides:
            return self.overrides[path]
        for prefix, limit in self.prefix_overrides.items():
            if path.startswith(prefix):
                return limit
        return self.max_bytes

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self._limit(scope.get("path", ""))
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    too_big = int(value) > limit
                except ValueError:
                    too_big = True
                if too_big:
                    await self._reject(send, limit)
                    return
        # A body without Content-Length (chunked) is counted as it arrives. Crossing the limit raises
        # inside the app's receive; the app may catch that (FastAPI turns any error while reading a JSON
        # body into 400), so the flag, not the exception, decides: once set, whatever the app answers is
        # dropped and the one 413 below is sent instead.
        received = 0
        exceeded = False
        app_started = False
        body_done = False

        async def limited_receive() -> Any:
            nonlocal received, exceeded, body_done
            if exceeded:
                raise _TooLarge()
            message = await receive()
            if message["type"] == "http.request":
                body_done = not message.get("more_body", False)
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    raise _TooLarge()
            return message

        async def guarded_send(message: Any) -> None:
            nonlocal app_started
            if exceeded and not app_started:
                return
            if message["type"] == "http.response.start":
                app_started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not exceeded or app_started:
                raise
        if exceeded and not app_started:
            if not body_done:
                await self._drain(receive)
            await self._reject(send, limit)

    async def _drain(self, receive: Any) -> None:
        """Read (and drop) what the client is still sending, up to ``DRAIN_MAX_BYTES``, so that closing
        the connection after the 413 does not reset it before the client has read the answer."""
        drained = 0
        while drained <= DRAIN_MAX_BYTES:
            message = await receive()
            if message["type"] != "http.request":
                return
            drained += len(message.get("body", b""))
            if not message.get("more_body", False):
                return

    async def _reject(self, send: Any, limit: int) -> None:
        body = json.dumps(
            {
                "error": {
                    "code": "body_too_large",
                    "message": f"Request bodies are limited to {limit} bytes.",
                    "details": {"max_bytes": limit},
                }
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass
