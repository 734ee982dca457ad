"""`tillit reconcile`: the shared samples on a fresh database (everything missing_locally, exit 3), a
bad file (exit 2), and a day where Tillit has every sale (exit 0; stored once)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import insert
from typer.testing import CliRunner

from tests.support.world import make_tenant
from tillit.adapters.db import migrate
from tillit.adapters.db.schema import payments, refunds
from tillit.bootstrap import build
from tillit.cli import app
from tillit.config import Settings
from tillit.kernel.context import Actor
from tillit.payments import accounts as provider_accounts
from tillit.sales import orders

DATA = Path(__file__).resolve().parents[1] / "data"
WECHAT, ALIPAY = DATA / "wechat_all_20261120.csv", DATA / "alipay_trade_20261120.csv.zip"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TILLIT_HOME", str(tmp_path / "var"))
    monkeypatch.delenv("TILLIT_DATABASE_URL", raising=False)
    return tmp_path


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["reconcile", *args])
    return result.exit_code, result.stdout, result.stderr


def test_samples_on_a_fresh_database(home: Path) -> None:
    code, out, err = run(str(WECHAT), "--provider", "wechat", "--format", "json")
    assert code == 3, err
    doc = json.loads(out)
    assert set(doc) == {"bill", "run", "summary", "discrepancies", "exit_code"} and doc["exit_code"] == 3
    assert doc["summary"]["lines"] == 14 and doc["summary"]["matched"] == 0
    assert doc["summary"]["by_class"]["missing_locally"] == {"count": 14, "amount": 42974}
    assert [d["line"] for d in doc["discrepancies"]] == list(range(2, 16))
    assert "nothing stored" in err
    code, out, _ = run(str(ALIPAY), "--provider", "alipay")
    assert code == 3
    assert "missing_locally" in out and "13" in out and "556.18" in out and "20881021778468800156" in out
    code, out, _ = run(str(ALIPAY), "--provider", "alipay", "--format", "csv")
    assert (
        code == 3 and out.splitlines()[0].startswith("id,run_id,class,reason") and len(out.splitlines()) == 14
    )


def test_bad_file_exits_2(home: Path) -> None:
    bad = home / "cut.csv"
    bad.write_bytes(WECHAT.read_bytes()[:1500])
    code, out, err = run(str(bad), "--provider", "wechat", "--format", "json")
    assert code == 2
    assert json.loads(out)["error"]["code"] == "bill_truncated" and "cut.csv:6" in err
    code, _, err = run(str(WECHAT), "--provider", "visa")
    assert code == 2


def test_everything_matched_exits_0_and_is_stored_once(home: Path) -> None:
    c = build(Settings.from_env())
    migrate.upgrade(c.db)
    tenant = make_tenant(c, "CLI shop")
    with c.db.transaction() as conn:
        provider_accounts.set_account(
            conn,
            c.deps,
            tenant.merchant_id,
            "wechat",
            {
                "appid": "wx2421b1c4370ec43b",
                "mch_id": "10000100",
                "api_key": "k" * 32,
                "base_url": "http://127.0.0.1:9",
                "fee_rate_ppm": 3800,
            },
        )
        actor = Actor("k", "merchant", tenant.merchant_id)
        _, order = orders.create_order(
            conn, c.deps, actor, {"store_id": tenant.store_id, "lines": [{"sku": "LATTE", "quantity": 1}]}
        )
    rows = {  # out_trade_no -> (amount, paid at, refunds)
        "TLW000000": (3999, "11:26:45", [("RTLW000000", 1999, "11:56:45")]),
        "TLW000001": (100, "20:51:42", []),
        "TLW000002": (260, "16:05:46", []),
        "TLW000003": (3999, "13:09:52", [("RTLW000003", 3999, "13:39:52")]),
        "TLW000004": (1250, "15:56:22", []),
        "TLW000005": (1250, "18:01:33", []),
        "TLW000006": (8800, "17:22:00", []),
        "TLW000007": (260, "19:07:47", []),
        "TLW000008": (260, "14:23:44", []),
        "TLW000009": (3999, "18:07:00", []),
        "TLW000010": (8800, "18:05:26", []),
        "TLW000011": (3999, "16:21:35", []),
    }

    def at(hms: str) -> datetime:
        h, m, s = (int(x) for x in hms.split(":"))
        return datetime(2026, 11, 20, h - 8, m, s, tzinfo=UTC)

    with c.db.transaction() as conn:
        for pid, (amount, paid, refs) in rows.items():
            conn.execute(
                insert(payments).values(
                    id=pid,
                    merchant_id=tenant.merchant_id,
                    order_id=order["id"],
                    method="wechat",
                    provider="wechat",
                    amount=amount,
                    currency="CNY",
                    status="captured",
                    created_at=at(paid),
                    updated_at=at(paid),
                )
            )
            for rid, ramount, when in refs:
                conn.execute(
                    insert(refunds).values(
                        id=rid,
                        merchant_id=tenant.merchant_id,
                        order_id=order["id"],
                        payment_id=pid,
                        amount=ramount,
                        currency="CNY",
                        status="succeeded",
                        created_at=at(when),
                        updated_at=at(when),
                    )
                )
    c.db.dispose()
    code, out, err = run(str(WECHAT), "--provider", "wechat")
    assert code == 0, out + err
    assert "Everything matched" in out and "run " in out
    code, out, _ = run(str(WECHAT), "--provider", "wechat")
    assert code == 0 and "already imported" in out


def _empty_wechat_bill(home: Path) -> Path:
    lines = WECHAT.read_text(encoding="utf-8").splitlines()
    empty = home / "wechat_empty_20261120.csv"
    empty.write_text(
        "\r\n".join([lines[0], lines[-2], "`0,`0.00,`0.00,`0.00,`0.00000,`0.00,`0.00"]) + "\r\n",
        encoding="utf-8",
    )
    return empty


def test_empty_bill_needs_the_merchant(home: Path) -> None:
    """Issue #9, defect 16: a bill that names no account is never "all matched" against nobody."""
    empty = _empty_wechat_bill(home)
    for extra in ([], ["--dry-run"]):
        code, out, err = run(
            str(empty), "--provider", "wechat", "--date", "2026-11-20", "--format", "json", *extra
        )
        assert code == 2, out + err
        assert json.loads(out)["error"]["code"] == "bill_merchant_required"
        assert len(err.strip().splitlines()) == 1 and "--merchant" in err
    c = build(Settings.from_env())
    migrate.upgrade(c.db)
    tenant = make_tenant(c, "Empty day shop")
    with c.db.transaction() as conn:
        actor = Actor("k", "merchant", tenant.merchant_id)
        _, order = orders.create_order(
            conn, c.deps, actor, {"store_id": tenant.store_id, "lines": [{"sku": "LATTE", "quantity": 1}]}
        )
        for n in range(3):
            paid = datetime(2026, 11, 20, 3, n, tzinfo=UTC)
            conn.execute(
                insert(payments).values(
                    id=f"TLWEMPTY{n}",
                    merchant_id=tenant.merchant_id,
                    order_id=order["id"],
                    method="wechat",
                    provider="wechat",
                    amount=100 + n,
                    currency="CNY",
                    status="captured",
                    created_at=paid,
                    updated_at=paid,
                )
            )
    c.db.dispose()
    code, out, err = run(
        str(empty),
        "--provider",
        "wechat",
        "--date",
        "2026-11-20",
        "--format",
        "json",
        "--merchant",
        tenant.merchant_id,
    )
    assert code == 3, out + err
    doc = json.loads(out)
    assert doc["summary"]["by_class"]["missing_at_provider"] == {"count": 3, "amount": 303}
    assert {d["out_trade_no"] for d in doc["discrepancies"]} == {"TLWEMPTY0", "TLWEMPTY1", "TLWEMPTY2"}
