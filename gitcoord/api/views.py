"""Views: the JSON documents that reading verbs return (`status --json` and friends).

Built from a State and a time, never from git: what `status` shows, the CLI prints
as text (`gitcoord.api.render`) and the MCP server returns as structured content.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from .. import clock
from ..domain import rules
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
    last = beat.at if beat else session.registered_at
    stale_after = timedelta(minutes=state.config.stale_after_minutes if state.config else 20)
    return {
        **session.model_dump(mode="json"),
        "heartbeat": beat.model_dump(mode="json", exclude={"session"}) if beat else None,
        "last_seen": clock.iso(last),
        "stale": now - last > stale_after,
    }


def status_json(snap: Snapshot, now: datetime) -> dict[str, Any]:
    state = snap.state
    config = state.config
    sessions = sorted(state.present.values(), key=lambda s: s.number)
    claims = sorted(state.claims.values(), key=lambda c: _natural(c.key))
    from ..domain.validate import check_state

    return {
        "where": snap.where,
        "tip": snap.tip,
        "initialised": state.initialised,
        "slots": config.slots if config else None,
        "registered": len(sessions),
        "free_numbers": state.free_numbers(),
        "sessions": [_session_json(state, s.id, now) for s in sessions],
        "claims": [
            {**c.model_dump(mode="json"), "resource": c.key, "status": state.claim_status(c, now)}
            for c in claims
        ],
        "stale_after_minutes": config.stale_after_minutes if config else None,
        "activation": rules.activation_status(state),
        "template": state.roster.template if state.roster else None,
        "milestones": [
            {"name": m.name, "progress": round(m.progress * 100, 1), "steps": len(m.steps)}
            for _, m in sorted(state.milestones.items())
        ],
        "tasks": _task_counts(state, now),
        "approvals_pending": sorted(
            a.id for a in state.approvals.values() if a.status == "pending"
        ),
        "problems": [p.to_json() for p in check_state(state)],
    }
