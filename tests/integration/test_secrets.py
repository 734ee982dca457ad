"""Provider secrets at rest: sealed in the database (read back with SQL), opened only to build the adapter,
rotated by `tillit secrets rotate` in a real process, refused when tampered, swapped or under a wrong key,
and never in an API answer or a log line. SQLite and PostgreSQL, each with its own home and database
(rotation retires keys, so it must not share a keyring with other tests)."""

from __future__ import annotations

import base64
import json
import logging
import os
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text, update

from tests.support import pg
from tests.support.live import live_server
from tests.support.sandbox import Accounts, running_sandbox
from tests.support.sandbox import provider_accounts as account_settings
from tests.support.world import Tenant, make_tenant
from tillit.adapters.db import migrate
from tillit.adapters.db.schema import provider_accounts as accounts_table
from tillit.adapters.secrets import KEY_FILE, AesGcmSecretBox, FileKeyring
from tillit.bootstrap import Container, build
from tillit.config import Settings
from tillit.domain.errors import DomainError
from tillit.payments import accounts as provider_accounts


@pytest.fixture
def fresh(backend: str, tmp_path: Path) -> Iterator[tuple[Path, str]]:
    home = tmp_path / "home"
    if backend == "postgresql":
        url = pg.create_database("tillit_sec")
        yield home, url
        pg.drop_database(url)
    else:
        yield home, f"sqlite:///{tmp_path / 'tillit.sqlite'}"


def _build(home: Path, url: str, key: str | None = None) -> Container:
    c = build(Settings(home=home, database_url=url, provider_timeout_s=3.0, secret_key=key))
    migrate.upgrade(c.db)
    return c


def _raw(c: Container, merchant_id: str) -> dict[str, dict[str, Any]]:
    with c.db.read() as conn:
        rows = conn.execute(
            text("SELECT provider, config FROM provider_accounts WHERE merchant_id = :m"), {"m": merchant_id}
        )
        return {r.provider: json.loads(r.config) for r in rows}


def _connect(c: Container, tenant: Tenant, settings: dict[str, dict[str, Any]]) -> None:
    with c.db.transaction() as conn:
        for provider, values in settings.items():
            provider_accounts.set_account(conn, c.deps, tenant.merchant_id, provider, values)


def _pay(base: str, tenant: Tenant, code: str) -> httpx.Response:
    with httpx.Client(base_url=base, headers=tenant.auth(), timeout=30) as http:
        order = http.post(
            "/v1/orders",
            json={"lines": [{"sku": "LATTE", "quantity": 1}]},
            headers={"Idempotency-Key": uuid.uuid4().hex},
        ).json()
        return http.post(
            "/v1/payments",
            json={"order_id": order["id"], "payment_code": code},
            headers={"Idempotency-Key": uuid.uuid4().hex},
        )


def _cli(home: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "TILLIT_SECRET_KEY"}
    env.update({"TILLIT_HOME": str(home), "TILLIT_DATABASE_URL": url, "NO_COLOR": "1"})
    return subprocess.run(
        [sys.executable, "-m", "tillit.cli", *args], env=env, capture_output=True, text=True, timeout=120
    )


def test_sealed_at_rest_paid_rotated_by_the_cli_and_never_shown(
    fresh: tuple[Path, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    home, url = fresh
    caplog.set_level(logging.DEBUG)
    c = _build(home, url)
    accounts = Accounts.fresh()
    with running_sandbox(tmp_path / "sandbox", accounts) as sbx, live_server(c) as base:
        tenant = make_tenant(c, "Sealed shop")
        settings = account_settings(accounts, sbx.url, notify_url=f"{base}/v1/providers/alipay/notify")
        secrets = [settings["wechat"]["api_key"], settings["alipay"]["app_private_key_pem"]]
        _connect(c, tenant, settings)
        keyfile = home / KEY_FILE
        assert stat.S_IMODE(keyfile.stat().st_mode) == 0o600
        first_kid = json.loads(keyfile.read_text())["current"]

        raw = _raw(c, tenant.merchant_id)
        for provider, field in (("wechat", "api_key"), ("alipay", "app_private_key_pem")):
            assert raw[provider][field].startswith(f"v1:{first_kid}:")
            assert raw[provider][field] != settings[provider][field]
        dump = json.dumps(raw)
        assert all(s not in dump for s in secrets) and "PRIVATE KEY" not in dump

        for provider in ("wechat", "alipay"):
            r = _pay(base, tenant, sbx.code(sbx.wallet(provider)))
            assert r.status_code == 201 and r.json()["status"] == "captured", r.text

        done = _cli(home, url, "secrets", "rotate")
        assert done.returncode == 0, done.stdout + done.stderr
        ring = json.loads(keyfile.read_text())
        assert ring["current"] != first_kid and list(ring["keys"]) == [ring["current"]]  # old key retired
        assert stat.S_IMODE(keyfile.stat().st_mode) == 0o600
        raw = _raw(c, tenant.merchant_id)
        assert raw["wechat"]["api_key"].startswith(f"v1:{ring['current']}:")
        assert raw["alipay"]["app_private_key_pem"].startswith(f"v1:{ring['current']}:")

        # The running server picks the new key up by itself (it re-reads the keyring on an unknown id).
        for provider in ("wechat", "alipay"):
            r = _pay(base, tenant, sbx.code(sbx.wallet(provider)))
            assert r.status_code == 201 and r.json()["status"] == "captured", r.text

        with httpx.Client(base_url=base, headers=tenant.auth(), timeout=30) as http:
            listed = http.get(f"/v1/merchants/{tenant.merchant_id}/providers")
        assert listed.status_code == 200, listed.text
        assert all(s not in listed.text for s in secrets) and "v1:" not in listed.text
        assert sorted(a["secrets_set"] for a in listed.json()["data"]) == [
            ["api_key"],
            ["app_private_key_pem"],
        ]
        logged = "\n".join(rec.getMessage() for rec in caplog.records)
        assert all(s not in logged for s in secrets) and all(s not in done.stdout for s in secrets)
    c.db.dispose()


def test_wrong_key_tampered_and_swapped_values_are_refused(fresh: tuple[Path, str], tmp_path: Path) -> None:
    home, url = fresh
    c = _build(home, url)
    accounts = Accounts.fresh()
    with running_sandbox(tmp_path / "sandbox", accounts) as sbx:
        settings = account_settings(accounts, sbx.url, notify_url="http://127.0.0.1:9/notify")
        a, b = make_tenant(c, "Shop A"), make_tenant(c, "Shop B")
        other = Accounts.fresh()
        _connect(c, a, settings)
        _connect(c, b, account_settings(other, sbx.url, notify_url="http://127.0.0.1:9/notify"))
        assert c.engine is not None
        secret = settings["wechat"]["api_key"]

        # A server started with another key: a clear, stable error through real HTTP, never a 500.
        wrong = base64.b64encode(os.urandom(32)).decode()
        c2 = build(Settings(home=tmp_path / "other-home", database_url=url, secret_key=wrong))
        with live_server(c2) as base:
            r = _pay(base, a, sbx.code(sbx.wallet("wechat")))
        assert r.status_code == 409 and r.json()["error"]["code"] == "secret_key_unknown", r.text
        assert secret not in r.text
        c2.db.dispose()
        bad = build(Settings(home=tmp_path / "bad", database_url=url, secret_key="not base64 of 32"))
        with bad.db.read() as conn, pytest.raises(DomainError) as err:
            bad.engine.providers.get(conn, a.merchant_id, "wechat")  # type: ignore[union-attr]
        assert err.value.code == "secret_key_invalid"
        bad.db.dispose()

        # B's sealed key copied into A's row: bound to B's row, so it does not open as A's.
        b_sealed = _raw(c, b.merchant_id)["wechat"]["api_key"]
        a_config = _raw(c, a.merchant_id)["wechat"]
        head, ct = a_config["api_key"].rsplit(":", 1)
        raw_ct = base64.b64decode(ct)
        tampered = head + ":" + base64.b64encode(bytes([raw_ct[0] ^ 1]) + raw_ct[1:]).decode()
        for forged in (b_sealed, tampered):
            with c.db.transaction() as conn:
                conn.execute(
                    update(accounts_table)
                    .where(
                        accounts_table.c.merchant_id == a.merchant_id, accounts_table.c.provider == "wechat"
                    )
                    .values(config=json.dumps(a_config | {"api_key": forged}))
                )
            with c.db.read() as conn, pytest.raises(DomainError) as err:
                c.engine.providers.get(conn, a.merchant_id, "wechat")
            assert err.value.code == "secret_undecryptable" and secret not in err.value.message

        # Plain text left by an older version is sealed by `tillit migrate` (the legacy upgrade path).
        with c.db.transaction() as conn:
            conn.execute(
                update(accounts_table)
                .where(accounts_table.c.merchant_id == a.merchant_id, accounts_table.c.provider == "wechat")
                .values(config=json.dumps(a_config | {"api_key": secret}))
            )
        done = _cli(home, url, "migrate")
        assert done.returncode == 0 and "encrypted the secrets of 1" in done.stdout, done.stdout + done.stderr
        assert _raw(c, a.merchant_id)["wechat"]["api_key"].startswith("v1:")
        with c.db.read() as conn:
            assert c.engine.providers.get(conn, a.merchant_id, "wechat") is not None
            assert secret not in str(conn.execute(select(accounts_table.c.config)).all())

        # The keyring file gone: rotation and use fail with a stable code, no traceback.
        (home / KEY_FILE).unlink()
        done = _cli(home, url, "secrets", "rotate")
        assert done.returncode == 2 and "secret_key_missing" in done.stdout and "Traceback" not in done.stderr
    c.db.dispose()


def test_box_binds_context_and_detects_any_change(tmp_path: Path) -> None:
    box = AesGcmSecretBox(FileKeyring(tmp_path))
    with pytest.raises(DomainError) as err:
        box.seal("s3cret", "ctx")
    assert err.value.code == "secret_key_missing"
    assert box.create_key() and not box.create_key()
    sealed = box.seal("s3cret", "provider_accounts/m1/wechat/api_key")
    assert "s3cret" not in sealed and box.open(sealed, "provider_accounts/m1/wechat/api_key") == "s3cret"
    for ctx in ("provider_accounts/m2/wechat/api_key", "provider_accounts/m1/alipay/api_key"):
        with pytest.raises(DomainError, match="integrity"):
            box.open(sealed, ctx)
    version, kid, nonce, ct = sealed.split(":")
    flipped = base64.b64encode(bytes([base64.b64decode(ct)[0] ^ 1]) + base64.b64decode(ct)[1:]).decode()
    with pytest.raises(DomainError, match="integrity"):
        box.open(":".join((version, kid, nonce, flipped)), "provider_accounts/m1/wechat/api_key")
    with pytest.raises(DomainError) as err:
        box.open("plain", "ctx")
    assert err.value.code == "secret_not_encrypted"
