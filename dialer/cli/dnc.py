"""`dialer dnc`: the do-not-call list."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from dialer import dnc as dnc_service
from dialer.cli.common import CliError, JsonOpt, console, emit_json, fail, session

app = typer.Typer(help="The do-not-call list.", no_args_is_help=True)


def _normalise_all(numbers: list[str], region: str) -> list[str]:
    from dialer.phones import normalise

    out = []
    for raw in numbers:
        n = normalise(raw, region)
        if n.e164 is None:
            raise CliError(f"{raw!r} is not a phone number we can list ({n.reason}: {n.message})")
        out.append(n.e164)
    return out


@app.command("add")
def dnc_add(
    numbers: Annotated[list[str], typer.Argument(metavar="NUMBER...")],
    reason: Annotated[str | None, typer.Option(help="Why (kept with the number).")] = None,
    region: Annotated[str, typer.Option(help="Region for national numbers.")] = "GB",
) -> None:
    """Add numbers to the do-not-call list."""
    with session() as s:
        added = dnc_service.add_numbers(session=s, numbers=_normalise_all(numbers, region), reason=reason)
    console.print(f"{added} number(s) added, {len(numbers) - added} already listed")


@app.command("remove")
def dnc_remove(
    numbers: Annotated[list[str], typer.Argument(metavar="NUMBER...")],
    region: Annotated[str, typer.Option(help="Region for national numbers.")] = "GB",
) -> None:
    """Remove numbers from the do-not-call list."""
    with session() as s:
        removed = dnc_service.remove_numbers(session=s, numbers=_normalise_all(numbers, region))
    console.print(f"{removed} number(s) removed")


@app.command("import")
def dnc_import(
    file: Annotated[Path, typer.Argument(metavar="FILE")],
    phone_column: Annotated[str | None, typer.Option(help="The column holding the number.")] = None,
    region: Annotated[str, typer.Option(help="Region for national numbers.")] = "GB",
    encoding: Annotated[str | None, typer.Option(help="Text encoding of a CSV (default: detected).")] = None,
    sheet: Annotated[str | None, typer.Option(help="XLSX sheet to read (default: the first).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Add every number of a CSV or XLSX file (or a bare list) to the do-not-call list."""
    from dialer.importer import ImportFailed, read_numbers
    from dialer.importing.display import source_line, summary_table

    try:
        rows = read_numbers(path=file, phone_column=phone_column, region=region, encoding=encoding, sheet=sheet)
    except ImportFailed as exc:
        fail(str(exc))
    added = 0
    with session() as s:
        # In slices: one INSERT per slice keeps a large list's statements small.
        for start in range(0, len(rows.valid), 10_000):
            batch = rows.valid[start : start + 10_000]
            added += dnc_service.add_numbers(session=s, numbers=batch, reason=f"imported from {file.name}")
    data = {
        "filename": file.name,
        "total_rows": rows.total,
        "valid": len(rows.valid),
        "added": added,
        "already_listed": len(rows.valid) - added,
        "duplicates": rows.duplicates,
        "rejected": rows.rejected,
        "rejects_by_reason": rows.rejects_by_reason,
        "phone_column": rows.phone_column,
        "source": rows.source,
    }
    if as_json:
        emit_json(data)
    else:
        console.print(summary_table(f"Do-not-call import: {file.name}", data, kept="added"))
        console.print(source_line(data), highlight=False)


@app.command("list")
def dnc_list(as_json: JsonOpt = False) -> None:
    """Show the do-not-call list."""
    with session() as s:
        rows = [
            {"phone": n.phone_e164, "reason": n.reason, "added_at": n.added_at.isoformat()}
            for n in dnc_service.list_numbers(session=s)
        ]
    if as_json:
        emit_json(rows)
        return
    table = Table(title=f"Do not call ({len(rows)})")
    for col in ("phone", "reason", "added"):
        table.add_column(col)
    for r in rows:
        table.add_row(str(r["phone"]), str(r["reason"] or ""), str(r["added_at"])[:19])
    console.print(table)
