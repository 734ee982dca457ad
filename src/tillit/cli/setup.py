"""`tillit init / migrate / serve / check / prune / worker`: install, run and keep a server healthy."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
from datetime import timedelta
from typing import Annotated

import typer
from rich.table import Table

from tillit.access import idempotency, keys
from tillit.adapters.db import migrate as migrations
from tillit.bootstrap import Container, build
from tillit.cli.output import console, exit_on_refusal
from tillit.kernel import check as checks
from tillit.payments import accounts as provider_accounts
from tillit.tools import demo_seed
from tillit.worker import Worker

app = typer.Typer()  # no name: its commands sit at the top of `tillit`


@app.command()
def migrate(
    revision: Annotated[str, typer.Argument(help="Target revision")] = "head",
    down: Annotated[bool, typer.Option("--down", help="Downgrade to REVISION instead")] = False,
) -> None:
    """Create or migrate the database schema."""
    c = build()
    if down:
        migrations.downgrade(c.db, revision if revision != "head" else "base")
    else:
        migrations.upgrade(c.db, revision)
        _seal_legacy(c)
    console.print(f"database at revision [bold]{migrations.current_revision(c.db)}[/bold] ({c.db.dialect})")


def _seal_legacy(c: Container) -> None:
    """Seal provider secrets stored in plain text by a version before encryption (docs/security.md)."""
    assert c.deps.secrets is not None
    with exit_on_refusal(), c.db.transaction() as conn:
        sealed = provider_accounts.seal_legacy(conn, c.deps.secrets)
    if sealed:
        console.print(f"encrypted the secrets of {sealed} provider account(s) stored in plain text")


@app.command()
def init(
    demo_data: Annotated[
        bool, typer.Option("--demo", help="Seed demo data and print fresh demo keys")
    ] = False,
) -> None:
    """Create/migrate the database; create an admin key the first time and print it once."""
    c = build()
    migrations.upgrade(c.db)
    assert c.deps.secrets is not None
    if not c.deps.secrets.has_key():  # a fresh install: the keyring file, mode 0600
        c.deps.secrets.create_key()
    _seal_legacy(c)
    with c.db.transaction() as conn:
        if demo_data:
            seeded = demo_seed.seed(conn, c.deps)
            console.print(
                "[bold green]Demo data ready.[/bold green] Keys for this run (older demo keys revoked):"
            )
            for name in ("admin_key", "merchant_key", "terminal_key"):
                console.print(f"  {name:13} [bold]{seeded[name]}[/bold]")
            console.print(f"  merchant_id   {seeded['merchant_id']}\n  store_id      {seeded['store_id']}")
            return
        if any(k["role"] == "admin" and k["revoked_at"] is None for k in keys.list_keys(conn)):
            console.print("Already initialised. Create more keys with `tillit keys create`.")
            return
        _, secret = keys.create_key(conn, c.deps, role="admin", name="initial admin")
    console.print("Admin key (shown once, store it safely):")
    console.print(f"[bold]{secret}[/bold]")


@app.command()
def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: Annotated[int, typer.Option(help="Processes (use >1 only with PostgreSQL)")] = 1,
    access_log: bool = True,
    worker: Annotated[
        bool, typer.Option(help="Run the resolver in this process (else `tillit worker`)")
    ] = True,
) -> None:
    """Serve the REST API, with the payment resolver running in-process by default."""
    import uvicorn  # lazy for start-up time: only `serve` needs the web server

    c = build()
    if workers > 1 and c.settings.is_sqlite:
        console.print("[red]Several worker processes need PostgreSQL (TILLIT_DATABASE_URL).[/red]")
        raise typer.Exit(2)
    if migrations.current_revision(c.db) != migrations.head_revision():
        console.print("[red]The database is not at the latest schema: run `tillit migrate` first.[/red]")
        raise typer.Exit(2)
    _seal_legacy(c)
    c.db.dispose()
    os.environ["TILLIT_RUN_WORKER"] = "1" if worker else "0"
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # monitoring: the processes share their /metrics counters through files in a fresh directory.
        shared = c.settings.home / "prometheus"
        shutil.rmtree(shared, ignore_errors=True)
        shared.mkdir(parents=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(shared)
    uvicorn.run(
        "tillit.api.asgi:create",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        access_log=access_log,
        timeout_graceful_shutdown=10,
    )


@app.command()
def check(output: Annotated[str, typer.Option("--format", help="table or json")] = "table") -> None:
    """Prove the books are consistent; exit 1 on any violation."""
    c = build()
    with c.db.read() as conn:
        results = checks.run_checks(conn)
    failed = [r for r in results if not r.ok]
    if output == "json":
        print(
            json.dumps(
                [{"check": r.name, "examined": r.examined, "violations": r.violations} for r in results],
                default=str,
            )
        )
    else:
        table = Table(title="tillit check")
        for col in ("check", "rule", "examined", "violations"):
            table.add_column(col)
        for r in results:
            table.add_row(
                r.name,
                r.description,
                str(r.examined),
                "[green]0[/green]" if r.ok else f"[red]{len(r.violations)}[/red]",
            )
        console.print(table)
        for r in failed:
            console.print(f"[red]{r.name}[/red]: {r.violations[:10]}")
    raise typer.Exit(1 if failed else 0)


@app.command()
def prune(
    hours: Annotated[int, typer.Option(help="Keep idempotency keys this many hours (min 24)")] = 24,
) -> None:
    """Delete idempotency keys past their retention."""
    c = build()
    with c.db.transaction() as conn:
        removed = idempotency.prune(conn, c.deps.clock.now(), timedelta(hours=max(hours, 24)))
    console.print(f"pruned {removed} idempotency keys older than {max(hours, 24)} h")


@app.command("worker")
def worker_cmd() -> None:
    """Run the payment resolver (recovery jobs) until interrupted; any number may run on PostgreSQL."""
    from tillit.monitoring import logs  # lazy: only the worker process configures its logs here

    logs.configure()
    c = build()
    assert c.engine is not None
    loop = Worker(
        c.db, c.deps, c.engine, c.settings.worker_poll_s, outbox=c.outbox, threads=c.settings.worker_threads
    )
    signal.signal(signal.SIGTERM, lambda *_: loop.stop(timeout=0))
    console.print(f"worker {loop.name} running (Ctrl-C to stop)")
    with contextlib.suppress(KeyboardInterrupt):
        loop.run_forever()
