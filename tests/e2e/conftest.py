"""End-to-end fixtures: real `tillit` processes against a fresh SQLite home or PostgreSQL database."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import pg
from tests.support.live import free_port

TILLIT = (
    [sys.executable, "-m", "tillit.cli"]
    if not shutil.which("tillit")
    else [shutil.which("tillit") or "tillit"]
)


@dataclass
class Env:
    vars: dict[str, str]

    def run(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [*TILLIT, *args], env=self.vars, capture_output=True, text=True, timeout=timeout
        )
        if check and result.returncode != 0:
            raise AssertionError(f"tillit {' '.join(args)} failed: {result.stdout}\n{result.stderr}")
        return result

    def serve(self) -> tuple[subprocess.Popen[bytes], str]:
        port = free_port()
        proc = subprocess.Popen(
            [*TILLIT, "serve", "--port", str(port), "--no-access-log"],
            env=self.vars,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    return proc, base
            except httpx.HTTPError:
                time.sleep(0.1)
        proc.kill()
        raise AssertionError(f"server did not start: {proc.stderr.read() if proc.stderr else ''!r}")

    def demo_keys(self) -> dict[str, str]:
        out = self.run("init", "--demo").stdout
        return dict(re.findall(r"(\w+_(?:key|id))\s+(\S+)", out))


@pytest.fixture(params=["sqlite", "postgresql"])
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Env]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("TILLIT_")}
    base.update({"TILLIT_HOME": str(tmp_path / "home"), "NO_COLOR": "1", "COLUMNS": "200"})
    if request.param == "sqlite":
        yield Env(base)
        return
    url = pg.create_database("tillit_e2e")
    base["TILLIT_DATABASE_URL"] = url
    yield Env(base)
    pg.drop_database(url)


# --- the till's demo stack, shared by the browser walks (issue 17) ------------------------------------
# test_till_browser.py and test_till_station.py drive the same sandbox + server + till: starting the stack
# once saves ~30 s of the suite. Each module opens its own browser context (and a shift if none is open).


@pytest.fixture(scope="session")
def till_demo_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from tests.e2e.stack import demo_stack

    with demo_stack(tmp_path_factory.mktemp("till-demo")) as s:
        yield s
