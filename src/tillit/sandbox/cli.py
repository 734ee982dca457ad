"""`tillit sandbox` commands: serve (the default) and ``init-config``."""

from __future__ import annotations

from pathlib import Path

import typer

from tillit.sandbox.config import ConfigError, example_config_text, load_config

app = typer.Typer(help="Fault-injecting WeChat Pay / Alipay emulator.", invoke_without_command=True)


@app.callback()
def serve(
    ctx: typer.Context,
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8700, help="Port to listen on."),
    config: Path = typer.Option(Path("sandbox.toml"), help="Sandbox TOML config (see init-config)."),
    state: Path = typer.Option(Path("sandbox-state"), help="Directory for the durable state."),
    seed: int | None = typer.Option(None, help="Fault RNG seed (default: config, else random)."),
) -> None:
    """Serve the sandbox (WeChat Pay v2 endpoints, Alipay /gateway.do, control API /sandbox/)."""
    if ctx.invoked_subcommand is not None:
        return
    import uvicorn

    from tillit.sandbox.app import create_app

    try:
        cfg = load_config(config)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(f"Tillit sandbox on http://{host}:{port}/  (customer page: http://{host}:{port}/sandbox/)")
    uvicorn.run(create_app(cfg, state, seed=seed), host=host, port=port, log_level="info")


@app.command("init-config")
def init_config(
    path: Path = typer.Argument(Path("sandbox.toml"), help="Where to write the config."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing file."),
) -> None:
    """Write a working example config with freshly generated keys."""
    if path.exists() and not force:
        typer.echo(f"error: {path} exists (use --force to overwrite)", err=True)
        raise typer.Exit(1)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(example_config_text(), encoding="utf-8")
    path.chmod(0o600)  # it holds private keys and the WeChat API key
    typer.echo(f"wrote {path}")
