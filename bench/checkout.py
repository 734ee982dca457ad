"""Checkout benchmark: how many cash checkouts per second one `tillit serve` process sustains.

A checkout is two money-moving requests on one connection: POST /v1/orders (3 lines, client-chosen
id) then POST /v1/payments (cash) for that order, each with its own Idempotency-Key. Per database
(SQLite, PostgreSQL) the script:

1. starts a fresh server (own temp TILLIT_HOME, own PostgreSQL database), seeded by `tillit init --demo`;
2. runs N checkouts at concurrency C with wrk (one connection per wrk thread, so each connection
   alternates order and payment for the same id), after a short warm-up;
3. measures two ceilings of this machine in the same run: the framework ceiling (the same server
   answering GET /healthz, which touches no database; it depends on the HTTP parser and event loop
   uvicorn picks, which the results name) and the database ceiling (plain SQL writing the
   rows one checkout writes, in the same two transactions, at the same durability and concurrency);
4. prints checkouts/s, latency, errors, the server's peak RSS and the ratios to both ceilings;
5. stops the server, drops its databases and removes its temp directories.

Only 127.0.0.1 is targeted; every loop is bounded in count and time.

    .venv/bin/python bench/checkout.py [--db sqlite|postgres|both] [--checkouts N] [--concurrency C]
                                       [--duration S] [--json PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import multiprocessing as mp
import os
import platform
import re
import resource
import secrets
import shutil
import signal
import socket
import sqlite3
import string
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from rich.console import Console
from rich.table import Table

# Wide enough for the results table when the output goes to a file or a pipe.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 120)

LOOPBACK = "127.0.0.1"
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
FRAMEWORK_TARGET = 0.3
FRAMEWORK_GOAL = 0.5
RSS_TARGET_MB = 200.0
# The basket every checkout buys: 2800 + 1500 + 2 x 300 = 4900 fen, paid with 100 yuan in cash.
BASKET = (("COF-LATTE", 1), ("BAK-CROIS", 1), ("WAT-500", 2))
TENDERED = 10000
SERVER_START_TIMEOUT = 60.0
CLI_TIMEOUT = 180.0


# --------------------------------------------------------------------------------------------------
# Small helpers


def now_utc() -> datetime:
    return datetime.now(UTC)


def percentile(values: list[float], pct: float) -> float | None:
    """Nearest-rank percentile of ``values`` (None when there are none)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(pct / 100.0 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def is_loopback(host: str | None) -> bool:
    return host is not None and (host == "localhost" or host == "::1" or host.startswith("127."))


def tillit_command() -> list[str]:
    exe = Path(sys.executable).parent / "tillit"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "tillit.cli"]


def run_tillit(args: list[str], env: dict[str, str], cwd: Path) -> str:
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


def postgres_cpu_seconds() -> float:
    """CPU seconds of the PostgreSQL processes alive now (the server's own backends stay alive)."""
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError), open(f"/proc/{entry.name}/stat") as fh:
            head, _, tail = fh.read().rpartition(")")
            if head.endswith("(postgres"):
                fields = tail.split()
                total += int(fields[11]) + int(fields[12])
    return total / clock_ticks()


def peak_rss_mb(pid: int) -> float | None:
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return None


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def self_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


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


# --------------------------------------------------------------------------------------------------
# wrk


def ensure_wrk(allow: bool) -> str | None:
    """Path of wrk; installs Debian's package when missing and running as root."""
    if not allow:
        return None
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return None
    console.print("wrk is missing: apt-get install -y wrk")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for attempt in range(2):
        if attempt == 1:
            subprocess.run(
                ["apt-get", "update", "-qq"], env=env, capture_output=True, timeout=300, check=False
            )
        proc = subprocess.run(
            ["apt-get", "install", "-y", "-qq", "wrk"], env=env, capture_output=True, timeout=300, check=False
        )
        if proc.returncode == 0 and shutil.which("wrk"):
            return shutil.which("wrk")
    return None


LUA_COMMON = r"""
local ffi = require("ffi")
pcall(ffi.cdef, [[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clk_id, bench_timespec *tp);
]])
local ts = ffi.new("bench_timespec")
local function now_us()
  ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC: comparable across threads and with Python
  return tonumber(ts.tv_sec) * 1000000 + tonumber(ts.tv_nsec) / 1000
end

local threads = {}
local next_tid = 0

function setup(thread)
  thread:set("tid", next_tid)
  local q = BASE
  if next_tid < REM then q = q + 1 end
  thread:set("quota", q)
  next_tid = next_tid + 1
  table.insert(threads, thread)
end

local function fmt(v)
  if v == nil then return "-1" end
  return string.format("%.1f", v)
end

local function join(list)
  local out = {}
  for i = 1, #list do out[i] = string.format("%.0f", list[i]) end
  return table.concat(out, ",")
end

function done(summary, latency, requests)
  io.write(string.format("BENCH wrk %d %d %d %d %d %d %d %.1f %.1f\n", summary.duration, summary.requests,
    summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.status,
    summary.errors.timeout, latency:percentile(50.0), latency:percentile(99.0)))
  for _, t in ipairs(threads) do
    io.write(string.format("BENCH thread %d %d %d %d %s %s %d\n", t:get("tid"), t:get("done_n"),
      t:get("ok_n"), t:get("errors"), fmt(t:get("t_start")), fmt(t:get("t_end")), t:get("resent") or 0))
    io.write("BENCH lat_a " .. join(t:get("lat_a")) .. "\n")
    io.write("BENCH lat_b " .. join(t:get("lat_b")) .. "\n")
    local sample = t:get("err_sample")
    if sample ~= nil then io.write("BENCH err " .. sample .. "\n") end
  end
end
"""

LUA_CHECKOUT = string.Template(r"""
-- Generated by bench/checkout.py: each connection alternates an order POST and its payment POST.
-- A request that got no answer (wrk reconnected, or wrk's one-off verification call of request())
-- is sent again unchanged, with the same Idempotency-Key, as a till would retry it.
BASE = $base
REM = $rem
local AUTH = "Bearer $key"
local NONCE = "$nonce"
local MARKERS = "$markers"
local ORDER_LINES = '$lines'
$common
done_n, ok_n, errors, resent, n = 0, 0, 0, 0, 0
lat_a, lat_b = {}, {}
t_start, t_end, err_sample = nil, nil, nil
local phase, cur_id, sent_at, order_ok = 0, nil, 0, false
local pending, answered, finished, last_req = false, false, false, nil

local function finish()
  if finished then return end
  finished = true
  local f = io.open(MARKERS .. "/" .. tid, "w")
  if f then f:write("done"); f:close() end
  wrk.thread:stop()
end

function request()
  local now = now_us()
  if not answered then t_start = now end
  sent_at = now
  if pending then
    if answered then resent = resent + 1 end
    if resent > 1000 then finish() end
    return last_req
  end
  pending = true
  if phase == 0 then
    if n >= quota then -- nothing left to send (never expected: the thread stops after its last payment)
      finish()
      last_req = wrk.format("GET", "/healthz")
      return last_req
    end
    n = n + 1
    cur_id = string.format("%s%08x%016x", NONCE, tid, n)
    last_req = wrk.format("POST", "/v1/orders", {
      ["Authorization"] = AUTH, ["Content-Type"] = "application/json", ["Idempotency-Key"] = "o-" .. cur_id,
    }, '{"id":"' .. cur_id .. '","lines":' .. ORDER_LINES .. '}')
  else
    last_req = wrk.format("POST", "/v1/payments", {
      ["Authorization"] = AUTH, ["Content-Type"] = "application/json", ["Idempotency-Key"] = "p-" .. cur_id,
    }, '{"order_id":"' .. cur_id .. '","method":"cash","tendered":$tendered}')
  end
  return last_req
end

function response(status, headers, body)
  local now = now_us()
  pending = false
  answered = true
  if finished then return end
  local good = status >= 200 and status < 300
  if not good then
    errors = errors + 1
    if err_sample == nil then err_sample = tostring(status) .. " " .. string.sub(body or "", 1, 300) end
  end
  if phase == 0 then
    lat_a[#lat_a + 1] = now - sent_at
    order_ok = good
    phase = 1
    return
  end
  lat_b[#lat_b + 1] = now - sent_at
  phase = 0
  done_n = done_n + 1
  if good and order_ok then ok_n = ok_n + 1 end
  t_end = now
  if done_n >= quota then finish() end
end
""")

LUA_GET = string.Template(r"""
-- Generated by bench/checkout.py: GET $path on every connection, counting non-2xx answers.
BASE = 0
REM = 0
$common
done_n, ok_n, errors = 0, 0, 0
lat_a, lat_b = {}, {}
t_start, t_end, err_sample = nil, nil, nil
local sent_at = 0
local req = nil
local answered = false

function request()
  local now = now_us()
  if not answered then t_start = now end -- wrk calls request() once before the threads start
  sent_at = now
  if req == nil then req = wrk.format("GET", "$path") end
  return req
end

function response(status, headers, body)
  local now = now_us()
  answered = true
  done_n = done_n + 1
  t_end = now
  if status >= 200 and status < 300 then
    ok_n = ok_n + 1
  else
    errors = errors + 1
    if err_sample == nil then err_sample = tostring(status) .. " " .. string.sub(body or "", 1, 300) end
  end
  if #lat_a < 200000 then lat_a[#lat_a + 1] = now - sent_at end
end
""")


@dataclass
class LoadResult:
    """What one load phase measured (checkouts or GETs)."""

    client: str
    completed: int = 0  # checkouts (or GETs) finished
    ok: int = 0
    errors: int = 0  # non-2xx responses
    transport_errors: int = 0
    resent: int = 0  # requests sent again after wrk lost their connection
    seconds: float = 0.0
    lat_a_ms: list[float] = field(default_factory=list)  # order latencies (or GET latencies)
    lat_b_ms: list[float] = field(default_factory=list)  # payment latencies
    error_sample: str | None = None
    client_cpu_s: float | None = None
    timed_out: bool = False

    def all_latencies(self) -> list[float]:
        return self.lat_a_ms + self.lat_b_ms


def parse_wrk_output(text: str, client: str) -> LoadResult:
    result = LoadResult(client=client)
    starts: list[float] = []
    ends: list[float] = []
    for line in text.splitlines():
        if not line.startswith("BENCH "):
            continue
        kind, _, rest = line[6:].partition(" ")
        if kind == "wrk":
            parts = rest.split()
            result.transport_errors = sum(int(p) for p in parts[2:5]) + int(parts[6])
        elif kind == "thread":
            _tid, done_n, ok_n, errors, t_start, t_end, resent = rest.split()
            result.resent += int(resent)
            result.completed += int(done_n)
            result.ok += int(ok_n)
            result.errors += int(errors)
            if float(t_start) >= 0 and float(t_end) >= 0:
                starts.append(float(t_start))
                ends.append(float(t_end))
        elif kind in ("lat_a", "lat_b") and rest.strip():
            values = [int(v) / 1000.0 for v in rest.strip().split(",")]
            (result.lat_a_ms if kind == "lat_a" else result.lat_b_ms).extend(values)
        elif kind == "err" and result.error_sample is None:
            result.error_sample = rest[:300]
    if starts:
        result.seconds = (max(ends) - min(starts)) / 1e6
    return result


def run_wrk(
    wrk: str,
    lua: str,
    url: str,
    concurrency: int,
    max_seconds: float,
    workdir: Path,
    markers: Path | None,
    expect_markers: int,
) -> tuple[str, float]:
    """Run wrk; when every thread left a marker (its quota is done) interrupt it. Returns (stdout, cpu s)."""
    script = workdir / f"wrk-{secrets.token_hex(4)}.lua"
    script.write_text(lua)
    cmd = [
        wrk,
        "-t",
        str(concurrency),
        "-c",
        str(concurrency),
        "-d",
        f"{max(1, int(max_seconds))}s",
        "--timeout",
        "30s",
        "-s",
        str(script),
        url,
    ]
    out_path = workdir / f"wrk-{secrets.token_hex(4)}.out"
    cpu0 = children_cpu_seconds()
    with open(out_path, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=workdir)
        try:
            deadline = time.monotonic() + max_seconds + 30
            while proc.poll() is None and time.monotonic() < deadline:
                if markers is not None and sum(1 for _ in markers.iterdir()) >= expect_markers:
                    proc.send_signal(signal.SIGINT)  # wrk stops, prints its summary and calls done()
                    break
                time.sleep(0.01)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGINT)
                proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
    return out_path.read_text(), children_cpu_seconds() - cpu0


def wrk_checkouts(
    wrk: str, base_url: str, key: str, checkouts: int, concurrency: int, max_seconds: float, workdir: Path
) -> LoadResult:
    markers = Path(tempfile.mkdtemp(prefix="markers-", dir=workdir))
    concurrency = max(1, min(concurrency, checkouts))
    lines = json.dumps([{"sku": sku, "quantity": qty} for sku, qty in BASKET], separators=(",", ":"))
    lua = LUA_CHECKOUT.substitute(
        base=checkouts // concurrency,
        rem=checkouts % concurrency,
        key=key,
        nonce=secrets.token_hex(4),
        markers=str(markers),
        lines=lines,
        tendered=TENDERED,
        common=LUA_COMMON,
    )
    text, cpu = run_wrk(wrk, lua, base_url, concurrency, max_seconds, workdir, markers, concurrency)
    result = parse_wrk_output(text, "wrk")
    result.client_cpu_s = cpu
    result.timed_out = result.completed < checkouts
    if result.completed == 0 and "BENCH" not in text:
        raise RuntimeError(f"wrk produced no result:\n{text[-2000:]}")
    return result


def wrk_get(
    wrk: str, base_url: str, path: str, concurrency: int, seconds: float, workdir: Path
) -> LoadResult:
    lua = LUA_GET.substitute(path=path, common=LUA_COMMON)
    text, cpu = run_wrk(wrk, lua, base_url, concurrency, seconds, workdir, None, 0)
    result = parse_wrk_output(text, "wrk")
    result.client_cpu_s = cpu
    if result.completed == 0 and "BENCH" not in text:
        raise RuntimeError(f"wrk produced no result:\n{text[-2000:]}")
    return result


# --------------------------------------------------------------------------------------------------
# Fallback load generator: processes with httpx (used when wrk cannot be had)


def _httpx_worker(
    mode: str,
    base_url: str,
    key: str,
    nonce: str,
    tid: int,
    quota: int,
    max_seconds: float,
    barrier: Any,
    out: Any,
) -> None:
    lat_a: list[float] = []
    lat_b: list[float] = []
    done_n = ok_n = errors = transport = 0
    sample: str | None = None
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    lines = [{"sku": sku, "quantity": qty} for sku, qty in BASKET]
    with httpx.Client(base_url=base_url, timeout=30.0) as client:
        barrier.wait(timeout=120)
        t_start = time.monotonic()
        deadline = t_start + max_seconds
        while done_n < quota and time.monotonic() < deadline:
            try:
                if mode == "get":
                    t0 = time.perf_counter()
                    r = client.get("/healthz")
                    lat_a.append((time.perf_counter() - t0) * 1000)
                    good = r.is_success
                else:
                    oid = f"{nonce}{tid:08x}{done_n + 1:016x}"
                    t0 = time.perf_counter()
                    r1 = client.post(
                        "/v1/orders",
                        json={"id": oid, "lines": lines},
                        headers={**headers, "Idempotency-Key": f"o-{oid}"},
                    )
                    t1 = time.perf_counter()
                    r2 = client.post(
                        "/v1/payments",
                        json={"order_id": oid, "method": "cash", "tendered": TENDERED},
                        headers={**headers, "Idempotency-Key": f"p-{oid}"},
                    )
                    t2 = time.perf_counter()
                    lat_a.append((t1 - t0) * 1000)
                    lat_b.append((t2 - t1) * 1000)
                    bad = [r for r in (r1, r2) if not r.is_success]
                    errors += len(bad)
                    if bad and sample is None:
                        sample = f"{bad[0].status_code} {bad[0].text[:300]}"
                    good = not bad
                    r = r2
                if mode == "get" and not good:
                    errors += 1
                    if sample is None:
                        sample = f"{r.status_code} {r.text[:300]}"
            except httpx.HTTPError:
                transport += 1
                good = False
            done_n += 1
            ok_n += int(good)
        t_end = time.monotonic()
    out.put(
        {
            "done": done_n,
            "ok": ok_n,
            "errors": errors,
            "transport": transport,
            "lat_a": lat_a,
            "lat_b": lat_b,
            "start": t_start,
            "end": t_end,
            "sample": sample,
        }
    )


def httpx_load(
    mode: str, base_url: str, key: str, total: int, concurrency: int, max_seconds: float
) -> LoadResult:
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(concurrency)
    out = ctx.Queue()
    nonce = secrets.token_hex(4)
    quotas = [total // concurrency + (1 if i < total % concurrency else 0) for i in range(concurrency)]
    procs = [
        ctx.Process(
            target=_httpx_worker,
            args=(mode, base_url, key, nonce, i, quotas[i], max_seconds, barrier, out),
            daemon=True,
        )
        for i in range(concurrency)
    ]
    cpu0 = children_cpu_seconds()
    for p in procs:
        p.start()
    parts = []
    try:
        for _ in procs:
            parts.append(out.get(timeout=max_seconds + 180))
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
                p.join(timeout=10)
    result = LoadResult(client="python-httpx")
    for part in parts:
        result.completed += part["done"]
        result.ok += part["ok"]
        result.errors += part["errors"]
        result.transport_errors += part["transport"]
        result.lat_a_ms.extend(part["lat_a"])
        result.lat_b_ms.extend(part["lat_b"])
        result.error_sample = result.error_sample or part["sample"]
    result.seconds = max(p["end"] for p in parts) - min(p["start"] for p in parts)
    result.client_cpu_s = children_cpu_seconds() - cpu0
    result.timed_out = mode != "get" and result.completed < total
    return result


# --------------------------------------------------------------------------------------------------
# Databases and the server


@dataclass
class Target:
    """One database to benchmark: how to reach it and what to clean up."""

    kind: str  # sqlite | postgres
    workdir: Path
    env: dict[str, str]
    pg_admin_url: str | None = None
    databases: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return "SQLite" if self.kind == "sqlite" else "PostgreSQL"


def pg_url_for(admin_url: str, dbname: str) -> str:
    parts = urlsplit(admin_url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + dbname, parts.query, parts.fragment))


def pg_create(admin_url: str, name: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(admin_url, autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def pg_drop(admin_url: str, name: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(admin_url, autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def base_env(home: Path, sync: str) -> dict[str, str]:
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


@contextlib.contextmanager
def target(kind: str, sync: str, pg_admin_url: str) -> Iterator[Target]:
    workdir = Path(tempfile.mkdtemp(prefix=f"tillit-bench-{kind}-"))
    t = Target(kind=kind, workdir=workdir, env=base_env(workdir / "var", sync))
    try:
        if kind == "postgres":
            t.pg_admin_url = pg_admin_url
            name = f"tillit_bench_{secrets.token_hex(4)}"
            pg_create(pg_admin_url, name)
            t.databases.append(name)
            t.env["TILLIT_DATABASE_URL"] = pg_url_for(pg_admin_url, name)
        yield t
    finally:
        for name in t.databases:
            try:
                pg_drop(pg_admin_url, name)
            except Exception as exc:
                console.print(f"[red]could not drop database {name}: {exc}[/red]")
        shutil.rmtree(workdir, ignore_errors=True)


class Server:
    """`tillit serve` in its own process (uvicorn runs in that process: workers=1)."""

    def __init__(self, env: dict[str, str], workdir: Path) -> None:
        self.env = env
        self.workdir = workdir
        self.port = free_port()
        self.base_url = f"http://{LOOPBACK}:{self.port}"
        self.log_path = workdir / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        cmd = [*tillit_command(), "serve", "--host", LOOPBACK, "--port", str(self.port), "--no-access-log"]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                cmd, env=self.env, cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"server exited ({self.proc.returncode}):\n{self.log_tail()}")
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(self.base_url + "/healthz").status_code == 200:
                        return
                time.sleep(0.1)
        raise RuntimeError(f"server not ready after {SERVER_START_TIMEOUT:.0f}s:\n{self.log_tail()}")

    def log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-3000:]
        return ""

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


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


def demo_terminal_key(output: str) -> str:
    match = re.search(r"terminal_key\s+(tk_ter_[A-Za-z0-9_\-]+)", output)
    if not match:
        raise RuntimeError(f"no terminal key in `tillit init --demo` output:\n{output}")
    return match.group(1)


# --------------------------------------------------------------------------------------------------
# Database ceiling: the rows of one checkout, written with plain SQL


SQL_COUNTER = (
    "INSERT INTO counters (merchant_id, name, value) VALUES (:m, 'order', 1) "
    "ON CONFLICT (merchant_id, name) DO UPDATE SET value = counters.value + 1 RETURNING value"
)
SQL_ORDER = (
    "INSERT INTO orders (id, merchant_id, store_id, terminal_id, number, status, currency, subtotal, "
    "discount_total, total, paid_amount, refunded_amount, note, version, created_at, updated_at) VALUES "
    "(:id, :m, :s, :t, :number, 'open', 'CNY', :total, 0, :total, 0, 0, NULL, 1, :now, :now)"
)
SQL_LINE = (
    "INSERT INTO order_lines (order_id, line_no, product_id, sku, name, unit_price, quantity, discount, "
    "amount) VALUES (:order_id, :line_no, :product_id, :sku, :name, :unit_price, :quantity, 0, :amount)"
)
SQL_EVENT = (
    "INSERT INTO events (merchant_id, order_id, entity, entity_id, from_status, to_status, actor, reason, "
    "provider_ref, at) VALUES (:m, :order_id, :entity, :entity_id, :from_status, :to_status, :actor, "
    ":reason, NULL, :now)"
)
SQL_IDEM = (
    "INSERT INTO idempotency_keys (scope, key, method, path, request_hash, status, response_status, "
    "response_body, created_at, locked_at) VALUES (:m, :key, 'POST', :path, :hash, 'done', 201, :body, "
    ":now, NULL)"
)
SQL_PAYMENT = (
    "INSERT INTO payments (id, merchant_id, order_id, terminal_id, method, provider, amount, currency, "
    "status, tendered, change_due, refunded_amount, provider_ref, payment_code_masked, failure_code, "
    "failure_message, version, created_at, updated_at, resolved_at) VALUES (:id, :m, :order_id, :t, 'cash', "
    "NULL, :amount, 'CNY', 'captured', :tendered, :change, 0, NULL, NULL, NULL, NULL, 1, :now, :now, :now)"
)
SQL_POSTING = (
    "INSERT INTO ledger_postings (txn_id, merchant_id, order_id, payment_id, refund_id, account, amount, "
    "currency, kind, created_at) VALUES (:txn, :m, :order_id, :payment_id, NULL, :account, :amount, 'CNY', "
    "'capture', :now)"
)
SQL_PAID = (
    "UPDATE orders SET status = 'paid', updated_at = :now, version = version + 1, paid_amount = :paid "
    "WHERE id = :id AND status = 'open'"
)
SQL_STOCK = "UPDATE products SET stock = stock - :qty WHERE id = :id AND stock IS NOT NULL"
# The server stores each response for replay: bodies of about the size it answers with.
ORDER_BODY = json.dumps({"pad": "x" * 1080})
PAYMENT_BODY = json.dumps({"pad": "x" * 480})


def _pg_sql(statement: str) -> str:
    return re.sub(r":(\w+)", r"%(\1)s", statement)


@dataclass(frozen=True)
class Seed:
    merchant: str
    store: str
    terminal: str
    products: tuple[tuple[str, str, str, int, int], ...]  # id, sku, name, price, quantity


def seed_rows(execute: Any, now: Any) -> Seed:
    ids = [uuid.uuid4().hex for _ in range(3 + len(BASKET))]
    merchant, store, terminal = ids[:3]
    prices = {"COF-LATTE": 2800, "BAK-CROIS": 1500, "WAT-500": 300}
    products = tuple((ids[3 + i], sku, sku.lower(), prices[sku], qty) for i, (sku, qty) in enumerate(BASKET))
    execute(
        "INSERT INTO merchants (id, name, currency, status, created_at) VALUES (:id, 'bench', 'CNY', "
        "'active', :now)",
        {"id": merchant, "now": now},
    )
    execute(
        "INSERT INTO stores (id, merchant_id, name, created_at) VALUES (:id, :m, 'bench', :now)",
        {"id": store, "m": merchant, "now": now},
    )
    execute(
        "INSERT INTO terminals (id, merchant_id, store_id, name, created_at) VALUES (:id, :m, :s, 'bench', "
        ":now)",
        {"id": terminal, "m": merchant, "s": store, "now": now},
    )
    for pid, sku, name, price, _qty in products:
        execute(
            "INSERT INTO products (id, merchant_id, sku, barcode, name, price, currency, stock, active, "
            "created_at, updated_at) VALUES (:id, :m, :sku, NULL, :name, :price, 'CNY', 100, 1, :now, :now)",
            {"id": pid, "m": merchant, "sku": sku, "name": name, "price": price, "now": now},
        )
    return Seed(merchant, store, terminal, products)


def _one_checkout(
    execute: Any, executemany: Any, scalar: Any, begin: Any, commit: Any, seed: Seed, now_value: Any
) -> None:
    """Write one checkout's rows in the server's two transactions, in the server's statement order."""
    m, actor = seed.merchant, "terminal:bench"
    order_id, payment_id, txn_id = uuid.uuid4().hex, uuid.uuid4().hex, uuid.uuid4().hex
    total = sum(price * qty for _pid, _sku, _name, price, qty in seed.products)
    # Transaction 1: POST /v1/orders
    now = now_value()
    begin()
    number = scalar(SQL_COUNTER, {"m": m})
    execute(
        SQL_ORDER,
        {
            "id": order_id,
            "m": m,
            "s": seed.store,
            "t": seed.terminal,
            "number": number,
            "total": total,
            "now": now,
        },
    )
    executemany(
        SQL_LINE,
        [
            {
                "order_id": order_id,
                "line_no": n + 1,
                "product_id": pid,
                "sku": sku,
                "name": name,
                "unit_price": price,
                "quantity": qty,
                "amount": price * qty,
            }
            for n, (pid, sku, name, price, qty) in enumerate(seed.products)
        ],
    )
    execute(
        SQL_EVENT,
        {
            "m": m,
            "order_id": order_id,
            "entity": "order",
            "entity_id": order_id,
            "from_status": None,
            "to_status": "open",
            "actor": actor,
            "reason": None,
            "now": now,
        },
    )
    execute(
        SQL_IDEM,
        {
            "m": m,
            "key": f"o-{order_id}",
            "path": "/v1/orders",
            "hash": hashlib.sha256(order_id.encode()).hexdigest(),
            "body": ORDER_BODY,
            "now": now,
        },
    )
    commit()
    # Transaction 2: POST /v1/payments
    now = now_value()
    begin()
    execute(
        SQL_PAYMENT,
        {
            "id": payment_id,
            "m": m,
            "order_id": order_id,
            "t": seed.terminal,
            "amount": total,
            "tendered": TENDERED,
            "change": TENDERED - total,
            "now": now,
        },
    )
    execute(
        SQL_EVENT,
        {
            "m": m,
            "order_id": order_id,
            "entity": "payment",
            "entity_id": payment_id,
            "from_status": None,
            "to_status": "captured",
            "actor": actor,
            "reason": "cash received",
            "now": now,
        },
    )
    executemany(
        SQL_POSTING,
        [
            {
                "txn": txn_id,
                "m": m,
                "order_id": order_id,
                "payment_id": payment_id,
                "account": "tender:cash",
                "amount": total,
                "now": now,
            },
            {
                "txn": txn_id,
                "m": m,
                "order_id": order_id,
                "payment_id": payment_id,
                "account": f"order:{order_id}",
                "amount": -total,
                "now": now,
            },
        ],
    )
    execute(SQL_PAID, {"now": now, "paid": total, "id": order_id})
    execute(
        SQL_EVENT,
        {
            "m": m,
            "order_id": order_id,
            "entity": "order",
            "entity_id": order_id,
            "from_status": "open",
            "to_status": "paid",
            "actor": actor,
            "reason": "fully paid",
            "now": now,
        },
    )
    for pid, _sku, _name, _price, qty in seed.products:
        execute(SQL_STOCK, {"qty": qty, "id": pid})
    execute(
        SQL_IDEM,
        {
            "m": m,
            "key": f"p-{order_id}",
            "path": "/v1/payments",
            "hash": hashlib.sha256(payment_id.encode()).hexdigest(),
            "body": PAYMENT_BODY,
            "now": now,
        },
    )
    commit()


def _sqlite_now() -> str:
    # How SQLAlchemy stores DateTime in SQLite.
    return now_utc().strftime("%Y-%m-%d %H:%M:%S.%f")


def _sqlite_connect(path: str, sync: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=15.0, isolation_level=None, check_same_thread=False)
    # The server's pragmas (adapters/db/engine.py).
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={sync}")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=15000")
    return conn


def _ceiling_worker(
    kind: str, dsn: str, sync: str, seed: Seed, quota: int, max_seconds: float, barrier: Any, out: Any
) -> None:
    done = errors = 0
    sample: str | None = None
    if kind == "sqlite":
        conn = _sqlite_connect(dsn, sync)

        def execute(sql: str, params: Any) -> None:
            conn.execute(sql, params)

        def executemany(sql: str, rows: Any) -> None:
            conn.executemany(sql, rows)

        def scalar(sql: str, params: Any) -> Any:
            return conn.execute(sql, params).fetchone()[0]

        def begin() -> None:
            conn.execute("BEGIN IMMEDIATE")  # as the server: writers queue up front

        def commit() -> None:
            conn.execute("COMMIT")

        def rollback() -> None:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")

        now_value: Any = _sqlite_now
        close = conn.close
    else:
        import psycopg

        pconn = psycopg.connect(dsn, autocommit=True, connect_timeout=10)

        def execute(sql: str, params: Any) -> None:
            pconn.execute(_pg_sql(sql), params)

        def executemany(sql: str, rows: Any) -> None:
            with pconn.cursor() as cur:
                cur.executemany(_pg_sql(sql), rows)

        def scalar(sql: str, params: Any) -> Any:
            row = pconn.execute(_pg_sql(sql), params).fetchone()
            assert row is not None
            return row[0]

        def begin() -> None:
            pconn.execute("BEGIN")

        def commit() -> None:
            pconn.execute("COMMIT")

        def rollback() -> None:
            with contextlib.suppress(psycopg.Error):
                pconn.execute("ROLLBACK")

        now_value = now_utc
        close = pconn.close
    barrier.wait(timeout=120)
    start = time.monotonic()
    deadline = start + max_seconds
    while done < quota and time.monotonic() < deadline:
        try:
            _one_checkout(execute, executemany, scalar, begin, commit, seed, now_value)
            done += 1
        except Exception as exc:
            errors += 1
            sample = sample or repr(exc)[:300]
            rollback()
            if errors > 50:
                break
    end = time.monotonic()
    close()
    out.put({"done": done, "errors": errors, "start": start, "end": end, "sample": sample})


@dataclass
class CeilingResult:
    checkouts: int
    errors: int
    seconds: float
    workers: int
    sample: str | None

    @property
    def checkouts_per_s(self) -> float:
        return self.checkouts / self.seconds if self.seconds > 0 else 0.0


def database_ceiling(
    t: Target, sync: str, checkouts: int, concurrency: int, max_seconds: float
) -> CeilingResult:
    """Plain SQL on a scratch copy of the schema (made by `tillit migrate`), same concurrency."""
    scratch_env = dict(t.env)
    if t.kind == "sqlite":
        home = t.workdir / "scratch"
        scratch_env["TILLIT_HOME"] = str(home)
        run_tillit(["migrate"], scratch_env, t.workdir)
        dsn = str(home / "tillit.sqlite")
        conn = _sqlite_connect(dsn, sync)
        conn.execute("BEGIN IMMEDIATE")
        seed = seed_rows(lambda sql, p: conn.execute(sql, p), _sqlite_now())
        conn.execute("COMMIT")
        conn.close()
    else:
        import psycopg

        assert t.pg_admin_url is not None
        name = f"tillit_bench_{secrets.token_hex(4)}_sql"
        pg_create(t.pg_admin_url, name)
        t.databases.append(name)
        dsn = pg_url_for(t.pg_admin_url, name)
        scratch_env["TILLIT_DATABASE_URL"] = dsn
        run_tillit(["migrate"], scratch_env, t.workdir)
        with psycopg.connect(dsn, connect_timeout=10) as pconn:
            seed = seed_rows(lambda sql, p: pconn.execute(_pg_sql(sql), p), now_utc())
    workers = max(1, min(concurrency, checkouts))
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(workers)
    out = ctx.Queue()
    quotas = [checkouts // workers + (1 if i < checkouts % workers else 0) for i in range(workers)]
    procs = [
        ctx.Process(
            target=_ceiling_worker,
            args=(t.kind, dsn, sync, seed, quotas[i], max_seconds, barrier, out),
            daemon=True,
        )
        for i in range(workers)
    ]
    for p in procs:
        p.start()
    parts = []
    try:
        for _ in procs:
            parts.append(out.get(timeout=max_seconds + 180))
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
                p.join(timeout=10)
    return CeilingResult(
        checkouts=sum(p["done"] for p in parts),
        errors=sum(p["errors"] for p in parts),
        seconds=max(p["end"] for p in parts) - min(p["start"] for p in parts),
        workers=workers,
        sample=next((p["sample"] for p in parts if p["sample"]), None),
    )


# --------------------------------------------------------------------------------------------------
# One database, end to end


def ms(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def bench_one(kind: str, args: argparse.Namespace, wrk: str | None) -> dict[str, Any]:
    with target(kind, args.sqlite_synchronous, args.pg_url) as t:
        console.print(f"[bold]{t.label}[/bold]: seeding (tillit init --demo) in {t.workdir}")
        key = demo_terminal_key(run_tillit(["init", "--demo"], t.env, t.workdir))
        stack = server_stack(t.env)
        server = Server(t.env, t.workdir)
        try:
            server.start()
            console.print(f"  server pid {server.pid} on {server.base_url}; warm-up {args.warmup} checkouts")
            checkout_load = (
                (lambda n, s: wrk_checkouts(wrk, server.base_url, key, n, args.concurrency, s, t.workdir))
                if wrk
                else (lambda n, s: httpx_load("checkout", server.base_url, key, n, args.concurrency, s))
            )
            if args.warmup > 0:
                warm = checkout_load(args.warmup, min(args.duration, 120.0))
                if warm.errors or warm.transport_errors:
                    console.print(f"  [yellow]warm-up errors: {warm.errors} ({warm.error_sample})[/yellow]")
            console.print(
                f"  {args.checkouts} checkouts at concurrency {args.concurrency} "
                f"(at most {args.duration:.0f}s)"
            )
            with CpuWindow(server.pid, postgres=kind == "postgres") as window:
                load = checkout_load(args.checkouts, args.duration)
                cpu = window.read(load.client_cpu_s)
            rss_after_checkouts = peak_rss_mb(server.pid)
            console.print(f"  framework ceiling: GET /healthz for {args.ceiling_seconds:.0f}s")
            with CpuWindow(server.pid) as window:
                if wrk:
                    health = wrk_get(
                        wrk, server.base_url, "/healthz", args.concurrency, args.ceiling_seconds, t.workdir
                    )
                else:
                    health = httpx_load(
                        "get", server.base_url, key, 10_000_000, args.concurrency, args.ceiling_seconds
                    )
                health_cpu = window.read(health.client_cpu_s)
            rss_peak = peak_rss_mb(server.pid)
        finally:
            server.stop()
        console.print(
            f"  database ceiling: plain SQL, {args.checkouts} checkouts, {args.concurrency} processes"
        )
        with CpuWindow(None) as window:
            ceiling = database_ceiling(
                t, args.sqlite_synchronous, args.checkouts, args.concurrency, args.duration
            )
            ceiling_cpu = window.read()
        if ceiling.sample:
            console.print(f"  [yellow]database ceiling errors: {ceiling.errors} ({ceiling.sample})[/yellow]")

    checkouts_per_s = load.ok / load.seconds if load.seconds > 0 else 0.0
    requests_per_s = 2 * checkouts_per_s
    health_rps = health.completed / health.seconds if health.seconds > 0 else 0.0
    server_cpu_s = cpu["server_cores"] * cpu["wall_s"]
    vs_framework = requests_per_s / health_rps if health_rps else None
    vs_database = checkouts_per_s / ceiling.checkouts_per_s if ceiling.checkouts_per_s else None
    return {
        "db": kind,
        "label": t.label,
        "durability": (
            f"WAL, synchronous={args.sqlite_synchronous}" if kind == "sqlite" else "synchronous_commit=on"
        ),
        "server_stack": stack,
        "checkout": {
            "client": load.client,
            "requested": args.checkouts,
            "completed": load.completed,
            "ok": load.ok,
            "errors_non_2xx": load.errors,
            "transport_errors": load.transport_errors,
            "resent_after_lost_connection": load.resent,
            "error_sample": load.error_sample,
            "timed_out": load.timed_out,
            "seconds": round(load.seconds, 3),
            "checkouts_per_s": round(checkouts_per_s, 1),
            "requests_per_s": round(requests_per_s, 1),
            "latency_ms": {
                "p50": ms(percentile(load.all_latencies(), 50)),
                "p99": ms(percentile(load.all_latencies(), 99)),
                "order_p50": ms(percentile(load.lat_a_ms, 50)),
                "order_p99": ms(percentile(load.lat_a_ms, 99)),
                "payment_p50": ms(percentile(load.lat_b_ms, 50)),
                "payment_p99": ms(percentile(load.lat_b_ms, 99)),
            },
            "cpu": cpu,
            "server_cpu_ms_per_checkout": round(server_cpu_s / load.ok * 1000, 2) if load.ok else None,
        },
        "server": {
            "peak_rss_mb": round(rss_peak, 1) if rss_peak else None,
            "peak_rss_mb_after_checkouts": round(rss_after_checkouts, 1) if rss_after_checkouts else None,
        },
        "framework_ceiling": {
            "endpoint": "GET /healthz",
            "requests": health.completed,
            "errors_non_2xx": health.errors,
            "seconds": round(health.seconds, 3),
            "requests_per_s": round(health_rps, 1),
            "latency_ms": {
                "p50": ms(percentile(health.lat_a_ms, 50)),
                "p99": ms(percentile(health.lat_a_ms, 99)),
            },
            "cpu": health_cpu,
        },
        "database_ceiling": {
            "method": "sqlite3 stdlib" if kind == "sqlite" else "psycopg 3",
            "workers": ceiling.workers,
            "checkouts": ceiling.checkouts,
            "errors": ceiling.errors,
            "seconds": round(ceiling.seconds, 3),
            "checkouts_per_s": round(ceiling.checkouts_per_s, 1),
            "transactions_per_s": round(2 * ceiling.checkouts_per_s, 1),
            "cpu": ceiling_cpu,
        },
        "ratios": {
            "requests_vs_framework_ceiling": round(vs_framework, 3) if vs_framework is not None else None,
            "checkouts_vs_database_ceiling": round(vs_database, 3) if vs_database is not None else None,
        },
        "targets": {
            "framework_ratio_min": FRAMEWORK_TARGET,
            "framework_ratio_goal": FRAMEWORK_GOAL,
            "peak_rss_mb_max": RSS_TARGET_MB,
            "framework_ratio_met": vs_framework is not None and vs_framework >= FRAMEWORK_TARGET,
            "framework_goal_met": vs_framework is not None and vs_framework >= FRAMEWORK_GOAL,
            "peak_rss_met": rss_peak is not None and rss_peak <= RSS_TARGET_MB,
            "no_errors": load.errors == 0 and load.transport_errors == 0 and not load.timed_out,
        },
    }


# --------------------------------------------------------------------------------------------------
# Output


def fmt(value: Any, unit: str = "", digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}{unit}"
    return f"{value:,}{unit}" if isinstance(value, int) else f"{value}{unit}"


def verdict(ok: bool) -> str:
    return "[green]met[/green]" if ok else "[red]not met[/red]"


def render(results: list[dict[str, Any]], meta: dict[str, Any]) -> None:
    table = Table(
        title=f"Checkout benchmark: {meta['checkouts']} checkouts, concurrency {meta['concurrency']}"
    )
    table.add_column("")
    for r in results:
        table.add_column(r["label"], justify="right")

    def row(name: str, getter: Any) -> None:
        table.add_row(name, *(getter(r) for r in results))

    row("load generator", lambda r: r["checkout"]["client"])
    row("durability", lambda r: r["durability"])
    row(
        "server: uvicorn, HTTP parser, event loop",
        lambda r: "{uvicorn}, {http}, {loop}".format(**r["server_stack"]),
    )
    row("checkouts ok / requested", lambda r: f"{r['checkout']['ok']:,} / {r['checkout']['requested']:,}")
    row("checkouts/s", lambda r: fmt(r["checkout"]["checkouts_per_s"]))
    row("money-moving requests/s", lambda r: fmt(r["checkout"]["requests_per_s"]))
    row(
        "request latency p50 / p99",
        lambda r: (
            f"{fmt(r['checkout']['latency_ms']['p50'], ' ms')} / "
            f"{fmt(r['checkout']['latency_ms']['p99'], ' ms')}"
        ),
    )
    row(
        "  order p50 / p99",
        lambda r: (
            f"{fmt(r['checkout']['latency_ms']['order_p50'], ' ms')} / "
            f"{fmt(r['checkout']['latency_ms']['order_p99'], ' ms')}"
        ),
    )
    row(
        "  payment p50 / p99",
        lambda r: (
            f"{fmt(r['checkout']['latency_ms']['payment_p50'], ' ms')} / "
            f"{fmt(r['checkout']['latency_ms']['payment_p99'], ' ms')}"
        ),
    )
    row(
        "errors (non-2xx + transport)",
        lambda r: fmt(r["checkout"]["errors_non_2xx"] + r["checkout"]["transport_errors"]),
    )
    row("server CPU per checkout", lambda r: fmt(r["checkout"]["server_cpu_ms_per_checkout"], " ms"))
    row(
        "cores: server / load gen / postgres / other",
        lambda r: "{server_cores} / {client_cores} / {postgres_cores} / {other_cores}".format(
            **r["checkout"]["cpu"]
        ),
    )
    row("server peak RSS (VmHWM)", lambda r: fmt(r["server"]["peak_rss_mb"], " MB"))
    table.add_section()
    row("framework ceiling: /healthz req/s", lambda r: fmt(r["framework_ceiling"]["requests_per_s"]))
    row("database ceiling: txn/s", lambda r: fmt(r["database_ceiling"]["transactions_per_s"]))
    row("database ceiling: checkouts/s", lambda r: fmt(r["database_ceiling"]["checkouts_per_s"]))
    table.add_section()
    row(
        "requests/s ÷ framework ceiling",
        lambda r: fmt(r["ratios"]["requests_vs_framework_ceiling"], digits=3),
    )
    row(
        "checkouts/s ÷ database ceiling",
        lambda r: fmt(r["ratios"]["checkouts_vs_database_ceiling"], digits=3),
    )
    row(
        f"target ≥ {FRAMEWORK_TARGET} of framework ceiling",
        lambda r: verdict(r["targets"]["framework_ratio_met"]),
    )
    row(
        f"goal ≥ {FRAMEWORK_GOAL} of framework ceiling", lambda r: verdict(r["targets"]["framework_goal_met"])
    )
    row(f"peak RSS ≤ {RSS_TARGET_MB:.0f} MB", lambda r: verdict(r["targets"]["peak_rss_met"]))
    row("no errors, all checkouts done", lambda r: verdict(r["targets"]["no_errors"]))
    console.print(table)
    for r in results:
        if r["checkout"]["error_sample"]:
            console.print(f"[yellow]{r['label']} first error: {r['checkout']['error_sample']}[/yellow]")


def git_state() -> dict[str, Any]:
    """The commit measured, and whether the work tree had uncommitted changes."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": head or None, "dirty": bool(dirty)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--checkouts", type=int, default=3000, help="checkouts to run (default 3000)")
    parser.add_argument("--concurrency", type=int, default=8, help="connections / workers (default 8)")
    parser.add_argument(
        "--duration",
        type=float,
        default=300.0,
        help="upper bound in seconds for the checkout phase and the database ceiling (default 300)",
    )
    parser.add_argument("--warmup", type=int, default=200, help="checkouts before measuring (default 200)")
    parser.add_argument(
        "--ceiling-seconds",
        type=float,
        default=10.0,
        help="how long GET /healthz runs for the framework ceiling (default 10)",
    )
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("TILLIT_BENCH_PG_URL", DEFAULT_PG_URL),
        help="PostgreSQL maintenance URL on this machine (default %(default)s)",
    )
    parser.add_argument(
        "--sqlite-synchronous",
        default=os.environ.get("TILLIT_SQLITE_SYNCHRONOUS", "FULL").upper(),
        choices=("OFF", "NORMAL", "FULL", "EXTRA"),
        help="as TILLIT_SQLITE_SYNCHRONOUS (default FULL)",
    )
    parser.add_argument(
        "--client",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="load generator: wrk (installed if missing and root) or python (httpx processes)",
    )
    parser.add_argument("--json", type=Path, help="also write the results as JSON to this path")
    args = parser.parse_args(argv)
    if args.checkouts < 1 or args.concurrency < 1 or args.duration <= 0 or args.ceiling_seconds <= 0:
        parser.error("--checkouts, --concurrency, --duration and --ceiling-seconds must be positive")
    if args.checkouts > 1_000_000 or args.concurrency > 256 or args.duration > 3600:
        parser.error("limits: --checkouts <= 1,000,000, --concurrency <= 256, --duration <= 3600")
    kinds = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    if "postgres" in kinds and not is_loopback(urlsplit(args.pg_url).hostname):
        parser.error("--pg-url must point at this machine (127.0.0.1 / localhost)")

    wrk = ensure_wrk(args.client != "python")
    if wrk is None and args.client == "wrk":
        console.print("[red]wrk is not available and could not be installed[/red]")
        return 2
    client = "wrk" if wrk else "python-httpx"
    if not wrk:
        console.print(
            "[yellow]wrk not available: falling back to a multi-process Python httpx client, which "
            "competes with the server for CPU; figures are lower bounds.[/yellow]"
        )
    started = time.monotonic()
    with open("/proc/loadavg") as fh:
        loadavg = fh.read().split()[:3]
    meta = {
        "date": now_utc().isoformat(timespec="seconds"),
        "git": git_state(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "checkouts": args.checkouts,
        "concurrency": args.concurrency,
        "warmup": args.warmup,
        "ceiling_seconds": args.ceiling_seconds,
        "client": client,
        "wrk": subprocess.run([wrk, "-v"], capture_output=True, text=True, check=False).stdout.splitlines()[0]
        if wrk
        else None,
        "cpus": os.cpu_count(),
        "loadavg_at_start": loadavg,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    results = []
    for kind in kinds:
        results.append(bench_one(kind, args, wrk))
    meta["elapsed_s"] = round(time.monotonic() - started, 1)
    render(results, meta)
    console.print(f"total time {meta['elapsed_s']:.0f}s")
    if args.json:
        args.json.write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
        console.print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
