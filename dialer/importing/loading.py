"""COPY of screened leads into `leads`, one batch in flight while the next batch is screened.

The batches go straight into `leads` (no staging table, no INSERT ... SELECT, no ON CONFLICT):
the importer holds the campaign's import lock and has already removed every duplicate, so the
only work left to Postgres is the rows themselves, their indexes and foreign keys. Each batch is
sorted by number, so the two phone indexes are filled in order rather than at random.

A COPY runs on a worker thread with the session's own connection; the importer only uses that
connection again after `wait()`, so the two never overlap.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

# Rows without a callback: next_attempt_at takes its default, now() (the transaction's time).
PLAIN_COLUMNS = (
    "campaign_id",
    "import_job_id",
    "source_row",
    "phone_e164",
    "timezones",
    "custom_fields",
    "status",
    "priority",
    "attempts",
    "attempt_seq",
    "callback_at",
    "agent_id",
)
# Callback rows: due at their callback time.
TIMED_COLUMNS = (*PLAIN_COLUMNS[:10], "next_attempt_at", *PLAIN_COLUMNS[10:])
_COPY_PLAIN = f"COPY leads ({', '.join(PLAIN_COLUMNS)}) FROM STDIN"
_COPY_TIMED = f"COPY leads ({', '.join(TIMED_COLUMNS)}) FROM STDIN"
_BLOCK = 1 << 20


class LeadLoader:
    """Send COPY batches on a background thread; `wait()` for the one in flight (and its error)."""

    def __init__(self, connection: Any) -> None:
        self._connection = connection
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lead-copy")
        self._pending: Future[None] | None = None

    def send(self, plain: bytes, timed: bytes) -> None:
        """Start copying one batch (COPY text rows of PLAIN_COLUMNS and TIMED_COLUMNS) after the last."""
        self.wait()
        if plain or timed:
            self._pending = self._pool.submit(self._copy, plain, timed)

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

    def _copy(self, plain: bytes, timed: bytes) -> None:
        with self._connection.cursor() as cur:
            for statement, data in ((_COPY_PLAIN, plain), (_COPY_TIMED, timed)):
                if not data:
                    continue
                with cur.copy(statement) as copy:
                    view = memoryview(data)
                    for start in range(0, len(view), _BLOCK):
                        copy.write(view[start : start + _BLOCK])
