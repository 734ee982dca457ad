"""Issue #9: defects found probing the REST server over real HTTP, each checked through a live uvicorn.

In-process clients hide these (a Content-Length overrun, a chunked body), so every test here talks to
a real server on a loopback port.
"""

from __future__ import annotations

import copy
import json
import socket
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import func, select

from tests.integration.test_bad_input import assert_error_shape, row_counts
from tests.support.live import live_server
from tests.support.world import Tenant
from tillit.adapters.db.schema import api_keys, shifts
from tillit.api.routes.reconciliation import UPLOAD_MAX_BYTES, UPLOAD_PATH
from tillit.bootstrap import Container
from tillit.domain.shifts import GENESIS, ShiftTotals, chain_hash
from tillit.sales import reports


@pytest.fixture
def http(container: Container) -> Iterator[httpx.Client]:
    with live_server(container) as base, httpx.Client(base_url=base, timeout=60) as client:
        yield client


def _admin(admin_key: str, idempotency_key: str | None = None) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {admin_key}",
        "Idempotency-Key": idempotency_key or uuid.uuid4().hex,
    }


# --------------------------------------------------------------------------- 1. API key creation


def test_created_key_answer_arrives_whole_and_a_replay_says_the_secret_is_withheld(
    http: httpx.Client, container: Container, tenant: Tenant, admin_key: str
) -> None:
    body = {"role": "merchant", "name": "back office", "merchant_id": tenant.merchant_id}
    headers = _admin(admin_key)
    first = http.post("/v1/api-keys", json=body, headers=headers)
    assert first.status_code == 201, first.text
    assert int(first.headers["content-length"]) == len(first.content)
    created = first.json()
    assert created["secret"].startswith("tk_mer_") and created["secret_shown"] is True
    assert "Idempotent-Replayed" not in first.headers and "Secret-Withheld" not in first.headers
    me = http.get("/v1/me", headers={"Authorization": f"Bearer {created['secret']}"})
    assert me.status_code == 200 and me.json()["key_id"] == created["id"]

    replay = http.post("/v1/api-keys", json=body, headers=headers)
    assert replay.status_code == 201, replay.text
    assert int(replay.headers["content-length"]) == len(replay.content)
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.headers["Secret-Withheld"] == "replay"
    again = replay.json()
    assert again["secret"] is None and again["secret_shown"] is False
    assert {k: v for k, v in again.items() if not k.startswith("secret")} == {
        k: v for k, v in created.items() if not k.startswith("secret")
    }
    with container.db.read() as conn:
        assert conn.execute(select(func.count()).where(api_keys.c.name == "back office")).scalar_one() == 1


# --------------------------------------------------------------------------- 2. key scope


def _key_cases(tenant: Tenant, other: Tenant) -> list[tuple[dict[str, Any], int, str]]:
    unknown = uuid.uuid4().hex
    return [
        ({"role": "merchant", "name": "x", "merchant_id": unknown}, 404, "merchant_not_found"),
        ({"role": "terminal", "name": "x", "terminal_id": unknown}, 404, "terminal_not_found"),
        (
            {"role": "terminal", "name": "x", "terminal_id": tenant.terminal_id, "merchant_id": unknown},
            404,
            "terminal_not_found",
        ),
        (
            {
                "role": "terminal",
                "name": "x",
                "terminal_id": tenant.terminal_id,
                "merchant_id": other.merchant_id,
            },
            404,
            "terminal_not_found",
        ),
        ({"role": "admin", "name": "x", "merchant_id": tenant.merchant_id}, 422, "key_scope_invalid"),
        ({"role": "admin", "name": "x", "terminal_id": tenant.terminal_id}, 422, "key_scope_invalid"),
        (
            {
                "role": "merchant",
                "name": "x",
                "merchant_id": tenant.merchant_id,
                "terminal_id": tenant.terminal_id,
            },
            422,
            "key_scope_invalid",
        ),
        ({"role": "merchant", "name": "x"}, 422, "merchant_required"),
        ({"role": "terminal", "name": "x"}, 422, "terminal_required"),
    ]


def test_key_with_unknown_or_mismatched_scope_is_refused_and_writes_nothing(
    http: httpx.Client, container: Container, tenant: Tenant, other_tenant: Tenant, admin_key: str
) -> None:
    for body, status, code in _key_cases(tenant, other_tenant):
        before = row_counts(container)
        r = http.post("/v1/api-keys", json=body, headers=_admin(admin_key))
        assert_error_shape(r, status, code)
        assert row_counts(container) == before, body


# --------------------------------------------------------------------------- 3. shift reports


def _report(tenant: Tenant) -> dict[str, Any]:
    totals = ShiftTotals(opening_float=10000)
    totals.sales_count = 2
    totals.add_tender("cash", 4300)
    totals.add_tender("wechat", 2800)
    totals.add_refund("cash", 300)
    totals.add_cancel("customer_cancelled")
    return totals.report(
        number=1,
        terminal_id=tenant.terminal_id,
        opened_at="2026-01-31T08:00:00+00:00",
        closed_at="2026-01-31T18:00:00+00:00",
        counted_cash=14000,
    )


def _without(report: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in report.items() if k != key}


def _with(report: dict[str, Any], **changes: Any) -> dict[str, Any]:
    changed = copy.deepcopy(report)
    changed.update(changes)
    return changed


BAD_REPORTS = [
    ("no opened_at", lambda r: _without(r, "opened_at")),
    ("no closed_at", lambda r: _without(r, "closed_at")),
    ("no counted_cash", lambda r: _without(r, "counted_cash")),
    ("opened_at not ISO", lambda r: _with(r, opened_at="yesterday morning")),
    ("opened_at without offset", lambda r: _with(r, opened_at="2026-01-31T08:00:00")),
    ("opened_at out of range", lambda r: _with(r, opened_at="0001-01-01T00:00:00+01:00")),
    ("opened_at a number", lambda r: _with(r, opened_at=1769846400)),
    ("list for counted_cash", lambda r: _with(r, counted_cash=[1, 2])),
    ("list for opening_float", lambda r: _with(r, opening_float=[10000])),
    ("string for expected_cash", lambda r: _with(r, expected_cash="14000")),
    ("float for counted_cash", lambda r: _with(r, counted_cash=140.5)),
    ("huge counted_cash", lambda r: _with(r, counted_cash=10**30)),
    ("negative counted_cash", lambda r: _with(r, counted_cash=-1)),
    ("nested totals", lambda r: _with(r, sales_by_method={"cash": {"a": 1}})),
    ("unknown field", lambda r: _with(r, colour="red")),
    ("report is a list", lambda r: [r]),
    ("held count disagrees", lambda r: _with(r, held_sales={"count": 1, "total": 0, "sales": []})),
    (
        "held total disagrees",
        lambda r: _with(
            r,
            held_sales={
                "count": 1,
                "total": 1,
                "sales": [{"number": 3, "held_at": "2026-01-31T09:00:00+00:00", "total": 2}],
            },
        ),
    ),
    (
        "held sale unknown field",
        lambda r: _with(
            r,
            held_sales={
                "count": 1,
                "total": 2,
                "sales": [{"number": 3, "held_at": "2026-01-31T09:00:00+00:00", "total": 2, "x": 1}],
            },
        ),
    ),
    ("held_sales a list", lambda r: _with(r, held_sales=[])),
]


def _close_body(report: Any, number: int = 1) -> dict[str, Any]:
    return {
        "id": uuid.uuid4().hex,
        "number": number,
        "report": report,
        "report_hash": chain_hash(GENESIS, report) if isinstance(report, dict) else "a" * 64,
        "prev_hash": GENESIS,
    }


@pytest.mark.parametrize(("label", "spoil"), BAD_REPORTS, ids=[label for label, _ in BAD_REPORTS])
def test_hash_consistent_but_malformed_shift_report_is_422_and_writes_nothing(
    http: httpx.Client, container: Container, tenant: Tenant, label: str, spoil: Any
) -> None:
    body = _close_body(spoil(_report(tenant)))
    before = row_counts(container)
    r = http.post("/v1/shifts", json=body, headers={**tenant.auth(), "Idempotency-Key": uuid.uuid4().hex})
    assert_error_shape(r, 422, "validation_error")
    assert row_counts(container) == before, label


def test_well_formed_shift_report_is_stored_as_sent(
    http: httpx.Client, container: Container, tenant: Tenant
) -> None:
    report = _report(tenant)
    body = _close_body(report)
    r = http.post("/v1/shifts", json=body, headers={**tenant.auth(), "Idempotency-Key": uuid.uuid4().hex})
    assert r.status_code == 201, r.text
    assert r.json()["report"] == report and r.json()["report_hash"] == chain_hash(GENESIS, report)
    with container.db.read() as conn:
        assert conn.execute(select(func.count()).where(shifts.c.id == body["id"])).scalar_one() == 1


def test_shift_report_with_parked_sales_and_one_without_are_stored_as_sent(
    http: httpx.Client, container: Container, tenant: Tenant
) -> None:
    """A report lists the parked sales still open (hashed with it); an older till's report without the
    field is stored and hashed without it, so both verify."""
    older = _without(_report(tenant), "held_sales")
    body = _close_body(older)
    r = http.post("/v1/shifts", json=body, headers={**tenant.auth(), "Idempotency-Key": uuid.uuid4().hex})
    assert r.status_code == 201, r.text
    assert r.json()["report"] == older and "held_sales" not in r.json()["report"]
    held = {
        "count": 2,
        "total": 3400,
        "sales": [
            {"number": 7, "held_at": "2026-01-31T09:00:00+00:00", "total": 2800, "note": "桌 4"},
            {"number": 9, "held_at": "2026-01-31T10:00:00+00:00", "total": 600},
        ],
    }
    second = _with(_report(tenant), number=2, held_sales=held)
    body2 = {
        "id": uuid.uuid4().hex,
        "number": 2,
        "report": second,
        "prev_hash": body["report_hash"],
        "report_hash": chain_hash(body["report_hash"], second),
    }
    r = http.post("/v1/shifts", json=body2, headers={**tenant.auth(), "Idempotency-Key": uuid.uuid4().hex})
    assert r.status_code == 201, r.text
    assert r.json()["report"]["held_sales"] == held
    with container.db.read() as conn:
        checks = reports.verify_chains(conn, tenant.merchant_id, tenant.terminal_id)
    assert checks[0]["ok"] and [link["number"] for link in checks[0]["links"]] == [1, 2]


def test_shift_number_beyond_its_bound_is_422(
    http: httpx.Client, container: Container, tenant: Tenant
) -> None:
    report = _with(_report(tenant), number=2**40)
    before = row_counts(container)
    r = http.post(
        "/v1/shifts",
        json=_close_body(report, number=2**40),
        headers={**tenant.auth(), "Idempotency-Key": uuid.uuid4().hex},
    )
    assert_error_shape(r, 422, "validation_error")
    assert row_counts(container) == before


# --------------------------------------------------------------------------- 5. bill mapping


MAPPING_BASE = {"provider": "wechat", "columns": {"out_trade_no": "a", "amount": "b", "time": "c"}}
BAD_MAPPINGS = [
    ("2000 deep arrays", "[" * 2000 + "]" * 2000),
    ("deep object", '{"provider": "wechat", "columns": ' + '{"a": ' * 500 + "1" + "}" * 500 + "}"),
    ("list in ignore_columns", json.dumps(MAPPING_BASE | {"ignore_columns": [["x"]]})),
    ("object in kinds", json.dumps(MAPPING_BASE | {"kinds": {"payment": [{"x": 1}]}})),
    ("time_format not a string", json.dumps(MAPPING_BASE | {"time_format": ["%Y"]})),
    ("not JSON", "{nope"),
]


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
@pytest.mark.parametrize(("label", "mapping"), BAD_MAPPINGS, ids=[label for label, _ in BAD_MAPPINGS])
def test_bad_bill_mapping_is_a_clear_422(
    http: httpx.Client, container: Container, tenant: Tenant, label: str, mapping: str
) -> None:
    before = row_counts(container)
    r = http.post(
        UPLOAD_PATH,
        params={"provider": "wechat", "format": "csv", "mapping": mapping},
        content=b"a,b,c\n",
        headers=tenant.auth("merchant"),
    )
    assert_error_shape(r, 422, "bill_mapping_invalid")
    assert row_counts(container) == before, label


# --------------------------------------------------------------------------- 6. chunked bodies


def _chunks(total: int, size: int = 16 * 1024) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        n = min(size, total - sent)
        sent += n
        yield b" " * n


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_chunked_json_body_over_the_limit_is_413(
    http: httpx.Client, container: Container, tenant: Tenant
) -> None:
    limit = container.settings.max_body_bytes
    before = row_counts(container)
    r = http.post(
        "/v1/orders",
        content=_chunks(limit + 1),
        headers={
            **tenant.auth(),
            "Idempotency-Key": uuid.uuid4().hex,
            "Content-Type": "application/json",
        },
    )
    assert "content-length" not in r.request.headers and r.request.headers["transfer-encoding"] == "chunked"
    assert_error_shape(r, 413, "body_too_large")
    assert r.json()["error"]["details"] == {"max_bytes": limit}
    assert row_counts(container) == before


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_chunked_body_at_the_limit_is_read(http: httpx.Client, container: Container, tenant: Tenant) -> None:
    """Exactly ``max_body_bytes`` is allowed: the body is read and parsed (and refused for being blank)."""
    limit = container.settings.max_body_bytes
    r = http.post(
        "/v1/orders",
        content=_chunks(limit),
        headers={**tenant.auth(), "Idempotency-Key": uuid.uuid4().hex, "Content-Type": "application/json"},
    )
    assert_error_shape(r, 400, "malformed_json")


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_raw_chunked_request_over_the_limit_is_413(container: Container, tenant: Tenant) -> None:
    """The same through a raw socket: no client library deciding how to frame or when to read."""
    limit = container.settings.max_body_bytes
    with live_server(container) as base:
        url = urlsplit(base)
        with socket.create_connection((url.hostname, url.port), timeout=30) as sock:
            head = (
                "POST /v1/orders HTTP/1.1\r\n"
                f"Host: {url.netloc}\r\n"
                f"Authorization: {tenant.auth()['Authorization']}\r\n"
                "Idempotency-Key: raw-chunked\r\n"
                "Content-Type: application/json\r\n"
                "Transfer-Encoding: chunked\r\n\r\n"
            )
            sock.sendall(head.encode())
            for chunk in _chunks(limit + 4096, 4096):
                sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            sock.sendall(b"0\r\n\r\n")
            answer = b""
            while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
                data = sock.recv(65536)
                if not data:
                    break
                answer += data
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 413"), answer[:300]
    assert json.loads(rest.partition(b"\r\n\r\n")[2])["error"]["code"] == "body_too_large"


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_chunked_bill_upload_over_its_own_limit_is_413(
    http: httpx.Client, container: Container, tenant: Tenant
) -> None:
    before = row_counts(container)
    r = http.post(
        UPLOAD_PATH,
        params={"provider": "wechat"},
        content=_chunks(UPLOAD_MAX_BYTES + 1, 1024 * 1024),
        headers=tenant.auth("merchant"),
    )
    assert "content-length" not in r.request.headers
    assert_error_shape(r, 413, "body_too_large")
    assert r.json()["error"]["details"] == {"max_bytes": UPLOAD_MAX_BYTES}
    assert row_counts(container) == before
