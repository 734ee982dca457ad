"""Issue #9, defect 9, end to end: a bill whose provider text starts with ``= + - @``, a TAB or a CR is
imported through real HTTP, and the reconciliation CSV export downloaded through real HTTP (and the one
other CSV Tillit writes, ``tillit reconcile --format csv``) carries every such cell with a leading ``'``
while integers, ids and plain text stay exactly as the JSON export shows them. SQLite and PostgreSQL.

The export is the only CSV the server or the CLI writes (``grep csv.writer/DictWriter/text/csv src``:
``reconciliation/service.export_csv``, used by the export route and by ``tillit reconcile``).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from tests.support import pg, recon
from tests.support.live import live_server
from tests.support.world import Tenant, make_tenant
from tillit.adapters.db import migrate
from tillit.bootstrap import Container, build
from tillit.cli import app
from tillit.config import Settings

HYPERLINK = '=HYPERLINK("http://x","y")'
#: what a spreadsheet would evaluate; written independently of domain/csvsafe.py on purpose
DANGEROUS = ("=", "+", "-", "@", "\t", "\r")
INTEGER_COLUMNS = {"line", "local_amount", "provider_amount", "provider_fee", "expected_fee"}


@pytest.fixture(scope="module")
def urls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Databases of this module's own: the bills leave unknown payments that other tests need not meet."""
    made: dict[str, str] = {}
    yield made
    if "postgresql" in made:
        pg.drop_database(made["postgresql"])


@pytest.fixture
def container(
    backend: str, urls: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Container]:
    if backend not in urls:
        urls[backend] = (
            pg.create_database("tillit_csvsafe")
            if backend == "postgresql"
            else f"sqlite:///{tmp_path_factory.mktemp('csvsafe') / 'csvsafe.sqlite'}"
        )
        # One home per database: the keyring that sealed anything stored in it stays with it.
        urls[f"{backend}-home"] = str(tmp_path_factory.mktemp("csvsafe-home"))
    c = build(Settings(home=Path(urls[f"{backend}-home"]), database_url=urls[backend]))
    migrate.upgrade(c.db)
    yield c
    c.db.dispose()


@pytest.fixture
def http(container: Container) -> Iterator[httpx.Client]:
    with live_server(container) as base, httpx.Client(base_url=base, timeout=60) as client:
        yield client


def expected_cell(value: Any) -> str:
    """What the CSV must hold for a JSON export value: numbers as numbers, dangerous text quoted."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    text = str(value)
    return "'" + text if text.startswith(DANGEROUS) else text


def hostile_wechat_bill() -> tuple[bytes, dict[str, str]]:
    """A real WeChat bill (the sandbox's writer) of two clean trades plus unknown payments and an unknown
    refund whose provider text is hostile; returns the bill and {planted text: field it lands in}."""
    corpus = recon.Corpus("wechat", *recon.fresh_accounts())
    tag = recon.uid()[:8]
    planted: dict[str, str] = {}
    hostile = [
        ("-cmd" + tag, "+1" + tag),
        ("@SUM(A1)" + tag, "=1+1" + tag),
        ("\tTAB" + tag, "\tTABNO" + tag),
        ("plain" + tag, "42000" + tag),  # a control: plain text stays as it is
    ]
    for n, (out_trade_no, trade_no) in enumerate(hostile, start=1):
        t = recon._trade("wechat", n, 1000 + n, recon.china(recon.DAY, 10, n), out_trade_no=out_trade_no)
        # goods / attach are provider text too (not exported: the export carries no free-text bill column)
        t = dataclasses.replace(
            t, trade_no=trade_no, extra={**t.extra, "body": HYPERLINK, "attach": "@SUM(A1)"}
        )
        corpus.trades.append(t)
        planted[out_trade_no] = "out_trade_no"
        planted[trade_no] = "trade_no"
    base = corpus.trades[-1]
    refund = recon._refund(base, 9, 300, recon.china(recon.DAY, 11, 0), out="-refund" + tag)
    refund = dataclasses.replace(refund, refund_no="+5030" + tag)
    corpus.refunds.append((base, refund))
    planted[refund.out_refund_no] = "out_refund_no"
    planted[refund.refund_no] = "refund_no"
    return corpus.bill_bytes(), planted


def hostile_generic_bill() -> tuple[bytes, str, dict[str, str]]:
    """A generic CSV (';'-delimited, so the formula's comma is inside one field) and its mapping."""
    tag = recon.uid()[:8]
    mapping = {
        "provider": "wechat",
        "delimiter": ";",
        "amount_unit": "fen",
        "columns": {"out_trade_no": "order", "trade_no": "txn", "amount": "fen", "time": "at"},
    }
    rows = [
        ("order", "txn", "fen", "at"),
        (HYPERLINK + tag, "=cmd|' /C calc'!A0" + tag, "1250", "2026-11-20 12:00:00"),
        ("ok" + tag, "@x" + tag, "300", "2026-11-20 12:01:00"),
    ]
    text = "\n".join(";".join(r) for r in rows) + "\n"
    planted = {
        HYPERLINK + tag: "out_trade_no",
        "=cmd|' /C calc'!A0" + tag: "trade_no",
        "@x" + tag: "trade_no",
    }
    return text.encode(), json.dumps(mapping), planted


def upload(http: httpx.Client, tenant: Tenant, data: bytes, **params: str) -> dict[str, Any]:
    r = http.post(
        "/v1/reconciliation/bills",
        params={"provider": "wechat", **params},
        content=data,
        headers={**tenant.auth("merchant"), "Content-Type": "application/octet-stream"},
    )
    assert r.status_code == 201, r.text
    return dict(r.json()["run"])


def check_export(
    http: httpx.Client, tenant: Tenant, run_id: str, planted: dict[str, str]
) -> list[dict[str, str]]:
    auth = tenant.auth("merchant")
    r = http.get(f"/v1/reconciliation/runs/{run_id}/export", headers=auth)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    doc = http.get(f"/v1/reconciliation/runs/{run_id}/export", params={"format": "json"}, headers=auth).json()
    return check_csv(r.text, doc["discrepancies"], planted)


def check_csv(text: str, raw: list[dict[str, Any]], planted: dict[str, str]) -> list[dict[str, str]]:
    """Every cell of the CSV is the JSON value, quoted when it would be a formula; each planted text is
    found quoted in its column; integer columns are plain (possibly negative) integers."""
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    assert len(rows) == len(raw) and rows
    seen: set[str] = set()
    for row in rows:
        same = [
            d
            for d in raw
            if expected_cell(d["out_trade_no"]) == row["out_trade_no"]
            and expected_cell(d["out_refund_no"]) == row["out_refund_no"]
            and d["reason"] == row["reason"]
        ]
        assert len(same) == 1, f"CSV row {row} is not one discrepancy of the JSON export (unquoted cell?)"
        src = same[0]
        assert set(row) == set(src)
        for column, cell in row.items():
            assert cell == expected_cell(src[column]), (column, cell, src[column])
            if column in INTEGER_COLUMNS and cell:
                assert int(cell) == src[column]  # a number a spreadsheet can sum, never quoted
            elif cell.startswith(DANGEROUS):
                pytest.fail(f"{column} cell {cell!r} would be evaluated as a formula")
            if src[column] in planted:
                assert planted[src[column]] == column and cell == "'" + src[column]
                seen.add(src[column])
    assert seen == set(planted), set(planted) - seen
    return rows


def test_hostile_bill_text_is_quoted_in_the_http_export(
    container: Container, http: httpx.Client, backend: str
) -> None:
    tenant = make_tenant(container, f"CSV shop {backend} {recon.uid()[:6]}")
    data, planted = hostile_wechat_bill()
    run = upload(http, tenant, data)
    assert run["counts"]["missing_locally"] == 5  # four unknown payments and the unknown refund
    # The plain control is not in `planted`: it must come back exactly as the bill had it.
    planted = {k: v for k, v in planted.items() if k.startswith(DANGEROUS)}
    # A manager's resolution is free text too, also exported.
    found = http.get(f"/v1/reconciliation/runs/{run['id']}/discrepancies", headers=tenant.auth("merchant"))
    targets = [d for d in found.json()["data"] if d["status"] == "open"][:3]
    assert len(targets) == 3
    for target, resolution in zip(targets, [HYPERLINK, "\tnote", "\rnote"], strict=True):
        r = http.post(
            f"/v1/reconciliation/discrepancies/{target['id']}/resolve",
            json={"resolution": resolution},
            headers=tenant.auth("merchant"),
        )
        assert r.status_code == 200, r.text
        assert r.json()["resolution"] == resolution
        planted[resolution] = "resolution"
    rows = check_export(http, tenant, run["id"], planted)
    # The goods/attach columns are not exported: the formula appears only as the quoted resolution.
    assert [c for r in rows for k, c in r.items() if "HYPERLINK" in c] == ["'" + HYPERLINK]


def test_formula_with_a_comma_in_a_generic_csv(
    container: Container, http: httpx.Client, backend: str
) -> None:
    tenant = make_tenant(container, f"CSV generic {backend} {recon.uid()[:6]}")
    data, mapping, planted = hostile_generic_bill()
    run = upload(http, tenant, data, format="csv", mapping=mapping)
    assert run["counts"]["missing_locally"] == 2
    check_export(http, tenant, run["id"], planted)


def test_cli_csv_is_quoted_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`tillit reconcile --format csv` writes the same export: the same rule holds on stdout."""
    monkeypatch.setenv("TILLIT_HOME", str(tmp_path / "var"))
    monkeypatch.delenv("TILLIT_DATABASE_URL", raising=False)
    data, mapping, planted = hostile_generic_bill()
    bill, mapping_file = tmp_path / "bill.csv", tmp_path / "mapping.json"
    bill.write_bytes(data)
    mapping_file.write_text(mapping)
    c = build(Settings.from_env())
    migrate.upgrade(c.db)
    merchant_id = make_tenant(c, "CLI csv shop").merchant_id
    c.db.dispose()
    args = [
        "reconcile",
        str(bill),
        "--provider",
        "csv",
        "--mapping",
        str(mapping_file),
        "--merchant",
        merchant_id,
    ]
    as_json = CliRunner().invoke(app, [*args, "--format", "json"])
    as_csv = CliRunner().invoke(app, [*args, "--format", "csv"])
    assert as_csv.exit_code == as_json.exit_code == 3, as_csv.stderr
    check_csv(as_csv.stdout, json.loads(as_json.stdout)["discrepancies"], planted)
