"""The work board: tasks with priorities and dependencies, `next`, and milestones."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from ...errors import RefusedError
from .. import render
from ..verb import REQUIRED, Param, Verb, wrote
from .claims import HOURS, TTL, lease

if TYPE_CHECKING:
    from ..coordinator import Coordinator

TASK_ID = Param("task_id", str, "The task, e.g. t3.", REQUIRED, positional=True, metavar="ID")
PRIORITIES = ("P0", "P1", "P2", "P3")
STATUSES = ("open", "ready", "claimed", "blocked", "done", "all")


def _task_add(
    c: Coordinator,
    title: str,
    priority: str = "P2",
    depends_on: list[str] | tuple[str, ...] = (),
    milestone: str | None = None,
    note: str = "",
) -> Any:
    from ... import clock
    from ...domain import names
    from ...ops import board

    for d in depends_on:
        names.check_task_id(d)
    if milestone is not None:
        names.check_milestone(milestone)
    person = c.store.identity.email if c.session is None else None  # an approver
    return c.transact(
        lambda s: board.add(
            s,
            clock.now(),
            session=c.session,
            title=title,
            priority=priority,
            depends_on=tuple(depends_on),
            milestone=milestone,
            note=note,
            person=person,
        )
    )


TASK_ADD = Verb(
    "task add",
    "Add a task; it gets the next short id (t1, t2, ...).",
    _task_add,
    lambda doc: (
        f"added {doc['task']['id']} [{doc['task']['priority']}] {doc['task']['title']} "
        f"({doc['task']['status']})"
    ),
    (
        Param("title", str, "One line.", REQUIRED, positional=True, metavar="TITLE"),
        Param("priority", str, "P0 urgent .. P3 low.", "P2", choices=PRIORITIES, show_default=True),
        Param("depends_on", list, "A task that must be done first; repeatable.", (), metavar="ID"),
        Param("milestone", str, "The milestone this task belongs to.", metavar="NAME"),
        Param("note", str, "Details.", "", metavar="TEXT"),
    ),
    details="Without --session, a listed approver adds it as a person (created_by: their "
    "e-mail), signed by their own key.",
)


def _task_priority(c: Coordinator, task_id: str, priority: str) -> Any:
    from ... import clock
    from ...domain import names
    from ...ops import board

    names.check_task_id(task_id)
    person = c.store.identity.email if c.session is None else None
    return c.transact(
        lambda s: board.prioritise(
            s, clock.now(), session=c.session, task_id=task_id, priority=priority, person=person
        )
    )


TASK_PRIORITY = Verb(
    "task priority",
    "Re-prioritise task ID (its creator, or an approver without --session).",
    _task_priority,
    lambda doc: wrote(
        doc,
        f"{doc['task']['id']} is now {doc['task']['priority']}: {doc['task']['title']}",
        f"{doc['task']['id']} was {doc['task']['priority']} already",
    ),
    (
        Param("task_id", str, "The task, e.g. t3.", REQUIRED, positional=True, metavar="ID"),
        Param(
            "priority",
            str,
            "P0 urgent .. P3 low.",
            REQUIRED,
            positional=True,
            choices=PRIORITIES,
            metavar="P0|P1|P2|P3",
        ),
    ),
    idempotent=True,
)


def _task_list(c: Coordinator, status: str = "open") -> list[dict[str, Any]]:
    from ... import clock
    from ...ops import board

    _, state = c.store.snapshot()
    now = clock.now()
    rows = [board.task_json(state, t, now) for t in board.board(state, now)]
    if status == "open":
        return [r for r in rows if r["status"] != "done"]
    if status != "all":
        return [r for r in rows if r["status"] == status]
    return rows


TASK_LIST = Verb(
    "task list",
    "Tasks by priority, oldest first within a priority, with holder and blockers.",
    _task_list,
    lambda doc: render.tasks(doc["tasks"]),
    (Param("status", str, "Which tasks.", "open", choices=STATUSES, show_default=True),),
    writes=False,
    session=False,
    to_json=lambda rows: {"tasks": rows},
)


def _task_show(c: Coordinator, task_id: str) -> dict[str, Any]:
    from ... import clock
    from ...domain import names
    from ...ops import board

    names.check_task_id(task_id)
    _, state = c.store.snapshot()
    found = state.tasks.get(task_id)
    if found is None:
        raise RefusedError(f"no task {task_id}", task=task_id)
    result: dict[str, Any] = board.task_json(state, found, clock.now())
    return result


TASK_SHOW = Verb(
    "task show",
    "One task, with its status, holder and what it waits for.",
    _task_show,
    lambda doc: render.task(doc["task"]),
    (TASK_ID,),
    writes=False,
    session=False,
    to_json=lambda task: {"task": task},
)


def _task_done(c: Coordinator, task_id: str) -> Any:
    from ... import clock
    from ...domain import names
    from ...ops import board

    names.check_task_id(task_id)
    return c.transact(lambda s: board.done(s, clock.now(), session=c.session, task_id=task_id))


TASK_DONE = Verb(
    "task done",
    "Mark a task you hold done (and release its claim), in one commit.",
    _task_done,
    lambda doc: wrote(
        doc,
        f"done {doc['task']['id']}: {doc['task']['title']}"
        + (
            f" (milestone {doc['milestone']['name']}: {doc['milestone']['progress']}%)"
            if doc.get("milestone")
            else ""
        ),
        f"{doc['task']['id']} was already done",
    ),
    (TASK_ID,),
    idempotent=True,
)


def _next(
    c: Coordinator,
    claim: bool = False,
    ttl: str | timedelta | None = None,
    hours: float | None = None,
    any_role: bool = False,
) -> Any:
    from ... import clock
    from ...ops import board

    length = lease(ttl, hours)
    return c.transact(
        lambda s: board.next_task(
            s, clock.now(), session=c.session, take=claim, ttl=length, any_role=any_role
        )
    )


def _next_text(doc: dict[str, Any]) -> str:
    t = doc["task"]
    text = f"{t['id']} [{t['priority']}] {t['title']}"
    if doc.get("claimed"):
        c = doc["claim"]
        text = f"claimed {text} until {c['expires_at']} (generation {c['generation']})"
    if doc.get("role_words"):
        text += f"  (your role: {', '.join(doc['role_words'])})"
    return text


NEXT = Verb(
    "next",
    "The highest-priority ready task: not done, not claimed, dependencies done.",
    _next,
    _next_text,
    (
        Param("claim", bool, "Claim it in the same transaction (no one else gets it).", False),
        TTL,
        HOURS,
        Param(
            "any_role",
            bool,
            "The most urgent ready task, whatever this session's role.",
            False,
            flag="--any",
        ),
    ),
    details="Tasks whose title or note shares a word with this session's role come first "
    "(by priority, then age), then the others: a session registered as `Services - I-MATCH "
    "Development` is offered `Complete i-match service` before `Complete SSL/domain setup`. "
    "Words are compared lowercase, of 3 letters or more, without a plural s or -ing; "
    "`role_words` in the result says which matched. --any ignores the role.\n\n"
    "With --claim, two sessions asking at once get two different tasks (or exit 3 when "
    "nothing is left).",
)

MILESTONE = Param("name", str, "The milestone's name.", REQUIRED, positional=True, metavar="NAME")


def _milestone_add(
    c: Coordinator,
    name: str,
    steps: list[str] | tuple[str, ...] = (),
    by: list[str] | tuple[str, ...] = (),
) -> Any:
    from ... import clock
    from ...domain import names
    from ...ops import milestones

    names.check_milestone(name)
    return c.transact(
        lambda s: milestones.milestone_add(
            s, clock.now(), session=c.session, name=name, steps=tuple(steps), by=tuple(by)
        )
    )


MILESTONE_ADD = Verb(
    "milestone add",
    "Add a milestone with its steps.",
    _milestone_add,
    lambda doc: (
        f"added milestone {doc['milestone']['name']} with {len(doc['milestone']['steps'])} steps"
    ),
    (
        MILESTONE,
        Param(
            "steps", list, "A step; repeatable, in order.", REQUIRED, flag="--step", metavar="TEXT"
        ),
        Param(
            "by",
            list,
            "STEP=WHO: step number STEP (1-based) is ticked only by WHO, `human` (a listed "
            "approver, without --session) or a session id; repeatable.",
            (),
            metavar="STEP=WHO",
        ),
    ),
    details="Example: gitcoord milestone add activation --step 'All sessions registered' "
    "--step 'Human approves final registry' --by 2=human\n\n"
    "A milestone's progress counts its steps and its tasks (task add --milestone NAME).",
)


def _milestone_step(verb: str) -> Any:
    def run(c: Coordinator, name: str, step: str) -> Any:
        from ... import clock
        from ...domain import names
        from ...ops import milestones

        names.check_milestone(name)
        person = c.store.identity.email if c.session is None else None  # an approver
        op = milestones.milestone_done if verb == "done" else milestones.milestone_undo
        return c.transact(
            lambda s: op(s, clock.now(), session=c.session, name=name, step=step, person=person)
        )

    return run


STEP = Param(
    "step", str, "The step's text or its number.", REQUIRED, positional=True, metavar="STEP"
)

MILESTONE_DONE = Verb(
    "milestone done",
    "Mark STEP (its text or its number, 1-based) of milestone NAME done.",
    _milestone_step("done"),
    lambda doc: f"{doc['milestone']['name']}: {doc['milestone']['progress']}% done",
    (MILESTONE, STEP),
    details="A step added with --by STEP=human is ticked by a person: a listed approver, "
    "without --session (by their git e-mail and own key); a step --by SESSION only by that "
    "session. Undo with `milestone undo`.",
    idempotent=True,
)

MILESTONE_UNDO = Verb(
    "milestone undo",
    "Untick STEP of milestone NAME: whoever ticked it, or an approver (without --session).",
    _milestone_step("undo"),
    lambda doc: f"{doc['milestone']['name']}: {doc['milestone']['progress']}% done",
    (MILESTONE, STEP),
    idempotent=True,
    destructive=True,
)


def _milestone_list(c: Coordinator) -> list[dict[str, Any]]:
    from ...ops import milestones

    _, state = c.store.snapshot()
    return [milestones.milestone_json(m, state) for _, m in sorted(state.milestones.items())]


MILESTONE_LIST = Verb(
    "milestone list",
    "Milestones with their progress.",
    _milestone_list,
    lambda doc: render.milestones(doc["milestones"]),
    writes=False,
    session=False,
    to_json=lambda rows: {"milestones": rows},
)

VERBS = (
    TASK_ADD,
    TASK_LIST,
    TASK_SHOW,
    TASK_DONE,
    TASK_PRIORITY,
    NEXT,
    MILESTONE_ADD,
    MILESTONE_DONE,
    MILESTONE_UNDO,
    MILESTONE_LIST,
)
