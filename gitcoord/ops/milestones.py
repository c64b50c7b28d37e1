"""Milestones: multi-step progress, as the founding plan's MILESTONES/.

A step may name who ticks it (`Step.by`): `human` — a listed approver, writing as a
person without a session (the founding registry's "Human approves final registry") —
or one session. Whoever ticked a step may untick it (`milestone undo`), as may an
approver; the verifier holds commits pushed by hand to the same rules
(`transition._check_milestone`). A milestone's progress counts its steps and its tasks
(`rules.milestone_progress`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ..domain import kinds, names, rules
from ..domain.change import Change
from ..domain.models import (
    Milestone,
    Step,
)
from ..domain.state import State
from ..errors import ConflictError, RefusedError, UsageError
from .kernel import build, require_initialised, require_registered, require_speaker


def _owners(steps: tuple[str, ...], by: tuple[str, ...]) -> dict[int, str]:
    """--by N=WHO (N: the step's number, 1-based) -> {index: who}."""
    found: dict[int, str] = {}
    for item in by:
        number, sep, who = item.partition("=")
        if not sep or not names.is_number(number) or not 1 <= int(number) <= len(steps):
            raise UsageError(
                f"--by {item!r}: give STEP=WHO, STEP a step's number (1..{len(steps)}) and "
                f"WHO `{names.HUMAN}` (an approver) or a session id, e.g. --by 3=human",
                field="by",
            )
        if who != names.HUMAN:
            names.check_session_id(who)
        found[int(number) - 1] = who
    return found


def milestone_add(
    state: State,
    now: datetime,
    *,
    session: str | None,
    name: str,
    steps: tuple[str, ...],
    by: tuple[str, ...] = (),
) -> Change:
    me = require_registered(state, session)
    if not steps:
        raise UsageError("a milestone needs at least one --step")
    owners = _owners(steps, by)
    if owners and require_initialised(state).format < 3:
        raise RefusedError(
            "a step that names who ticks it (--by) needs a branch at format 3 "
            "(`gitcoord upgrade`)",
            format=require_initialised(state).format,
        )
    if name in state.milestones:
        raise ConflictError(f"milestone {name!r} already exists", milestone=name)
    doc: Milestone = build(
        Milestone,
        name=name,
        steps=[{"name": s, "by": owners.get(i)} for i, s in enumerate(steps)],
        created_by=me.id,
        created_at=now,
    )
    return Change(
        "milestone-add",
        f"add milestone {name} ({len(steps)} steps) by {me.id}",
        session=me.id,
        resource=f"milestone/{name}",
        writes={kinds.milestone_path(name): doc},
        result={"milestone": milestone_json(doc, state)},
    )


def _step(found: Milestone, name: str, step: str) -> int:
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
    return index


def _who(state: State, session: str | None, person: str | None) -> tuple[str, bool]:
    """Who ticks: a registered session, or with no session an approver (a person)."""
    who = require_speaker(state, session, person)
    return who, session is None and person is not None


def may_tick(step: Step, who: str, as_person: bool) -> bool:
    """A step names who ticks it (`by`): `human` is any approver writing as a person,
    else that one session; a step that names no one, any session. An approver, as a
    person, may tick any step."""
    if as_person:
        return True
    return step.by is None or step.by == who


def milestone_done(
    state: State,
    now: datetime,
    *,
    session: str | None,
    name: str,
    step: str,
    person: str | None = None,
) -> Change:
    who, as_person = _who(state, session, person)
    found = state.milestones.get(name)
    if found is None:
        raise RefusedError(f"no milestone {name!r}", milestone=name)
    index = _step(found, name, step)
    current = found.steps[index]
    author = None if as_person else who
    if current.done_at is not None:
        return Change(
            "milestone-done",
            "done",
            session=author,
            result={"milestone": milestone_json(found, state)},
        )
    if not may_tick(current, who, as_person):
        whom = (
            "a human: a listed approver, without --session"
            if current.by == names.HUMAN
            else f"session {current.by}"
        )
        raise RefusedError(
            f"step {index + 1} of {name} ({current.name}) is ticked by {whom}, not by {who}",
            milestone=name,
            step=index + 1,
            by=current.by,
        )
    steps = list(found.steps)
    steps[index] = current.model_copy(update={"done_by": who, "done_at": now})
    doc = found.model_copy(update={"steps": steps})
    return Change(
        "milestone-done",
        f"milestone {name}: step {index + 1} done by {who} ({current.name[:50]})",
        session=author,
        resource=f"milestone/{name}",
        writes={kinds.milestone_path(name): doc},
        result={"milestone": milestone_json(doc, state)},
    )


def milestone_undo(
    state: State,
    now: datetime,
    *,
    session: str | None,
    name: str,
    step: str,
    person: str | None = None,
) -> Change:
    """Untick a step: whoever ticked it, or an approver (as a person)."""
    who, as_person = _who(state, session, person)
    found = state.milestones.get(name)
    if found is None:
        raise RefusedError(f"no milestone {name!r}", milestone=name)
    index = _step(found, name, step)
    current = found.steps[index]
    author = None if as_person else who
    if current.done_at is None:
        return Change(
            "milestone-undo",
            "undo",
            session=author,
            result={"milestone": milestone_json(found, state)},
        )
    if not as_person and current.done_by != who:
        raise RefusedError(
            f"step {index + 1} of {name} ({current.name}) was ticked by {current.done_by}: "
            "only they (or an approver) untick it",
            milestone=name,
            step=index + 1,
            done_by=current.done_by,
        )
    steps = list(found.steps)
    steps[index] = current.model_copy(update={"done_by": None, "done_at": None})
    doc = found.model_copy(update={"steps": steps})
    return Change(
        "milestone-undo",
        f"milestone {name}: step {index + 1} undone by {who} ({current.name[:50]})",
        session=author,
        resource=f"milestone/{name}",
        writes={kinds.milestone_path(name): doc},
        result={"milestone": milestone_json(doc, state)},
    )


def milestone_json(m: Milestone, state: State | None = None) -> dict[str, Any]:
    """The milestone with its progress: its steps and, given the state, its tasks."""
    return {**m.model_dump(mode="json"), **rules.milestone_progress(state or State(), m)}
