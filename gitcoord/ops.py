"""The verbs, as pure functions of a State: no git, no I/O, no clock of their own.

Each takes the state read from the tip and returns a `Change` (the files to
write, the audit subject and trailers, the result to report) or raises a
`GitcoordError`. The store calls them again on a fresh state whenever a push
loses a race, so every decision is re-made on what is true now: first push
wins, and the loser re-decides; nothing is ever merged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ValidationError

from . import names, overlap
from .clock import human_delta, iso
from .errors import ConflictError, InvalidError, RefusedError, UsageError
from .models import (
    Activation,
    Approval,
    Claim,
    Config,
    Heartbeat,
    Message,
    Milestone,
    ReadMark,
    Roster,
    Session,
    Task,
)
from .state import Doc, State


@dataclass
class Change:
    op: str
    subject: str
    session: str | None = None
    resource: str | None = None
    writes: dict[str, Doc] = field(default_factory=dict)
    trailers: dict[str, str] = field(default_factory=dict)
    result: dict[str, Any] = field(default_factory=dict)

    @property
    def noop(self) -> bool:
        return not self.writes


def _build(model: type[BaseModel], **fields: Any) -> Any:
    """Construct a document, turning a validation failure of user input into exit 5."""
    try:
        return model(**fields)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise InvalidError(f"invalid {where}: {err['msg']}", field=where) from None


def require_initialised(state: State) -> Config:
    if state.config is None:
        raise RefusedError(
            "the coordination branch is not initialised: run `gitcoord init` first",
            hint="gitcoord init",
        )
    return state.config


def require_registered(state: State, session: str | None) -> Session:
    require_initialised(state)
    if not session:
        raise RefusedError(
            "no session: pass --session ID or set GITCOORD_SESSION",
            hint="export GITCOORD_SESSION=<id>",
        )
    found = state.sessions.get(session)
    if found is None:
        raise RefusedError(
            f"session {session!r} is not registered: run "
            f"`gitcoord --session {session} register --role ROLE --goal GOAL` first",
            session=session,
        )
    return found


# --- init -----------------------------------------------------------------------


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
) -> Change:
    if state.config is not None:
        return Change("init", "init", result={"created": False, **_config_json(state.config)})
    if template is not None:
        slots = len(template.slots)
    config = _build(
        Config,
        slots=slots,
        lease_hours=lease_hours,
        stale_after_minutes=stale_after_minutes,
        clock_skew_seconds=clock_skew_seconds,
        approvers=list(approvers),
        require_approval=list(require_approval),
        created_at=now,
    )
    writes: dict[str, Doc] = {names.config_path(): config}
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
        names.roster_path(): _build(
            Roster, template=template.name, description=template.description, slots=template.slots
        )
    }
    for m in template.milestones:
        writes[names.milestone_path(m.name)] = _build(
            Milestone,
            name=m.name,
            steps=[{"name": s} for s in m.steps],
            created_by=creator,
            created_at=now,
        )
    ids = {t.key: f"t{i + 1}" for i, t in enumerate(template.tasks)}
    for t in template.tasks:
        writes[names.task_path(ids[t.key])] = _build(
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


# --- register ---------------------------------------------------------------------


def register(
    state: State,
    now: datetime,
    *,
    session: str,
    role: str | None,
    goal: str | None,
    number: int | None = None,
) -> Change:
    config = require_initialised(state)
    existing = state.sessions.get(session)
    free = state.free_numbers()
    if number is not None and not 1 <= number <= config.slots:
        raise UsageError(
            f"--number must be within 1..{config.slots}", free_numbers=free, slots=config.slots
        )
    roster = state.roster
    if number is None and existing is None and roster is not None:
        suggested = next((s.number for s in roster.slots if s.session == session), None)
        if suggested is not None:
            number = suggested  # its own slot (a conflict below if someone took it)
        else:
            # Prefer slots not suggested for a roster session that has yet to register;
            # when every free slot is, take the lowest (the suggestion is not a lock).
            waiting = {
                s.number for s in roster.slots if s.session and s.session not in state.sessions
            }
            free = [n for n in free if n not in waiting] or free
    if number is None:
        if existing is not None:
            number = existing.number
        elif free:
            number = free[0]
        else:
            raise ConflictError(
                f"all {config.slots} session numbers are taken", free_numbers=[], slots=config.slots
            )
    holder = state.session_by_number(number)
    if holder is not None and holder.id != session:
        raise ConflictError(
            f"number {number} is taken by session {holder.id!r}; free numbers: "
            + (", ".join(map(str, free)) or "none"),
            number=number,
            holder=holder.id,
            free_numbers=free,
            path=names.session_path(holder.id),
        )
    slot = roster.slot(number) if roster is not None else None
    role = role if role is not None else (existing.role if existing else None)
    goal = goal if goal is not None else (existing.goal if existing else None)
    if slot is not None and existing is None:
        role = role if role is not None else slot.role
        goal = goal if goal is not None else slot.goal
    if role is None or goal is None:
        raise UsageError(
            "a new session needs --role and --goal (or a template slot: init --template)",
            session=session,
        )
    doc: Session = _build(
        Session,
        id=session,
        number=number,
        role=role,
        goal=goal,
        registered_at=existing.registered_at if existing else now,
        updated_at=max(now, existing.registered_at) if existing else now,
    )
    result = {"session": doc.model_dump(mode="json"), "created": existing is None}
    if existing is not None and (existing.number, existing.role, existing.goal) == (
        number,
        role,
        goal,
    ):
        return Change("register", "register", session=session, result=result)
    verb = "register" if existing is None else "update"
    return Change(
        "register",
        f"{verb} {session} as #{number}",
        session=session,
        resource=f"session/{session}",
        writes={names.session_path(session): doc},
        trailers={"Gitcoord-Number": str(number)},
        result=result,
    )


# --- claims -------------------------------------------------------------------------


def _claim_json(claim: Claim, now: datetime) -> dict[str, Any]:
    return {**claim.model_dump(mode="json"), "status": claim.status(now), "resource": claim.key}


def claim(
    state: State,
    now: datetime,
    *,
    session: str | None,
    type_: str,
    name: str,
    ttl: timedelta | None = None,
    note: str | None = None,
    approval_id: str | None = None,
) -> Change:
    me = require_registered(state, session)
    config = require_initialised(state)
    key = names.resource_key(type_, name)
    path = names.claim_path(type_, name)
    ttl = ttl or config.lease
    current = state.claims.get(key)
    trailers: dict[str, str] = {}

    if current is None:
        op, generation, acquired = "claim", 1, now
        subject = f"claim {key} by {me.id}"
    elif current.holder == me.id and current.released_at is None:
        op, generation, acquired = "renew", current.generation, current.acquired_at
        subject = f"renew {key} by {me.id}"
    elif current.takeable(now, config.skew):
        op, generation, acquired = "claim", current.generation + 1, now
        subject = f"claim {key} by {me.id}"
        if current.released_at is None and current.holder != me.id:
            op = "takeover"
            subject = f"take over {key} from {current.holder} by {me.id}"
            trailers["Gitcoord-Takeover-From"] = current.holder
    else:
        raise _held(current, now, config.skew)
    if op != "renew" and type_ == "task" and name in state.tasks:
        from .board import check_claimable

        check_claimable(state, name, now)
    if op != "renew":
        for other in overlapping(state, type_, name, now):
            if other.holder != me.id:
                raise _held(other, now, config.skew, overlap_with=key)

    writes: dict[str, Doc] = {}
    gate = current.approval if (current and op == "renew") else None
    if op != "renew" and type_ in config.require_approval:
        if approval_id is None:
            raise UsageError(f"{type_} claims need approval: no approval id was generated")
        request = request_approval(
            state,
            now,
            session=me.id,
            approval_id=approval_id,
            subject=f"claim {key} by {me.id}",
            kind="claim",
            resource=key,
        )
        writes.update(request.writes)
        gate = approval_id
        trailers["Gitcoord-Approval"] = approval_id
    doc: Claim = _build(
        Claim,
        type=type_,
        name=name,
        holder=me.id,
        generation=generation,
        acquired_at=acquired,
        expires_at=now + ttl,
        renewed_at=now if op == "renew" else None,
        note=note if note is not None else (current.note if current and op == "renew" else ""),
        approval=gate,
    )
    writes[path] = doc
    trailers["Gitcoord-Generation"] = str(generation)
    trailers["Gitcoord-Expires"] = iso(doc.expires_at)
    return Change(
        op,
        subject,
        session=me.id,
        resource=key,
        writes=writes,
        trailers=trailers,
        result={
            "claim": {
                **_claim_json(doc, now),
                "status": state.apply(writes).claim_status(doc, now),
            },
            "action": op,
        },
    )


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


def _held(
    current: Claim, now: datetime, skew: timedelta, overlap_with: str | None = None
) -> ConflictError:
    if current.expires_at > now:
        why = f"until {iso(current.expires_at)} (in {human_delta(current.expires_at - now)})"
    else:
        why = (
            f"expired at {iso(current.expires_at)}, but can be taken over only after "
            f"{iso(current.expires_at + skew)} (clock-skew grace)"
        )
    what = current.key if overlap_with is None else f"{overlap_with} overlaps {current.key}, which"
    return ConflictError(
        f"{what} is held by {current.holder} {why}, generation {current.generation}",
        resource=current.key,
        holder=current.holder,
        expires_at=iso(current.expires_at),
        takeover_after=iso(current.expires_at + skew),
        generation=current.generation,
        path=names.claim_path(current.type, current.name),
    )


def _own_claim(state: State, me: Session, type_: str, name: str) -> Claim:
    key = names.resource_key(type_, name)
    current = state.claims.get(key)
    if current is None:
        raise RefusedError(f"{key} is not claimed", resource=key)
    if current.holder != me.id:
        raise RefusedError(
            f"{key} is held by {current.holder}, not by {me.id}",
            resource=key,
            holder=current.holder,
        )
    return current


def renew(
    state: State,
    now: datetime,
    *,
    session: str | None,
    type_: str,
    name: str,
    ttl: timedelta | None = None,
) -> Change:
    """Extend a claim this session holds; unlike `claim`, never acquires."""
    me = require_registered(state, session)
    current = _own_claim(state, me, type_, name)
    if current.released_at is not None:
        raise RefusedError(f"{current.key} was released; claim it again", resource=current.key)
    return claim(state, now, session=session, type_=type_, name=name, ttl=ttl)


def release(state: State, now: datetime, *, session: str | None, type_: str, name: str) -> Change:
    me = require_registered(state, session)
    current = _own_claim(state, me, type_, name)
    if current.released_at is not None:
        return Change(
            "release",
            "release",
            session=me.id,
            resource=current.key,
            result={"claim": _claim_json(current, now), "action": "already-released"},
        )
    doc = current.model_copy(update={"released_at": max(now, current.acquired_at)})
    return Change(
        "release",
        f"release {current.key} by {me.id}",
        session=me.id,
        resource=current.key,
        writes={names.claim_path(type_, name): doc},
        trailers={"Gitcoord-Generation": str(current.generation)},
        result={"claim": _claim_json(doc, now), "action": "released"},
    )


# --- heartbeats ---------------------------------------------------------------------


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
        writes={names.heartbeat_path(me.id): beat},
        trailers={"Gitcoord-Heartbeat": iso(beat.at)},
        result=result,
    )


def make_heartbeat(
    session: str, action: str, target: str, phase: str, progress: int, now: datetime
) -> Heartbeat:
    result: Heartbeat = _build(
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


# --- messages -----------------------------------------------------------------------


def resolve_recipient(state: State, to: str) -> str:
    """A session id, a session number, or 'broadcast' -> the folder name; exit 4 if unknown."""
    if to == names.BROADCAST:
        return to
    if names.is_number(to):
        found = state.session_by_number(int(to))
        if found is None:
            raise RefusedError(f"no session has number {to}", recipient=to)
        return found.id
    if to not in state.sessions:
        raise RefusedError(
            f"unknown recipient {to!r}: not a registered session id or number, nor 'broadcast'",
            recipient=to,
        )
    return to


def send(
    state: State,
    now: datetime,
    *,
    session: str | None,
    to: str,
    subject: str,
    body: str,
    message_id: str,
    original: Message | None = None,
    reply_to: str | None = None,
) -> Change:
    me = require_registered(state, session)
    recipient = resolve_recipient(state, to)
    if reply_to is not None and (
        original is None
        or not (original.to in (me.id, names.BROADCAST) or original.sender == me.id)
    ):
        raise RefusedError(f"no message {reply_to} that {me.id} could answer", reply_to=reply_to)
    msg: Message = _build(
        Message,
        id=message_id,
        sender=me.id,
        to=recipient,
        subject=subject,
        body=body,
        sent_at=now,
        reply_to=reply_to,
    )
    trailers = {"Gitcoord-Message": msg.id, "Gitcoord-To": recipient}
    if reply_to:
        trailers["Gitcoord-Reply-To"] = reply_to
    return Change(
        "send",
        f"send {msg.id} from {me.id} to {recipient}: {subject[:60]}",
        session=me.id,
        resource=f"message/{msg.id}",
        writes={names.message_path(recipient, msg.id): msg},
        trailers=trailers,
        result={"message": msg.model_dump(mode="json")},
    )


def mark_read(
    state: State, now: datetime, *, session: str, through: str, seen: ReadMark | None
) -> Change:
    """Move the read mark to `through`, unless another process of this session moved it."""
    me = require_registered(state, session)
    current = state.reads.get(me.id)
    if current != seen:
        return Change("read", "read", session=me.id)
    mark: ReadMark = _build(ReadMark, session=me.id, through=through, at=now)
    return Change(
        "read",
        f"read inbox of {me.id} through {through[:10]}",
        session=me.id,
        writes={names.read_path(me.id): mark},
        trailers={"Gitcoord-Read-Through": through},
    )


def state_page(state: State, now: datetime, *, session: str | None, page: bytes) -> Change:
    me = require_registered(state, session)
    return Change(
        "state",
        f"update CURRENT_STATE.md by {me.id}",
        session=me.id,
        writes={names.state_page_path(): page},
        result={"path": names.state_page_path()},
    )


# --- approvals and activation ------------------------------------------------------------


def request_approval(
    state: State,
    now: datetime,
    *,
    session: str | None,
    approval_id: str,
    subject: str,
    note: str = "",
    kind: str = "general",
    resource: str | None = None,
) -> Change:
    me = require_registered(state, session)
    if approval_id in state.approvals:
        raise ConflictError(f"approval {approval_id} already exists", approval=approval_id)
    doc: Approval = _build(
        Approval,
        id=approval_id,
        kind=kind,
        subject=subject,
        note=note,
        resource=resource,
        requested_by=me.id,
        requested_at=now,
    )
    return Change(
        "approval-request",
        f"request approval {approval_id} by {me.id}: {subject[:60]}",
        session=me.id,
        resource=f"approval/{approval_id}",
        writes={names.approval_path(approval_id): doc},
        trailers={"Gitcoord-Approval": approval_id},
        result={"approval": doc.model_dump(mode="json")},
    )


def approved(request: Approval, now: datetime, approver: str | None) -> Approval:
    return request.model_copy(
        update={"status": "approved", "approved_by": approver, "approved_at": now}
    )


def grant_approval(
    state: State, now: datetime, *, approval_id: str, approver: str, session: str | None
) -> Change:
    config = require_initialised(state)
    request = state.approvals.get(approval_id)
    if request is None:
        raise RefusedError(f"no approval request {approval_id}", approval=approval_id)
    if approver not in config.approvers:
        raise RefusedError(
            f"{approver or 'your git identity'} is not a listed approver "
            f"({', '.join(config.approvers) or 'none are listed: init --approver EMAIL'})",
            approver=approver,
        )
    if request.status == "approved":
        return Change(
            "approval-grant",
            "grant",
            session=session,
            result={"approval": request.model_dump(mode="json"), "action": "already-approved"},
        )
    doc = approved(request, now, approver)
    return Change(
        "approval-grant",
        f"approve {approval_id} ({request.subject[:50]}) by {approver}",
        session=session,
        resource=f"approval/{approval_id}",
        writes={names.approval_path(approval_id): doc},
        trailers={"Gitcoord-Approval": approval_id, "Gitcoord-Approver": approver},
        result={"approval": doc.model_dump(mode="json"), "action": "approved"},
    )


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
        "registered": len(state.sessions),
        "slots": slots,
        "approval": "approved" if granted else ("pending" if registry else "not requested"),
        "approval_id": chosen.id if chosen else None,
    }


def activate(state: State, now: datetime, *, session: str | None) -> Change:
    me = require_registered(state, session)
    info = activation_status(state)
    if state.activation is not None:
        return Change("activate", "activate", session=me.id, result={"activation": info})
    if info["registered"] < info["slots"] or info["approval"] != "approved":
        raise RefusedError(
            f"pending activation: {info['registered']}/{info['slots']} registered, "
            f"registry approval {info['approval']}",
            **info,
        )
    doc: Activation = _build(
        Activation,
        activated_at=now,
        activated_by=me.id,
        approval=info["approval_id"],
        sessions=info["registered"],
    )
    return Change(
        "activate",
        f"activate the registry ({info['registered']} sessions) by {me.id}",
        session=me.id,
        writes={names.activation_path(): doc},
        result={"activation": {**info, "active": True}},
    )
