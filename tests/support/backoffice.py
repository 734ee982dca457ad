"""Helpers for the back-office tests: sign in through the form, seed a day of sales through the API."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import select, update

from tests.support.world import Tenant
from tillit.adapters.db.schema import payments
from tillit.bootstrap import Container
from tillit.domain.shifts import GENESIS, chain_hash

BO = "/backoffice"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


class Http(Protocol):
    def get(self, url: str, **kwargs: Any) -> Any: ...
    def post(self, url: str, **kwargs: Any) -> Any: ...


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found is not None, "no csrf_token field on the page"
    return found.group(1)


def signin(client: Http, key: str) -> None:
    form = client.get(f"{BO}/signin")
    answer = client.post(f"{BO}/signin", data={"api_key": key, "csrf_token": csrf_of(form.text)})
    assert answer.status_code == 200 and "/signin" not in str(answer.url), answer.text[:500]


@dataclass
class Day:
    """What ``seed_day`` made, to compare with what the pages show."""

    orders: list[dict[str, Any]] = field(default_factory=list)
    cash_taken: int = 0
    wechat_taken: int = 0
    refunded: int = 0
    shifts: list[dict[str, Any]] = field(default_factory=list)


def _post(client: Http, path: str, body: dict[str, Any], tenant: Tenant) -> Any:
    answer = client.post(path, json=body, headers={**tenant.auth(), "Idempotency-Key": uuid.uuid4().hex})
    assert answer.status_code in (200, 201), answer.text
    return answer.json()


def seed_day(client: Http, container: Container, tenant: Tenant, sales: int = 4) -> Day:
    """``sales`` cash sales through the API (the last one's payment turned into a WeChat one with a provider
    reference and a masked code, as the engine records them), one cash refund, and two chained Z reports."""
    assert sales >= 2, "the first sale is refunded in cash, the last is turned into a WeChat one"
    day = Day()
    for i in range(sales):
        order = _post(client, "/v1/orders", {"lines": [{"sku": "LATTE", "quantity": i + 1}]}, tenant)
        pay = _post(client, "/v1/payments", {"order_id": order["id"], "method": "cash"}, tenant)
        day.orders.append({**order, "payment": pay})
    last = day.orders[-1]
    with container.db.transaction() as conn:
        conn.execute(
            update(payments)
            .where(payments.c.merchant_id == tenant.merchant_id, payments.c.id == last["payment"]["id"])
            .values(
                method="wechat",
                provider="wechat",
                tendered=None,
                change_due=None,
                provider_ref=f"4200{uuid.uuid4().int % 10**24:024d}",
                payment_code_masked="1341**********5678",
            )
        )
    last["provider_ref"] = _provider_ref(container, tenant, last["payment"]["id"])
    day.cash_taken = sum(o["total"] for o in day.orders[:-1])
    day.wechat_taken = last["total"]
    refund = _post(
        client, "/v1/refunds", {"payment_id": day.orders[0]["payment"]["id"], "amount": 500}, tenant
    )
    day.refunded = refund["amount"]
    prev = GENESIS
    for number in (1, 2):
        report = {
            "number": number,
            "terminal_id": tenant.terminal_id,
            "opened_at": f"2026-11-2{number}T08:00:00+00:00",
            "closed_at": f"2026-11-2{number}T16:00:00+00:00",
            "opening_float": 10000,
            "sales_count": 1,
            "sales_by_method": {"cash": 2800},
            "refunds_by_method": {},
            "cancels_by_reason": {},
            "expected_cash": 12800,
            "counted_cash": 12800,
            "difference": 0,
        }
        body = {
            "id": uuid.uuid4().hex,
            "number": number,
            "report": report,
            "prev_hash": prev,
            "report_hash": chain_hash(prev, report),
        }
        day.shifts.append(_post(client, "/v1/shifts", body, tenant))
        prev = body["report_hash"]
    return day


def _provider_ref(container: Container, tenant: Tenant, payment_id: str) -> str:
    with container.db.read() as conn:
        return str(
            conn.execute(
                select(payments.c.provider_ref).where(
                    payments.c.merchant_id == tenant.merchant_id, payments.c.id == payment_id
                )
            ).scalar_one()
        )
