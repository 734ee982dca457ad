"""Reconciliation use cases: import a bill, match it, store the run and its discrepancies, take the
safe actions, and read it all back (API, CLI, report, daily job)."""

from __future__ import annotations

import csv
import io
import json
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import duckdb
import structlog
from sqlalchemy import Connection, and_, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from tillit.adapters.db.engine import Database
from tillit.adapters.db.schema import (
    exceptions,
    merchants,
    payments,
    provider_accounts,
    recon_bills,
    recon_discrepancies,
    recon_runs,
    refunds,
)
from tillit.domain.csvsafe import safe_cell
from tillit.domain.errors import conflict, invalid, not_found
from tillit.exceptions import cases as exc_svc
from tillit.fees.contracts import contract_on
from tillit.kernel import jobs
from tillit.kernel.context import Actor, Deps, iso
from tillit.reconciliation import fee_check, formats, match
from tillit.reconciliation.actions import SETTLED_AT_ONCE, action_for
from tillit.reconciliation.formats import Mapping, ParsedBill
from tillit.reconciliation.views import BillView, DiscrepancyView, HistoryPoint, RunView

log = structlog.get_logger("tillit.reconciliation")

SYSTEM = "system:reconciliation"
CHUNK = 500
DEFAULT_ORPHAN_HOURS = 24.0
DEFAULT_ORPHAN_MAX = 20
DEFAULT_MARGIN_MINUTES = 10
DUCKDB_MEMORY = "1GB"


# --------------------------------------------------------------------------- account rules


@dataclass(frozen=True)
class AccountRules:
    """The merchant's reconciliation settings, read from its provider account's settings JSON."""

    fee_rate_ppm: int | None = None
    #: Refund an unrecognised payment this long after it was made (None: never automatically).
    orphan_refund_after_hours: float | None = DEFAULT_ORPHAN_HOURS
    #: More unrecognised payments than this in one bill look like a wrong account: no auto refunds.
    orphan_refund_max_per_run: int = DEFAULT_ORPHAN_MAX
    timing_margin_minutes: int = DEFAULT_MARGIN_MINUTES
    account_ref: str | None = None
    seller_id: str | None = None

    @classmethod
    def from_config(cls, config: dict[str, Any], account_ref: str | None = None) -> AccountRules:
        def number(key: str, default: Any) -> Any:
            value = config.get(key, default)
            if value is None or isinstance(value, int | float):
                return value
            try:
                return float(value)
            except (TypeError, ValueError):
                return default

        hours = number("orphan_refund_after_hours", DEFAULT_ORPHAN_HOURS)
        rate = number("fee_rate_ppm", None)
        return cls(
            fee_rate_ppm=int(rate) if rate is not None else None,
            orphan_refund_after_hours=None if hours is None or hours < 0 else float(hours),
            orphan_refund_max_per_run=int(number("orphan_refund_max_per_run", DEFAULT_ORPHAN_MAX)),
            timing_margin_minutes=int(number("timing_margin_minutes", DEFAULT_MARGIN_MINUTES)),
            account_ref=account_ref,
            seller_id=str(config["seller_id"]) if config.get("seller_id") else None,
        )


def account_rules(conn: Connection, merchant_id: str, provider: str, day: date | None = None) -> AccountRules:
    """The account's settings; with ``day``, a fee contract in force that day sets the rate checked
    (fees/contracts.py; it wins over a ``fee_rate_ppm`` in the account settings)."""
    row = conn.execute(
        select(provider_accounts.c.config, provider_accounts.c.account_ref).where(
            provider_accounts.c.merchant_id == merchant_id, provider_accounts.c.provider == provider
        )
    ).first()
    rules = (
        AccountRules() if row is None else AccountRules.from_config(json.loads(row.config), row.account_ref)
    )
    contract = contract_on(conn, merchant_id, provider, day) if day is not None else None
    if contract is not None:
        rules = replace(rules, fee_rate_ppm=contract.rate_ppm)
    return rules


def _check_account(bill: ParsedBill, rules: AccountRules) -> None:
    """A bill of another account must never be matched (its payments would all look unrecognised)."""
    if bill.account is None:
        return
    expected = rules.account_ref if bill.provider == "wechat" else rules.seller_id
    if expected and not bill.account.startswith(expected):
        raise conflict(
            "bill_account_mismatch",
            f"The bill is for account {bill.account}, "
            f"not this merchant's {bill.provider} account {expected}.",
            {"bill_account": bill.account, "merchant_account": expected},
        )


# --------------------------------------------------------------------------- DuckDB and local data


def connect(memory_limit: str = DUCKDB_MEMORY, threads: int = 2) -> duckdb.DuckDBPyConnection:
    spill = Path(tempfile.gettempdir()) / "tillit-duckdb"
    spill.mkdir(exist_ok=True)
    con = duckdb.connect(":memory:", config={"threads": threads, "memory_limit": memory_limit})
    con.execute(f"SET temp_directory = '{spill}'")
    return con


def _naive_utc(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is None:
        return value
    return value.astimezone(UTC).replace(tzinfo=None)


def _append(
    con: duckdb.DuckDBPyConnection, table: str, names: Sequence[str], rows: Iterable[Sequence[Any]]
) -> int:
    """Insert Python rows into a DuckDB table column-wise (one Arrow table per call)."""
    import pyarrow as pa

    data = [tuple(_naive_utc(v) if isinstance(v, datetime) else v for v in r) for r in rows]
    if not data:
        return 0
    columns = list(zip(*data, strict=True))
    types = {"ts": pa.timestamp("us"), "amount": pa.int64()}
    arrow = pa.table(
        {n: pa.array(list(c), type=types.get(n, pa.string())) for n, c in zip(names, columns, strict=True)}
    )
    con.register("tl_incoming", arrow)
    try:
        con.execute(f"INSERT INTO {table} ({', '.join(names)}) SELECT * FROM tl_incoming")
    finally:
        con.unregister("tl_incoming")
    return len(data)


def _chunks(values: list[str]) -> Iterable[list[str]]:
    for i in range(0, len(values), CHUNK):
        yield values[i : i + CHUNK]


PAY_COLS = ("id", "provider_ref", "amount", "status", "ts", "order_id")
REF_COLS = ("id", "payment_id", "amount", "status", "ts", "provider_ref")


def load_local(
    conn: Connection,
    con: duckdb.DuckDBPyConnection,
    merchant_id: str,
    provider: str,
    bill: ParsedBill,
    window: match.Window,
) -> None:
    """Fill DuckDB tables lp/lr/er with this merchant's payments and refunds at ``provider`` created in
    the bill's day (plus the margin), and any others the bill names by our id or the provider's."""
    match.create_local_tables(con)
    lo = window.start.replace(tzinfo=UTC) - window.margin
    hi = window.end.replace(tzinfo=UTC) + window.margin
    pay_q = select(
        payments.c.id,
        payments.c.provider_ref,
        payments.c.amount,
        payments.c.status,
        payments.c.created_at,
        payments.c.order_id,
    ).where(payments.c.merchant_id == merchant_id, payments.c.provider == provider)
    with_payments = bill.bill_type != "REFUND"
    with_refunds = bill.bill_type != "SUCCESS"
    if with_payments:
        _append(
            con,
            "lp",
            PAY_COLS,
            conn.execute(pay_q.where(payments.c.created_at >= lo, payments.c.created_at < hi)),
        )
    # Payments the bill names that were created outside the window (by our id, then the provider's).
    ids = [
        r[0]
        for r in con.execute(
            f"SELECT DISTINCT out_trade_no FROM {bill.table} b WHERE NOT EXISTS "
            "(SELECT 1 FROM lp WHERE lp.id = b.out_trade_no)"
        ).fetchall()
    ]
    for part in _chunks(ids):
        _append(con, "lp", PAY_COLS, conn.execute(pay_q.where(payments.c.id.in_(part))))
    refs = [
        r[0]
        for r in con.execute(
            f"SELECT DISTINCT trade_no FROM {bill.table} b WHERE kind = 'payment' AND trade_no IS NOT NULL "
            "AND NOT EXISTS (SELECT 1 FROM lp WHERE lp.id = b.out_trade_no OR lp.provider_ref = b.trade_no)"
        ).fetchall()
    ]
    for part in _chunks(refs):
        _append(con, "lp", PAY_COLS, conn.execute(pay_q.where(payments.c.provider_ref.in_(part))))
    con.execute("CREATE OR REPLACE TEMP TABLE lp AS SELECT DISTINCT ON (id) * FROM lp")
    ref_q = (
        select(
            refunds.c.id,
            refunds.c.payment_id,
            refunds.c.amount,
            refunds.c.status,
            refunds.c.created_at,
            refunds.c.provider_ref,
        )
        .select_from(
            refunds.join(
                payments,
                (payments.c.merchant_id == refunds.c.merchant_id) & (payments.c.id == refunds.c.payment_id),
            )
        )
        .where(refunds.c.merchant_id == merchant_id, payments.c.provider == provider)
    )
    if with_refunds:
        _append(
            con,
            "lr",
            REF_COLS,
            conn.execute(ref_q.where(refunds.c.created_at >= lo, refunds.c.created_at < hi)),
        )
    for column, sql in (
        (refunds.c.id, "out_refund_no"),
        (refunds.c.provider_ref, "refund_no"),
    ):
        wanted = [
            r[0]
            for r in con.execute(
                f"SELECT DISTINCT {sql} FROM {bill.table} b WHERE kind = 'refund' AND {sql} IS NOT NULL "
                "AND NOT EXISTS (SELECT 1 FROM lr WHERE lr.id = b.out_refund_no "
                f"OR lr.provider_ref = b.{sql})"
            ).fetchall()
        ]
        for part in _chunks(wanted):
            _append(con, "lr", REF_COLS, conn.execute(ref_q.where(column.in_(part))))
    con.execute("CREATE OR REPLACE TEMP TABLE lr AS SELECT DISTINCT ON (id) * FROM lr")
    engine_refunds = []
    for row in conn.execute(
        select(exceptions.c.payment_id, exceptions.c.details).where(
            exceptions.c.merchant_id == merchant_id,
            exceptions.c.provider == provider,
            exceptions.c.kind.in_(("late_payment", "bill_unrecognised_payment")),
        )
    ):
        details = json.loads(row.details or "{}")
        if details.get("out_refund_no"):
            engine_refunds.append((details["out_refund_no"], row.payment_id or details.get("out_trade_no")))
    _append(con, "er", ("out_refund_no", "out_trade_no"), engine_refunds)


# --------------------------------------------------------------------------- importing


@dataclass
class Outcome:
    """What an import did: the bill, its run, the discrepancies (views), and whether it was new."""

    bill: BillView | dict[str, Any]  # a stored bill; the parsed bill's summary in a dry run; {} for none
    run: RunView
    discrepancies: list[DiscrepancyView]
    created: bool
    persisted: bool
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def open_count(self) -> int:
        return sum(1 for d in self.discrepancies if d["status"] == "open")

    def as_json(self) -> dict[str, Any]:
        return {
            "bill": self.bill,
            "run": self.run,
            "summary": {
                "lines": self.run["lines"],
                "matched": self.run["matched"],
                "discrepancies": self.run["discrepancies"],
                "open": self.open_count,
                "by_class": {
                    c: {"count": self.run["counts"].get(c, 0), "amount": self.run["amounts"].get(c, 0)}
                    for c in match.CLASSES
                },
            },
            "discrepancies": self.discrepancies,
        }


def _window(day: date, rules: AccountRules) -> match.Window:
    start, end = formats.china_day_bounds(day)
    return match.Window(start, end, timedelta(minutes=rules.timing_margin_minutes))


def _fee_rule(bill: ParsedBill, rules: AccountRules) -> match.FeeRule:
    return match.FeeRule(rules.fee_rate_ppm, bill.fee_unit)


def parse_bill(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    fmt: str,
    *,
    mapping: Mapping | None = None,
    name: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> ParsedBill:
    return formats.parse(con, path, fmt, name=name, mapping=mapping, progress=progress)


def reconcile_offline(
    con: duckdb.DuckDBPyConnection, bill: ParsedBill, day: date, rules: AccountRules | None = None
) -> Outcome:
    """Match a bill against no local data (a fresh database, or no merchant): nothing is stored, every
    row is ``missing_locally``. Used by the CLI when no merchant owns the bill's account."""
    rules = rules or AccountRules()
    match.create_local_tables(con)
    result = match.classify(
        con,
        bill.table,
        _window(day, rules),
        _fee_rule(bill, rules),
        lines=bill.rows,
        dups=bill.dups,
        bill_type=bill.bill_type,
    )
    now = datetime.now(UTC)
    views = [_disc_view_from_row(r, day, bill.provider, now) for r in match.rows(con)]
    run = _run_record("", "", bill.provider, None, day, bill.bill_type, "cli", result, now, now, "cli")
    return Outcome(
        bill=_bill_summary_view(bill, day),
        run=run_view_dict(run, len([v for v in views if v["status"] == "open"])),
        discrepancies=views,
        created=True,
        persisted=False,
    )


def import_bill(
    db: Database,
    deps: Deps,
    *,
    merchant_id: str,
    bill: ParsedBill,
    con: duckdb.DuckDBPyConnection,
    source: str,
    actor: str,
    bill_date: date | None = None,
) -> Outcome:
    """Store and reconcile a parsed bill for ``merchant_id``. The same content again returns the run
    it already has and changes nothing."""
    day = bill_date or bill.bill_date
    if day is None:
        raise invalid("bill_date_required", "The bill has no rows to tell its date: give the date.")
    with db.read() as conn:
        if conn.execute(select(merchants.c.id).where(merchants.c.id == merchant_id)).first() is None:
            raise not_found("merchant", merchant_id)
        existing = _existing(conn, merchant_id, bill)
        if existing is not None:
            return existing
        rules = account_rules(conn, merchant_id, bill.provider, day)
        _check_account(bill, rules)
        window = _window(day, rules)
        load_local(conn, con, merchant_id, bill.provider, bill, window)
    started = deps.clock.now()
    result = match.classify(
        con,
        bill.table,
        window,
        _fee_rule(bill, rules),
        lines=bill.rows,
        dups=bill.dups,
        bill_type=bill.bill_type,
    )
    found = match.rows(con)
    try:
        with db.transaction() as conn:
            again = _existing(conn, merchant_id, bill)
            if again is not None:
                return again
            bill_id = deps.ids.new()
            conn.execute(
                insert(recon_bills).values(
                    id=bill_id,
                    merchant_id=merchant_id,
                    provider=bill.provider,
                    format=bill.format,
                    bill_type=bill.bill_type,
                    bill_date=day,
                    account=bill.account,
                    filename=bill.file[:255],
                    sha256=bill.sha256,
                    size_bytes=bill.size,
                    row_count=bill.rows,
                    totals=json.dumps(bill.totals, ensure_ascii=False, default=str),
                    source=source,
                    imported_by=actor[:100],
                    imported_at=started,
                )
            )
            run_id = record_run(
                conn,
                deps,
                merchant_id=merchant_id,
                provider=bill.provider,
                bill_id=bill_id,
                day=day,
                bill_type=bill.bill_type,
                source=source,
                actor=actor,
                result=result,
                found=found,
                rules=rules,
                started=started,
            )
            # settle12: fees and 跳码 against the contract; the ledger books the fees the bill confirms.
            fee_check.check_bill(
                conn, deps, con, merchant_id=merchant_id, bill=bill, bill_id=bill_id, day=day
            )
    except IntegrityError:
        with db.read() as conn:
            raced = _existing(conn, merchant_id, bill)
        if raced is None:
            raise
        return raced
    with db.read() as conn:
        return outcome_for_run(conn, run_id, created=True)


def record_run(
    conn: Connection,
    deps: Deps,
    *,
    merchant_id: str,
    provider: str,
    bill_id: str | None,
    day: date,
    bill_type: str,
    source: str,
    actor: str,
    result: match.MatchResult,
    found: list[dict[str, Any]],
    rules: AccountRules,
    started: datetime,
) -> str:
    """Inside the caller's transaction: the run, its discrepancies, exceptions and safe actions, and
    what this bill settles of earlier runs."""
    now = deps.clock.now()
    run_id = deps.ids.new()
    found = _drop_billed_elsewhere(conn, merchant_id, provider, day, found)
    found += _carried_over(conn, deps, merchant_id, provider, day, bill_type, found, run_id)
    counts = {c: 0 for c in match.CLASSES}
    amounts = {c: 0 for c in match.CLASSES}
    for d in found:
        counts[d["class"]] += 1
        amounts[d["class"]] += int(
            d["provider_amount"] if d["provider_amount"] is not None else d["local_amount"] or 0
        )
    result.counts, result.amounts = counts, amounts
    flagged_lines = {d["line"] for d in found if d["line"] is not None}
    result.matched = max(result.lines - len(flagged_lines), 0)
    conn.execute(
        insert(recon_runs).values(
            **_run_record(
                run_id, merchant_id, provider, bill_id, day, bill_type, source, result, started, now, actor
            )
        )
    )
    _supersede(conn, deps, merchant_id, provider, day, bill_type, run_id)
    orphans = sum(1 for d in found if d["reason"] == "unknown_payment")
    records = []
    for d in found:
        act = action_for(d["class"], d["reason"])
        kind = act.kind
        if kind == "refund_after_wait" and (
            rules.orphan_refund_after_hours is None or orphans > rules.orphan_refund_max_per_run
        ):
            kind = "manager"
        records.append((d, act, kind, deps.ids.new()))
    rows = [
        {
            "id": disc_id,
            "run_id": run_id,
            "merchant_id": merchant_id,
            "provider": provider,
            "bill_date": day,
            "disc_class": d["class"],
            "reason": d["reason"],
            "status": "open",
            "line": d["line"],
            "kind": d["kind"],
            "out_trade_no": _cut(d["out_trade_no"]),
            "out_refund_no": _cut(d["out_refund_no"]),
            "trade_no": _cut(d["trade_no"]),
            "refund_no": _cut(d["refund_no"]),
            "payment_id": d["payment_id"],
            "refund_id": d["refund_id"],
            "order_id": d["order_id"],
            "local_amount": d["local_amount"],
            "provider_amount": d["provider_amount"],
            "local_status": d["local_status"],
            "provider_status": _cut(d["provider_status"], 16),
            "provider_fee": d["provider_fee"],
            "expected_fee": d["expected_fee"],
            "local_at": _aware(d["local_ts"]),
            "provider_at": _aware(d["provider_ts"]),
            "matched_by": d["matched_by"],
            "action": kind,
            "recommended_action": act.text if kind == act.kind else _MANAGER_ORPHAN,
            "exception_id": None,
            "created_at": now,
            "resolved_at": None,
            "resolved_by": None,
            "resolution": None,
        }
        for d, act, kind, disc_id in records
    ]
    if rows:
        conn.execute(insert(recon_discrepancies), rows)
    for (d, act, kind, _disc_id), row in zip(records, rows, strict=True):
        _act(conn, deps, merchant_id, provider, day, row, d, act.exception_kind, kind, rules)
    return run_id


_MANAGER_ORPHAN = (
    "长款 (unrecognised payment): the provider took money Tillit has no sale for. Not refunded "
    "automatically here (waiting rule off, or too many in one bill: check the account). Find the sale "
    "or refund it in the portal, then resolve."
)


def _cut(value: Any, size: int = 64) -> Any:
    return value[:size] if isinstance(value, str) else value


def _aware(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


def _act(
    conn: Connection,
    deps: Deps,
    merchant_id: str,
    provider: str,
    day: date,
    row: dict[str, Any],
    found: dict[str, Any],
    exception_kind: str | None,
    kind: str,
    rules: AccountRules,
) -> None:
    """The safe actions run through the engine; everything a manager must decide is an exception.

    ``attach`` / ``refund_late`` stay open: the engine tells the outcome (outcomes.py), which resolves
    the discrepancy or turns it into an exception."""
    disc_id = row["id"]
    now = deps.clock.now()
    if kind in ("attach", "refund_late"):
        pay = conn.execute(
            select(payments).where(payments.c.merchant_id == merchant_id, payments.c.id == row["payment_id"])
        ).first()
        if pay is not None and deps.resolve_attempt is not None:
            deps.resolve_attempt(conn, deps, pay)
            return
        kind, exception_kind = "manager", "bill_status_mismatch"
        conn.execute(
            update(recon_discrepancies).where(recon_discrepancies.c.id == disc_id).values(action=kind)
        )
    if kind == "none":
        why = (
            "informational: billed on another day"
            if row["reason"] == "billed_other_day"
            else "informational: the reversal of an unrecognised payment in the same bill"
        )
        settle_discrepancy(conn, deps, disc_id, SYSTEM, why)
        return
    if kind == "wait":
        return
    details = {
        "discrepancy_id": disc_id,
        "class": row["disc_class"],
        "reason": row["reason"],
        "bill_date": day.isoformat(),
        "line": row["line"],
        "out_trade_no": row["out_trade_no"],
        "out_refund_no": row["out_refund_no"],
        "trade_no": row["trade_no"],
        "local_amount": row["local_amount"],
        "provider_amount": row["provider_amount"],
    }
    if kind == "refund_after_wait":
        details["out_refund_no"] = deps.ids.new()  # the refund number, reused on every retry
        details["refund_after_hours"] = rules.orphan_refund_after_hours
    exc_id = exc_svc.open_exception(
        conn,
        deps,
        kind=exception_kind or "bill_amount_mismatch",
        merchant_id=merchant_id,
        order_id=row["order_id"],
        payment_id=row["payment_id"],
        refund_id=row["refund_id"],
        provider=provider,
        provider_ref=row["refund_no"]
        if row["kind"] == "refund" and not row["refund_id"]
        else row["trade_no"],
        amount=row["provider_amount"] if row["provider_amount"] is not None else row["local_amount"],
        details=details,
    )
    conn.execute(
        update(recon_discrepancies).where(recon_discrepancies.c.id == disc_id).values(exception_id=exc_id)
    )
    if kind == "refund_after_wait":
        # The engine's refund_unattached job refunds it after the waiting rule, with the exception's
        # out_refund_no; resolving the exception first (the sale was found) makes the job do nothing.
        assert rules.orphan_refund_after_hours is not None
        due = max(now, (row["provider_at"] or now) + timedelta(hours=rules.orphan_refund_after_hours))
        jobs.schedule(
            conn, deps, kind="refund_unattached", merchant_id=merchant_id, exception_id=exc_id, due_at=due
        )


def settle_discrepancy(conn: Connection, deps: Deps, disc_id: str, who: str, why: str) -> None:
    """Resolve an open discrepancy, recording who and why; one already resolved stays as it is."""
    conn.execute(
        update(recon_discrepancies)
        .where(recon_discrepancies.c.id == disc_id, recon_discrepancies.c.status == "open")
        .values(status="resolved", resolved_at=deps.clock.now(), resolved_by=who, resolution=why[:500])
    )


def _drop_billed_elsewhere(
    conn: Connection, merchant_id: str, provider: str, day: date, found: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """A local payment absent from this bill is fine if another day's bill already had it."""
    local_only = [d for d in found if d["line"] is None and (d["payment_id"] or d["refund_id"])]
    if not local_only:
        return found
    seen: set[str] = set()
    for column in (recon_discrepancies.c.payment_id, recon_discrepancies.c.refund_id):
        ids = [d["refund_id"] if column.name == "refund_id" else d["payment_id"] for d in local_only]
        ids = [i for i in ids if i]
        for part in _chunks(ids):
            seen |= {
                r[0]
                for r in conn.execute(
                    select(column).where(
                        recon_discrepancies.c.merchant_id == merchant_id,
                        recon_discrepancies.c.provider == provider,
                        recon_discrepancies.c.reason == "billed_other_day",
                        recon_discrepancies.c.bill_date != day,
                        column.in_(part),
                    )
                )
            }
    return [d for d in found if not (d["line"] is None and ((d["refund_id"] or d["payment_id"]) in seen))]


def _carried_over(
    conn: Connection,
    deps: Deps,
    merchant_id: str,
    provider: str,
    day: date,
    bill_type: str,
    found: list[dict[str, Any]],
    run_id: str,
) -> list[dict[str, Any]]:
    """Settle earlier runs' waits with this bill: what shows up here (billed_other_day) resolves them;
    a payment expected in this bill that is not here becomes ``missing_at_provider`` of this run."""
    billed_here = {
        (d["payment_id"] if d["kind"] != "refund" else d["refund_id"]): d
        for d in found
        if d["reason"] == "billed_other_day"
    }
    cond = and_(
        recon_discrepancies.c.merchant_id == merchant_id,
        recon_discrepancies.c.provider == provider,
        recon_discrepancies.c.status == "open",
        recon_discrepancies.c.bill_date != day,
        or_(
            recon_discrepancies.c.reason == "expected_next_bill",
            recon_discrepancies.c.disc_class == "missing_at_provider",
        ),
    )
    extra: list[dict[str, Any]] = []
    for old in conn.execute(select(recon_discrepancies).where(cond)).all():
        key = old.refund_id if old.kind == "refund" else old.payment_id
        hit = billed_here.get(key)
        if hit is not None:
            why = f"found in the bill of {day.isoformat()} (line {hit['line']})"
            settle_discrepancy(conn, deps, old.id, SYSTEM, why)
            _resolve_exception(conn, deps, old.exception_id, why)
            continue
        if (
            old.reason == "expected_next_bill"
            and old.bill_date == day - timedelta(days=1)
            and ((bill_type != "REFUND") if old.kind != "refund" else (bill_type != "SUCCESS"))
        ):
            settle_discrepancy(
                conn, deps, old.id, SYSTEM, f"not in the bill of {day.isoformat()} either: see run {run_id}"
            )
            extra.append(
                {
                    "class": "missing_at_provider",
                    "reason": "not_in_bill" if old.kind != "refund" else "refund_not_in_bill",
                    "line": None,
                    "kind": old.kind,
                    "out_trade_no": old.out_trade_no,
                    "out_refund_no": old.out_refund_no,
                    "trade_no": old.trade_no,
                    "refund_no": old.refund_no,
                    "payment_id": old.payment_id,
                    "refund_id": old.refund_id,
                    "order_id": old.order_id,
                    "local_amount": old.local_amount,
                    "provider_amount": None,
                    "local_status": old.local_status,
                    "provider_status": None,
                    "provider_fee": None,
                    "expected_fee": None,
                    "local_ts": old.local_at,
                    "provider_ts": None,
                    "matched_by": None,
                }
            )
    return extra


def _resolve_exception(conn: Connection, deps: Deps, exception_id: str | None, why: str) -> None:
    if exception_id is None:
        return
    row = conn.execute(select(exceptions.c.status).where(exceptions.c.id == exception_id)).first()
    if row is not None and row.status == "open":
        exc_svc.resolve(conn, deps, None, exception_id, why, None)


def _supersede(
    conn: Connection, deps: Deps, merchant_id: str, provider: str, day: date, bill_type: str, run_id: str
) -> None:
    """A newer bill of the same kind for the same day replaces the older one's open discrepancies."""
    older = select(recon_runs.c.id).where(
        recon_runs.c.merchant_id == merchant_id,
        recon_runs.c.provider == provider,
        recon_runs.c.bill_date == day,
        recon_runs.c.bill_type == bill_type,
        recon_runs.c.id != run_id,
    )
    stale = conn.execute(
        select(recon_discrepancies.c.id, recon_discrepancies.c.exception_id).where(
            recon_discrepancies.c.run_id.in_(older), recon_discrepancies.c.status == "open"
        )
    ).all()
    for row in stale:
        why = f"superseded by run {run_id} (a newer bill for the same day)"
        settle_discrepancy(conn, deps, row.id, SYSTEM, why)
        _resolve_exception(conn, deps, row.exception_id, why)


def _existing(conn: Connection, merchant_id: str, bill: ParsedBill) -> Outcome | None:
    row = conn.execute(
        select(recon_runs.c.id)
        .select_from(recon_runs.join(recon_bills, recon_bills.c.id == recon_runs.c.bill_id))
        .where(
            recon_bills.c.merchant_id == merchant_id,
            recon_bills.c.provider == bill.provider,
            recon_bills.c.sha256 == bill.sha256,
        )
    ).first()
    return outcome_for_run(conn, row.id, created=False) if row is not None else None


def record_no_bill(
    db: Database, deps: Deps, *, merchant_id: str, provider: str, day: date, actor: str
) -> str:
    """The provider has no bill for ``day`` (no trades): check that Tillit has none either."""
    con = connect()
    try:
        con.execute(f"CREATE TEMP TABLE empty_bill ({formats.CANONICAL})")
        empty = ParsedBill("none", provider, "ALL", day, None, "", 0, "(no bill)", "empty_bill")
        with db.read() as conn:
            rules = account_rules(conn, merchant_id, provider)
            window = _window(day, rules)
            load_local(conn, con, merchant_id, provider, empty, window)
        started = deps.clock.now()
        result = match.classify(con, "empty_bill", window, match.FeeRule(None), lines=0)
        found = match.rows(con)
        with db.transaction() as conn:
            return record_run(
                conn,
                deps,
                merchant_id=merchant_id,
                provider=provider,
                bill_id=None,
                day=day,
                bill_type="ALL",
                source="fetch",
                actor=actor,
                result=result,
                found=found,
                rules=rules,
                started=started,
            )
    finally:
        con.close()


# --------------------------------------------------------------------------- views and queries


def _run_record(
    run_id: str,
    merchant_id: str,
    provider: str,
    bill_id: str | None,
    day: date,
    bill_type: str,
    source: str,
    result: match.MatchResult,
    started: datetime,
    finished: datetime,
    actor: str,
) -> dict[str, Any]:
    return {
        "id": run_id,
        "merchant_id": merchant_id,
        "provider": provider,
        "bill_id": bill_id,
        "bill_date": day,
        "bill_type": bill_type,
        "source": source,
        "line_count": result.lines,
        "matched": result.matched,
        "discrepancy_count": sum(result.counts.values()),
        "counts": json.dumps(result.counts),
        "amounts": json.dumps(result.amounts),
        "started_at": started,
        "finished_at": finished,
        "created_by": actor[:100],
    }


def run_view_dict(run: dict[str, Any], open_count: int) -> RunView:
    return {
        "id": run["id"] or None,
        "merchant_id": run["merchant_id"] or None,
        "provider": run["provider"],
        "bill_id": run["bill_id"],
        "bill_date": run["bill_date"].isoformat(),
        "bill_type": run["bill_type"],
        "source": run["source"],
        "lines": run["line_count"],
        "matched": run["matched"],
        "discrepancies": run["discrepancy_count"],
        "open": open_count,
        "counts": json.loads(run["counts"]),
        "amounts": json.loads(run["amounts"]),
        "started_at": iso(run["started_at"]),
        "finished_at": iso(run["finished_at"]),
        "created_by": run["created_by"],
    }


def _open_counts(conn: Connection, run_ids: list[str]) -> dict[str, int]:
    if not run_ids:
        return {}
    rows = conn.execute(
        select(recon_discrepancies.c.run_id, func.count())
        .where(recon_discrepancies.c.run_id.in_(run_ids), recon_discrepancies.c.status == "open")
        .group_by(recon_discrepancies.c.run_id)
    )
    return {r[0]: int(r[1]) for r in rows}


def run_view(conn: Connection, row: Any) -> RunView:
    return run_view_dict(dict(row._mapping), _open_counts(conn, [row.id]).get(row.id, 0))


def bill_view(row: Any) -> BillView:
    return {
        "id": row.id,
        "merchant_id": row.merchant_id,
        "provider": row.provider,
        "format": row.format,
        "bill_type": row.bill_type,
        "bill_date": row.bill_date.isoformat(),
        "account": row.account,
        "filename": row.filename,
        "sha256": row.sha256,
        "size_bytes": row.size_bytes,
        "rows": row.row_count,
        "totals": json.loads(row.totals or "{}"),
        "source": row.source,
        "imported_by": row.imported_by,
        "imported_at": iso(row.imported_at),
    }


def _bill_summary_view(bill: ParsedBill, day: date) -> dict[str, Any]:
    view = bill.summary()
    view["id"] = None
    view["bill_date"] = day.isoformat()
    return view


DISC_FIELDS = (
    "id",
    "run_id",
    "class",
    "reason",
    "status",
    "line",
    "kind",
    "out_trade_no",
    "out_refund_no",
    "trade_no",
    "refund_no",
    "payment_id",
    "refund_id",
    "order_id",
    "local_amount",
    "provider_amount",
    "local_status",
    "provider_status",
    "provider_fee",
    "expected_fee",
    "local_at",
    "provider_at",
    "matched_by",
    "action",
    "recommended_action",
    "exception_id",
    "bill_date",
    "provider",
    "created_at",
    "resolved_at",
    "resolved_by",
    "resolution",
)


def discrepancy_view(row: Any) -> DiscrepancyView:
    m = row._mapping
    view = {k: m[k] for k in DISC_FIELDS if k in m and k != "class"}
    view["class"] = m["disc_class"]
    for k in ("local_at", "provider_at", "created_at", "resolved_at"):
        view[k] = iso(m[k])
    view["bill_date"] = m["bill_date"].isoformat()
    # built by name from DISC_FIELDS, the same keys as DiscrepancyView
    return cast(DiscrepancyView, {k: view[k] for k in DISC_FIELDS})


def _disc_view_from_row(d: dict[str, Any], day: date, provider: str, now: datetime) -> DiscrepancyView:
    act = action_for(d["class"], d["reason"])
    settled = act.kind in SETTLED_AT_ONCE
    view: DiscrepancyView = {
        "id": None,
        "run_id": None,
        "class": d["class"],
        "reason": d["reason"],
        "status": "resolved" if settled else "open",
        "line": d["line"],
        "kind": d["kind"],
        "out_trade_no": d["out_trade_no"],
        "out_refund_no": d["out_refund_no"],
        "trade_no": d["trade_no"],
        "refund_no": d["refund_no"],
        "payment_id": d["payment_id"],
        "refund_id": d["refund_id"],
        "order_id": d["order_id"],
        "local_amount": d["local_amount"],
        "provider_amount": d["provider_amount"],
        "local_status": d["local_status"],
        "provider_status": d["provider_status"],
        "provider_fee": d["provider_fee"],
        "expected_fee": d["expected_fee"],
        "local_at": iso(_aware(d["local_ts"])),
        "provider_at": iso(_aware(d["provider_ts"])),
        "matched_by": d["matched_by"],
        "action": act.kind,
        "recommended_action": act.text,
        "exception_id": None,
        "bill_date": day.isoformat(),
        "provider": provider,
        "created_at": iso(now),
        "resolved_at": iso(now) if settled else None,
        "resolved_by": SYSTEM if settled else None,
        "resolution": "informational" if settled else None,
    }
    return view


def outcome_for_run(conn: Connection, run_id: str, *, created: bool) -> Outcome:
    run = conn.execute(select(recon_runs).where(recon_runs.c.id == run_id)).one()
    bill = (
        conn.execute(select(recon_bills).where(recon_bills.c.id == run.bill_id)).one()
        if run.bill_id is not None
        else None
    )
    discs = [
        discrepancy_view(r)
        for r in conn.execute(
            select(recon_discrepancies)
            .where(recon_discrepancies.c.run_id == run_id)
            .order_by(
                recon_discrepancies.c.line.is_(None), recon_discrepancies.c.line, recon_discrepancies.c.id
            )
        )
    ]
    return Outcome(
        bill=bill_view(bill) if bill is not None else {},
        run=run_view(conn, run),
        discrepancies=discs,
        created=created,
        persisted=True,
    )


def get_run(conn: Connection, merchant_id: str | None, run_id: str) -> Any:
    row = conn.execute(select(recon_runs).where(recon_runs.c.id == run_id)).first()
    if row is None or (merchant_id is not None and row.merchant_id != merchant_id):
        raise not_found("reconciliation_run", run_id)
    return row


def get_bill(conn: Connection, merchant_id: str | None, bill_id: str) -> BillView:
    row = conn.execute(select(recon_bills).where(recon_bills.c.id == bill_id)).first()
    if row is None or (merchant_id is not None and row.merchant_id != merchant_id):
        raise not_found("bill", bill_id)
    view = bill_view(row)
    run = conn.execute(select(recon_runs).where(recon_runs.c.bill_id == bill_id)).first()
    view["run"] = run_view(conn, run) if run is not None else None
    return view


def list_runs(
    conn: Connection,
    merchant_id: str | None,
    *,
    provider: str | None = None,
    limit: int = 50,
    since: date | None = None,
) -> list[RunView]:
    query = select(recon_runs).order_by(recon_runs.c.bill_date.desc(), recon_runs.c.id.desc()).limit(limit)
    if merchant_id is not None:
        query = query.where(recon_runs.c.merchant_id == merchant_id)
    if provider:
        query = query.where(recon_runs.c.provider == provider)
    if since is not None:
        query = query.where(recon_runs.c.bill_date >= since)
    rows = conn.execute(query).all()
    opened = _open_counts(conn, [r.id for r in rows])
    return [run_view_dict(dict(r._mapping), opened.get(r.id, 0)) for r in rows]


def list_discrepancies(
    conn: Connection,
    merchant_id: str | None,
    *,
    run_id: str | None = None,
    status: str | None = None,
    cls: str | None = None,
    limit: int | None = 200,
    offset: int = 0,
) -> list[DiscrepancyView]:
    query = select(recon_discrepancies).order_by(
        recon_discrepancies.c.bill_date.desc(),
        recon_discrepancies.c.line.is_(None),
        recon_discrepancies.c.line,
        recon_discrepancies.c.id,
    )
    if run_id is not None:
        query = query.where(recon_discrepancies.c.run_id == run_id)
    if merchant_id is not None:
        query = query.where(recon_discrepancies.c.merchant_id == merchant_id)
    if status:
        query = query.where(recon_discrepancies.c.status == status)
    if cls:
        query = query.where(recon_discrepancies.c.disc_class == cls)
    if limit is not None:
        query = query.limit(limit).offset(offset)
    return [discrepancy_view(r) for r in conn.execute(query)]


def get_discrepancy(conn: Connection, merchant_id: str | None, discrepancy_id: str) -> Any:
    row = conn.execute(select(recon_discrepancies).where(recon_discrepancies.c.id == discrepancy_id)).first()
    if row is None or (merchant_id is not None and row.merchant_id != merchant_id):
        raise not_found("discrepancy", discrepancy_id)
    return row


def resolve_discrepancy(
    conn: Connection, deps: Deps, actor: Actor, discrepancy_id: str, resolution: str, merchant_id: str | None
) -> DiscrepancyView:
    """A manager closes a discrepancy (audited: who, when, why); its exception closes with it."""
    row = get_discrepancy(conn, merchant_id, discrepancy_id)
    if row.status != "open":
        raise conflict(
            "discrepancy_resolved", "This discrepancy is already resolved.", {"resolved_by": row.resolved_by}
        )
    settle_discrepancy(conn, deps, row.id, actor.label, resolution)
    if row.exception_id is not None:
        status = conn.execute(select(exceptions.c.status).where(exceptions.c.id == row.exception_id)).scalar()
        if status == "open":
            exc_svc.resolve(conn, deps, actor, row.exception_id, resolution, None)
    return discrepancy_view(get_discrepancy(conn, merchant_id, discrepancy_id))


def resolve_for_exception(conn: Connection, deps: Deps, exception_id: str, who: str, resolution: str) -> None:
    """Resolving an exception resolves the discrepancies that opened it (same who and why)."""
    conn.execute(
        update(recon_discrepancies)
        .where(recon_discrepancies.c.exception_id == exception_id, recon_discrepancies.c.status == "open")
        .values(status="resolved", resolved_at=deps.clock.now(), resolved_by=who, resolution=resolution[:500])
    )


# --------------------------------------------------------------------------- export


EXPORT_FIELDS = DISC_FIELDS


def export_csv(rows: list[DiscrepancyView]) -> str:
    out = io.StringIO()
    # CRLF (RFC 4180) rows: the csv module quotes a cell holding any line-terminator character, so a bare
    # CR in provider or merchant text stays inside its quoted cell instead of starting a new row there.
    writer = csv.DictWriter(out, fieldnames=list(EXPORT_FIELDS), lineterminator="\r\n", extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        # every cell through the one formula-injection rule (domain/csvsafe.py): bill fields are provider text
        writer.writerow({k: safe_cell(r.get(k)) for k in EXPORT_FIELDS})
    return out.getvalue()


def history(conn: Connection, merchant_id: str | None, since: date) -> list[HistoryPoint]:
    """Per day and class: discrepancies found and their amounts (for the report's charts)."""
    query = (
        select(
            recon_discrepancies.c.bill_date,
            recon_discrepancies.c.disc_class,
            func.count(),
            func.coalesce(
                func.sum(
                    func.coalesce(recon_discrepancies.c.provider_amount, recon_discrepancies.c.local_amount)
                ),
                0,
            ),
        )
        .where(recon_discrepancies.c.bill_date >= since)
        .group_by(recon_discrepancies.c.bill_date, recon_discrepancies.c.disc_class)
    )
    if merchant_id is not None:
        query = query.where(recon_discrepancies.c.merchant_id == merchant_id)
    return [
        {"bill_date": r[0], "class": r[1], "count": int(r[2]), "amount": int(r[3])}
        for r in conn.execute(query)
    ]
