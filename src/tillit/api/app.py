"""The FastAPI application: thin routes over the services, one error shape, explicit limits."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from tillit import __version__
from tillit.access.keys import KeyCache
from tillit.api import errors
from tillit.api.limits import BodyLimit
from tillit.api.routes import catalog, engine, merchants, operator, reconciliation, sales, till
from tillit.backoffice.app import create_backoffice_app
from tillit.backoffice.web import BASE as BACKOFFICE_PATH
from tillit.bootstrap import Container
from tillit.worker import Worker

DESCRIPTION = """Tillit's REST API. Amounts are integers of minor units (fen for CNY). Every POST that creates
something or moves money needs an `Idempotency-Key` header. Errors have one shape:
`{"error": {"code", "message", "details"}}`; the codes are listed in docs/errors.md."""


def create_app(
    container: Container, *, run_worker: bool = False, key_cache: KeyCache | None = None
) -> FastAPI:
    """The API app. With ``run_worker`` the resolver loop runs in a thread for the app's lifetime.

    ``key_cache`` remembers accepted API keys for a few seconds (access/keys.py); tests may pass one
    with their own clock."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        worker = None
        if run_worker and container.engine is not None:
            worker = Worker(container.db, container.deps, container.engine, container.settings.worker_poll_s)
            worker.start()
        try:
            yield
        finally:
            if worker is not None:
                worker.stop()

    app = FastAPI(
        title="Tillit", version=__version__, description=DESCRIPTION, docs_url="/docs", lifespan=lifespan
    )
    app.state.container = container
    app.state.key_cache = key_cache if key_cache is not None else KeyCache()
    errors.install(app)
    app.include_router(operator.router)
    app.include_router(catalog.router)
    app.include_router(sales.router)
    app.include_router(engine.router)
    app.include_router(till.router)
    app.include_router(engine.notify_router)
    app.include_router(reconciliation.router)
    app.include_router(merchants.router)  # merchants area (issue 12)
    # The back office (backoffice/): server-rendered pages with their own sign-in, outside the OpenAPI.
    app.mount(BACKOFFICE_PATH, create_backoffice_app(container, app.state.key_cache))

    @app.get("/healthz", tags=["meta"], summary="Liveness: the process answers (touches no database)")
    def healthz() -> JSONResponse:
        return JSONResponse({"status": "ok", "version": __version__})

    @app.get("/readyz", tags=["meta"], summary="Readiness: the database answers")
    def readyz() -> JSONResponse:
        from sqlalchemy import text

        with container.db.read() as conn:
            conn.execute(text("SELECT 1"))
        return JSONResponse({"status": "ready", "database": container.db.dialect})

    app.add_middleware(
        BodyLimit,
        max_bytes=container.settings.max_body_bytes,
        overrides={
            reconciliation.UPLOAD_PATH: reconciliation.UPLOAD_MAX_BYTES,
            merchants.UPLOAD_PATH: merchants.UPLOAD_MAX_BYTES,
        },
    )
    return app
