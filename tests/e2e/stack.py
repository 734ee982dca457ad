"""A demo stack for end-to-end till tests: sandbox, server and till as real processes on free ports,
prepared exactly as `tillit demo` prepares them. Processes can be killed and restarted."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.support.live import free_port
from tillit.tools.demo import DemoPlan, prepare

HEALTH = {"sandbox": "/sandbox/health", "server": "/healthz", "till": "/healthz"}


@dataclass
class Stack:
    plan: DemoPlan
    env: dict[str, str]
    home: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def url(self, name: str) -> str:
        return self.plan.urls["api" if name == "server" else name]

    def start(self, name: str, wait: bool = True) -> None:
        log = open(self.plan.logs / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child
        self.procs[name] = subprocess.Popen(
            self.plan.commands[name], env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        if wait:
            self.wait(name)

    def wait(self, name: str, seconds: float = 60) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url(name) + HEALTH[name], timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        log = (self.plan.logs / f"{name}.log").read_text(errors="replace")[-2000:]
        raise AssertionError(f"{name} did not come up:\n{log}")

    def kill(self, name: str) -> None:
        proc = self.procs.get(name)
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


@contextmanager
def demo_stack(tmp_path: Path, *, till: bool = True) -> Iterator[Stack]:
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TILLIT_")}
    env.update({"TILLIT_HOME": str(home), "NO_COLOR": "1"})
    saved = os.environ.get("TILLIT_HOME"), os.environ.get("TILLIT_DATABASE_URL")
    os.environ["TILLIT_HOME"] = str(home)
    os.environ.pop("TILLIT_DATABASE_URL", None)
    try:
        plan = prepare(api_port=free_port(), sandbox_port=free_port(), till_port=free_port())
    finally:
        for name, value in zip(("TILLIT_HOME", "TILLIT_DATABASE_URL"), saved, strict=True):
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    stack = Stack(plan, env, home)
    try:
        stack.start("sandbox")
        stack.start("server")
        if till:
            stack.start("till")
        yield stack
    finally:
        stack.stop_all()
