"""State machines: which moves are allowed, which are refused, and that final states are final."""

from __future__ import annotations

import enum
from typing import Any

import pytest

from dialer.states import (
    ATTEMPT_FINAL,
    ATTEMPT_RANK,
    ATTEMPT_TRANSITIONS,
    CAMPAIGN_TRANSITIONS,
    LEAD_FINAL,
    LEAD_TRANSITIONS,
    AttemptStatus,
    CampaignState,
    IllegalTransition,
    LeadStatus,
    can_transition,
    transition,
)

C, L, A = CampaignState, LeadStatus, AttemptStatus

ALLOWED: list[tuple[dict[Any, frozenset[Any]], enum.Enum, enum.Enum]] = [
    (CAMPAIGN_TRANSITIONS, C.DRAFT, C.RUNNING),
    (CAMPAIGN_TRANSITIONS, C.DRAFT, C.SCHEDULED),
    (CAMPAIGN_TRANSITIONS, C.SCHEDULED, C.RUNNING),
    (CAMPAIGN_TRANSITIONS, C.RUNNING, C.PAUSED),
    (CAMPAIGN_TRANSITIONS, C.PAUSED, C.RUNNING),
    (CAMPAIGN_TRANSITIONS, C.RUNNING, C.COMPLETED),
    (CAMPAIGN_TRANSITIONS, C.PAUSED, C.CANCELLED),
    (LEAD_TRANSITIONS, L.PENDING, L.IN_CALL),
    (LEAD_TRANSITIONS, L.IN_CALL, L.PENDING),
    (LEAD_TRANSITIONS, L.IN_CALL, L.CONTACTED),
    (LEAD_TRANSITIONS, L.IN_CALL, L.EXHAUSTED),
    (LEAD_TRANSITIONS, L.PENDING, L.DNC),
    (LEAD_TRANSITIONS, L.PENDING, L.CANCELLED),
    (ATTEMPT_TRANSITIONS, A.QUEUED, A.DIALING),
    (ATTEMPT_TRANSITIONS, A.QUEUED, A.CANCELLED),
    (ATTEMPT_TRANSITIONS, A.DIALING, A.QUEUED),
    (ATTEMPT_TRANSITIONS, A.DIALING, A.AMBIGUOUS),
    (ATTEMPT_TRANSITIONS, A.DIALING, A.ORIGINATED),
    (ATTEMPT_TRANSITIONS, A.DIALING, A.AGENT_ANSWERED),
    (ATTEMPT_TRANSITIONS, A.DIALING, A.FAILED),
    (ATTEMPT_TRANSITIONS, A.AMBIGUOUS, A.ORIGINATED),
    (ATTEMPT_TRANSITIONS, A.AMBIGUOUS, A.NO_ANSWER),
    (ATTEMPT_TRANSITIONS, A.AMBIGUOUS, A.LOST),
    (ATTEMPT_TRANSITIONS, A.ORIGINATED, A.AGENT_ANSWERED),
    (ATTEMPT_TRANSITIONS, A.ORIGINATED, A.CUSTOMER_ANSWERED),
    (ATTEMPT_TRANSITIONS, A.AGENT_ANSWERED, A.CUSTOMER_ANSWERED),
    (ATTEMPT_TRANSITIONS, A.AGENT_ANSWERED, A.AGENT_MISSED),
    (ATTEMPT_TRANSITIONS, A.CUSTOMER_ANSWERED, A.COMPLETED),
    (ATTEMPT_TRANSITIONS, A.ORIGINATED, A.BUSY),
]

REFUSED: list[tuple[dict[Any, frozenset[Any]], enum.Enum, enum.Enum]] = [
    (CAMPAIGN_TRANSITIONS, C.DRAFT, C.PAUSED),
    (CAMPAIGN_TRANSITIONS, C.DRAFT, C.COMPLETED),
    (CAMPAIGN_TRANSITIONS, C.RUNNING, C.DRAFT),
    (CAMPAIGN_TRANSITIONS, C.SCHEDULED, C.DRAFT),
    (CAMPAIGN_TRANSITIONS, C.COMPLETED, C.RUNNING),
    (CAMPAIGN_TRANSITIONS, C.CANCELLED, C.RUNNING),
    (CAMPAIGN_TRANSITIONS, C.RUNNING, C.RUNNING),
    (LEAD_TRANSITIONS, L.CONTACTED, L.PENDING),
    (LEAD_TRANSITIONS, L.EXHAUSTED, L.PENDING),
    (LEAD_TRANSITIONS, L.DNC, L.PENDING),
    (LEAD_TRANSITIONS, L.CANCELLED, L.IN_CALL),
    (LEAD_TRANSITIONS, L.INVALID, L.PENDING),
    (LEAD_TRANSITIONS, L.PENDING, L.PENDING),
    # An ambiguous or originated call may have rung: it must never be queued (re-sent) again.
    (ATTEMPT_TRANSITIONS, A.AMBIGUOUS, A.QUEUED),
    (ATTEMPT_TRANSITIONS, A.AMBIGUOUS, A.DIALING),
    (ATTEMPT_TRANSITIONS, A.ORIGINATED, A.QUEUED),
    (ATTEMPT_TRANSITIONS, A.ORIGINATED, A.DIALING),
    (ATTEMPT_TRANSITIONS, A.DIALING, A.DIALING),
    (ATTEMPT_TRANSITIONS, A.DIALING, A.CANCELLED),
    (ATTEMPT_TRANSITIONS, A.QUEUED, A.ORIGINATED),
    (ATTEMPT_TRANSITIONS, A.QUEUED, A.COMPLETED),
    (ATTEMPT_TRANSITIONS, A.CUSTOMER_ANSWERED, A.AGENT_ANSWERED),
    (ATTEMPT_TRANSITIONS, A.AGENT_ANSWERED, A.ORIGINATED),
    (ATTEMPT_TRANSITIONS, A.COMPLETED, A.NO_ANSWER),
    (ATTEMPT_TRANSITIONS, A.NO_ANSWER, A.COMPLETED),
    (ATTEMPT_TRANSITIONS, A.LOST, A.COMPLETED),
]


def _id(value: Any) -> str:
    return value.value if isinstance(value, enum.Enum) else type(value).__name__


@pytest.mark.parametrize(("table", "current", "new"), ALLOWED, ids=lambda v: _id(v) if isinstance(v, enum.Enum) else "")
def test_allowed_transitions(table: dict[Any, frozenset[Any]], current: enum.Enum, new: enum.Enum) -> None:
    assert can_transition(table, current, new)
    assert transition(table, current, new) is new


@pytest.mark.parametrize(("table", "current", "new"), REFUSED, ids=lambda v: _id(v) if isinstance(v, enum.Enum) else "")
def test_refused_transitions_raise(table: dict[Any, frozenset[Any]], current: enum.Enum, new: enum.Enum) -> None:
    assert not can_transition(table, current, new)
    with pytest.raises(IllegalTransition) as info:
        transition(table, current, new)
    assert f"{current.value} -> {new.value}" in str(info.value)


@pytest.mark.parametrize(
    ("table", "states", "finals"),
    [
        (CAMPAIGN_TRANSITIONS, list(CampaignState), frozenset({C.COMPLETED, C.CANCELLED})),
        (LEAD_TRANSITIONS, list(LeadStatus), LEAD_FINAL),
        (ATTEMPT_TRANSITIONS, list(AttemptStatus), ATTEMPT_FINAL),
    ],
    ids=["campaign", "lead", "attempt"],
)
def test_final_states_have_no_exits(
    table: dict[Any, frozenset[Any]], states: list[enum.Enum], finals: frozenset[Any]
) -> None:
    assert set(table) == set(states), "every state has a row in its table"
    for final in finals:
        assert table[final] == frozenset()
        for target in states:
            with pytest.raises(IllegalTransition):
                transition(table, final, target)


def test_lead_finals_are_what_the_design_lists() -> None:
    assert LEAD_FINAL == {L.CONTACTED, L.EXHAUSTED, L.DNC, L.INVALID, L.CANCELLED}
    assert ATTEMPT_FINAL == {A.COMPLETED, A.FAILED, A.NO_ANSWER, A.BUSY, A.AGENT_MISSED, A.LOST, A.CANCELLED}


def test_attempt_moves_forward_except_the_one_retry_step() -> None:
    # dialing -> queued is the only step back (a connect error or 429 proved nothing was placed).
    backwards = [
        (current, new)
        for current, targets in ATTEMPT_TRANSITIONS.items()
        for new in targets
        if ATTEMPT_RANK[new] < ATTEMPT_RANK[current]
    ]
    assert backwards == [(A.DIALING, A.QUEUED)]
    assert all(ATTEMPT_RANK[f] == max(ATTEMPT_RANK.values()) for f in ATTEMPT_FINAL)
