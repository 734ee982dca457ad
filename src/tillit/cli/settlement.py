"""`tillit fees …` (contracts, findings, leakage) and `tillit settlement …` (import statements, run the
check, list days, the CSV statement): thin commands over fees/contracts.py, reconciliation/fee_check.py
and settlement/service.py. Exit codes: 0 done (for `settlement run`: every day settled or pending),
2 bad input, 3 days that are late, short, missing, over or duplicate remain. See docs/settlement.md."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path
from typing import Annotated

import typer

from tillit.bootstrap import build
from tillit.domain.errors import DomainError
from tillit.domain.ids import normalise_id
from tillit.domain.settlement import OPEN_STATUSES
from tillit.fees import contracts
from tillit.reconciliation import fee_check
from tillit.settlement import fetch, service

fees_app = typer.Typer(help="Fee contracts, fee and 跳码 findings, fee leakage.", no_args_is_help=True)
settlement_app = typer.Typer(
    help="Settlement: statements, the daily check, the statement CSV.", no_args_is_help=True
)
ACTOR = "cli"


def _fail(exc: DomainError) -> None:
    typer.echo(
        json.dumps(
            {"error": {"code": exc.code, "message": exc.message, "details": exc.details}},
            ensure_ascii=False,
            default=str,
        ),
        err=True,
    )
    raise typer.Exit(2)


def _day(text: str, name: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        typer.echo(f"{name} must be YYYY-MM-DD", err=True)
        raise typer.Exit(2) from None


@fees_app.command("sign")
def sign(
    merchant: Annotated[str, typer.Option("--merchant")],
    provider: Annotated[str, typer.Option("--provider", help="wechat or alipay")],
    rate_ppm: Annotated[int, typer.Option("--rate-ppm", help="0.38 % is 3800")],
    start: Annotated[str, typer.Option("--from", help="First day in force, YYYY-MM-DD")],
    card_kind: Annotated[str, typer.Option("--card-kind")] = "any",
    cap_fen: Annotated[int | None, typer.Option("--cap-fen")] = None,
    settle_days: Annotated[int, typer.Option("--settle-days", help="T+N")] = 1,
    merchant_no: Annotated[str | None, typer.Option("--merchant-no")] = None,
    merchant_name: Annotated[str | None, typer.Option("--merchant-name")] = None,
    mcc: Annotated[str | None, typer.Option("--mcc")] = None,
) -> None:
    """Sign a fee contract (the one in force at its start ends that day)."""
    c = build()
    terms = contracts.ContractTerms(
        provider=provider,
        rate_ppm=rate_ppm,
        effective_from=_day(start, "--from"),
        card_kind=card_kind,
        cap_fen=cap_fen,
        settle_days=settle_days,
        merchant_no=merchant_no,
        merchant_name=merchant_name,
        mcc=mcc,
    )
    try:
        with c.db.transaction() as conn:
            view = contracts.create_contract(
                conn, c.deps, merchant_id=normalise_id(merchant, "merchant"), terms=terms, actor=ACTOR
            )
    except DomainError as exc:
        _fail(exc)
    typer.echo(json.dumps(view, ensure_ascii=False))


@fees_app.command("contracts")
def list_contracts(merchant: Annotated[str | None, typer.Option("--merchant")] = None) -> None:
    """List fee contracts (one merchant's, or all)."""
    c = build()
    with c.db.read() as conn:
        rows = contracts.list_contracts(conn, normalise_id(merchant, "merchant") if merchant else None)
    typer.echo(json.dumps(rows, ensure_ascii=False, indent=2))


@fees_app.command("findings")
def findings(
    merchant: Annotated[str | None, typer.Option("--merchant")] = None,
    code_jump_only: Annotated[bool, typer.Option("--code-jump", help="Only 跳码 findings")] = False,
) -> None:
    """Bill rows whose fee, rate or identity differs from the contract, with the evidence."""
    c = build()
    with c.db.read() as conn:
        rows = fee_check.list_findings(
            conn,
            normalise_id(merchant, "merchant") if merchant else None,
            finding_class="code_jump" if code_jump_only else None,
            limit=1000,
        )
    typer.echo(json.dumps(rows, ensure_ascii=False, indent=2))


@fees_app.command("leakage")
def leakage(
    merchant: Annotated[str | None, typer.Option("--merchant")] = None,
    since: Annotated[str | None, typer.Option("--since")] = None,
) -> None:
    """Monthly fee leakage per merchant (billed - contracted fees)."""
    c = build()
    today = c.deps.clock.now().date()
    with c.db.read() as conn:
        rows = fee_check.leakage_by_month(
            conn,
            normalise_id(merchant, "merchant") if merchant else None,
            since=_day(since, "--since") if since else today - timedelta(days=365),
            until=today,
        )
    typer.echo(json.dumps(rows, ensure_ascii=False, indent=2))


@settlement_app.command("import")
def import_statement(
    file: Annotated[Path, typer.Argument(help="The statement file")],
    merchant: Annotated[str, typer.Option("--merchant")],
    source: Annotated[str, typer.Option("--source", help="wechat_fundflow, alipay_account or bank")],
) -> None:
    """Import a WeChat fund-flow bill, an Alipay account statement or a bank statement CSV."""
    if not file.is_file():
        typer.echo(f"no such file: {file}", err=True)
        raise typer.Exit(2)
    c = build()
    try:
        view = service.import_statement(
            c.db,
            c.deps,
            merchant_id=normalise_id(merchant, "merchant"),
            data=file.read_bytes(),
            source=source,
            filename=file.name,
            actor=ACTOR,
        )
    except DomainError as exc:
        _fail(exc)
    typer.echo(json.dumps(view, ensure_ascii=False))


@settlement_app.command("fetch")
def fetch_statements(
    merchant: Annotated[str, typer.Option("--merchant")],
    day: Annotated[str, typer.Option("--day", help="YYYY-MM-DD")],
    provider: Annotated[
        str | None, typer.Option("--provider", help="wechat or alipay (default both)")
    ] = None,
) -> None:
    """Download the day's WeChat fund-flow bill / Alipay account statement and import them; exit 3
    when one is not generated yet or failed (run it again later: nothing is stored twice)."""
    c = build()
    try:
        got = fetch.fetch(
            c.db,
            c.deps,
            c.engine.providers if c.engine is not None else fetch.no_providers(),
            merchant_id=normalise_id(merchant, "merchant"),
            day=_day(day, "--day"),
            actor=ACTOR,
            provider=provider,
        )
    except DomainError as exc:
        _fail(exc)
    for g in got:
        typer.echo(json.dumps(g.view(), ensure_ascii=False))
    if any(g.outcome in ("not_ready", "failed") for g in got):
        raise typer.Exit(3)


@settlement_app.command("run")
def run(
    merchant: Annotated[str, typer.Option("--merchant")],
    since: Annotated[str, typer.Option("--since")],
    until: Annotated[str, typer.Option("--until")],
) -> None:
    """Recompute the merchant's settlement days; exit 3 when any day needs a person."""
    c = build()
    try:
        days = service.run(
            c.db,
            c.deps,
            merchant_id=normalise_id(merchant, "merchant"),
            first=_day(since, "--since"),
            last=_day(until, "--until"),
        )
    except DomainError as exc:
        _fail(exc)
    for day in days:
        typer.echo(
            f"{day['trade_day']} {day['provider']:7} {day['status']:9} expected {day['expected']:>10} "
            f"received {day['received']:>10} age {day['age_days']:>3}  {day['next_action'][:80]}"
        )
    raise typer.Exit(3 if any(d["status"] in OPEN_STATUSES for d in days) else 0)


@settlement_app.command("statement")
def statement(
    merchant: Annotated[str, typer.Option("--merchant")],
    since: Annotated[str | None, typer.Option("--since")] = None,
    until: Annotated[str | None, typer.Option("--until")] = None,
) -> None:
    """The merchant's settlement statement as CSV on stdout."""
    c = build()
    with c.db.read() as conn:
        days = service.list_days(
            conn,
            normalise_id(merchant, "merchant"),
            since=_day(since, "--since") if since else None,
            until=_day(until, "--until") if until else None,
            limit=1000,
        )
    typer.echo(service.statement_csv(days), nl=False)
