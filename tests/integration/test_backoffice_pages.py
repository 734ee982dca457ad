"""The manager pages over real databases: today's figures, order search and refund, the Z-report chain,
products (create, edit, deactivate, CSV import/export), terminals and their keys."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from tests.support.backoffice import BO, csrf_of, seed_day, signin
from tests.support.world import Tenant
from tillit.adapters.db.schema import api_keys, products, refunds, shifts
from tillit.bootstrap import Container


def money(fen: int) -> str:
    return f"¥{fen // 100:,}.{fen % 100:02d}"


def test_today_shows_the_days_figures(client: TestClient, container: Container, tenant: Tenant) -> None:
    day = seed_day(client, container, tenant)
    signin(client, tenant.manager_key)
    page = client.get(f"{BO}/today").text
    assert f'id="sales-count">{len(day.orders)}<' in page
    assert money(day.cash_taken + day.wechat_taken) in page
    assert re.search(rf'data-method="cash">.*?{re.escape(money(day.cash_taken))}', page)
    assert re.search(rf'data-method="wechat">.*?{re.escape(money(day.wechat_taken))}', page)
    assert f'id="refunded-amount">{money(day.refunded)}<' in page
    till = re.search(rf'data-till="{tenant.terminal_id}">(.*?)</tr>', page, re.S)
    assert till is not None and f">{len(day.orders)}<" in till.group(1) and "#2" in till.group(1)


def test_order_search_and_refund(client: TestClient, container: Container, tenant: Tenant) -> None:
    day = seed_day(client, container, tenant, sales=3)
    signin(client, tenant.manager_key)
    first, last = day.orders[0], day.orders[-1]

    def hits(**query: str) -> set[str]:
        answer = client.get(f"{BO}/orders", params=query)
        assert answer.status_code == 200, answer.text[:300]
        return set(re.findall(r'data-order="([0-9a-f]+)"', answer.text))

    assert hits(number=str(first["number"])) == {first["id"]}
    assert hits(amount=f"{last['total'] / 100:.2f}") == {last["id"]}
    assert hits(provider_ref=last["provider_ref"]) == {last["id"]}
    assert hits(last4="5678") == {last["id"]}
    assert hits(last4="0000") == set()
    assert hits(since="2000-01-01T00:00", until="2000-01-02T00:00") == set()
    assert len(hits(since="2000-01-01T00:00")) >= 3
    assert client.get(f"{BO}/orders", params={"last4": "12a4"}).status_code == 422

    order_page = client.get(f"{BO}/orders/{first['id']}").text
    assert 'id="timeline"' in order_page and "→" in order_page
    form = {
        "csrf_token": csrf_of(order_page),
        "payment_id": first["payment"]["id"],
        "amount": "1.00",
        "reason": "cold coffee",
        "idempotency_key": "page-refund-1",
    }
    done = client.post(f"{BO}/orders/{first['id']}/refund", data=form)
    assert done.status_code == 200 and 'class="msg ok"' in done.text
    again = client.post(f"{BO}/orders/{first['id']}/refund", data=form)  # a double submit replays
    assert again.status_code == 200
    too_much = client.post(
        f"{BO}/orders/{first['id']}/refund", data={**form, "amount": "999.00", "idempotency_key": "k2"}
    )
    assert too_much.status_code == 409 and "refund_exceeds_captured" in too_much.text
    with container.db.read() as conn:
        total = conn.execute(
            select(func.sum(refunds.c.amount)).where(
                refunds.c.merchant_id == tenant.merchant_id, refunds.c.payment_id == first["payment"]["id"]
            )
        ).scalar_one()
    assert total == day.refunded + 100  # the seeded 5.00 and one 1.00 from the page, not two
    missing_csrf = client.post(f"{BO}/orders/{first['id']}/refund", data={**form, "csrf_token": ""})
    assert missing_csrf.status_code == 403


def test_z_report_chain_is_verified_on_the_page(
    client: TestClient, container: Container, tenant: Tenant
) -> None:
    day = seed_day(client, container, tenant, sales=2)
    signin(client, tenant.manager_key)
    listing = client.get(f"{BO}/shifts").text
    assert listing.count(f"{BO}/shifts/") >= 2
    ok = client.get(f"{BO}/shifts/verify", headers={"HX-Request": "true"}).text
    assert "chain-ok" in ok and "chain-broken" not in ok
    report = client.get(f"{BO}/shifts/{day.shifts[0]['id']}").text
    assert 'id="zreport"' in report and day.shifts[0]["report_hash"] in report
    with container.db.transaction() as conn:  # someone edits the first report's counted cash in place
        conn.execute(
            update(shifts)
            .where(shifts.c.merchant_id == tenant.merchant_id, shifts.c.id == day.shifts[0]["id"])
            .values(report=func.replace(shifts.c.report, '"counted_cash":12800', '"counted_cash":99999'))
        )
    broken = client.get(f"{BO}/shifts/verify").text
    assert "chain-broken" in broken and "#1" in broken


@pytest.mark.parametrize("backend", ["sqlite"])
def test_products_create_edit_deactivate(client: TestClient, container: Container, tenant: Tenant) -> None:
    signin(client, tenant.manager_key)
    page = client.get(f"{BO}/products").text
    token = csrf_of(page)
    made = client.post(
        f"{BO}/products",
        data={
            "csrf_token": token,
            "sku": "TEA",
            "name": "绿茶",
            "price": "12.5",
            "barcode": "",
            "stock": "7",
        },
    )
    assert made.status_code == 200 and 'data-sku="TEA"' in made.text and "¥12.50" in made.text
    dup = client.post(f"{BO}/products", data={"csrf_token": token, "sku": "TEA", "name": "x", "price": "1"})
    assert dup.status_code == 409 and "product_exists" in dup.text
    bad = client.post(f"{BO}/products", data={"csrf_token": token, "sku": "X", "name": "x", "price": "1.234"})
    assert bad.status_code == 422
    with container.db.read() as conn:
        pid = conn.execute(
            select(products.c.id).where(products.c.merchant_id == tenant.merchant_id, products.c.sku == "TEA")
        ).scalar_one()
    edited = client.post(
        f"{BO}/products/{pid}",
        data={"csrf_token": token, "sku": "TEA", "name": "绿茶", "price": "13", "stock": ""},
    )
    assert edited.status_code == 200 and "¥13.00" in edited.text
    off = client.post(f"{BO}/products/{pid}/active", data={"csrf_token": token, "active": "0"})
    assert off.status_code == 200
    with container.db.read() as conn:
        row = conn.execute(select(products).where(products.c.id == pid)).one()
    assert (row.price, row.stock, row.active) == (1300, None, 0)


def test_product_csv_import_is_all_or_nothing_and_export_is_safe(
    client: TestClient, container: Container, tenant: Tenant
) -> None:
    signin(client, tenant.manager_key)
    token = csrf_of(client.get(f"{BO}/products").text)

    def count() -> int:
        with container.db.read() as conn:
            return int(
                conn.execute(
                    select(func.count()).where(products.c.merchant_id == tenant.merchant_id)
                ).scalar_one()
            )

    before = count()
    bad = 'sku,barcode,name,price,stock,active\nCAKE,,蛋糕,18.00,5,1\nBAD,,=HYPERLINK("x"),abc,,1\n'
    answer = client.post(
        f"{BO}/products/import",
        data={"csrf_token": token},
        files={"file": ("p.csv", bad.encode(), "text/csv")},
    )
    assert answer.status_code == 422
    lines = set(re.findall(r'class="row-error" data-line="(\d+)"', answer.text))
    assert lines == {"3"} and "formula_cell" in answer.text and "invalid_price" in answer.text
    assert count() == before  # the good row was not imported either
    good = 'sku,name,price,stock\nCAKE,蛋糕,18.00,5\nLATTE,Latte,29.00,40\n"\'=SUM(A1)",Quoted,1.00,\n'
    done = client.post(
        f"{BO}/products/import",
        data={"csrf_token": token},
        files={"file": ("p.csv", good.encode(), "text/csv")},
    )
    assert done.status_code == 200 and "2" in done.text and count() == before + 2
    export = client.get(f"{BO}/products/export.csv")
    assert export.status_code == 200 and export.headers["content-type"].startswith("text/csv")
    text = export.content.decode("utf-8-sig")
    assert "CAKE,,蛋糕,18.00,5,1" in text and "LATTE" in text
    assert "'=SUM(A1)" in text and ",=SUM" not in text


@pytest.mark.parametrize("backend", ["sqlite"])
def test_terminals_and_keys(client: TestClient, container: Container, tenant: Tenant) -> None:
    signin(client, tenant.manager_key)
    page = client.get(f"{BO}/terminals").text
    token = csrf_of(page)
    made = client.post(
        f"{BO}/terminals", data={"csrf_token": token, "store_id": tenant.store_id, "name": "Till 2"}
    )
    assert made.status_code == 200 and "Till 2" in made.text
    issued = client.post(
        f"{BO}/terminals/{tenant.terminal_id}/keys", data={"csrf_token": token, "name": "front"}
    )
    secret = re.search(r'id="new-secret">(tk_ter_[^<]+)<', issued.text)
    assert secret is not None and issued.headers["cache-control"] == "no-store"
    assert client.get("/v1/me", headers={"Authorization": f"Bearer {secret.group(1)}"}).status_code == 200
    assert secret.group(1) not in client.get(f"{BO}/terminals").text  # shown once only
    with container.db.read() as conn:
        key_id = conn.execute(
            select(api_keys.c.id).where(
                api_keys.c.name == "front", api_keys.c.terminal_id == tenant.terminal_id
            )
        ).scalar_one()
    revoked = client.post(f"{BO}/keys/{key_id}/revoke", data={"csrf_token": token})
    assert revoked.status_code == 200
    assert client.get("/v1/me", headers={"Authorization": f"Bearer {secret.group(1)}"}).status_code == 401
    with container.db.read() as conn:
        manager_key_id = conn.execute(
            select(api_keys.c.id).where(
                api_keys.c.merchant_id == tenant.merchant_id, api_keys.c.role == "merchant"
            )
        ).scalar_one()
    assert client.post(f"{BO}/keys/{manager_key_id}/revoke", data={"csrf_token": token}).status_code == 404
