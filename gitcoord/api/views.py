"""Views: the JSON documents that reading verbs return (`status --json` and friends).

Built from a State and a time, never from git: what `status` shows, the CLI prints
as text (`gitcoord.api.render`) and the MCP server returns as structured content.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .. import clock
from ..domain import health, rules
from ..domain.state import State


@dataclass(frozen=True)
class Snapshot:
    tip: str | None
    state: State
    where: str


def _natural(text: str) -> list[Any]:
    """Sort key that orders emails:6-10 before emails:11-15."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def _task_counts(state: State, now: datetime) -> dict[str, int]:

    counts: dict[str, int] = {}
    for t in state.tasks.values():
        st = rules.task_status(state, t, now)
        counts[st] = counts.get(st, 0) + 1
    return counts


def _session_json(state: State, sid: str, now: datetime) -> dict[str, Any]:
    session = state.sessions[sid]
    beat = state.heartbeats.get(sid)
    return {
        **session.model_dump(mode="json"),
        "heartbeat": beat.model_dump(mode="json", exclude={"session"}) if beat else None,
        "last_seen": clock.iso(health.last_seen(state, sid)),
        "stale": health.is_stale(state, sid, now),
    }


def health_json(
    snap: Snapshot, now: datetime, messages: health.MessageLog | None = None
) -> dict[str, Any]:
    """The health document of `gitcoord.domain.health` (its one-line text is "line"), for
    every face that shows one: `status`, `metrics`, the state page, the web page.
    `messages`: the history's last day (`gitcoord.api.verbs.reads.recent_messages`);
    None says nothing about replies."""
    return health.health(snap.state, now, messages)


def status_json(
    snap: Snapshot, now: datetime, messages: health.MessageLog | None = None
) -> dict[str, Any]:
    state = snap.state
    config = state.config
    sessions = sorted(state.present.values(), key=lambda s: s.number)
    claims = sorted(state.claims.values(), key=lambda c: _natural(c.key))
    sessions_json = [_session_json(state, s.id, now) for s in sessions]
    stale = {s["id"] for s in sessions_json if s["stale"]}
    from ..domain.validate import check_state

    return {
        "where": snap.where,
        "tip": snap.tip,
        "initialised": state.initialised,
        "slots": config.slots if config else None,
        "registered": len(sessions),
        "free_numbers": state.free_numbers(),
        "sessions": sessions_json,
        "claims": [
            {
                **c.model_dump(mode="json"),
                "resource": c.key,
                "status": state.claim_status(c, now),
                "holder_stale": c.holder in stale,
            }
            for c in claims
        ],
        "stale_after_minutes": config.stale_after_minutes if config else None,
        "activation": rules.activation_status(state),
        "template": state.roster.template if state.roster else None,
        # the template's roles no present session holds: `register --number N` takes one
        "vacant": [
            {"number": v.number, "role": v.role, "goal": v.goal, "session": v.session}
            for v in rules.vacant_slots(state)
        ],
        "milestones": [
            {"name": m.name, "steps": len(m.steps), **rules.milestone_progress(state, m)}
            for _, m in sorted(state.milestones.items())
        ],
        "tasks": _task_counts(state, now),
        "approvals_pending": sorted(
            a.id for a in state.approvals.values() if a.status == "pending"
        ),
        "problems": [p.to_json() for p in check_state(state)],
        "health": health_json(snap, now, messages) if state.initialised else None,
    }
