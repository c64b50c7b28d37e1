"""The work board, as pure operations: prioritised tasks with dependencies, and milestones.

A task's holder is its claim (`claims/task/<id>.yaml`), never a field of the
task, so `claim task t3` and `next --claim` are ordinary claims and the board
cannot disagree with the claims. Task ids are `t1, t2, ...`: the next free
number of the state the transaction was planned on, so two sessions adding a
task at the same instant get different ids (the loser of the push re-plans).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from ..domain import kinds, names, rules
from ..domain.change import Change
from ..domain.models import (
    Task,
)
from ..domain.state import Doc, State
from ..errors import ConflictError, RefusedError
from .claims import claim
from .kernel import build, require_registered, require_speaker

PRIORITIES = ("P0", "P1", "P2", "P3")


def _number(task_id: str) -> int:
    return int(task_id[1:])


def next_task_id(state: State) -> str:
    return f"t{max((_number(t) for t in state.tasks), default=0) + 1}"


def _order(task: Task) -> tuple[int, datetime, int]:
    return PRIORITIES.index(task.priority), task.created_at, _number(task.id)


def task_json(state: State, task: Task, now: datetime) -> dict[str, Any]:
    held = state.claims.get(names.resource_key("task", task.id))
    status = rules.task_status(state, task, now)
    return {
        **task.model_dump(mode="json"),
        "status": status,
        "holder": held.holder if held is not None and status == "claimed" else None,
        "waiting_for": rules.waiting_for(state, task) if status == "blocked" else [],
    }


def board(state: State, now: datetime) -> list[Task]:
    return sorted(state.tasks.values(), key=_order)


def add(
    state: State,
    now: datetime,
    *,
    session: str | None,
    title: str,
    priority: str = "P2",
    depends_on: tuple[str, ...] = (),
    milestone: str | None = None,
    note: str = "",
    person: str | None = None,
) -> Change:
    author = require_speaker(state, session, person)
    missing = [d for d in depends_on if d not in state.tasks]
    if missing:
        raise RefusedError(f"unknown task(s) to depend on: {', '.join(missing)}", missing=missing)
    if milestone is not None and milestone not in state.milestones:
        raise RefusedError(
            f"no milestone {milestone!r}: add it with `gitcoord milestone add`", milestone=milestone
        )
    task_id = next_task_id(state)
    task: Task = build(
        Task,
        id=task_id,
        title=title,
        priority=priority,
        depends_on=list(dict.fromkeys(depends_on)),
        milestone=milestone,
        note=note,
        created_by=author,
        created_at=now,
    )
    return Change(
        "task-add",
        f"add task {task_id} [{priority}] by {author}: {title[:60]}",
        session=None if person is not None and session is None else author,
        resource=f"task/{task_id}",
        writes={kinds.task_path(task_id): task},
        trailers={"Gitcoord-Priority": priority},
        result={"task": task_json(state.apply({kinds.task_path(task_id): task}), task, now)},
    )


def prioritise(
    state: State,
    now: datetime,
    *,
    session: str | None,
    task_id: str,
    priority: str,
    person: str | None = None,
) -> Change:
    """Change a task's priority: its creator, or a person (an approver) — the human
    re-prioritises the board in the daily review."""
    author = require_speaker(state, session, person)
    task = state.tasks.get(task_id)
    if task is None:
        raise RefusedError(f"no task {task_id}", task=task_id)
    as_person = person is not None and session is None
    if not as_person and task.created_by != author:
        raise RefusedError(
            f"{task_id} was added by {task.created_by}: only its creator or an approver "
            "re-prioritises it",
            task=task_id,
        )
    if task.priority == priority:
        return Change(
            "task-priority",
            "priority",
            session=None if as_person else author,
            result={"task": task_json(state, task, now)},
        )
    new = task.model_copy(update={"priority": priority})
    return Change(
        "task-priority",
        f"re-prioritise {task_id} {task.priority} -> {priority} by {author}",
        session=None if as_person else author,
        resource=f"task/{task_id}",
        writes={kinds.task_path(task_id): new},
        trailers={"Gitcoord-Priority": priority},
        result={"task": task_json(state.apply({kinds.task_path(task_id): new}), new, now)},
    )


def done(state: State, now: datetime, *, session: str | None, task_id: str) -> Change:
    me = require_registered(state, session)
    task = state.tasks.get(task_id)
    if task is None:
        raise RefusedError(f"no task {task_id}", task=task_id)
    held = state.claims.get(names.resource_key("task", task_id))
    if task.done:
        return Change(
            "task-done", "done", session=me.id, result={"task": task_json(state, task, now)}
        )
    if held is None or held.holder != me.id or held.released_at is not None:
        who = (
            f"it is held by {held.holder}"
            if held and held.released_at is None
            else "claim it first"
        )
        raise RefusedError(
            f"task {task_id} can be marked done only by its holder: {who}", task=task_id
        )
    finished = task.model_copy(update={"done_by": me.id, "done_at": now})
    released = held.model_copy(update={"released_at": max(now, held.acquired_at)})
    writes: dict[str, Doc] = {
        kinds.task_path(task_id): finished,
        kinds.claim_path("task", task_id): released,
    }
    after = state.apply(writes)
    result: dict[str, Any] = {"task": task_json(after, finished, now)}
    milestone = after.milestones.get(task.milestone) if task.milestone else None
    if milestone is not None:  # a task counts towards its milestone
        result["milestone"] = {"name": milestone.name, **rules.milestone_progress(after, milestone)}
    return Change(
        "task-done",
        f"done {task_id} by {me.id}: {task.title[:60]}",
        session=me.id,
        resource=f"task/{task_id}",
        writes=writes,
        trailers={"Gitcoord-Generation": str(held.generation)},
        result=result,
    )


def next_task(
    state: State,
    now: datetime,
    *,
    session: str | None,
    take: bool = False,
    ttl: timedelta | None = None,
    any_role: bool = False,
) -> Change:
    """The most urgent ready task — among those whose title or note shares a word with
    this session's role first (`rules.role_match`), then the rest; `any_role`: the most
    urgent ready task, whatever the role."""
    me = require_registered(state, session)
    candidates = [t for t in board(state, now) if rules.task_status(state, t, now) == "ready"]
    matched = {t.id: rules.role_match(me.role, t) for t in candidates}
    if not any_role:
        # sorted() is stable: within each group the board's order (priority, age) holds
        candidates = sorted(candidates, key=lambda t: not matched[t.id])
    if not candidates:
        counts: dict[str, int] = {}
        for t in state.tasks.values():
            st = rules.task_status(state, t, now)
            counts[st] = counts.get(st, 0) + 1
        summary = ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "the board is empty"
        raise ConflictError(f"nothing left to do: {summary}", counts=counts)
    pick = candidates[0]
    fits = [] if any_role else matched[pick.id]
    if not take:
        return Change(
            "next",
            "next",
            session=me.id,
            result={"task": task_json(state, pick, now), "claimed": False, "role_words": fits},
        )
    change = claim(state, now, session=me.id, type_="task", name=pick.id, ttl=ttl)
    change.result = {
        "task": task_json(state.apply(change.writes), pick, now),
        "claimed": True,
        "claim": change.result["claim"],
        "role_words": fits,
    }
    return change


# --- milestones ----------------------------------------------------------------------
