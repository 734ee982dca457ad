"""The `tillit` command line: a thin layer over the services."""

from __future__ import annotations

import contextlib
import json
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy import select

from tillit.access import idempotency, keys
from tillit.adapters.db import migrate as migrations
from tillit.adapters.db.schema import api_keys
from tillit.bootstrap import build
from tillit.kernel import check as checks
from tillit.sandbox.cli import app as sandbox_app
from tillit.tools import demo_seed

app = typer.Typer(
    help="Tillit: a point of sale that never loses, leaves unknown or double-charges a sale.",
    no_args_is_help=True,
)
keys_app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
providers_app = typer.Typer(help="Merchants' WeChat Pay and Alipay accounts.", no_args_is_help=True)
app.add_typer(providers_app, name="providers")
secrets_app = typer.Typer(help="The keys that seal provider secrets at rest.", no_args_is_help=True)
app.add_typer(secrets_app, name="secrets")
app.add_typer(sandbox_app, name="sandbox")
console = Console()


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


def _seal_legacy(c: Any) -> None:
    """Seal provider secrets stored in plain text by a version before encryption (docs/security.md)."""
    from tillit.domain.errors import DomainError
    from tillit.payments import accounts as provider_accounts

    assert c.deps.secrets is not None
    try:
        with c.db.transaction() as conn:
            sealed = provider_accounts.seal_legacy(conn, c.deps.secrets)
    except DomainError as exc:
        console.print(f"[red]{exc.code}[/red]: {exc.message}")
        raise typer.Exit(2) from None
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
        has_admin = conn.execute(
            select(api_keys.c.id).where(api_keys.c.role == "admin", api_keys.c.revoked_at.is_(None))
        ).first()
        if has_admin:
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
    import os

    import uvicorn

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
    import signal

    from tillit.worker import Worker

    c = build()
    assert c.engine is not None
    loop = Worker(c.db, c.deps, c.engine, c.settings.worker_poll_s)
    signal.signal(signal.SIGTERM, lambda *_: loop.stop(timeout=0))
    console.print(f"worker {loop.name} running (Ctrl-C to stop)")
    with contextlib.suppress(KeyboardInterrupt):
        loop.run_forever()


@app.command("exceptions")
def exceptions_cmd(
    status: Annotated[str, typer.Option(help="open or resolved")] = "open",
    merchant_id: str | None = None,
    output: Annotated[str, typer.Option("--format", help="table or json")] = "table",
) -> None:
    """List what needs attention: payments the engine could not settle, with the recommended action."""
    from tillit.exceptions import cases as exc_svc

    c = build()
    with c.db.read() as conn:
        rows = exc_svc.list_exceptions(conn, merchant_id, status, 200)
    if output == "json":
        print(json.dumps(rows, ensure_ascii=False))
        return
    table = Table(title=f"{len(rows)} {status} exceptions")
    for col in ("id", "kind", "payment_id", "amount", "created_at", "recommended_action"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(
            r["id"],
            r["kind"],
            r["payment_id"] or "",
            str(r["amount"] or ""),
            r["created_at"],
            r["recommended_action"],
        )
    console.print(table)


@app.command()
def reconcile(
    file: Annotated[Path, typer.Argument(help="The bill: WeChat CSV, Alipay ZIP, or a generic CSV")],
    provider: Annotated[str, typer.Option("--provider", help="The file's format: wechat, alipay or csv")],
    mapping: Annotated[
        Path | None, typer.Option("--mapping", help="Column mapping (TOML or JSON) for --provider csv")
    ] = None,
    bill_date: Annotated[
        str | None, typer.Option("--date", help="The bill's day (YYYY-MM-DD); read from the file if omitted")
    ] = None,
    output: Annotated[str, typer.Option("--format", help="table, json or csv")] = "table",
    merchant_id: Annotated[
        str | None,
        typer.Option("--merchant", help="Whose bill it is (default: the merchant owning the bill's account)"),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Match and print; store nothing")] = False,
) -> None:
    """Reconcile a provider bill: exit 0 when everything matched, 3 when discrepancies remain, 2 on a
    bad file. See docs/reconciliation.md."""
    from tillit.cli.reconciliation import run_reconcile

    code = run_reconcile(
        file=file,
        fmt=provider,
        mapping=mapping,
        bill_date=bill_date,
        output=output,
        merchant_id=merchant_id,
        dry_run=dry_run,
    )
    raise typer.Exit(code)


@app.command()
def chaos(
    checkouts: Annotated[int, typer.Option(help="How many checkouts")] = 10_000,
    seed: Annotated[int, typer.Option(help="Seed for faults, scenarios and kills")] = 1,
    profile: Annotated[str, typer.Option(help="Fault profile: default, calm or brutal")] = "default",
    database: Annotated[
        str, typer.Option(help="sqlite, or a PostgreSQL admin URL to create a database under")
    ] = ("sqlite"),
    api_processes: Annotated[int, typer.Option(help="API processes (PostgreSQL only for >1)")] = 1,
    workers: Annotated[int, typer.Option(help="Separate worker processes (0: resolver inside the API)")] = 0,
    concurrency: int = 8,
    speed: Annotated[float, typer.Option(help="Provider seconds per real second")] = 20.0,
    no_kills: Annotated[bool, typer.Option("--no-kills", help="Do not kill processes")] = False,
) -> None:
    """Checkouts against a faulty sandbox while servers and workers are killed; prove nothing was lost."""
    from rich.progress import Progress

    from tillit.tools import chaos as chaos_run

    drop = None
    url = None
    if database != "sqlite":
        url, drop = chaos_run.pg_database(database)
    try:
        with Progress(console=console) as bar:
            task = bar.add_task("checkouts", total=checkouts)
            report = chaos_run.run(
                chaos_run.ChaosOptions(
                    checkouts=checkouts,
                    seed=seed,
                    profile=profile,
                    database_url=url,
                    api_processes=api_processes,
                    workers=workers,
                    concurrency=concurrency,
                    speed=speed,
                    kill_every=(0.0, 0.0) if no_kills else (3.0, 8.0),
                    progress=lambda n: bar.update(task, completed=n),
                )
            )
    finally:
        if drop is not None:
            drop()
    summary = Table(title=f"tillit chaos: {checkouts} checkouts, seed {seed}, profile {profile}")
    summary.add_column("figure")
    summary.add_column("value", justify="right")
    data = report.as_dict()
    for name in (
        "lost",
        "double_charged",
        "unresolved",
        "ledger_violations",
        "orders",
        "paid_orders",
        "provider_payments",
        "kills",
        "client_retries",
        "wallet_debited_fen",
        "wallet_refunded_fen",
        "seconds",
    ):
        summary.add_row(name, str(data[name]))
    console.print(summary)
    console.print("outcomes:", dict(report.outcomes))
    console.print("scenarios:", dict(report.scenarios))
    console.print("faults injected:", dict(report.faults))
    console.print("open exceptions:", dict(report.open_exceptions))
    for label, items in (
        ("LOST", report.lost),
        ("DOUBLE", report.double_charged),
        ("UNRESOLVED", report.unresolved),
        ("LEDGER", report.ledger_violations),
    ):
        for item in items[:20]:
            console.print(f"[red]{label}[/red] {item}")
    console.print(
        "[green]OK: nothing lost, nothing charged twice, nothing unknown[/green]"
        if report.ok
        else "[red]FAILED[/red]"
    )
    raise typer.Exit(0 if report.ok else 1)


@providers_app.command("connect-sandbox")
def providers_connect_sandbox(
    merchant_id: Annotated[str, typer.Option(help="The merchant whose accounts point at the sandbox")],
    config: Annotated[str, typer.Option(help="The sandbox's TOML config")] = "sandbox.toml",
    sandbox_url: Annotated[str, typer.Option(help="Where the sandbox listens")] = "http://127.0.0.1:8700",
    notify_base: Annotated[str, typer.Option(help="This server's base URL, for Alipay notifications")] = (
        "http://127.0.0.1:8000"
    ),
) -> None:
    """Point a merchant's WeChat and Alipay accounts at a `tillit sandbox` (first account of each)."""
    import tomllib

    from tillit.domain.errors import DomainError
    from tillit.payments import accounts as provider_accounts

    raw = tomllib.loads(Path(config).read_text(encoding="utf-8"))
    wechat, alipay = raw["wechat"][0], raw["alipay"][0]
    settings = {
        "wechat": {
            "appid": wechat["appid"],
            "mch_id": wechat["mch_id"],
            "api_key": wechat["api_key"],
            "base_url": sandbox_url,
            "sign_type": "HMAC-SHA256",
        },
        "alipay": {
            "app_id": alipay["app_id"],
            "app_private_key_pem": alipay["app_private_key"],
            "alipay_public_key_pem": alipay["sandbox_public_key"],
            "gateway_url": sandbox_url + "/gateway.do",
            "seller_id": alipay["pid"],
            "notify_url": notify_base.rstrip("/") + "/v1/providers/alipay/notify",
        },
    }
    c = build()
    try:
        with c.db.transaction() as conn:
            for provider, values in settings.items():
                provider_accounts.set_account(conn, c.deps, merchant_id, provider, values)
    except DomainError as exc:
        console.print(f"[red]{exc.code}[/red]: {exc.message}")
        raise typer.Exit(2) from None
    console.print(
        f"merchant {merchant_id}: wechat mch_id {wechat['mch_id']} and alipay app_id {alipay['app_id']} "
        f"now use the sandbox at {sandbox_url}"
    )


@app.command()
def till(
    server: Annotated[str, typer.Option(help="The Tillit server, e.g. http://127.0.0.1:8000")],
    key: Annotated[str, typer.Option(help="This till's terminal API key", envvar="TILLIT_TILL_KEY")],
    port: Annotated[int, typer.Option(help="Port of the cashier page (127.0.0.1 only)")] = 8600,
    home: Annotated[str, typer.Option(help="Where the journal and printed receipts live")] = "./var/till",
    shop: Annotated[str, typer.Option(help="Name printed on receipts")] = "Tillit",
) -> None:
    """Run the cashier station: local journal, sync to the server, cashier page on 127.0.0.1."""
    from tillit.till.runner import run_till

    run_till(server=server, key=key, port=port, home=Path(home), shop=shop)


@app.command("demo")
def demo_cmd(
    api_port: int = 8000,
    sandbox_port: int = 8700,
    till_port: int = 8600,
) -> None:
    """Server, payment sandbox and one till on embedded SQLite with demo data; prints the URLs."""
    from tillit.tools.demo import run_demo

    run_demo(api_port=api_port, sandbox_port=sandbox_port, till_port=till_port, console=console)


@keys_app.command("create")
def keys_create(
    role: Annotated[str, typer.Option(help="admin, merchant or terminal")],
    name: Annotated[str, typer.Option(help="What the key is for")] = "cli",
    merchant_id: str | None = None,
    terminal_id: str | None = None,
) -> None:
    """Create an API key; the secret is printed once."""
    from tillit.domain.errors import DomainError

    c = build()
    try:
        with c.db.transaction() as conn:
            record, secret = keys.create_key(
                conn, c.deps, role=role, name=name, merchant_id=merchant_id, terminal_id=terminal_id
            )
    except DomainError as exc:
        console.print(f"[red]{exc.code}[/red]: {exc.message}")
        raise typer.Exit(2) from None
    console.print(f"{record['role']} key {record['id']}:")
    console.print(f"[bold]{secret}[/bold]")


@keys_app.command("list")
def keys_list(merchant_id: str | None = None) -> None:
    """List keys (prefixes only; secrets are never stored)."""
    c = build()
    with c.db.read() as conn:
        rows = keys.list_keys(conn, merchant_id)
    table = Table()
    for col in ("id", "prefix", "role", "name", "merchant_id", "created_at", "revoked_at"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            *(
                str(r[k] or "")
                for k in ("id", "prefix", "role", "name", "merchant_id", "created_at", "revoked_at")
            )
        )
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(key_id: str) -> None:
    """Revoke a key at once."""
    from tillit.domain.errors import DomainError

    c = build()
    try:
        with c.db.transaction() as conn:
            keys.revoke_key(conn, c.deps, key_id)
    except DomainError as exc:
        console.print(f"[red]{exc.code}[/red]: {exc.message}")
        raise typer.Exit(2) from None
    console.print(f"revoked {key_id}")


@secrets_app.command("rotate")
def secrets_rotate() -> None:
    """Make a new current key, re-encrypt every stored secret under it, retire keys no longer used."""
    from tillit.domain.errors import DomainError
    from tillit.payments import accounts as provider_accounts

    c = build()
    box = c.deps.secrets
    assert box is not None
    try:
        with c.db.read() as conn:
            provider_accounts.check_openable(conn, box)  # refuse before changing the keyring
        new = box.add_current_key()
        with c.db.transaction() as conn:  # all rows or none: an old key stays until this commits
            count = provider_accounts.reseal_all(conn, box)
        with c.db.read() as conn:
            retired = box.retire_keys(provider_accounts.key_ids_in_use(conn, box))
    except DomainError as exc:
        console.print(f"[red]{exc.code}[/red]: {exc.message}")
        raise typer.Exit(2) from None
    console.print(
        f"current key {new}; re-encrypted {count} provider account(s); "
        f"retired {', '.join(retired) if retired else 'no keys'}"
    )


def main() -> None:
    app()


if __name__ == "__main__":
    main()
