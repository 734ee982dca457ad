"""The ASGI middleware that makes every request observable: a request id (the caller's ``X-Request-Id``
when it is a short safe token, else a fresh one) bound into the log context for the request's life and
returned in the response header, and the request counted and timed by route *template* (``/v1/orders/
{order_id}``, never the raw path, so ids do not explode the metric's labels)."""

from __future__ import annotations

import time
from typing import Any

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tillit.monitoring import metrics
from tillit.monitoring.logs import REQUEST_ID_HEADER, request_id_from

_HEADER = REQUEST_ID_HEADER.lower().encode()
UNMATCHED = "<unmatched>"


class Observability:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v for k, v in scope.get("headers", ()) if k == _HEADER), b"")
        request_id = request_id_from(given.decode("latin-1") if given else None)
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = list(message.get("headers", ()))
                headers.append((_HEADER, request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        started = time.perf_counter()
        # Each request runs in its own task (its own copy of the context); the token puts it back.
        tokens = structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            structlog.contextvars.reset_contextvars(**tokens)
            route: Any = scope.get("route")
            template = getattr(route, "path", None) or UNMATCHED
            metrics.observe(scope.get("method", ""), template, status, time.perf_counter() - started)
