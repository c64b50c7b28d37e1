"""Read-only rules about a State that several verbs and the validator share.

Which claims bind the same items as a new one, whether a board task may be claimed,
what status a task has, how far activation is: questions asked of a State, never
decisions that change it (those are `gitcoord.ops`).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from ..clock import iso
from ..errors import RefusedError
from . import names, overlap
from .models import Claim, Milestone, Slot, Task
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


def vacant_slots(state: State) -> list[Slot]:
    """The template's slots (roles) that no present session holds."""
    if state.roster is None:
        return []
    free = set(state.free_numbers())
    return [slot for slot in state.roster.slots if slot.number in free]


def milestone_progress(state: State, milestone: Milestone) -> dict[str, Any]:
    """How far a milestone is: its steps ticked and its tasks (tasks naming it) done,
    each counting one, so finishing a task moves its milestone as ticking a step does.
    `progress` is a percentage, one decimal."""
    steps_done = sum(1 for st in milestone.steps if st.done_at is not None)
    tasks = [t for t in state.tasks.values() if t.milestone == milestone.name]
    tasks_done = sum(1 for t in tasks if t.done)
    total = len(milestone.steps) + len(tasks)
    return {
        "progress": round((steps_done + tasks_done) / total * 100, 1) if total else 0.0,
        "steps_done": steps_done,
        "steps_total": len(milestone.steps),
        "tasks_done": tasks_done,
        "tasks_total": len(tasks),
    }


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


# Words that say nothing about which work fits whom (`role_match`).
_STOP = frozenset(
    [
        "and",
        "the",
        "for",
        "with",
        "all",
        "from",
        "into",
        "onto",
        "any",
        "each",
        "its",
        "our",
        "your",
        "their",
        "this",
        "that",
        "are",
        "per",
        "via",
        "not",
        "new",
        "more",
        "other",
        "session",
        "sessions",
    ]
)
_WORD_RE = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")


def _stem(word: str) -> str:
    if word.endswith("ing") and len(word) > 5:
        return word[:-3]
    if word.endswith("s") and not word.endswith("ss") and len(word) > 3:
        return word[:-1]
    return word


def words(text: str) -> set[str]:
    """The words of `text` that can say what work is about: lowercase, 3 letters or
    more, not all digits, not a stop word, a plural `s` or an `-ing` dropped; a
    hyphenated word counts whole and by its parts (`i-match`, `match`)."""
    found: set[str] = set()
    for token in _WORD_RE.findall(text.lower()):
        for word in {token, *token.split("-")}:
            if len(word) >= 3 and not word.isdigit() and word not in _STOP:
                found.add(_stem(word))
    return found


def role_match(role: str, task: Task) -> list[str]:
    """The words a task's title or note shares with a session's role: `next` offers a
    session the work its role speaks of first (`Services - I-MATCH Development` and
    `Complete i-match service`: i-match, match, service)."""
    return sorted(words(role) & words(f"{task.title} {task.note}"))


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
