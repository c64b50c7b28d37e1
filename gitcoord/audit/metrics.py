"""The founding plan's success metrics, computed from the branch history alone.

Work collisions (replaying every grant and release), collisions prevented,
takeovers, message reply times and heartbeat uptime: each read back from the
commits' trailers (`gitcoord.audit.history`), so the numbers are as auditable as
the history itself.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from .. import clock
from ..domain import health, overlap
from ..domain.state import State
from . import replies
from .history import Entry


def _percentile(values: list[float], pct: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(pct / 100 * len(ordered)) - 1))  # nearest rank
    return ordered[rank]


def uptime(
    beats: list[datetime], start: datetime, end: datetime, window: timedelta
) -> float | None:
    """Fraction of [start, end] covered by [beat, beat + window) intervals."""
    total = (end - start).total_seconds()
    if total <= 0:
        return None
    covered = 0.0
    reach = start
    for beat in sorted(b for b in beats if b <= end):
        lo = max(beat, reach)
        hi = min(beat + window, end)
        if hi > lo:
            covered += (hi - lo).total_seconds()
            reach = hi
    return min(1.0, covered / total)


def _when(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _covers_common(a: str, b: str) -> bool:
    """Do resources `a` and `b` (TYPE/NAME) cover a common item or path? The claim
    check's own answer (`overlap.overlaps`), so `metrics` agrees with it."""
    type_a, _, name_a = a.partition("/")
    type_b, _, name_b = b.partition("/")
    return type_a == type_b and overlap.overlaps(type_a, name_a, name_b)


def double_grants(history: list[Entry]) -> list[dict[str, Any]]:
    """Replay every grant, renewal, handoff and release: a grant while another holder's
    lease on the same resource, or on one covering a common item or path, was live is a
    work collision. gitcoord's invariant is that there are none."""
    live: dict[str, tuple[str, datetime | None]] = {}  # resource -> (holder, expires)
    found = []
    for e in reversed(history):  # branch order, oldest first: commit times may be skewed
        res, who = e.resource, e.session
        if not res or not who:
            continue
        if e.op in ("claim", "takeover"):
            for other, (holder, expires) in sorted(live.items()):
                if holder == who or (expires is not None and expires <= e.time):
                    continue
                if other == res or _covers_common(other, res):
                    found.append(
                        {
                            "resource": res,
                            "holder": holder,
                            "granted_to": who,
                            "commit": e.commit,
                            **({} if other == res else {"overlaps": other}),
                        }
                    )
                    break
            live[res] = (who, _when(e.get("Gitcoord-Expires")))
        elif e.op == "handoff":  # the holder gives it: the receiver holds it from here
            to = e.get("Gitcoord-Handoff-To")
            if to:
                live[res] = (to, _when(e.get("Gitcoord-Expires")))
        elif e.op == "renew":
            live[res] = (who, _when(e.get("Gitcoord-Expires")))
        elif e.op == "release":
            live.pop(res, None)
        elif e.op in ("leave", "reclaim"):  # one commit releases every claim the session held
            for released in e.trailers.get("Gitcoord-Released", []):
                live.pop(released, None)
    return found


def _heartbeats(history: list[Entry]) -> dict[str, list[datetime]]:
    beats: dict[str, list[datetime]] = defaultdict(list)
    for e in history:
        value = e.get("Gitcoord-Heartbeat")
        if value and e.session:
            when = _when(value)
            if when is not None:
                beats[e.session].append(when)
    return beats


def figures(
    history: list[Entry],
    state: State,
    now: datetime,
    start: datetime | None = None,
    end: datetime | None = None,
    *,
    log: health.MessageLog | None = None,
    doubles: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The founding plan's figures over [start, end): None is from the first commit, and
    to now (commits dated a little after now, by a clock ahead, included).

    Counts are of commits in the span (a refused claim is counted by the commit that
    carries it to the branch); messages are those sent in it, answered whenever; each
    present session's uptime covers its part of the span since it registered."""
    log = replies.message_log(history) if log is None else log
    doubles = double_grants(history) if doubles is None else doubles
    when = {e.commit: e.time for e in history}
    inside = [e for e in history if _in_time(e.time, start, end)]
    until = now if end is None else min(end, now)
    stale = health.stale_after(state)

    beats = _heartbeats(history)
    per_session: dict[str, dict[str, Any]] = {}
    for sid, s in sorted(state.present.items(), key=lambda kv: kv[1].number):
        lo = s.registered_at if start is None else max(start, s.registered_at)
        up = uptime([s.registered_at, *beats.get(sid, [])], lo, until, stale)
        mine = beats.get(sid, [])
        per_session[sid] = {
            "number": s.number,
            "heartbeats": len(mine) if start is None else sum(_in_time(b, lo, end) for b in mine),
            "uptime": None if up is None else round(up, 4),
        }
    ups = [v["uptime"] for v in per_session.values() if v["uptime"] is not None]

    answers = replies.reply_figures(log, now, start, end)
    times = answers.pop("delays")
    collisions = [d for d in doubles if _in_time(when.get(d["commit"]), start, end)]
    return {
        "commits": len(inside),
        "claims_granted": sum(1 for e in inside if e.op in ("claim", "takeover")),
        "collisions_prevented": sum(int(e.get("Gitcoord-Collisions") or 0) for e in inside),
        "work_collisions": len(collisions),
        "takeovers_after_expiry": sum(1 for e in inside if e.op == "takeover"),
        "handoffs": sum(1 for e in inside if e.op == "handoff"),
        "messages": {
            **answers,
            "response_seconds_median": None if not times else statistics.median(times),
            "response_seconds_p95": _percentile(times, 95),
        },
        "heartbeat_uptime": {
            "stale_after_minutes": int(stale.total_seconds() // 60),
            "mean": None if not ups else round(sum(ups) / len(ups), 4),
            "lowest": None if not ups else min(ups),
            "sessions": per_session,
        },
        "targets": {
            "zero_work_collisions": not collisions,
            "response_under_5_min": None
            if answers["within_target_share"] is None
            else answers["within_target_share"] >= health.REPLY_TARGET_SHARE,
            "uptime_over_90": None if not ups else min(ups) > health.UPTIME_TARGET,
        },
    }


def _in_time(t: datetime | None, start: datetime | None, end: datetime | None) -> bool:
    return t is not None and (start is None or t >= start) and (end is None or t < end)


def days(start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    """[start, end) cut at UTC midnights."""
    spans = []
    lo = start
    while lo < end:
        midnight = lo.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
        hi = min(midnight, end)
        spans.append((lo, hi))
        lo = hi
    return spans


def metrics(
    history: list[Entry],
    state: State,
    now: datetime,
    start: datetime | None = None,
    end: datetime | None = None,
    label: str | None = None,
) -> dict[str, Any]:
    """All-time figures, "now" (the health document) and, given a start, the figures of
    [start, end) with one row per UTC day of it."""
    config = state.config
    log = replies.message_log(history)
    doubles = double_grants(history)
    every = figures(history, state, now, log=log, doubles=doubles)
    fresh = health.health(state, now, log)  # it looks at the last day of it
    for sid, row in every["heartbeat_uptime"]["sessions"].items():
        row["fresh_now"] = not health.is_stale(state, sid, now)
    every["heartbeat_uptime"]["now"] = fresh["sessions"]["fresh_share"]
    every["targets"]["all_registered"] = bool(config) and len(state.present) >= (
        config.slots if config else 0
    )
    doc: dict[str, Any] = {
        "registered": len(state.present),
        "slots": config.slots if config else None,
        "since": clock.iso(history[-1].time) if history else None,
        **every,
        "now": fresh,
    }
    if start is not None:
        stop = now if end is None or end >= now else end
        doc["period"] = {
            "label": label or f"since {clock.iso(start)}",
            "from": clock.iso(start),
            "to": clock.iso(stop),
            **figures(history, state, now, start, _open(stop, now), log=log, doubles=doubles),
        }
        doc["days"] = [
            {
                "day": f"{lo:%Y-%m-%d}",
                "from": clock.iso(lo),
                "to": clock.iso(hi),
                **figures(history, state, now, lo, _open(hi, now), log=log, doubles=doubles),
            }
            for lo, hi in days(start, stop)
        ]
    return doc


def _open(end: datetime, now: datetime) -> datetime | None:
    """A span that ends now is open: a commit dated a moment ahead belongs to it."""
    return None if end >= now else end
