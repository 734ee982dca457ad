"""Shift close reports received from tills: verified against the hash chain, stored once."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select

from tillit.adapters.db.schema import shifts
from tillit.domain.errors import conflict, invalid
from tillit.domain.ids import normalise_id
from tillit.domain.shifts import GENESIS, canonical, chain_hash
from tillit.kernel.context import Actor, iso
from tillit.sales.views import ShiftView


def view(row: Any) -> ShiftView:
    return {
        "id": row.id,
        "terminal_id": row.terminal_id,
        "number": row.number,
        "status": row.status,
        "opened_at": iso(row.opened_at),
        "closed_at": iso(row.closed_at),
        "opening_float": row.opening_float,
        "counted_cash": row.counted_cash,
        "expected_cash": row.expected_cash,
        "report": json.loads(row.report) if row.report else None,
        "report_hash": row.report_hash,
        "prev_hash": row.prev_hash,
    }


def record_close(conn: Connection, actor: Actor, body: dict[str, Any]) -> tuple[int, ShiftView]:
    """Store a till's Z report. Its number must follow the terminal's last one and its ``prev_hash`` be
    that report's hash; the hash must be ``sha256(prev_hash + report)``. The same report again is 200."""
    actor.require("terminal")
    assert actor.terminal_id is not None and actor.merchant_id is not None
    shift_id = normalise_id(body["id"])
    report = body["report"]
    # Only this merchant's shifts: another merchant's id is an unused id here.
    mine = select(shifts).where(shifts.c.merchant_id == actor.merchant_id, shifts.c.id == shift_id)
    existing = conn.execute(mine).first()
    if existing is not None:
        if existing.terminal_id != actor.terminal_id or existing.report_hash != body["report_hash"]:
            raise conflict("id_conflict", "This shift id is already used by another report.")
        return 200, view(existing)
    if chain_hash(body["prev_hash"], report) != body["report_hash"]:
        raise invalid("shift_hash_mismatch", "report_hash is not sha256(prev_hash + report).")
    if report.get("number") != body["number"] or report.get("terminal_id") != actor.terminal_id:
        raise invalid("shift_report_mismatch", "The report's number or terminal differs from the request.")
    last = conn.execute(
        select(shifts.c.number, shifts.c.report_hash)
        .where(shifts.c.terminal_id == actor.terminal_id)
        .order_by(shifts.c.number.desc())
        .limit(1)
    ).first()
    expected_number = (last.number + 1) if last else 1
    expected_prev = last.report_hash if last else GENESIS
    if body["number"] != expected_number or body["prev_hash"] != expected_prev:
        raise conflict(
            "shift_chain_broken",
            f"Expected shift {expected_number} chained to {expected_prev[:12]}…;"
            " a report is missing or altered.",
            {"expected_number": expected_number, "expected_prev_hash": expected_prev},
        )
    conn.execute(
        insert(shifts).values(
            id=shift_id,
            merchant_id=actor.merchant_id,
            terminal_id=actor.terminal_id,
            number=body["number"],
            status="closed",
            opened_at=datetime.fromisoformat(report["opened_at"]),
            closed_at=datetime.fromisoformat(report["closed_at"]),
            opening_float=report["opening_float"],
            counted_cash=report["counted_cash"],
            expected_cash=report["expected_cash"],
            report=canonical(report),
            report_hash=body["report_hash"],
            prev_hash=body["prev_hash"],
        )
    )
    return 201, view(conn.execute(mine).one())


def list_shifts(
    conn: Connection, merchant_id: str, terminal_id: str | None, limit: int
) -> list[ShiftView]:
    query = (
        select(shifts)
        .where(shifts.c.merchant_id == merchant_id)
        .order_by(shifts.c.closed_at.desc(), shifts.c.number.desc())
        .limit(limit)
    )
    if terminal_id:
        query = query.where(shifts.c.terminal_id == terminal_id)
    return [view(r) for r in conn.execute(query)]
