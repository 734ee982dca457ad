"""The sandbox as a real process: its fault profile survives a SIGKILL and a start on the same state
(issue 16.3), so a chaos run that restarts it never silently goes on without faults."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.support.live import free_port

PROFILE = {"endpoints": {"wechat.micropay": {"answer_lost": 0.5}, "*": {"latency": 0.1}}, "latency_ms": 20}


def start(config: Path, state: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "tillit.cli", "sandbox", "--config", str(config), "--state", str(state)]
    proc = subprocess.Popen(
        [*cmd, "--port", str(port)], stdout=log.open("ab"), stderr=subprocess.STDOUT, env=dict(os.environ)
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/sandbox/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        assert proc.poll() is None, log.read_text(errors="replace")[-2000:]
        assert time.monotonic() < deadline, "sandbox did not come up"
        time.sleep(0.1)


def test_fault_profile_survives_sigkill(tmp_path: Path) -> None:
    config, state, log = tmp_path / "sandbox.toml", tmp_path / "state", tmp_path / "sandbox.log"
    made = subprocess.run(
        [sys.executable, "-m", "tillit.cli", "sandbox", "init-config", str(config)], capture_output=True
    )
    assert made.returncode == 0, made.stderr
    port = free_port()
    proc = start(config, state, port, log)
    try:
        url = f"http://127.0.0.1:{port}/sandbox/faults"
        assert httpx.get(url).json()["profile"]["endpoints"] == {}
        set_answer = httpx.put(url, json={**PROFILE, "seed": 9})
        assert set_answer.status_code == 200
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        proc = start(config, state, port, log)
        after = httpx.get(url).json()
        assert after == set_answer.json()
        assert after["profile"]["endpoints"]["wechat.micropay"]["answer_lost"] == 0.5
    finally:
        proc.kill()
        proc.wait(10)


def test_onboarding_state_survives_sigkill(tmp_path: Path) -> None:
    """进件 applications, their knobs and the sub-merchants they issued are in the state file: after a
    SIGKILL and a start on the same state the same business codes answer the same states and ids."""
    config, state, log = tmp_path / "sandbox.toml", tmp_path / "state", tmp_path / "sandbox.log"
    made = subprocess.run(
        [sys.executable, "-m", "tillit.cli", "sandbox", "init-config", str(config)], capture_output=True
    )
    assert made.returncode == 0, made.stderr
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = start(config, state, port, log)
    try:
        knobs = {"review_delay_s": 0, "sign_delay_s": 0, "reject_licences": ["91440300708461136T"]}
        assert httpx.post(f"{base}/sandbox/onboarding/config", json=knobs).status_code == 200
        body = {
            "business_code": "TLRESTART1",
            "contact_info": {"contact_name": "张三"},
            "subject_info": {
                "business_license_info": {"license_number": "9144030071526726XG", "merchant_name": "茶"}
            },
            "business_info": {"merchant_shortname": "茶"},
            "settlement_info": {"qualification_type": "5814"},
            "bank_account_info": {"account_number": "1"},
        }
        assert httpx.post(f"{base}/v3/applyment4sub/applyment/", json=body).status_code == 200
        rejected = {**body, "business_code": "TLRESTART2"}
        rejected["subject_info"] = {
            "business_license_info": {"license_number": "91440300708461136T", "merchant_name": "茶"}
        }
        assert httpx.post(f"{base}/v3/applyment4sub/applyment/", json=rejected).status_code == 200
        assert httpx.post(f"{base}/sandbox/onboarding/wechat/TLRESTART1/verify").status_code == 200
        query = f"{base}/v3/applyment4sub/applyment/business_code/"
        finished, refused = httpx.get(query + "TLRESTART1").json(), httpx.get(query + "TLRESTART2").json()
        assert finished["applyment_state"] == "APPLYMENT_STATE_FINISHED" and finished["sub_mchid"]
        assert refused["applyment_state"] == "APPLYMENT_STATE_REJECTED"

        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        proc = start(config, state, port, log)
        assert httpx.get(query + "TLRESTART1").json() == finished
        assert httpx.get(query + "TLRESTART2").json() == refused
        assert httpx.post(f"{base}/sandbox/onboarding/config", json={}).json()["reject_licences"] == [
            "91440300708461136T"
        ]
        # the counter survived too: a new application never reuses an issued number
        again = httpx.post(
            f"{base}/v3/applyment4sub/applyment/", json={**body, "business_code": "TLRESTART3"}
        )
        assert again.json()["applyment_id"] > finished["applyment_id"]
    finally:
        proc.kill()
        proc.wait(10)
