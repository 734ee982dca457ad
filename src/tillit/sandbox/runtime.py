"""The objects one running sandbox shares between its routers and background task."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from urllib.parse import parse_qsl

from fastapi import Request

from tillit.sandbox.config import SandboxConfig
from tillit.sandbox.engine import Engine
from tillit.sandbox.faults import Decision, FaultInjector

Sleep = Callable[[float], Awaitable[None]]


@dataclass
class Runtime:
    """Config, engine, fault injector and the (injectable) real-time sleep for latency faults."""

    config: SandboxConfig
    engine: Engine
    faults: FaultInjector
    sleep: Sleep = asyncio.sleep

    async def delay(self, decision: Decision) -> None:
        """Apply latency/hang faults. These are real seconds: they exist to trip client timeouts."""
        profile = self.faults.profile
        if decision.latency:
            await self.sleep(profile.latency_ms / 1000)
        if decision.hang:
            await self.sleep(profile.hang_seconds)

    def bill_window(self, bill_date: date) -> tuple[datetime, datetime, datetime]:
        """Start and end of the bill day (China time) and the moment its bill becomes ready."""
        start = datetime(bill_date.year, bill_date.month, bill_date.day, tzinfo=self.engine.now().tzinfo)
        end = start + timedelta(days=1)
        ready = end + timedelta(seconds=self.config.behaviour.bill_ready_after_seconds)
        return start, end, ready


def runtime(request: Request) -> Runtime:
    """The runtime of the app serving ``request``."""
    rt: Runtime = request.app.state.sandbox
    return rt


async def form_fields(request: Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body as a dict (UTF-8; the last value wins).

    Parsed by hand so the sandbox needs no multipart library; other content types give ``{}``.
    """
    content_type = request.headers.get("content-type", "")
    if "application/x-www-form-urlencoded" not in content_type:
        return {}
    body = await request.body()
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return {}
    return dict(parse_qsl(text, keep_blank_values=True))
