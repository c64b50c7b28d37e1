"""Claims: leases with a fencing token. Claim, renew, release; takeover after expiry."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from ..clock import human_delta, iso
from ..domain import kinds, names, overlap, rules
from ..domain.change import Change
from ..domain.models import (
    Claim,
    Session,
)
from ..domain.state import Doc, State
from ..domain.transition import HANDOFF_OP, HANDOFF_TO
from ..errors import ConflictError, RefusedError, UsageError
from .approvals import request_approval
from .kernel import build, require_initialised, require_registered


def _claim_json(claim: Claim, now: datetime) -> dict[str, Any]:
    return {**claim.model_dump(mode="json"), "status": claim.status(now), "resource": claim.key}


def held_name(state: State, type_: str, name: str) -> str:
    """The name of `type_/name` on the branch: as given when a claim of that name is
    there (one made before the item grammar included), else a batch's items in their one
    spelling (`prospects:1..5` and `prospects:1-5` are one claim, `prospects:*` is
    `prospects`)."""
    if type_ != overlap.ITEMS_TYPE or names.resource_key(type_, name) in state.claims:
        return name
    return overlap.canonical(name)


def types_in_use(state: State) -> set[str]:
    """Claim types this branch knows: claimed before, or gated by approval."""
    used = {c.type for c in state.claims.values()}
    if state.config is not None:
        used.update(state.config.require_approval)
    return used


def check_new_type(state: State, type_: str, name: str) -> None:
    """A TYPE neither in use on the branch nor a common one is questioned (exit 2): most
    often it is a name typed first, `claim i-match task`. `--new-type` insists."""
    known = types_in_use(state) | set(names.COMMON_TYPES)
    if type_ in known:
        return
    used = sorted(types_in_use(state))
    shown = ", ".join(used) if used else "none yet"
    if name in known:
        raise UsageError(
            f"{type_!r} is not a claim type in use here: did you mean "
            f"`claim {name} {type_}`? (types in use: {shown}; to start a new type "
            f"{type_!r}, pass --new-type)",
            field="type",
            suggestion=f"claim {name} {type_}",
            types=used,
        )
    raise UsageError(
        f"claim type {type_!r} is new on this branch (types in use: {shown}; common: "
        f"{', '.join(names.COMMON_TYPES[:6])}, ...): check the spelling, or pass --new-type "
        "to start using it",
        field="type",
        types=used,
    )


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
    new_type: bool = True,
) -> Change:
    """`new_type`: whether a TYPE unknown to the branch may be started (the verb asks
    first, see `check_new_type`)."""
    me = require_registered(state, session)
    config = require_initialised(state)
    name = held_name(state, type_, name)
    if not new_type:
        check_new_type(state, type_, name)
    key = names.resource_key(type_, name)
    path = kinds.claim_path(type_, name)
    if ttl is not None and ttl > config.max_lease:
        # The verifier refuses a longer lease anyway (transition: "lease"); saying so here
        # is a clear usage error before anything is written.
        raise UsageError(
            f"a lease of {human_delta(ttl)} is longer than this branch's maximum of "
            f"{human_delta(config.max_lease)} (config max_lease_hours)",
            field="ttl",
        )
    # A default lease (lease_hours) longer than the maximum is cut to it, not refused:
    # the session asked for nothing unusual.
    ttl = ttl or min(config.lease, config.max_lease)
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
        rules.check_claimable(state, name, now)
    if op != "renew":
        for other in rules.overlapping(state, type_, name, now):
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
    # A claim waiting for approval keeps the resource until the request is decided, or
    # lapses: its lease starts only when granted (`approvals.grant_approval`).
    waits = gate is not None and op != "renew" and config.format >= 3
    expires = now + (min(config.approval_wait, config.max_lease) if waits else ttl)
    if op == "renew" and current is not None and current.lease_seconds is not None:
        waits, expires = True, current.expires_at  # still waiting: renewing sets the lease
    doc: Claim = build(
        Claim,
        type=type_,
        name=name,
        holder=me.id,
        generation=generation,
        acquired_at=acquired,
        expires_at=expires,
        lease_seconds=int(ttl.total_seconds()) if waits else None,
        renewed_at=now if op == "renew" else None,
        note=note if note is not None else (current.note if current and op == "renew" else ""),
        approval=gate,
        # Where it came from without a release, kept while the same holder renews it: the
        # previous holder's inbox tells it of a takeover, the receiver's of a handoff.
        handed_by=current.handed_by if current and op == "renew" else None,
        taken_from=(
            current.holder
            if current and op == "takeover" and config.format >= 3
            else (current.taken_from if current and op == "renew" else None)
        ),
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
        path=kinds.claim_path(current.type, current.name),
    )


def _own_claim(state: State, me: Session, type_: str, name: str) -> Claim:
    key = names.resource_key(type_, held_name(state, type_, name))
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
        writes={kinds.claim_path(current.type, current.name): doc},
        trailers={"Gitcoord-Generation": str(current.generation)},
        result={"claim": _claim_json(doc, now), "action": "released"},
    )


def handoff(
    state: State,
    now: datetime,
    *,
    session: str | None,
    type_: str,
    name: str,
    to: str,
    ttl: timedelta | None = None,
    note: str | None = None,
) -> Change:
    """Move a live claim this session holds to another present session, in one commit:
    the receiver holds it from now (a new lease: `ttl`, else the branch's default), the
    generation (fencing token) grows by one, and `handed_by` names the giver, so the
    receiver's inbox tells it (`Gitcoord-Op: handoff`, `Gitcoord-Handoff-To: <to>`; the
    verifier accepts this shape only from the holder of a live claim, `transition.py`)."""
    from .messages import resolve_session

    me = require_registered(state, session)
    config = require_initialised(state)
    if config.format < 3:
        raise RefusedError(
            f"this branch is at format {config.format}, and a handoff needs format 3: run "
            "`gitcoord upgrade` (every session then needs a gitcoord that reads format 3)",
            format=config.format,
        )
    current = _own_claim(state, me, type_, name)
    key = current.key
    if current.released_at is not None:
        raise RefusedError(f"{key} was released: claim it again to hand it off", resource=key)
    if current.expires_at <= now:
        raise RefusedError(
            f"your claim of {key} expired at {iso(current.expires_at)}: only a live claim is "
            f"handed off (`gitcoord renew {current.type} {current.name}` first)",
            resource=key,
        )
    if current.lease_seconds is not None:
        raise RefusedError(
            f"{key} is waiting for approval {current.approval}: hand it off once it is granted",
            resource=key,
            approval=current.approval,
        )
    receiver = resolve_session(state, to)
    if receiver == me.id:
        raise RefusedError(f"{key} is yours already: hand it to another session", resource=key)
    mine = [
        c.key
        for c in rules.overlapping(state, current.type, current.name, now)
        if c.holder == me.id
    ]
    if mine:
        raise RefusedError(
            f"you also hold {', '.join(mine)}, which covers some of what {key} covers: hand "
            "that off too, or release it, first",
            resource=key,
            overlapping=mine,
        )
    if ttl is not None and ttl > config.max_lease:
        raise UsageError(
            f"a lease of {human_delta(ttl)} is longer than this branch's maximum of "
            f"{human_delta(config.max_lease)} (config max_lease_hours)",
            field="ttl",
        )
    ttl = ttl or min(config.lease, config.max_lease)
    doc: Claim = build(
        Claim,
        **{
            **current.model_dump(),
            "holder": receiver,
            "generation": current.generation + 1,
            "acquired_at": now,
            "expires_at": now + ttl,
            "renewed_at": None,
            "note": note if note is not None else current.note,
            "handed_by": me.id,
            "taken_from": None,
        },
    )
    writes: dict[str, Doc] = {kinds.claim_path(current.type, current.name): doc}
    return Change(
        HANDOFF_OP,
        f"hand off {key} from {me.id} to {receiver}",
        session=me.id,
        resource=key,
        writes=writes,
        trailers={
            HANDOFF_TO: receiver,
            "Gitcoord-Generation": str(doc.generation),
            "Gitcoord-Expires": iso(doc.expires_at),
        },
        result={
            "claim": _claim_json(doc, now),
            "from": me.id,
            "to": receiver,
            "action": "handed-off",
        },
    )
