"""Receipt printing for the till: plain text for a file, real ESC/POS for thermal printers.

- ``render_receipt`` lays a sale out as text (CJK characters count two columns; 58 mm = 32 columns,
  80 mm = 48).
- ``escpos_bytes`` turns that text into ESC/POS with python-escpos: initialise, Chinese mode
  (``FS &``) and GBK text, a QR code (``GS ( k``, printed by the printer itself) and a cut.
- Destinations, configured per till (``TILLIT_TILL_PRINTER``): ``text:<dir>`` (the default: one .txt
  per receipt), ``file:<path>`` (a device file such as /dev/usb/lp0, or a capture file),
  ``network:<host>[:9100]`` (raw TCP, the usual Ethernet printer) and ``usb:<vendor>:<product>``
  (needs pyusb). Width: ``TILLIT_TILL_PRINTER_WIDTH`` 58 or 80.
- ``SpooledPrinter`` makes printing never block a sale: each job is written to the till's print
  journal (``print-journal.sqlite`` next to the sale journal) before the printer is tried; a failure
  leaves it pending and ``retry_pending`` (a background loop) prints it when the printer is back.
  Printing the same receipt again is a reprint: it is marked 重印 / COPY with its count.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from escpos.printer import Dummy, File, Network, Usb

from tillit.domain.receipt import WIDTHS, center, clip, money, pair
from tillit.till.i18n import method_label

WIDTH = 32  # characters on a 58 mm thermal roll (the default)
_columns = [WIDTH]  # the configured roll's columns (set_roll_width), used by render_receipt
ESC_INIT = b"\x1b\x40"
FS_CHINESE_ON = b"\x1c\x26"  # GB2312/GBK double-byte mode on Chinese printers
FS_CHINESE_OFF = b"\x1c\x2e"
ESC_BOLD_ON, ESC_BOLD_OFF = b"\x1b\x45\x01", b"\x1b\x45\x00"
ESC_ALIGN_LEFT, ESC_ALIGN_CENTER = b"\x1b\x61\x00", b"\x1b\x61\x01"


class Printer(Protocol):
    def print(self, name: str, text: str, qr: str | None = None) -> str:
        """Print ``text`` (and a QR code of ``qr``); returns where it went (a path, a device)."""
        ...


class PrintFailed(Exception):
    """The printer could not be reached or refused the job; the job stays in the print journal."""


class FilePrinter:
    """Writes each receipt to ``<dir>/<name>.txt`` (fsynced): the demo's and the tests' printer."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    def print(self, name: str, text: str, qr: str | None = None) -> str:
        path = self.directory / f"{name}.txt"
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text + (f"[QR] {qr}\n" if qr else ""))
            fh.flush()
            os.fsync(fh.fileno())
        return str(path)


def escpos_bytes(text: str, qr: str | None = None, *, copy_mark: str | None = None) -> bytes:
    """The ESC/POS job for ``text``: GBK in Chinese mode, an optional bold centred ``copy_mark``, the QR
    code of ``qr`` and a full cut. Characters outside GBK print as ``?``."""
    job = Dummy()
    job._raw(ESC_INIT + FS_CHINESE_ON)
    if copy_mark:
        job._raw(ESC_ALIGN_CENTER + ESC_BOLD_ON + copy_mark.encode("gbk", "replace") + b"\n" + ESC_BOLD_OFF)
        job._raw(ESC_ALIGN_LEFT)
    job._raw(text.encode("gbk", "replace"))
    if not text.endswith("\n"):
        job._raw(b"\n")
    job._raw(FS_CHINESE_OFF)
    if qr:
        job._raw(ESC_ALIGN_CENTER)
        job.qr(qr, native=True, size=6)
        job._raw(ESC_ALIGN_LEFT)
    job.cut()
    return bytes(job.output)


@dataclass(frozen=True, slots=True)
class DecodedJob:
    """What an ESC/POS job prints: the text (GBK decoded), the QR codes' data, whether it cuts."""

    text: str
    qr: list[str]
    cut: bool


# ESC commands with one parameter byte: mode, underline, bold, font, align, feed n lines, code table.
_ESC_ONE_ARG = frozenset({0x21, 0x2D, 0x45, 0x4D, 0x61, 0x64, 0x74})


def decode_escpos(job: bytes) -> DecodedJob:
    """Read back a job made by ``escpos_bytes`` (and the common commands of other ESC/POS makers): the
    commands it knows are dropped, text runs are decoded as GBK, a QR code's stored data
    (``GS ( k`` cn 49 fn 80) is returned, a cut (``GS V``) noted. An unknown command raises ValueError
    rather than printing it as text. For `tillit escpos-decode <file>` and the tests."""
    text, qr, cut, i, n = bytearray(), [], False, 0, len(job)
    while i < n:
        b = job[i]
        if b == 0x1B and i + 1 < n:  # ESC
            op = job[i + 1]
            if op == 0x40:  # ESC @ initialise
                i += 2
            elif op in _ESC_ONE_ARG:
                if op == 0x64:
                    text += b"\n" * job[i + 2]
                i += 3
            else:
                raise ValueError(f"unknown ESC command 0x{op:02x} at byte {i}")
        elif b == 0x1C and i + 1 < n:  # FS: Chinese mode on (&) / off (.)
            if job[i + 1] not in (0x26, 0x2E):
                raise ValueError(f"unknown FS command 0x{job[i + 1]:02x} at byte {i}")
            i += 2
        elif b == 0x1D and i + 1 < n:  # GS
            op = job[i + 1]
            if op == 0x28 and i + 4 < n and job[i + 2] == 0x6B:  # GS ( k pL pH cn fn data
                size = job[i + 3] + 256 * job[i + 4]
                body = job[i + 5 : i + 5 + size]
                if len(body) >= 3 and body[0] == 0x31 and body[1] == 0x50:  # QR: store the data
                    qr.append(body[3:].decode("utf-8", "replace"))
                i += 5 + size
            elif op == 0x56:  # GS V m [n]: cut
                cut = True
                i += 4 if i + 2 < n and job[i + 2] in (0x41, 0x42) else 3  # A/B take a feed count
            else:
                raise ValueError(f"unknown GS command 0x{op:02x} at byte {i}")
        else:
            text.append(b)
            i += 1
    return DecodedJob(bytes(text).decode("gbk", "replace"), qr, cut)


@dataclass(frozen=True)
class PrinterConfig:
    kind: str  # text | file | network | usb
    target: str = ""  # directory, device path or host
    port: int = 9100
    usb_vendor: int = 0
    usb_product: int = 0
    width_mm: int = 58
    timeout_s: float = 5.0

    @property
    def columns(self) -> int:
        return WIDTHS[self.width_mm]


def parse_printer(spec: str, width_mm: int = 58) -> PrinterConfig:
    """``text:<dir>``, ``file:<path>``, ``network:<host>[:<port>]`` or ``usb:<vendor hex>:<product hex>``."""
    if width_mm not in WIDTHS:
        raise ValueError(f"printer width must be one of {sorted(WIDTHS)} mm, not {width_mm}")
    kind, _, rest = spec.partition(":")
    if kind in ("text", "file") and rest:
        return PrinterConfig(kind, rest, width_mm=width_mm)
    if kind == "network" and rest:
        host, _, port = rest.partition(":")
        return PrinterConfig("network", host, int(port or 9100), width_mm=width_mm)
    if kind == "usb":
        vendor, _, product = rest.partition(":")
        return PrinterConfig(
            "usb", usb_vendor=int(vendor, 16), usb_product=int(product, 16), width_mm=width_mm
        )
    raise ValueError(
        f"unknown printer {spec!r}: use text:<dir>, file:<path>, network:<host>[:port] or usb:<vid>:<pid>"
    )


class EscposPrinter:
    """Sends ESC/POS jobs to a file, a TCP printer (port 9100) or a USB printer."""

    def __init__(self, config: PrinterConfig) -> None:
        self.config = config

    def send(self, job: bytes) -> str:
        cfg = self.config
        device: Any
        if cfg.kind == "file":
            device, where = File(cfg.target, auto_flush=True), cfg.target
        elif cfg.kind == "network":
            device, where = Network(cfg.target, cfg.port, timeout=cfg.timeout_s), f"{cfg.target}:{cfg.port}"
        elif cfg.kind == "usb":
            if not Usb.is_usable():
                raise PrintFailed("USB printing needs pyusb: pip install pyusb")
            device, where = Usb(cfg.usb_vendor, cfg.usb_product, timeout=int(cfg.timeout_s * 1000)), "usb"
        else:
            raise PrintFailed(f"printer kind {cfg.kind!r} does not take ESC/POS")
        try:
            device.open(raise_not_found=True)
            device._raw(job)
        except Exception as exc:  # the library raises many types (socket, USB, device-not-found)
            raise PrintFailed(f"{where}: {type(exc).__name__}: {exc}") from exc
        finally:
            with contextlib.suppress(Exception):  # closing a connection that never opened
                device.close()
        return where

    def print(self, name: str, text: str, qr: str | None = None) -> str:
        return self.send(escpos_bytes(text, qr))


_SPOOL_SCHEMA = """
CREATE TABLE IF NOT EXISTS print_jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, text TEXT NOT NULL, qr TEXT,
    copy INTEGER NOT NULL CHECK (copy >= 0), state TEXT NOT NULL CHECK (state IN ('pending', 'printed')),
    attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT, created_at TEXT NOT NULL, printed_at TEXT
);
CREATE INDEX IF NOT EXISTS ix_print_jobs_pending ON print_jobs (state, id);
"""
COPY_MARK = "*** 重印 / COPY {n} ***"


class SpooledPrinter:
    """Journal first, then print: a failed print never blocks (or loses) a sale.

    ``print`` returns where the receipt went, or ``queued: <reason>`` when the printer failed; the job is
    kept and ``retry_pending`` prints it later, oldest first. The n-th print of the same ``name`` carries
    the copy mark ``重印 / COPY n``. Thread-safe (one lock around the journal and the printer)."""

    def __init__(self, journal_path: Path, config: PrinterConfig) -> None:
        self.config = config
        self.text_printer = FilePrinter(Path(config.target)) if config.kind == "text" else None
        self.escpos = EscposPrinter(config) if config.kind != "text" else None
        journal_path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(journal_path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SPOOL_SCHEMA)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def columns(self) -> int:
        return self.config.columns

    def print(self, name: str, text: str, qr: str | None = None) -> str:
        now = datetime.now(UTC).isoformat()
        with self._lock:
            (earlier,) = self._db.execute(
                "SELECT COUNT(*) FROM print_jobs WHERE name = ?", (name,)
            ).fetchone()
            cur = self._db.execute(
                "INSERT INTO print_jobs (name, text, qr, copy, state, created_at) VALUES (?, ?, ?, ?, 'pending', ?)",
                (name, text, qr, int(earlier), now),
            )
            job_id = int(cur.lastrowid or 0)
            return self._try(job_id)

    def _try(self, job_id: int) -> str:
        name, text, qr, copy = self._db.execute(
            "SELECT name, text, qr, copy FROM print_jobs WHERE id = ?", (job_id,)
        ).fetchone()
        mark = COPY_MARK.format(n=copy) if copy else None
        try:
            if self.text_printer is not None:
                where = self.text_printer.print(name, (mark + "\n" if mark else "") + text, qr)
            else:
                assert self.escpos is not None
                where = self.escpos.send(escpos_bytes(text, qr, copy_mark=mark))
        except (PrintFailed, OSError) as exc:
            self._db.execute(
                "UPDATE print_jobs SET attempts = attempts + 1, last_error = ? WHERE id = ?",
                (str(exc)[:300], job_id),
            )
            return f"queued: {exc}"
        self._db.execute(
            "UPDATE print_jobs SET state = 'printed', attempts = attempts + 1, printed_at = ? WHERE id = ?",
            (datetime.now(UTC).isoformat(), job_id),
        )
        return where

    def pending(self) -> int:
        with self._lock:
            return int(
                self._db.execute("SELECT COUNT(*) FROM print_jobs WHERE state = 'pending'").fetchone()[0]
            )

    def retry_pending(self) -> int:
        """Print waiting jobs, oldest first, stopping at the first failure; returns how many printed."""
        printed = 0
        with self._lock:
            ids = [
                r[0]
                for r in self._db.execute("SELECT id FROM print_jobs WHERE state = 'pending' ORDER BY id")
            ]
            for job_id in ids:
                if self._try(job_id).startswith("queued:"):
                    break
                printed += 1
        return printed

    def start(self, every_s: float = 5.0) -> None:
        def loop() -> None:
            while not self._stop.wait(every_s):
                self.retry_pending()

        self._thread = threading.Thread(target=loop, name="tillit-print-retry", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        self._db.close()


def set_roll_width(width_mm: int) -> None:
    """Lay receipts out for this till's roll (58 or 80 mm) from now on."""
    _columns[0] = WIDTHS[width_mm]


def render_receipt(view: dict[str, Any], shop: str, t: Any, columns: int | None = None) -> str:
    """A plain-text receipt: lines, discounts, tenders (masked codes only), change, refunds; ``t``
    translates labels. CJK-aware: a Chinese character takes two of the ``columns`` (default: the
    configured roll, ``set_roll_width``)."""
    columns = columns or _columns[0]
    sale = view["sale"]
    rule = "-" * columns
    out = [
        center(shop, columns),
        rule,
        f"{t('Receipt')} #{sale['number']}",
        sale["created_at"][:19].replace("T", " "),
        rule,
    ]
    for line in view["lines"]:
        out.append(clip(line["name"], columns))
        out.append(
            pair(f"  {line['quantity']} x {money(line['unit_price'])}", money(line["amount"]), columns)
        )
        if line["discount"]:
            out.append(pair(f"  {t('Discount')}", "-" + money(line["discount"]), columns))
    out.append(rule)
    out.append(pair(t("Total"), money(sale["total"]), columns))
    for tender in view["tenders"]:
        if tender["status"] == "captured":
            label = method_label(tender["method"], t)
            out.append(pair(label, money(tender["amount"]), columns))
            if tender["method"] == "cash" and tender["tendered"]:
                out.append(pair(f"  {t('Tendered')}", money(tender["tendered"]), columns))
                out.append(pair(f"  {t('Change')}", money(tender["change_due"] or 0), columns))
            if tender["code_masked"]:
                out.append(f"  {tender['code_masked']}")
    for refund in view["refunds"]:
        if refund["status"] == "succeeded":
            out.append(pair(t("Refund"), "-" + money(refund["amount"]), columns))
    if sale["status"] == "cancelled":
        out.append(t("Cancelled"))
    out.append(rule)
    out.append(center(t("Thank you"), columns))
    return "\n".join(out) + "\n"
