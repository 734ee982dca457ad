"""The command line: init, keys, check (exit 1 on a violation), prune, migrate."""

from __future__ import annotations

import re

from sqlalchemy import text

from tests.e2e.conftest import Env
from tillit.adapters.db.engine import make_engine


def test_init_prints_admin_key_once(env: Env) -> None:
    first = env.run("init").stdout
    assert re.search(r"tk_adm_\S{20,}", first)
    again = env.run("init").stdout
    assert "Already initialised" in again and "tk_adm_" not in again


def test_keys_create_list_revoke(env: Env) -> None:
    env.run("init")
    created = env.run("keys", "create", "--role", "admin", "--name", "ops").stdout
    key_id = re.search(r"admin key (\w+):", created).group(1)  # type: ignore[union-attr]
    secret = re.search(r"(tk_adm_\S+)", created).group(1)  # type: ignore[union-attr]
    listing = env.run("keys", "list").stdout
    assert key_id in listing and secret not in listing
    env.run("keys", "revoke", key_id)
    assert "revoked" in env.run("keys", "revoke", key_id).stdout
    bad = env.run("keys", "create", "--role", "terminal", check=False)
    assert bad.returncode == 2 and "terminal_required" in bad.stdout


def test_check_passes_then_fails_on_a_violation(env: Env) -> None:
    keys = env.demo_keys()
    proc, base = env.serve()
    try:
        import httpx

        auth = {"Authorization": f"Bearer {keys['terminal_key']}"}
        order = httpx.post(
            f"{base}/v1/orders",
            json={"lines": [{"sku": "WAT-500", "quantity": 2}]},
            headers={**auth, "Idempotency-Key": "o"},
        ).json()
        httpx.post(
            f"{base}/v1/payments", json={"order_id": order["id"]}, headers={**auth, "Idempotency-Key": "p"}
        )
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    ok = env.run("check", check=False)
    assert ok.returncode == 0 and "order_ledger" in ok.stdout
    url = env.vars.get("TILLIT_DATABASE_URL") or f"sqlite:///{env.vars['TILLIT_HOME']}/tillit.sqlite"
    engine = make_engine(url)
    with engine.begin() as conn:  # corrupt the books behind Tillit's back
        conn.execute(text("UPDATE ledger_postings SET amount = amount + 1 WHERE account LIKE 'tender:%'"))
    engine.dispose()
    bad = env.run("check", check=False)
    assert bad.returncode == 1 and "ledger_balanced: [" in bad.stdout and "order_ledger: [" not in bad.stdout


def test_prune_and_migrate(env: Env) -> None:
    from tillit.adapters.db.migrate import head_revision

    head = head_revision()
    env.run("init")
    assert "pruned 0" in env.run("prune").stdout
    assert f"revision {head}" in env.run("migrate").stdout
    assert "revision None" in env.run("migrate", "base", "--down").stdout
    assert f"revision {head}" in env.run("migrate").stdout
