"""`tillit chaos / till / demo`: the launchers (the sandbox's own commands live in tillit.sandbox.cli)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import Progress
from rich.table import Table

from tillit.cli.output import console
from tillit.tools import chaos as chaos_run

app = typer.Typer()  # no name: its commands sit at the top of `tillit`


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
    kill_provider: Annotated[
        bool, typer.Option("--kill-provider", help="Kill the sandbox too (provider outages of 1-4 s)")
    ] = False,
) -> None:
    """Checkouts against a faulty sandbox while servers and workers are killed; prove nothing was lost."""
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
                    kill_provider=kill_provider and not no_kills,
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
        "kills_by",
        "provider_calls",
        "provider_calls_faulted",
        "faulted_share",
        "resend_wait_p99_s",
        "refund_confirmation_p99_s",
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


@app.command()
def till(
    server: Annotated[str, typer.Option(help="The Tillit server, e.g. http://127.0.0.1:8000")],
    key: Annotated[str, typer.Option(help="This till's terminal API key", envvar="TILLIT_TILL_KEY")],
    port: Annotated[int, typer.Option(help="Port of the cashier page (127.0.0.1 only)")] = 8600,
    home: Annotated[str, typer.Option(help="Where the journal and printed receipts live")] = "./var/till",
    shop: Annotated[str, typer.Option(help="Name printed on receipts")] = "Tillit",
) -> None:
    """Run the cashier station: local journal, sync to the server, cashier page on 127.0.0.1."""
    from tillit.till.runner import run_till  # lazy for start-up time: the till's web app is ~1 s to import

    run_till(server=server, key=key, port=port, home=Path(home), shop=shop)


@app.command("demo")
def demo_cmd(
    api_port: int = 8000,
    sandbox_port: int = 8700,
    till_port: int = 8600,
    mail_port: Annotated[int, typer.Option(help="Port of the demo's local SMTP mailbox")] = 8025,
) -> None:
    """Server, payment sandbox and one till on embedded SQLite with demo data; walks a delivery order
    from paid to confirmed (reminder and receipt mailed to a local mailbox, receipt printed as ESC/POS)
    and prints the URLs."""
    from tillit.tools.demo import run_demo  # lazy for start-up time: the walk loads the API app

    run_demo(
        api_port=api_port,
        sandbox_port=sandbox_port,
        till_port=till_port,
        mail_port=mail_port,
        console=console,
    )


@app.command("escpos-decode")
def escpos_decode(
    path: Annotated[Path, typer.Argument(help="A file of ESC/POS bytes (a file printer's output)")],
) -> None:
    """Print what an ESC/POS job prints: its text (GBK decoded), its QR codes' data and whether it cuts."""
    from tillit.till.printer import decode_escpos  # lazy for start-up time, like `tillit till`

    job = decode_escpos(path.read_bytes())
    console.print(job.text.rstrip("\n"), markup=False, highlight=False, soft_wrap=True)
    for data in job.qr:
        console.print(f"[QR] {data}", markup=False, highlight=False, soft_wrap=True)
    console.print("[cut]" if job.cut else "[no cut]", markup=False, highlight=False, soft_wrap=True)
