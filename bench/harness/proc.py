"""Processes on this machine: loopback ports, the `tillit` command, and CPU/RSS read from /proc."""

from __future__ import annotations

import contextlib
import os
import resource
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

LOOPBACK = "127.0.0.1"
CLI_TIMEOUT = 180.0


def now_utc() -> datetime:
    return datetime.now(UTC)


def free_port() -> int:
    """A port free on 127.0.0.1 right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def is_loopback(host: str | None) -> bool:
    return host is not None and (host == "localhost" or host == "::1" or host.startswith("127."))


def tillit_command() -> list[str]:
    """The `tillit` of the running interpreter's venv, else ``python -m tillit.cli``."""
    exe = Path(sys.executable).parent / "tillit"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "tillit.cli"]


def base_env(home: Path, sync: str = "FULL") -> dict[str, str]:
    """This process's environment without any TILLIT_* setting, with its own TILLIT_HOME."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TILLIT_")}
    env.update(
        {
            "TILLIT_HOME": str(home),
            "TILLIT_SQLITE_SYNCHRONOUS": sync,
            "COLUMNS": "200",
            "NO_COLOR": "1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def run_tillit(args: list[str], env: dict[str, str], cwd: Path) -> str:
    """Run one `tillit` command (bounded by CLI_TIMEOUT); its stdout, or RuntimeError with its output."""
    proc = subprocess.run(
        [*tillit_command(), *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"tillit {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        )
    return proc.stdout


def clock_ticks() -> int:
    return int(os.sysconf("SC_CLK_TCK"))


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent busy since boot (from /proc/stat)."""
    with open("/proc/stat") as fh:
        parts = fh.readline().split()[1:]
    values = [int(v) for v in parts]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    guest = sum(values[8:10]) if len(values) > 9 else 0  # already counted in user/nice
    return (sum(values) - idle - guest) / clock_ticks()


def process_cpu_seconds(pid: int) -> float:
    with contextlib.suppress(OSError), open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / clock_ticks()
    return 0.0


def postgres_cpu_seconds(database: str | None = None) -> float:
    """CPU seconds of the PostgreSQL processes alive now (the server's own backends stay alive); with
    ``database``, only the backends connected to it (their title names it), so another session's work on
    the same PostgreSQL server is not counted."""
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError), open(f"/proc/{entry.name}/stat") as fh:
            head, _, tail = fh.read().rpartition(")")
            if head.endswith("(postgres"):
                if database is not None:
                    with open(f"/proc/{entry.name}/cmdline", "rb") as cmd:
                        if f" {database} ".encode() not in cmd.read().replace(b"\0", b" ") + b" ":
                            continue
                fields = tail.split()
                total += int(fields[11]) + int(fields[12])
    return total / clock_ticks()


def peak_rss_mb(pid: int) -> float | None:
    """Peak resident memory of another process (VmHWM), None when it cannot be read."""
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return None


def self_peak_rss_mb() -> float:
    """Peak resident memory of this process so far (ru_maxrss, KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def self_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def loadavg() -> list[str]:
    with open("/proc/loadavg") as fh:
        return fh.read().split()[:3]


@dataclass
class CpuWindow:
    """CPU use during one phase: the server, the load generator, and everything else on the machine."""

    server_pid: int | None
    postgres: bool = False
    t0: float = 0.0
    pg0: float = 0.0
    busy0: float = 0.0
    server0: float = 0.0
    children0: float = 0.0
    self0: float = 0.0

    def __enter__(self) -> CpuWindow:
        self.t0 = time.monotonic()
        self.busy0 = machine_busy_seconds()
        self.server0 = process_cpu_seconds(self.server_pid) if self.server_pid else 0.0
        self.children0 = children_cpu_seconds()
        self.self0 = self_cpu_seconds()
        self.pg0 = postgres_cpu_seconds() if self.postgres else 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def read(self, client_cpu: float | None = None) -> dict[str, float]:
        """Cores (CPU-seconds per wall second) since entering; ``client_cpu`` overrides the children's."""
        wall = max(time.monotonic() - self.t0, 1e-9)
        busy = machine_busy_seconds() - self.busy0
        server = (process_cpu_seconds(self.server_pid) - self.server0) if self.server_pid else 0.0
        client = client_cpu if client_cpu is not None else children_cpu_seconds() - self.children0
        own = self_cpu_seconds() - self.self0
        database = max(0.0, postgres_cpu_seconds() - self.pg0) if self.postgres else 0.0
        other = max(0.0, busy - server - client - own - database)
        return {
            "wall_s": round(wall, 3),
            "machine_busy_cores": round(busy / wall, 2),
            "server_cores": round(server / wall, 2),
            "client_cores": round(client / wall, 2),
            "postgres_cores": round(database / wall, 2),
            "other_cores": round(other / wall, 2),
        }
