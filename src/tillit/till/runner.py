"""Wiring for `tillit till`: journal, server client, sync loop, printer and the cashier page."""

from __future__ import annotations

import os
from pathlib import Path

import structlog
import uvicorn

from tillit.till.client import LinkDown, ServerClient
from tillit.till.journal import Journal
from tillit.till.printer import SpooledPrinter, parse_printer, set_roll_width
from tillit.till.service import Till
from tillit.till.web import create_till_app

log = structlog.get_logger("tillit.till")


def build_till(server: str, key: str, home: Path) -> Till:
    journal = Journal(home / "journal.sqlite")
    client = ServerClient(server, key)
    till = Till(journal, client)
    try:
        me = client.request("GET", "/v1/me").json()
        if me.get("role") != "terminal":
            raise SystemExit("the till needs a terminal key")
        with journal.tx() as conn:
            journal.set_meta(conn, "terminal_id", me["terminal_id"])
            journal.set_meta(conn, "merchant_id", me["merchant_id"])
        till.terminal_id = me["terminal_id"]
        count = till.refresh_catalogue()
        log.info("catalogue_loaded", products=count)
    except LinkDown as exc:
        # Offline start: sell cash from the journal's copy of the catalogue; sync when the link returns.
        log.warning("server_unreachable_at_start", error=str(exc))
        till.link.up = False
    return till


def run_till(*, server: str, key: str, port: int, home: Path, shop: str) -> None:
    till = build_till(server, key, home)
    printer = build_printer(home)
    app = create_till_app(till, printer, shop_name=shop)
    till.start()  # resumes unsynced entries and asks about unanswered payments right away
    printer.start()  # reprints what a failed printer left in the print journal
    try:
        uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    finally:
        till.stop()
        printer.stop()


def build_printer(home: Path) -> SpooledPrinter:
    """This till's printer (docs/notifications.md, printing): TILLIT_TILL_PRINTER (default text files
    under ``home/receipts``) and TILLIT_TILL_PRINTER_WIDTH (58 or 80 mm), behind the print journal."""
    width = int(os.environ.get("TILLIT_TILL_PRINTER_WIDTH", "58"))
    config = parse_printer(os.environ.get("TILLIT_TILL_PRINTER") or f"text:{home / 'receipts'}", width)
    set_roll_width(width)
    return SpooledPrinter(home / "print-journal.sqlite", config)
