"""What every `tillit` command shares: the console it prints to and how a refused use case ends."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console

from tillit.domain.errors import DomainError

console = Console()


@contextmanager
def exit_on_refusal() -> Iterator[None]:
    """A DomainError raised inside prints ``code: message`` and ends the command with exit code 2."""
    try:
        yield
    except DomainError as exc:
        console.print(f"[red]{exc.code}[/red]: {exc.message}")
        raise typer.Exit(2) from None
