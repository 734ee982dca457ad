"""The sandbox ASGI app factory."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import secrets
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from tillit.sandbox import alipay, control, onboarding, page, statements, wechat
from tillit.sandbox.clock import SandboxClock, from_ms, to_ms
from tillit.sandbox.config import SandboxConfig
from tillit.sandbox.engine import ControlError, Engine
from tillit.sandbox.faults import FAULTS_META, restored
from tillit.sandbox.notify import Notifier
from tillit.sandbox.runtime import Runtime, Sleep
from tillit.sandbox.store import Store, set_meta

log = logging.getLogger(__name__)

STATE_FILE = "sandbox.sqlite"
CLOCK_ANCHOR_META = "clock_anchor"


def running_clock(store: Store, speed: float, wall: Callable[[], float] = time.time) -> SandboxClock:
    """The clock of a sandbox that runs on real time: provider time keeps running while it is down.

    The first boot of a state directory records an anchor (its sandbox time, the wall time and the
    speed); a later boot at the same speed continues from it, so a killed and restarted sandbox is as far
    ahead as if it had never stopped — like a real provider, whose clock does not stop when one of its
    servers does — and a client anchored on the sandbox's time (``tillit chaos``) stays in step with it.
    A changed speed starts a new anchor; the store's high-water mark still keeps time from going back.
    """
    saved = store.get_meta(CLOCK_ANCHOR_META)
    now_wall = wall()
    if saved is not None:
        anchor = json.loads(saved)
        if float(anchor["speed"]) == speed:
            elapsed = max(0.0, now_wall - float(anchor["wall"])) * speed
            start = from_ms(int(anchor["start_ms"])) + timedelta(seconds=elapsed)
            return SandboxClock(start=start, speed=speed)
    start = datetime.now(UTC)
    anchor = {"start_ms": to_ms(start), "wall": now_wall, "speed": speed}
    with store.tx() as conn:
        set_meta(conn, CLOCK_ANCHOR_META, json.dumps(anchor))
    return SandboxClock(start=start, speed=speed)


def create_app(
    config: SandboxConfig,
    state_dir: Path,
    clock: SandboxClock | None = None,
    seed: int | None = None,
    *,
    notify_transport: httpx.AsyncBaseTransport | None = None,
    sleep: Sleep | None = None,
    tick_interval: float = 0.2,
) -> FastAPI:
    """Build a sandbox app whose durable state lives in ``state_dir/sandbox.sqlite``.

    ``clock`` defaults to real time at ``behaviour.clock_speed``; pass ``SandboxClock(speed=0)`` for
    a clock only the control API moves. ``seed`` fixes the fault sequence (default: the config's
    seed, else random). ``notify_transport`` and ``sleep`` let tests capture notifications and
    skip real latency. While the app runs (ASGI lifespan), a background task applies timeouts and
    delivers due notifications every ``tick_interval`` real seconds.
    """
    store = Store(Path(state_dir) / STATE_FILE)
    clock = clock or running_clock(store, config.behaviour.clock_speed)
    if seed is None:
        seed = config.behaviour.seed if config.behaviour.seed is not None else secrets.randbits(32)
    with store.tx() as conn:
        boots = int(store.get_meta("boots") or 0) + 1
        set_meta(conn, "boots", str(boots))
    # Ids and codes get their own RNG, keyed on the boot count so a restart never replays them.
    engine = Engine(store, config, clock, random.Random(f"ids:{seed}:{boots}"))
    # The last fault profile set through the control API survives a restart (docs/sandbox.md).
    rt = Runtime(config, engine, restored(store.get_meta(FAULTS_META), seed), sleep or asyncio.sleep)
    notifier = Notifier(rt, notify_transport)

    async def ticker() -> None:
        while True:
            await asyncio.sleep(tick_interval)
            try:
                engine.tick()
                await notifier.run_due()
            except Exception:  # keep ticking: one bad notification must not stop the sandbox
                log.exception("sandbox tick failed")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(ticker())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    app = FastAPI(
        title="Tillit payment sandbox",
        description="Fault-injecting WeChat Pay v2 and Alipay emulator. Control API under /sandbox/.",
        lifespan=lifespan,
    )
    app.state.sandbox = rt
    app.state.notifier = notifier
    app.state.store = store
    # 进件 applications and the sub-merchants they issued survive a restart (docs/sandbox.md).
    app.state.onboarding = onboarding.restored(store.get_meta(onboarding.ONBOARDING_META))

    @app.exception_handler(ControlError)
    async def control_error(request: Request, exc: ControlError) -> JSONResponse:
        return control.control_error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return control.control_error_response(
            ControlError(422, "invalid_request", "request does not validate", {"errors": str(exc.errors())})
        )

    app.include_router(wechat.router)
    app.include_router(alipay.router)
    app.include_router(page.router)
    app.include_router(control.router)
    app.include_router(statements.router)  # settle12: settlement faults
    app.include_router(statements.account_router)  # settle12: Alipay account-statement files
    app.include_router(onboarding.router)  # merchants area (issue 12): 进件 emulation
    return app
