"""Read-only rules about a State that several verbs and the validator share.

Which claims bind the same items as a new one, whether a board task may be claimed,
what status a task has, how far activation is: questions asked of a State, never
decisions that change it (those are `gitcoord.ops`).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from ..clock import iso
from ..errors import RefusedError
from . import names, overlap
from .models import Claim, Task
from .state import State


def overlapping(state: State, type_: str, name: str, now: datetime) -> list[Claim]:
    """Claims of other names that cover some of the same paths or items and still bind."""
    skew = state.config.skew if state.config else timedelta(0)
    return [
        c
        for c in state.claims.values()
        if c.type == type_
        and c.name != name
        and not c.takeable(now, skew)
        and overlap.overlaps(type_, c.name, name)
    ]


def activation_status(state: State) -> dict[str, Any]:
    config = state.config
    slots = config.slots if config else 0
    registry = sorted(
        (a for a in state.approvals.values() if a.kind == "registry"), key=lambda a: a.id
    )
    granted = next((a for a in registry if a.status == "approved"), None)
    chosen = granted or (registry[-1] if registry else None)
    return {
        "active": state.activation is not None,
        "registered": len(state.present),
        "slots": slots,
        "approval": "approved" if granted else ("pending" if registry else "not requested"),
        "approval_id": chosen.id if chosen else None,
    }


def task_status(state: State, task: Task, now: datetime) -> str:
    """done / claimed (binding claim) / blocked (a dependency not done) / ready."""
    if task.done:
        return "done"
    held = state.claims.get(names.resource_key("task", task.id))
    skew = state.config.skew if state.config else timedelta(0)
    if held is not None and not held.takeable(now, skew):
        return "claimed"
    if waiting_for(state, task):
        return "blocked"
    return "ready"


def waiting_for(state: State, task: Task) -> list[str]:
    """The dependencies of `task` not done yet. One that names no task counts as not done
    (the validator refuses it, but a reader must not crash on a branch it has not judged)."""
    return [d for d in task.depends_on if d not in state.tasks or not state.tasks[d].done]


def check_claimable(state: State, task_id: str, now: datetime) -> None:
    """Refuse claiming a board task that is done or still waits for dependencies."""
    task = state.tasks.get(task_id)
    if task is None:
        return  # `claim task <name>` of work not on the board is an ordinary claim
    if task.done:
        raise RefusedError(f"task {task_id} is already done", task=task_id)
    waiting = waiting_for(state, task)
    if waiting:
        raise RefusedError(
            f"task {task_id} waits for {', '.join(waiting)} to be done",
            task=task_id,
            waiting=waiting,
        )


def path_violations(
    state: State, now: datetime, session: str | None, paths: list[tuple[str, str]]
) -> list[dict[str, Any]]:
    """Each path (given, relative to the repository's top) inside a binding path claim
    of a session other than `session`, with the first such claim: what `guard`, the
    pre-commit hook and Claude Code's edit guard refuse."""
    skew = state.config.skew if state.config else timedelta(0)
    binding = [
        c
        for c in state.claims.values()
        if c.type == overlap.PATH_TYPE and c.holder != session and not c.takeable(now, skew)
    ]
    found = []
    for given, path in paths:
        claim = next((c for c in binding if overlap.path_in(c.name, path)), None)
        if claim is not None:
            found.append(
                {
                    "path": path,
                    "given": given,
                    "holder": claim.holder,
                    "claim": claim.name,
                    "expires_at": iso(claim.expires_at),
                    "generation": claim.generation,
                }
            )
    return found


def last_seen(state: State, session: str) -> datetime | None:
    """When the session was last heard of on the branch: its heartbeat or its
    registration, whichever is later."""
    found = state.sessions.get(session)
    if found is None:
        return None
    hb = state.heartbeats.get(session)
    return max(found.updated_at, hb.at) if hb is not None else found.updated_at


def reclaimable(state: State, session: str, now: datetime) -> bool:
    """Whether `session` may be reclaimed at `now`: present, and not seen for
    reclaim_after_hours plus the clock-skew grace (as an expired claim's takeover)."""
    config = state.config
    seen = last_seen(state, session)
    if config is None or seen is None or session not in state.present:
        return False
    return seen + timedelta(hours=config.reclaim_after_hours) + config.skew <= now
