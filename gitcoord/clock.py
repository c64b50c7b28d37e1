"""Time: one source of "now" (overridable for skew tests) and duration parsing."""

from __future__ import annotations

import os
import re
from datetime import datetime, timedelta, timezone

from .errors import UsageError

MAX_TTL = timedelta(days=30)
_TTL_RE = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def now() -> datetime:
    """The current time in UTC, whole seconds.

    `GITCOORD_CLOCK_OFFSET` (seconds, may be negative) shifts it: the test suite
    uses it to run sessions with skewed clocks, and it is the knob for a machine
    whose clock is known to be off.
    """
    t = datetime.now(timezone.utc).replace(microsecond=0)
    offset = os.environ.get("GITCOORD_CLOCK_OFFSET")
    if offset:
        try:
            t += timedelta(seconds=float(offset))
        except ValueError:
            raise UsageError(
                f"GITCOORD_CLOCK_OFFSET must be a number of seconds, not {offset!r}"
            ) from None
    return t


def message_id(t: datetime, entropy: str) -> str:
    """Time-sortable id: UTC to the millisecond, then random hex against same-ms ties."""
    t = t.astimezone(timezone.utc)
    return f"{t:%Y%m%dT%H%M%S}{t.microsecond // 1000:03d}Z-{entropy}"


def precise_now() -> datetime:
    """Like `now` but with milliseconds (message ids)."""
    t = datetime.now(timezone.utc)
    offset = os.environ.get("GITCOORD_CLOCK_OFFSET")
    if offset:
        t += timedelta(seconds=float(offset))
    return t


def parse_ttl(text: str) -> timedelta:
    """'30s', '10m', '2h', '1d' -> timedelta (bounded to 30 days)."""
    m = _TTL_RE.match(text.strip())
    if not m:
        raise UsageError(
            f"invalid duration {text!r}: use a number and a unit, e.g. 30s, 10m, 2h, 1d"
        )
    return _bounded(timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2)]), text)


def parse_since(text: str) -> datetime:
    """'2h' (that long ago) or an ISO date/time -> an aware datetime."""
    if _TTL_RE.match(text.strip()):
        return now() - parse_ttl(text)
    try:
        t = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"invalid --since {text!r}: use a duration back (30m, 2h, 1d) or an ISO date"
        ) from None
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def hours(value: float) -> timedelta:
    return _bounded(timedelta(hours=value), f"{value}h")


def _bounded(delta: timedelta, shown: str) -> timedelta:
    if delta <= timedelta(0):
        raise UsageError(f"duration {shown} must be positive")
    if delta > MAX_TTL:
        raise UsageError(f"duration {shown} is longer than the 30-day maximum")
    return delta


def iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def human_delta(delta: timedelta) -> str:
    """'1h05m', '3m', '45s' for a (non-negative) duration."""
    secs = int(abs(delta.total_seconds()))
    if secs < 60:
        return f"{secs}s"
    mins, _ = divmod(secs, 60)
    if mins < 60:
        return f"{mins}m"
    hrs, mins = divmod(mins, 60)
    if hrs < 48:
        return f"{hrs}h{mins:02d}m"
    return f"{hrs // 24}d{hrs % 24:02d}h"
