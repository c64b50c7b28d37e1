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

from ..domain.state import State
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


def double_grants(history: list[Entry]) -> list[dict[str, Any]]:
    """Replay every grant, renewal and release: a grant while another holder's lease
    was live is a work collision. gitcoord's invariant is that there are none."""
    live: dict[str, tuple[str, datetime | None]] = {}  # resource -> (holder, expires)
    found = []
    for e in reversed(history):  # branch order, oldest first: commit times may be skewed
        res, who = e.resource, e.session
        if not res or not who:
            continue
        if e.op in ("claim", "takeover"):
            current = live.get(res)
            if current and current[0] != who and (current[1] is None or current[1] > e.time):
                found.append(
                    {"resource": res, "holder": current[0], "granted_to": who, "commit": e.commit}
                )
            live[res] = (who, _when(e.get("Gitcoord-Expires")))
        elif e.op == "renew":
            live[res] = (who, _when(e.get("Gitcoord-Expires")))
        elif e.op == "release":
            live.pop(res, None)
        elif e.op == "leave":  # one commit releases every claim the session held
            for released in e.trailers.get("Gitcoord-Released", []):
                live.pop(released, None)
    return found


def metrics(history: list[Entry], state: State, now: datetime) -> dict[str, Any]:
    config = state.config
    stale = timedelta(minutes=config.stale_after_minutes if config else 20)

    collisions = sum(int(e.get("Gitcoord-Collisions") or 0) for e in history)
    takeovers = [e for e in history if e.op == "takeover"]
    claims = [e for e in history if e.op in ("claim", "takeover")]
    doubles = double_grants(history)

    sent: dict[str, tuple[datetime, str, str]] = {}  # id -> (time, sender, to)
    for e in history:
        mid = e.get("Gitcoord-Message")
        if mid and e.session:
            sent[mid] = (e.time, e.session, e.get("Gitcoord-To") or "")
    answered: dict[str, float] = {}
    for e in reversed(history):  # branch order, oldest first: commit times may be skewed
        orig_id = e.get("Gitcoord-Reply-To")
        orig = sent.get(orig_id or "")
        if orig_id is None or orig is None or orig_id in answered:
            continue
        otime, _osender, oto = orig
        if oto != "broadcast" and e.session == oto:
            answered[orig_id] = (e.time - otime).total_seconds()
    direct = [mid for mid, (_, _, to) in sent.items() if to != "broadcast"]
    times = list(answered.values())

    beats: dict[str, list[datetime]] = defaultdict(list)
    for e in history:
        value = e.get("Gitcoord-Heartbeat")
        if value and e.session:
            when = _when(value)
            if when is not None:
                beats[e.session].append(when)
    per_session = {}
    for sid, s in sorted(state.present.items(), key=lambda kv: kv[1].number):
        up = uptime([s.registered_at, *beats.get(sid, [])], s.registered_at, now, stale)
        per_session[sid] = {
            "number": s.number,
            "heartbeats": len(beats.get(sid, [])),
            "uptime": None if up is None else round(up, 4),
        }
    ups = [v["uptime"] for v in per_session.values() if v["uptime"] is not None]
    return {
        "registered": len(state.present),
        "slots": config.slots if config else None,
        "commits": len(history),
        "claims_granted": len(claims),
        "collisions_prevented": collisions,
        "work_collisions": len(doubles),
        "takeovers_after_expiry": len(takeovers),
        "messages": {
            "sent": len(sent),
            "direct": len(direct),
            "answered": len(times),
            "response_seconds_median": None if not times else statistics.median(times),
            "response_seconds_p95": _percentile(times, 95),
        },
        "heartbeat_uptime": {
            "stale_after_minutes": int(stale.total_seconds() // 60),
            "mean": None if not ups else round(sum(ups) / len(ups), 4),
            "sessions": per_session,
        },
        "targets": {
            "all_registered": bool(config)
            and len(state.present) >= (config.slots if config else 0),
            "zero_work_collisions": not doubles,
            "response_under_5_min": None if not times else (_percentile(times, 50) or 0) < 300,
            "uptime_over_90": None if not ups else min(ups) > 0.9,
        },
    }
