"""The back office's webhook page (ful21) over real databases and a real local HTTP receiver: add an
endpoint (the secret shown once, sealed at rest, never shown again), deliveries signed with it and listed
with their state, a failing receiver shown as failing with its next retry, rotate, disable and enable,
delete; CSRF required and bad input shown as an error with nothing written; another merchant's endpoint
id is a 404 and its endpoint is untouched."""

from __future__ import annotations

import hashlib
import hmac
import re
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from tests.support.api import new_order, pay_cash
from tests.support.backoffice import BO, csrf_of, signin
from tests.support.world import Tenant
from tillit.adapters.db.schema import merchant_webhooks, outbox_messages
from tillit.adapters.webhook import SIGNATURE_HEADER
from tillit.bootstrap import Container
from tillit.domain.errors import DomainError
from tillit.notifications import endpoints

SECRET = re.compile(r'id="webhook-secret">([^<]+)<')


class _Receiver(BaseHTTPRequestHandler):
    got: ClassVar[list[tuple[str, dict[str, str], bytes]]] = []
    failing: ClassVar[set[str]] = set()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).got.append((self.path, dict(self.headers), body))
        self.send_response(503 if self.path in self.failing else 200)
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


def _send(container: Container) -> None:
    assert container.outbox is not None
    for _ in range(5):
        if not container.outbox.send_due(container.db, container.deps, "test"):
            return


def _signed_by(secret: str, headers: dict[str, str], body: bytes) -> bool:
    t, v1 = (part.split("=", 1)[1] for part in headers[SIGNATURE_HEADER].split(","))
    return hmac.compare_digest(
        hmac.new(secret.encode(), t.encode() + b"." + body, hashlib.sha256).hexdigest(), v1
    )


def _rows(container: Container, merchant_id: str) -> list[Any]:
    with container.db.read() as conn:
        return list(
            conn.execute(select(merchant_webhooks).where(merchant_webhooks.c.merchant_id == merchant_id))
        )


def _add(client: TestClient, url: str) -> Any:
    token = csrf_of(client.get(f"{BO}/webhooks").text)
    return client.post(f"{BO}/webhooks", data={"csrf_token": token, "url": url})


def test_add_deliver_rotate_disable_delete(
    client: TestClient, container: Container, tenant: Tenant, receiver: str
) -> None:
    _Receiver.got.clear()
    signin(client, tenant.manager_key)
    page = client.get(f"{BO}/webhooks")
    assert page.status_code == 200 and 'id="nav-webhooks"' in page.text and 'id="no-endpoint"' in page.text

    added = _add(client, f"{receiver}/hook-a")
    assert added.status_code == 200, added.text[:500]
    assert added.headers["cache-control"] == "no-store"
    found = SECRET.search(added.text)
    assert found is not None
    secret = found.group(1)
    assert secret.startswith("whsec_") and len(secret) >= 40
    (row,) = _rows(container, tenant.merchant_id)
    assert row.enabled == 1 and row.url == f"{receiver}/hook-a"
    assert secret not in row.secret_sealed and row.secret_sealed.startswith("v1:")  # sealed at rest
    assert f'data-endpoint="{row.id}"' in added.text
    shown_again = client.get(f"{BO}/webhooks").text
    assert secret not in shown_again and 'id="webhook-secret"' not in shown_again  # shown once only
    assert client.get("/v1/webhook-endpoint", headers=tenant.auth("merchant")).json()["id"] == row.id

    # A second endpoint is refused (one per merchant), and nothing changes.
    second = _add(client, f"{receiver}/hook-b")
    assert second.status_code == 409 and "webhook_endpoint_exists" in second.text
    assert [r.url for r in _rows(container, tenant.merchant_id)] == [f"{receiver}/hook-a"]

    # A sale: one delivery, signed with the secret shown on the page, listed as delivered.
    order = new_order(client, tenant)
    pay_cash(client, tenant, order["id"])
    _send(container)
    got = [(h, b) for p, h, b in _Receiver.got if p == "/hook-a"]
    assert len(got) == 1 and _signed_by(secret, *got[0])
    listing = client.get(f"{BO}/webhooks").text
    assert f'data-event="paid:{order["id"]}" data-status="sent"' in listing
    assert 'id="last-status" data-status="sent"' in listing and 'id="failing">0<' in listing

    # The partial the page's Refresh button asks for (htmx) holds the same rows.
    partial = client.get(f"{BO}/webhooks/deliveries", headers={"HX-Request": "true"}).text
    assert f'data-event="paid:{order["id"]}"' in partial and "<html" not in partial

    # Rotation: a new secret shown once; the next message is signed with it, not the old one.
    token = csrf_of(listing)
    rotated = client.post(f"{BO}/webhooks/{row.id}/rotate", data={"csrf_token": token})
    assert rotated.status_code == 200
    new = SECRET.search(rotated.text)
    assert new is not None and new.group(1) != secret
    second_order = new_order(client, tenant)
    pay_cash(client, tenant, second_order["id"])
    _send(container)
    last_headers, last_body = [(h, b) for p, h, b in _Receiver.got if p == "/hook-a"][-1]
    assert _signed_by(new.group(1), last_headers, last_body) and not _signed_by(
        secret, last_headers, last_body
    )

    # A failing receiver: shown as failing, with the next retry.
    _Receiver.failing.add("/hook-a")
    try:
        third = new_order(client, tenant)
        pay_cash(client, tenant, third["id"])
        _send(container)
        failing = client.get(f"{BO}/webhooks").text
        assert 'id="failing">1<' in failing and 'id="next-retry">—<' not in failing
        assert f'data-event="paid:{third["id"]}" data-status="pending"' in failing
        assert "503" in failing
    finally:
        _Receiver.failing.clear()

    # Disabled: no message written for a new sale, the one waiting is not sent; enabled again: sent.
    off = client.post(f"{BO}/webhooks/{row.id}/enabled", data={"csrf_token": token, "enabled": "0"})
    assert off.status_code == 200 and 'class="endpoint-status bad"' in off.text
    fourth = new_order(client, tenant)
    pay_cash(client, tenant, fourth["id"])
    with container.db.read() as conn:
        events = set(
            conn.execute(
                select(outbox_messages.c.event_id).where(
                    outbox_messages.c.merchant_id == tenant.merchant_id,
                    outbox_messages.c.channel == "webhook",
                )
            ).scalars()
        )
    assert f"paid:{fourth['id']}" not in events
    on = client.post(f"{BO}/webhooks/{row.id}/enabled", data={"csrf_token": token, "enabled": "1"})
    assert on.status_code == 200 and 'class="endpoint-status ok"' in on.text

    deleted = client.post(f"{BO}/webhooks/{row.id}/delete", data={"csrf_token": token})
    assert deleted.status_code == 200 and 'id="no-endpoint"' in deleted.text
    assert _rows(container, tenant.merchant_id) == []
    again = client.post(f"{BO}/webhooks/{row.id}/delete", data={"csrf_token": token})
    assert again.status_code == 404 and "not_found" in again.text


def test_csrf_bad_input_and_isolation(
    client: TestClient, container: Container, tenant: Tenant, other_tenant: Tenant
) -> None:
    signin(client, other_tenant.manager_key)
    theirs = _add(client, "https://rival.example/hook")
    assert theirs.status_code == 200
    (their_row,) = _rows(container, other_tenant.merchant_id)
    client.cookies.clear()

    signin(client, tenant.manager_key)
    token = csrf_of(client.get(f"{BO}/webhooks").text)
    # Without the CSRF token, or with a wrong one: refused, nothing written.
    for data in (
        {"url": "https://a.example/hook"},
        {"url": "https://a.example/hook", "csrf_token": "forged"},
    ):
        refused = client.post(f"{BO}/webhooks", data=data)
        assert refused.status_code == 403 and 'id="refused"' in refused.text
    # Bad URLs: the error shown on the page, the typed URL kept, nothing written.
    for url in (
        "ftp://a.example/hook",
        "https://user:pw@a.example/hook",
        "https://a.example/" + "x" * 400,
        "nope",
        "",
    ):
        bad = client.post(f"{BO}/webhooks", data={"csrf_token": token, "url": url})
        assert bad.status_code == 422, (url, bad.status_code)
        assert 'class="msg error"' in bad.text and "invalid_webhook_url" in bad.text
        assert 'id="webhook-secret"' not in bad.text
    too_long = client.post(
        f"{BO}/webhooks", data={"csrf_token": token, "url": "https://a.example/" + "x" * 2000}
    )
    assert too_long.status_code == 422 and "invalid_form" in too_long.text
    assert _rows(container, tenant.merchant_id) == []

    # Another merchant's endpoint id answers exactly like an unused one, and changes nothing of theirs.
    for action, form in (("rotate", {}), ("enabled", {"enabled": "0"}), ("delete", {})):
        for eid in (their_row.id, "0" * 32):
            answer = client.post(f"{BO}/webhooks/{eid}/{action}", data={"csrf_token": token, **form})
            assert answer.status_code == 404 and "webhook_endpoint" in answer.text, (
                action,
                answer.text[:300],
            )
            assert 'id="nav-webhooks"' in answer.text
    assert client.post(f"{BO}/webhooks/not-an-id/rotate", data={"csrf_token": token}).status_code == 422
    assert their_row.url not in client.get(f"{BO}/webhooks").text
    (after,) = _rows(container, other_tenant.merchant_id)
    assert (after.url, after.secret_sealed, after.enabled, after.updated_at) == (
        their_row.url,
        their_row.secret_sealed,
        their_row.enabled,
        their_row.updated_at,
    )

    # With our own endpoint: a bad enabled value is an error, nothing changes.
    assert _add(client, "https://a.example/hook").status_code == 200
    (mine,) = _rows(container, tenant.merchant_id)
    bad_toggle = client.post(f"{BO}/webhooks/{mine.id}/enabled", data={"csrf_token": token, "enabled": "x"})
    assert bad_toggle.status_code == 422 and "invalid_form" in bad_toggle.text
    no_csrf = client.post(f"{BO}/webhooks/{mine.id}/delete", data={})
    assert no_csrf.status_code == 403
    (still,) = _rows(container, tenant.merchant_id)
    assert still.enabled == 1 and still.secret_sealed == mine.secret_sealed

    # The cashier's key cannot open the page.
    client.cookies.clear()
    signin(client, tenant.cashier_key)
    assert client.get(f"{BO}/webhooks").status_code == 403
    assert len(_rows(container, tenant.merchant_id)) == len(_rows(container, other_tenant.merchant_id)) == 1


WAITING = text(
    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
)


def start_blocked(container: Container, second: Callable[[], None]) -> threading.Thread:
    """Start ``second`` in a thread and return once it waits on a lock in this database (the caller's
    transaction holds the merchant's row), or after 10 s; the caller joins it after its commit."""
    thread = threading.Thread(target=second)
    thread.start()
    for _ in range(500):
        with container.db.read() as probe:
            if probe.execute(WAITING).scalar_one():
                break
        thread.join(0.02)
    return thread


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_two_adds_at_once_one_endpoint(container: Container, tenant: Tenant) -> None:
    """The second of two concurrent adds waits for the first and is refused (never a primary-key 500)."""
    outcome: list[str] = []

    def second() -> None:
        try:
            with container.db.transaction() as conn:
                endpoints.create_endpoint(conn, container.deps, tenant.merchant_id, "https://a.example/2")
            outcome.append("made")
        except DomainError as exc:
            outcome.append(exc.code)

    with container.db.transaction() as first:
        endpoints.create_endpoint(first, container.deps, tenant.merchant_id, "https://a.example/1")
        thread = start_blocked(container, second)
    thread.join()
    assert outcome == ["webhook_endpoint_exists"]
    assert [r.url for r in _rows(container, tenant.merchant_id)] == ["https://a.example/1"]


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_two_first_sets_at_once_one_endpoint(container: Container, tenant: Tenant) -> None:
    """PUT /v1/webhook-endpoint twice at once on a merchant without one: the second waits for the first
    and updates its row (the last set wins), never a primary-key 500."""
    outcome: list[str] = []
    secret = "s" * 32

    def second() -> None:
        try:
            with container.db.transaction() as conn:
                endpoints.set_endpoint(
                    conn, container.deps, tenant.merchant_id, {"url": "https://b.example/2", "secret": secret}
                )
            outcome.append("set")
        except Exception as exc:  # a primary-key error would land here
            outcome.append(type(exc).__name__)

    with container.db.transaction() as first:
        endpoints.set_endpoint(
            first, container.deps, tenant.merchant_id, {"url": "https://b.example/1", "secret": secret}
        )
        thread = start_blocked(container, second)
    thread.join()
    assert outcome == ["set"]
    assert [r.url for r in _rows(container, tenant.merchant_id)] == ["https://b.example/2"]
