"""A small world of two merchants for API tests, built through the services."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tillit.access import keys, merchants
from tillit.bootstrap import Container
from tillit.sales import catalog


@dataclass
class Tenant:
    merchant_id: str
    store_id: str
    terminal_id: str
    manager_key: str
    cashier_key: str
    products: dict[str, dict[str, Any]] = field(default_factory=dict)

    def auth(self, role: str = "terminal") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.cashier_key if role == 'terminal' else self.manager_key}"}


def make_tenant(c: Container, name: str) -> Tenant:
    with c.db.transaction() as conn:
        m = merchants.create_merchant(conn, c.deps, name=name)
        s = merchants.create_store(conn, c.deps, merchant_id=m["id"], name="Main")
        t = merchants.create_terminal(conn, c.deps, store_id=s["id"], name="Till 1")
        _, manager = keys.create_key(conn, c.deps, role="merchant", name="m", merchant_id=m["id"])
        _, cashier = keys.create_key(conn, c.deps, role="terminal", name="t", terminal_id=t["id"])
        tenant = Tenant(m["id"], s["id"], t["id"], manager, cashier)
        for sku, price, stock in (("LATTE", 2800, 50), ("CROIS", 1500, None), ("WATER", 300, 10)):
            tenant.products[sku] = catalog.create_product(
                conn,
                c.deps,
                merchant_id=m["id"],
                merchant_currency="CNY",
                sku=sku,
                name=sku.title(),
                price=price,
                barcode=f"69{abs(hash((name, sku))) % 10**11:011d}",
                stock=stock,
            )
    return tenant


def make_admin_key(c: Container) -> str:
    with c.db.transaction() as conn:
        _, secret = keys.create_key(conn, c.deps, role="admin", name="test admin")
    return secret
