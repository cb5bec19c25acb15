"""Campaign rules: the calling window in each lead's zones, and the per-outcome retry policy."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

OUTCOMES = ("no_answer", "busy", "failed", "agent_missed", "lost")
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
END_OF_DAY = dt.time(23, 59, 59, 999999)

# agent_missed is the agent's fault, not the lead's: it never counts (DESIGN.md, outcome policy).
DEFAULT_RULES: dict[str, dict[str, Any]] = {
    "no_answer": {"delay": 3600, "counts": True},
    "busy": {"delay": 900, "counts": True},
    "failed": {"delay": 3600, "counts": True},
    "agent_missed": {"delay": 60, "counts": False},
    "lost": {"delay": 1800, "counts": True},
}


class PolicyError(ValueError):
    """A window, day list, duration or policy file that cannot be understood."""


def parse_duration(text: str) -> int:
    """Parse `90`, `90s`, `30m`, `2h`, `1d` or `1h30m` into seconds."""
    t = text.strip().lower()
    if t.isdigit():
        return int(t)
    parts = re.fullmatch(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", t)
    if not t or parts is None:
        raise PolicyError(f"cannot read duration {text!r}: use e.g. 90s, 30m, 2h, 1h30m")
    d, h, m, s = (int(x or 0) for x in parts.groups())
    return d * 86400 + h * 3600 + m * 60 + s


def parse_window(text: str) -> tuple[dt.time, dt.time]:
    """Parse `09:00-20:00` (end exclusive; `24:00` allowed) into (start, end)."""
    m = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*", text)
    if m is None:
        raise PolicyError(f"cannot read window {text!r}: use HH:MM-HH:MM, e.g. 09:00-20:00")
    h1, m1, h2, m2 = (int(x) for x in m.groups())
    try:
        start = dt.time(h1, m1)
        end = END_OF_DAY if (h2, m2) == (24, 0) else dt.time(h2, m2)
    except ValueError as exc:
        raise PolicyError(f"cannot read window {text!r}: {exc}") from None
    if end <= start:
        raise PolicyError(f"window {text!r} ends before it starts (overnight windows are not supported)")
    return start, end


def parse_days(text: str) -> list[int]:
    """Parse `mon-fri`, `mon,wed,fri` or `mon-sun` into ISO weekday numbers."""
    days: set[int] = set()
    for part in text.lower().replace(" ", "").split(","):
        a, _, b = part.partition("-")
        if a not in DAY_NAMES or (b and b not in DAY_NAMES):
            raise PolicyError(f"cannot read days {text!r}: use e.g. mon-fri or mon,wed,fri")
        i, j = DAY_NAMES.index(a), DAY_NAMES.index(b or a)
        span = range(i, j + 1) if i <= j else [*range(i, 7), *range(0, j + 1)]
        days.update(k + 1 for k in span)
    return sorted(days)


def parse_time(text: str, zone: str, name: str = "time") -> dt.datetime:
    """Parse an ISO time (`2026-12-01T09:00`, `2026-12-01 09:00`); naive times are in `zone`."""
    try:
        when = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise PolicyError(f"{name} {text!r} is not a time such as 2026-12-01T09:00") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=ZoneInfo(check_zone(zone)))
    return when.astimezone(dt.UTC)


def check_zone(name: str) -> str:
    """Return `name` if it is a known IANA zone, else raise PolicyError."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise PolicyError(f"unknown time zone {name!r}: use an IANA name such as Europe/London") from None
    return name


@lru_cache(maxsize=64)
def _holidays(country: str) -> Any:
    import holidays

    return holidays.country_holidays(country)


def is_holiday(country: str | None, day: dt.date) -> bool:
    """Tell whether `day` is a public holiday in `country` (ISO alpha-2; None: never)."""
    return country is not None and day in _holidays(country)


def check_country(code: str) -> str:
    """Return an upper-cased country code the `holidays` package knows, else raise PolicyError."""
    import holidays

    upper = code.strip().upper()
    if upper not in holidays.list_supported_countries():
        raise PolicyError(f"no public-holiday calendar for country {code!r}: use an ISO code such as GB")
    return upper


@dataclass(frozen=True)
class CallingWindow:
    start: dt.time
    end: dt.time
    days: tuple[int, ...]
    holidays_country: str | None = None

    def _day_allowed(self, day: dt.date) -> bool:
        return day.isoweekday() in self.days and not is_holiday(self.holidays_country, day)

    def _open_in(self, local: dt.datetime) -> bool:
        return self._day_allowed(local.date()) and self.start <= local.time() < self.end

    def is_open(self, now: dt.datetime, zones: list[str]) -> bool:
        """Tell whether `now` is inside the window in every one of the zones (fail closed)."""
        return bool(zones) and all(self._open_in(now.astimezone(ZoneInfo(z))) for z in zones)

    def next_opening(self, now: dt.datetime, zones: list[str]) -> dt.datetime | None:
        """Return the first instant >= now at which the window holds in every zone, or None."""
        if self.is_open(now, zones):
            return now
        # Candidates: each zone's window starts over the next 8 days; the earliest one that is
        # open everywhere wins. Zones of one number share a clock in practice, so this is short.
        candidates: list[dt.datetime] = []
        for z in zones:
            tz = ZoneInfo(z)
            local_day = now.astimezone(tz).date()
            # Three weeks covers a weekly pattern plus the longest run of holidays (Christmas).
            for k in range(22):
                day = local_day + dt.timedelta(days=k)
                if self._day_allowed(day):
                    start = dt.datetime.combine(day, self.start, tzinfo=tz).astimezone(dt.UTC)
                    if start >= now:
                        candidates.append(start)
        for c in sorted(candidates):
            if self.is_open(c, zones):
                return c
        return None


def window_of(campaign: Any) -> CallingWindow:
    """Return the campaign's calling window."""
    return CallingWindow(
        campaign.window_start, campaign.window_end, tuple(campaign.days), getattr(campaign, "holidays_country", None)
    )


def merge_rules(overrides: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Return the full per-outcome policy: defaults with the campaign's overrides on top."""
    rules = {k: dict(v) for k, v in DEFAULT_RULES.items()}
    for outcome, rule in (overrides or {}).items():
        if outcome not in rules:
            raise PolicyError(f"unknown outcome {outcome!r} in policy: use one of {', '.join(OUTCOMES)}")
        if not isinstance(rule, dict):
            raise PolicyError(f"policy for {outcome!r} must be a table with delay, counts and max")
        if "delay" in rule:
            delay = rule["delay"]
            rules[outcome]["delay"] = parse_duration(str(delay)) if not isinstance(delay, int) else delay
        if "counts" in rule:
            rules[outcome]["counts"] = _flag(rule["counts"], f"{outcome}.counts")
        if "max" in rule:
            # A cap on attempts that end this way (e.g. stop after 5 busy), under max_attempts.
            try:
                cap = int(rule["max"])
            except (TypeError, ValueError):
                raise PolicyError(f"{outcome}.max must be a whole number, not {rule['max']!r}") from None
            if cap < 1:
                raise PolicyError(f"{outcome}.max must be at least 1")
            rules[outcome]["max"] = cap
        unknown = set(rule) - {"delay", "counts", "max"}
        if unknown:
            raise PolicyError(f"unknown setting {sorted(unknown)[0]!r} for {outcome!r}: use delay, counts, max")
    return rules


_TRUE = frozenset({"true", "yes", "1", "on"})
_FALSE = frozenset({"false", "no", "0", "off"})


def _flag(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE | _FALSE:
        return text in _TRUE
    raise PolicyError(f"{name} must be true or false, not {value!r}")


def retry_delay_policy(seconds: int) -> dict[str, dict[str, Any]]:
    """Return overrides that set every outcome's redial delay to `seconds` (`--retry-delay`)."""
    return {k: {"delay": seconds} for k in OUTCOMES}
