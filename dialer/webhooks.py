"""Acefone webhooks: parse, store raw first, correlate, move the attempt forward only.

Delivery is at least once and unordered (ACEFONE.md): the same hangup may come eleven times and
before the answer events. Storing is keyed by a dedupe key; processing is idempotent; a final
attempt never changes again, so any order and any number of copies end in the same state.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

import structlog
from sqlalchemy import BigInteger, Executable, Update, bindparam, case, exists, func, literal, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session, defer, joinedload

from dialer import metrics
from dialer.db import expire_cached
from dialer.identifiers import CallKey, parse_identifier
from dialer.models import CallAttempt, Lead, WebhookEvent, table_of
from dialer.outcomes import settle_attempt
from dialer.states import ATTEMPT_FINAL, ATTEMPT_RANK, ATTEMPT_TRANSITIONS, AttemptStatus, can_transition

log = structlog.get_logger("dialer.webhooks")

SECRET_HEADERS = frozenset({"x-webhook-token", "authorization", "cookie"})
NESTED_KEYS = ("answered_agent", "missed_agent", "call_flow")
MAX_BODY_BYTES = 256 * 1024


class WebhookParseError(ValueError):
    """A body that is neither JSON nor a form: answered 400, still logged."""


@dataclass(frozen=True)
class RawEvent:
    """A webhook as it came: how it was sent, its body, and the fields parsed from it."""

    method: str
    content_type: str | None
    headers: dict[str, str]
    body: bytes
    fields: dict[str, Any]


@dataclass(frozen=True)
class StoredEvent:
    id: int
    is_new: bool


def _clean(value: Any) -> Any:
    # Acefone sends an unset `$variable` literally: "$campaign_name" means "no value".
    # NUL cannot be stored in PostgreSQL text or JSONB: it is dropped.
    if isinstance(value, str):
        v = value.replace("\x00", "").strip()
        return None if v.startswith("$") or v == "" else v
    if isinstance(value, dict):
        return {str(k).replace("\x00", ""): _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def parse_body(*, method: str, content_type: str | None, body: bytes, query: dict[str, str]) -> dict[str, Any]:
    """Read a webhook's fields from a JSON body, a form body or (GET) the query string."""
    if len(body) > MAX_BODY_BYTES:
        raise WebhookParseError(f"body is {len(body)} bytes; the limit is {MAX_BODY_BYTES}")
    ctype = (content_type or "").split(";")[0].strip().lower()
    fields: dict[str, Any]
    if method.upper() == "GET" or not body.strip():
        fields = {k: v for k, v in query.items() if k != "token"}
        if not fields:
            raise WebhookParseError("empty webhook: no body and no query parameters")
    else:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise WebhookParseError(f"body is not UTF-8 (byte {exc.start})") from None
        if ctype.endswith("json") or (not ctype.endswith("form-urlencoded") and text.lstrip().startswith("{")):
            try:
                data = json.loads(text, parse_constant=_reject_constant)
            except json.JSONDecodeError as exc:
                raise WebhookParseError(f"body is not valid JSON: {exc.msg} at line {exc.lineno}") from None
            except RecursionError:
                raise WebhookParseError("body is not valid JSON: nested too deeply") from None
            if not isinstance(data, dict):
                raise WebhookParseError("JSON body must be an object of fields")
            fields = data
        elif ctype.endswith("form-urlencoded") or "=" in text:
            pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=False)
            if not pairs:
                raise WebhookParseError("form body has no fields")
            fields = dict(pairs)
        else:
            raise WebhookParseError(f"body is neither JSON nor a form (content-type {ctype or 'missing'})")
    for key in NESTED_KEYS:
        value = fields.get(key)
        if isinstance(value, str) and value.strip()[:1] in ("{", "["):
            try:
                fields[key] = json.loads(value, parse_constant=_reject_constant)
            except (json.JSONDecodeError, RecursionError):
                pass
    return {str(k).replace("\x00", ""): _clean(v) for k, v in fields.items()}


def _reject_constant(name: str) -> Any:
    # NaN and Infinity are not JSON and PostgreSQL's JSONB refuses them.
    raise json.JSONDecodeError(f"{name} is not a JSON value", name, 0)


def apply_field_map(fields: dict[str, Any], mapping: dict[str, str]) -> dict[str, Any]:
    """Rename the customer's template keys to Acefone's variable names ({"our_name": "their_key"})."""
    if not mapping:
        return fields
    theirs = {their: ours for ours, their in mapping.items()}
    return {theirs.get(key, key): value for key, value in fields.items()}


def dedupe_key(fields: dict[str, Any]) -> str:
    """Hash the parsed fields: byte-identical copies (and JSON/form twins) share one key."""
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def store_event(*, session: Session, event: RawEvent) -> StoredEvent:
    """Store the raw event before anything else; a copy only bumps the original's counter."""
    return _insert_event(session, {**_parsed_event(event, event_kind(event.fields)), "status": "pending"})


def _parsed_event(event: RawEvent, kind: str) -> dict[str, Any]:
    """The columns stored for a parsed event, its status aside."""
    return _event_params(
        key=dedupe_key(event.fields),
        method=event.method,
        content_type=event.content_type,
        headers=event.headers,
        body=event.body,
        fields=event.fields,
        kind=kind,
        custom_identifier=_text(event.fields.get("custom_identifier"), 64),
    )


def store_unparseable(
    *, session: Session, method: str, content_type: str | None, headers: dict[str, str], body: bytes, error: str
) -> StoredEvent:
    """Keep an authenticated body we cannot read (answered 400): evidence, never a state change."""
    params = _event_params(
        key=hashlib.sha256(b"unparseable:" + body).hexdigest(),
        method=method,
        content_type=content_type,
        headers=headers,
        body=body[:MAX_BODY_BYTES],
        fields={},
        status="unparseable",
        orphan_reason=error[:500],
    )
    return _insert_event(session, params)


_EVENTS = table_of(WebhookEvent)
_EVENT_COLUMNS = (
    "dedupe_key",
    "method",
    "content_type",
    "headers",
    "body",
    "copies",
    "fields",
    "kind",
    "custom_identifier",
    "status",
    "orphan_reason",
)
# Built once: the receiver is the hottest path in the web process, and building a statement
# costs more than sending it.
_INSERT_EVENT = (
    insert(_EVENTS)
    .values({name: bindparam(name, type_=_EVENTS.c[name].type) for name in _EVENT_COLUMNS})
    .on_conflict_do_update(index_elements=["dedupe_key"], set_={"copies": _EVENTS.c.copies + 1})
    .returning(_EVENTS.c.id, _EVENTS.c.copies)
)
_MARK_EVENT = (
    update(_EVENTS)
    .where(_EVENTS.c.id == bindparam("event_id"))
    .values(status=bindparam("status"), orphan_reason=bindparam("reason"), attempt_id=bindparam("attempt_id"))
)


def _insert_event(session: Session, params: dict[str, Any]) -> StoredEvent:
    row = session.execute(_INSERT_EVENT, params).one()
    return StoredEvent(id=int(row[0]), is_new=int(row[1]) == 1)


def _event_params(
    *, key: str, method: str, content_type: str | None, headers: dict[str, str], body: bytes, **values: Any
) -> dict[str, Any]:
    return {
        "dedupe_key": key,
        "method": method.upper(),
        "content_type": (content_type or "")[:200] or None,
        # The webhook token never reaches the database.
        "headers": {k: v for k, v in headers.items() if k.lower() not in SECRET_HEADERS},
        # PostgreSQL text cannot hold NUL: it is stored escaped.
        "body": body.decode("utf-8", errors="replace").replace("\x00", "\\x00"),
        "copies": 1,
        "fields": {},
        "kind": None,
        "custom_identifier": None,
        "orphan_reason": None,
        **values,
    }


def _text(value: Any, limit: int) -> str | None:
    return None if value is None else str(value)[:limit]


def event_kind(fields: dict[str, Any]) -> str:
    """Tell which trigger sent this event: agent_answered, customer_answered, customer_missed, hangup."""
    status = str(fields.get("call_status") or "").strip().lower()
    if "answered by agent" in status:
        return "agent_answered"
    if "answered by customer" in status:
        return "customer_answered"
    if any(fields.get(k) is not None for k in ("end_stamp", "billsec", "duration")) or status == "answered":
        return "hangup"
    if status == "missed":
        return "customer_missed"
    return "unknown"


def _int(value: Any) -> int | None:
    try:
        return int(float(str(value)))
    except (TypeError, ValueError):
        return None


def hangup_outcome(fields: dict[str, Any]) -> AttemptStatus:
    """Map a hangup's call_status, hangup cause, reason and billsec to the attempt's end state."""
    status = str(fields.get("call_status") or "").lower()
    cause = str(fields.get("hangup_cause_key") or fields.get("hangup_cause") or "").upper()
    reason = str(fields.get("reason_key") or "").lower()
    billsec = _int(fields.get("billsec")) or 0
    if status == "answered" and (billsec > 0 or cause == "NORMAL_CLEARING"):
        return AttemptStatus.COMPLETED
    agent_connected = (
        str(fields.get("call_connected") or "") == "1"
        or bool(fields.get("answered_agent"))
        or bool(fields.get("answer_agent_number") or fields.get("answered_agent_number"))
    )
    # Only positive evidence says the agent missed: a busy, unanswered or failed customer leg must
    # never be read as agent_missed, which is not charged and would be dialled again. (A customer
    # ring time of 0 is no such evidence: an unallocated number never rings either; the chaos run
    # caught CDR records settled that way.)
    agent_missed = (
        str(fields.get("call_connected") or "") == "0" or bool(fields.get("missed_agent")) or "agent" in reason
    )
    if not agent_connected and agent_missed:
        return AttemptStatus.AGENT_MISSED
    if cause == "USER_BUSY" or "busy" in reason:
        return AttemptStatus.BUSY
    if cause in ("NO_ANSWER", "NO_USER_RESPONSE", "ORIGINATOR_CANCEL") or "noanswer" in reason.replace(" ", ""):
        return AttemptStatus.NO_ANSWER
    return AttemptStatus.FAILED


def parse_stamp(value: Any, account_tz: str) -> dt.datetime | None:
    """Read an Acefone time stamp (account zone, or epoch, or ISO 8601) as UTC."""
    if value is None:
        return None
    text = str(value).strip()
    try:
        if text.isdigit():
            return dt.datetime.fromtimestamp(int(text), dt.UTC)
        stamp = dt.datetime.fromisoformat(text)
    except (ValueError, OverflowError, OSError):
        return None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=ZoneInfo(account_tz))
    return stamp.astimezone(dt.UTC)


# Built once: every event is correlated. Locks the attempt and (joined) its lead. Their bulky
# columns (the dial audit, the lead's custom fields) are left out: settling never reads them.
_BULKY = (defer(CallAttempt.audit), joinedload(CallAttempt.lead).defer(Lead.own_fields).defer(Lead.custom_values))
_BY_IDENTIFIER = (
    select(CallAttempt)
    .options(*_BULKY)
    .where(CallAttempt.custom_identifier == bindparam("identifier"))
    .with_for_update()
)


def _call_key(fields: dict[str, Any]) -> CallKey | None:
    raw_id = fields.get("custom_identifier")
    return parse_identifier(str(raw_id)) if raw_id is not None else None


def correlate(*, session: Session, fields: dict[str, Any]) -> tuple[CallAttempt | None, str | None]:
    """Find the attempt an event belongs to: custom_identifier, then ref_id, then call_id/uuid."""
    raw_id = fields.get("custom_identifier")
    key = _call_key(fields)
    if key is not None:
        attempt = session.scalars(_BY_IDENTIFIER, {"identifier": str(key)}).first()
        if attempt is not None and attempt.lead_id == key.lead_id and attempt.campaign_id == key.campaign_id:
            return attempt, None
    conditions = []
    for column, name in ((CallAttempt.ref_id, "ref_id"), (CallAttempt.call_id, "call_id"), (CallAttempt.uuid, "uuid")):
        value = fields.get(name)
        if value is not None:
            conditions.append(column == str(value))
    if conditions:
        attempt = session.scalars(
            select(CallAttempt).options(*_BULKY).where(or_(*conditions)).limit(1).with_for_update()
        ).first()
        if attempt is not None:
            return attempt, None
    if raw_id is None:
        return None, "no custom_identifier, ref_id, call_id or uuid that matches an attempt"
    if key is None:
        return None, f"custom_identifier {str(raw_id)[:64]!r} is not of the form c<campaign>-l<lead>-a<n>"
    return None, f"no attempt {key}"


def process_event(*, session: Session, event_id: int, now: dt.datetime, wrapup_seconds: int, account_tz: str) -> str:
    """Apply one stored, still pending event to its attempt; return its new status (processed or orphan)."""
    event = session.get(WebhookEvent, event_id, with_for_update=True)
    if event is None or event.status != "pending":
        return event.status if event else "missing"
    return apply_event(
        session=session,
        event_id=event_id,
        fields=event.fields,
        now=now,
        wrapup_seconds=wrapup_seconds,
        account_tz=account_tz,
    )


def apply_event(
    *,
    session: Session,
    event_id: int,
    fields: dict[str, Any],
    now: dt.datetime,
    wrapup_seconds: int,
    account_tz: str,
) -> str:
    """Correlate an event's fields, move its attempt forward only, and record the event's status."""
    attempt, why = correlate(session=session, fields=fields)
    status, reason = "processed", None
    if attempt is None:
        status, reason = "orphan", why
    else:
        kind = event_kind(fields)
        if kind == "agent_answered":
            _advance(attempt, AttemptStatus.AGENT_ANSWERED)
        elif kind == "customer_answered":
            _advance(attempt, AttemptStatus.CUSTOMER_ANSWERED)
        elif kind == "customer_missed":
            attempt.hangup_cause = attempt.hangup_cause or _text(fields.get("hangup_cause_key"), 64)
        elif kind == "hangup":
            _settle_from_hangup(session, attempt, fields, now, wrapup_seconds, account_tz)
        else:
            status, reason = "orphan", f"unrecognised event (call_status {str(fields.get('call_status'))[:40]!r})"
        # After the hangup's settlement, which runs statements: set before, they would be flushed twice.
        _learn_ids(attempt, fields)
    session.execute(
        _MARK_EVENT,
        {"event_id": event_id, "status": status, "reason": reason, "attempt_id": attempt.id if attempt else None},
    )
    expire_cached(session, WebhookEvent, event_id)
    return status


def _settle_from_hangup(
    session: Session, attempt: CallAttempt, fields: dict[str, Any], now: dt.datetime, wrapup: int, account_tz: str
) -> None:
    if attempt.status in ATTEMPT_FINAL:
        return  # a copy or a late twin: the call is already settled
    settle_attempt(session=session, attempt=attempt, status=hangup_outcome(fields), now=now, wrapup_seconds=wrapup)
    # After settling, which runs statements: set before, these would be flushed twice.
    attempt.billsec = _int(fields.get("billsec"))
    attempt.duration = _int(fields.get("duration"))
    attempt.hangup_cause = _text(fields.get("hangup_cause_key") or fields.get("hangup_cause"), 64)
    attempt.recording_url = _text(fields.get("recording_url"), 2000)
    ended = parse_stamp(fields.get("end_stamp"), account_tz)
    if ended is not None:
        metrics.WEBHOOK_LAG.observe(max(0.0, (now - ended).total_seconds()))
    attempt.ended_at = ended or now


def _advance(attempt: CallAttempt, target: AttemptStatus) -> None:
    # Forward only: an answer event that arrives after the hangup changes nothing.
    current = AttemptStatus(attempt.status)
    if ATTEMPT_RANK[target] > ATTEMPT_RANK[current] and can_transition(ATTEMPT_TRANSITIONS, current, target):
        attempt.status = target


def _learn_ids(attempt: CallAttempt, fields: dict[str, Any]) -> None:
    for name in ("ref_id", "call_id", "uuid"):
        value = fields.get(name)
        if value is not None and getattr(attempt, name) is None:
            setattr(attempt, name, str(value)[:64])


# Progress events: an answer (agent or customer) or a missed customer leg, two of a call's three
# events. When the custom_identifier names an attempt, storing and applying such an event is one
# statement: the attempt moves forward in a CTE (the same rules as `_advance` and `_learn_ids`),
# and the event is inserted as processed, or pending when no attempt matched (the caller then
# correlates it the long way). A copy of a stored event changes no attempt (NOT EXISTS on its key)
# and only bumps the original's counter, like store_event.
_PROGRESS_TARGETS: dict[str, AttemptStatus | None] = {
    "agent_answered": AttemptStatus.AGENT_ANSWERED,
    "customer_answered": AttemptStatus.CUSTOMER_ANSWERED,
    "customer_missed": None,
}
_ATTEMPTS = table_of(CallAttempt)
_LEARNED_IDS = ("ref_id", "call_id", "uuid")


def _moves_to(target: AttemptStatus) -> list[AttemptStatus]:
    """The statuses `_advance` moves forward to `target`."""
    return [
        s
        for s in AttemptStatus
        if ATTEMPT_RANK[target] > ATTEMPT_RANK[s] and can_transition(ATTEMPT_TRANSITIONS, s, target)
    ]


def _progress_statement(target: AttemptStatus | None) -> Executable:
    a = _ATTEMPTS
    # Every parameter is prefixed: a name equal to a column's would also be SET by the UPDATE.
    values: dict[str, Any] = {n: func.coalesce(a.c[n], bindparam(f"p_{n}", type_=a.c[n].type)) for n in _LEARNED_IDS}
    if target is not None:
        values["status"] = case((a.c.status.in_(_moves_to(target)), literal(target, a.c.status.type)), else_=a.c.status)
    else:
        values["hangup_cause"] = func.coalesce(a.c.hangup_cause, bindparam("p_cause", type_=a.c.hangup_cause.type))
    moved: Update = (
        update(a)
        .where(
            a.c.custom_identifier == bindparam("p_identifier"),
            a.c.lead_id == bindparam("p_lead_id"),
            # Bound as BIGINT: an identifier may name a campaign beyond int4 (then nothing matches).
            a.c.campaign_id == bindparam("p_campaign_id", type_=BigInteger),
            ~exists().where(_EVENTS.c.dedupe_key == bindparam("p_dedupe_key")),
        )
        .values(values)
    )
    found = moved.returning(a.c.id).cte("moved")
    attempt_id = select(found.c.id).scalar_subquery()
    stored = [name for name in _EVENT_COLUMNS if name not in ("status", "orphan_reason")]
    source = select(
        *[bindparam(f"p_{name}", type_=_EVENTS.c[name].type) for name in stored],
        case((attempt_id.is_not(None), "processed"), else_="pending"),
        attempt_id,
    )
    return (
        insert(_EVENTS)
        .from_select([*stored, "status", "attempt_id"], source)
        .on_conflict_do_update(index_elements=["dedupe_key"], set_={"copies": _EVENTS.c.copies + 1})
        .returning(_EVENTS.c.id, _EVENTS.c.copies, _EVENTS.c.status, _EVENTS.c.attempt_id)
    )


_STORE_PROGRESS = {kind: _progress_statement(target) for kind, target in _PROGRESS_TARGETS.items()}


def store_progress(*, session: Session, event: RawEvent) -> tuple[StoredEvent, str] | None:
    """Store a progress event and apply it in one statement; None when the event is not one.

    Returns the stored event and its status: processed, duplicate (a copy), or pending (no attempt
    has its custom_identifier: `apply_event` correlates it by ref_id, call_id or uuid, or says why not).
    """
    fields = event.fields
    kind = event_kind(fields)
    key = _call_key(fields)
    if kind not in _STORE_PROGRESS or key is None:
        return None
    params = _parsed_event(event, kind)
    params.update(
        identifier=str(key),
        lead_id=key.lead_id,
        campaign_id=key.campaign_id,
        cause=_text(fields.get("hangup_cause_key"), 64),
        **{name: _text(fields.get(name), 64) for name in _LEARNED_IDS},
    )
    row = session.execute(_STORE_PROGRESS[kind], {f"p_{name}": value for name, value in params.items()}).one()
    stored = StoredEvent(id=int(row[0]), is_new=int(row[1]) == 1)
    if not stored.is_new:
        return stored, "duplicate"
    if row[3] is not None:
        expire_cached(session, CallAttempt, row[3])
    return stored, str(row[2])


def receive_event(
    *,
    session: Session,
    event: RawEvent,
    process: bool,
    fast: bool,
    now: dt.datetime,
    wrapup_seconds: int,
    account_tz: str,
) -> tuple[StoredEvent, str]:
    """Store an event and, if `process`, apply it, in the caller's transaction; return it and its status.

    The long way (not `fast`): store first, then apply in a savepoint, so a processing failure
    rolls back only the processing and the event stays pending for the beat. With `fast`, a
    progress event takes `store_progress` (one statement) when it can, and any other event is
    applied without a savepoint (two statements fewer): a failure then fails the whole
    transaction, and the caller must roll back and receive the event again the long way.
    Status: processed, orphan, duplicate (a copy of a stored event) or pending (not processed).
    """
    progress = store_progress(session=session, event=event) if fast and process else None
    if progress is not None:
        stored, status = progress
    else:
        stored = store_event(session=session, event=event)
        status = "pending" if stored.is_new else "duplicate"
    if status != "pending" or not process:
        return stored, status

    def apply() -> str:
        return apply_event(
            session=session,
            event_id=stored.id,
            fields=event.fields,
            now=now,
            wrapup_seconds=wrapup_seconds,
            account_tz=account_tz,
        )

    if fast:
        return stored, apply()
    try:
        with session.begin_nested():
            status = apply()
    except Exception:
        log.exception("webhook_processing_failed", event_id=stored.id)
        status = "pending"
    return stored, status


def pending_events(*, session: Session, older_than: dt.datetime, limit: int = 500) -> list[int]:
    """Return stored events that were never processed (the web process died mid-request)."""
    return list(
        session.scalars(
            select(WebhookEvent.id)
            .where(WebhookEvent.status == "pending", WebhookEvent.received_at < older_than)
            .order_by(WebhookEvent.id)
            .limit(limit)
        )
    )


def list_events(*, session: Session, status: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """Return stored events, newest first (orphans with the reason they could not be matched)."""
    stmt = select(WebhookEvent).order_by(WebhookEvent.id.desc()).limit(limit)
    if status:
        stmt = stmt.where(WebhookEvent.status == status)
    return [
        {
            "id": e.id,
            "received_at": e.received_at.isoformat(),
            "status": e.status,
            "kind": e.kind,
            "custom_identifier": e.custom_identifier,
            "attempt_id": e.attempt_id,
            "copies": e.copies,
            "orphan_reason": e.orphan_reason,
            "fields": e.fields,
        }
        for e in session.scalars(stmt)
    ]
