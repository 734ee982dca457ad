"""The FastAPI application: thin routes over the services, one error shape, explicit limits."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from tillit import __version__
from tillit.access import idempotency
from tillit.access.keys import KeyCache
from tillit.api import errors
from tillit.api.limits import BodyLimit
from tillit.api.observability import Observability
from tillit.api.routes import catalog, engine, merchants, operator, reconciliation, sales, till
from tillit.api.routes import fulfilment as fulfilment_routes
from tillit.api.routes import monitoring as monitoring_routes
from tillit.api.routes import settlement as settlement_routes  # settle12
from tillit.api.routes import station as till_station  # issue 17: tile images, store till rules
from tillit.api.routes import webhooks as webhook_routes
from tillit.backoffice.app import create_backoffice_app
from tillit.backoffice.pages import products as products_page
from tillit.backoffice.web import BASE as BACKOFFICE_PATH
from tillit.bootstrap import Container
from tillit.customer import order_page
from tillit.customer import receipt as customer_receipt
from tillit.customer import unsubscribe as customer_unsubscribe
from tillit.domain.tillrules import SYNC_MAX_BYTES
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
        if container.settings.is_sqlite:
            # SQLite is served by one API process (`tillit serve` refuses more): keys still held by any
            # earlier boot belong to a process that is gone, so a resend is answered at once.
            with container.db.transaction() as conn:
                idempotency.free_gone_holders(conn, container.deps.holder, container.deps.clock.now())
        renewer = idempotency.LeaseRenewer(container.db, container.deps, container.settings.key_lease_s / 4)
        renewer.start()
        worker = None
        if run_worker and container.engine is not None:
            worker = Worker(
                container.db,
                container.deps,
                container.engine,
                container.settings.worker_poll_s,
                outbox=container.outbox,
                threads=container.settings.worker_threads,
            )
            worker.start()
        try:
            yield
        finally:
            if worker is not None:
                worker.stop()
            renewer.stop()

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
    app.include_router(settlement_routes.router)  # settle12
    # monitoring: analytics, channel health, alerts, and /metrics for Prometheus
    app.include_router(monitoring_routes.router)
    app.include_router(monitoring_routes.metrics_router)
    app.include_router(merchants.router)  # merchants area (issue 12)
    # The back office (backoffice/): server-rendered pages with their own sign-in, outside the OpenAPI.
    app.mount(BACKOFFICE_PATH, create_backoffice_app(container, app.state.key_cache))
    app.include_router(fulfilment_routes.router)  # fulfilment (docs/fulfilment.md)
    app.include_router(order_page.build_router(container))  # the customer's order page, /c/{token}
    app.include_router(customer_receipt.router)  # notify14: e-receipt page and PDF (signed links)
    app.include_router(customer_unsubscribe.router)  # the unsubscribe link in customer e-mail (issue 14)
    app.include_router(till_station.router)  # issue 17
    app.include_router(webhook_routes.router)  # merchants' own webhook endpoints (issue 14)

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
            settlement_routes.STATEMENT_PATH: settlement_routes.STATEMENT_MAX_BYTES,  # settle12
            products_page.IMPORT_PATH: products_page.IMPORT_MAX_BYTES,  # the back office's CSV import
            merchants.UPLOAD_PATH: merchants.UPLOAD_MAX_BYTES,  # merchants: qualification documents
            till.SYNC_PATH: SYNC_MAX_BYTES,  # a till's journal batch (domain/tillrules.py)
        },
        prefix_overrides={order_page.PREFIX: order_page.BODY_LIMIT},  # the customer's dispute photo
    )
    # monitoring: outermost, so every answer (even a refused body) carries a request id and is counted.
    if getattr(container.settings, "metrics_enabled", True):  # settings stand-ins may lack the field
        app.add_middleware(Observability)
    return app
