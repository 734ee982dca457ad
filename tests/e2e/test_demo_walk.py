"""`tillit demo` (what `make run` runs) as a real process on free ports: the scripted delivery order goes
from paid to confirmed by the customer's page, the receipt and the auto-confirm reminder arrive in the
demo's local mailbox (one .eml per message under TILLIT_HOME/mail), and the paper receipt is ESC/POS
bytes in a file that `tillit escpos-decode` reads back to the receipt's text and QR link.

The demo is embedded SQLite by design (`make run` on a fresh machine), so this runs once, not per
database; the walk's parts are covered on both databases by the integration tests."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from email import message_from_bytes, policy
from pathlib import Path

import httpx

from tests.e2e.conftest import TILLIT
from tests.support.live import free_port
from tillit.till.printer import decode_escpos


def _wait_line(proc: subprocess.Popen[str], pattern: str, seconds: float) -> tuple[str, re.Match[str]]:
    """Read the demo's output until ``pattern`` matches (bounded: ``seconds``)."""
    assert proc.stdout is not None
    seen: list[str] = []
    deadline = time.monotonic() + seconds
    os.set_blocking(proc.stdout.fileno(), False)
    while time.monotonic() < deadline and proc.poll() is None:
        line = proc.stdout.readline()
        if not line:
            time.sleep(0.1)
            continue
        seen.append(line)
        found = re.search(pattern, line)
        if found:
            return "".join(seen), found
    raise AssertionError(f"no {pattern!r} in the demo's output:\n{''.join(seen)[-3000:]}")


def test_make_run_walks_a_delivery_order_to_confirmed(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TILLIT_")}
    env.update(TILLIT_HOME=str(home), NO_COLOR="1", COLUMNS="250")
    api = free_port()
    ports = ["--api-port", str(api), "--sandbox-port", str(free_port()), "--till-port", str(free_port())]
    proc = subprocess.Popen(
        [*TILLIT, "demo", *ports, "--mail-port", str(free_port())],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        out, done = _wait_line(proc, r"walk done: order ([0-9a-f]{32}) (\w+)", 420)
        out += _wait_line(proc, r"demo ready", 30)[0]
        order_id, status = done.group(1), done.group(2)
        assert status == "confirmed", out
        merchant_key = re.search(r"merchant_key\s+(\S+)", out)
        assert merchant_key is not None, out

        # The mailbox: the receipt (payment captured, with the e-receipt link) and the reminder.
        mail_dir = home / "mail"
        assert f"mail: {mail_dir}" in out
        mails = [
            message_from_bytes(p.read_bytes(), policy=policy.default) for p in sorted(mail_dir.glob("*.eml"))
        ]
        by_id = {str(m["Message-ID"]): m for m in mails}
        receipt = [m for k, m in by_id.items() if f".paid.{order_id}." in k]
        assert len(receipt) == 1, list(by_id)
        body = receipt[0].get_body(("plain",))
        assert body is not None and "/receipts/" in body.get_content()
        reminders = [m for k, m in by_id.items() if ".reminder." in k]
        assert len(reminders) == 1 and reminders[0]["To"] == "wang.customer@example.com"
        assert "请确认收货" in str(reminders[0]["Subject"])

        # The order reached confirmed, by the customer, through the page's route.
        with httpx.Client(base_url=f"http://127.0.0.1:{api}", timeout=10) as http:
            listed = http.get(
                "/v1/fulfilments", headers={"Authorization": f"Bearer {merchant_key.group(1)}"}
            ).json()["data"]
            walked = next(f for f in listed if f["order_id"] == order_id)
            assert walked["status"] == "confirmed" and walked["confirmed_by"] == "customer"
            assert walked["reminded_at"] is not None
            events = http.get(
                f"/v1/orders/{order_id}/events", headers={"Authorization": f"Bearer {merchant_key.group(1)}"}
            ).json()["data"]
            moves = [e["to_status"] for e in events if e["entity"] == "fulfilment"]
            assert moves == ["awaiting_fulfilment", "shipped", "delivered", "confirmed"], moves

        # The paper receipt: ESC/POS bytes in a file, decoded back to the receipt's text and its QR.
        printed = re.search(r"paper receipt\s+(\S+\.escpos)", out)
        assert printed is not None, out
        job = Path(printed.group(1)).read_bytes()
        assert job.startswith(b"\x1b@\x1c&") and b"\x1d(k" in job  # initialise, Chinese mode, QR command
        decoded = decode_escpos(job)
        assert "Tillit Demo Café" in decoded.text and "拿铁" in decoded.text and "合计" in decoded.text
        assert decoded.cut and len(decoded.qr) == 1
        shown = subprocess.run(
            [*TILLIT, "escpos-decode", printed.group(1)], env=env, capture_output=True, text=True, timeout=60
        )
        assert shown.returncode == 0 and "拿铁" in shown.stdout and f"[QR] {decoded.qr[0]}" in shown.stdout
    finally:
        proc.send_signal(signal.SIGINT)  # the demo stops its processes and the mailbox on Ctrl-C
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
