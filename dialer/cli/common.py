"""Shared pieces of the command line: consoles, one-line errors, sessions, JSON output."""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console

from dialer.policy import PolicyError
from dialer.states import IllegalTransition

console = Console()
err = Console(stderr=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document and nothing else.")]


class CliError(Exception):
    """An error the user can act on: printed as one line, exit code 1."""


def fail(message: str) -> NoReturn:
    """Print a one-line error and exit non-zero."""
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


@contextmanager
def session() -> Iterator[Any]:
    """Open a committed session; known domain errors become one-line CLI errors."""
    from dialer.campaigns import CampaignNotFound
    from dialer.db import session_scope
    from dialer.leads import LeadNotFound

    try:
        with session_scope() as s:
            yield s
    except (CampaignNotFound, LeadNotFound, PolicyError, IllegalTransition, CliError, ValueError) as exc:
        fail(str(exc))


def emit_json(data: Any) -> None:
    """Write one JSON document to stdout."""
    sys.stdout.write(json.dumps(data, default=str, indent=2) + "\n")


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# --- db -------------------------------------------------------------------------------------
