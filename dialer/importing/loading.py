"""COPY of screened leads into `leads`, one batch in flight while the next batch is screened.

The batches go straight into `leads` (no staging table, no INSERT ... SELECT, no ON CONFLICT):
the importer holds the campaign's import lock and has already removed every duplicate, so the
only work left to Postgres is the rows themselves, their indexes and the statement triggers.
Each batch is sorted by number, so the phone index is filled in order rather than at random.

A row sends only what differs from the column defaults (status pending, no attempts, priority 0,
next_attempt_at now()), so there are three column lists: PLAIN_COLUMNS for most rows,
EXTRA_COLUMNS for a row with a priority or an agent, TIMED_COLUMNS for a callback row (due at its
callback time). An import's custom fields travel as one text[] per row (`custom_values`) against
the import job's custom_keys, not as a JSON object repeating every header on every row.

A COPY runs on a worker thread with the session's own connection; the importer only uses that
connection again after `wait()`, so the two never overlap.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

PLAIN_COLUMNS = ("campaign_id", "import_job_id", "source_row", "phone_e164", "timezones")
EXTRA_COLUMNS = ("priority", "agent_id")
TIMED_COLUMNS = ("priority", "next_attempt_at", "callback_at", "agent_id")
_BLOCK = 1 << 20


def copy_text(
    *,
    prefix: str,
    columns: Sequence[Sequence[str]],
    customs: Sequence[Sequence[str]],
    tails: Sequence[str] | None = None,
) -> str:
    """Return COPY text rows: `prefix`, the columns (the second prefixed by '+'), the custom cells as one text[], the tails.

    Built column by column: every piece of every row goes into one list by slice assignment
    and the list is joined once, so no Python code runs per row.
    """
    n = len(columns[0])
    slots: list[str | Sequence[str]] = [prefix]
    for c, column in enumerate(columns):
        if c:
            slots.append("\t+" if c == 1 else "\t")
        slots.append(column)
    for c, cells in enumerate(customs):
        slots.append('\t{"' if c == 0 else '","')
        slots.append(cells)
    if customs:
        slots.append('"}')
    if tails is not None:
        slots.append(tails)
    slots.append("\n")
    merged: list[str | Sequence[str]] = []
    for slot in slots:
        if isinstance(slot, str) and merged and isinstance(merged[-1], str):
            merged[-1] += slot
        else:
            merged.append(slot)
    width = len(merged)
    pieces: list[str] = [""] * (n * width)
    for j, slot in enumerate(merged):
        pieces[j::width] = [slot] * n if isinstance(slot, str) else slot
    return "".join(pieces)


class LeadLoader:
    """Send COPY batches on a background thread; `wait()` for the one in flight (and its error)."""

    def __init__(self, connection: Any, *, custom: bool) -> None:
        self._connection = connection
        base = (*PLAIN_COLUMNS, "custom_values") if custom else PLAIN_COLUMNS
        self._statements = tuple(
            f"COPY leads ({', '.join(columns)}) FROM STDIN"
            for columns in (base, (*base, *EXTRA_COLUMNS), (*base, *TIMED_COLUMNS))
        )
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lead-copy")
        self._pending: Future[None] | None = None

    def send(self, plain: str, extra: str, timed: str) -> None:
        """Start copying one batch (COPY text of the plain, extra and timed rows) after the last."""
        self.wait()
        if plain or extra or timed:
            self._pending = self._pool.submit(self._copy, plain, extra, timed)

    def wait(self) -> None:
        """Block until the batch in flight is stored; re-raise its error."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def close(self) -> None:
        """Let a batch in flight finish and stop the thread; on the normal path wait() came first.

        Reached with a batch still in flight only when the import is already failing, so that
        batch's own error is dropped rather than raised over the one that stopped the import.
        """
        pending, self._pending = self._pending, None
        try:
            if pending is not None:
                pending.exception()
        finally:
            self._pool.shutdown(wait=True)

    def _copy(self, *texts: str) -> None:
        with self._connection.cursor() as cur:
            for statement, text in zip(self._statements, texts, strict=True):
                if not text:
                    continue
                data = text.encode()
                with cur.copy(statement) as copy:
                    view = memoryview(data)
                    for start in range(0, len(view), _BLOCK):
                        copy.write(view[start : start + _BLOCK])
