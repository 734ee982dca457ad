"""Reconciliation routes: upload a bill, runs and their discrepancies, resolve (audited), export, and
the HTML report. Managers (merchant keys) act on their own merchant; operators read every merchant's."""

from __future__ import annotations

import json
import tempfile
from datetime import date, timedelta
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import Field
from starlette.concurrency import run_in_threadpool

from tillit.api.deps import MANAGER, OVERSEER, IdPath, IdQuery, container, ok
from tillit.api.schemas import ErrorOut, Strict
from tillit.domain.errors import not_found
from tillit.domain.ids import normalise_id
from tillit.kernel.context import Actor
from tillit.reconciliation import daily, formats, match, report, service
from tillit.reconciliation.errors import BillFormatError

router = APIRouter(
    prefix="/v1/reconciliation", tags=["reconciliation"], responses={"4XX": {"model": ErrorOut}}
)

UPLOAD_PATH = "/v1/reconciliation/bills"
#: Bill uploads have their own body limit (the JSON limit is 64 KiB); larger bills: `tillit reconcile`.
UPLOAD_MAX_BYTES = 64 * 1024 * 1024
MAX_MAPPING_CHARS = 4096
CLASS_PATTERN = "^(" + "|".join(match.CLASSES) + ")$"


class DiscrepancyResolve(Strict):
    resolution: Annotated[
        str, Field(min_length=3, max_length=500, description="What was done, for the audit")
    ]


def _scope(who: Actor, merchant_id: str | None) -> str | None:
    """The merchant a read is about: a manager's own (another's is not found); an operator's choice."""
    if who.role == "admin":
        return normalise_id(merchant_id, "merchant_id") if merchant_id else None
    own = who.merchant()
    if merchant_id and normalise_id(merchant_id, "merchant_id") != own:
        raise not_found("merchant", normalise_id(merchant_id, "merchant_id"))
    return own


@router.post(
    "/bills",
    status_code=201,
    summary="Upload a provider bill (raw file body) and reconcile it",
    description=(
        f"The body is the bill file as the provider delivers it (WeChat CSV, Alipay ZIP, or a generic CSV "
        f"with `format=csv` and a JSON `mapping`), at most {UPLOAD_MAX_BYTES} bytes. The same file again "
        "answers 200 with the run it already has and changes nothing (the content hash is the key, so no "
        "Idempotency-Key is needed)."
    ),
)
async def upload_bill(
    request: Request,
    provider: Annotated[str, Query(pattern="^(wechat|alipay)$")],
    who: Actor = MANAGER,
    bill_format: Annotated[str | None, Query(alias="format", pattern="^(wechat|alipay|csv)$")] = None,
    bill_date: date | None = None,
    filename: Annotated[str | None, Query(max_length=200)] = None,
    mapping: Annotated[str | None, Query(max_length=MAX_MAPPING_CHARS)] = None,
) -> JSONResponse:
    merchant_id = who.merchant()
    fmt = bill_format or provider
    name = filename or f"upload.{'zip' if fmt == 'alipay' else 'csv'}"
    parsed_mapping = None
    if fmt == "csv":
        if not mapping:
            raise BillFormatError(
                "bill_mapping_invalid", "format=csv needs a JSON column mapping in `mapping`", file="mapping"
            )
        parsed_mapping = formats.mapping_from_json(mapping, "mapping", MAX_MAPPING_CHARS)
        if parsed_mapping.provider != provider:
            raise BillFormatError(
                "bill_mapping_invalid", "the mapping's provider differs from `provider`", file="mapping"
            )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bill"
        with path.open("wb") as out:
            async for chunk in request.stream():
                out.write(chunk)
        outcome = await run_in_threadpool(
            _import, request, merchant_id, path, fmt, name, parsed_mapping, bill_date, who.label
        )
    body = outcome.bill | {"run": outcome.run, "summary": outcome.as_json()["summary"]}
    return ok(body, 201 if outcome.created else 200)


def _import(
    request: Request,
    merchant_id: str,
    path: Path,
    fmt: str,
    name: str,
    mapping: formats.Mapping | None,
    bill_date: date | None,
    actor: str,
) -> service.Outcome:
    c = container(request)
    con = service.connect()
    try:
        bill = service.parse_bill(con, path, fmt, mapping=mapping, name=name)
        return service.import_bill(
            c.db,
            c.deps,
            merchant_id=merchant_id,
            bill=bill,
            con=con,
            source="upload",
            actor=actor,
            bill_date=bill_date,
        )
    finally:
        con.close()


@router.get("/bills/{bill_id}", summary="An imported bill and its run")
def get_bill(bill_id: IdPath, request: Request, who: Actor = OVERSEER) -> JSONResponse:
    with container(request).db.read() as conn:
        return ok(service.get_bill(conn, who.merchant_id, normalise_id(bill_id)))


@router.get("/runs", summary="Reconciliation runs, newest bill day first")
def list_runs(
    request: Request,
    who: Actor = OVERSEER,
    merchant_id: IdQuery = None,
    provider: Annotated[str | None, Query(pattern="^(wechat|alipay)$")] = None,
    limit: int = Query(50, ge=1, le=200),
) -> JSONResponse:
    scope = _scope(who, merchant_id)
    with container(request).db.read() as conn:
        return ok({"data": service.list_runs(conn, scope, provider=provider, limit=limit)})


@router.get("/runs/{run_id}", summary="A run: counts and amounts by class")
def get_run(run_id: IdPath, request: Request, who: Actor = OVERSEER) -> JSONResponse:
    with container(request).db.read() as conn:
        return ok(service.run_view(conn, service.get_run(conn, who.merchant_id, normalise_id(run_id))))


@router.get("/runs/{run_id}/discrepancies", summary="A run's discrepancies")
def run_discrepancies(
    run_id: IdPath,
    request: Request,
    who: Actor = OVERSEER,
    status: Annotated[str | None, Query(pattern="^(open|resolved)$")] = None,
    cls: Annotated[str | None, Query(alias="class", pattern=CLASS_PATTERN)] = None,
    limit: int = Query(200, ge=1, le=1000),
    offset: int = Query(0, ge=0, le=10**9),  # bounded so SQL OFFSET fits 64 bits (was a 500)
) -> JSONResponse:
    with container(request).db.read() as conn:
        run = service.get_run(conn, who.merchant_id, normalise_id(run_id))
        rows = service.list_discrepancies(
            conn, None, run_id=run.id, status=status, cls=cls, limit=limit, offset=offset
        )
    return ok({"data": rows, "next_offset": offset + limit if len(rows) == limit else None})


@router.get("/runs/{run_id}/export", summary="Export a run's discrepancies as CSV or JSON")
def export_run(
    run_id: IdPath,
    request: Request,
    who: Actor = OVERSEER,
    export_format: Annotated[str, Query(alias="format", pattern="^(csv|json)$")] = "csv",
) -> Response:
    with container(request).db.read() as conn:
        run = service.get_run(conn, who.merchant_id, normalise_id(run_id))
        outcome = service.outcome_for_run(conn, run.id, created=False)
    stem = f"reconciliation_{run.provider}_{run.bill_date.isoformat()}_{run.id}"
    if export_format == "json":
        return Response(
            json.dumps(outcome.as_json(), ensure_ascii=False),
            media_type="application/json",
            headers={"Content-Disposition": f'attachment; filename="{stem}.json"'},
        )
    return Response(
        service.export_csv(outcome.discrepancies),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{stem}.csv"'},
    )


@router.get("/discrepancies", summary="Discrepancies across runs (open ones by default)")
def list_discrepancies(
    request: Request,
    who: Actor = OVERSEER,
    merchant_id: IdQuery = None,
    status: Annotated[str | None, Query(pattern="^(open|resolved)$")] = "open",
    cls: Annotated[str | None, Query(alias="class", pattern=CLASS_PATTERN)] = None,
    limit: int = Query(200, ge=1, le=1000),
) -> JSONResponse:
    scope = _scope(who, merchant_id)
    with container(request).db.read() as conn:
        return ok({"data": service.list_discrepancies(conn, scope, status=status, cls=cls, limit=limit)})


@router.get("/discrepancies/{discrepancy_id}", summary="Read a discrepancy")
def get_discrepancy(discrepancy_id: IdPath, request: Request, who: Actor = OVERSEER) -> JSONResponse:
    with container(request).db.read() as conn:
        row = service.get_discrepancy(conn, who.merchant_id, normalise_id(discrepancy_id))
        return ok(service.discrepancy_view(row))


@router.post("/discrepancies/{discrepancy_id}/resolve", summary="Resolve a discrepancy (audited)")
def resolve_discrepancy(
    discrepancy_id: IdPath, body: DiscrepancyResolve, request: Request, who: Actor = MANAGER
) -> JSONResponse:
    c = container(request)
    with c.db.transaction() as conn:
        return ok(
            service.resolve_discrepancy(
                conn, c.deps, who, normalise_id(discrepancy_id), body.resolution, who.merchant_id
            )
        )


@router.get(
    "/report", summary="The reconciliation report (HTML page with charts)", response_class=HTMLResponse
)
def report_page(
    request: Request,
    who: Actor = OVERSEER,
    merchant_id: IdQuery = None,
    days: int = Query(30, ge=1, le=90),
) -> HTMLResponse:
    c = container(request)
    scope = _scope(who, merchant_id)
    today = c.deps.clock.now().astimezone(formats_china()).date()
    since = today - timedelta(days=days - 1)
    with c.db.read() as conn:
        html = report.render(
            title="Tillit reconciliation" + (f" — merchant {scope}" if scope else " — all merchants"),
            today=today,
            days=days,
            history=service.history(conn, scope, since),
            runs=service.list_runs(conn, scope, limit=60, since=since),
            open_items=service.list_discrepancies(conn, scope, status="open", limit=200),
        )
    return HTMLResponse(html)


def formats_china() -> Any:
    return daily.CHINA_TZ
