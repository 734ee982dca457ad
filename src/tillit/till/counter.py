"""The counter's touch operations on top of the till's journal: the numpad (quantity, discount, price),
manager approvals, order discount and 抹零, hold and recall (挂单/取单), returns by receipt and the
customer display's state.

Everything is committed to the journal before it is shown, like every other till operation, so a held
sale, an approval or a return survives a restart. Refusals raise ``TillError`` and change nothing.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog

from tillit.domain.pricing import MAX_QUANTITY
from tillit.domain.tillrules import (
    MAX_PIN_FAILURES,
    over_limit,
    pin_lock_until,
    rounding_off,
    spread,
    verify_pin,
)
from tillit.till.service import MAX_DISCOUNT, Till, TillError

LINE_MODES = ("qty", "disc_pct", "disc_amt", "price")
ORDER_MODES = ("order_pct", "order_amt")
MAX_HOLD_NOTE = 100
MAX_HELD = 50
RETURN_TO = ("original", "cash")
log = structlog.get_logger("tillit.till")


@dataclass(frozen=True)
class Approval:
    """What the cashier typed for a manager: the PIN (checked against the store's hashes, never kept)
    and why the discount or price change is given."""

    pin: str
    reason: str


def _approver(conn: Any, till: Till, approval: Approval | None) -> str:
    """The name of the manager whose PIN this is; ``approval_required`` / ``wrong_pin`` otherwise.

    PINs are checked against the hashes the till holds in memory (fetched from the server; none after a
    restart until the server is reached: ``approvals_unavailable``). While locked out after too many wrong
    PINs no PIN is even checked (``pin_locked``). A right PIN is recorded in the journal here; a wrong one
    is recorded by ``_pin_guard`` once the refused change has been rolled back."""
    if approval is None or not approval.pin:
        raise TillError("approval_required")
    if not approval.reason.strip():
        raise TillError("approval_reason")
    _refuse_if_locked(conn, till)
    managers = till.settings()["manager_pins"]
    if not managers:
        raise TillError("approvals_unavailable")
    for manager in managers:
        if verify_pin(approval.pin, str(manager.get("pin_hash", ""))):
            conn.execute(
                "INSERT INTO pin_attempts(at, ok, manager) VALUES (?, 1, ?)",
                (till._now(), str(manager["name"])),
            )
            return str(manager["name"])
    raise TillError("wrong_pin")


def _failures(conn: Any) -> tuple[int, str | None]:
    """Wrong PINs in a row since the last right one, and when the last was typed."""
    row = conn.execute(
        "SELECT COUNT(*) AS n, MAX(at) AS last FROM pin_attempts WHERE ok = 0"
        " AND id > COALESCE((SELECT MAX(id) FROM pin_attempts WHERE ok = 1), 0)"
    ).fetchone()
    return int(row["n"]), row["last"]


def _lock_until(conn: Any) -> float | None:
    failures, last = _failures(conn)
    return pin_lock_until(failures, datetime.fromisoformat(last).timestamp()) if last else None


def _refuse_if_locked(conn: Any, till: Till) -> None:
    until = _lock_until(conn)
    now = till.clock.now().timestamp()
    if until is not None and now < until:
        raise TillError("pin_locked", minutes=max(1, math.ceil((until - now) / 60)))


@contextmanager
def _pin_guard(till: Till) -> Iterator[Any]:
    """A journal transaction for a change that may need a manager's PIN. A wrong PIN rolls the change
    back, then is recorded in the journal (never the PIN itself); the one that reaches the limit locks
    PIN entry and is answered ``pin_locked``."""
    try:
        with till.journal.tx() as conn:
            yield conn
    except TillError as exc:
        if exc.reason != "wrong_pin":
            raise
        with till.journal.tx() as conn:
            conn.execute("INSERT INTO pin_attempts(at, ok) VALUES (?, 0)", (till._now(),))
            failures, _ = _failures(conn)
            until = _lock_until(conn)
            if until is not None:
                stamp = datetime.fromtimestamp(until, UTC).isoformat()
                conn.execute(
                    "UPDATE pin_attempts SET locked_until = ? WHERE id = last_insert_rowid()", (stamp,)
                )
        log.warning("manager_pin_wrong", failures=failures, locked=until is not None)
        _refuse_if_locked_now(till)
        raise TillError("wrong_pin", left=MAX_PIN_FAILURES - failures % MAX_PIN_FAILURES) from exc


def _refuse_if_locked_now(till: Till) -> None:
    with till.journal.tx() as conn:
        _refuse_if_locked(conn, till)


def pin_lock(till: Till) -> dict[str, Any]:
    """For the page and monitoring: wrong PINs in a row and, while locked, the minutes left."""
    with till.journal.tx() as conn:
        failures, _ = _failures(conn)
        try:
            _refuse_if_locked(conn, till)
        except TillError as exc:
            return {"failures": failures, "locked_minutes": exc.params["minutes"]}
    return {"failures": failures, "locked_minutes": None}


def _record(
    conn: Any, till: Till, sale_id: str, kind: str, line_no: int | None, amount: int, who: str, why: str
) -> None:
    conn.execute(
        "INSERT INTO approvals(sale_id, kind, line_no, amount, approved_by, reason, at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (sale_id, kind, line_no, amount, who, why.strip()[:200], till._now()),
    )


def _open_sale(conn: Any) -> Any:
    sale = conn.execute(
        "SELECT * FROM sales WHERE status = 'open' AND held_at IS NULL ORDER BY number DESC LIMIT 1"
    ).fetchone()
    if sale is None:
        raise TillError("no_sale")
    if sale["frozen"]:
        raise TillError("sale_frozen")
    return sale


# --- numpad ---------------------------------------------------------------------------------------


def set_line(till: Till, line_no: int, mode: str, value: int, approval: Approval | None = None) -> None:
    """Apply the numpad to one line. ``value`` is a quantity (qty), a percentage (disc_pct) or fen
    (disc_amt: the line's discount; price: the new unit price, at most the catalogue's). A discount or
    price cut above the store's limit needs a manager's PIN; the approval is kept with the sale."""
    if mode not in LINE_MODES:
        raise TillError("invalid_mode")
    if mode == "qty":
        _set_quantity(till, line_no, value)
        return
    limit = till.settings()["discount_limit_pct"]
    with _pin_guard(till) as conn:
        sale = _open_sale(conn)
        line = conn.execute(
            "SELECT * FROM sale_lines WHERE sale_id = ? AND line_no = ?", (sale["id"], line_no)
        ).fetchone()
        if line is None:
            raise TillError("no_such_line")
        gross = line["unit_price"] * line["quantity"]
        set_price = None
        if mode == "disc_pct":
            if not 0 <= value <= 100:
                raise TillError("invalid_percent")
            discount = gross * value // 100
        elif mode == "disc_amt":
            discount = value
        else:
            if not 0 <= value <= line["unit_price"]:
                raise TillError("price_above_catalogue", price=line["unit_price"])
            set_price = value
            discount = (line["unit_price"] - value) * line["quantity"]
        if not 0 <= discount <= min(gross, MAX_DISCOUNT):
            raise TillError("invalid_discount")
        if discount > line["discount"] and over_limit(gross, discount, limit):
            who = _approver(conn, till, approval)
            kind = "price_change" if mode == "price" else "line_discount"
            _record(conn, till, sale["id"], kind, line_no, discount, who, approval.reason if approval else "")
        conn.execute(
            "UPDATE sale_lines SET discount = ?, set_price = ? WHERE sale_id = ? AND line_no = ?",
            (discount, set_price, sale["id"], line_no),
        )
        till._retotal(conn, sale["id"])


def _set_quantity(till: Till, line_no: int, quantity: int) -> None:
    """A new quantity keeps a changed price (its cut scales with the quantity); 0 removes the line."""
    if not 0 <= quantity <= MAX_QUANTITY:
        raise TillError("invalid_quantity")
    with till.journal.tx(durable=False) as conn:  # a cart line: made durable by the first tender
        sale = _open_sale(conn)
        line = conn.execute(
            "SELECT * FROM sale_lines WHERE sale_id = ? AND line_no = ?", (sale["id"], line_no)
        ).fetchone()
        if line is None:
            raise TillError("no_such_line")
        if quantity == 0:
            conn.execute("DELETE FROM sale_lines WHERE sale_id = ? AND line_no = ?", (sale["id"], line_no))
        else:
            discount = line["discount"]
            if line["set_price"] is not None:
                discount = (line["unit_price"] - line["set_price"]) * quantity
            if discount > line["unit_price"] * quantity:
                raise TillError("invalid_discount")
            conn.execute(
                "UPDATE sale_lines SET quantity = ?, discount = ? WHERE sale_id = ? AND line_no = ?",
                (quantity, discount, sale["id"], line_no),
            )
        till._retotal(conn, sale["id"])


def remove_line(till: Till, line_no: int) -> None:
    _set_quantity(till, line_no, 0)


def order_discount(till: Till, mode: str, value: int, approval: Approval | None = None) -> None:
    """A discount on the whole sale (percent or fen of the lines' total); 0 removes it. It is shown as a
    discount line and sent to the server spread over the lines."""
    if mode not in ORDER_MODES:
        raise TillError("invalid_mode")
    limit = till.settings()["discount_limit_pct"]
    with _pin_guard(till) as conn:
        sale = _open_sale(conn)
        lines_total = int(
            conn.execute(
                "SELECT COALESCE(SUM(unit_price * quantity - discount), 0) AS t FROM sale_lines WHERE sale_id = ?",
                (sale["id"],),
            ).fetchone()["t"]
        )
        if mode == "order_pct":
            if not 0 <= value <= 100:
                raise TillError("invalid_percent")
            amount = lines_total * value // 100
        else:
            amount = value
        if not 0 <= amount <= lines_total:
            raise TillError("invalid_discount")
        if over_limit(lines_total, amount, limit):
            who = _approver(conn, till, approval)
            _record(
                conn,
                till,
                sale["id"],
                "order_discount",
                None,
                amount,
                who,
                approval.reason if approval else "",
            )
        conn.execute(
            "DELETE FROM sale_adjustments WHERE sale_id = ? AND kind = 'order_discount'", (sale["id"],)
        )
        if amount:
            conn.execute(
                "INSERT INTO sale_adjustments(sale_id, kind, amount) VALUES (?, 'order_discount', ?)",
                (sale["id"], amount),
            )
        till._retotal(conn, sale["id"])


def round_down(till: Till) -> int:
    """抹零: round the total down to the jiao or the yuan (the store's setting), as a visible discount line.
    Pressed again it is taken off. Answers the amount knocked off (0 when taken off)."""
    mode = till.settings()["rounding"]
    if mode == "none":
        raise TillError("rounding_disabled")
    with till.journal.tx() as conn:
        sale = _open_sale(conn)
        if conn.execute(
            "SELECT 1 FROM sale_adjustments WHERE sale_id = ? AND kind = 'rounding'", (sale["id"],)
        ).fetchone():
            conn.execute(
                "DELETE FROM sale_adjustments WHERE sale_id = ? AND kind = 'rounding'", (sale["id"],)
            )
            till._retotal(conn, sale["id"])
            return 0
        off = rounding_off(int(sale["total"]), mode)
        if off == 0:
            raise TillError("nothing_to_round")
        conn.execute(
            "INSERT INTO sale_adjustments(sale_id, kind, amount) VALUES (?, 'rounding', ?)", (sale["id"], off)
        )
        till._retotal(conn, sale["id"])
        return off


# --- hold and recall (挂单 / 取单) ------------------------------------------------------------------


def hold(till: Till, note: str) -> int:
    """Park the sale being rung up (not once payment has started); answers its receipt number."""
    with till.journal.tx() as conn:
        sale = _open_sale(conn)
        if not conn.execute("SELECT 1 FROM sale_lines WHERE sale_id = ?", (sale["id"],)).fetchone():
            raise TillError("empty_sale")
        held = conn.execute(
            "SELECT COUNT(*) AS n FROM sales WHERE status = 'open' AND held_at IS NOT NULL"
        ).fetchone()["n"]
        if held >= MAX_HELD:
            raise TillError("too_many_held", max=MAX_HELD)
        conn.execute(
            "UPDATE sales SET held_at = ?, hold_note = ? WHERE id = ?",
            (till._now(), note.strip()[:MAX_HOLD_NOTE] or None, sale["id"]),
        )
        return int(sale["number"])


def held_sales(till: Till) -> list[dict[str, Any]]:
    """Parked sales, oldest first: number, when, note, item count, total."""
    rows = till.journal.query(
        "SELECT s.id, s.number, s.held_at, s.hold_note, s.total,"
        " (SELECT COALESCE(SUM(quantity), 0) FROM sale_lines l WHERE l.sale_id = s.id) AS items"
        " FROM sales s WHERE s.status = 'open' AND s.held_at IS NOT NULL ORDER BY s.held_at"
    )
    return [dict(r) for r in rows]


def recall(till: Till, sale_id: str) -> None:
    """Bring a parked sale back. The sale being rung up must be empty (park it first); an empty one
    is dropped, it has nothing in it."""
    with till.journal.tx() as conn:
        parked = conn.execute(
            "SELECT * FROM sales WHERE id = ? AND status = 'open' AND held_at IS NOT NULL", (sale_id,)
        ).fetchone()
        if parked is None:
            raise TillError("no_such_held")
        current = conn.execute(
            "SELECT * FROM sales WHERE status = 'open' AND held_at IS NULL ORDER BY number DESC LIMIT 1"
        ).fetchone()
        if current is not None:
            if (
                current["frozen"]
                or conn.execute("SELECT 1 FROM sale_lines WHERE sale_id = ?", (current["id"],)).fetchone()
            ):
                raise TillError("sale_in_progress")
            conn.execute("DELETE FROM sale_adjustments WHERE sale_id = ?", (current["id"],))
            conn.execute("DELETE FROM approvals WHERE sale_id = ?", (current["id"],))
            conn.execute("DELETE FROM sales WHERE id = ?", (current["id"],))
        conn.execute("UPDATE sales SET held_at = NULL, hold_note = NULL WHERE id = ?", (sale_id,))


# --- returns by receipt -----------------------------------------------------------------------------


def net_lines(till: Till, sale_id: str) -> list[dict[str, Any]]:
    """Each line with what the customer paid for it (its discount and its share of the order discount and
    抹零, spread exactly as the order the server got) and how many were already returned."""
    lines = till._sale_lines(sale_id)
    extra = till.journal.one(
        "SELECT COALESCE(SUM(amount), 0) AS a FROM sale_adjustments WHERE sale_id = ?", (sale_id,)
    )
    amounts = [ln["unit_price"] * ln["quantity"] - ln["discount"] for ln in lines]
    shares = spread(int(extra["a"] if extra else 0), amounts)
    returned = {
        r["line_no"]: int(r["q"])
        for r in till.journal.query(
            "SELECT rl.line_no, SUM(rl.quantity) AS q FROM returned_lines rl JOIN refunds r ON r.id = rl.refund_id"
            " WHERE rl.sale_id = ? AND r.status <> 'failed' GROUP BY rl.line_no",
            (sale_id,),
        )
    }
    return [
        dict(ln) | {"net": amount - share, "returned": returned.get(ln["line_no"], 0)}
        for ln, amount, share in zip(lines, amounts, shares, strict=True)
    ]


def return_amount(line: dict[str, Any], quantity: int) -> int:
    """What ``quantity`` more units of a line refund: exact in total however the line is returned."""
    before, q = int(line["returned"]), int(line["quantity"])
    return int(line["net"] * (before + quantity) // q - line["net"] * before // q)


def return_items(
    till: Till, sale_id: str, quantities: dict[int, int], refund_to: str, reason: str | None
) -> list[dict[str, Any]]:
    """Refund the picked lines and quantities of a completed sale: to the original tenders (in the order
    they were paid; a provider tender is refunded through the provider) or in cash (cash tenders only).
    Each refund follows the till's refund rules; answers the refunds made."""
    if refund_to not in RETURN_TO:
        raise TillError("invalid_refund_to")
    sale = till.journal.one("SELECT * FROM sales WHERE id = ?", (sale_id,))
    if sale is None or sale["status"] != "completed":
        raise TillError("not_refundable")
    lines = {ln["line_no"]: ln for ln in net_lines(till, sale_id)}
    amount = 0
    picked: dict[int, int] = {}
    for line_no, quantity in quantities.items():
        if quantity <= 0:
            continue
        line = lines.get(line_no)
        if line is None:
            raise TillError("no_such_line")
        if quantity > line["quantity"] - line["returned"]:
            raise TillError("return_too_many", left=line["quantity"] - line["returned"])
        amount += return_amount(line, quantity)
        picked[line_no] = quantity
    if not picked or amount <= 0:
        raise TillError("nothing_to_return")
    tenders = till.journal.query(
        "SELECT t.*, COALESCE((SELECT SUM(r.amount) FROM refunds r WHERE r.tender_id = t.id"
        " AND r.status IN ('pending', 'succeeded', 'processing')), 0) AS taken"
        " FROM tenders t WHERE t.sale_id = ? AND t.status = 'captured' ORDER BY t.created_at",
        (sale_id,),
    )
    plan: list[tuple[str, int]] = []
    left = amount
    for tender in tenders:
        if refund_to == "cash" and tender["method"] != "cash":
            continue
        part = min(left, tender["amount"] - tender["taken"])
        if part > 0:
            plan.append((tender["id"], part))
            left -= part
    if left > 0:
        raise TillError("refund_too_large", refundable=amount - left)
    done: list[dict[str, Any]] = []
    for tender_id, part in plan:
        refund = till.refund(tender_id, part, reason)
        done.append(refund)
        if refund.get("status") != "failed":
            with till.journal.tx() as conn:
                for line_no, quantity in picked.items():
                    conn.execute(
                        "INSERT INTO returned_lines(refund_id, sale_id, line_no, quantity) VALUES (?, ?, ?, ?)",
                        (refund["id"], sale_id, line_no, quantity),
                    )
            picked = {}  # the lines are recorded once, with the first refund that carries them
    return done


# --- customer display ---------------------------------------------------------------------------------


def display_state(view: dict[str, Any] | None, asking_code: bool) -> str:
    """What the customer's screen says: idle, items, scan_to_pay, password, paid."""
    if view is None or not view["lines"]:
        return "idle"
    if view["sale"]["status"] == "completed":
        return "paid"
    for tender in view["tenders"]:
        message = tender.get("message")
        if (
            tender["in_flight"]
            and isinstance(message, dict)
            and message.get("reason") == "customer_confirming"
        ):
            return "password"
    if asking_code or (view["sale"]["frozen"] and view["due"] > 0):
        return "scan_to_pay"
    return "items"


def adjustments(till: Till, sale_id: str) -> dict[str, int]:
    return {
        r["kind"]: int(r["amount"])
        for r in till.journal.query("SELECT kind, amount FROM sale_adjustments WHERE sale_id = ?", (sale_id,))
    }


def approvals(till: Till, sale_id: str) -> list[dict[str, Any]]:
    return [
        dict(r)
        for r in till.journal.query("SELECT * FROM approvals WHERE sale_id = ? ORDER BY id", (sale_id,))
    ]
