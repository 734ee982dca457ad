"""`tillit chaos`: thousands of checkouts against a faulty sandbox while Tillit's processes are killed,
then a proof against the sandbox's ground truth that no sale was lost, charged twice or left unknown.

Everything runs on loopback: one sandbox process, Tillit's API process(es) and worker(s), and a load
client of ``concurrency`` threads. Provider time runs ``speed`` times faster than real time in every
process (the sandbox's clock and Tillit's scaled clock share one anchor), so the providers' 45/60 s
windows pass in a few real seconds.

Per checkout the client plays cashier and customer: create an order, scan a fresh payment code (some
payments need the password, which the customer then enters or cancels; some scans are repeated),
retry with the same Idempotency-Key when the server is down, wait for the attempt to settle, and take
cash when the provider payment failed. A monkey SIGKILLs and restarts servers and workers meanwhile,
and with ``kill_provider`` the sandbox too (an outage of a few seconds: its state is durable and its
clock keeps running, as a provider's would).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from tillit.access import keys, merchants
from tillit.adapters.db import migrate
from tillit.adapters.db.engine import normalise_url
from tillit.adapters.db.schema import events, exceptions, payments, refunds
from tillit.bootstrap import build
from tillit.config import Settings
from tillit.kernel.check import run_checks
from tillit.payments import accounts as provider_accounts
from tillit.sales import catalog
from tillit.sandbox.config import generate_rsa_pair

IN_FLIGHT = ("pending", "unknown", "reversing")
# The sandbox asks for the password above this amount: chaos's "BIG" product (258 yuan) needs it,
# "SMALL" (18 yuan) never does, so an attempt's amount tells whose time it waited on.
PASSWORD_THRESHOLD_FEN = 20000

PROFILES: dict[str, dict[str, Any]] = {
    # The minimum rates: >= 10 % answers lost after commit, >= 10 % SYSTEMERROR on pay, plus
    # faults on every other call and on notifications.
    "default": {
        "endpoints": {
            "wechat.micropay": {"answer_lost": 0.12, "system_error": 0.12, "hang": 0.01},
            "alipay.trade.pay": {"answer_lost": 0.12, "system_error": 0.12, "hang": 0.01},
            "*": {"answer_lost": 0.05, "system_error": 0.05, "bad_signature": 0.02, "latency": 0.05},
        },
        "notify": {"loss": 0.2, "duplicate": 0.2, "delay": 0.1, "reorder": 0.5},
        "latency_ms": 40,
        "answer_lost_status": 502,
        "delay_seconds": 30,
    },
    # The goal's size (issue 16.4): at least 30 % of all provider calls carry a fault that breaks them
    # (lost answer, SYSTEMERROR, hang, bad signature), latency not counted.
    "goal": {
        "endpoints": {
            "wechat.micropay": {"answer_lost": 0.2, "system_error": 0.15, "hang": 0.02},
            "alipay.trade.pay": {"answer_lost": 0.2, "system_error": 0.15, "hang": 0.02},
            "*": {"answer_lost": 0.16, "system_error": 0.16, "bad_signature": 0.05, "latency": 0.05},
        },
        "notify": {"loss": 0.2, "duplicate": 0.2, "delay": 0.1, "reorder": 0.5},
        "latency_ms": 40,
        "answer_lost_status": 502,
        "delay_seconds": 30,
    },
    "calm": {"endpoints": {}},
    "brutal": {
        "endpoints": {
            "wechat.micropay": {"answer_lost": 0.3, "system_error": 0.2, "hang": 0.03},
            "alipay.trade.pay": {"answer_lost": 0.3, "system_error": 0.2, "hang": 0.03},
            "*": {"answer_lost": 0.15, "system_error": 0.15, "bad_signature": 0.05, "hang": 0.01},
        },
        "notify": {"loss": 0.4, "duplicate": 0.3, "delay": 0.2, "reorder": 0.8},
        "answer_lost_status": 502,
        "delay_seconds": 60,
    },
}


@dataclass
class ChaosOptions:
    checkouts: int = 10_000
    seed: int = 1
    profile: str = "default"
    database_url: str | None = None  # None: embedded SQLite in a temporary home
    api_processes: int = 1
    workers: int = 0  # separate `tillit worker` processes (0: the resolver runs inside the API process)
    concurrency: int = 8
    speed: float = 20.0
    kill_every: tuple[float, float] = (3.0, 8.0)  # real seconds between kills
    kill_provider: bool = False  # the sandbox is a victim too: killed, down a while, started again
    provider_outage: tuple[float, float] = (1.0, 4.0)  # real seconds the killed sandbox stays down
    password_share: float = 0.15
    cancel_share: float = 0.4  # of the password payments, how many the customer cancels
    duplicate_share: float = 0.05
    refund_share: float = 0.05  # of the captured provider payments, how many get a partial refund
    # What tills meet besides lost answers (issue 16.4), each a share of the checkouts (or of the kind):
    client_timeout_share: float = 0.05  # the till's own request times out; it resends with the same key
    double_scan_share: float = 0.03  # two scans of one order sent at the same moment (two keys, two codes)
    cancel_in_password_share: float = 0.25  # of the password payments: the cashier cancels the order
    late_password_share: float = 0.2  # of the password payments: the password comes near the windows
    double_refund_share: float = 0.3  # of the refunds: two full refunds of one payment at the same moment
    settle_seconds: float = 120.0
    keep_dir: bool = False
    progress: Callable[[int], None] | None = None
    inspect: Callable[[Any], None] | None = None  # called with Tillit's Container before clean-up


@dataclass
class ChaosReport:
    checkouts: int = 0
    orders: int = 0
    paid_orders: int = 0
    provider_payments: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    scenarios: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    kills: int = 0
    kills_by: Counter[str] = field(default_factory=Counter)  # api, worker, sandbox
    # Provider calls (every fault decision on a wire endpoint) and those that carried a breaking fault.
    provider_calls: int = 0
    provider_calls_faulted: int = 0
    client_retries: int = 0
    lost: list[str] = field(default_factory=list)
    double_charged: list[str] = field(default_factory=list)
    unresolved: list[str] = field(default_factory=list)
    ledger_violations: list[str] = field(default_factory=list)
    # /metrics scraped from every API process after the run, against the database's own counts.
    metrics_scrapes: int = 0
    metrics_mismatches: list[str] = field(default_factory=list)
    open_exceptions: Counter[str] = field(default_factory=Counter)
    wallet_debits: int = 0
    wallet_refunds: int = 0
    seconds: float = 0.0
    load_seconds: float = 0.0
    # Real seconds from a call's first failed try (transport error, 5xx, 409 in flight) to its answer.
    resend_waits: list[float] = field(default_factory=list)
    # Provider seconds from the money's return at the provider to Tillit's refund saying succeeded.
    refund_lags: list[float] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.lost or self.double_charged or self.unresolved or self.ledger_violations)

    def as_dict(self) -> dict[str, Any]:
        return {
            "checkouts": self.checkouts,
            "orders": self.orders,
            "paid_orders": self.paid_orders,
            "provider_payments": self.provider_payments,
            "outcomes": dict(self.outcomes),
            "scenarios": dict(self.scenarios),
            "faults_injected": dict(self.faults),
            "kills": self.kills,
            "kills_by": dict(self.kills_by),
            "provider_calls": self.provider_calls,
            "provider_calls_faulted": self.provider_calls_faulted,
            "faulted_share": round(self.provider_calls_faulted / self.provider_calls, 3)
            if self.provider_calls
            else None,
            "client_retries": self.client_retries,
            "lost": len(self.lost),
            "double_charged": len(self.double_charged),
            "unresolved": len(self.unresolved),
            "ledger_violations": len(self.ledger_violations),
            "metrics_scrapes": self.metrics_scrapes,
            "metrics_mismatches": len(self.metrics_mismatches),
            "open_exceptions": dict(self.open_exceptions),
            "wallet_debited_fen": self.wallet_debits,
            "wallet_refunded_fen": self.wallet_refunds,
            "resend_wait_p99_s": _p99(self.resend_waits),
            "resends": len(self.resend_waits),
            "refund_confirmation_p99_s": _p99(self.refund_lags),
            "refunds_confirmed": len(self.refund_lags),
            "seconds": round(self.seconds, 1),
            "load_seconds": round(self.load_seconds, 1),
            "ok": self.ok,
        }


def _p99(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))], 2)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tillit_cmd() -> list[str]:
    exe = shutil.which("tillit")
    return [exe] if exe else [sys.executable, "-m", "tillit.cli"]


class Fleet:
    """The processes under test: start, SIGKILL, restart."""

    def __init__(self, env: dict[str, str], workdir: Path) -> None:
        self.env = env
        self.workdir = workdir
        self.procs: dict[str, tuple[list[str], subprocess.Popen[bytes] | None]] = {}
        self.lock = threading.Lock()

    def add(self, name: str, args: list[str]) -> None:
        self.procs[name] = (args, None)
        self.start(name)

    def start(self, name: str) -> None:
        args, _ = self.procs[name]
        log = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115 - handed to the child process
        proc = subprocess.Popen(args, env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir)
        self.procs[name] = (args, proc)

    def kill(self, name: str) -> None:
        _, proc = self.procs[name]
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)

    def restart(self, name: str) -> None:
        with self.lock:
            self.kill(name)
            self.start(name)

    def stop_all(self) -> None:
        for _, proc in self.procs.values():
            if proc is not None and proc.poll() is None:
                proc.terminate()
        for _, proc in self.procs.values():
            if proc is not None:
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()


def wait_http(url: str, seconds: float = 180, log: Path | None = None) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    tail = log.read_text(errors="replace")[-3000:] if log is not None and log.exists() else ""
    raise RuntimeError(f"{url} did not come up; last output:\n{tail}")


def sandbox_toml(
    speed: float, seed: int, accounts: dict[str, str], app_pub: str, sbx_priv: str, sbx_pub: str
) -> str:
    return f'''[sandbox]
clock_speed = {speed}
password_threshold_fen = {PASSWORD_THRESHOLD_FEN}
code_ttl_seconds = 120
wechat_pending_timeout_seconds = 45
alipay_pending_timeout_seconds = 45
wechat_refund_min_interval_seconds = 0
seed = {seed}

[[wechat]]
appid = "{accounts["appid"]}"
mch_id = "{accounts["mch_id"]}"
api_key = "{accounts["api_key"]}"
fee_rate = "0.38%"

[[alipay]]
app_id = "{accounts["app_id"]}"
pid = "{accounts["pid"]}"
fee_rate = "0.38%"
app_public_key = """
{app_pub}"""
sandbox_private_key = """
{sbx_priv}"""
sandbox_public_key = """
{sbx_pub}"""
'''


class Client:
    """One cashier: HTTP with retries on transport errors and 409 in-flight, same key every time."""

    def __init__(self, bases: list[str], key: str, report: ChaosReport, lock: threading.Lock) -> None:
        self.bases = bases
        self.http = httpx.Client(headers={"Authorization": f"Bearer {key}"}, timeout=10)
        self.report = report
        self.lock = lock
        self.turn = 0

    def _base(self) -> str:
        self.turn += 1
        return self.bases[self.turn % len(self.bases)]

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        key: str | None = None,
        budget: float = 120,
        first_timeout: float | None = None,
    ) -> httpx.Response:
        """``first_timeout``: the first try gives up this soon (the till's own timeout); the resend
        carries the same key, as the till does."""
        deadline = time.monotonic() + budget
        headers = {"Idempotency-Key": key} if key else {}
        failed_at: float | None = None
        timeout: float | None = first_timeout
        while True:
            try:
                limit = httpx.USE_CLIENT_DEFAULT if timeout is None else httpx.Timeout(timeout)
                timeout = None
                r = self.http.request(method, self._base() + path, json=body, headers=headers, timeout=limit)
                if r.status_code == 409 and r.json()["error"]["code"] in ("idempotency_key_in_flight",):
                    raise httpx.TransportError("in flight")
                if r.status_code >= 500:
                    raise httpx.TransportError(f"server error {r.status_code}")
                if failed_at is not None:
                    with self.lock:
                        self.report.resend_waits.append(time.monotonic() - failed_at)
                return r
            except (httpx.TransportError, ValueError):
                failed_at = failed_at if failed_at is not None else time.monotonic()
                with self.lock:
                    self.report.client_retries += 1
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)


class Control:
    """The sandbox's control API (wallets, codes, passwords, ledgers), riding out its outages.

    A call that finds the sandbox down (connection refused, reset, timeout) is tried again for up to
    ``budget`` seconds. Control calls stand for the customer's phone and the test's ground truth, so a
    repeat is harmless: a second code is just another code, a second password confirm is refused.
    """

    def __init__(self, base_url: str, budget: float = 90) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=10)
        self.budget = budget

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        deadline = time.monotonic() + self.budget
        while True:
            try:
                return self.http.request(method, path, **kwargs)
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("PUT", path, **kwargs)


def _add_fault_stats(report: ChaosReport, stats: dict[str, dict[str, int]]) -> None:
    """Add one sandbox process's fault counters (``GET /sandbox/faults/stats``) to the report."""
    for key, n in stats["decisions"].items():
        if key.startswith("endpoint:"):
            report.provider_calls += n
    for key, n in stats["faulted"].items():
        if key.startswith("endpoint:"):
            report.provider_calls_faulted += n
    for key, n in stats["fired"].items():
        report.faults[key] += n


@contextmanager
def _workdir(keep: bool) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="tillit-chaos-"))
    try:
        yield path
    finally:
        if not keep:
            shutil.rmtree(path, ignore_errors=True)


def run(opts: ChaosOptions) -> ChaosReport:
    """Run the chaos scenario and return the report; never raises for an integrity failure."""
    if opts.profile not in PROFILES:
        raise ValueError(f"unknown profile {opts.profile!r}; choose from {sorted(PROFILES)}")
    report = ChaosReport()
    started = time.monotonic()
    rng = random.Random(opts.seed)
    with _workdir(opts.keep_dir) as work:
        n = rng.randrange(10**9, 10**10)
        accounts = {
            "appid": f"wx{n:016x}",
            "mch_id": str(n),
            "api_key": uuid.UUID(int=rng.getrandbits(128)).hex,
            "app_id": f"2021{n:012d}",
            "pid": f"2088{n:012d}",
        }
        app_keys, sbx_keys = generate_rsa_pair(2048), generate_rsa_pair(2048)
        (work / "sandbox.toml").write_text(
            sandbox_toml(
                opts.speed,
                opts.seed,
                accounts,
                app_keys.public_pem,
                sbx_keys.private_pem,
                sbx_keys.public_pem,
            )
        )
        base_env = {k: v for k, v in os.environ.items() if not k.startswith("TILLIT_")}
        fleet = Fleet(base_env | {"NO_COLOR": "1"}, work)
        sbx_port = _free_port()
        fleet.add(
            "sandbox",
            [
                *_tillit_cmd(),
                "sandbox",
                "--config",
                str(work / "sandbox.toml"),
                "--state",
                str(work / "sandbox-state"),
                "--port",
                str(sbx_port),
                "--seed",
                str(opts.seed),
            ],
        )
        sbx_url = f"http://127.0.0.1:{sbx_port}"
        try:
            wait_http(sbx_url + "/sandbox/health")
            control = Control(sbx_url)
            fault_profile = dict(PROFILES[opts.profile], seed=opts.seed)
            assert control.put("/sandbox/faults", json=fault_profile).status_code == 200
            t0 = time.time()
            sandbox_now = control.get("/sandbox/clock").json()["now"]

            url = opts.database_url or f"sqlite:///{work / 'home' / 'tillit.sqlite'}"
            metrics_token = "chaos-scrape-" + uuid.uuid4().hex  # not from rng: the run stays as seeded
            env = base_env | {
                "TILLIT_HOME": str(work / "home"),
                "TILLIT_DATABASE_URL": url,
                "TILLIT_CLOCK_SPEED": str(opts.speed),
                "TILLIT_CLOCK_ORIGIN": repr(t0),
                "TILLIT_CLOCK_START": sandbox_now,
                "TILLIT_PROVIDER_TIMEOUT_S": "1.0",
                # Four processes share PostgreSQL's 100 connections with the tests around them.
                "TILLIT_DB_POOL_SIZE": "5",
                "TILLIT_WORKER_POLL_S": "0.05",
                "TILLIT_METRICS_TOKEN": metrics_token,
                "NO_COLOR": "1",
            }
            settings = Settings.from_env(env)
            c = build(settings)
            migrate.upgrade(c.db)
            api_ports = [_free_port() for _ in range(opts.api_processes)]
            with c.db.transaction() as conn:
                m = merchants.create_merchant(conn, c.deps, name=f"Chaos {n}")
                s = merchants.create_store(conn, c.deps, merchant_id=m["id"], name="Main")
                t = merchants.create_terminal(conn, c.deps, store_id=s["id"], name="Till")
                _, cashier = keys.create_key(conn, c.deps, role="terminal", name="chaos", terminal_id=t["id"])
                for sku, price in (("SMALL", 1800), ("BIG", 25800)):
                    catalog.create_product(
                        conn,
                        c.deps,
                        merchant_id=m["id"],
                        merchant_currency="CNY",
                        sku=sku,
                        name=sku,
                        price=price,
                    )
                notify = f"http://127.0.0.1:{api_ports[0]}/v1/providers/alipay/notify"
                provider_accounts.set_account(
                    conn,
                    c.deps,
                    m["id"],
                    "wechat",
                    {
                        "appid": accounts["appid"],
                        "mch_id": accounts["mch_id"],
                        "api_key": accounts["api_key"],
                        "base_url": sbx_url,
                        "sign_type": "HMAC-SHA256",
                    },
                )
                provider_accounts.set_account(
                    conn,
                    c.deps,
                    m["id"],
                    "alipay",
                    {
                        "app_id": accounts["app_id"],
                        "app_private_key_pem": app_keys.private_pem,
                        "alipay_public_key_pem": sbx_keys.public_pem,
                        "gateway_url": sbx_url + "/gateway.do",
                        "seller_id": accounts["pid"],
                        "notify_url": notify,
                    },
                )
            merchant_id = m["id"]
            fleet.env = env | {"TILLIT_RUN_WORKER": "0" if opts.workers else "1"}
            for i, port in enumerate(api_ports):
                args = [*_tillit_cmd(), "serve", "--port", str(port), "--no-access-log"]
                if opts.workers:
                    args.append("--no-worker")
                fleet.add(f"api{i}", args)
            for i in range(opts.workers):
                fleet.add(f"worker{i}", [*_tillit_cmd(), "worker"])
            bases = [f"http://127.0.0.1:{p}" for p in api_ports]
            for b in bases:
                wait_http(b + "/healthz")

            stop = threading.Event()
            lock = threading.Lock()
            victims = [name for name in fleet.procs if name != "sandbox"]

            def monkey() -> None:
                mrng = random.Random(opts.seed + 1)
                while not stop.wait(mrng.uniform(*opts.kill_every)):
                    # With kill_provider, the second kill and every fourth after it is a provider outage:
                    # a short run still has one, however few kills it has time for.
                    provider_turn = opts.kill_provider and report.kills % 4 == 1
                    victim = "sandbox" if provider_turn else mrng.choice(victims)
                    if victim == "sandbox":
                        # A provider outage: its counters first (they live in the process), then down a
                        # while, then up on the same state. The calls made between the read and the kill
                        # (milliseconds) are not counted.
                        with contextlib.suppress(httpx.HTTPError, ValueError):
                            stats = control.http.get("/sandbox/faults/stats").json()
                            with lock:
                                _add_fault_stats(report, stats)
                        with fleet.lock:
                            fleet.kill(victim)
                        time.sleep(mrng.uniform(*opts.provider_outage))
                        with fleet.lock:
                            fleet.start(victim)
                        with contextlib.suppress(RuntimeError):
                            wait_http(sbx_url + "/sandbox/health", log=work / "sandbox.log")
                    else:
                        fleet.restart(victim)
                    with lock:
                        report.kills += 1
                        report.kills_by[victim.rstrip("0123456789")] += 1
                    if victim.startswith("api"):
                        # The next kill is counted from when this process serves again: a loaded machine
                        # may take longer to start one than the interval, and a server killed before it
                        # ever answers tests nothing.
                        with contextlib.suppress(RuntimeError):
                            wait_http(bases[int(victim[3:])] + "/healthz", log=work / f"{victim}.log")

            counter = iter(range(opts.checkouts))
            done = [0]

            def cashier_loop(worker_no: int) -> None:
                crng = random.Random(opts.seed * 1000 + worker_no)
                client = Client(bases, cashier, report, lock)
                wallets = {}
                for provider in ("wechat", "alipay"):
                    r = control.post(
                        "/sandbox/wallets",
                        json={
                            "provider": provider,
                            "name": f"w{worker_no}-{provider}",
                            "balance_fen": 10**10,
                        },
                    )
                    wallets[provider] = r.json()["id"]
                while True:
                    with lock:
                        try:
                            next(counter)
                        except StopIteration:
                            return
                    checkout(client, crng, wallets)
                    with lock:
                        done[0] += 1
                        if opts.progress:
                            opts.progress(done[0])

            def checkout(client: Client, crng: random.Random, wallets: dict[str, int]) -> None:
                provider = crng.choice(("wechat", "alipay"))
                wallet = wallets[provider]
                password = crng.random() < opts.password_share
                scenario = "password" if password else "plain"
                if password and crng.random() < opts.cancel_share:
                    scenario = "password_cancel"
                lines = [{"sku": "BIG" if password else "SMALL", "quantity": 1}]
                order = client.call(
                    "POST", "/v1/orders", {"id": uuid.uuid4().hex, "lines": lines}, key=uuid.uuid4().hex
                ).json()
                code = control.post(f"/sandbox/wallets/{wallet}/codes").json()["code"]
                key = uuid.uuid4().hex
                body = {"order_id": order["id"], "payment_code": code}
                if crng.random() < opts.double_scan_share:
                    # Two scans of one order at the same moment (a second till, a double trigger): two keys,
                    # two codes. At most one attempt may be in flight; the verifier checks the money.
                    code2 = control.post(f"/sandbox/wallets/{wallet}/codes").json()["code"]
                    key2 = uuid.uuid4().hex
                    body2 = {"order_id": order["id"], "payment_code": code2}
                    twin = Client(bases, cashier, report, lock)
                    r, r2 = _at_once(
                        partial(client.call, "POST", "/v1/payments", body, key),
                        partial(twin.call, "POST", "/v1/payments", body2, key2),
                    )
                    with lock:
                        report.scenarios[f"double_scan:{_codes(r, r2)}"] += 1
                    if r.status_code not in (201, 202) and r2.status_code in (201, 202):
                        r, key, code = r2, key2, code2
                else:
                    timed_out = crng.random() < opts.client_timeout_share
                    if timed_out:
                        with lock:
                            report.scenarios["client_timeout_resend"] += 1
                    first_timeout = crng.uniform(0.02, 0.3) if timed_out else None
                    r = client.call("POST", "/v1/payments", body, key=key, first_timeout=first_timeout)
                with lock:
                    report.scenarios[f"{provider}:{scenario}"] += 1
                if r.status_code not in (201, 202):
                    with lock:
                        report.outcomes[f"rejected:{r.json()['error']['code']}"] += 1
                    return
                pay = r.json()
                if crng.random() < opts.duplicate_share:
                    # The cashier scans again: the same key replays, a new key is refused while unsettled.
                    again = client.call(
                        "POST",
                        "/v1/payments",
                        {"order_id": order["id"], "payment_code": code},
                        key=key if crng.random() < 0.5 else uuid.uuid4().hex,
                    )
                    with lock:
                        report.scenarios[f"duplicate_scan:{again.status_code}"] += 1
                if password:
                    if crng.random() < opts.late_password_share:
                        # The password comes near the providers' windows (45 s WeChat, Alipay's polls).
                        time.sleep(crng.uniform(38, 52) / opts.speed)
                        with lock:
                            report.scenarios["late_password"] += 1
                    else:
                        time.sleep(crng.uniform(0.05, 0.8))  # the customer reads the screen, then acts
                    if crng.random() < opts.cancel_in_password_share:
                        # The cashier cancels the order during the password step; the customer pays anyway.
                        cancelled = client.call(
                            "POST",
                            f"/v1/orders/{order['id']}/cancel",
                            {"reason": "cashier_cancelled"},
                            key=uuid.uuid4().hex,
                        )
                        with lock:
                            report.scenarios[f"cancel_in_password:{cancelled.status_code}"] += 1
                        scenario = "password"  # and then the customer pays anyway
                    action = "cancel" if scenario == "password_cancel" else "confirm"
                    control.post(f"/sandbox/wallets/{wallet}/{action}", json={"password": "123456"})
                status = pay["status"]
                deadline = time.monotonic() + 30
                while status in IN_FLIGHT and time.monotonic() < deadline:
                    time.sleep(0.1)
                    status = client.call("GET", f"/v1/payments/{pay['id']}").json()["status"]
                with lock:
                    report.outcomes[status] += 1
                if status == "captured" and crng.random() < opts.refund_share:
                    if crng.random() < opts.double_refund_share:
                        # Two full refunds of one payment at the same moment: at most one may return money.
                        twin = Client(bases, cashier, report, lock)
                        full = {"payment_id": pay["id"], "amount": pay["amount"]}
                        answers = _at_once(
                            partial(client.call, "POST", "/v1/refunds", full, uuid.uuid4().hex),
                            partial(twin.call, "POST", "/v1/refunds", full, uuid.uuid4().hex),
                        )
                        with lock:
                            report.scenarios[f"double_refund:{_codes(*answers)}"] += 1
                    else:
                        part = {"payment_id": pay["id"], "amount": 300}
                        refund = client.call("POST", "/v1/refunds", part, key=uuid.uuid4().hex)
                        with lock:
                            report.scenarios[f"refund:{refund.status_code}"] += 1
                if status in ("failed", "reversed"):
                    cash = client.call(
                        "POST",
                        "/v1/payments",
                        {"order_id": order["id"], "method": "cash"},
                        key=uuid.uuid4().hex,
                    )
                    with lock:
                        report.outcomes[f"then_cash:{cash.status_code}"] += 1

            monkey_thread = threading.Thread(target=monkey, daemon=True)
            if opts.kill_every[1] > 0:
                monkey_thread.start()
            threads = [threading.Thread(target=cashier_loop, args=(i,)) for i in range(opts.concurrency)]
            load_started = time.monotonic()
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            report.load_seconds = time.monotonic() - load_started
            stop.set()
            if monkey_thread.is_alive():
                monkey_thread.join(30)
            for name, (_, proc) in list(fleet.procs.items()):
                if proc is None or proc.poll() is not None:
                    fleet.start(name)
            wait_http(sbx_url + "/sandbox/health", log=work / "sandbox.log")
            for i, b in enumerate(bases):
                wait_http(b + "/healthz", log=work / f"api{i}.log")
            report.checkouts = opts.checkouts
            _settle(c, opts.settle_seconds)
            _verify(c, control, merchant_id, report)
            _check_metrics(c, bases, metrics_token, report)
            if opts.inspect is not None:
                opts.inspect(c)
            _add_fault_stats(report, control.get("/sandbox/faults/stats").json())
            c.db.dispose()
        finally:
            fleet.stop_all()
    report.seconds = time.monotonic() - started
    return report


def _metric_samples(text_: str, name: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in text_.splitlines():
        if line.startswith(name + "{"):
            labels, value = line.rsplit(" ", 1)
            out[labels[len(name) :]] = int(float(value))
    return out


def _check_metrics(c: Any, bases: list[str], token: str, report: ChaosReport) -> None:
    """Scrape /metrics from every API process (the scrape token) and compare the payments it shows with
    the database's own count by method, provider and status. A payment could still move between the
    two reads: the database is read before and after the scrape, and a scrape counts only when the two
    reads agree (at most 5 tries each)."""

    def held() -> dict[str, int]:
        with c.db.read() as conn:
            rows = conn.execute(
                select(payments.c.method, payments.c.provider, payments.c.status, func.count()).group_by(
                    payments.c.method, payments.c.provider, payments.c.status
                )
            ).all()
        return {f'{{method="{m}",provider="{p or ""}",status="{st}"}}': int(n) for m, p, st, n in rows}

    with httpx.Client(timeout=30) as client:
        for base in bases:
            for _attempt in range(5):
                before = held()
                r = client.get(base + "/metrics", headers={"Authorization": f"Bearer {token}"})
                after = held()
                if r.status_code != 200:
                    report.metrics_mismatches.append(f"{base}: /metrics answered {r.status_code}")
                    break
                if before != after:
                    time.sleep(0.5)
                    continue
                report.metrics_scrapes += 1
                shown = _metric_samples(r.text, "tillit_payments")
                if shown != after:
                    diff = {k: (shown.get(k), after.get(k)) for k in set(shown) | set(after)}
                    report.metrics_mismatches.append(
                        f"{base}: " + ", ".join(f"{k} {a}!={b}" for k, (a, b) in diff.items() if a != b)
                    )
                break
            else:
                report.metrics_mismatches.append(f"{base}: the database kept moving during 5 scrapes")


def _at_once(*calls: Callable[[], httpx.Response]) -> list[httpx.Response]:
    """Send the calls at the same moment (one thread each); their answers in order; re-raises a failure."""
    answers: list[httpx.Response | BaseException | None] = [None] * len(calls)
    start = threading.Barrier(len(calls))

    def one(i: int) -> None:
        start.wait(10)
        try:
            answers[i] = calls[i]()
        except BaseException as exc:  # handed to the caller below
            answers[i] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(calls))]
    for th in threads:
        th.start()
    for th in threads:
        th.join(300)
    done: list[httpx.Response] = []
    for a in answers:
        if isinstance(a, BaseException):
            raise a
        if a is None:
            raise TimeoutError("a concurrent call did not finish")
        done.append(a)
    return done


def _codes(*answers: httpx.Response) -> str:
    return "+".join(str(code) for code in sorted(a.status_code for a in answers))


def _settle(c: Any, seconds: float) -> None:
    """Wait (bounded) until no attempt or refund is in flight and no recovery job is pending."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with c.db.read() as conn:
            busy = conn.execute(
                select(func.count()).select_from(payments).where(payments.c.status.in_(IN_FLIGHT))
            ).scalar_one()
            busy += conn.execute(
                select(func.count())
                .select_from(refunds)
                .where(refunds.c.status.in_(("pending", "processing")))
            ).scalar_one()
            # Only the jobs that move money: daily and periodic jobs (bills, settlement, alerts, fulfilment
            # timers, re-reviews) are always pending by design, and waiting for them proves nothing.
            busy += conn.execute(
                text(
                    "SELECT COUNT(*) FROM jobs WHERE state = 'pending' AND kind IN"
                    " ('resolve_payment','reverse_payment','confirm_refund','refund_unattached')"
                )
            ).scalar_one()
        if not busy:
            return
        time.sleep(0.5)


def _verify(c: Any, control: Control, merchant_id: str, report: ChaosReport) -> None:
    """Compare Tillit's books with the sandbox's ground truth (every wallet's real debits and refunds)."""
    net_by_trade: Counter[str] = Counter()
    returned_at: dict[str, datetime] = {}  # out_refund_no -> when the provider returned the money
    for wallet in control.get("/sandbox/wallets").json()["wallets"]:
        book = control.get(f"/sandbox/wallets/{wallet['id']}/ledger").json()
        for d in book["debits"]:
            net_by_trade[d["out_trade_no"]] += d["amount_fen"]
            report.wallet_debits += d["amount_fen"]
        for r in book["refunds"]:
            net_by_trade[r["out_trade_no"]] -= r["amount_fen"]
            report.wallet_refunds += r["amount_fen"]
            if r.get("out_refund_no"):
                returned_at[r["out_refund_no"]] = datetime.fromisoformat(r["at"])
    with c.db.read() as conn:
        rows = conn.execute(
            text(
                "SELECT p.id, p.order_id, p.method, p.status, p.amount, p.refunded_amount,"
                " o.status AS order_status, o.total, o.paid_amount, o.refunded_amount AS order_refunded"
                " FROM payments p JOIN orders o ON o.merchant_id = p.merchant_id AND o.id = p.order_id"
                " WHERE p.merchant_id = :m"
            ),
            {"m": merchant_id},
        ).all()
        report.orders = conn.execute(
            text("SELECT COUNT(*) FROM orders WHERE merchant_id = :m"), {"m": merchant_id}
        ).scalar_one()
        report.paid_orders = conn.execute(
            text("SELECT COUNT(*) FROM orders WHERE merchant_id = :m AND status = 'paid'"), {"m": merchant_id}
        ).scalar_one()
        for exc_row in conn.execute(
            select(exceptions.c.kind).where(
                exceptions.c.merchant_id == merchant_id, exceptions.c.status == "open"
            )
        ):
            report.open_exceptions[exc_row.kind] += 1
        report.ledger_violations = [f"{r.name}: {r.violations[:3]}" for r in run_checks(conn) if not r.ok]
        # Refund confirmation: Tillit's clock and the sandbox's share one anchor, so both are provider time.
        for ev in conn.execute(
            select(events.c.entity_id, events.c.at).where(
                events.c.merchant_id == merchant_id,
                events.c.entity == "refund",
                events.c.to_status == "succeeded",
            )
        ):
            at_provider = returned_at.get(str(ev.entity_id))
            if at_provider is not None:
                report.refund_lags.append(max(0.0, (ev.at - at_provider).total_seconds()))
    known = {r.id for r in rows}
    per_order: dict[str, dict[str, int]] = {}
    for r in rows:
        if r.method != "cash":
            report.provider_payments += 1
        if r.status in IN_FLIGHT:
            with c.db.read() as conn:
                job_rows = conn.execute(
                    text(
                        "SELECT kind, state, attempts, due_at, lease_until, last_error FROM jobs"
                        " WHERE payment_id = :p"
                    ),
                    {"p": r.id},
                ).all()
            report.unresolved.append(f"{r.id} ({r.status}); jobs: {[tuple(j) for j in job_rows]}")
        # What the customer may have paid at most: the order's total less what was refunded of it. Not what
        # Tillit booked: an order that booked two captured payments would then look fine.
        o = per_order.setdefault(
            r.order_id,
            {
                # a cancelled order must end with none of the customer's money
                "expected": 0 if r.order_status == "cancelled" else r.total - r.order_refunded,
                "total": r.total,
                "booked": r.paid_amount,
                "actual": 0,
            },
        )
        if r.method == "cash":
            o["actual"] += r.amount - r.refunded_amount if r.status in ("captured", "refunded") else 0
        else:
            net = net_by_trade.get(r.id, 0)
            o["actual"] += net
            booked = r.amount - r.refunded_amount if r.status in ("captured", "refunded") else 0
            if net > booked:
                report.lost.append(f"{r.id}: provider kept {net}, Tillit booked {booked} ({r.status})")
            elif net < booked:
                report.lost.append(f"{r.id}: Tillit booked {booked}, provider holds {net} ({r.status})")
    for trade, net in net_by_trade.items():
        if net and trade not in known:
            report.lost.append(f"{trade}: {net} at the provider, unknown to Tillit")
    for order_id, o in per_order.items():
        if o["actual"] > o["expected"]:
            report.double_charged.append(
                f"{order_id}: customer paid {o['actual']}, the order is worth {o['expected']}"
            )
        elif o["booked"] > o["total"]:
            report.double_charged.append(f"{order_id}: Tillit booked {o['booked']} paid of {o['total']}")


def format_report(report: ChaosReport) -> str:
    return json.dumps(report.as_dict(), indent=2, ensure_ascii=False)


def pg_database(admin_url: str) -> tuple[str, Callable[[], None]]:
    """Create a throwaway PostgreSQL database next to ``admin_url``; returns its URL and a dropper."""
    name = f"tillit_chaos_{uuid.uuid4().hex[:10]}"
    engine = create_engine(normalise_url(admin_url), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(normalise_url(admin_url)).set(database=name).render_as_string(hide_password=False)

    def drop() -> None:
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()

    return url, drop
