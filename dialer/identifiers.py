"""custom_identifier: `c<campaign>-l<lead>-a<attempt_no>`, the key every webhook of a call carries."""

from __future__ import annotations

import re
from dataclasses import dataclass

_PATTERN = re.compile(r"c([1-9][0-9]{0,17})-l([1-9][0-9]{0,17})-a([1-9][0-9]{0,5})")


@dataclass(frozen=True)
class CallKey:
    campaign_id: int
    lead_id: int
    attempt_no: int

    def __str__(self) -> str:
        return f"c{self.campaign_id}-l{self.lead_id}-a{self.attempt_no}"


def format_identifier(*, campaign_id: int, lead_id: int, attempt_no: int) -> str:
    """Build the custom_identifier sent to Acefone for one attempt."""
    return str(CallKey(campaign_id, lead_id, attempt_no))


def parse_identifier(value: str | None) -> CallKey | None:
    """Parse a custom_identifier strictly; anything else (placeholders, junk) is None."""
    if not value:
        return None
    m = _PATTERN.fullmatch(value.strip())
    if m is None:
        return None
    return CallKey(int(m.group(1)), int(m.group(2)), int(m.group(3)))
