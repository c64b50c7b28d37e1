"""Heartbeats: what a session is doing, pushed only when due (see the README)."""

from __future__ import annotations

from datetime import datetime

from ..clock import iso
from ..domain import kinds
from ..domain.change import Change
from ..domain.models import (
    Heartbeat,
)
from ..domain.state import State
from .kernel import build, require_initialised, require_registered


def heartbeat(state: State, beat: Heartbeat, *, force: bool = False) -> Change:
    """Push the heartbeat when due; otherwise a no-op saying 'skipped' or 'deferred'."""
    me = require_registered(state, beat.session)
    last = state.heartbeats.get(me.id)
    due = "push" if force else heartbeat_due(state, beat)
    result = {
        "heartbeat": beat.model_dump(mode="json"),
        "last_pushed_at": iso(last.at) if last else None,
        "action": {"push": "pushed", "skip": "skipped", "defer": "deferred"}[due],
    }
    if due != "push":
        return Change("heartbeat", "heartbeat", session=me.id, result=result)
    return Change(
        "heartbeat",
        f"heartbeat {me.id}: {beat.action} {beat.target} ({beat.phase}, {beat.progress}%)",
        session=me.id,
        writes={kinds.heartbeat_path(me.id, fmt=state.format): beat},
        trailers={"Gitcoord-Heartbeat": iso(beat.at)},
        result=result,
    )


def make_heartbeat(
    session: str, action: str, target: str, phase: str, progress: int, now: datetime
) -> Heartbeat:
    result: Heartbeat = build(
        Heartbeat,
        session=session,
        action=action,
        target=target,
        phase=phase,
        progress=progress,
        at=now,
    )
    return result


def heartbeat_due(state: State, beat: Heartbeat) -> str:
    """'push', 'skip' (unchanged and recent) or 'defer' (changed but too soon)."""
    config = require_initialised(state)
    last = state.heartbeats.get(beat.session)
    if last is None:
        return "push"
    age = (beat.at - last.at).total_seconds()
    same = (last.action, last.target, last.phase, last.progress) == (
        beat.action,
        beat.target,
        beat.phase,
        beat.progress,
    )
    if same and age < config.heartbeat_quiet_seconds:
        return "skip"
    if not same and age < config.heartbeat_min_seconds:
        return "defer"
    return "push"
