"""The back-office shell: sign-in to a session cookie, CSRF on every form, sign-out, roles, expiry."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from tests.support.world import Tenant
from tillit.access import keys
from tillit.adapters.db.schema import backoffice_sessions
from tillit.api.app import create_app
from tillit.backoffice.web import SESSION_COOKIE
from tillit.bootstrap import Container

BO = "/backoffice"


def signin(client: TestClient, key: str) -> TestClient:
    form = client.get(f"{BO}/signin")
    assert form.status_code == 200
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert token is not None
    answer = client.post(
        f"{BO}/signin", data={"api_key": key, "csrf_token": token.group(1)}, follow_redirects=False
    )
    assert answer.status_code == 303, answer.text
    return client


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found is not None
    return found.group(1)


def test_signin_sets_a_strict_httponly_session_cookie_without_the_key(
    client: TestClient, tenant: Tenant, container: Container
) -> None:
    form = client.get(f"{BO}/signin")
    answer = client.post(
        f"{BO}/signin",
        data={"api_key": tenant.manager_key, "csrf_token": csrf_of(form.text)},
        follow_redirects=False,
    )
    assert answer.status_code == 303
    cookie = next(h for h in answer.headers.get_list("set-cookie") if h.startswith(SESSION_COOKIE))
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/backoffice" in cookie
    assert "Secure" not in cookie  # plain HTTP here; under TLS the cookie is Secure (test below)
    assert tenant.manager_key not in cookie
    token = cookie.split(";")[0].split("=", 1)[1]
    with container.db.read() as conn:
        stored = [tuple(r) for r in conn.execute(select(backoffice_sessions))]
    assert all(tenant.manager_key not in str(r) and token not in str(r) for r in stored)
    page = client.get(f"{BO}/today")
    assert page.status_code == 200 and 'id="nav-today"' in page.text


def test_secure_cookie_under_tls(container: Container, tenant: Tenant) -> None:
    with TestClient(create_app(container), base_url="https://testserver") as tls:
        form = tls.get(f"{BO}/signin")
        answer = tls.post(
            f"{BO}/signin",
            data={"api_key": tenant.manager_key, "csrf_token": csrf_of(form.text)},
            follow_redirects=False,
        )
    cookie = next(h for h in answer.headers.get_list("set-cookie") if h.startswith(SESSION_COOKIE))
    assert "Secure" in cookie


def test_bad_key_and_missing_csrf_are_refused(client: TestClient, tenant: Tenant) -> None:
    form = client.get(f"{BO}/signin")
    bad = client.post(f"{BO}/signin", data={"api_key": "tk_mer_nope", "csrf_token": csrf_of(form.text)})
    assert bad.status_code == 401 and 'id="signin-error"' in bad.text
    no_token = client.post(f"{BO}/signin", data={"api_key": tenant.manager_key})
    assert no_token.status_code == 403 and 'id="refused"' in no_token.text
    signin(client, tenant.manager_key)
    forged = client.post(f"{BO}/signout", data={"csrf_token": "forged"}, follow_redirects=False)
    assert forged.status_code == 403 and "CSRF" in forged.text
    assert client.get(f"{BO}/today").status_code == 200  # still signed in: the forged form did nothing


def test_signout_ends_the_session(client: TestClient, tenant: Tenant) -> None:
    page = signin(client, tenant.manager_key).get(f"{BO}/today")
    token = client.cookies.get(SESSION_COOKIE)
    out = client.post(f"{BO}/signout", data={"csrf_token": csrf_of(page.text)}, follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"] == f"{BO}/signin"
    client.cookies.set(SESSION_COOKIE, token or "", path=BO)  # replaying the old cookie gets nothing
    again = client.get(f"{BO}/today", follow_redirects=False)
    assert again.status_code == 303 and again.headers["location"] == f"{BO}/signin"


def test_revoked_key_or_expired_session_signs_out(
    client: TestClient, tenant: Tenant, container: Container
) -> None:
    signin(client, tenant.manager_key)
    assert client.get(f"{BO}/today").status_code == 200
    with container.db.transaction() as conn:
        conn.execute(
            update(backoffice_sessions)
            .where(backoffice_sessions.c.merchant_id == tenant.merchant_id)
            .values(
                expires_at=container.deps.clock.now() - timedelta(seconds=1),
                created_at=container.deps.clock.now() - timedelta(hours=9),
            )
        )
    assert client.get(f"{BO}/today", follow_redirects=False).status_code == 303
    signin(client, tenant.manager_key)
    with container.db.transaction() as conn:
        key_id = keys.authenticate(conn, tenant.manager_key).key_id
        keys.revoke_key(conn, container.deps, key_id)
    assert client.get(f"{BO}/today", follow_redirects=False).status_code == 303


@pytest.mark.parametrize("backend", ["sqlite"])
def test_roles_see_only_their_pages(client: TestClient, tenant: Tenant, admin_key: str) -> None:
    signin(client, tenant.cashier_key)
    refused = client.get(f"{BO}/today")
    assert refused.status_code == 403 and 'id="refused"' in refused.text
    client.cookies.clear()
    home = signin(client, admin_key).get(f"{BO}/")
    assert home.status_code == 200 and 'id="nav-today"' not in home.text


@pytest.mark.parametrize("backend", ["sqlite"])
def test_language_switch(client: TestClient, tenant: Tenant) -> None:
    signin(client, tenant.manager_key)
    assert "今日" in client.get(f"{BO}/today").text
    client.get(f"{BO}/lang/en?next=/today")
    assert "Today" in client.get(f"{BO}/today").text
