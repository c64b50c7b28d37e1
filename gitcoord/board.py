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

from . import names
from .errors import ConflictError, RefusedError, UsageError
from .models import Milestone, Step, Task
from .ops import Change, _build, claim, require_registered
from .state import Doc, State

PRIORITIES = ("P0", "P1", "P2", "P3")


def _number(task_id: str) -> int:
    return int(task_id[1:])


def next_task_id(state: State) -> str:
    return f"t{max((_number(t) for t in state.tasks), default=0) + 1}"


def task_status(state: State, task: Task, now: datetime) -> str:
    """done / claimed (binding claim) / blocked (a dependency not done) / ready."""
    if task.done:
        return "done"
    held = state.claims.get(names.resource_key("task", task.id))
    skew = state.config.skew if state.config else timedelta(0)
    if held is not None and not held.takeable(now, skew):
        return "claimed"
    if any(not (d in state.tasks and state.tasks[d].done) for d in task.depends_on):
        return "blocked"
    return "ready"


def _order(task: Task) -> tuple[int, datetime, int]:
    return PRIORITIES.index(task.priority), task.created_at, _number(task.id)


def task_json(state: State, task: Task, now: datetime) -> dict[str, Any]:
    held = state.claims.get(names.resource_key("task", task.id))
    status = task_status(state, task, now)
    return {
        **task.model_dump(mode="json"),
        "status": status,
        "holder": held.holder if held is not None and status == "claimed" else None,
        "waiting_for": [d for d in task.depends_on if not state.tasks[d].done]
        if status == "blocked"
        else [],
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
) -> Change:
    me = require_registered(state, session)
    missing = [d for d in depends_on if d not in state.tasks]
    if missing:
        raise RefusedError(f"unknown task(s) to depend on: {', '.join(missing)}", missing=missing)
    if milestone is not None and milestone not in state.milestones:
        raise RefusedError(
            f"no milestone {milestone!r}: add it with `gitcoord milestone add`", milestone=milestone
        )
    task_id = next_task_id(state)
    task: Task = _build(
        Task,
        id=task_id,
        title=title,
        priority=priority,
        depends_on=list(dict.fromkeys(depends_on)),
        milestone=milestone,
        note=note,
        created_by=me.id,
        created_at=now,
    )
    return Change(
        "task-add",
        f"add task {task_id} [{priority}] by {me.id}: {title[:60]}",
        session=me.id,
        resource=f"task/{task_id}",
        writes={names.task_path(task_id): task},
        trailers={"Gitcoord-Priority": priority},
        result={"task": task_json(state.apply({names.task_path(task_id): task}), task, now)},
    )


def check_claimable(state: State, task_id: str, now: datetime) -> None:
    """Refuse claiming a board task that is done or still waits for dependencies."""
    task = state.tasks.get(task_id)
    if task is None:
        return  # `claim task <name>` of work not on the board is an ordinary claim
    if task.done:
        raise RefusedError(f"task {task_id} is already done", task=task_id)
    waiting = [d for d in task.depends_on if not state.tasks[d].done]
    if waiting:
        raise RefusedError(
            f"task {task_id} waits for {', '.join(waiting)} to be done",
            task=task_id,
            waiting=waiting,
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
        names.task_path(task_id): finished,
        names.claim_path("task", task_id): released,
    }
    return Change(
        "task-done",
        f"done {task_id} by {me.id}: {task.title[:60]}",
        session=me.id,
        resource=f"task/{task_id}",
        writes=writes,
        trailers={"Gitcoord-Generation": str(held.generation)},
        result={"task": task_json(state.apply(writes), finished, now)},
    )


def next_task(
    state: State,
    now: datetime,
    *,
    session: str | None,
    take: bool = False,
    ttl: timedelta | None = None,
) -> Change:
    me = require_registered(state, session)
    candidates = [t for t in board(state, now) if task_status(state, t, now) == "ready"]
    if not candidates:
        counts: dict[str, int] = {}
        for t in state.tasks.values():
            st = task_status(state, t, now)
            counts[st] = counts.get(st, 0) + 1
        summary = ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "the board is empty"
        raise ConflictError(f"nothing left to do: {summary}", counts=counts)
    pick = candidates[0]
    if not take:
        return Change(
            "next",
            "next",
            session=me.id,
            result={"task": task_json(state, pick, now), "claimed": False},
        )
    change = claim(state, now, session=me.id, type_="task", name=pick.id, ttl=ttl)
    change.result = {
        "task": task_json(state.apply(change.writes), pick, now),
        "claimed": True,
        "claim": change.result["claim"],
    }
    return change


# --- milestones ----------------------------------------------------------------------


def milestone_add(
    state: State, now: datetime, *, session: str | None, name: str, steps: tuple[str, ...]
) -> Change:
    me = require_registered(state, session)
    if not steps:
        raise UsageError("a milestone needs at least one --step")
    if name in state.milestones:
        raise ConflictError(f"milestone {name!r} already exists", milestone=name)
    doc: Milestone = _build(
        Milestone,
        name=name,
        steps=[{"name": s} for s in steps],
        created_by=me.id,
        created_at=now,
    )
    return Change(
        "milestone-add",
        f"add milestone {name} ({len(steps)} steps) by {me.id}",
        session=me.id,
        resource=f"milestone/{name}",
        writes={names.milestone_path(name): doc},
        result={"milestone": milestone_json(doc)},
    )


def milestone_done(
    state: State, now: datetime, *, session: str | None, name: str, step: str
) -> Change:
    me = require_registered(state, session)
    found = state.milestones.get(name)
    if found is None:
        raise RefusedError(f"no milestone {name!r}", milestone=name)
    index = next((i for i, s in enumerate(found.steps) if s.name == step), None)
    if index is None and names.is_number(step) and 1 <= int(step) <= len(found.steps):
        index = int(step) - 1
    if index is None:
        raise RefusedError(
            f"milestone {name!r} has no step {step!r} (steps: "
            + "; ".join(f"{i + 1}. {s.name}" for i, s in enumerate(found.steps))
            + ")",
            milestone=name,
        )
    current = found.steps[index]
    if current.done_at is not None:
        return Change(
            "milestone-done", "done", session=me.id, result={"milestone": milestone_json(found)}
        )
    steps = list(found.steps)
    steps[index] = Step(name=current.name, done_by=me.id, done_at=now)
    doc = found.model_copy(update={"steps": steps})
    return Change(
        "milestone-done",
        f"milestone {name}: step {index + 1} done by {me.id} ({current.name[:50]})",
        session=me.id,
        resource=f"milestone/{name}",
        writes={names.milestone_path(name): doc},
        result={"milestone": milestone_json(doc)},
    )


def milestone_json(m: Milestone) -> dict[str, Any]:
    return {**m.model_dump(mode="json"), "progress": round(m.progress * 100, 1)}
