"""Fees and 跳码 on every imported bill (docs/settlement.md; shared/reference/operations.md §3, §4).

For a merchant with a fee contract in force on the bill's day, every payment and refund row is checked:

* ``code_jump`` (跳码): the bill states another rate than the contract, or the bill's merchant number
  (and the MCC inside a 15-digit UnionPay number) differs from the registered one. The evidence is the
  list of ``{field, contracted, billed}`` and the row itself.
* ``fee_mismatch``: the rate agrees (or is not stated) but the fee is not the contract's fee of the
  amount (half-up per transaction, capped; refunds return the fee pro rata, ``domain/fees.py``).

Each finding carries ``leakage_e5`` = billed fee - contracted fee (0.00001 yuan; positive when the
merchant paid more), summed per merchant and month by ``leakage_by_month``.

The ledger books the fees a bill confirms: one ``fee`` transaction per payment (debit
``expense:fees:<provider>``, credit ``tender:<provider>``) and its reverse for a returned fee on a
refund, once per payment or refund whatever the number of bills that repeat it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from typing import Any, TypedDict

import duckdb
from sqlalchemy import Connection, func, insert, select

from tillit.adapters.db.schema import fee_findings, ledger_postings, payments, refunds
from tillit.domain.fees import (
    CARD_KINDS,
    Identity,
    code_jump_evidence,
    e5_to_fen,
    fee_fen,
    fee_matches,
    fen_to_e5,
    mcc_from_unionpay_merchant_no,
)
from tillit.domain.ledger import Posting, fee_postings, fee_return_postings
from tillit.fees.contracts import Contract, contracts_between, in_force
from tillit.kernel.context import Deps, iso
from tillit.payments.accounts import sub_merchant_of
from tillit.reconciliation.formats import ParsedBill
from tillit.sales import ledger

CHUNK = 500
#: Findings kept per bill; beyond it the bill is plainly of another contract and the count says so.
MAX_FINDINGS_PER_BILL = 10_000


@dataclass(frozen=True, slots=True)
class FeeCheck:
    """What one bill's fee check found and booked."""

    contract_id: str | None
    checked: int
    code_jump: int
    fee_mismatch: int
    leakage_e5: int
    fees_booked: int


class FindingView(TypedDict):
    id: str
    merchant_id: str
    provider: str
    bill_id: str
    bill_date: str
    line: int
    finding_class: str
    kind: str
    out_trade_no: str | None
    amount: int
    contract_id: str
    evidence: list[dict[str, str]]
    billed_fee_e5: int | None
    expected_fee_e5: int
    leakage_e5: int
    created_at: str | None


class LeakageView(TypedDict):
    merchant_id: str
    month: str
    findings: int
    code_jump: int
    leakage_e5: int
    leakage_fen: int


def _expected_e5(contract: Contract, kind: str, amount: int) -> int:
    fee = fee_fen(amount, contract.rate_ppm, contract.cap_fen)
    return -fen_to_e5(fee) if kind == "refund" else fen_to_e5(fee)


def _contract_identity(contract: Contract, sub_merchant: str | None) -> Identity:
    return Identity(
        rate_ppm=contract.rate_ppm,
        merchant_no=contract.merchant_no,
        merchant_name=contract.merchant_name,
        mcc=contract.mcc,
        sub_merchant=sub_merchant,
    )


def _sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _per_kind(by_kind: dict[str, Contract | None], pick: str) -> str:
    """A SQL expression: the ``pick`` attribute (rate_ppm / cap_fen) of the contract that applies to a
    row's ``card_kind`` (its own kind's contract, else the ``any`` one; NULL when neither exists)."""

    def value(kind: str) -> str:
        contract = by_kind.get(kind) or by_kind.get("any")
        got = getattr(contract, pick) if contract is not None else None
        return "NULL" if got is None else str(int(got))

    cases = " ".join(f"WHEN '{k}' THEN {value(k)}" for k in CARD_KINDS if k != "any")
    return f"(CASE coalesce(card_kind, 'any') {cases} ELSE {value('any')} END)"


def check_bill(
    conn: Connection,
    deps: Deps,
    con: duckdb.DuckDBPyConnection,
    *,
    merchant_id: str,
    bill: ParsedBill,
    bill_id: str,
    day: date,
) -> FeeCheck:
    """Check ``bill`` (already parsed into DuckDB) against the contracts on ``day`` and book its fees.
    Runs inside the import's transaction, so a failed import leaves neither findings nor postings.

    Each row is checked against the contract of its card kind when the bill names one (WeChat
    ``付款银行``: debit / credit / balance), else the ``any`` contract; and against the merchant's
    registered identity: the contract's merchant number / MCC (bill-wide), its merchant name (Alipay
    ``门店名称`` per row) and the sub-merchant 进件 issued (WeChat ``特约商户号`` per row)."""
    contracts = contracts_between(conn, merchant_id, bill.provider, day, day)
    by_kind = {kind: in_force(contracts, day, kind) for kind in CARD_KINDS}
    by_kind = {k: (c if c is not None and c.card_kind == k else None) for k, c in by_kind.items()}
    booked = _book_fees(conn, deps, con, merchant_id=merchant_id, bill=bill)
    if not any(by_kind.values()):
        return FeeCheck(None, 0, 0, 0, 0, booked)
    registered_sub = sub_merchant_of(conn, merchant_id, bill.provider)
    billed_account = Identity(merchant_no=bill.account, mcc=mcc_from_unionpay_merchant_no(bill.account))
    bill_wide = any(
        code_jump_evidence(_contract_identity(c, None), billed_account) for c in by_kind.values() if c
    )
    rate, cap, unit = _per_kind(by_kind, "rate_ppm"), _per_kind(by_kind, "cap_fen"), bill.fee_unit
    names = sorted({(c.merchant_name or "").strip() for c in by_kind.values() if c} - {""})
    # The candidates, chosen in DuckDB: a stated rate that differs, a fee outside half a unit of the
    # exact product (a cap or the fen rounding is then checked in Python), a row naming another
    # sub-merchant or store, or every row when the bill itself names another merchant.
    identity = []
    if registered_sub:
        identity.append(f"(sub_merchant IS NOT NULL AND sub_merchant <> {_sql_text(registered_sub)})")
    if names:
        identity.append(
            f"(store_name IS NOT NULL AND trim(store_name) NOT IN ({', '.join(map(_sql_text, names))}))"
        )
    exact = f"(CASE WHEN {cap} IS NULL THEN amount * {rate} ELSE least(amount * {rate}, {cap} * 1000000) END)"
    where = (
        "TRUE"
        if bill_wide
        else f"(rate_ppm IS NOT NULL AND rate_ppm <> {rate}) "
        f"OR (fee IS NOT NULL AND 2 * abs(abs(fee) * 1000 - {exact}) > {unit * 1000})"
        + "".join(f" OR {c}" for c in identity)
    )
    counted = con.execute(
        f"SELECT count(*) FROM {bill.table} WHERE kind IN ('payment','refund') AND {rate} IS NOT NULL"
    ).fetchone()
    checked = int(counted[0]) if counted else 0
    rows = con.execute(
        f"SELECT line, kind, out_trade_no, amount, fee, rate_ppm, sub_merchant, store_name, card_kind "
        f"FROM {bill.table} WHERE kind IN ('payment','refund') AND {rate} IS NOT NULL AND ({where}) "
        f"ORDER BY line LIMIT {MAX_FINDINGS_PER_BILL}"
    ).fetchall()
    now = deps.clock.now()
    found: list[dict[str, Any]] = []
    for line, kind, out_trade_no, amount, fee, rate_ppm, sub, store, card_kind in rows:
        contract = by_kind.get(card_kind or "any") or by_kind["any"]
        if contract is None:
            continue
        billed = Identity(
            rate_ppm=None if rate_ppm is None else int(rate_ppm),
            merchant_no=billed_account.merchant_no,
            mcc=billed_account.mcc,
            merchant_name=store,
            sub_merchant=sub,
        )
        differences = code_jump_evidence(_contract_identity(contract, registered_sub), billed)
        # Alipay's fee return on refunds is unconfirmed (operations.md §3.3): a refund row that returns
        # nothing is accepted there; one that returns something must return it pro rata.
        no_return = bill.provider == "alipay" and kind == "refund" and fee is not None and int(fee) == 0
        fee_ok = (
            fee is None
            or no_return
            or fee_matches(abs(int(fee)), int(amount), contract.rate_ppm, contract.cap_fen, unit)
        )
        if not differences and fee_ok:
            continue
        expected = _expected_e5(contract, kind, int(amount))
        found.append(
            {
                "id": deps.ids.new(),
                "merchant_id": merchant_id,
                "provider": bill.provider,
                "bill_id": bill_id,
                "bill_date": day,
                "line": int(line),
                "finding_class": "code_jump" if differences else "fee_mismatch",
                "kind": kind,
                "out_trade_no": (out_trade_no or "")[:64] or None,
                "amount": int(amount),
                "contract_id": contract.id,
                "evidence": json.dumps(
                    [{"field": d.field, "contracted": d.contracted, "billed": d.billed} for d in differences],
                    ensure_ascii=False,
                ),
                "billed_fee_e5": None if fee is None else int(fee),
                "expected_fee_e5": expected,
                "leakage_e5": 0 if fee is None else int(fee) - expected,
                "created_at": now,
            }
        )
    for start in range(0, len(found), CHUNK):
        conn.execute(insert(fee_findings), found[start : start + CHUNK])
    jumps = sum(1 for f in found if f["finding_class"] == "code_jump")
    main = by_kind["any"] or next(c for c in by_kind.values() if c is not None)
    return FeeCheck(
        main.id, checked, jumps, len(found) - jumps, sum(int(f["leakage_e5"]) for f in found), booked
    )


def fee_txn(entity_id: str) -> str:
    """The ledger transaction id of the fee of a payment (or the fee returned on a refund): derived
    from the id, so a second bill naming the same payment finds it already booked."""
    return hashlib.sha256(f"fee:{entity_id}".encode()).hexdigest()[:32]


def _chunks(values: list[str]) -> Iterable[list[str]]:
    for i in range(0, len(values), CHUNK):
        yield values[i : i + CHUNK]


def _book_fees(
    conn: Connection, deps: Deps, con: duckdb.DuckDBPyConnection, *, merchant_id: str, bill: ParsedBill
) -> int:
    """Book the fee of each payment row and the returned fee of each refund row the bill states, for
    our own captured payments and succeeded refunds; a payment or refund already booked is skipped."""
    stated = con.execute(
        f"SELECT kind, out_trade_no, out_refund_no, fee FROM {bill.table} "
        "WHERE kind IN ('payment','refund') AND fee IS NOT NULL AND fee <> 0"
    ).fetchall()
    # Our ids are at most 32 characters (schema ID); a longer bill id cannot be ours (and PostgreSQL
    # would refuse to compare it with the column).
    pay_fees = {
        str(r[1]): e5_to_fen(int(r[3])) for r in stated if r[0] == "payment" and r[1] and len(r[1]) <= 32
    }
    ref_fees = {
        str(r[2]): e5_to_fen(abs(int(r[3]))) for r in stated if r[0] == "refund" and r[2] and len(r[2]) <= 32
    }
    now = deps.clock.now()
    booked = 0
    for ids in _chunks(sorted(pay_fees)):
        done = _booked(conn, merchant_id, [fee_txn(i) for i in ids])
        for row in conn.execute(
            select(payments.c.id, payments.c.order_id, payments.c.currency).where(
                payments.c.merchant_id == merchant_id,
                payments.c.id.in_(ids),
                payments.c.provider == bill.provider,
                payments.c.status.in_(("captured", "refunded")),
            )
        ):
            fee = pay_fees[row.id]
            if fee_txn(row.id) in done or fee <= 0:
                continue
            _post(
                conn,
                merchant_id,
                row.order_id,
                row.currency,
                fee_txn(row.id),
                fee_postings(bill.provider, fee),
                now,
                payment_id=row.id,
            )
            booked += 1
    for ids in _chunks(sorted(ref_fees)):
        done = _booked(conn, merchant_id, [fee_txn(i) for i in ids])
        for ref in conn.execute(
            select(refunds.c.id, refunds.c.order_id, refunds.c.currency, refunds.c.payment_id).where(
                refunds.c.merchant_id == merchant_id, refunds.c.id.in_(ids), refunds.c.status == "succeeded"
            )
        ):
            fee = ref_fees[ref.id]
            if fee_txn(ref.id) in done or fee <= 0:
                continue
            _post(
                conn,
                merchant_id,
                ref.order_id,
                ref.currency,
                fee_txn(ref.id),
                fee_return_postings(bill.provider, fee),
                now,
                payment_id=ref.payment_id,
                refund_id=ref.id,
            )
            booked += 1
    return booked


def _booked(conn: Connection, merchant_id: str, txn_ids: list[str]) -> set[str]:
    rows = conn.execute(
        select(ledger_postings.c.txn_id).where(
            ledger_postings.c.merchant_id == merchant_id, ledger_postings.c.txn_id.in_(txn_ids)
        )
    )
    return {r[0] for r in rows}


def _post(
    conn: Connection,
    merchant_id: str,
    order_id: str,
    currency: str,
    txn_id: str,
    postings: list[Posting],
    now: Any,
    *,
    payment_id: str,
    refund_id: str | None = None,
) -> None:
    ledger.post(
        conn,
        txn_id=txn_id,
        merchant_id=merchant_id,
        order_id=order_id,
        currency=currency,
        kind="fee",
        postings=postings,
        now=now,
        payment_id=payment_id,
        refund_id=refund_id,
    )


def _finding(row: Any) -> FindingView:
    return {
        "id": row.id,
        "merchant_id": row.merchant_id,
        "provider": row.provider,
        "bill_id": row.bill_id,
        "bill_date": row.bill_date.isoformat(),
        "line": int(row.line),
        "finding_class": row.finding_class,
        "kind": row.kind,
        "out_trade_no": row.out_trade_no,
        "amount": int(row.amount),
        "contract_id": row.contract_id,
        "evidence": json.loads(row.evidence),
        "billed_fee_e5": row.billed_fee_e5,
        "expected_fee_e5": int(row.expected_fee_e5),
        "leakage_e5": int(row.leakage_e5),
        "created_at": iso(row.created_at),
    }


def list_findings(
    conn: Connection,
    merchant_id: str | None,
    *,
    finding_class: str | None = None,
    since: date | None = None,
    until: date | None = None,
    limit: int = 200,
    offset: int = 0,
) -> list[FindingView]:
    """Fee and 跳码 findings, newest bill day first; ``merchant_id`` None reads every merchant's."""
    query = select(fee_findings).order_by(fee_findings.c.bill_date.desc(), fee_findings.c.line)
    if merchant_id is not None:
        query = query.where(fee_findings.c.merchant_id == merchant_id)
    if finding_class is not None:
        query = query.where(fee_findings.c.finding_class == finding_class)
    if since is not None:
        query = query.where(fee_findings.c.bill_date >= since)
    if until is not None:
        query = query.where(fee_findings.c.bill_date <= until)
    return [_finding(r) for r in conn.execute(query.limit(limit).offset(offset))]


def leakage_by_month(
    conn: Connection, merchant_id: str | None, *, since: date, until: date
) -> list[LeakageView]:
    """The monthly fee-leakage figure per merchant: the sum of billed - contracted fees over the
    findings of the bills of ``since..until`` (0.00001 yuan, and rounded to fen)."""
    rows = conn.execute(
        select(
            fee_findings.c.merchant_id,
            fee_findings.c.bill_date,
            fee_findings.c.finding_class,
            func.count().label("n"),
            func.sum(fee_findings.c.leakage_e5).label("leak"),
        )
        .where(
            fee_findings.c.bill_date >= since,
            fee_findings.c.bill_date <= until,
            *([fee_findings.c.merchant_id == merchant_id] if merchant_id is not None else []),
        )
        .group_by(fee_findings.c.merchant_id, fee_findings.c.bill_date, fee_findings.c.finding_class)
    )
    months: dict[tuple[str, str], dict[str, int]] = {}
    for r in rows:
        key = (r.merchant_id, r.bill_date.strftime("%Y-%m"))
        acc = months.setdefault(key, {"findings": 0, "code_jump": 0, "leak": 0})
        acc["findings"] += int(r.n)
        acc["code_jump"] += int(r.n) if r.finding_class == "code_jump" else 0
        acc["leak"] += int(r.leak or 0)
    return [
        {
            "merchant_id": m,
            "month": month,
            "findings": acc["findings"],
            "code_jump": acc["code_jump"],
            "leakage_e5": acc["leak"],
            "leakage_fen": e5_to_fen(acc["leak"]),
        }
        for (m, month), acc in sorted(months.items())
    ]
