"""The day in hours: what the review page charts, read from the audit trail's entries.

`metrics` sums the whole history into a few figures; a person reviewing the day
also wants to see *when*: claims granted and collisions per hour (a refused claim
is a collision prevented, a grant over a live lease a work collision), each reply
time of the day, and each session's heartbeats per hour. Built from the same
`Entry`s that `log` returns, so every bar is as auditable as a line of the log.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from ..clock import iso
from .history import Entry
from .metrics import double_grants


def day(entries: Sequence[Entry], now: datetime, hours: int = 24) -> dict[str, Any]:
    """Hourly counts over the last `hours` hours up to `now` (oldest first), and the
    reply times of direct messages answered in that window.

    `entries` are newest first, as `log` reads them; those older than the window are
    ignored (replies to a message sent before the window are not counted: the
    window's own story)."""
    end = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    start = end - timedelta(hours=hours)
    inside = [e for e in entries if start <= e.time < end]

    def bucket(when: datetime) -> int:
        return int((when - start).total_seconds() // 3600)

    claims = [0] * hours
    prevented = [0] * hours
    collisions = [0] * hours
    beats: dict[str, list[int]] = defaultdict(lambda: [0] * hours)
    sent: dict[str, tuple[datetime, str, str]] = {}
    replies: list[dict[str, Any]] = []
    answered: set[str] = set()
    by_commit = {e.commit: e for e in inside}
    for e in reversed(inside):  # oldest first
        i = bucket(e.time)
        if e.op in ("claim", "takeover") and e.resource:
            claims[i] += 1
        prevented[i] += int(e.get("Gitcoord-Collisions") or 0)
        if e.get("Gitcoord-Heartbeat") and e.session:
            beats[e.session][i] += 1
        mid = e.get("Gitcoord-Message")
        if mid and e.session:
            sent[mid] = (e.time, e.session, e.get("Gitcoord-To") or "")
        answers = e.get("Gitcoord-Reply-To") or ""
        orig = sent.get(answers)
        first = answers not in answered
        if orig is not None and orig[2] != "broadcast" and e.session == orig[2] and first:
            answered.add(answers)
            replies.append(
                {
                    "message": answers,
                    "from": orig[1],
                    "by": e.session,
                    "at": iso(e.time),
                    "seconds": max(0.0, (e.time - orig[0]).total_seconds()),
                }
            )
    for found in double_grants(list(inside)):
        hit = by_commit.get(found["commit"])
        if hit is not None:
            collisions[bucket(hit.time)] += 1
    return {
        "start": iso(start),
        "hours": [iso(start + timedelta(hours=h)) for h in range(hours)],
        "claims_granted": claims,
        "collisions_prevented": prevented,
        "work_collisions": collisions,
        "heartbeats": dict(sorted(beats.items())),
        "replies": replies,
    }
