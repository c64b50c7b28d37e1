"""The one validator: every rule a coordination state must obey.

Used by the transaction (before anything is written), by `gitcoord validate`,
and by the hooks. Problems name the file and the rule they break.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from . import names
from .rules import overlapping
from .state import Problem, Source, State, parse


def check_state(state: State, now: datetime | None = None) -> list[Problem]:
    """Every rule a state obeys. With `now`, also that no two binding claims of
    different holders overlap at that time (time-dependent, so optional)."""
    problems = list(state.problems)
    if state.config is None:
        if (state.sessions or state.claims) and not any(
            p.path == names.config_path() for p in problems
        ):
            problems.append(Problem(names.config_path(), "layout", "missing or unreadable config"))
        return problems
    slots = state.config.slots

    by_number: dict[int, list[str]] = defaultdict(list)
    for sid, session in sorted(state.sessions.items()):
        by_number[session.number].append(sid)
        if session.number > slots:
            problems.append(
                Problem(
                    names.session_path(sid),
                    "number-range",
                    f"number {session.number} is outside 1..{slots}",
                )
            )
        if session.updated_at < session.registered_at:
            problems.append(
                Problem(names.session_path(sid), "time-order", "updated_at is before registered_at")
            )
    for number, ids in sorted(by_number.items()):
        for sid in ids[1:]:
            problems.append(
                Problem(
                    names.session_path(sid),
                    "unique-number",
                    f"number {number} is also held by session {ids[0]!r}",
                )
            )

    for sid in sorted(state.heartbeats):
        if sid not in state.sessions:
            problems.append(
                Problem(names.heartbeat_path(sid), "session-registered", f"{sid!r} not registered")
            )
    for sid in sorted(state.reads):
        if sid not in state.sessions:
            problems.append(
                Problem(names.read_path(sid), "session-registered", f"{sid!r} not registered")
            )
    required = set(state.config.require_approval)
    for aid, request in sorted(state.approvals.items()):
        if request.requested_by not in state.sessions:
            problems.append(
                Problem(names.approval_path(aid), "session-registered", "requester not registered")
            )
        if (
            request.status == "approved"
            and request.approved_by is not None
            and (request.approved_by not in state.config.approvers)
        ):
            problems.append(
                Problem(
                    names.approval_path(aid),
                    "approver",
                    f"approved_by {request.approved_by} is not a listed approver",
                )
            )
    if state.activation is not None:
        granted = state.approvals.get(state.activation.approval)
        if granted is None or granted.kind != "registry" or granted.status != "approved":
            problems.append(
                Problem(
                    names.activation_path(),
                    "activation",
                    "activation needs an approved registry request",
                )
            )
    for _, claim in sorted(state.claims.items()):
        path = names.claim_path(claim.type, claim.name)
        if claim.holder not in state.sessions:
            problems.append(
                Problem(path, "holder-registered", f"holder {claim.holder!r} is not registered")
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
    root = f"{names.ROOT}/messages"
    paths = []
    for recipient, is_dir in sorted(src.listdir(root) or []):
        if not is_dir:
            problems.append(Problem(f"{root}/{recipient}", "layout", "expected a folder"))
            continue
        for day, day_is_dir in sorted(src.listdir(f"{root}/{recipient}") or []):
            folder = f"{root}/{recipient}/{day}"
            if not day_is_dir:
                problems.append(Problem(folder, "layout", "expected a day folder"))
                continue
            for name, f_is_dir in sorted(src.listdir(folder) or []):
                path = f"{folder}/{name}"
                if f_is_dir or not name.endswith(".yaml"):
                    problems.append(Problem(path, "layout", "only .yaml files belong here"))
                else:
                    paths.append(path)
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
        if names.message_path(msg.to, msg.id) != path:
            problems.append(
                Problem(path, "path", f"belongs in {names.message_path(msg.to, msg.id)}")
            )
        if msg.sender not in state.sessions:
            problems.append(
                Problem(path, "sender-registered", f"sender {msg.sender!r} not registered")
            )
        if msg.to != names.BROADCAST and msg.to not in state.sessions:
            problems.append(
                Problem(path, "recipient-known", f"recipient {msg.to!r} not registered")
            )
    return problems
