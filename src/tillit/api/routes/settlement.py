"""Fee contracts, fee/跳码 findings and settlement routes (docs/settlement.md).

Operators (admin keys) sign and end contracts; merchants read their own contracts, findings, leakage
and settlement days, upload their statements and run the settlement check for their own days."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import Field
from starlette.concurrency import run_in_threadpool

from tillit.api.deps import (
    ADMIN,
    IDEMPOTENCY_HEADER,
    MANAGER,
    OVERSEER,
    IdPath,
    IdQuery,
    container,
    idempotent,
    ok,
)
from tillit.api.schemas import ErrorOut, Strict, UUIDStr
from tillit.domain.errors import invalid, not_found
from tillit.domain.ids import normalise_id
from tillit.domain.settlement import DEFAULT_GRACE_DAYS, STATUSES
from tillit.fees import contracts
from tillit.kernel.context import Actor
from tillit.reconciliation import fee_check
from tillit.settlement import fetch, service, statements

router = APIRouter(prefix="/v1", tags=["settlement"], responses={"4XX": {"model": ErrorOut}})

STATEMENT_PATH = "/v1/settlement/statements"
#: Statement uploads have their own body limit (the JSON limit is 64 KiB).
STATEMENT_MAX_BYTES = statements.MAX_STATEMENT_BYTES
STATUS_PATTERN = "^(" + "|".join(STATUSES) + ")$"
Day = Annotated[date, Field(strict=False, description="YYYY-MM-DD")]


class ContractCreate(Strict):
    merchant_id: UUIDStr
    provider: Annotated[str, Field(pattern="^(wechat|alipay)$")]
    rate_ppm: Annotated[int, Field(ge=0, le=100_000, description="Parts per million: 0.38 % is 3800")]
    effective_from: Day
    card_kind: Annotated[str, Field(pattern="^(any|balance|debit|credit)$")] = "any"
    cap_fen: Annotated[int | None, Field(ge=1, le=10**12)] = None
    settle_days: Annotated[int, Field(ge=0, le=30, description="T+N")] = 1
    working_days: bool = False
    merchant_no: Annotated[str | None, Field(min_length=1, max_length=32)] = None
    merchant_name: Annotated[str | None, Field(min_length=1, max_length=100)] = None
    mcc: Annotated[str | None, Field(pattern="^[0-9]{4}$")] = None
    effective_to: Day | None = None
    note: Annotated[str | None, Field(max_length=300)] = None


class ContractEnd(Strict):
    end_day: Day
    reason: Annotated[str, Field(min_length=3, max_length=300)]


class StatementFetch(Strict):
    day: Day
    provider: Annotated[str | None, Field(pattern="^(wechat|alipay)$")] = None
    merchant_id: UUIDStr | None = None


class SettlementRun(Strict):
    since: Day
    until: Day
    merchant_id: UUIDStr | None = None
    grace_days: Annotated[int, Field(ge=0, le=30)] = DEFAULT_GRACE_DAYS


def _scope(who: Actor, merchant_id: str | None) -> str | None:
    """The merchant a read is about: a manager's own (another's is not found); an operator's choice."""
    if who.role == "admin":
        return normalise_id(merchant_id, "merchant_id") if merchant_id else None
    own = who.merchant()
    if merchant_id and normalise_id(merchant_id, "merchant_id") != own:
        raise not_found("merchant", normalise_id(merchant_id, "merchant_id"))
    return own


def _one_merchant(who: Actor, merchant_id: str | None) -> str:
    scope = _scope(who, merchant_id)
    if scope is None:
        raise invalid("merchant_required", "An operator names the merchant: give `merchant_id`.")
    return scope


# --------------------------------------------------------------------------- contracts


@router.post("/fee-contracts", status_code=201, summary="Sign a fee contract (operator)")
def create_contract(
    body: ContractCreate, request: Request, who: Actor = ADMIN, key: str | None = IDEMPOTENCY_HEADER
) -> Response:
    c = container(request)
    terms = contracts.ContractTerms(
        provider=body.provider,
        rate_ppm=body.rate_ppm,
        effective_from=body.effective_from,
        card_kind=body.card_kind,
        cap_fen=body.cap_fen,
        settle_days=body.settle_days,
        working_days=body.working_days,
        merchant_no=body.merchant_no,
        merchant_name=body.merchant_name,
        mcc=body.mcc,
        effective_to=body.effective_to,
        note=body.note,
    )
    merchant_id = normalise_id(body.merchant_id, "merchant_id")
    return idempotent(
        request,
        who,
        key,
        body.model_dump(mode="json"),
        lambda conn: (
            201,
            contracts.create_contract(conn, c.deps, merchant_id=merchant_id, terms=terms, actor=who.label),
        ),
    )


@router.get("/fee-contracts", summary="Fee contracts (a merchant's own; operators may filter)")
def list_contracts(
    request: Request,
    who: Actor = OVERSEER,
    merchant_id: IdQuery = None,
    provider: Annotated[str | None, Query(pattern="^(wechat|alipay)$")] = None,
) -> JSONResponse:
    scope = _scope(who, merchant_id)
    with container(request).db.read() as conn:
        return ok({"data": contracts.list_contracts(conn, scope, provider=provider)})


@router.get("/fee-contracts/{contract_id}", summary="A fee contract")
def get_contract(contract_id: IdPath, request: Request, who: Actor = OVERSEER) -> JSONResponse:
    with container(request).db.read() as conn:
        return ok(contracts.get_contract(conn, who.merchant_id, normalise_id(contract_id)))


@router.post("/fee-contracts/{contract_id}/end", summary="End a fee contract on a day (operator, audited)")
def end_contract(
    contract_id: IdPath,
    body: ContractEnd,
    request: Request,
    who: Actor = ADMIN,
    key: str | None = IDEMPOTENCY_HEADER,
) -> Response:
    c = container(request)
    cid = normalise_id(contract_id)
    return idempotent(
        request,
        who,
        key,
        body.model_dump(mode="json"),
        lambda conn: (
            200,
            contracts.end_contract(
                conn, c.deps, merchant_id=None, contract_id=cid, end_day=body.end_day, reason=body.reason,
                actor=who.label,
            ),
        ),
    )  # fmt: skip


# --------------------------------------------------------------------------- fee findings


@router.get("/fees/findings", summary="Bill rows whose fee, rate or identity differs from the contract")
def list_findings(
    request: Request,
    who: Actor = OVERSEER,
    merchant_id: IdQuery = None,
    finding_class: Annotated[str | None, Query(alias="class", pattern="^(code_jump|fee_mismatch)$")] = None,
    since: date | None = None,
    until: date | None = None,
    limit: int = Query(200, ge=1, le=1000),
    offset: int = Query(0, ge=0, le=10**9),
) -> JSONResponse:
    scope = _scope(who, merchant_id)
    with container(request).db.read() as conn:
        rows = fee_check.list_findings(
            conn, scope, finding_class=finding_class, since=since, until=until, limit=limit, offset=offset
        )
    return ok({"data": rows, "next_offset": offset + limit if len(rows) == limit else None})


@router.get("/fees/leakage", summary="Monthly fee leakage per merchant (billed - contracted fees)")
def leakage(
    request: Request,
    who: Actor = OVERSEER,
    merchant_id: IdQuery = None,
    since: date | None = None,
    until: date | None = None,
) -> JSONResponse:
    scope = _scope(who, merchant_id)
    today = container(request).deps.clock.now().date()
    first = since or today.replace(day=1) - timedelta(days=365)
    last = until or today
    if last < first or (last - first).days > 800:
        raise invalid("leakage_window_invalid", "`since`..`until` must be in order and at most 800 days")
    with container(request).db.read() as conn:
        return ok({"data": fee_check.leakage_by_month(conn, scope, since=first, until=last)})


# --------------------------------------------------------------------------- settlement


@router.post(
    "/settlement/statements",
    status_code=201,
    summary="Upload a fund-flow, account or bank statement (raw file body)",
    description=(
        "`source` is `wechat_fundflow` (WeChat 资金账单 CSV), `alipay_account` (Alipay 账务明细 CSV or "
        f"ZIP, GBK) or `bank` (Tillit's bank CSV, docs/settlement.md); at most {STATEMENT_MAX_BYTES} bytes. "
        "The same file again answers 200 with the statement it already has; lines already imported are not "
        "stored twice (their key is the statement's own line id), so no Idempotency-Key is needed. "
        "With `hash_value` (the SHA-1 the provider's download gave, e.g. WeChat's `hash_value`) a file "
        "with another digest is refused (`statement_digest_mismatch`) and nothing is imported."
    ),
)
async def upload_statement(
    request: Request,
    source: Annotated[str, Query(pattern="^(wechat_fundflow|alipay_account|bank)$")],
    who: Actor = MANAGER,
    filename: Annotated[str | None, Query(max_length=200)] = None,
    hash_type: Annotated[str | None, Query(pattern="^(SHA1|sha1)$")] = None,
    hash_value: Annotated[str | None, Query(pattern="^[0-9a-fA-F]{40}$")] = None,
) -> JSONResponse:
    merchant_id = who.merchant()
    data = await request.body()
    c = container(request)
    digest = (hash_type or "SHA1", hash_value) if hash_value else None
    view = await run_in_threadpool(
        lambda: service.import_statement(
            c.db, c.deps, merchant_id=merchant_id, data=data, source=source,
            filename=filename or f"{source}.csv", actor=who.label, digest=digest,
        )
    )  # fmt: skip
    return ok(view, 201 if view["created"] else 200)


@router.get("/settlement/statements", summary="Imported statements, newest first")
def list_statements(request: Request, who: Actor = OVERSEER, merchant_id: IdQuery = None) -> JSONResponse:
    scope = _scope(who, merchant_id)
    with container(request).db.read() as conn:
        return ok({"data": service.list_statements(conn, scope)})


@router.get("/settlement/statements/{statement_id}", summary="An imported statement")
def get_statement(statement_id: IdPath, request: Request, who: Actor = OVERSEER) -> JSONResponse:
    with container(request).db.read() as conn:
        return ok(service.get_statement(conn, who.merchant_id, normalise_id(statement_id)))


@router.post(
    "/settlement/fetch",
    summary="Fetch a day's fund-flow / account statements from the providers and import them",
    description=(
        "For each connected provider account (or only `provider`): WeChat `downloadfundflow` (BASIC "
        "account, gzip) or the Alipay `signcustomer` account statement, downloaded over the providers' "
        "own signed protocol and imported like an upload. Per provider the `outcome` is `imported`, "
        "`already` (fetched before: nothing stored twice), `no_movement`, `not_ready` (not generated "
        "yet: the daily job tries again) or `failed` with the provider's `code`. Repeating it is "
        "harmless, so no Idempotency-Key is needed."
    ),
)
async def fetch_statements(body: StatementFetch, request: Request, who: Actor = OVERSEER) -> JSONResponse:
    merchant_id = _one_merchant(who, body.merchant_id)
    c = container(request)
    directory = c.engine.providers if c.engine is not None else fetch.no_providers()
    got = await run_in_threadpool(
        lambda: fetch.fetch(
            c.db, c.deps, directory, merchant_id=merchant_id, day=body.day,
            actor=who.label, provider=body.provider,
        )
    )  # fmt: skip
    return ok({"data": [g.view() for g in got]})


@router.post(
    "/settlement/runs",
    summary="Recompute the settlement of a merchant's trade days now",
    description=(
        f"At most {service.MAX_WINDOW_DAYS} trade days. A pure recomputation from payments, refunds, "
        "contracts and statements (it replaces the days' stored outcome and moves no money), so repeating "
        "it is harmless and no Idempotency-Key is needed."
    ),
)
def run_settlement(body: SettlementRun, request: Request, who: Actor = OVERSEER) -> JSONResponse:
    merchant_id = _one_merchant(who, body.merchant_id)
    c = container(request)
    days = service.run(
        c.db, c.deps, merchant_id=merchant_id, first=body.since, last=body.until, grace_days=body.grace_days
    )
    return ok({"data": days})


@router.get("/settlement/days", summary="Settlement outcome per merchant-day, newest first")
def list_days(
    request: Request,
    who: Actor = OVERSEER,
    merchant_id: IdQuery = None,
    status: Annotated[str | None, Query(pattern=STATUS_PATTERN)] = None,
    provider: Annotated[str | None, Query(pattern="^(wechat|alipay)$")] = None,
    since: date | None = None,
    until: date | None = None,
    limit: int = Query(200, ge=1, le=1000),
    offset: int = Query(0, ge=0, le=10**9),
) -> JSONResponse:
    scope = _scope(who, merchant_id)
    with container(request).db.read() as conn:
        rows = service.list_days(
            conn,
            scope,
            since=since,
            until=until,
            status=status,
            provider=provider,
            limit=limit,
            offset=offset,
        )
    return ok({"data": rows, "next_offset": offset + limit if len(rows) == limit else None})


@router.get("/settlement/days/{provider}/{trade_day}", summary="One merchant-day explained, with its lines")
def get_day(
    provider: Annotated[str, Path(pattern="^(wechat|alipay)$")],
    trade_day: date,
    request: Request,
    who: Actor = OVERSEER,
    merchant_id: IdQuery = None,
) -> JSONResponse:
    scope = _one_merchant(who, merchant_id)
    with container(request).db.read() as conn:
        day = service.get_day(conn, scope, provider, trade_day)
        return ok(day | {"lines": service.day_lines(conn, scope, provider, trade_day)})


@router.get("/settlement/statement.csv", summary="The merchant's settlement statement as CSV")
def statement_csv(
    request: Request,
    who: Actor = OVERSEER,
    merchant_id: IdQuery = None,
    since: date | None = None,
    until: date | None = None,
) -> Response:
    scope = _one_merchant(who, merchant_id)
    with container(request).db.read() as conn:
        days = service.list_days(conn, scope, since=since, until=until, limit=1000)
    return Response(
        service.statement_csv(days),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="settlement_statement.csv"'},
    )
