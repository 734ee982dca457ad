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
