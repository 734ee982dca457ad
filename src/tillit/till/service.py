"""The till's use cases: cart, tenders, refunds, shifts, catalogue and sync. Pure of HTTP serving.

Rules kept here:
- journal first: every sale, tender, refund and shift event is committed to the journal (fsync) before
  it is sent or printed;
- the cart freezes at the first tender: the order the server sees is the one the customer pays for;
- cash works offline; a provider payment needs the server and is never shown failed while unknown,
  nor charged again: while a tender is in flight no other tender can start for that sale.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog

from tillit.domain.clock import Clock, SystemClock
from tillit.domain.ids import IdGenerator
from tillit.domain.links import till_receipt_path
from tillit.domain.messages import MESSAGES, for_payment
from tillit.domain.pricing import MAX_LINES, MAX_QUANTITY
from tillit.domain.provider import detect_method, mask_code
from tillit.domain.shifts import GENESIS, HeldSale, ShiftTotals, chain_hash
from tillit.domain.tillrules import SYNC_MAX_BYTES, SYNC_MAX_ENTRIES, rounding_off, spread
from tillit.till.client import LinkDown, ServerClient
from tillit.till.journal import BATCHABLE, Journal, OutboxEntry, now_iso

log = structlog.get_logger("tillit.till")

IN_FLIGHT = ("pending", "unknown", "reversing")
SETTLED_OK = ("captured",)
MAX_DISCOUNT = 10**9
MAX_TENDER = 10**9
CATALOGUE_PAGE = 200
DEFAULT_LIMIT_PCT = 20


# The batch body's own bytes besides its entries ({"entries": [...], "queued": N}), with room to spare.
_BATCH_ENVELOPE = 256


def next_batch(
    entries: list[OutboxEntry],
    start: int,
    max_entries: int = SYNC_MAX_ENTRIES,
    max_bytes: int = SYNC_MAX_BYTES,
) -> list[OutboxEntry]:
    """The batch that starts at ``entries[start]`` (a batchable entry): the consecutive batchable entries
    after it, in journal order, as many as the server takes in one body (``max_entries``, ``max_bytes``).
    An entry too big for a batch of its own still goes, alone: the server's answer tells the cashier."""
    batch = [entries[start]]
    size = _BATCH_ENVELOPE + _entry_size(entries[start])
    for following in entries[start + 1 :]:
        size += _entry_size(following)
        if following.op not in BATCHABLE or len(batch) >= max_entries or size > max_bytes:
            break
        batch.append(following)
    return batch


def _entry_size(entry: OutboxEntry) -> int:
    """An upper bound of the bytes ``entry`` adds to a sync batch body: its journal text in UTF-8 and room
    for the entry's own fields."""
    body = len(entry.raw.encode()) if entry.raw else len(json.dumps(entry.body))
    return body + len(entry.key) + len(entry.order_id or "") + 64


def batch_body(batch: list[OutboxEntry], queued: int) -> bytes:
    """The sync request body, each entry's journal text spliced in as it is (never decoded and encoded
    again): ``{"entries": [{"op", "key", "body"[, "order_id"]}...], "queued": N}``."""
    parts = []
    for e in batch:
        head: dict[str, Any] = {"op": e.op, "key": e.key}
        if e.op == "cancel":
            head["order_id"] = e.order_id
        text = json.dumps(head, ensure_ascii=False)
        parts.append(f'{text[:-1]}, "body": {e.raw or json.dumps(e.body, ensure_ascii=False)}}}')
    return f'{{"entries": [{", ".join(parts)}], "queued": {queued}}}'.encode()


class TillError(Exception):
    """Something the cashier must be told; ``reason`` keys a translated message; nothing was changed."""

    def __init__(self, reason: str, **params: Any) -> None:
        super().__init__(reason)
        self.reason = reason
        self.params = params


@dataclass
class LinkState:
    up: bool = True
    since: float = 0.0
    last_error: str | None = None


class Till:
    def __init__(
        self,
        journal: Journal,
        client: ServerClient,
        *,
        terminal_id: str | None = None,
        clock: Clock | None = None,
        printer: Callable[[str, str], str] | None = None,
    ) -> None:
        self.journal = journal
        self.client = client
        self.clock = clock or SystemClock()
        self.ids = IdGenerator(self.clock)
        self.link = LinkState(up=True, since=time.monotonic())
        self.printer = printer
        self.terminal_id = terminal_id or journal.meta("terminal_id")
        self._sync_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.wake = threading.Event()
        # The managers' PIN hashes live in this process's memory only, never in the journal: a copy of
        # the till's disk holds nothing to guess PINs against (docs/till.md, threat model).
        self._manager_pins: list[dict[str, Any]] = []
        self._scrub_pin_hashes()

    def _scrub_pin_hashes(self) -> None:
        """Journals written before PINs were kept in memory only held the hashes: remove them for good."""
        raw = self.journal.meta("till_settings")
        if raw and "manager_pins" in (found := json.loads(raw)):
            found.pop("manager_pins")
            with self.journal.tx() as conn:
                self.journal.set_meta(conn, "till_settings", json.dumps(found))
            self.journal.checkpoint()

    # --- catalogue -------------------------------------------------------------------------------

    def refresh_catalogue(self) -> int:
        """Copy the server's products into the journal so the till can sell offline."""
        products: list[dict[str, Any]] = []
        after: str | None = None
        while True:
            params: dict[str, Any] = {"limit": CATALOGUE_PAGE}
            if after:
                params["after"] = after
            page = self.client.request("GET", "/v1/products", params=params).json()
            products.extend(page["data"])
            after = page.get("next")
            if not after:
                break
        with self.journal.tx() as conn:
            for p in products:
                conn.execute(
                    "INSERT INTO products(id, sku, barcode, name, price, active, category, tile_colour, favourite,"
                    " sort_order, image_url) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT(id) DO UPDATE SET sku=excluded.sku, barcode=excluded.barcode, name=excluded.name,"
                    " price=excluded.price, active=excluded.active, category=excluded.category,"
                    " tile_colour=excluded.tile_colour, favourite=excluded.favourite,"
                    " sort_order=excluded.sort_order, image_url=excluded.image_url",
                    (
                        p["id"],
                        p["sku"],
                        p["barcode"],
                        p["name"],
                        p["price"],
                        1 if p["active"] else 0,
                        p.get("category"),
                        p.get("tile_colour"),
                        1 if p.get("favourite") else 0,
                        int(p.get("sort_order") or 0),
                        p.get("image"),
                    ),
                )
        self._cache_images()
        self._refresh_settings()
        return len(products)

    def _cache_images(self) -> None:
        """Tile images are kept on the till (named by their digest) so the grid shows them offline too."""
        folder = self.journal.path.parent / "images"
        folder.mkdir(parents=True, exist_ok=True)
        for row in self.journal.query(
            "SELECT id, image_url, image_file FROM products WHERE image_url IS NOT NULL"
        ):
            name = row["image_url"].rsplit("=", 1)[-1]
            if row["image_file"] == name and (folder / name).exists():
                continue
            response = self.client.request("GET", row["image_url"])
            if response.status_code != 200:
                continue
            (folder / name).write_bytes(response.content)
            with self.journal.tx() as conn:
                conn.execute("UPDATE products SET image_file = ? WHERE id = ?", (name, row["id"]))

    def _refresh_settings(self) -> None:
        """The store's rules go to the journal (they are needed offline after a restart); the managers'
        PIN hashes stay in memory."""
        response = self.client.request("GET", "/v1/till/settings")
        if response.status_code == 200:
            found = response.json()
            self._manager_pins = [p for p in found.pop("manager_pins", []) if isinstance(p, dict)]
            with self.journal.tx() as conn:
                self.journal.set_meta(conn, "till_settings", json.dumps(found))
        # The key this till signs the QR on its paper receipts with, so it prints the link offline too
        # (a revoked key is replaced here at the next refresh).
        key = self.client.request("GET", "/v1/till/receipt-key")
        if key.status_code == 200:
            with self.journal.tx() as conn:
                self.journal.set_meta(conn, "receipt_link", key.text)

    def receipt_link(self, sale_id: str) -> str | None:
        """The e-receipt link printed as a QR on the sale's paper receipt, computed here with the till's
        receipt-link key (no server needed); None until the till has fetched a key once."""
        raw = self.journal.meta("receipt_link")
        if not raw:
            return None
        found = json.loads(raw)
        key = base64.urlsafe_b64decode(str(found["key"]) + "=" * (-len(str(found["key"])) % 4))
        return str(found["base_url"]).rstrip("/") + till_receipt_path(str(found["key_id"]), key, sale_id)

    def settings(self) -> dict[str, Any]:
        """The store's till rules as last fetched (defaults until the server has been reached once)."""
        raw = self.journal.meta("till_settings")
        found: dict[str, Any] = json.loads(raw) if raw else {}
        return {
            "discount_limit_pct": int(found.get("discount_limit_pct", DEFAULT_LIMIT_PCT)),
            "rounding": str(found.get("rounding", "jiao")),
            "manager_pins": list(self._manager_pins),
        }

    def find_product(self, code: str) -> Any:
        code = code.strip()
        return self.journal.one(
            "SELECT * FROM products WHERE active = 1 AND (barcode = ? OR sku = ?) LIMIT 1", (code, code)
        )

    def grid_products(self) -> list[Any]:
        """The touch grid: favourites first, then the catalogue's sort order, then by name."""
        return self.journal.query(
            "SELECT * FROM products WHERE active = 1 ORDER BY favourite DESC, sort_order, name"
        )

    def search(self, text: str, limit: int = 20) -> list[Any]:
        pattern = f"%{text.strip()}%"
        return self.journal.query(
            "SELECT * FROM products WHERE active = 1 AND (name LIKE ? OR sku LIKE ? OR barcode LIKE ?)"
            " ORDER BY name LIMIT ?",
            (pattern, pattern, pattern, limit),
        )

    # --- shifts ----------------------------------------------------------------------------------

    def current_shift(self) -> Any:
        return self.journal.one("SELECT * FROM shifts WHERE closed_at IS NULL ORDER BY number DESC LIMIT 1")

    def open_shift(self, opening_float: int) -> Any:
        if self.current_shift() is not None:
            raise TillError("shift_already_open")
        if not 0 <= opening_float <= MAX_TENDER:
            raise TillError("invalid_amount")
        last = self.journal.one("SELECT MAX(number) AS n FROM shifts")
        number = (last["n"] or 0) + 1 if last else 1
        with self.journal.tx() as conn:
            conn.execute(
                "INSERT INTO shifts(id, number, opened_at, opening_float) VALUES (?, ?, ?, ?)",
                (self.ids.new(), number, self._now(), opening_float),
            )
        return self.current_shift()

    def close_blockers(self) -> dict[str, list[str]]:
        """Why the shift cannot close yet: unsynced sales and payments whose outcome is unknown."""
        unsynced = [
            str(r["number"])
            for r in self.journal.query(
                "SELECT DISTINCT s.number FROM outbox o JOIN sales s ON s.id = o.sale_id"
                " WHERE o.state = 'pending' ORDER BY s.number"
            )
        ]
        unknown = [
            str(r["number"])
            for r in self.journal.query(
                "SELECT DISTINCT s.number FROM tenders t JOIN sales s ON s.id = t.sale_id"
                " WHERE t.status IN ('pending', 'unknown', 'reversing') ORDER BY s.number"
            )
        ]
        return {"unsynced": unsynced, "unknown": unknown}

    def shift_totals(self, shift: Any) -> ShiftTotals:
        totals = ShiftTotals(opening_float=shift["opening_float"])
        for sale in self.journal.query(
            "SELECT * FROM sales WHERE shift_id = ? AND status IN ('completed', 'cancelled')", (shift["id"],)
        ):
            if sale["status"] == "cancelled":
                totals.add_cancel(sale["cancel_reason"] or "other")
                continue
            totals.sales_count += 1
            for tender in self.journal.query(
                "SELECT * FROM tenders WHERE sale_id = ? AND status = 'captured'", (sale["id"],)
            ):
                totals.add_tender(tender["method"], tender["amount"])
        for refund in self.journal.query(
            "SELECT r.amount, t.method FROM refunds r JOIN tenders t ON t.id = r.tender_id"
            " WHERE r.status = 'succeeded' AND r.created_at >= ?",
            (shift["opened_at"],),
        ):
            totals.add_refund(refund["method"], refund["amount"])
        totals.held = self.held_at_close()
        return totals

    def held_at_close(self) -> list[HeldSale]:
        """The parked sales still open, oldest first, as the Z report carries them (they do not block the
        close: the server never saw them)."""
        held: list[HeldSale] = []
        for row in self.journal.query(
            "SELECT number, held_at, total, hold_note FROM sales WHERE status = 'open' AND held_at IS NOT NULL"
            " ORDER BY held_at, number"
        ):
            item: HeldSale = {
                "number": int(row["number"]),
                "held_at": row["held_at"],
                "total": int(row["total"]),
            }
            if row["hold_note"]:
                item["note"] = str(row["hold_note"])
            held.append(item)
        return held

    def close_shift(self, counted_cash: int) -> dict[str, Any]:
        shift = self.current_shift()
        if shift is None:
            raise TillError("no_open_shift")
        if not 0 <= counted_cash <= MAX_TENDER:
            raise TillError("invalid_amount")
        if self.open_sale() is not None and self._sale_lines(self.open_sale()["id"]):
            raise TillError("sale_in_progress")
        blockers = self.close_blockers()
        if blockers["unsynced"] or blockers["unknown"]:
            raise TillError(
                "close_refused",
                unsynced=", ".join(blockers["unsynced"]) or "-",
                unknown=", ".join(blockers["unknown"]) or "-",
            )
        totals = self.shift_totals(shift)
        prev = self.journal.one(
            "SELECT report_hash FROM shifts WHERE closed_at IS NOT NULL ORDER BY number DESC LIMIT 1"
        )
        prev_hash = prev["report_hash"] if prev else GENESIS
        report = totals.report(
            number=shift["number"],
            terminal_id=self.terminal_id or "",
            opened_at=shift["opened_at"],
            closed_at=self._now(),
            counted_cash=counted_cash,
        )
        digest = chain_hash(prev_hash, report)
        with self.journal.tx() as conn:
            conn.execute(
                "UPDATE shifts SET closed_at = ?, counted_cash = ?, report = ?, report_hash = ?, prev_hash = ?"
                " WHERE id = ?",
                (
                    report["closed_at"],
                    counted_cash,
                    json.dumps(report, ensure_ascii=False),
                    digest,
                    prev_hash,
                    shift["id"],
                ),
            )
            self.journal.enqueue(
                conn,
                op="shift",
                key=f"shift-{shift['id']}",
                entity_id=shift["id"],
                body={
                    "id": shift["id"],
                    "number": shift["number"],
                    "report": report,
                    "report_hash": digest,
                    "prev_hash": prev_hash,
                },
            )
        self.wake.set()
        return report

    # --- the sale being rung up -------------------------------------------------------------------

    def open_sale(self) -> Any:
        return self.journal.one(
            "SELECT * FROM sales WHERE status = 'open' AND held_at IS NULL ORDER BY number DESC LIMIT 1"
        )

    def _ensure_sale(self, conn: Any) -> Any:
        sale = conn.execute(
            "SELECT * FROM sales WHERE status = 'open' AND held_at IS NULL ORDER BY number DESC LIMIT 1"
        ).fetchone()
        if sale is not None:
            return sale
        shift = self.current_shift()
        if shift is None:
            raise TillError("no_open_shift")
        number = (conn.execute("SELECT COALESCE(MAX(number), 0) AS n FROM sales").fetchone()["n"]) + 1
        sale_id = self.ids.new()
        conn.execute(
            "INSERT INTO sales(id, number, status, shift_id, created_at) VALUES (?, ?, 'open', ?, ?)",
            (sale_id, number, shift["id"], self._now()),
        )
        return conn.execute("SELECT * FROM sales WHERE id = ?", (sale_id,)).fetchone()

    def _sale_lines(self, sale_id: str) -> list[Any]:
        return self.journal.query("SELECT * FROM sale_lines WHERE sale_id = ? ORDER BY line_no", (sale_id,))

    def add_item(self, code: str, quantity: int = 1) -> Any:
        product = self.find_product(code)
        if product is None:
            raise TillError("unknown_barcode", code=code.strip()[:40])
        if not 1 <= quantity <= MAX_QUANTITY:
            raise TillError("invalid_quantity")
        with self.journal.tx(durable=False) as conn:  # a cart line: made durable by the first tender
            sale = self._ensure_sale(conn)
            self._editable(sale)
            line = conn.execute(
                "SELECT * FROM sale_lines WHERE sale_id = ? AND product_id = ? AND discount = 0",
                (sale["id"], product["id"]),
            ).fetchone()
            if line is not None:
                if line["quantity"] + quantity > MAX_QUANTITY:
                    raise TillError("invalid_quantity")
                conn.execute(
                    "UPDATE sale_lines SET quantity = quantity + ? WHERE sale_id = ? AND line_no = ?",
                    (quantity, sale["id"], line["line_no"]),
                )
            else:
                count = conn.execute(
                    "SELECT COUNT(*) AS n, COALESCE(MAX(line_no), 0) AS m FROM sale_lines WHERE sale_id = ?",
                    (sale["id"],),
                ).fetchone()
                if count["n"] >= MAX_LINES:
                    raise TillError("too_many_lines")
                conn.execute(
                    "INSERT INTO sale_lines(sale_id, line_no, product_id, sku, name, unit_price, quantity, discount)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, 0)",
                    (
                        sale["id"],
                        count["m"] + 1,
                        product["id"],
                        product["sku"],
                        product["name"],
                        product["price"],
                        quantity,
                    ),
                )
            self._retotal(conn, sale["id"])
        return product

    def set_quantity(self, line_no: int, quantity: int) -> None:
        if not 0 <= quantity <= MAX_QUANTITY:
            raise TillError("invalid_quantity")
        with self.journal.tx(durable=False) as conn:  # a cart line: made durable by the first tender
            sale = self._require_open(conn)
            line = conn.execute(
                "SELECT * FROM sale_lines WHERE sale_id = ? AND line_no = ?", (sale["id"], line_no)
            ).fetchone()
            if line is None:
                raise TillError("no_such_line")
            if quantity == 0:
                conn.execute(
                    "DELETE FROM sale_lines WHERE sale_id = ? AND line_no = ?", (sale["id"], line_no)
                )
            else:
                if line["discount"] > line["unit_price"] * quantity:
                    raise TillError("invalid_discount")
                conn.execute(
                    "UPDATE sale_lines SET quantity = ? WHERE sale_id = ? AND line_no = ?",
                    (quantity, sale["id"], line_no),
                )
            self._retotal(conn, sale["id"])

    def set_discount(self, line_no: int, discount: int) -> None:
        with self.journal.tx() as conn:
            sale = self._require_open(conn)
            line = conn.execute(
                "SELECT * FROM sale_lines WHERE sale_id = ? AND line_no = ?", (sale["id"], line_no)
            ).fetchone()
            if line is None:
                raise TillError("no_such_line")
            if not 0 <= discount <= line["unit_price"] * line["quantity"]:
                raise TillError("invalid_discount")
            conn.execute(
                "UPDATE sale_lines SET discount = ? WHERE sale_id = ? AND line_no = ?",
                (discount, sale["id"], line_no),
            )
            self._retotal(conn, sale["id"])

    def _require_open(self, conn: Any) -> Any:
        sale = conn.execute(
            "SELECT * FROM sales WHERE status = 'open' AND held_at IS NULL ORDER BY number DESC LIMIT 1"
        ).fetchone()
        if sale is None:
            raise TillError("no_sale")
        self._editable(sale)
        return sale

    def _editable(self, sale: Any) -> None:
        if sale["frozen"]:
            raise TillError("sale_frozen")

    def _retotal(self, conn: Any, sale_id: str) -> None:
        """Total = lines − order discount − 抹零; 抹零 is worked out again from the store's rounding rule,
        and an order discount the lines can no longer carry is dropped (the cashier sees it gone)."""
        row = conn.execute(
            "SELECT COALESCE(SUM(unit_price * quantity - discount), 0) AS t FROM sale_lines WHERE sale_id = ?",
            (sale_id,),
        ).fetchone()
        lines_total = int(row["t"])
        adjust = {
            r["kind"]: int(r["amount"])
            for r in conn.execute("SELECT kind, amount FROM sale_adjustments WHERE sale_id = ?", (sale_id,))
        }
        order_discount = adjust.get("order_discount", 0)
        if order_discount > lines_total:
            conn.execute(
                "DELETE FROM sale_adjustments WHERE sale_id = ? AND kind = 'order_discount'", (sale_id,)
            )
            order_discount = 0
        total = lines_total - order_discount
        if "rounding" in adjust:
            off = rounding_off(total, self.settings()["rounding"])
            if off:
                conn.execute(
                    "UPDATE sale_adjustments SET amount = ? WHERE sale_id = ? AND kind = 'rounding'",
                    (off, sale_id),
                )
            else:
                conn.execute(
                    "DELETE FROM sale_adjustments WHERE sale_id = ? AND kind = 'rounding'", (sale_id,)
                )
            total -= off
        conn.execute("UPDATE sales SET total = ? WHERE id = ?", (total, sale_id))

    def _freeze(self, conn: Any, sale: Any) -> None:
        """At the first tender the cart becomes the server order (queued before any payment for it)."""
        if sale["frozen"]:
            return
        lines = conn.execute(
            "SELECT * FROM sale_lines WHERE sale_id = ? ORDER BY line_no", (sale["id"],)
        ).fetchall()
        if not lines:
            raise TillError("empty_sale")
        conn.execute("UPDATE sales SET frozen = 1 WHERE id = ?", (sale["id"],))
        # The server knows line discounts only: the order discount and 抹零 are spread over the lines.
        extra = conn.execute(
            "SELECT COALESCE(SUM(amount), 0) AS a FROM sale_adjustments WHERE sale_id = ?", (sale["id"],)
        ).fetchone()["a"]
        shares = spread(int(extra), [ln["unit_price"] * ln["quantity"] - ln["discount"] for ln in lines])
        body: dict[str, Any] = {
            "id": sale["id"],
            "lines": [
                {
                    "product_id": ln["product_id"],
                    "quantity": ln["quantity"],
                    "discount": ln["discount"] + share,
                }
                for ln, share in zip(lines, shares, strict=True)
            ],
            "total": sale["total"],
        }
        approvals = conn.execute(
            "SELECT kind, line_no, amount, approved_by, reason FROM approvals WHERE sale_id = ? ORDER BY id",
            (sale["id"],),
        ).fetchall()
        if approvals:
            body["approvals"] = [
                {k: a[k] for k in ("kind", "line_no", "amount", "approved_by", "reason") if a[k] is not None}
                for a in approvals
            ]
        self.journal.enqueue(
            conn,
            op="order",
            key=f"order-{sale['id']}",
            body=body,
            sale_id=sale["id"],
            entity_id=sale["id"],
            order_id=sale["id"],
        )

    def paid(self, sale_id: str) -> int:
        row = self.journal.one(
            "SELECT COALESCE(SUM(amount), 0) AS p FROM tenders WHERE sale_id = ? AND status = 'captured'",
            (sale_id,),
        )
        return int(row["p"]) if row else 0

    def in_flight(self, sale_id: str) -> Any:
        return self.journal.one(
            "SELECT * FROM tenders WHERE sale_id = ? AND status IN ('pending','unknown','reversing') LIMIT 1",
            (sale_id,),
        )

    def _tender_checks(self, conn: Any, amount: int | None) -> tuple[Any, int]:
        sale = conn.execute(
            "SELECT * FROM sales WHERE status = 'open' AND held_at IS NULL ORDER BY number DESC LIMIT 1"
        ).fetchone()
        if sale is None or (
            sale["total"] == 0
            and not conn.execute("SELECT 1 FROM sale_lines WHERE sale_id = ?", (sale["id"],)).fetchone()
        ):
            raise TillError("empty_sale")
        flight = conn.execute(
            "SELECT * FROM tenders WHERE sale_id = ? AND status IN ('pending','unknown','reversing')",
            (sale["id"],),
        ).fetchone()
        if flight is not None:
            raise TillError("payment_in_progress")
        paid = conn.execute(
            "SELECT COALESCE(SUM(amount), 0) AS p FROM tenders WHERE sale_id = ? AND status = 'captured'",
            (sale["id"],),
        ).fetchone()["p"]
        due = sale["total"] - paid
        amount = due if amount is None else amount
        if amount <= 0 or amount > due:
            raise TillError("invalid_tender_amount", due=due)
        return sale, amount

    def pay_cash(self, tendered: int | None, amount: int | None = None) -> dict[str, Any]:
        """Cash: works offline. Committed to the journal (and so fsynced) before anything is printed."""
        if tendered is not None and not 0 < tendered <= MAX_TENDER:
            raise TillError("invalid_amount")
        with self.journal.tx() as conn:
            sale, amount = self._tender_checks(conn, amount)
            if tendered is not None and tendered < amount:
                raise TillError("insufficient_tender")
            self._freeze(conn, sale)
            tender_id = self.ids.new()
            change = (tendered - amount) if tendered is not None else None
            now = self._now()
            conn.execute(
                "INSERT INTO tenders(id, sale_id, method, amount, tendered, change_due, status, created_at, updated_at)"
                " VALUES (?, ?, 'cash', ?, ?, ?, 'captured', ?, ?)",
                (tender_id, sale["id"], amount, tendered, change, now, now),
            )
            body: dict[str, Any] = {
                "id": tender_id,
                "order_id": sale["id"],
                "method": "cash",
                "amount": amount,
            }
            if tendered is not None:
                body["tendered"] = tendered
            self.journal.enqueue(
                conn,
                op="payment",
                key=f"pay-{tender_id}",
                body=body,
                sale_id=sale["id"],
                entity_id=tender_id,
                order_id=sale["id"],
            )
            self._complete_if_paid(conn, sale["id"])
        self.wake.set()
        return {"tender_id": tender_id, "change_due": change, "sale_id": sale["id"]}

    def pay_code(self, code: str, amount: int | None = None) -> dict[str, Any]:
        """Scan the customer's payment code. Needs the server: the attempt is journaled, then sent at once;
        a lost answer leaves it 'unknown' (checking) and it is resent with the same key, never re-charged."""
        code = code.strip()
        if detect_method(code) is None:
            raise TillError("unsupported_code")
        if not self.link.up and not self._probe():
            raise TillError("link_down")
        with self.journal.tx() as conn:
            sale, amount = self._tender_checks(conn, amount)
            self._freeze(conn, sale)
            tender_id = self.ids.new()
            now = self._now()
            method = detect_method(code) or "unknown"
            conn.execute(
                "INSERT INTO tenders(id, sale_id, method, amount, status, code_masked, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, 'pending', ?, ?, ?)",
                (tender_id, sale["id"], method, amount, mask_code(code), now, now),
            )
            seq = self.journal.enqueue(
                conn,
                op="provider_payment",
                key=f"pay-{tender_id}",
                sale_id=sale["id"],
                entity_id=tender_id,
                order_id=sale["id"],
                body={"id": tender_id, "order_id": sale["id"], "payment_code": code, "amount": amount},
            )
        self.sync_until(seq)
        tender = self.tender(tender_id)
        return dict(tender) if tender is not None else {"id": tender_id}

    def tender(self, tender_id: str) -> Any:
        return self.journal.one("SELECT * FROM tenders WHERE id = ?", (tender_id,))

    def _complete_if_paid(self, conn: Any, sale_id: str) -> None:
        sale = conn.execute("SELECT * FROM sales WHERE id = ?", (sale_id,)).fetchone()
        paid = conn.execute(
            "SELECT COALESCE(SUM(amount), 0) AS p FROM tenders WHERE sale_id = ? AND status = 'captured'",
            (sale_id,),
        ).fetchone()["p"]
        if sale["status"] == "open" and sale["frozen"] and paid == sale["total"]:
            conn.execute(
                "UPDATE sales SET status = 'completed', completed_at = ? WHERE id = ?", (self._now(), sale_id)
            )

    def cancel_sale(self, reason: str) -> None:
        if reason not in ("customer_cancelled", "cashier_cancelled", "payment_failed", "timeout", "other"):
            raise TillError("invalid_reason")
        with self.journal.tx() as conn:
            sale = conn.execute(
                "SELECT * FROM sales WHERE status = 'open' AND held_at IS NULL ORDER BY number DESC LIMIT 1"
            ).fetchone()
            if sale is None:
                raise TillError("no_sale")
            if conn.execute(
                "SELECT 1 FROM tenders WHERE sale_id = ? AND status IN ('pending','unknown','reversing')",
                (sale["id"],),
            ).fetchone():
                raise TillError("payment_in_progress")
            conn.execute(
                "UPDATE sales SET status = 'cancelled', cancel_reason = ?, completed_at = ? WHERE id = ?",
                (reason, self._now(), sale["id"]),
            )
            if sale["frozen"]:
                # The server has (or will have) the order: cancel it there too; cash taken is handed back.
                conn.execute(
                    "UPDATE tenders SET refunded = amount WHERE sale_id = ? AND status = 'captured'"
                    " AND method = 'cash'",
                    (sale["id"],),
                )
                self.journal.enqueue(
                    conn,
                    op="cancel",
                    key=f"cancel-{sale['id']}",
                    body={"reason": reason},
                    sale_id=sale["id"],
                    entity_id=sale["id"],
                    order_id=sale["id"],
                )
        self.wake.set()

    # --- refunds -----------------------------------------------------------------------------------

    def sale_by_number(self, number: int) -> Any:
        return self.journal.one("SELECT * FROM sales WHERE number = ?", (number,))

    def refund(self, tender_id: str, amount: int, reason: str | None) -> dict[str, Any]:
        tender = self.tender(tender_id)
        if tender is None or tender["status"] != "captured":
            raise TillError("not_refundable")
        sale = self.journal.one("SELECT * FROM sales WHERE id = ?", (tender["sale_id"],))
        if sale is None or sale["status"] != "completed":
            raise TillError("not_refundable")
        pending = self.journal.one(
            "SELECT COALESCE(SUM(amount), 0) AS r FROM refunds WHERE tender_id = ? AND"
            " status IN ('pending', 'succeeded', 'processing')",
            (tender_id,),
        )
        refundable = tender["amount"] - int(pending["r"] if pending else 0)
        if not 0 < amount <= refundable:
            raise TillError("refund_too_large", refundable=refundable)
        if tender["method"] != "cash" and not self.link.up and not self._probe():
            raise TillError("link_down")
        refund_id = self.ids.new()
        op = "refund" if tender["method"] == "cash" else "provider_refund"
        with self.journal.tx() as conn:
            status = "succeeded" if tender["method"] == "cash" else "pending"
            conn.execute(
                "INSERT INTO refunds(id, sale_id, tender_id, amount, reason, status, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (refund_id, sale["id"], tender_id, amount, reason, status, self._now()),
            )
            if status == "succeeded":
                conn.execute("UPDATE tenders SET refunded = refunded + ? WHERE id = ?", (amount, tender_id))
            seq = self.journal.enqueue(
                conn,
                op=op,
                key=f"refund-{refund_id}",
                sale_id=sale["id"],
                entity_id=refund_id,
                order_id=sale["id"],
                body={"id": refund_id, "payment_id": tender_id, "amount": amount, "reason": reason},
            )
        if op == "provider_refund":
            self.sync_until(seq)
        else:
            self.wake.set()
        row = self.journal.one("SELECT * FROM refunds WHERE id = ?", (refund_id,))
        return dict(row) if row else {}

    # --- sync ------------------------------------------------------------------------------------

    def sync_once(self) -> int:
        """Push pending outbox entries in order; returns how many were acknowledged. Raises LinkDown."""
        with self._sync_lock:
            done = 0
            entries = self.journal.pending(SYNC_MAX_ENTRIES)
            i = 0
            while i < len(entries):
                entry = entries[i]
                if entry.op in BATCHABLE:
                    batch = next_batch(entries, i)
                    done += self._send_batch(batch)
                    i += len(batch)
                else:
                    done += self._send_single(entry)
                    i += 1
            self._mark_up()
            return done

    def sync_until(self, seq: int, attempts: int = 1) -> None:
        """Send everything up to ``seq`` now (the cashier is waiting); a link failure marks the link down."""
        try:
            for _ in range(attempts):
                self.sync_once()
                if not self.journal.one("SELECT 1 FROM outbox WHERE seq <= ? AND state = 'pending'", (seq,)):
                    return
        except LinkDown as exc:
            self._mark_down(str(exc))
            if not exc.sent and self._withdraw(seq):
                raise TillError("link_down") from exc
            self._lost_answer(seq)

    def _withdraw(self, seq: int) -> bool:
        """A provider payment that certainly never reached the server is withdrawn (the customer was not
        charged: no provider saw the code); the cashier is told at once and offered cash."""
        row = self.journal.one("SELECT * FROM outbox WHERE seq = ?", (seq,))
        if (
            row is None
            or row["op"] not in ("provider_payment", "provider_refund")
            or row["state"] != "pending"
        ):
            return False
        with self.journal.tx() as conn:
            conn.execute(
                "UPDATE outbox SET state = 'done', response = '{\"withdrawn\": true}',"
                " last_error = 'not sent: server unreachable', done_at = ?, body = ? WHERE seq = ?",
                (now_iso(), json.dumps(_scrub(json.loads(row["body"]))), seq),
            )
            if row["op"] == "provider_payment":
                conn.execute(
                    "UPDATE tenders SET status = 'failed', failure_code = 'LINK_DOWN', updated_at = ? WHERE id = ?",
                    (self._now(), row["entity_id"]),
                )
            else:
                conn.execute("UPDATE refunds SET status = 'failed' WHERE id = ?", (row["entity_id"],))
        return True

    def _lost_answer(self, seq: int) -> None:
        """A provider payment sent without an answer: show 'checking', never 'failed'."""
        row = self.journal.one("SELECT * FROM outbox WHERE seq = ?", (seq,))
        if row is not None and row["op"] == "provider_payment" and row["state"] == "pending":
            with self.journal.tx() as conn:
                conn.execute(
                    "UPDATE tenders SET status = 'unknown', updated_at = ? WHERE id = ? AND status = 'pending'",
                    (self._now(), row["entity_id"]),
                )

    def _send_batch(self, batch: list[OutboxEntry]) -> int:
        queued = max(self.journal.pending_count(), len(batch))  # the till's own count, this batch included
        response = self.client.request("POST", "/v1/sync", content=batch_body(batch, queued))
        if response.status_code != 200:
            # The batch itself was refused (shape): record on every entry, they will be retried.
            with self.journal.tx() as conn:
                for e in batch:
                    conn.execute(
                        "UPDATE outbox SET attempts = attempts + 1, last_error = ? WHERE seq = ?",
                        (response.text[:500], e.seq),
                    )
            return 0
        done: list[tuple[OutboxEntry, dict[str, Any]]] = []
        retried: list[tuple[str, int]] = []
        rejected: list[tuple[str, str, int]] = []
        for e, result in zip(batch, response.json()["results"], strict=True):
            status = result["status"]
            if 200 <= status < 300:
                done.append((e, result["body"]))
            elif status == 409 and result["error"]["code"] in (
                "idempotency_key_in_flight",
                "order_changed",
                "payment_changed",
            ):
                retried.append((result["error"]["code"], e.seq))
            else:
                rejected.append((json.dumps(result["error"], ensure_ascii=False)[:500], now_iso(), e.seq))
                log.warning("sync_rejected", op=e.op, key=e.key, code=result["error"]["code"])
        with self.journal.tx() as conn:
            self._acknowledge_many(conn, done)
            conn.executemany(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ? WHERE seq = ?", retried
            )
            conn.executemany(
                "UPDATE outbox SET state = 'rejected', last_error = ?, done_at = ? WHERE seq = ?", rejected
            )
        return len(done)

    def _acknowledge_many(self, conn: Any, answered: list[tuple[OutboxEntry, dict[str, Any]]]) -> None:
        """``_acknowledge`` for a batch's applied entries. The common ones (no payment code to scrub, no
        receipt URL to keep) in one statement per kind of update; any other through ``_acknowledge``."""
        plain = [
            (e, body)
            for e, body in answered
            if "payment_code" not in e.body
            and not (e.op == "order" and isinstance(body.get("receipt_url"), str))
        ]
        at = now_iso()
        conn.executemany(
            "UPDATE outbox SET state = 'done', done_at = ?, response = ? WHERE seq = ?",
            [(at, json.dumps({"status": body.get("status")}), e.seq) for e, body in plain],
        )
        conn.executemany(
            "UPDATE sales SET server_number = ? WHERE id = ?",
            [
                (body["number"], e.entity_id)
                for e, body in plain
                if e.op == "order" and body.get("number") is not None
            ],
        )
        done = {e.seq for e, _ in plain}
        for e, body in answered:
            if e.seq not in done:
                self._acknowledge(conn, e, body)

    def _send_single(self, entry: OutboxEntry) -> int:
        path = {"provider_payment": "/v1/payments", "provider_refund": "/v1/refunds", "shift": "/v1/shifts"}[
            entry.op
        ]
        response = self.client.request("POST", path, json=entry.body, key=entry.key)
        body = response.json()
        with self.journal.tx() as conn:
            if response.status_code in (200, 201, 202):
                self._acknowledge(conn, entry, body)
                return 1
            code = body.get("error", {}).get("code", "")
            if response.status_code == 409 and code in ("idempotency_key_in_flight",):
                conn.execute(
                    "UPDATE outbox SET attempts = attempts + 1, last_error = ? WHERE seq = ?",
                    (code, entry.seq),
                )
                return 0
            conn.execute(
                "UPDATE outbox SET state = 'rejected', last_error = ?, done_at = ?, body = ? WHERE seq = ?",
                (
                    json.dumps(body.get("error"), ensure_ascii=False)[:500],
                    now_iso(),
                    json.dumps(_scrub(entry.body)),
                    entry.seq,
                ),
            )
            if entry.op == "provider_payment":
                # Refused before any provider call (e.g. the order was not open): the attempt never existed.
                conn.execute(
                    "UPDATE tenders SET status = 'failed', failure_code = ?, message = ?, updated_at = ?"
                    " WHERE id = ?",
                    (code, json.dumps(body.get("error"), ensure_ascii=False), self._now(), entry.entity_id),
                )
            if entry.op == "provider_refund":
                conn.execute("UPDATE refunds SET status = 'failed' WHERE id = ?", (entry.entity_id,))
        return 0

    def _acknowledge(self, conn: Any, entry: OutboxEntry, body: dict[str, Any]) -> None:
        conn.execute(
            "UPDATE outbox SET state = 'done', done_at = ?, response = ?, body = ? WHERE seq = ?",
            (
                now_iso(),
                json.dumps({"status": body.get("status")}),
                json.dumps(_scrub(entry.body)),
                entry.seq,
            ),
        )
        if entry.op == "order" and body.get("number") is not None:
            conn.execute("UPDATE sales SET server_number = ? WHERE id = ?", (body["number"], entry.entity_id))
        if entry.op == "order" and isinstance(body.get("receipt_url"), str):
            # E-RECEIPT HOOK: when the server's order answer carries a receipt URL (the e-receipts work),
            # the customer display shows it as a QR after payment; without one it shows none.
            conn.execute(
                "UPDATE sales SET receipt_url = ? WHERE id = ?", (body["receipt_url"][:500], entry.entity_id)
            )
        if entry.op == "provider_payment":
            self._apply_payment(conn, body)
        if entry.op == "provider_refund":
            status = {"succeeded": "succeeded", "failed": "failed"}.get(body.get("status", ""), "processing")
            conn.execute("UPDATE refunds SET status = ? WHERE id = ?", (status, entry.entity_id))
            if status == "succeeded":
                conn.execute(
                    "UPDATE tenders SET refunded = refunded + (SELECT amount FROM refunds WHERE id = ?)"
                    " WHERE id = (SELECT tender_id FROM refunds WHERE id = ?)",
                    (entry.entity_id, entry.entity_id),
                )

    def _apply_payment(self, conn: Any, payment: dict[str, Any]) -> None:
        status = payment.get("status", "unknown")
        local = {
            "captured": "captured",
            "failed": "failed",
            "reversed": "reversed",
            "refunded": "captured",
            "reversing": "reversing",
            "pending": "pending",
        }.get(status, "unknown")
        conn.execute(
            "UPDATE tenders SET status = ?, failure_code = ?, message = ?, updated_at = ? WHERE id = ?"
            " AND status NOT IN ('captured', 'failed', 'reversed')",
            (
                local,
                payment.get("failure_code"),
                json.dumps(payment.get("message"), ensure_ascii=False),
                self._now(),
                payment["id"],
            ),
        )
        row = conn.execute("SELECT sale_id FROM tenders WHERE id = ?", (payment["id"],)).fetchone()
        if row is not None:
            self._complete_if_paid(conn, row["sale_id"])

    def resolve_in_flight(self) -> int:
        """Ask the server about every attempt whose final answer the till has not seen (after a restart too)."""
        settled = 0
        for tender in self.journal.query(
            "SELECT t.* FROM tenders t JOIN outbox o ON o.entity_id = t.id AND o.op = 'provider_payment'"
            " WHERE t.status IN ('pending', 'unknown', 'reversing') AND o.state = 'done'"
        ):
            response = self.client.request("GET", f"/v1/payments/{tender['id']}")
            if response.status_code == 200:
                with self.journal.tx() as conn:
                    self._apply_payment(conn, response.json())
                settled += 1
        for refund in self.journal.query(
            "SELECT r.* FROM refunds r JOIN outbox o ON o.entity_id = r.id"
            " WHERE r.status IN ('pending', 'processing') AND o.state = 'done'"
        ):
            response = self.client.request("GET", f"/v1/refunds/{refund['id']}")
            if response.status_code == 200:
                with self.journal.tx() as conn:
                    body = response.json()
                    entry = OutboxEntry(0, "provider_refund", "", None, refund["id"], None, {}, 0)
                    if body["status"] in ("succeeded", "failed"):
                        self._acknowledge_refund_status(conn, entry, body["status"])
        return settled

    def _acknowledge_refund_status(self, conn: Any, entry: OutboxEntry, status: str) -> None:
        conn.execute(
            "UPDATE refunds SET status = ? WHERE id = ? AND status <> ?", (status, entry.entity_id, status)
        )
        if status == "succeeded":
            conn.execute(
                "UPDATE tenders SET refunded = refunded + (SELECT amount FROM refunds WHERE id = ?)"
                " WHERE id = (SELECT tender_id FROM refunds WHERE id = ?)",
                (entry.entity_id, entry.entity_id),
            )

    def _probe(self) -> bool:
        try:
            self.client.request("GET", "/healthz")
        except LinkDown as exc:
            self._mark_down(str(exc))
            return False
        self._mark_up()
        return True

    def _mark_up(self) -> None:
        if not self.link.up:
            log.info("link_up")
        self.link = LinkState(up=True, since=time.monotonic())

    def _mark_down(self, why: str) -> None:
        if self.link.up:
            log.warning("link_down", error=why)
            self.link = LinkState(up=False, since=time.monotonic(), last_error=why)

    def run_sync_loop(self, idle_s: float = 0.5, max_backoff_s: float = 5.0) -> None:
        backoff = idle_s
        while not self._stop.is_set():
            try:
                self.sync_once()
                self.resolve_in_flight()
                backoff = idle_s
            except LinkDown as exc:
                self._mark_down(str(exc))
                backoff = min(max_backoff_s, backoff * 2)
            except Exception as exc:
                log.warning("sync_error", error=type(exc).__name__, detail=str(exc)[:200])
                backoff = min(max_backoff_s, backoff * 2)
            self.wake.wait(backoff)
            self.wake.clear()

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run_sync_loop, name="till-sync", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.wake.set()
        if self._thread is not None:
            self._thread.join(10)

    # --- views -------------------------------------------------------------------------------------

    def sale_view(self, sale: Any) -> dict[str, Any]:
        lines = self._sale_lines(sale["id"])
        tenders = self.journal.query(
            "SELECT * FROM tenders WHERE sale_id = ? ORDER BY created_at", (sale["id"],)
        )
        refunds = self.journal.query(
            "SELECT * FROM refunds WHERE sale_id = ? ORDER BY created_at", (sale["id"],)
        )
        paid = sum(t["amount"] for t in tenders if t["status"] == "captured")
        adjustments = self.journal.query(
            "SELECT kind, amount FROM sale_adjustments WHERE sale_id = ? ORDER BY kind", (sale["id"],)
        )
        return {
            "sale": dict(sale),
            "adjustments": [dict(a) for a in adjustments],
            "lines": [
                dict(ln) | {"amount": ln["unit_price"] * ln["quantity"] - ln["discount"]} for ln in lines
            ],
            "tenders": [
                dict(t)
                | {
                    "message": json.loads(t["message"]) if t["message"] else None,
                    "in_flight": t["status"] in IN_FLIGHT,
                }
                for t in tenders
            ],
            "refunds": [dict(r) for r in refunds],
            "paid": paid,
            "due": max(0, sale["total"] - paid) if sale["status"] == "open" else 0,
            "change": sum((t["change_due"] or 0) for t in tenders if t["method"] == "cash"),
        }

    def cashier_message(self, tender: dict[str, Any]) -> dict[str, str] | None:
        if tender.get("message"):
            msg = tender["message"]
            if not isinstance(msg, dict):
                return None
            # A payment the server refused before any provider call keeps the error body: its cashier
            # message (limit_exceeded names the next step, in both languages) is in the details.
            details = msg.get("details")
            if isinstance(details, dict) and isinstance(details.get("cashier_message"), dict):
                return dict(details["cashier_message"])
            if "en" in msg or "zh-CN" in msg:
                return msg
            found = for_payment(tender["status"], tender.get("failure_code"))
            return found.as_dict() if found else None
        found = for_payment(tender["status"], tender.get("failure_code"))
        if tender["status"] == "unknown" and not self.link.up:
            found = MESSAGES["checking"]
        return found.as_dict() if found else None

    def status(self) -> dict[str, Any]:
        return {
            "link_up": self.link.up,
            "unsynced_sales": self.journal.unsynced_sales(),
            "pending_entries": self.journal.pending_count(),
            "rejected": self.journal.query(
                "SELECT seq, op, last_error FROM outbox WHERE state = 'rejected' ORDER BY seq DESC LIMIT 5"
            ),
        }

    def _now(self) -> str:
        return self.clock.now().astimezone(UTC).isoformat()


def _scrub(body: dict[str, Any]) -> dict[str, Any]:
    """Once sent, a payment code has no business staying in the journal."""
    return {k: ("***" if k == "payment_code" else v) for k, v in body.items()}


def new_key() -> str:
    return uuid.uuid4().hex


def parse_minor(text: str | None) -> int | None:
    """Cashier input in yuan ('12.5', '12.50', '12') to fen, exactly, or None when empty."""
    if text is None or not text.strip():
        return None
    raw = text.strip().replace(",", "")
    if raw.count(".") > 1 or not raw.replace(".", "").isdigit():
        raise TillError("invalid_amount")
    units, _, minor = raw.partition(".")
    if len(minor) > 2:
        raise TillError("invalid_amount")
    value = int(units or "0") * 100 + int((minor + "00")[:2])
    if value > MAX_TENDER:
        raise TillError("invalid_amount")
    return value


def fmt(minor: int | None) -> str:
    if minor is None:
        return ""
    sign = "-" if minor < 0 else ""
    return f"{sign}{abs(minor) // 100}.{abs(minor) % 100:02d}"


def today() -> str:
    return datetime.now(UTC).date().isoformat()
