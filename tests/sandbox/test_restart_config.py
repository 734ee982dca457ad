"""Durability across restarts, config loading, ``init-config`` and the CLI."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from tests.sandbox.conftest import Sandbox
from tillit.sandbox import cli
from tillit.sandbox.app import create_app, running_clock
from tillit.sandbox.clock import SandboxClock
from tillit.sandbox.config import ConfigError, load_config, parse_config
from tillit.sandbox.signing import to_wechat_xml, wechat_sign
from tillit.sandbox.store import Store


def test_state_survives_restart(make_sandbox: Callable[..., Sandbox], tmp_path: Path) -> None:
    first = make_sandbox(state=tmp_path)
    wallet = first.wallet("wechat", 10_000)
    code = first.code(wallet["id"])
    first.micropay("T1", 400, code)
    first.advance(3600)
    later = first.client.get("/sandbox/clock").json()["now"]
    first.client.__exit__(None, None, None)
    first.app.state.store.close()

    second = make_sandbox(state=tmp_path)  # a fresh clock starting at 09:00 again
    assert second.client.get("/sandbox/clock").json()["now"] >= later  # time never goes backwards
    assert second.wechat("/pay/orderquery", out_trade_no="T1")["trade_state"] == "SUCCESS"
    assert second.ledger(wallet["id"])["wallet"]["balance_fen"] == 9_600
    assert second.micropay("T2", 100, code)["err_code"] == "AUTH_CODE_INVALID"  # still used
    new_code = second.code(wallet["id"])
    assert new_code != code and second.micropay("T2", 100, new_code)["result_code"] == "SUCCESS"


def test_fault_profile_survives_restart(make_sandbox: Callable[..., Sandbox], tmp_path: Path) -> None:
    """Issue 16.3: a chaos run that restarts the sandbox keeps its faults without a second PUT."""
    first = make_sandbox(state=tmp_path)
    profile = {"endpoints": {"wechat.orderquery": {"system_error": 1}}, "latency_ms": 5}
    assert first.client.put("/sandbox/faults", json={**profile, "seed": 42}).status_code == 200
    before = first.client.get("/sandbox/faults").json()
    first.client.__exit__(None, None, None)
    first.app.state.store.close()

    second = make_sandbox(state=tmp_path)
    assert second.client.get("/sandbox/faults").json() == before
    assert before["seed"] == 42 and before["profile"]["latency_ms"] == 5
    assert second.wechat("/pay/orderquery", out_trade_no="T1")["err_code"] == "SYSTEMERROR"  # still fires
    assert second.client.put("/sandbox/faults", json={}).status_code == 200  # clearing is kept too
    second.client.__exit__(None, None, None)
    second.app.state.store.close()
    third = make_sandbox(state=tmp_path)
    assert third.client.get("/sandbox/faults").json()["profile"]["endpoints"] == {}


def test_init_config_writes_a_working_config(tmp_path: Path) -> None:
    path = tmp_path / "sandbox.toml"
    result = CliRunner().invoke(cli.app, ["init-config", str(path)])
    assert result.exit_code == 0, result.output
    assert CliRunner().invoke(cli.app, ["init-config", str(path)]).exit_code == 1  # no silent overwrite
    config = load_config(path)
    assert config.wechat[0].mch_id == "10000100" and len(config.wallets) == 2
    app = create_app(config, tmp_path / "state", clock=SandboxClock(speed=0), seed=1)
    with TestClient(app) as client:
        wallets = client.get("/sandbox/wallets").json()["wallets"]
        assert {w["provider"] for w in wallets} == {"wechat", "alipay"}
        wechat = next(w for w in wallets if w["provider"] == "wechat")
        code = client.post(f"/sandbox/wallets/{wechat['id']}/codes").json()["code"]
        m = config.wechat[0]
        fields = {
            "appid": m.appid,
            "mch_id": m.mch_id,
            "nonce_str": "n",
            "body": "x",
            "out_trade_no": "T1",
            "total_fee": "1",
            "spbill_create_ip": "1",
            "auth_code": code,
        }
        fields["sign"] = wechat_sign(fields, m.api_key)
        assert b"SUCCESS" in client.post("/pay/micropay", content=to_wechat_xml(fields).encode()).content


def test_serve_command_runs_uvicorn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "sandbox.toml"
    CliRunner().invoke(cli.app, ["init-config", str(path)])
    calls: list[tuple[object, str, int]] = []
    monkeypatch.setattr("uvicorn.run", lambda app, host, port, **kw: calls.append((app, host, port)))
    result = CliRunner().invoke(
        cli.app, ["--config", str(path), "--state", str(tmp_path / "s"), "--port", "8799"]
    )
    assert result.exit_code == 0, result.output
    assert calls and calls[0][1:] == ("127.0.0.1", 8799)
    missing = CliRunner().invoke(cli.app, ["--config", str(tmp_path / "none.toml")])
    assert missing.exit_code == 2


@pytest.mark.parametrize(
    "data",
    [
        {"wechat": [{"appid": "a", "mch_id": "1", "api_key": "short"}]},
        {"wechat": [{"appid": "a", "mch_id": "1", "api_key": "k" * 32, "fee_rate": "lots"}]},
        {"wallets": [{"provider": "visa", "name": "x", "balance_fen": 1}]},
        {"wallets": [{"provider": "wechat", "name": "x", "balance_fen": -1}]},
        {"sandbox": {"nope": 1}},
        {"sandbox": {"reverse_while_paying": "maybe"}},
        {"alipay": [{"app_id": "1", "pid": "123"}]},
    ],
)
def test_bad_config_is_rejected(data: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        parse_config(data)


def test_running_clock_keeps_running_while_the_sandbox_is_down(tmp_path: Path) -> None:
    """Issue 16.4: a sandbox killed for a while comes back as far ahead as if it had never stopped, so
    a client anchored on its time (``tillit chaos``) stays in step through provider outages."""
    wall = [1_000.0]
    store = Store(tmp_path / "s.sqlite")
    first = running_clock(store, speed=20.0, wall=lambda: wall[0])
    at_first_boot = first.now()
    store.close()

    wall[0] += 5.0  # down for 5 real seconds, i.e. 100 provider seconds
    store = Store(tmp_path / "s.sqlite")
    again = running_clock(store, speed=20.0, wall=lambda: wall[0])
    assert abs((again.now() - at_first_boot) - timedelta(seconds=100)) < timedelta(seconds=2)

    # Another speed is another clock: a new anchor from now, never behind the real time.
    other = running_clock(store, speed=1.0, wall=lambda: wall[0])
    assert other.speed == 1.0
    store.close()
