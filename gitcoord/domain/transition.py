"""Rules for a change from one state to the next: who may change what.

`check_state` says a state is coherent; this says a commit was entitled to
produce it. The same function runs in the CLI's transaction, in the server's
pre-receive hook and in `gitcoord validate --range`, so an edit pushed by hand
is held to exactly the rules the CLI obeys:

- a commit speaks for one session (its `Gitcoord-Session:` trailer) and changes
  only that session's files: its registration, heartbeat, read mark, the
  messages it sends, the approval requests it makes, and claims it holds or
  takes — taking another session's claim only once it is released or expired
  past the clock-skew grace, with the generation (fencing token) + 1 — or, by a
  handoff commit (`Gitcoord-Op: handoff`, `Gitcoord-Handoff-To`), giving a live claim
  it holds to another present session, generation + 1 (`_check_handoff`); a new
  claim's name is in the item grammar (`overlap.items_problem`);
- a milestone step is ticked by the session it names (or any, when it names no one)
  and unticked only by whoever ticked it (`_check_milestone`);
- messages are append-only; nothing is ever deleted — except by a quarantine
  commit (`doctor --fix`, by anyone), which may only move the files the parent
  tree's own problems condemn into coordination/quarantine/, bytes unchanged,
  and which is the only commit that writes there (see `quarantine.py`); where
  it moves a claim file it may leave a released tombstone of that claim, whose
  generation `verify.py` checks against the file's history;
- a session that left (`gitcoord leave`) writes nothing until it registers again,
  and no message is sent to it;
- approving a request takes a commit authored by a listed approver;
- commits without a session (hand edits, merges of approval branches) must be
  authored by a listed approver, except the very first commit (`init`);
- config.yaml and files outside coordination/ (the CI workflow) change only by
  approvers — or by any session while the config lists no approvers at all;
- bounds on what any commit may write about itself (`_check_bounds`): no time it
  writes lies beyond the commit's time plus the clock-skew grace (a heartbeat dated
  9999 would never go stale), a claim's expiry is at most its grant or renewal time
  plus the configured `max_lease_hours` (an expiry of 9999 would hold a resource
  forever), every file under coordination/ is a regular file (no symlink, executable
  or submodule), and the state page is one file of at most 1 MiB.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ValidationError

from . import names, overlap, yamlio
from .kinds import CLAIMS, SESSION, kind_at, kind_of
from .models import (
    Activation,
    Approval,
    Claim,
    Config,
    Message,
    Milestone,
    Roster,
    Session,
    Task,
)
from .state import Doc, Problem, State


@dataclass(frozen=True)
class CommitMeta:
    commit: str | None
    author_email: str
    session: str | None
    op: str | None
    time: datetime
    handoff_to: str | None = None  # a handoff's `Gitcoord-Handoff-To` trailer


@dataclass(frozen=True)
class Changed:
    path: str
    old: Doc
    new: Doc
    mode: str | None = None  # the new entry's git mode, when known (the verifier's diff)


def model_for(path: str) -> type[BaseModel] | None:
    """Which model a file at `path` must follow (None: raw file or not ours)."""
    kind = kind_at(path)
    return kind.model if kind is not None else None


def parse_doc(path: str, raw: bytes | None) -> Doc:
    """Bytes at `path` as its model (raw bytes when not a model file or unparsable)."""
    if raw is None:
        return None
    model = model_for(path)
    if model is None:
        return raw
    try:
        return model.model_validate(yamlio.load(raw))
    except (yamlio.YamlProblem, ValidationError, ValueError):
        return raw  # check_state reports it; here it just cannot be attributed


def doc_at(state: State, path: str) -> Doc:
    """The document a loaded state holds at `path` (None for messages and raw files)."""
    kind = kind_at(path)
    if kind is None or kind.held is None:
        return None
    held: object = getattr(state, kind.held)
    if not kind.single and isinstance(held, Mapping):
        held = held.get(kind.key_at(path))
    return held if isinstance(held, BaseModel) else None


def _owner(doc: Doc) -> str | None:
    """The session a per-session document belongs to (its kind's `owner` field)."""
    kind = kind_of(doc)
    return kind.owner_of(doc) if kind is not None and isinstance(doc, BaseModel) else None


def check_transition(
    old: State, new: State, changes: list[Changed], meta: CommitMeta
) -> list[Problem]:
    return list(_problems(old, new, changes, meta))


def _problems(
    old: State, new: State, changes: list[Changed], meta: CommitMeta
) -> Iterator[Problem]:
    config = old.config or new.config
    approvers = set(config.approvers) if config else set()
    admin = meta.author_email in approvers
    creating = old.config is None
    who = meta.session

    def no(path: str, rule: str, message: str) -> Problem:
        where = f"commit {meta.commit[:10]}: " if meta.commit else ""
        return Problem(path, rule, where + message)

    if meta.op == QUARANTINE_OP and not creating:
        # `doctor --fix`: entitled by what it moves, not by who runs it (see below).
        yield from _check_quarantine(old, changes, meta, no)
        return

    if who is None and not admin and not creating:
        bad = [c.path for c in changes]
        if bad:
            yield no(
                bad[0],
                "session-trailer",
                f"changes by {meta.author_email or 'an unknown author'} carry no "
                "Gitcoord-Session trailer and the author is not a listed approver",
            )
        return

    speaker = old.sessions.get(who) if who is not None else None
    if speaker is not None and speaker.left_at is not None and not admin:
        # A session that left speaks again only by registering anew (`gitcoord leave`).
        own = SESSION.path(speaker.id)
        for ch in changes:
            if ch.path != own or not isinstance(ch.new, Session) or ch.new.left_at is not None:
                yield no(
                    ch.path,
                    "left",
                    f"session {who} left at {speaker.left_at:%Y-%m-%dT%H:%M:%SZ}: it must "
                    "register again before it writes anything else",
                )

    if who is not None and not admin:
        reclaimed, problems = _reclaims(old, changes, meta, no)
        yield from problems
        # what a reclaim may write of the reclaimed session's is judged there (and bounded)
        theirs = [
            ch
            for ch in changes
            if (isinstance(ch.new, Session) and ch.new.id in reclaimed)
            or (isinstance(ch.new, Claim) and ch.new.holder in reclaimed)
        ]
        for ch in theirs:
            yield from _check_bounds(ch, config, meta, no)
        changes = [ch for ch in changes if ch not in theirs]

    for ch in changes:
        path, before, after = ch.path, ch.old, ch.new
        yield from _check_bounds(ch, config, meta, no)  # and the other rules, all reported
        if path.startswith(QUARANTINE_PREFIX) and not admin:
            yield no(path, "quarantine", "only a quarantine commit (doctor --fix) adds here")
            continue
        if after is None:
            if not admin:
                yield no(path, "no-delete", "files on the coordination branch are never deleted")
            continue
        if not path.startswith(names.ROOT + "/"):
            # e.g. .github/workflows/gitcoord.yml; open to sessions while nobody approves
            if not admin and approvers:
                yield no(path, "outside", "only approvers may change files outside coordination/")
            continue
        if isinstance(after, bytes):
            continue  # CURRENT_STATE.md, or a file check_state reports as malformed
        if creating or (admin and not isinstance(after, Approval)):
            continue  # the first commit (init) lays out the branch; approvers may repair
        yield from _check_doc(path, before, after, old, meta, admin, creating or not approvers, no)


def _reclaims(
    old: State, changes: list[Changed], meta: CommitMeta, no: Any
) -> tuple[set[str], list[Problem]]:
    """A session's commit may reclaim another session (`gitcoord reclaim`, or `register`
    taking the number of the longest-unseen one): only one present and not seen for
    reclaim_after_hours plus the grace at this commit's time, only by marking it left
    (reclaimed_by the reclaimer) and releasing the claims it holds, nothing else of it.
    Returns the sessions so reclaimed and the problems."""
    from .rules import reclaimable

    who = meta.session
    targets = {
        ch.new.id
        for ch in changes
        if isinstance(ch.new, Session)
        and ch.new.id != who
        and isinstance(ch.old, Session)
        and ch.old.left_at is None
        and ch.new.left_at is not None
    }
    problems: list[Problem] = []
    for sid in sorted(targets):
        if not reclaimable(old, sid, meta.time):
            problems.append(
                no(
                    SESSION.path(sid),
                    "reclaim",
                    f"session {sid} was seen within reclaim_after_hours (plus the grace): "
                    "only its own commits change it",
                )
            )
    for ch in changes:
        after = ch.new
        if isinstance(after, Session) and after.id in targets:
            before = ch.old
            assert isinstance(before, Session)
            want = before.model_copy(update={"left_at": after.left_at, "reclaimed_by": who})
            if after != want or after.left_at is None or after.left_at > meta.time + _WHOLE_SECOND:
                problems.append(
                    no(
                        ch.path,
                        "reclaim",
                        "a reclaim only marks the session left, by its reclaimer",
                    )
                )
        elif isinstance(after, Claim) and after.holder in targets:
            prev = ch.old if isinstance(ch.old, Claim) else None
            want_claim = (
                prev.model_copy(update={"released_at": after.released_at, "lease_seconds": None})
                if prev is not None
                else None
            )
            if prev is None or prev.released_at is not None or after != want_claim:
                problems.append(
                    no(ch.path, "reclaim", "a reclaim only releases the claims the session held")
                )
    return targets, problems


QUARANTINE_OP = "quarantine"
QUARANTINE_PREFIX = f"{names.ROOT}/{names.QUARANTINE}/"

# Commit times are whole seconds while a document's time need not be (a message's
# sent_at has milliseconds): one second more than the grace, so that an honest write
# stamped a moment before its commit second ends is never refused, even with no grace.
_WHOLE_SECOND = timedelta(seconds=1)
_DEFAULT_SKEW = timedelta(seconds=60)  # Config's default, for a commit with no config yet
# Times that lie in the future by design: a lease's end, bounded by the "lease" rule.
_FUTURE_FIELDS = frozenset({"expires_at"})


def _times(doc: BaseModel, prefix: str = "") -> Iterator[tuple[str, datetime]]:
    """(field, time) of every time a document holds, nested ones (milestone steps) as
    `steps[0].done_at`: generic, so that a new kind's times are bounded without more."""
    for name in type(doc).model_fields:
        value = getattr(doc, name)
        if isinstance(value, datetime):
            yield prefix + name, value
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, BaseModel):
                    yield from _times(item, f"{prefix}{name}[{i}].")


def _check_bounds(
    ch: Changed, config: Config | None, meta: CommitMeta, no: Any
) -> Iterator[Problem]:
    """What no commit may write, whoever makes it (approvers and `init` included):
    what a writer says about itself must stay within what the verifier can judge.

    Only values the commit changes are judged: a value carried over was judged when it
    was written, and judging it again would, e.g., keep a holder from releasing a claim
    granted before `max_lease_hours` was lowered."""
    path, before, after = ch.path, ch.old, ch.new
    if after is None or not path.startswith(names.ROOT + "/"):
        return
    if ch.mode is not None and ch.mode != names.REGULAR_FILE:
        what = {"120000": "a symlink", "100755": "an executable", "160000": "a submodule"}
        yield no(
            path,
            "file-mode",
            f"is {what.get(ch.mode, 'mode ' + ch.mode)}: files under {names.ROOT}/ are "
            f"regular files (mode {names.REGULAR_FILE})",
        )
        return
    page = names.state_page_path()
    if path.startswith(page + "/"):
        yield no(page, "state-page", f"{names.STATE_PAGE} is one regular file, not a folder")
        return
    if path == page and isinstance(after, bytes) and len(after) > names.STATE_PAGE_MAX_BYTES:
        yield no(
            path,
            "size",
            f"is {len(after)} bytes, over the state page's {names.STATE_PAGE_MAX_BYTES}-byte limit",
        )
        return
    if not isinstance(after, BaseModel):
        return
    skew = config.skew if config is not None else _DEFAULT_SKEW
    latest = meta.time + skew + _WHOLE_SECOND
    old_times = dict(_times(before)) if type(before) is type(after) else {}
    for field, value in _times(after):
        if field in _FUTURE_FIELDS or old_times.get(field) == value or value <= latest:
            continue
        yield no(
            path,
            "future-time",
            f"{field} {_iso(value)} is later than the commit's time {_iso(meta.time)} plus "
            "the clock-skew grace",
        )
    if isinstance(after, Claim) and config is not None:
        prev = before if isinstance(before, Claim) else None
        if prev is not None and prev.expires_at == after.expires_at:
            return
        granted = after.renewed_at if after.renewed_at is not None else after.acquired_at
        limit = min(granted, meta.time) + config.max_lease + skew + _WHOLE_SECOND
        if after.expires_at > limit:
            yield no(
                path,
                "lease",
                f"expires_at {_iso(after.expires_at)} is more than the maximum lease "
                f"({config.max_lease_hours:g}h, config max_lease_hours) after its "
                f"{'renewal' if after.renewed_at is not None else 'grant'} at {_iso(granted)}",
            )


def _iso(t: datetime) -> str:
    return f"{t:%Y-%m-%dT%H:%M:%SZ}"


def _check_quarantine(
    old: State, changes: list[Changed], meta: CommitMeta, no: Any
) -> Iterator[Problem]:
    """A quarantine commit (`Gitcoord-Op: quarantine`, by anyone) may only move files
    that the parent tree's own problems condemn (`quarantine.plan`, computed here
    again) to their quarantine names, bytes unchanged, and do nothing else — but
    leave a released tombstone of the claim at a claim file it moves (its generation,
    which needs the history, is checked by `verify.py`)."""
    from . import quarantine

    src = old.source
    deleted = [c.path for c in changes if c.new is None]
    tombs: dict[str, Claim] = {}
    if src is not None:  # a claim written over a file it moves
        tombs = {
            c.path: c.new
            for c in changes
            if isinstance(c.new, Claim) and quarantine.is_file(src, c.path)
        }
    added = {c.path: c.new for c in changes if c.new is not None and c.path not in tombs}
    moved = sorted([*deleted, *tombs])
    if src is None or not moved:
        yield no(QUARANTINE_PREFIX.rstrip("/"), "quarantine", "a quarantine commit moves bad files")
        return
    condemned = set(quarantine.plan(src, meta.time).condemned)
    condemned |= set(quarantine.plan(src).condemned)  # the time-independent part
    for path in moved:
        if not any(path == c or path.startswith(c + "/") for c in condemned):
            yield no(path, "quarantine", "only files that break the rules may be quarantined")
    for path, tomb in sorted(tombs.items()):
        if tomb.released_at is None or CLAIMS.file(tomb.type, tomb.name) != path:
            yield no(path, "quarantine", "a tombstone is a released claim of the file moved")
    for original, copy in quarantine.quarantine_paths(src, moved).items():
        if added.pop(copy, None) != quarantine.raw(src, original):
            yield no(copy, "quarantine", f"must hold the unchanged bytes of {original}")
    for path in sorted(added):
        yield no(path, "quarantine", "a quarantine commit only moves bad files aside")


def _check_doc(
    path: str,
    before: Doc,
    after: BaseModel,
    old: State,
    meta: CommitMeta,
    admin: bool,
    config_open: bool,
    no: Any,
) -> Iterator[Problem]:
    who = meta.session
    if isinstance(after, Config):
        if not config_open:
            yield no(path, "config", "only approvers may change config.yaml")
        return
    if isinstance(after, Message):
        if before is not None:
            yield no(path, "append-only", "messages are never changed once sent")
        elif after.sender != who:
            yield no(path, "own-files", f"session {who} cannot send as {after.sender}")
        elif (to := old.sessions.get(after.to)) is not None and to.left_at is not None:
            yield no(path, "left", f"session {after.to} has left: it reads no messages")
        return
    if isinstance(after, Claim):
        yield from _check_claim(path, before, after, old, meta, no)
        return
    if isinstance(after, Approval):
        yield from _check_approval(path, before, after, meta, admin, no)
        return
    if isinstance(after, Task):
        yield from _check_task(path, before, after, old, meta, no)
        return
    if isinstance(after, Milestone):
        yield from _check_milestone(path, before, after, meta, no)
        return
    if isinstance(after, Roster):
        if not config_open:
            yield no(path, "config", "only approvers may change the roster")
        return
    if isinstance(after, Activation):
        if before is not None:
            yield no(path, "append-only", "activation is recorded once")
        elif after.activated_by != who:
            yield no(path, "own-files", f"session {who} cannot activate as {after.activated_by}")
        return
    owner = _owner(after)
    if owner is not None and owner != who:
        yield no(path, "own-files", f"session {who} cannot change {owner}'s {path.split('/')[1]}")


HANDOFF_OP = "handoff"
HANDOFF_TO = "Gitcoord-Handoff-To"


def _check_claim(
    path: str, before: Doc, after: Claim, old: State, meta: CommitMeta, no: Any
) -> Iterator[Problem]:
    who = meta.session
    prev = before if isinstance(before, Claim) else None
    if prev is None:
        if after.holder != who:
            yield no(path, "own-files", f"session {who} cannot grant a claim to {after.holder}")
        # A new claim's name is judged by the grammar of items (`overlap.items_problem`):
        # a batch names items of a set. A claim already on the branch is not judged
        # again, so one made before the grammar can still be renewed and released.
        bad_name = overlap.items_problem(after.type, after.name)
        if bad_name is not None:
            yield no(path, "claim-name", bad_name)
        if after.handed_by is not None or after.taken_from is not None:
            yield no(path, "claim", "a new claim is granted: it has no handed_by or taken_from")
        return
    if after.holder == prev.holder:
        if prev.holder != who:
            yield no(path, "own-files", f"session {who} cannot change {prev.holder}'s claim")
            return
        regrant = prev.released_at is not None and after.released_at is None
        want = prev.generation + 1 if regrant else prev.generation
        if after.generation != want:
            yield no(path, "generation", f"generation must be {want}, not {after.generation}")
        for field in ("handed_by", "taken_from"):
            if getattr(after, field) not in (None, getattr(prev, field)):
                yield no(path, "claim", f"{field} says where the claim came from: it is kept")
        return
    if meta.op == HANDOFF_OP and who == prev.holder:
        yield from _check_handoff(path, prev, after, old, meta, no)
        return
    if after.holder != who:
        yield no(
            path,
            "own-files",
            f"session {who} cannot hand {prev.key} to {after.holder} (only its holder hands "
            "a live claim off, in a handoff commit)",
        )
        return
    took = prev.released_at is None  # a takeover after expiry, not a grant after a release
    if after.handed_by is not None or after.taken_from not in (None, prev.holder if took else None):
        yield no(
            path,
            "claim",
            f"a takeover is taken_from {prev.holder} (a claim after a release from no one), "
            "and handed by no one",
        )
    skew = old.config.skew if old.config else None
    if skew is None or not prev.takeable(meta.time, skew):
        yield no(
            path,
            "takeover",
            f"{prev.key} was still held by {prev.holder} "
            f"(expires {prev.expires_at:%Y-%m-%dT%H:%M:%SZ} plus the clock-skew grace)",
        )
    if after.generation != prev.generation + 1:
        yield no(
            path,
            "generation",
            f"a new holder needs generation {prev.generation + 1}, not {after.generation}",
        )


def _check_handoff(
    path: str, prev: Claim, after: Claim, old: State, meta: CommitMeta, no: Any
) -> Iterator[Problem]:
    """A handoff (`Gitcoord-Op: handoff`, `Gitcoord-Handoff-To: <receiver>`): the holder
    of a live claim, not waiting for approval, moves it to another present session, with
    the generation + 1 and `handed_by` naming itself. Anything else that changes a
    claim's holder is a takeover after expiry, by the new holder (`_check_claim`)."""
    who = meta.session
    to = after.holder
    if meta.handoff_to != to:
        yield no(
            path,
            "handoff",
            f"a handoff names its receiver in Gitcoord-Handoff-To: {to}, not "
            f"{meta.handoff_to or 'nothing'}",
        )
    if prev.released_at is not None or prev.expires_at <= meta.time:
        yield no(path, "handoff", f"{prev.key} is not a live claim of {who}: nothing to hand off")
    if prev.lease_seconds is not None:
        yield no(path, "handoff", f"{prev.key} waits for approval: it is handed off once granted")
    receiver = old.present.get(to)
    if receiver is None or to == who:
        yield no(path, "handoff", f"{to} is not another present session to hand {prev.key} to")
    if after.generation != prev.generation + 1:
        yield no(
            path,
            "generation",
            f"a new holder needs generation {prev.generation + 1}, not {after.generation}",
        )
    if after.handed_by != who or after.taken_from is not None:
        yield no(path, "handoff", f"a handoff is handed_by its giver {who}, taken from no one")
    if after.released_at is not None or after.approval != prev.approval:
        yield no(path, "handoff", "a handoff moves a live claim as it is, to its receiver")


def _check_milestone(
    path: str, before: Doc, after: Milestone, meta: CommitMeta, no: Any
) -> Iterator[Problem]:
    """A session adds a milestone as itself; its steps (names, and who ticks each: `by`)
    are fixed once added; a session ticks a step that names no one or names it, as
    itself, and unticks only a step it ticked. A step `by: human` is ticked by a person:
    an approver's commit, which these rules do not judge (approvers may repair)."""
    who = meta.session
    prev_m = before if isinstance(before, Milestone) else None
    if prev_m is None:
        if after.created_by != who:
            yield no(path, "own-files", f"session {who} cannot create as {after.created_by}")
        for st in after.steps:
            if st.done_at is not None and st.done_by != who:
                yield no(path, "milestone", f"step {st.name!r}: ticked as {who} or not at all")
        return
    if [(st.name, st.by) for st in prev_m.steps] != [(st.name, st.by) for st in after.steps]:
        yield no(path, "milestone", "a milestone's steps (and who ticks each) are fixed once added")
        return
    if prev_m.model_copy(update={"steps": after.steps}) != after:
        yield no(path, "milestone", "a milestone changes only by ticking or unticking steps")
    for a, b in zip(prev_m.steps, after.steps, strict=True):
        if a == b:
            continue
        tick = a.done_at is None and b.done_at is not None and b.done_by == who
        undo = a.done_at is not None and a.done_by == who and b.done_at is None
        if undo and b.done_by is None:
            continue
        if tick and a.by in (None, who):
            continue
        if tick:
            whom = "a person (an approver)" if a.by == names.HUMAN else f"session {a.by}"
            yield no(path, "milestone", f"step {b.name!r} is ticked by {whom}, not by {who}")
        else:
            yield no(
                path,
                "milestone",
                f"step {b.name!r}: {who} only ticks it as itself, or unticks a step it ticked",
            )


def _check_task(
    path: str, before: Doc, after: Task, old: State, meta: CommitMeta, no: Any
) -> Iterator[Problem]:
    who = meta.session
    prev = before if isinstance(before, Task) else None
    if prev is None:
        if after.created_by != who:
            yield no(path, "own-files", f"session {who} cannot add a task as {after.created_by}")
        return
    if prev.model_copy(update={"priority": after.priority}) == after:
        if prev.created_by != who:
            yield no(path, "task", f"only {prev.created_by} or an approver re-prioritises it")
        return
    if prev.model_copy(update={"done_by": after.done_by, "done_at": after.done_at}) != after:
        yield no(path, "task", "a task changes only by being marked done or re-prioritised")
        return
    if prev.done or not after.done or after.done_by != who:
        yield no(path, "task", f"only marking an open task done, as {who}")
        return
    held = old.claims.get(names.resource_key("task", after.id))
    if held is None or held.holder != who or held.released_at is not None:
        yield no(path, "task", f"{after.id} is marked done by {who}, who does not hold it")


def _check_approval(
    path: str, before: Doc, after: Approval, meta: CommitMeta, admin: bool, no: Any
) -> Iterator[Problem]:
    prev = before if isinstance(before, Approval) else None
    if prev is None:
        if after.requested_by != meta.session and not admin:
            yield no(
                path, "own-files", f"session {meta.session} cannot request as {after.requested_by}"
            )
        if after.status == "approved" and not admin:
            yield no(path, "approver", "a request cannot approve itself")
        return
    if prev.status == "pending" and after.status == "approved":
        if not admin:
            yield no(
                path,
                "approver",
                f"approval by {meta.author_email or 'an unknown author'}, who is not a listed "
                "approver",
            )
        elif after.approved_by not in (None, meta.author_email):
            yield no(
                path, "approver", f"approved_by must be the approving author {meta.author_email}"
            )
        return
    if prev.status == "pending" and after.status == "rejected":
        if not admin:
            yield no(
                path,
                "approver",
                f"rejection by {meta.author_email or 'an unknown author'}, who is not a listed "
                "approver",
            )
        elif after.rejected_by != meta.author_email:
            yield no(
                path, "approver", f"rejected_by must be the rejecting author {meta.author_email}"
            )
        return
    if prev != after and not admin:
        yield no(
            path, "approval", "approval requests change only from pending to approved or rejected"
        )
