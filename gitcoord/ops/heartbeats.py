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


def heartbeat(state: State, beat: Heartbeat, *, force: bool = False, hold: bool = False) -> Change:
    """Push the heartbeat when due; otherwise a no-op saying 'skipped' or 'deferred'.

    `hold` (the caller has a flusher on this machine, see `gitcoord.api.carry`): a beat
    that is due is not pushed on its own but held for heartbeat_min_seconds, to ride
    the next push of any session of this clone ('held', with `ride_within`). A change
    of ACTION (say, to blocked) and --force go now. A first beat may wait too: the
    session's registration vouches for it meanwhile."""
    me = require_registered(state, beat.session)
    last = state.heartbeats.get(me.id)
    due = "push" if force else heartbeat_due(state, beat)
    if due == "push" and hold and not force and (last is None or last.action == beat.action):
        due = "hold"
    result: dict[str, object] = {
        "heartbeat": beat.model_dump(mode="json"),
        "last_pushed_at": iso(last.at) if last else None,
        "action": {"push": "pushed", "skip": "skipped", "defer": "deferred", "hold": "held"}[due],
    }
    if due == "hold":
        result["ride_within"] = require_initialised(state).heartbeat_min_seconds
    if due != "push":
        return Change("heartbeat", "heartbeat", session=me.id, result=result)
    return _write(state, beat, result)


def ride(state: State, beat: Heartbeat) -> Change:
    """A beat kept in this clone, riding another's push: written when it is newer than
    the branch's (a no-op when the branch already says as much). Its session must
    still be registered here; the commit is the session's own, like any beat."""
    me = require_registered(state, beat.session)
    last = state.heartbeats.get(me.id)
    if last is not None and last.at >= beat.at:
        return Change("heartbeat", "heartbeat", session=me.id, result={"action": "skipped"})
    return _write(state, beat, {"action": "pushed", "rode": True})


def _write(state: State, beat: Heartbeat, result: dict[str, object]) -> Change:
    sid = beat.session
    return Change(
        "heartbeat",
        f"heartbeat {sid}: {beat.action} {beat.target} ({beat.phase}, {beat.progress}%)",
        session=sid,
        writes={kinds.heartbeat_path(sid, fmt=state.format): beat},
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
