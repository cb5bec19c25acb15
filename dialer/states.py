"""State machines: campaign, lead and attempt states with their allowed transitions beside them."""

from __future__ import annotations

import enum
from typing import TypeVar

S = TypeVar("S", bound=enum.Enum)


class IllegalTransition(Exception):
    """A state change the machine does not allow."""


class CampaignState(enum.StrEnum):
    DRAFT = "draft"
    SCHEDULED = "scheduled"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


CAMPAIGN_TRANSITIONS: dict[CampaignState, frozenset[CampaignState]] = {
    CampaignState.DRAFT: frozenset({CampaignState.SCHEDULED, CampaignState.RUNNING, CampaignState.CANCELLED}),
    CampaignState.SCHEDULED: frozenset({CampaignState.RUNNING, CampaignState.PAUSED, CampaignState.CANCELLED}),
    # running -> scheduled: a recurring batch closes until its next cron time.
    CampaignState.RUNNING: frozenset(
        {CampaignState.SCHEDULED, CampaignState.PAUSED, CampaignState.COMPLETED, CampaignState.CANCELLED}
    ),
    CampaignState.PAUSED: frozenset(
        {CampaignState.RUNNING, CampaignState.SCHEDULED, CampaignState.COMPLETED, CampaignState.CANCELLED}
    ),
    CampaignState.COMPLETED: frozenset(),
    CampaignState.CANCELLED: frozenset(),
}


class LeadStatus(enum.StrEnum):
    PENDING = "pending"
    IN_CALL = "in_call"
    CONTACTED = "contacted"
    EXHAUSTED = "exhausted"
    DNC = "dnc"
    INVALID = "invalid"
    CANCELLED = "cancelled"


LEAD_FINAL = frozenset(
    {LeadStatus.CONTACTED, LeadStatus.EXHAUSTED, LeadStatus.DNC, LeadStatus.INVALID, LeadStatus.CANCELLED}
)

LEAD_TRANSITIONS: dict[LeadStatus, frozenset[LeadStatus]] = {
    LeadStatus.PENDING: frozenset({LeadStatus.IN_CALL, *LEAD_FINAL}),
    # A call ends with a retry (pending) or a final verdict.
    LeadStatus.IN_CALL: frozenset({LeadStatus.PENDING, *LEAD_FINAL}),
    **{s: frozenset() for s in LEAD_FINAL},
}


class AttemptStatus(enum.StrEnum):
    QUEUED = "queued"
    DIALING = "dialing"
    # The request was sent and its fate is unknown (read timeout, 5xx): never re-sent.
    AMBIGUOUS = "ambiguous"
    ORIGINATED = "originated"
    AGENT_ANSWERED = "agent_answered"
    CUSTOMER_ANSWERED = "customer_answered"
    COMPLETED = "completed"
    FAILED = "failed"
    NO_ANSWER = "no_answer"
    BUSY = "busy"
    AGENT_MISSED = "agent_missed"
    LOST = "lost"
    CANCELLED = "cancelled"


ATTEMPT_FINAL = frozenset(
    {
        AttemptStatus.COMPLETED,
        AttemptStatus.FAILED,
        AttemptStatus.NO_ANSWER,
        AttemptStatus.BUSY,
        AttemptStatus.AGENT_MISSED,
        AttemptStatus.LOST,
        AttemptStatus.CANCELLED,
    }
)

# Attempts that were handed to Acefone (or may have been) and are not settled yet.
ATTEMPT_LIVE = frozenset(
    {
        AttemptStatus.DIALING,
        AttemptStatus.AMBIGUOUS,
        AttemptStatus.ORIGINATED,
        AttemptStatus.AGENT_ANSWERED,
        AttemptStatus.CUSTOMER_ANSWERED,
    }
)

_CALL_ENDINGS = frozenset(ATTEMPT_FINAL - {AttemptStatus.CANCELLED})

ATTEMPT_TRANSITIONS: dict[AttemptStatus, frozenset[AttemptStatus]] = {
    AttemptStatus.QUEUED: frozenset({AttemptStatus.DIALING, AttemptStatus.CANCELLED}),
    # dialing -> queued is the one step back: a retry-safe API failure (connect error, 429)
    # proved the call was never placed, so the same attempt may be sent again.
    AttemptStatus.DIALING: frozenset(
        {AttemptStatus.QUEUED, AttemptStatus.AMBIGUOUS, AttemptStatus.ORIGINATED, *ATTEMPT_LIVE, *_CALL_ENDINGS}
    )
    - {AttemptStatus.DIALING},
    AttemptStatus.AMBIGUOUS: frozenset(
        {AttemptStatus.ORIGINATED, AttemptStatus.AGENT_ANSWERED, AttemptStatus.CUSTOMER_ANSWERED, *_CALL_ENDINGS}
    ),
    AttemptStatus.ORIGINATED: frozenset(
        {AttemptStatus.AGENT_ANSWERED, AttemptStatus.CUSTOMER_ANSWERED, *_CALL_ENDINGS}
    ),
    AttemptStatus.AGENT_ANSWERED: frozenset({AttemptStatus.CUSTOMER_ANSWERED, *_CALL_ENDINGS}),
    AttemptStatus.CUSTOMER_ANSWERED: frozenset(_CALL_ENDINGS),
    **{s: frozenset() for s in ATTEMPT_FINAL},
}

# Progress order, used to tell "forward" from "backward" for out-of-order webhooks.
ATTEMPT_RANK: dict[AttemptStatus, int] = {
    AttemptStatus.QUEUED: 0,
    AttemptStatus.DIALING: 1,
    AttemptStatus.AMBIGUOUS: 2,
    AttemptStatus.ORIGINATED: 2,
    AttemptStatus.AGENT_ANSWERED: 3,
    AttemptStatus.CUSTOMER_ANSWERED: 4,
    **{s: 5 for s in ATTEMPT_FINAL},
}


def can_transition(table: dict[S, frozenset[S]], current: S, new: S) -> bool:
    """Tell whether `current -> new` is allowed by `table`."""
    return new in table[current]


def transition(table: dict[S, frozenset[S]], current: S, new: S) -> S:
    """Return `new` if the move is allowed, else raise IllegalTransition."""
    if new not in table[current]:
        raise IllegalTransition(f"{current.value} -> {new.value} is not allowed")
    return new
