"""ESC/POS receipts read back from a local TCP server acting as the network printer (port 9100 in a
shop): GBK Chinese text decoded to the receipt's text, the QR command, the cut, reprint marks, and a
printer that is down leaving the job in the print journal until it is back."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.mailbox import free_port
from tillit.domain.receipt import display_width
from tillit.till.i18n import method_label, translator
from tillit.till.printer import (
    FS_CHINESE_OFF,
    FS_CHINESE_ON,
    SpooledPrinter,
    decode_escpos,
    escpos_bytes,
    parse_printer,
    render_receipt,
)

URL = "http://shop.test/receipts/m/o/0123456789abcdef0123456789abcdef"
VIEW = {
    "sale": {"number": 17, "created_at": "2026-12-03T10:00:00Z", "total": 6100, "status": "completed"},
    "lines": [
        {"name": "拿铁咖啡（大杯）", "quantity": 2, "unit_price": 2800, "discount": 0, "amount": 5600},
        {"name": "Croissant 牛角包", "quantity": 1, "unit_price": 1000, "discount": 500, "amount": 500},
    ],
    "tenders": [
        {
            "status": "captured",
            "method": "wechat",
            "amount": 6100,
            "tendered": None,
            "change_due": None,
            "code_masked": "1340********1234",
        },
    ],
    "refunds": [],
}


class PrinterServer:
    """Accepts connections like a raw TCP printer and keeps each job's bytes."""

    def __init__(self, port: int) -> None:
        self.jobs: list[bytes] = []
        self.sock = socket.create_server(("127.0.0.1", port))
        self.sock.settimeout(0.2)
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5)
                chunks = []
                while chunk := conn.recv(65536):
                    chunks.append(chunk)
                self.jobs.append(b"".join(chunks))

    def wait_jobs(self, n: int) -> list[bytes]:
        for _ in range(100):
            if len(self.jobs) >= n:
                break
            self._stop.wait(0.05)
        return self.jobs

    def close(self) -> None:
        self._stop.set()
        self.thread.join(5)
        self.sock.close()


def text_of(job: bytes) -> str:
    """The GBK text between Chinese mode on and off, ESC/POS styling removed."""
    body = job.split(FS_CHINESE_ON, 1)[1].split(FS_CHINESE_OFF, 1)[0]
    for command in (b"\x1b\x61\x00", b"\x1b\x61\x01", b"\x1b\x45\x01", b"\x1b\x45\x00"):
        body = body.replace(command, b"")
    return body.decode("gbk")


@pytest.fixture
def port() -> Iterator[int]:
    yield free_port()


@pytest.mark.parametrize("width", [58, 80])
def test_chinese_receipt_over_tcp_with_qr_cut_and_reprint(tmp_path: Path, port: int, width: int) -> None:
    text = render_receipt(
        VIEW, "小店 Tillit", translator("zh_CN"), columns=parse_printer("text:x", width).columns
    )
    columns = {58: 32, 80: 48}[width]
    assert max(display_width(line) for line in text.splitlines()) <= columns
    assert "拿铁咖啡（大杯）" in text and "1340********1234" in text
    assert "134012341234" not in text  # only the masked code is ever printed

    printer = SpooledPrinter(
        tmp_path / "print-journal.sqlite", parse_printer(f"network:127.0.0.1:{port}", width)
    )
    # The printer is off: the sale goes on, the job waits in the print journal.
    where = printer.print("receipt-17", text, qr=URL)
    assert where.startswith("queued:") and printer.pending() == 1
    server = PrinterServer(port)
    try:
        assert printer.retry_pending() == 1 and printer.pending() == 0
        assert printer.print("receipt-17", text, qr=URL) == f"127.0.0.1:{port}"  # a reprint
        first, second = server.wait_jobs(2)[:2]
    finally:
        server.close()
        printer.stop()
    assert first.startswith(b"\x1b\x40")  # initialise
    assert text_of(first) == text
    assert b"\x1d(k" in first and URL.encode() in first  # QR code stored and printed by the printer
    assert first.rstrip(b"\n").endswith(b"\x1dV\x00")  # full cut
    assert text_of(second) == "*** 重印 / COPY 1 ***\n" + text


SPLIT = VIEW | {
    "tenders": [
        {
            "status": "captured",
            "method": m,
            "amount": a,
            "tendered": td,
            "change_due": ch,
            "code_masked": code,
        }
        for m, a, td, ch, code in (
            ("wechat", 2000, None, None, "1340********1234"),
            ("alipay", 2000, None, None, "2800********5678"),
            ("cash", 2100, 5000, 2900, None),
        )
    ]
}


@pytest.mark.parametrize(
    ("locale", "names", "absent"),
    [
        ("zh_CN", ("微信支付", "支付宝", "现金"), ("WeChat", "Alipay", "Cash", "Wechat")),
        ("en", ("WeChat Pay", "Alipay", "Cash"), ("微信", "支付宝", "现金", "Wechat")),
    ],
)
def test_printed_receipt_names_the_providers_in_the_receipt_language(
    locale: str, names: tuple[str, ...], absent: tuple[str, ...]
) -> None:
    """The ESC/POS bytes decoded back: each tender line starts with its method's name from the page's
    catalogue (the same method_label the cashier page uses), in the receipt's language."""
    t = translator(locale)
    printed = text_of(escpos_bytes(render_receipt(SPLIT, "Shop", t, columns=32)))
    assert [method_label(m, t) for m in ("wechat", "alipay", "cash")] == list(names)
    for name in names:
        assert any(line.startswith(name + " ") for line in printed.splitlines()), (name, printed)
    for word in absent:
        assert word not in printed, (word, printed)


def test_file_printer_and_bad_configuration(tmp_path: Path) -> None:
    device = tmp_path / "lp0"
    printer = SpooledPrinter(tmp_path / "journal.sqlite", parse_printer(f"file:{device}"))
    assert printer.print("r1", "小票\n") == str(device)
    printer.stop()
    assert device.read_bytes() == escpos_bytes("小票\n")
    for spec in ("serial:/dev/ttyS0", "network:", "file:"):
        with pytest.raises(ValueError):
            parse_printer(spec)
    with pytest.raises(ValueError):
        parse_printer("text:x", 76)
    usb = SpooledPrinter(tmp_path / "usb.sqlite", parse_printer("usb:04b8:0202"))
    assert usb.print("r1", "x").startswith("queued:")  # no pyusb / no device: kept, never raised
    usb.stop()


def test_qr_command_bytes_and_decoding_back(tmp_path: Path) -> None:
    """The QR code is the printer's own ``GS ( k`` function set (model 2, size 6, level M, store the
    data, print it), and ``decode_escpos`` reads a Chinese receipt back to its text and its link."""
    text = render_receipt(VIEW, "小店 Tillit", translator("zh_CN"))
    job = escpos_bytes(text, URL, copy_mark="*** 重印 / COPY 2 ***")
    data = URL.encode()
    store = b"\x1d(k" + (len(data) + 3).to_bytes(2, "little") + b"1P0" + data
    qr = (
        b"\x1d(k\x04\x001A2\x00"  # fn 65: model 2
        + b"\x1d(k\x03\x001C\x06"  # fn 67: module size 6
        + b"\x1d(k\x03\x001E0"  # fn 69: error correction level M
        + store  # fn 80: store the link
        + b"\x1d(k\x03\x001Q0"  # fn 81: print it
    )
    assert qr in job and job.index(FS_CHINESE_OFF) < job.index(qr)
    decoded = decode_escpos(job)
    assert decoded.qr == [URL] and decoded.cut
    assert decoded.text.startswith("*** 重印 / COPY 2 ***\n" + text)
    with pytest.raises(ValueError):
        decode_escpos(b"\x1b\x40\x1dZ\x00")  # a command it does not know is never printed as text
