"""A merchant's own webhook endpoint, on SQLite and PostgreSQL, through the API and a real local HTTP
receiver: set (the secret sealed at rest, never answered), order events go to it signed with that
secret (checked by an independent HMAC), rotation takes effect for waiting messages, removal suppresses
them, bad input writes nothing, and another merchant neither sees nor changes it."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tests.support.api import new_order, pay_cash
from tests.support.world import Tenant
from tillit.adapters.db.schema import merchant_webhooks, outbox_messages
from tillit.adapters.webhook import SIGNATURE_HEADER
from tillit.bootstrap import Container

PATH = "/v1/webhook-endpoint"
SECRET = "whsec-merchant-chosen-secret-0001"


class _Receiver(BaseHTTPRequestHandler):
    got: ClassVar[list[tuple[str, dict[str, str], bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).got.append((self.path, dict(self.headers), body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def receiver() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _put(client: TestClient, tenant: Tenant, body: Any) -> Any:
    return client.put(PATH, json=body, headers=tenant.auth("merchant"))


def _send(container: Container) -> None:
    assert container.outbox is not None
    for _ in range(5):
        if not container.outbox.send_due(container.db, container.deps, "test"):
            return


def _hooks(container: Container, merchant_id: str) -> list[Any]:
    with container.db.read() as conn:
        return list(
            conn.execute(
                select(outbox_messages).where(
                    outbox_messages.c.merchant_id == merchant_id, outbox_messages.c.channel == "webhook"
                )
            )
        )


def _signed_by(secret: str, headers: dict[str, str], body: bytes) -> bool:
    t, v1 = (part.split("=", 1)[1] for part in headers[SIGNATURE_HEADER].split(","))
    return hmac.new(secret.encode(), t.encode() + b"." + body, hashlib.sha256).hexdigest() == v1


def test_endpoint_receives_order_events_signed_with_its_secret(
    client: TestClient, container: Container, tenant: Tenant, other_tenant: Tenant, receiver: str
) -> None:
    _Receiver.got.clear()
    assert client.get(PATH, headers=tenant.auth("merchant")).json()["default"] is True
    r = _put(client, tenant, {"url": f"{receiver}/shop-a", "secret": SECRET})
    assert r.status_code == 200, r.text
    shown = r.json()
    assert shown["url"] == f"{receiver}/shop-a" and shown["secret_set"] is True
    assert SECRET not in r.text and SECRET not in client.get(PATH, headers=tenant.auth("merchant")).text
    with container.db.read() as conn:  # sealed at rest
        stored = conn.execute(
            select(merchant_webhooks.c.secret_sealed).where(
                merchant_webhooks.c.merchant_id == tenant.merchant_id
            )
        ).scalar_one()
    assert stored.startswith("v1:") and SECRET not in stored

    order = new_order(client, tenant)
    pay_cash(client, tenant, order["id"])
    other = new_order(client, other_tenant)
    pay_cash(client, other_tenant, other["id"])  # the other merchant has no endpoint: no webhook row
    assert _hooks(container, other_tenant.merchant_id) == []
    _send(container)
    got = [(p, h, b) for p, h, b in _Receiver.got if p == "/shop-a"]
    assert len(got) == 1
    _, headers, body = got[0]
    assert _signed_by(SECRET, headers, body)  # independent HMAC over the raw body
    payload = json.loads(body)
    assert payload["template"] == "payment_captured" and payload["params"]["order_id"] == order["id"]
    assert headers["Tillit-Message-Id"] == f"{tenant.merchant_id}:paid:{order['id']}:webhook"
    assert payload["merchant_id"] == tenant.merchant_id

    # Rotation: a message still waiting goes to the new URL with the new secret.
    second = new_order(client, tenant)
    pay_cash(client, tenant, second["id"])
    rotated = "whsec-rotated-secret-0000000002"
    assert _put(client, tenant, {"url": f"{receiver}/shop-a2", "secret": rotated}).status_code == 200
    _send(container)
    moved = [(h, b) for p, h, b in _Receiver.got if p == "/shop-a2"]
    assert len(moved) == 1 and _signed_by(rotated, *moved[0]) and not _signed_by(SECRET, *moved[0])

    # Removal: waiting messages are suppressed, no new ones are written.
    third = new_order(client, tenant)
    pay_cash(client, tenant, third["id"])
    assert client.delete(PATH, headers=tenant.auth("merchant")).json() == {"removed": True}
    assert client.delete(PATH, headers=tenant.auth("merchant")).json() == {"removed": False}
    _send(container)
    by_event = {row.event_id: row for row in _hooks(container, tenant.merchant_id)}
    assert by_event[f"paid:{third['id']}"].status == "suppressed"
    assert by_event[f"paid:{order['id']}"].status == "sent"
    fourth = new_order(client, tenant)
    pay_cash(client, tenant, fourth["id"])
    assert f"paid:{fourth['id']}" not in {row.event_id for row in _hooks(container, tenant.merchant_id)}


def test_bad_input_and_isolation(
    client: TestClient, container: Container, tenant: Tenant, other_tenant: Tenant
) -> None:
    assert _put(client, other_tenant, {"url": "https://b.example/hook", "secret": SECRET}).status_code == 200
    bad = [
        {"url": "ftp://x.example/hook", "secret": SECRET},
        {"url": "https://user:pw@x.example/hook", "secret": SECRET},
        {"url": "https://x.example/" + "a" * 400, "secret": SECRET},
        {"url": "https://x.example/hook", "secret": "short"},
        {"url": "https://x.example/hook"},
        {"url": "https://x.example/hook", "secret": SECRET, "extra": 1},
    ]
    for body in bad:
        r = _put(client, tenant, body)
        assert r.status_code == 422 and "error" in r.json(), (body, r.text)
    assert client.get(PATH, headers=tenant.auth("merchant")).json()["default"] is True  # nothing written
    assert client.get(PATH, headers=tenant.auth()).status_code == 403  # a cashier key
    # Merchant A's set and remove touch only A: B's endpoint stays as it was.
    assert _put(client, tenant, {"url": "https://a.example/hook", "secret": SECRET}).status_code == 200
    assert client.delete(PATH, headers=tenant.auth("merchant")).status_code == 200
    theirs = client.get(PATH, headers=other_tenant.auth("merchant")).json()
    assert theirs["url"] == "https://b.example/hook" and theirs["secret_set"] is True
