"""`tillit serve` and `tillit sandbox` in their own processes, started and stopped as context managers."""

from __future__ import annotations

import contextlib
import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from bench.harness.proc import CLI_TIMEOUT, LOOPBACK, free_port, run_tillit, tillit_command

START_TIMEOUT = 60.0


class PortTaken(RuntimeError):
    """The child could not bind its port: another process took it after free_port() chose it."""


class Service:
    """One `tillit` subcommand listening on a free loopback port, ready when ``health`` answers 200."""

    def __init__(
        self,
        args: list[str],
        health: str,
        env: dict[str, str],
        workdir: Path,
        name: str = "server",
        command: list[str] | None = None,
    ) -> None:
        self.command = command if command is not None else tillit_command()
        self.env = env
        self.workdir = workdir
        self.port = free_port()
        self.args = [*args, "--host", LOOPBACK, "--port", str(self.port)]
        self.health = health
        self.base_url = f"http://{LOOPBACK}:{self.port}"
        self.log_path = workdir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = False  # once started, the port stays: a till or client may hold its URL

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        """Start (again, on the same port, after a stop) and wait until healthy, at most START_TIMEOUT.

        A free port can be taken by another process before the child binds it; then (first start only)
        up to two more free ports are tried."""
        for attempt in range(3):
            try:
                self._start_once()
                return
            except PortTaken:
                if attempt == 2 or self.started:
                    raise
                self.port = free_port()
                self.args[-1] = str(self.port)
                self.base_url = f"http://{LOOPBACK}:{self.port}"

    def _start_once(self) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [*self.command, *self.args],
                env=self.env,
                cwd=self.workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + START_TIMEOUT
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    if "address already in use" in self.log_tail():
                        raise PortTaken(self.log_tail())
                    raise RuntimeError(f"{self.args[0]} exited ({self.proc.returncode}):\n{self.log_tail()}")
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(self.base_url + self.health).status_code == 200:
                        self.started = True
                        return
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.args[0]} not ready after {START_TIMEOUT:.0f}s:\n{self.log_tail()}")

    def log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-3000:]
        return ""

    def stop(self) -> None:
        """SIGINT (a clean uvicorn shutdown), then SIGKILL after 20 s."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


class CeilingServer(Service):
    """bench/harness/ceiling_app.py under uvicorn with the server's defaults (one process, the HTTP parser
    and loop uvicorn's ``auto`` picks, no access log), answering ``answer_path``'s JSON."""

    def __init__(self, env: dict[str, str], workdir: Path, answer_path: Path) -> None:
        root = str(Path(__file__).resolve().parents[2])
        paths = [root, env.get("PYTHONPATH", "")]
        env = {
            **env,
            "TILLIT_CEILING_ANSWER": str(answer_path),
            "PYTHONPATH": ":".join(p for p in paths if p),
        }
        super().__init__(
            ["-m", "uvicorn", "bench.harness.ceiling_app:app", "--no-access-log"],
            "/healthz",
            env,
            workdir,
            "ceiling",
            command=[sys.executable],
        )


class Server(Service):
    """`tillit serve --no-access-log` (uvicorn runs in that process: workers=1)."""

    def __init__(self, env: dict[str, str], workdir: Path) -> None:
        super().__init__(["serve", "--no-access-log"], "/healthz", env, workdir, "server")


@contextlib.contextmanager
def serve(env: dict[str, str], workdir: Path) -> Iterator[Service]:
    """A started `tillit serve`, stopped on exit."""
    server = Server(env, workdir)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def sandbox(env: dict[str, str], workdir: Path, config: Path, state: Path) -> Iterator[Service]:
    """A started `tillit sandbox` with ``config`` (see `tillit sandbox init-config`), stopped on exit."""
    service = Service(
        ["sandbox", "--config", str(config), "--state", str(state)],
        "/sandbox/health",
        env,
        workdir,
        "sandbox",
    )
    try:
        service.start()
        yield service
    finally:
        service.stop()


def demo_terminal_key(output: str) -> str:
    match = re.search(r"terminal_key\s+(tk_ter_[A-Za-z0-9_\-]+)", output)
    if not match:
        raise RuntimeError(f"no terminal key in `tillit init --demo` output:\n{output}")
    return match.group(1)


def seed_demo(env: dict[str, str], workdir: Path) -> str:
    """`tillit init --demo` in ``env``; the demo terminal (cashier) key."""
    return demo_terminal_key(run_tillit(["init", "--demo"], env, workdir))


SERVER_STACK_PROBE = r"""
import importlib.util, json, sys
import uvicorn
def found(name):
    try:
        return importlib.util.find_spec(name) is not None and __import__(name) is not None
    except ImportError:
        return False
print(json.dumps({
    "uvicorn": uvicorn.__version__,
    "http": "httptools" if found("httptools") else "h11",
    "loop": "uvloop" if found("uvloop") else "asyncio",
}))
"""


def server_stack(env: dict[str, str]) -> dict[str, Any]:
    """What uvicorn's ``auto`` settings pick in the server's environment: the HTTP parser and event loop.

    The framework ceiling depends on them (httptools and uvloop roughly double GET /healthz), so a
    ratio to it is only comparable between runs with the same stack."""
    proc = subprocess.run(
        [sys.executable, "-c", SERVER_STACK_PROBE],
        env=env,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        check=False,
    )
    try:
        return dict(json.loads(proc.stdout.strip().splitlines()[-1]))
    except (IndexError, ValueError):
        return {"uvicorn": None, "http": None, "loop": None, "error": proc.stderr[-300:]}
