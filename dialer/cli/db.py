"""`dialer db`: the schema, owned by Alembic."""

from __future__ import annotations

from pathlib import Path

import typer

from dialer.cli.common import console

app = typer.Typer(help="Database schema.", no_args_is_help=True)


@app.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the schema to the newest revision (Alembic)."""
    upgrade_schema()
    console.print("schema is up to date")


def upgrade_schema() -> None:
    """Run the Alembic migrations up to head."""
    from alembic import command
    from alembic.config import Config

    root = Path(__file__).resolve().parents[2]
    cfg = Config(str(root / "alembic.ini"))
    cfg.set_main_option("script_location", str(root / "migrations"))
    command.upgrade(cfg, "head")


# --- campaigns ------------------------------------------------------------------------------
