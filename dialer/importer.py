"""Lead import: a CSV or XLSX of people to ring becomes leads of one campaign, whole or not at all.

The pieces live in `dialer.importing` (reading files, column mapping, bulk number screening,
field checks, the COPY loader, the rejects file); this module decides each row's verdict and
keeps the books. docs/importing.md is the user's guide.

Decisions:
- Checks run in this order and the first failure is the row's reason: the number, timezone,
  callback_at, priority, agent, duplicate_in_file (the first otherwise-valid row wins), dnc,
  duplicate_in_campaign. A manager's summary therefore adds up: total = accepted + rejected, and
  each rejected row has exactly one reason.
- A file with a header but no data rows is an error, not a 0-row import: it is nearly always the
  wrong sheet or a failed export, and a script that expects empty deltas can catch ImportFailed.
- Completed and cancelled campaigns take no new leads: nothing would ever dial them.
- A callback row gets callback_at, next_attempt_at = that time and its priority raised by
  CALLBACK_PRIORITY (100) until the callback is dialled, so it is dialled first once due, still
  inside the calling window.
- Imports into one campaign take turns (a transaction-level advisory lock): the duplicate check
  against the campaign's leads is then exact, and the rows can be COPYed straight into `leads`.
- Rows are loaded in batches sorted by number (index locality; see importing.loading), so lead
  ids follow the file only batch by batch. Dial order comes from priority and next_attempt_at.
"""

from __future__ import annotations

import itertools
import operator
import zoneinfo
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from sqlalchemy.orm import Session

from dialer.importing import ImportFailed
from dialer.importing.columns import PHONE_COLUMNS, Columns, find_phone_column, map_columns
from dialer.importing.fields import canonical_zone, custom_cells, parse_callback, parse_priority, per_value, stripped
from dialer.importing.loading import LeadLoader, copy_text
from dialer.importing.numbers import e164_texts, normalise_column
from dialer.importing.rejects import REJECTS_COLUMNS, RejectsFile
from dialer.importing.sources import Chunk, Table, open_table
from dialer.leads import CALLBACK_PRIORITY
from dialer.models import Campaign, ImportJob
from dialer.phones import INVALID_NUMBER, MISSING_NUMBER, NOT_DIALABLE_TYPE, UNPARSEABLE
from dialer.states import CampaignState

__all__ = [
    "CHUNK_ROWS",
    "PHONE_COLUMNS",
    "REASONS",
    "REJECTS_COLUMNS",
    "ImportFailed",
    "ImportReport",
    "NumberList",
    "import_leads",
    "read_numbers",
]

INVALID_TIMEZONE = "invalid_timezone"
INVALID_CALLBACK_AT = "invalid_callback_at"
INVALID_PRIORITY = "invalid_priority"
UNKNOWN_AGENT = "unknown_agent"
DUPLICATE_IN_FILE = "duplicate_in_file"
DUPLICATE_IN_CAMPAIGN = "duplicate_in_campaign"
DNC = "dnc"
REASONS = (
    MISSING_NUMBER,
    UNPARSEABLE,
    INVALID_NUMBER,
    NOT_DIALABLE_TYPE,
    INVALID_TIMEZONE,
    INVALID_CALLBACK_AT,
    INVALID_PRIORITY,
    UNKNOWN_AGENT,
    DUPLICATE_IN_FILE,
    DNC,
    DUPLICATE_IN_CAMPAIGN,
)
CHUNK_ROWS = 50_000
# pg_advisory_xact_lock(class, campaign id): one import per campaign at a time.
_LOCK_CLASS = 0x4C454144
_CLOSED = frozenset({CampaignState.COMPLETED, CampaignState.CANCELLED})

Progress = Callable[[float, int], None]


@dataclass
class ImportReport:
    """What one import did: counts per outcome and the import job that records them."""

    job_id: int
    filename: str
    total_rows: int
    accepted: int
    rejected: int
    # Only reasons that occurred, in the order of REASONS.
    rejects_by_reason: dict[str, int]
    # The header of the column the numbers were read from.
    phone_column: str | None = None
    # duplicate_in_file + duplicate_in_campaign, and dnc, as the summary shows them.
    duplicates: int = 0
    dnc: int = 0
    # Accepted rows that carry a scheduled callback.
    callbacks: int = 0
    # How the file was read: format, encoding, delimiter or sheet.
    source: dict[str, Any] = field(default_factory=dict)
    # Which header feeds which lead setting (phone, timezone, callback_at, priority, agent).
    columns: dict[str, str | None] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Return the report as JSON-ready data."""
        return asdict(self)


def import_leads(
    *,
    session: Session,
    campaign: Campaign,
    path: Path,
    phone_column: str | None = None,
    rejects_path: Path | None = None,
    encoding: str | None = None,
    sheet: str | None = None,
    filename: str | None = None,
    max_bytes: int | None = None,
    progress: Progress | None = None,
) -> ImportReport:
    """Import a CSV or XLSX of leads into `campaign`, screening numbers, duplicates and DNC; flush only."""
    table = open_table(
        Path(path),
        name=filename,
        encoding=encoding,
        sheet=sheet,
        max_bytes=max_bytes,
    )
    columns = map_columns(table.name, table.names, phone_column)
    if campaign.id is None:
        session.flush()
    if campaign.state in _CLOSED:
        raise ImportFailed(f"{table.name}: campaign {campaign.id} is {campaign.state.value} and takes no new leads")
    rejects = RejectsFile(rejects_path, table.names)
    try:
        # A savepoint, so a failure half way leaves this session as it was, whoever commits it.
        with session.begin_nested():
            report = _import(session, campaign, table, columns, rejects, progress)
    except BaseException:
        rejects.abort()
        raise
    rejects.finish()
    return report


@dataclass
class _Context:
    campaign_id: int
    job_id: int
    region: str
    zone: zoneinfo.ZoneInfo
    default_zones: str
    agents: dict[str, int]
    # The campaign's numbers before the import, as sorted E.164 keys (see NumberColumn.key).
    existing: np.ndarray
    # Custom fields: (column, header) of the file's custom columns, and whether a stored row had a value in each.
    custom: list[tuple[int, str]]
    filled: list[bool]
    # False when the DNC list was empty at the start (a number listed during the import is
    # still refused at dispatch, where DNC is checked again).
    dnc_listed: bool = True
    # Numbers seen so far in the file (sorted keys) and the row each was first seen on.
    seen_keys: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    seen_rows: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    zone_literals: dict[tuple[str, ...], str] = field(default_factory=dict)
    counts: Counter[str] = field(default_factory=Counter)
    total: int = 0
    accepted: int = 0
    callbacks: int = 0


def _import(
    session: Session,
    campaign: Campaign,
    table: Table,
    columns: Columns,
    rejects: RejectsFile,
    progress: Progress | None,
) -> ImportReport:
    job = ImportJob(campaign_id=campaign.id, filename=table.name, total_rows=0, accepted=0, rejected=0)
    session.add(job)
    session.flush()
    connection = session.connection().connection.driver_connection
    assert connection is not None
    with connection.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s, %s)", (_LOCK_CLASS, campaign.id))
        # The statement triggers on leads read each COPY's rows from a transition table: let one
        # batch's (about 20 MB) stay in memory rather than spill to a temporary file.
        cur.execute("SET LOCAL work_mem = '64MB'")
        cur.execute("SELECT phone_e164 FROM leads WHERE campaign_id = %s", (campaign.id,))
        existing = _keys_of(phone for (phone,) in cur)
        cur.execute("SELECT EXISTS (SELECT 1 FROM dnc_numbers)")
        dnc_row = cur.fetchone()
    ctx = _Context(
        campaign_id=campaign.id,
        job_id=job.id,
        region=campaign.region or "GB",
        zone=zoneinfo.ZoneInfo(campaign.timezone),
        default_zones=_array_literal((campaign.timezone,)),
        agents={a.number: a.id for a in campaign.agents},
        existing=existing,
        custom=list(columns.custom),
        filled=[False] * len(columns.custom),
        dnc_listed=bool(dnc_row and dnc_row[0]),
    )
    loader = LeadLoader(connection, custom=bool(ctx.custom))
    try:
        for chunk in table.chunks(CHUNK_ROWS):
            # Everything up to the COPY text runs while the previous batch is still being stored.
            batch, found = _screen(chunk, columns, ctx)
            found.extend(_screen_against_campaign(batch, ctx))
            texts = _copy_texts(batch, chunk, ctx)
            if ctx.dnc_listed and len(batch.rows):
                loader.wait()
                listed = _screen_against_dnc(connection, batch, ctx)
                if listed:
                    found.extend(listed)
                    texts = _copy_texts(batch, chunk, ctx)
            loader.send(*texts)
            _count_stored(batch, chunk, ctx)
            for r in found:
                ctx.counts[r[1]] += 1
            if rejects.path is not None:
                rejects.write(
                    [(row, code, text, [col[pos] for col in chunk.columns]) for row, code, text, pos in found]
                )
            if progress is not None:
                progress(chunk.done, ctx.total)
        loader.wait()
    except psycopg.errors.UniqueViolation:
        raise ImportFailed(
            f"{table.name}: leads were added to campaign {campaign.id} while this file was importing; import it again"
        ) from None
    finally:
        loader.close()
    if ctx.total == 0:
        raise ImportFailed(f"{table.name}: the file has a header row but no data rows")
    job.total_rows = ctx.total
    job.accepted = ctx.accepted
    job.rejected = ctx.total - ctx.accepted
    job.rejects_by_reason = {reason: ctx.counts[reason] for reason in REASONS if ctx.counts[reason]}
    if ctx.custom:
        job.custom_keys = [name if filled else None for (_, name), filled in zip(ctx.custom, ctx.filled, strict=True)]
    session.flush()
    return ImportReport(
        job_id=job.id,
        filename=table.name,
        total_rows=job.total_rows,
        accepted=job.accepted,
        rejected=job.rejected,
        rejects_by_reason=dict(job.rejects_by_reason),
        phone_column=table.names[columns.phone],
        duplicates=ctx.counts[DUPLICATE_IN_FILE] + ctx.counts[DUPLICATE_IN_CAMPAIGN],
        dnc=ctx.counts[DNC],
        callbacks=ctx.callbacks,
        source=table.describe(),
        columns=columns.describe(),
    )


# (row number, reason, message, position in the chunk)
_Reject = tuple[int, str, str, int]


@dataclass
class _Batch:
    """Rows of one chunk that passed the checks so far, as parallel arrays."""

    pos: np.ndarray
    rows: np.ndarray
    key: np.ndarray
    zones: np.ndarray
    priority: np.ndarray
    callback: np.ndarray
    agent: np.ndarray

    def take(self, keep: np.ndarray) -> _Batch:
        return _Batch(*(getattr(self, f)[keep] for f in self.__dataclass_fields__))


def _screen(chunk: Chunk, columns: Columns, ctx: _Context) -> tuple[_Batch, list[_Reject]]:
    """Check one chunk's rows in Python: number, settings columns, duplicates within the file."""
    n = len(chunk.rows)
    ctx.total += n
    numbers = normalise_column(chunk.columns[columns.phone], ctx.region)
    reason = numbers.reason
    message = numbers.message
    ok = numbers.key > 0

    zones = np.empty(n, dtype=object)
    zones[:] = list(map(_ZoneLiterals(ctx).__getitem__, numbers.zones.tolist()))
    if columns.timezone is not None:
        cells = stripped(chunk.columns[columns.timezone])
        named = per_value(cells, lambda c: canonical_zone(c) if c else "")
        for i, (cell, zone) in enumerate(zip(cells, named, strict=True)):
            if not cell:
                continue
            if zone is None:
                if ok[i]:
                    text = f"not an IANA time zone: {cell[:40]!r}; use a name such as Europe/London"
                    _reject(ok, reason, message, i, INVALID_TIMEZONE, text)
            else:
                zones[i] = _array_literal((zone,))

    callback = np.full(n, None, dtype=object)
    if columns.callback_at is not None:
        cells = chunk.columns[columns.callback_at]
        parsed = per_value(cells, lambda c: parse_callback(c, ctx.zone) if c.strip() else None)
        for i, value in enumerate(parsed):
            if value is None:
                continue
            if isinstance(value, str):
                if ok[i]:
                    _reject(ok, reason, message, i, INVALID_CALLBACK_AT, value)
            else:
                callback[i] = value

    priority = np.zeros(n, dtype=np.int64)
    if columns.priority is not None:
        cells = chunk.columns[columns.priority]
        parsed_priority = per_value(cells, lambda c: parse_priority(c) if c.strip() else None)
        for i, level in enumerate(parsed_priority):
            if level is None:
                continue
            if isinstance(level, str):
                if ok[i]:
                    _reject(ok, reason, message, i, INVALID_PRIORITY, level)
            else:
                priority[i] = level

    agent = np.full(n, None, dtype=object)
    if columns.agent is not None:
        cells = stripped(chunk.columns[columns.agent])
        for i, cell in enumerate(cells):
            if not cell:
                continue
            agent_id = ctx.agents.get(cell)
            if agent_id is None:
                if ok[i]:
                    known = ", ".join(sorted(ctx.agents)[:10]) or "none"
                    text = f"agent {cell[:40]!r} is not one of this campaign's agents ({known})"
                    _reject(ok, reason, message, i, UNKNOWN_AGENT, text)
            else:
                agent[i] = agent_id

    # The first otherwise-valid row with a number wins; later ones are duplicates of it.
    valid = np.flatnonzero(ok)
    firsts = _first_rows(numbers.key[valid], chunk.rows[valid], ctx)
    later = firsts != chunk.rows[valid]
    for i, first in zip(valid[later].tolist(), firsts[later].tolist(), strict=True):
        _reject(ok, reason, message, i, DUPLICATE_IN_FILE, f"same number as row {first} (+{numbers.key[i]})")

    found: list[_Reject] = [
        (int(chunk.rows[i]), str(reason[i]), str(message[i] or ""), int(i)) for i in np.flatnonzero(~ok).tolist()
    ]
    keep = np.flatnonzero(ok)
    batch = _Batch(
        pos=keep,
        rows=chunk.rows[keep],
        key=numbers.key[keep],
        zones=zones[keep],
        priority=priority[keep],
        callback=callback[keep],
        agent=agent[keep],
    )
    return batch, found


class _ZoneLiterals(dict[tuple[str, ...], str]):
    """Zones tuple -> text[] literal, built once per distinct tuple for the whole import."""

    def __init__(self, ctx: _Context) -> None:
        self.ctx = ctx

    def __missing__(self, zones: tuple[str, ...]) -> str:
        literal = self.ctx.zone_literals.get(zones)
        if literal is None:
            literal = self.ctx.zone_literals[zones] = _array_literal(zones) if zones else self.ctx.default_zones
        self[zones] = literal
        return literal


def _reject(ok: np.ndarray, reason: np.ndarray, message: np.ndarray, i: int, code: str, text: str) -> None:
    ok[i] = False
    reason[i] = code
    message[i] = text


def _first_rows(keys: np.ndarray, rows: np.ndarray, ctx: _Context) -> np.ndarray:
    """Return, per number, the row it was first seen on (this chunk's or an earlier one's); remember the new ones."""
    if not len(keys):
        return rows.copy()
    unique, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    firsts = rows[first]
    at = np.searchsorted(ctx.seen_keys, unique)
    known = at < len(ctx.seen_keys)
    known[known] = ctx.seen_keys[at[known]] == unique[known]
    firsts[known] = ctx.seen_rows[at[known]]
    fresh = ~known
    ctx.seen_keys = np.insert(ctx.seen_keys, at[fresh], unique[fresh])
    ctx.seen_rows = np.insert(ctx.seen_rows, at[fresh], firsts[fresh])
    return firsts[inverse]


def _keys_of(phones: Iterator[str]) -> np.ndarray:
    """Return the sorted NumberColumn keys of E.164 texts (anything else cannot match a key)."""
    keys = [int(p[1:]) for p in phones if p[:1] == "+" and p[1:].isdigit() and p[1:].isascii() and len(p) <= 19]
    return np.unique(np.array(keys, dtype=np.int64))


def _screen_against_campaign(batch: _Batch, ctx: _Context) -> list[_Reject]:
    """Drop the rows whose number the campaign already has (in place); return them as rejects."""
    if not len(ctx.existing) or not len(batch.rows):
        return []
    at = np.minimum(np.searchsorted(ctx.existing, batch.key), len(ctx.existing) - 1)
    hit = ctx.existing[at] == batch.key
    found: list[_Reject] = [
        (int(row), DUPLICATE_IN_CAMPAIGN, f"already a lead of campaign {ctx.campaign_id} (+{key})", int(pos))
        for row, key, pos in zip(
            batch.rows[hit].tolist(), batch.key[hit].tolist(), batch.pos[hit].tolist(), strict=True
        )
    ]
    _keep_only(batch, ~hit)
    return found


def _screen_against_dnc(connection: Any, batch: _Batch, ctx: _Context) -> list[_Reject]:
    """Drop the rows whose number is on the do-not-call list (in place); return them as rejects."""
    numbers = e164_texts(batch.key).tolist()
    with connection.cursor() as cur:
        # One text parameter split by the server: adapting a 50,000-item list costs more than the query.
        cur.execute(
            "SELECT phone_e164 FROM dnc_numbers WHERE phone_e164 = ANY(string_to_array(%s, ','))",
            (",".join(numbers),),
        )
        listed = {phone for (phone,) in cur}
    if not listed:
        return []
    hit = np.fromiter((e in listed for e in numbers), dtype=bool, count=len(numbers))
    found: list[_Reject] = [
        (int(row), DNC, f"on the do-not-call list ({numbers[i]})", int(pos))
        for i, row, pos in zip(
            np.flatnonzero(hit).tolist(), batch.rows[hit].tolist(), batch.pos[hit].tolist(), strict=True
        )
    ]
    _keep_only(batch, ~hit)
    return found


def _keep_only(batch: _Batch, keep: np.ndarray) -> None:
    if not keep.all():
        for name in batch.__dataclass_fields__:
            setattr(batch, name, getattr(batch, name)[keep])


def _count_stored(batch: _Batch, chunk: Chunk, ctx: _Context) -> None:
    ctx.accepted += len(batch.rows)
    ctx.callbacks += int((batch.callback != None).sum())  # noqa: E711
    for c, (col, _) in enumerate(ctx.custom):
        if not ctx.filled[c] and len(batch.pos):
            ctx.filled[c] = any(v.strip() for v in _take(chunk.columns[col], batch.pos))


def _copy_texts(batch: _Batch, chunk: Chunk, ctx: _Context) -> tuple[str, str, str]:
    """Sort the batch by number (in place) and return its COPY text: plain, extra and timed rows.

    See importing.loading for the three column lists. Each text is assembled column by column
    (slice assignment into one list of pieces, then one join) rather than row by row.
    """
    if not len(batch.rows):
        return "", "", ""
    order = np.argsort(batch.key, kind="stable")
    for name in batch.__dataclass_fields__:
        setattr(batch, name, getattr(batch, name)[order])
    # Rows without a callback leave next_attempt_at to its default, now(): the same transaction
    # time, and one timestamp less for Postgres to parse per row.
    timed = batch.callback != None  # noqa: E711
    extra = ~timed & ((batch.priority != 0) | (batch.agent != None))  # noqa: E711
    plain = ~(timed | extra)
    customs = [custom_cells(chunk.columns[col]) for col, _ in ctx.custom]
    texts = []
    for part, tail in ((plain, None), (extra, _extra_tails), (timed, _timed_tails)):
        if not part.any():
            texts.append("")
            continue
        rows = np.flatnonzero(part) if not part.all() else None
        pick = batch.pos if rows is None else batch.pos[rows]
        texts.append(
            copy_text(
                prefix=f"{ctx.campaign_id}\t{ctx.job_id}\t",
                columns=[
                    list(map(str, (batch.rows if rows is None else batch.rows[rows]).tolist())),
                    list(map(str, (batch.key if rows is None else batch.key[rows]).tolist())),
                    (batch.zones if rows is None else batch.zones[rows]).tolist(),
                ],
                customs=[_take(c, pick) for c in customs],
                tails=None if tail is None else tail(batch, rows),
            )
        )
    return texts[0], texts[1], texts[2]


def _extra_tails(batch: _Batch, rows: np.ndarray | None) -> list[str]:
    picked = range(len(batch.rows)) if rows is None else rows.tolist()
    return [f"\t{int(batch.priority[i])}\t{_agent_text(batch.agent[i])}" for i in picked]


def _timed_tails(batch: _Batch, rows: np.ndarray | None) -> list[str]:
    picked = range(len(batch.rows)) if rows is None else rows.tolist()
    out = []
    for i in picked:
        due = batch.callback[i].isoformat()
        priority = int(batch.priority[i]) + CALLBACK_PRIORITY
        out.append(f"\t{priority}\t{due}\t{due}\t{_agent_text(batch.agent[i])}")
    return out


def _agent_text(agent: int | None) -> str:
    return "\\N" if agent is None else str(agent)


def _take(values: Sequence[str], positions: np.ndarray) -> Sequence[str]:
    """Return values[p] for each position, picked in C (itemgetter) rather than a Python loop."""
    picks = positions.tolist()
    if len(picks) > 1:
        return operator.itemgetter(*picks)(values)  # type: ignore[no-any-return]
    return [values[p] for p in picks]


def _array_literal(zones: tuple[str, ...] | tuple[str | None, ...]) -> str:
    return "{" + ",".join(z for z in zones if z) + "}"


@dataclass
class NumberList:
    """Numbers read from a file for the DNC list: the valid ones in E.164, each once."""

    total: int
    valid: list[str]
    rejected: int
    duplicates: int = 0
    rejects_by_reason: dict[str, int] = field(default_factory=dict)
    phone_column: str | None = None
    source: dict[str, Any] = field(default_factory=dict)


def read_numbers(
    *,
    path: Path,
    phone_column: str | None = None,
    region: str = "GB",
    encoding: str | None = None,
    sheet: str | None = None,
    filename: str | None = None,
    max_bytes: int | None = None,
) -> NumberList:
    """Read and normalise the phone column of a CSV or XLSX (or a bare list of numbers); store nothing."""
    table = open_table(
        Path(path),
        name=filename,
        encoding=encoding,
        sheet=sheet,
        max_bytes=max_bytes,
    )
    bare = phone_column is None and len(table.names) == 1 and normalise_column(table.names, region).e164[0] is not None
    phone = 0 if bare else find_phone_column(table.name, table.names, phone_column)
    seen: dict[str, None] = {}
    counts: Counter[str] = Counter()
    total = 0
    cells: Iterator[list[str]] = (c.columns[phone] for c in table.chunks(CHUNK_ROWS))
    for values in itertools.chain([[table.names[0]]] if bare else [], cells):
        total += len(values)
        numbers = normalise_column(values, region)
        for e164, reason in zip(numbers.e164.tolist(), numbers.reason.tolist(), strict=True):
            if e164 is None:
                counts[reason] += 1
            elif e164 in seen:
                counts[DUPLICATE_IN_FILE] += 1
            else:
                seen[e164] = None
    if total == 0:
        raise ImportFailed(f"{table.name}: the file has a header row but no data rows")
    duplicates = counts[DUPLICATE_IN_FILE]
    return NumberList(
        total=total,
        valid=list(seen),
        rejected=sum(counts.values()) - duplicates,
        duplicates=duplicates,
        rejects_by_reason={r: counts[r] for r in REASONS if counts[r] and r != DUPLICATE_IN_FILE},
        phone_column=None if bare else table.names[phone],
        source=table.describe(),
    )
