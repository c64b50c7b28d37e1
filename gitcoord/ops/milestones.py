"""Milestones: multi-step progress, as the founding plan's MILESTONES/."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ..domain import kinds, names
from ..domain.change import Change
from ..domain.models import (
    Milestone,
    Step,
)
from ..domain.state import State
from ..errors import ConflictError, RefusedError, UsageError
from .kernel import build, require_registered


def milestone_add(
    state: State, now: datetime, *, session: str | None, name: str, steps: tuple[str, ...]
) -> Change:
    me = require_registered(state, session)
    if not steps:
        raise UsageError("a milestone needs at least one --step")
    if name in state.milestones:
        raise ConflictError(f"milestone {name!r} already exists", milestone=name)
    doc: Milestone = build(
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
        writes={kinds.milestone_path(name): doc},
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
        writes={kinds.milestone_path(name): doc},
        result={"milestone": milestone_json(doc)},
    )


def milestone_json(m: Milestone) -> dict[str, Any]:
    return {**m.model_dump(mode="json"), "progress": round(m.progress * 100, 1)}
