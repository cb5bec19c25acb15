"""ORM models: the tables Alembic owns. Postgres is the source of truth for every state."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    Time,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.ext.hybrid import hybrid_property
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from dialer.states import AttemptStatus, CampaignState, LeadStatus

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def table_of(model: type[Base]) -> Table:
    """The model's Core table, for hot statements built once at import rather than per call."""
    return cast(Table, model.__table__)


def _enum(cls: type[enum.Enum]) -> Enum:
    # Plain VARCHAR, not a native PG enum: new states need no ALTER TYPE migration.
    return Enum(
        cls,
        native_enum=False,
        create_constraint=False,
        length=24,
        values_callable=lambda e: [m.value for m in e],
    )


def _now() -> Any:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


class Campaign(Base):
    __tablename__ = "campaigns"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    caller_id: Mapped[str] = mapped_column(String(32))
    state: Mapped[CampaignState] = mapped_column(_enum(CampaignState), default=CampaignState.DRAFT)
    state_reason: Mapped[str | None] = mapped_column(Text)
    region: Mapped[str] = mapped_column(String(2), default="GB")
    timezone: Mapped[str] = mapped_column(String(64), default="Europe/London")
    window_start: Mapped[dt.time] = mapped_column(Time, default=dt.time(9, 0))
    # window_end is exclusive; 24:00 is stored as 23:59:59.999999.
    window_end: Mapped[dt.time] = mapped_column(Time, default=dt.time(20, 0))
    # ISO weekday numbers (1 = Monday) on which calls are allowed.
    days: Mapped[list[int]] = mapped_column(ARRAY(Integer), default=lambda: [1, 2, 3, 4, 5])
    cps: Mapped[float | None] = mapped_column(Float)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    call_timeout: Mapped[int] = mapped_column(Integer, default=300)
    # {outcome: {"delay": seconds, "counts": bool}}; see dialer.policy.
    retry_policy: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    start_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    # Stops by itself at end_at (the beat does it).
    end_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    # Recurring batch: cron (campaign zone) that re-opens the campaign, running schedule_hours each time.
    schedule_cron: Mapped[str | None] = mapped_column(String(120))
    schedule_hours: Mapped[float | None] = mapped_column(Float)
    # No calls on the public holidays of this country (ISO 3166 alpha-2, `holidays` package).
    holidays_country: Mapped[str | None] = mapped_column(String(2))
    # Compliance caps across campaigns: calls to one number per local day, and the gap between two.
    daily_cap_per_number: Mapped[int | None] = mapped_column(Integer)
    min_gap_seconds: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[dt.datetime] = _now()
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))

    # Loaded only when read: the dial task loads its campaign on every call and needs none of them.
    agents: Mapped[list[Agent]] = relationship(secondary="campaign_agents", lazy="select")


class Agent(Base):
    __tablename__ = "agents"

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str | None] = mapped_column(String(200))
    # Out of rotation (e.g. Acefone said "agent offline") until this time.
    paused_until: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    # One live call per agent (invariant 4): the attempt holding the agent and the lease that frees
    # it if no hangup ever comes; after a hangup, free from available_at (wrap-up gap).
    reserved_attempt_id: Mapped[int | None] = mapped_column(BigInteger)
    lease_until: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    available_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class CampaignAgent(Base):
    __tablename__ = "campaign_agents"

    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"), primary_key=True)


class ImportJob(Base):
    __tablename__ = "import_jobs"

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"), index=True)
    filename: Mapped[str] = mapped_column(Text)
    total_rows: Mapped[int] = mapped_column(Integer, default=0)
    accepted: Mapped[int] = mapped_column(Integer, default=0)
    rejected: Mapped[int] = mapped_column(Integer, default=0)
    # {reason_code: count}
    rejects_by_reason: Mapped[dict[str, int]] = mapped_column(JSONB, default=dict)
    # The file's custom-field headers: the order of its leads' custom_values. None for a column
    # that is empty on every stored lead (it is in no lead's custom_fields).
    custom_keys: Mapped[list[str | None] | None] = mapped_column(ARRAY(Text))
    created_at: Mapped[dt.datetime] = _now()


class Lead(Base):
    __tablename__ = "leads"
    __table_args__ = (
        # One index for the one-number-per-campaign rule and for look-ups by number across
        # campaigns (caps, DNC at dispatch); look-ups by campaign use ix_leads_dispatch.
        UniqueConstraint("phone_e164", "campaign_id"),
        # Matches the pacer's ORDER BY priority DESC, next_attempt_at, id: no sort per tick. Its
        # keys end with the id, so never repeat: no deduplication pass on every page split.
        Index(
            "ix_leads_dispatch",
            "campaign_id",
            "status",
            text("priority DESC"),
            "next_attempt_at",
            "id",
            postgresql_with={"deduplicate_items": "off"},
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    # campaign_id and import_job_id refer to campaigns and import_jobs with the rules of foreign
    # keys (cascade, set null), checked once per statement by triggers rather than once per row
    # by foreign-key constraints, so a million-row COPY does not run a million look-ups (migration 0005).
    campaign_id: Mapped[int] = mapped_column(Integer)
    import_job_id: Mapped[int | None] = mapped_column(Integer)
    source_row: Mapped[int | None] = mapped_column(Integer)
    phone_e164: Mapped[str] = mapped_column(String(20))
    # Candidate IANA zones; the calling window must hold in every one (invariant 5).
    timezones: Mapped[list[str]] = mapped_column(ARRAY(String(64)), default=list)
    # Custom fields of a lead added one by one; read `custom_fields`, which adds an imported lead's.
    own_fields: Mapped[dict[str, Any]] = mapped_column(
        "custom_fields", JSONB, default=dict, server_default=text("'{}'::jsonb")
    )
    # An imported lead's custom cells, one per header of its import job's custom_keys ('' = empty).
    custom_values: Mapped[list[str] | None] = mapped_column(ARRAY(Text))
    status: Mapped[LeadStatus] = mapped_column(
        _enum(LeadStatus), default=LeadStatus.PENDING, server_default=LeadStatus.PENDING.value
    )
    priority: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # A scheduled callback (dialled first when due, still inside the window).
    callback_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    # Only this agent may take the lead's calls (an `agent` column at import).
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    # Attempts charged against max_attempts (agent_missed and retry-safe failures are not).
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Attempt rows created so far (charged or not); the next one is attempt_seq + 1.
    attempt_seq: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_attempt_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    last_outcome: Mapped[str | None] = mapped_column(String(24))
    blocked_reason: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = _now()
    updated_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )

    import_job: Mapped[ImportJob | None] = relationship(
        primaryjoin="foreign(Lead.import_job_id) == ImportJob.id", viewonly=True, lazy="select"
    )

    @hybrid_property
    def custom_fields(self) -> dict[str, Any]:
        """Return the lead's custom fields: its own, plus the non-empty cells of its import."""
        fields = dict(self.own_fields or {})
        job = self.import_job if self.custom_values is not None else None
        if job is not None and job.custom_keys:
            fields.update((k, v) for k, v in zip(job.custom_keys, self.custom_values or (), strict=False) if k and v)
        return fields

    @custom_fields.inplace.setter
    def _custom_fields_setter(self, value: dict[str, Any]) -> None:
        self.own_fields = dict(value)
        self.custom_values = None

    @custom_fields.inplace.expression
    @classmethod
    def _custom_fields_expression(cls) -> Any:
        # lead_custom_fields() (migration 0005) is the same merge in SQL.
        return func.lead_custom_fields(cls.own_fields, cls.import_job_id, cls.custom_values, type_=JSONB)


class CallAttempt(Base):
    __tablename__ = "call_attempts"
    __table_args__ = (
        UniqueConstraint("lead_id", "attempt_no"),
        Index("ix_call_attempts_campaign_status", "campaign_id", "status"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"))
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    attempt_no: Mapped[int] = mapped_column(Integer)
    custom_identifier: Mapped[str] = mapped_column(String(64), unique=True)
    status: Mapped[AttemptStatus] = mapped_column(_enum(AttemptStatus), default=AttemptStatus.QUEUED)
    charged: Mapped[bool] = mapped_column(Boolean, default=False)
    # Why this dial was allowed: window, zone(s), attempt n of N (the audit trail).
    audit: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    api_status: Mapped[int | None] = mapped_column(Integer)
    api_message: Mapped[str | None] = mapped_column(Text)
    send_count: Mapped[int] = mapped_column(Integer, default=0)
    ref_id: Mapped[str | None] = mapped_column(String(64), index=True)
    call_id: Mapped[str | None] = mapped_column(String(64), index=True)
    uuid: Mapped[str | None] = mapped_column(String(64), index=True)
    hangup_cause: Mapped[str | None] = mapped_column(String(64))
    billsec: Mapped[int | None] = mapped_column(Integer)
    duration: Mapped[int | None] = mapped_column(Integer)
    recording_url: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = _now()
    dialed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))

    # Inner join: locking an attempt FOR UPDATE locks its lead too, which serialises lead updates.
    lead: Mapped[Lead] = relationship(lazy="joined", innerjoin=True)


class WebhookEvent(Base):
    __tablename__ = "webhook_events"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    dedupe_key: Mapped[str] = mapped_column(String(64), unique=True)
    received_at: Mapped[dt.datetime] = _now()
    method: Mapped[str] = mapped_column(String(8))
    content_type: Mapped[str | None] = mapped_column(String(200))
    headers: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    body: Mapped[str] = mapped_column(Text)
    fields: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    kind: Mapped[str | None] = mapped_column(String(32))
    custom_identifier: Mapped[str | None] = mapped_column(String(64))
    attempt_id: Mapped[int | None] = mapped_column(ForeignKey("call_attempts.id", ondelete="SET NULL"), index=True)
    # pending -> processed | orphan
    status: Mapped[str] = mapped_column(String(16), default="pending")
    orphan_reason: Mapped[str | None] = mapped_column(Text)
    copies: Mapped[int] = mapped_column(Integer, default=1)


class DncNumber(Base):
    __tablename__ = "dnc_numbers"

    phone_e164: Mapped[str] = mapped_column(String(20), primary_key=True)
    reason: Mapped[str | None] = mapped_column(Text)
    added_at: Mapped[dt.datetime] = _now()


class CampaignCounter(Base):
    """Maintained report counters (delta rows folded by compaction); fed by triggers, see reports.py.

    No foreign key on purpose: a key check would take a KEY SHARE lock on the campaign row that
    conflicts with the pacer's FOR UPDATE SKIP LOCKED, making it skip busy campaigns.
    """

    __tablename__ = "campaign_counters"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(Integer, index=True)
    kind: Mapped[str] = mapped_column(String(24))
    key: Mapped[str] = mapped_column(Text)
    n: Mapped[int] = mapped_column(BigInteger)
    total: Mapped[int] = mapped_column(BigInteger)
