"""Time: one source of "now" (overridable for skew tests) and duration parsing."""

from __future__ import annotations

import math
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
    return datetime.now(timezone.utc).replace(microsecond=0) + _offset()


def _offset() -> timedelta:
    offset = os.environ.get("GITCOORD_CLOCK_OFFSET")
    if not offset:
        return timedelta(0)
    try:
        seconds = float(offset)
        if abs(seconds) > 10 * 365 * 86400:  # NaN passes; timedelta() refuses it
            raise ValueError
        return timedelta(seconds=seconds)
    except (ValueError, OverflowError):
        raise UsageError(
            f"GITCOORD_CLOCK_OFFSET must be a number of seconds (within 10 years), not {offset!r}"
        ) from None


def message_id(t: datetime, entropy: str) -> str:
    """Time-sortable id: UTC to the millisecond, then random hex against same-ms ties."""
    t = t.astimezone(timezone.utc)
    return f"{t:%Y%m%dT%H%M%S}{t.microsecond // 1000:03d}Z-{entropy}"


def precise_now() -> datetime:
    """Like `now` but with milliseconds (message ids)."""
    return datetime.now(timezone.utc) + _offset()


def parse_ttl(text: str) -> timedelta:
    """'30s', '10m', '2h', '1d' -> timedelta (bounded to 30 days)."""
    m = _TTL_RE.match(text.strip())
    if not m:
        raise UsageError(
            f"invalid duration {text!r}: use a number and a unit, e.g. 30s, 10m, 2h, 1d"
        )
    return _bounded(float(m.group(1)) * _UNITS[m.group(2)], text)


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
    return _bounded(value * 3600, f"{value}h")


def _bounded(seconds: float, shown: str) -> timedelta:
    # Checked as a number first: timedelta() raises on NaN, infinity and huge values.
    if math.isnan(seconds):
        raise UsageError(f"duration {shown} is not a number")
    if seconds > MAX_TTL.total_seconds():
        raise UsageError(f"duration {shown} is longer than the 30-day maximum")
    delta = timedelta(seconds=seconds) if seconds > 0 else timedelta(0)
    if delta <= timedelta(0):
        raise UsageError(f"duration {shown} must be positive")
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
