"""The one validator: every rule a coordination state must obey.

Used by the transaction (before anything is written), by `gitcoord validate`,
and by the hooks. Problems name the file and the rule they break.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from . import names
from .kinds import (
    ACTIVATION,
    APPROVAL,
    CLAIMS,
    CONFIG,
    HEARTBEAT,
    MESSAGE,
    MESSAGES,
    READ,
    SESSION,
)
from .rules import overlapping
from .state import Problem, Source, State, parse


def check_state(state: State, now: datetime | None = None) -> list[Problem]:
    """Every rule a state obeys. With `now`, also that no two binding claims of
    different holders overlap at that time (time-dependent, so optional)."""
    problems = list(state.problems)
    if state.config is None:
        if (state.sessions or state.claims) and not any(p.path == CONFIG.path() for p in problems):
            problems.append(Problem(CONFIG.path(), "layout", "missing or unreadable config"))
        return problems
    slots = state.config.slots

    by_number: dict[int, list[str]] = defaultdict(list)
    for sid, session in sorted(state.sessions.items()):
        if session.left_at is not None:
            if session.left_at < session.registered_at:
                problems.append(
                    Problem(SESSION.path(sid), "time-order", "left_at is before registered_at")
                )
            continue  # its number is free again: another session may hold it now
        by_number[session.number].append(sid)
        if session.number > slots:
            problems.append(
                Problem(
                    SESSION.path(sid),
                    "number-range",
                    f"number {session.number} is outside 1..{slots}",
                )
            )
        if session.updated_at < session.registered_at:
            problems.append(
                Problem(SESSION.path(sid), "time-order", "updated_at is before registered_at")
            )
    for number, ids in sorted(by_number.items()):
        for sid in ids[1:]:
            problems.append(
                Problem(
                    SESSION.path(sid),
                    "unique-number",
                    f"number {number} is also held by session {ids[0]!r}",
                )
            )

    for sid in sorted(state.heartbeats):
        if sid not in state.sessions:
            problems.append(
                Problem(HEARTBEAT.path(sid), "session-registered", f"{sid!r} not registered")
            )
    for sid in sorted(state.reads):
        if sid not in state.sessions:
            problems.append(
                Problem(READ.path(sid), "session-registered", f"{sid!r} not registered")
            )
    required = set(state.config.require_approval)
    for aid, request in sorted(state.approvals.items()):
        if request.requested_by not in state.sessions:
            problems.append(
                Problem(APPROVAL.path(aid), "session-registered", "requester not registered")
            )
        if (
            request.status == "approved"
            and request.approved_by is not None
            and (request.approved_by not in state.config.approvers)
        ):
            problems.append(
                Problem(
                    APPROVAL.path(aid),
                    "approver",
                    f"approved_by {request.approved_by} is not a listed approver",
                )
            )
    if state.activation is not None:
        granted = state.approvals.get(state.activation.approval)
        if granted is None or granted.kind != "registry" or granted.status != "approved":
            problems.append(
                Problem(
                    ACTIVATION.path(),
                    "activation",
                    "activation needs an approved registry request",
                )
            )
    for _, claim in sorted(state.claims.items()):
        path = CLAIMS.file(claim.type, claim.name)
        holder = state.sessions.get(claim.holder)
        if holder is None:
            problems.append(
                Problem(path, "holder-registered", f"holder {claim.holder!r} is not registered")
            )
        elif holder.left_at is not None and claim.released_at is None:
            problems.append(
                Problem(path, "left", f"{claim.holder!r} left, but still holds {claim.key}")
            )
        if claim.expires_at <= claim.acquired_at:
            problems.append(Problem(path, "time-order", "expires_at is not after acquired_at"))
        if claim.released_at is not None and claim.released_at < claim.acquired_at:
            problems.append(Problem(path, "time-order", "released_at is before acquired_at"))
        if claim.type in required and claim.generation and claim.approval is None:
            problems.append(
                Problem(path, "approval", f"{claim.type} claims need an approval request")
            )
        if claim.approval is not None:
            gate = state.approvals.get(claim.approval)
            if gate is None or gate.kind != "claim" or gate.resource != claim.key:
                problems.append(
                    Problem(
                        path, "approval", f"approval {claim.approval} does not gate {claim.key}"
                    )
                )
        if now is not None and not claim.takeable(now, state.config.skew):
            for other in overlapping(state, claim.type, claim.name, now):
                if other.holder != claim.holder and other.key < claim.key:
                    problems.append(
                        Problem(
                            path,
                            "overlap",
                            f"overlaps {other.key} held by {other.holder} at the same time",
                        )
                    )
    return problems


def check_messages(src: Source, state: State) -> list[Problem]:
    """Every message file: schema, path derived from (to, id), known sender and recipient.

    Deep: reads every message, so `gitcoord validate` runs it, while transactions
    build messages through the model and the hooks check only the new ones.
    """
    problems: list[Problem] = []

    def report(path: str, rule: str, message: str) -> None:
        problems.append(Problem(path, rule, message))

    paths = list(MESSAGES.files(src, report))
    return problems + check_messages_at(src, state, paths)


def check_messages_at(src: Source, state: State, paths: list[str]) -> list[Problem]:
    """The message files at `paths` (e.g. those a commit adds)."""
    from .models import Message

    problems: list[Problem] = []
    for path in paths:
        parts = path.split("/")
        if len(parts) != 5 or not path.endswith(".yaml"):
            problems.append(
                Problem(path, "layout", "messages live at messages/<to>/<day>/<id>.yaml")
            )
            continue
        msg = parse(src, path, Message, problems)
        if msg is None:
            continue
        wrong = MESSAGES.misplaced(path, MESSAGE.key_of(msg), MESSAGE.key)
        if wrong is not None:
            problems.append(Problem(path, "path", wrong))
        if msg.sender not in state.sessions:
            problems.append(
                Problem(path, "sender-registered", f"sender {msg.sender!r} not registered")
            )
        if msg.to != names.BROADCAST and msg.to not in state.sessions:
            problems.append(
                Problem(path, "recipient-known", f"recipient {msg.to!r} not registered")
            )
    return problems
