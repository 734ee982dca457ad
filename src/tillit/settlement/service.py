"""Settlement use cases (docs/settlement.md): import a statement, compute and store each merchant-day's
outcome, and read them back (API, CLI, the daily job, the merchant's statement page and CSV).

Contract: importing is idempotent twice over — the same file (content hash) answers the statement it
already has, and a line whose key (资金流水单号 / 账务流水号 / bank reference) is already stored is not
stored again, so overlapping files never double-count. ``run`` recomputes the days of a window from
scratch and replaces their stored outcome; it never changes payments, refunds or statements. Every
read is scoped by merchant: another merchant's day or statement answers like an unknown one.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any, TypedDict

import duckdb
import pyarrow as pa
from sqlalchemy import Connection, and_, delete, func, insert, select

from tillit.adapters.db.engine import Database
from tillit.adapters.db.schema import (
    fee_contracts,
    merchants,
    payments,
    refunds,
    settlement_days,
    settlement_statements,
    statement_lines,
)
from tillit.domain.csvsafe import safe_cell
from tillit.domain.errors import invalid, not_found
from tillit.domain.settlement import DEFAULT_GRACE_DAYS, MAX_CYCLE_DAYS, STATUSES
from tillit.kernel.context import Deps, iso
from tillit.reconciliation import service as recon
from tillit.settlement import matching, statements

CHINA = timezone(timedelta(hours=8))
CHUNK = 500
#: One run covers at most this many trade days (the API and CLI say so; the daily job uses 40).
MAX_WINDOW_DAYS = 92
LOOKBACK_DAYS = 40  # the daily job rechecks this many trade days: the longest cycle plus grace


class StatementView(TypedDict):
    id: str
    merchant_id: str
    source: str
    provider: str | None
    filename: str
    sha256: str
    line_count: int
    new_lines: int
    totals: dict[str, Any]
    imported_by: str
    imported_at: str | None
    created: bool


class DayView(TypedDict):
    merchant_id: str
    provider: str
    trade_day: str
    due_day: str
    payments: int
    refund_count: int
    gross: int
    refunds: int
    fees: int
    fee_returns: int
    expected: int
    received: int
    received_lines: int
    received_source: str | None
    last_credit_day: str | None
    difference: int
    status: str
    age_days: int
    next_action: str
    evidence: dict[str, Any]
    checked_at: str | None


class LineView(TypedDict):
    source: str
    provider: str
    line_key: str
    booked_at: str | None
    booked_day: str
    kind: str
    amount: int
    fee: int | None
    out_trade_no: str | None
    business_no: str | None
    trade_day: str | None
    balance: int | None
    note: str | None


def china_day(ts: datetime) -> date:
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.astimezone(CHINA).date()


def _day_start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=CHINA).astimezone(UTC)


# --------------------------------------------------------------------------- import


def _statement_view(row: Any, created: bool) -> StatementView:
    return {
        "id": row["id"],
        "merchant_id": row["merchant_id"],
        "source": row["source"],
        "provider": row["provider"],
        "filename": row["filename"],
        "sha256": row["sha256"],
        "line_count": int(row["line_count"]),
        "new_lines": int(row["new_lines"]),
        "totals": json.loads(row["totals"]) if isinstance(row["totals"], str) else row["totals"],
        "imported_by": row["imported_by"],
        "imported_at": iso(row["imported_at"]),
        "created": created,
    }


def check_digest(data: bytes, digest: tuple[str, str] | None) -> None:
    """Refuse a file whose digest is not the one the provider gave (``(hash_type, hash_value)``, hex):
    WeChat's fund-flow download gives the SHA-1 of the uncompressed file (operations.md §1.1)."""
    if digest is None:
        return
    hash_type, expected = digest
    if hash_type.replace("-", "").upper() != "SHA1":
        raise invalid(
            "statement_digest_unsupported",
            "Only a SHA1 hash can be checked.",
            {"hash_type": hash_type[:20]},
        )
    actual = hashlib.sha1(data).hexdigest()
    if actual != expected.strip().lower():
        raise invalid(
            "statement_digest_mismatch",
            "The file's SHA-1 is not the hash the provider gave for it (changed or cut short): "
            "nothing was imported; download it again.",
            {"hash_type": "SHA1", "expected": expected.strip().lower()[:64], "actual": actual},
        )


def import_statement(
    db: Database,
    deps: Deps,
    *,
    merchant_id: str,
    data: bytes,
    source: str,
    filename: str,
    actor: str,
    digest: tuple[str, str] | None = None,
) -> StatementView:
    """Parse and store a statement file for ``merchant_id`` (see the module contract); with ``digest``
    the file must have that hash first (``check_digest``), else nothing is written."""
    check_digest(data, digest)
    parsed = statements.parse(data, source)
    sha = hashlib.sha256(data).hexdigest()
    with db.transaction() as conn:
        if conn.execute(select(merchants.c.id).where(merchants.c.id == merchant_id)).first() is None:
            raise not_found("merchant", merchant_id)
        existing = (
            conn.execute(
                select(settlement_statements).where(
                    settlement_statements.c.merchant_id == merchant_id,
                    settlement_statements.c.source == source,
                    settlement_statements.c.sha256 == sha,
                )
            )
            .mappings()
            .first()
        )
        if existing is not None:
            return _statement_view(existing, created=False)
        seen: set[str] = set()
        keys = sorted({line.line_key for line in parsed.lines})
        for start in range(0, len(keys), CHUNK):
            chunk = keys[start : start + CHUNK]
            seen.update(
                r[0]
                for r in conn.execute(
                    select(statement_lines.c.line_key).where(
                        statement_lines.c.merchant_id == merchant_id,
                        statement_lines.c.source == source,
                        statement_lines.c.line_key.in_(chunk),
                    )
                )
            )
        statement_id = deps.ids.new()
        fresh: list[dict[str, Any]] = []
        for line in parsed.lines:
            if line.line_key in seen:
                continue  # already imported from an overlapping file: the key is the line's identity
            seen.add(line.line_key)
            fresh.append(
                {
                    "merchant_id": merchant_id,
                    "statement_id": statement_id,
                    "source": source,
                    "provider": line.provider,
                    "line_key": line.line_key,
                    "booked_at": line.booked_at,
                    "booked_day": line.booked_day,
                    "kind": line.kind,
                    "amount": line.amount,
                    "fee": line.fee,
                    "out_trade_no": line.out_trade_no,
                    "business_no": line.business_no,
                    "trade_day": line.trade_day,
                    "balance": line.balance,
                    "note": line.note,
                }
            )
        record = {
            "id": statement_id,
            "merchant_id": merchant_id,
            "source": source,
            "provider": parsed.provider,
            "filename": filename[:255],
            "sha256": sha,
            "line_count": len(parsed.lines),
            "new_lines": len(fresh),
            "totals": json.dumps(parsed.totals, ensure_ascii=False, default=str),
            "imported_by": actor[:100],
            "imported_at": deps.clock.now(),
        }
        conn.execute(insert(settlement_statements).values(**record))
        for start in range(0, len(fresh), CHUNK):
            conn.execute(insert(statement_lines), fresh[start : start + CHUNK])
    return _statement_view(record, created=True)


# --------------------------------------------------------------------------- load and match


def _append(
    con: duckdb.DuckDBPyConnection, table: str, names: Sequence[str], rows: Iterable[Sequence[Any]]
) -> None:
    data = list(rows)
    if not data:
        return
    columns = list(zip(*data, strict=True))
    arrow = pa.table({n: pa.array(list(c)) for n, c in zip(names, columns, strict=True)})
    con.register("st_incoming", arrow)
    try:
        con.execute(f"INSERT INTO {table} ({', '.join(names)}) SELECT {', '.join(names)} FROM st_incoming")
    finally:
        con.unregister("st_incoming")


def load(conn: Connection, con: duckdb.DuckDBPyConnection, merchant_id: str, first: date, last: date) -> None:
    """Fill the matching tables with one merchant's trade days ``first..last`` and the statement lines
    that can settle them."""
    matching.create_tables(con)
    start, end = _day_start(first), _day_start(last + timedelta(days=1))
    pay_columns = (
        payments.c.id,
        payments.c.provider,
        payments.c.amount,
        payments.c.created_at,
        payments.c.card_kind,
    )
    pay_rows = conn.execute(
        select(*pay_columns).where(
            payments.c.merchant_id == merchant_id,
            payments.c.provider.is_not(None),
            payments.c.status.in_(("captured", "refunded")),
            payments.c.created_at >= start,
            payments.c.created_at < end,
        )
    ).all()
    ref_rows = conn.execute(
        select(
            refunds.c.id, refunds.c.payment_id, refunds.c.amount, refunds.c.created_at, payments.c.provider
        )
        .join(
            payments,
            and_(payments.c.merchant_id == refunds.c.merchant_id, payments.c.id == refunds.c.payment_id),
        )
        .where(
            refunds.c.merchant_id == merchant_id,
            refunds.c.status == "succeeded",
            payments.c.provider.is_not(None),
            refunds.c.created_at >= start,
            refunds.c.created_at < end,
        )
    ).all()
    in_window = {r.id for r in pay_rows}
    older = sorted({r.payment_id for r in ref_rows} - in_window)
    old_rows: list[Any] = []
    for i in range(0, len(older), CHUNK):
        old_rows += conn.execute(
            select(*pay_columns).where(
                payments.c.merchant_id == merchant_id, payments.c.id.in_(older[i : i + CHUNK])
            )
        ).all()
    _append(
        con,
        "st_pay",
        ("merchant_id", "provider", "id", "trade_day", "amount", "in_window"),
        [(merchant_id, r.provider, r.id, china_day(r.created_at), int(r.amount), True) for r in pay_rows]
        + [(merchant_id, r.provider, r.id, china_day(r.created_at), int(r.amount), False) for r in old_rows],
    )
    _append(
        con,
        "st_ref",
        ("merchant_id", "provider", "id", "payment_id", "trade_day", "amount"),
        [
            (merchant_id, r.provider, r.id, r.payment_id, china_day(r.created_at), int(r.amount))
            for r in ref_rows
        ],
    )
    _append(
        con,
        "st_pay_kind",
        ("merchant_id", "id", "card_kind"),
        [(merchant_id, r.id, r.card_kind) for r in [*pay_rows, *old_rows] if r.card_kind],
    )
    terms = (
        "rate_ppm",
        "cap_fen",
        "settle_days",
        "working_days",
        "eff_from",
        "eff_to",
    )
    contracts = conn.execute(select(fee_contracts).where(fee_contracts.c.merchant_id == merchant_id)).all()
    for table, kinds in (("st_contract", False), ("st_kind_contract", True)):
        _append(
            con,
            table,
            ("merchant_id", "provider", *(("card_kind",) if kinds else ()), *terms),
            [
                (
                    merchant_id,
                    r.provider,
                    *((r.card_kind,) if kinds else ()),
                    int(r.rate_ppm),
                    r.cap_fen,
                    int(r.settle_days),
                    bool(r.working_days),
                    r.effective_from,
                    r.effective_to,
                )
                for r in contracts
                if (r.card_kind != "any") == kinds
            ],
        )
    _append(
        con,
        "st_line",
        (
            "merchant_id",
            "provider",
            "source",
            "line_key",
            "kind",
            "amount",
            "out_trade_no",
            "booked_day",
            "trade_day",
        ),
        [
            (
                merchant_id,
                r.provider,
                r.source,
                r.line_key,
                r.kind,
                int(r.amount),
                r.out_trade_no,
                r.booked_day,
                r.trade_day,
            )
            for r in conn.execute(
                select(statement_lines).where(
                    statement_lines.c.merchant_id == merchant_id,
                    statement_lines.c.booked_day >= first,
                    statement_lines.c.booked_day <= last + timedelta(days=MAX_CYCLE_DAYS + 10),
                )
            )
        ],
    )


def _window(first: date, last: date) -> None:
    if last < first:
        raise invalid(
            "settlement_window_invalid",
            "`until` is before `since`",
            {"since": first.isoformat(), "until": last.isoformat()},
        )
    if (last - first).days + 1 > MAX_WINDOW_DAYS:
        raise invalid(
            "settlement_window_invalid",
            f"A settlement run covers at most {MAX_WINDOW_DAYS} trade days.",
            {"max_days": MAX_WINDOW_DAYS},
        )


def run(
    db: Database,
    deps: Deps,
    *,
    merchant_id: str,
    first: date,
    last: date,
    grace_days: int = DEFAULT_GRACE_DAYS,
) -> list[DayView]:
    """Recompute and store the outcome of the merchant's trade days ``first..last`` (China time) as
    of the clock's today; days with no provider trade or refund are not stored."""
    _window(first, last)
    today = china_day(deps.clock.now())
    con = recon.connect()
    try:
        with db.read() as conn:
            if conn.execute(select(merchants.c.id).where(merchants.c.id == merchant_id)).first() is None:
                raise not_found("merchant", merchant_id)
            load(conn, con, merchant_id, first, last)
        results = matching.match(con, today, grace_days)
    finally:
        con.close()
    now = deps.clock.now()
    records = [
        {
            "merchant_id": r.merchant_id,
            "provider": r.provider,
            "trade_day": r.expected.trade_day,
            "due_day": r.expected.due,
            "payments": r.expected.payments,
            "refund_count": r.expected.refund_count,
            "gross": r.expected.gross,
            "refunds": r.expected.refunds,
            "fees": r.expected.fees,
            "fee_returns": r.expected.fee_returns,
            "expected": r.expected.net,
            "received": r.received.total,
            "received_lines": r.received.lines,
            "received_source": r.source,
            "last_credit_day": r.received.last_day,
            "status": r.outcome.status,
            "age_days": r.outcome.age_days,
            "next_action": r.outcome.next_action[:400],
            "evidence": r.evidence_json(),
            "checked_at": now,
        }
        for r in results
    ]
    with db.transaction() as conn:
        conn.execute(
            delete(settlement_days).where(
                settlement_days.c.merchant_id == merchant_id,
                settlement_days.c.trade_day >= first,
                settlement_days.c.trade_day <= last,
            )
        )
        for start in range(0, len(records), CHUNK):
            conn.execute(insert(settlement_days), records[start : start + CHUNK])
    return [_day_view(r) for r in sorted(records, key=lambda x: (x["trade_day"], x["provider"]))]


# --------------------------------------------------------------------------- reads


def _day_view(row: Any) -> DayView:
    evidence = row["evidence"]
    return {
        "merchant_id": row["merchant_id"],
        "provider": row["provider"],
        "trade_day": row["trade_day"].isoformat(),
        "due_day": row["due_day"].isoformat(),
        "payments": int(row["payments"]),
        "refund_count": int(row["refund_count"]),
        "gross": int(row["gross"]),
        "refunds": int(row["refunds"]),
        "fees": int(row["fees"]),
        "fee_returns": int(row["fee_returns"]),
        "expected": int(row["expected"]),
        "received": int(row["received"]),
        "received_lines": int(row["received_lines"]),
        "received_source": row["received_source"],
        "last_credit_day": row["last_credit_day"].isoformat() if row["last_credit_day"] else None,
        "difference": int(row["received"]) - int(row["expected"]),
        "status": row["status"],
        "age_days": int(row["age_days"]),
        "next_action": row["next_action"],
        "evidence": json.loads(evidence) if isinstance(evidence, str) else evidence,
        "checked_at": iso(row["checked_at"]),
    }


def list_days(
    conn: Connection,
    merchant_id: str | None,
    *,
    since: date | None = None,
    until: date | None = None,
    status: str | None = None,
    provider: str | None = None,
    limit: int = 200,
    offset: int = 0,
) -> list[DayView]:
    """Stored merchant-days, newest first; ``merchant_id`` None reads every merchant's (operators)."""
    if status is not None and status not in STATUSES:
        raise invalid("settlement_status_invalid", f"status must be one of {', '.join(STATUSES)}")
    query = select(settlement_days).order_by(
        settlement_days.c.trade_day.desc(), settlement_days.c.merchant_id, settlement_days.c.provider
    )
    if merchant_id is not None:
        query = query.where(settlement_days.c.merchant_id == merchant_id)
    if since is not None:
        query = query.where(settlement_days.c.trade_day >= since)
    if until is not None:
        query = query.where(settlement_days.c.trade_day <= until)
    if status is not None:
        query = query.where(settlement_days.c.status == status)
    if provider is not None:
        query = query.where(settlement_days.c.provider == provider)
    return [_day_view(r) for r in conn.execute(query.limit(limit).offset(offset)).mappings()]


#: The outcomes of a merchant-day that mean money the merchant is owed has not arrived (未到账).
NOT_CREDITED = ("late", "short", "missing")


def not_credited_days(conn: Connection, merchant_id: str, now: datetime) -> int:
    """How many of ``merchant_id``'s merchant-days stand late, short or missing as of their last check:
    the figure monitoring's ``not_credited`` alert rule compares with its threshold (wired in bootstrap)."""
    query = (
        select(func.count())
        .select_from(settlement_days)
        .where(
            settlement_days.c.merchant_id == merchant_id,
            settlement_days.c.status.in_(NOT_CREDITED),
            settlement_days.c.checked_at <= now,
        )
    )
    return int(conn.execute(query).scalar_one())


def get_day(conn: Connection, merchant_id: str, provider: str, day: date) -> DayView:
    row = (
        conn.execute(
            select(settlement_days).where(
                settlement_days.c.merchant_id == merchant_id,
                settlement_days.c.provider == provider,
                settlement_days.c.trade_day == day,
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        raise not_found("settlement_day", f"{provider}/{day.isoformat()}")
    return _day_view(row)


def _line_view(row: Any) -> LineView:
    return {
        "source": row.source,
        "provider": row.provider,
        "line_key": row.line_key,
        "booked_at": iso(row.booked_at),
        "booked_day": row.booked_day.isoformat(),
        "kind": row.kind,
        "amount": int(row.amount),
        "fee": row.fee,
        "out_trade_no": row.out_trade_no,
        "business_no": row.business_no,
        "trade_day": row.trade_day.isoformat() if row.trade_day else None,
        "balance": row.balance,
        "note": row.note,
    }


def day_lines(conn: Connection, merchant_id: str, provider: str, day: date) -> list[LineView]:
    """The statement lines that bear on one merchant-day: those naming its payments or refunds, and
    those booked from the trade day to the longest cycle after it (withdrawals, bank credits)."""
    pay_ids = [
        r[0]
        for r in conn.execute(
            select(payments.c.id).where(
                payments.c.merchant_id == merchant_id,
                payments.c.provider == provider,
                payments.c.created_at >= _day_start(day),
                payments.c.created_at < _day_start(day + timedelta(days=1)),
            )
        )
    ][:CHUNK]
    rows = conn.execute(
        select(statement_lines)
        .where(
            statement_lines.c.merchant_id == merchant_id,
            statement_lines.c.provider == provider,
            (statement_lines.c.out_trade_no.in_(pay_ids))
            | (
                (statement_lines.c.booked_day >= day)
                & (statement_lines.c.booked_day <= day + timedelta(days=3))
            )
            | (statement_lines.c.trade_day == day),
        )
        .order_by(statement_lines.c.booked_at, statement_lines.c.line_key)
        .limit(1000)
    )
    return [_line_view(r) for r in rows]


def get_statement(conn: Connection, merchant_id: str | None, statement_id: str) -> StatementView:
    query = select(settlement_statements).where(settlement_statements.c.id == statement_id)
    if merchant_id is not None:
        query = query.where(settlement_statements.c.merchant_id == merchant_id)
    row = conn.execute(query).mappings().first()
    if row is None:
        raise not_found("statement", statement_id)
    return _statement_view(row, created=False)


def list_statements(conn: Connection, merchant_id: str | None, *, limit: int = 100) -> list[StatementView]:
    query = select(settlement_statements).order_by(settlement_statements.c.imported_at.desc()).limit(limit)
    if merchant_id is not None:
        query = query.where(settlement_statements.c.merchant_id == merchant_id)
    return [_statement_view(r, created=False) for r in conn.execute(query).mappings()]


CSV_COLUMNS = (
    "merchant_id", "provider", "trade_day", "due_day", "payments", "refund_count", "gross", "refunds", "fees",
    "fee_returns", "expected", "received", "difference", "status", "age_days", "last_credit_day",
    "received_source", "next_action",
)  # fmt: skip


def statement_csv(days: list[DayView]) -> str:
    """The merchant's settlement statement as CSV (amounts in fen; every cell formula-safe)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for day in days:
        writer.writerow([safe_cell(day[c]) for c in CSV_COLUMNS])  # type: ignore[literal-required]
    return out.getvalue()
