"""The do-not-call list: numbers nobody may ring, checked at import and again at every dial."""

from __future__ import annotations

from sqlalchemy import bindparam, delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from dialer.models import DncNumber, table_of


def add_numbers(*, session: Session, numbers: list[str], reason: str | None = None) -> int:
    """Add E.164 numbers to the DNC list; return how many were new."""
    if not numbers:
        return 0
    stmt = (
        insert(DncNumber)
        .values([{"phone_e164": n, "reason": reason} for n in dict.fromkeys(numbers)])
        .on_conflict_do_nothing()
        .returning(DncNumber.phone_e164)
    )
    return len(session.execute(stmt).all())


def remove_numbers(*, session: Session, numbers: list[str]) -> int:
    """Remove numbers from the DNC list; return how many were listed."""
    result = session.execute(delete(DncNumber).where(DncNumber.phone_e164.in_(numbers)))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


_DNC = table_of(DncNumber)
# Built once: the pacer and every dial ask it.
_LISTED = select(_DNC.c.phone_e164).where(_DNC.c.phone_e164.in_(bindparam("numbers", expanding=True)))


def listed(*, session: Session, numbers: list[str]) -> set[str]:
    """Return which of `numbers` are on the DNC list."""
    if not numbers:
        return set()
    return set(session.scalars(_LISTED, {"numbers": numbers}))


def list_numbers(*, session: Session) -> list[DncNumber]:
    """Return the whole DNC list, oldest first."""
    return list(session.scalars(select(DncNumber).order_by(DncNumber.added_at, DncNumber.phone_e164)))
