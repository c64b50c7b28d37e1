"""The one validator: every rule a coordination state must obey.

Used by the transaction (before anything is written), by `gitcoord validate`,
and by the hooks. Problems name the file and the rule they break.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Callable
from datetime import datetime

from . import names, overlap
from .graph import cycles
from .kinds import (
    APPROVAL,
    CLAIMS,
    HEARTBEAT,
    MESSAGE,
    MESSAGES,
    MILESTONE,
    READ,
    SESSION,
    SHARDED,
    TASK,
    activation_path,
    config_path,
)
from .models import Claim
from .state import Problem, Source, State, parse


def _signature_fields(state: State) -> list[Problem]:
    """Format 3's fields only on a branch at format 3, and a signed branch that someone
    can still govern: approver keys name listed approvers, and requiring signatures
    needs one (else no one could approve, or ever change config.yaml again)."""
    config = state.config
    assert config is not None
    found = []
    if config.format < 3:
        if config.approver_keys or config.require_signatures:
            found.append(
                Problem(
                    config_path(),
                    "format",
                    "approver_keys and require_signatures need format 3 (`gitcoord upgrade`)",
                )
            )
        for sid, session in sorted(state.sessions.items()):
            if session.key is not None:
                found.append(
                    Problem(
                        SESSION.path(sid, fmt=state.format),
                        "format",
                        "a session's key needs format 3",
                    )
                )
        for _, claim in sorted(state.claims.items()):
            if claim.handed_by is not None or claim.taken_from is not None:
                found.append(
                    Problem(
                        CLAIMS.file(claim.type, claim.name, state.format),
                        "format",
                        "handed_by and taken_from need format 3 (`gitcoord upgrade`)",
                    )
                )
        for name, milestone in sorted(state.milestones.items()):
            if any(s.by is not None or "@" in (s.done_by or "") for s in milestone.steps):
                found.append(
                    Problem(
                        MILESTONE.path(name, fmt=state.format),
                        "format",
                        "a step's `by`, and a step ticked by a person, need format 3",
                    )
                )
    for email in sorted(set(config.approver_keys) - set(config.approvers)):
        found.append(
            Problem(
                config_path(),
                "approver",
                f"approver_keys names {email}, who is not in approvers",
            )
        )
    if config.require_signatures and not config.approver_keys:
        found.append(
            Problem(
                config_path(),
                "approver",
                "require_signatures needs at least one approver key (approver_keys): "
                "otherwise nobody could approve or change config.yaml",
            )
        )
    return found


# The rules that do not depend on the time, of the last few states checked (by identity:
# a State is immutable, and a Store hands out one object per commit). The verifier checks
# each commit's state as the new state of one commit and the old state of the next, and a
# writer checks the tip its trust check just judged.
_RECENT: deque[tuple[State, tuple[Problem, ...], tuple[Problem, ...]]] = deque(maxlen=8)


def check_state(state: State, now: datetime | None = None) -> list[Problem]:
    """Every rule a state obeys. With `now`, also that no two binding claims of
    different holders overlap at that time (time-dependent, so optional)."""
    known = next((k for k in list(_RECENT) if k[0] is state), None)  # (list: threads add)
    if known is None:
        board = tuple(_check_board(state)) if state.config is not None else ()
        known = (state, tuple(_documents(state)), board)
        _RECENT.append(known)
    _, documents, board = known
    overlapping = overlap_problems(state, now) if now is not None else []
    return [*documents, *overlapping, *board]


def _documents(state: State) -> list[Problem]:
    """The rules of `check_state` on the documents and how they refer to each other
    (but the board's), which hold whatever the time."""
    problems = list(state.problems)
    if state.config is None:
        if (state.sessions or state.claims) and not any(p.path == config_path() for p in problems):
            problems.append(Problem(config_path(), "layout", "missing or unreadable config"))
        return problems
    slots = state.config.slots
    problems += _signature_fields(state)

    by_number: dict[int, list[str]] = defaultdict(list)
    for sid, session in sorted(state.sessions.items()):
        if session.left_at is not None:
            if state.config.format < 2:
                problems.append(
                    Problem(
                        SESSION.path(sid, fmt=state.format),
                        "format",
                        "a session leaves only on a branch at format 2 (`gitcoord upgrade`)",
                    )
                )
            if session.left_at < session.registered_at:
                problems.append(
                    Problem(
                        SESSION.path(sid, fmt=state.format),
                        "time-order",
                        "left_at is before registered_at",
                    )
                )
            continue  # its number is free again: another session may hold it now
        by_number[session.number].append(sid)
        if session.number > slots:
            problems.append(
                Problem(
                    SESSION.path(sid, fmt=state.format),
                    "number-range",
                    f"number {session.number} is outside 1..{slots}",
                )
            )
        if session.updated_at < session.registered_at:
            problems.append(
                Problem(
                    SESSION.path(sid, fmt=state.format),
                    "time-order",
                    "updated_at is before registered_at",
                )
            )
    for number, ids in sorted(by_number.items()):
        for sid in ids[1:]:
            problems.append(
                Problem(
                    SESSION.path(sid, fmt=state.format),
                    "unique-number",
                    f"number {number} is also held by session {ids[0]!r}",
                )
            )

    for sid in sorted(state.heartbeats):
        if sid not in state.sessions:
            problems.append(
                Problem(
                    HEARTBEAT.path(sid, fmt=state.format),
                    "session-registered",
                    f"{sid!r} not registered",
                )
            )
    for sid in sorted(state.reads):
        if sid not in state.sessions:
            problems.append(
                Problem(
                    READ.path(sid, fmt=state.format),
                    "session-registered",
                    f"{sid!r} not registered",
                )
            )
    required = set(state.config.require_approval)
    for aid, request in sorted(state.approvals.items()):
        if request.requested_by not in state.sessions:
            problems.append(
                Problem(
                    APPROVAL.path(aid, fmt=state.format),
                    "session-registered",
                    "requester not registered",
                )
            )
        if (
            request.status == "approved"
            and request.approved_by is not None
            and (request.approved_by not in state.config.approvers)
        ):
            problems.append(
                Problem(
                    APPROVAL.path(aid, fmt=state.format),
                    "approver",
                    f"approved_by {request.approved_by} is not a listed approver",
                )
            )
    if state.activation is not None:
        granted = state.approvals.get(state.activation.approval)
        if granted is None or granted.kind != "registry" or granted.status != "approved":
            problems.append(
                Problem(
                    activation_path(),
                    "activation",
                    "activation needs an approved registry request",
                )
            )
    for _, claim in sorted(state.claims.items()):
        found: list[tuple[str, str]] = []  # (rule, message): most claims have none
        holder = state.sessions.get(claim.holder)
        if holder is None:
            found.append(("holder-registered", f"holder {claim.holder!r} is not registered"))
        elif holder.left_at is not None and claim.released_at is None:
            found.append(("left", f"{claim.holder!r} left, but still holds {claim.key}"))
        # A name the CLI would refuse, pushed by hand: an uncompilable glob turned the path
        # guard off for everyone (it crashed, or let every path through), and a range that
        # ends before it starts covers nothing, so it never conflicts with anything.
        bad_name = overlap.range_problem(claim.name)
        if bad_name is None and claim.type == overlap.PATH_TYPE:
            bad_name = overlap.glob_problem(claim.name)
        if bad_name is not None:
            found.append(("claim-name", bad_name))
        if claim.expires_at <= claim.acquired_at:
            found.append(("time-order", "expires_at is not after acquired_at"))
        if claim.released_at is not None and claim.released_at < claim.acquired_at:
            found.append(("time-order", "released_at is before acquired_at"))
        if claim.type in required and claim.generation and claim.approval is None:
            found.append(("approval", f"{claim.type} claims need an approval request"))
        if claim.approval is not None:
            gate = state.approvals.get(claim.approval)
            if gate is None or gate.kind != "claim" or gate.resource != claim.key:
                found.append(("approval", f"approval {claim.approval} does not gate {claim.key}"))
        if found:  # (its path is worked out only then: a few hundred claims, every load)
            path = CLAIMS.file(claim.type, claim.name, state.format)
            problems += [Problem(path, rule, message) for rule, message in found]
    return problems


def overlap_problems(state: State, now: datetime, keys: set[str] | None = None) -> list[Problem]:
    """Binding claims of different holders that cover a common item or path at `now`
    (`overlap.overlaps`, the claim check's own answer), each pair reported once, at the
    claim whose key sorts last. With `keys`, only pairs that involve one of those claims
    (what a write changes: a pair it does not touch was there before it).

    Claims are compared only within a group that can overlap at all: of one type and,
    but for paths, one set (the part of the name before ':'; `overlap.items_of`). The
    verifier runs this on the states before and after each commit it judges: comparing
    every claim with every other was quadratic, and at a few hundred claims it was most
    of what the server's hook spent on a push."""
    config = state.config
    if config is None:
        return []
    wanted = None if keys is None else keys & set(state.claims)
    groups: dict[tuple[str, str], list[Claim]] = defaultdict(list)
    skew = config.skew
    for key in sorted(state.claims):
        claim = state.claims[key]
        if claim.takeable(now, skew):
            continue
        part = "" if claim.type == overlap.PATH_TYPE else claim.name.partition(":")[0]
        groups[(claim.type, part)].append(claim)
    pairs: set[tuple[str, str]] = set()
    for (type_, _), group in groups.items():
        for i, one in enumerate(group):
            for other in group[i + 1 :]:
                if one.holder == other.holder:
                    continue
                if wanted is not None and one.key not in wanted and other.key not in wanted:
                    continue
                if overlap.overlaps(type_, one.name, other.name) or overlap.overlaps(
                    type_, other.name, one.name
                ):
                    pairs.add((max(one.key, other.key), min(one.key, other.key)))
    problems = []
    for last, first in sorted(pairs):
        claim, other = state.claims[last], state.claims[first]
        problems.append(
            Problem(
                CLAIMS.file(claim.type, claim.name, state.format),
                "overlap",
                f"overlaps {other.key} held by {other.holder} at the same time",
            )
        )
    return problems


def notes(state: State) -> list[Problem]:
    """What `validate` says without failing: claims whose names the item grammar refuses
    (made before it, or by hand). They load, renew and release as before, and are
    compared by name (a bare one covers its whole set); a new claim of that name is
    refused (`transition._check_claim`)."""
    found = []
    for _, claim in sorted(state.claims.items()):
        why = overlap.items_problem(claim.type, claim.name)
        if why is not None:
            found.append(
                Problem(
                    CLAIMS.file(claim.type, claim.name, state.format),
                    "claim-name",
                    f"{why} (this claim was made before that rule: it still loads, renews "
                    "and releases, and overlaps only what has its name or its whole set)",
                )
            )
    return found


def _check_board(state: State) -> list[Problem]:
    """Every task's dependencies and milestone exist, and no task waits for itself.

    The CLI only ever depends on tasks that exist (and tasks are never deleted), so
    these fail only for files pushed by hand, or left behind by a quarantine (the
    dependent is then set aside in the next round). Linear in the board's size.
    """
    problems: list[Problem] = []
    for tid, task in sorted(state.tasks.items()):
        missing = [d for d in task.depends_on if d not in state.tasks]
        if missing:
            problems.append(
                Problem(
                    TASK.path(tid, fmt=state.format),
                    "depends-on",
                    f"depends on unknown task(s) {', '.join(missing)}",
                )
            )
        if task.milestone is not None and task.milestone not in state.milestones:
            problems.append(
                Problem(
                    TASK.path(tid, fmt=state.format),
                    "milestone",
                    f"no milestone {task.milestone!r}",
                )
            )
    for tid in sorted(_on_cycles(state)):
        problems.append(
            Problem(
                TASK.path(tid, fmt=state.format),
                "depends-on",
                "depends on itself (a cycle of dependencies)",
            )
        )
    return problems


def _on_cycles(state: State) -> set[str]:
    """The tasks that depend, directly or not, on themselves."""
    edges = {tid: task.depends_on for tid, task in state.tasks.items()}
    return {tid for component in cycles(edges) for tid in component}


def check_messages(src: Source, state: State) -> list[Problem]:
    """Every message file: schema, path derived from (to, id), known sender and recipient.

    Deep: reads every message, so `gitcoord validate` runs it, while transactions
    build messages through the model and the hooks check only the new ones.
    """
    problems: list[Problem] = []

    def report(path: str, rule: str, message: str) -> None:
        problems.append(Problem(path, rule, message))

    paths = list(MESSAGES.files(src, report, state.format))
    # Every message is read here anyway: which ids exist is a set, not a lookup each.
    ids = {p.rsplit("/", 1)[-1].removesuffix(".yaml") for p in paths}
    return problems + check_messages_at(src, state, paths, ids.__contains__)


def message_exists(src: Source, message_id: str) -> bool:
    """Whether a message with this id is on the branch, sent to anyone: one folder per
    recipient is listed (as `mailbox.find` does), never the whole history. Either
    layout: a reply may name a message sent before the branch was sharded."""
    leaf = (f"{message_id}.yaml", False)
    for recipient, is_dir in src.listdir(MESSAGES.root) or []:
        if not is_dir:
            continue
        for fmt in (SHARDED, 1):
            folder = MESSAGES.file(recipient, message_id, fmt).rsplit("/", 1)[0]
            if leaf in (src.listdir(folder) or []):
                return True
    return False


def check_messages_at(
    src: Source, state: State, paths: list[str], known: Callable[[str], bool] | None = None
) -> list[Problem]:
    """The message files at `paths` (e.g. those a commit adds). `known`: whether a
    message id is on the branch (default: look in `src`)."""
    from .models import Message

    exists = known or (lambda mid: message_exists(src, mid))
    problems: list[Problem] = []
    depth = MESSAGES.depth(state.format) + 1  # coordination/ and the parts below it
    for path in paths:
        parts = path.split("/")
        if len(parts) != depth or not path.endswith(".yaml"):
            where = "<YYYY-MM>/<DD>/<HH>" if state.format >= SHARDED else "<YYYY-MM-DD>"
            problems.append(
                Problem(path, "layout", f"messages live at messages/<to>/{where}/<id>.yaml")
            )
            continue
        msg = parse(src, path, Message, problems)
        if msg is None:
            continue
        wrong = MESSAGES.misplaced(path, MESSAGE.key_of(msg), MESSAGE.key, state.format)
        if wrong is not None:
            problems.append(Problem(path, "path", wrong))
        person = "@" in msg.sender  # an approver's e-mail: a person, not a session
        approvers = state.config.approvers if state.config else []
        if person and msg.sender not in approvers:
            problems.append(
                Problem(path, "sender-registered", f"sender {msg.sender!r} is not an approver")
            )
        elif not person and msg.sender not in state.sessions:
            problems.append(
                Problem(path, "sender-registered", f"sender {msg.sender!r} not registered")
            )
        fmt = state.config.format if state.config else 1
        if fmt < 3 and (person or msg.to == names.HUMAN):
            problems.append(Problem(path, "format", "messages to and from people need format 3"))
        if msg.to not in (names.BROADCAST, names.HUMAN) and msg.to not in state.sessions:
            problems.append(
                Problem(path, "recipient-known", f"recipient {msg.to!r} not registered")
            )
        # A reply names a message that is there to answer (readers show what it answers).
        if msg.reply_to is not None and (msg.reply_to == msg.id or not exists(msg.reply_to)):
            problems.append(
                Problem(path, "reply-to", f"reply_to {msg.reply_to} names no message on the branch")
            )
    return problems
