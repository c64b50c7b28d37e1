"""Sessions: creating the branch (`init`) and registering a number, a role and a goal."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ..clock import iso
from ..domain import kinds, rules
from ..domain.change import Change
from ..domain.models import (
    FORMAT,
    Config,
    Milestone,
    Roster,
    Session,
    Task,
)
from ..domain.state import Doc, State
from ..errors import ConflictError, RefusedError, UsageError
from .kernel import build, require_initialised, require_registered


def init(
    state: State,
    now: datetime,
    *,
    slots: int = 12,
    lease_hours: float = 2.0,
    stale_after_minutes: int = 20,
    clock_skew_seconds: int = 60,
    approvers: tuple[str, ...] = (),
    require_approval: tuple[str, ...] = (),
    template: Any = None,
    session: str | None = None,
    approver_keys: dict[str, str] | None = None,
    require_signatures: bool = False,
) -> Change:
    if state.config is not None:
        result: dict[str, Any] = {"created": False, **_config_json(state.config)}
        had = state.roster.template if state.roster is not None else None
        result["template"] = had
        if template is not None and template.name != had:
            # Nothing is changed on a branch that exists, a template included: say so,
            # rather than let the session believe the roster, tasks and milestones are there.
            result["warnings"] = [
                f"--template {template.name} was NOT applied: this branch exists already "
                + (f"(from template {had})" if had else "(without a template)")
                + ", and a roster is set only when a branch is created. Start a branch of its "
                f"own with `gitcoord --ref NAME init --template {template.name}`, or add what "
                "you need to this one (`gitcoord task add`, `gitcoord milestone add`)"
            ]
        return Change("init", "init", result=result)
    if template is not None:
        slots = len(template.slots)
    config = build(
        Config,
        slots=slots,
        lease_hours=lease_hours,
        stale_after_minutes=stale_after_minutes,
        clock_skew_seconds=clock_skew_seconds,
        approvers=list(dict.fromkeys([*approvers, *(approver_keys or {})])),
        approver_keys=dict(approver_keys or {}),
        require_signatures=require_signatures,
        require_approval=list(require_approval),
        created_at=now,
    )
    writes: dict[str, Doc] = {kinds.config_path(): config}
    trailers = {"Gitcoord-Slots": str(slots)}
    if template is not None:
        writes.update(_seed(template, now, session or "gitcoord"))
        trailers["Gitcoord-Template"] = template.name
    return Change(
        "init",
        f"init coordination with {slots} slots"
        + (f" from template {template.name}" if template is not None else ""),
        writes=writes,
        trailers=trailers,
        result={
            "created": True,
            **_config_json(config),
            "template": getattr(template, "name", None),
        },
    )


def _seed(template: Any, now: datetime, creator: str) -> dict[str, Doc]:
    """The roster, milestones and tasks a template starts the branch with."""
    writes: dict[str, Doc] = {
        kinds.roster_path(): build(
            Roster, template=template.name, description=template.description, slots=template.slots
        )
    }
    for m in template.milestones:
        writes[kinds.milestone_path(m.name)] = build(
            Milestone,
            name=m.name,
            steps=m.step_docs(),
            created_by=creator,
            created_at=now,
        )
    ids = {t.key: f"t{i + 1}" for i, t in enumerate(template.tasks)}
    for t in template.tasks:
        writes[kinds.task_path(ids[t.key])] = build(
            Task,
            id=ids[t.key],
            title=t.title,
            priority=t.priority,
            depends_on=[ids[d] for d in t.depends_on],
            milestone=t.milestone,
            note=t.note,
            created_by=creator,
            created_at=now,
        )
    return writes


def _config_json(config: Config) -> dict[str, Any]:
    return {"config": config.model_dump(mode="json")}


def leave(state: State, now: datetime, *, session: str) -> Change:
    """The session goes: every claim it holds is released and its number is free again,
    in one commit. Its file stays (with `left_at`), as do its messages and heartbeats,
    so the history still says who did what; registering again brings it back."""
    config = require_initialised(state)
    me = state.sessions.get(session)
    if me is None:
        raise RefusedError(f"session {session!r} is not registered", session=session)
    if config.format < 2:
        raise RefusedError(
            f"this branch is at format {config.format}, and leaving needs format 2: run "
            "`gitcoord upgrade` (every session then needs a gitcoord that reads format 2)",
            format=config.format,
        )
    if me.left_at is not None:
        return Change(
            "leave",
            "leave",
            session=session,
            result={
                "session": me.model_dump(mode="json"),
                "released": [],
                "action": "already-left",
            },
        )
    writes: dict[str, Doc] = {}
    released = []
    for claim in sorted(state.claims.values(), key=lambda c: c.key):
        if claim.holder == me.id and claim.released_at is None:
            writes[kinds.claim_path(claim.type, claim.name)] = claim.model_copy(
                update={"released_at": max(now, claim.acquired_at)}
            )
            released.append(claim.key)
    left = me.model_copy(
        update={"left_at": max(now, me.registered_at), "updated_at": max(now, me.updated_at)}
    )
    writes[kinds.session_path(me.id)] = left
    return Change(
        "leave",
        f"leave {me.id} (#{me.number})"
        + (f", releasing {len(released)} claim(s)" if released else ""),
        session=me.id,
        resource=f"session/{me.id}",
        writes=writes,
        trailers={"Gitcoord-Number": str(me.number)},
        # one trailer per released claim: `metrics` replays them as releases
        repeated={"Gitcoord-Released": released},
        result={"session": left.model_dump(mode="json"), "released": released, "action": "left"},
    )


def reclaim_writes(
    state: State, now: datetime, *, target: str, by: str
) -> tuple[dict[str, Doc], list[str]]:
    """The files that reclaim `target`: its session left (reclaimed_by `by`), every
    claim it holds released (a tombstone: the generation carries on)."""
    me = state.sessions[target]
    writes: dict[str, Doc] = {}
    released = []
    for claim in sorted(state.claims.values(), key=lambda c: c.key):
        if claim.holder == target and claim.released_at is None:
            writes[kinds.claim_path(claim.type, claim.name)] = claim.model_copy(
                update={"released_at": max(now, claim.acquired_at), "lease_seconds": None}
            )
            released.append(claim.key)
    writes[kinds.session_path(target)] = me.model_copy(
        update={"left_at": max(now, me.registered_at), "reclaimed_by": by}
    )
    return writes, released


def reclaim(state: State, now: datetime, *, session: str | None, target: str) -> Change:
    """Reclaim `target`, a session not seen for reclaim_after_hours (plus the grace):
    its number is free again and its claims released, in one commit by `session`;
    the target reads who reclaimed it when it comes back."""
    config = require_initialised(state)
    me = require_registered(state, session)
    if config.format < 3:
        raise RefusedError(
            f"reclaiming needs format 3 (this branch is at {config.format}): `gitcoord upgrade`",
            format=config.format,
        )
    found = state.sessions.get(target)
    if found is None:
        raise RefusedError(f"no session {target}", session=target)
    if found.left_at is not None:
        return Change(
            "reclaim",
            "reclaim",
            session=me.id,
            result={"session": target, "released": [], "action": "already-gone"},
        )
    if target == me.id:
        raise UsageError("a session does not reclaim itself: `gitcoord leave`")
    if not rules.reclaimable(state, target, now):
        seen = rules.last_seen(state, target)
        raise RefusedError(
            f"{target} was seen at {seen:%Y-%m-%dT%H:%M:%SZ}: it can be reclaimed "
            f"{config.reclaim_after_hours:g} h after that (plus the clock-skew grace)",
            session=target,
            last_seen=iso(seen) if seen else None,
        )
    writes, released = reclaim_writes(state, now, target=target, by=me.id)
    return Change(
        "reclaim",
        f"reclaim {target} (#{found.number}) by {me.id}"
        + (f", releasing {len(released)} claim(s)" if released else ""),
        session=me.id,
        resource=f"session/{target}",
        writes=writes,
        trailers={"Gitcoord-Reclaimed": target, "Gitcoord-Number": str(found.number)},
        repeated={"Gitcoord-Released": released},
        result={
            "session": target,
            "number": found.number,
            "released": released,
            "action": "reclaimed",
        },
    )


def register(
    state: State,
    now: datetime,
    *,
    session: str,
    role: str | None,
    goal: str | None,
    number: int | None = None,
    key: str | None = None,
) -> Change:
    """`key`: this machine's public key, bound to the session (format 3) when it has
    none yet; a session bound to another key registers only from that key's machine
    (or after `key rotate` there, or an approver's `key revoke`)."""
    config = require_initialised(state)
    existing = state.present.get(session)  # one that left registers anew
    bound = _bound_key(state, config, session, key)
    free = state.free_numbers()
    if number is not None and not 1 <= number <= config.slots:
        raise UsageError(
            f"--number must be within 1..{config.slots}", free_numbers=free, slots=config.slots
        )
    roster = state.roster
    asked = number  # --number: the session chose its slot (and its role, with a template)
    suggested = None
    if number is None and existing is None and roster is not None:
        suggested = next((s.number for s in roster.slots if s.session == session), None)
        if suggested is not None:
            number = suggested  # its own slot (a conflict below if someone took it)
        else:
            # Prefer slots not suggested for a roster session that has yet to register;
            # when every free slot is, take the lowest (the suggestion is not a lock).
            waiting = {
                s.number for s in roster.slots if s.session and s.session not in state.present
            }
            free = [n for n in free if n not in waiting] or free
    reclaimed: dict[str, Doc] = {}
    if number is None and existing is None and not free and config.format >= 3:
        # All numbers taken: the one of the longest-unseen session that may be reclaimed.
        gone = [s for s in state.present.values() if rules.reclaimable(state, s.id, now)]
        if gone:
            oldest = min(gone, key=lambda s: (rules.last_seen(state, s.id) or now, s.number))
            reclaimed, _ = reclaim_writes(state, now, target=oldest.id, by=session)
            number = oldest.number
            state = state.apply({k: v for k, v in reclaimed.items()})
    if number is None:
        if existing is not None:
            number = existing.number
        elif free:
            number = free[0]
        else:
            raise ConflictError(
                f"all {config.slots} session numbers are taken (none unseen for "
                f"reclaim_after_hours: {config.reclaim_after_hours:g} h)",
                free_numbers=[],
                slots=config.slots,
            )
    holder = state.session_by_number(number)
    if holder is not None and holder.id != session:
        mine = (
            f" (the template's slot for {session}: --number N with --role and --goal takes "
            "another)"
            if suggested == number
            else ""
        )
        raise ConflictError(
            f"number {number} is taken by session {holder.id!r}{mine}; free numbers: "
            + (", ".join(map(str, free)) or "none"),
            number=number,
            holder=holder.id,
            free_numbers=free,
            path=kinds.session_path(holder.id),
        )
    slot = roster.slot(number) if roster is not None else None
    prior = existing or state.sessions.get(session)  # one coming back keeps its role
    given_role, given_goal = role, goal
    role = role if role is not None else (prior.role if prior else None)
    goal = goal if goal is not None else (prior.goal if prior else None)
    if slot is not None and existing is None:
        if (role is None or goal is None) and asked is None and suggested is None:
            # A template slot's role is taken when the session asks for the slot (--number)
            # or the slot is suggested for it, never as a side effect of which number
            # happened to be free (after a lost race, another slot's role, silently).
            raise UsageError(
                "a new session needs --role and --goal, or a template slot chosen with "
                "--number N; vacant: " + _vacant(state),
                session=session,
                vacant=[v.number for v in rules.vacant_slots(state)],
            )
        role = role if role is not None else slot.role
        goal = goal if goal is not None else slot.goal
    if slot is not None and existing is not None and number != existing.number:
        # Moving to another slot of a template (--number) takes that slot's role and goal,
        # unless the session gives its own, or had its own rather than its old slot's.
        before_slot = roster.slot(existing.number) if roster is not None else None
        if given_role is None and (before_slot is None or existing.role == before_slot.role):
            role = slot.role
        if given_goal is None and (before_slot is None or existing.goal == before_slot.goal):
            goal = slot.goal
    if role is None or goal is None:
        raise UsageError(
            "a new session needs --role and --goal (or a template slot: init --template)",
            session=session,
        )
    doc: Session = build(
        Session,
        id=session,
        number=number,
        role=role,
        goal=goal,
        registered_at=existing.registered_at if existing else now,
        updated_at=max(now, existing.registered_at) if existing else now,
        key=bound,
    )
    result = {"session": doc.model_dump(mode="json"), "created": existing is None}
    before = state.sessions.get(session)
    if existing is None and before is not None and before.reclaimed_by:
        # it comes back after being reclaimed: say by whom, once, as it registers
        result["was_reclaimed_by"] = before.reclaimed_by
        result["was_reclaimed_at"] = iso(before.left_at) if before.left_at else None
    if existing is not None and (existing.number, existing.role, existing.goal, existing.key) == (
        number,
        role,
        goal,
        bound,
    ):
        return Change("register", "register", session=session, result=result)
    verb = "register" if existing is None else "update"
    trailers = {"Gitcoord-Number": str(number)}
    if reclaimed:
        gone_id = next(s.id for p, s in reclaimed.items() if isinstance(s, Session))
        trailers["Gitcoord-Reclaimed"] = gone_id
        result["reclaimed"] = gone_id
    return Change(
        "register",
        f"{verb} {session} as #{number}"
        + (f", reclaiming it from {result.get('reclaimed')}" if reclaimed else ""),
        session=session,
        resource=f"session/{session}",
        writes={**reclaimed, kinds.session_path(session): doc},
        trailers=trailers,
        result=result,
    )


def _vacant(state: State) -> str:
    found = rules.vacant_slots(state)
    shown = "; ".join(f"{v.number}: {v.role}" for v in found[:12])
    return (shown + ("; ..." if len(found) > 12 else "")) or "none"


def _bound_key(state: State, config: Config, session: str, key: str | None) -> str | None:
    """The key the session's file holds after registering: the one bound already, else
    `key` (on a branch at format 3). Where signatures are required, registering from
    another key's machine is refused: only the bound key speaks for the session."""
    if config.format < 3:
        return None
    known = state.sessions.get(session)  # one that left keeps its key
    bound = known.key if known is not None else None
    if bound is None or key is None or bound == key:
        return bound or key
    if config.require_signatures:
        from ..sshsig import fingerprint

        raise RefusedError(
            f"session {session} is bound to key {fingerprint(bound)}, not this machine's "
            f"{fingerprint(key)}: register it from the machine that holds its key, run "
            "`gitcoord key rotate` there, or ask an approver: "
            f"gitcoord key revoke {session} --key '<this machine's public key>'",
            session=session,
            bound=fingerprint(bound),
            key=fingerprint(key),
        )
    return key  # nothing is signed-checked here yet: the session moved machines


def upgrade(state: State, now: datetime, *, session: str | None) -> Change:
    """Move the branch to this gitcoord's format (`models.FORMAT`), in one commit that
    changes only `format`; nothing to do when it is there already."""
    config = require_initialised(state)
    if session is not None:
        require_registered(state, session)
    if config.format >= FORMAT:
        return Change(
            "upgrade", "upgrade", session=session, result={"format": config.format, "from": None}
        )
    return Change(
        "upgrade",
        f"upgrade the branch from format {config.format} to {FORMAT}",
        session=session,
        writes={kinds.config_path(): config.model_copy(update={"format": FORMAT})},
        trailers={"Gitcoord-Format": str(FORMAT)},
        result={"format": FORMAT, "from": config.format},
    )
