"""Validating commits that someone else made: pushes (pre-receive), staged trees, CI ranges.

For a ref update `old -> new` of the coordination branch:
- the branch may not be deleted and its history may not be rewritten: the
  first-parent line from `new` must reach `old` itself, with no root commit on the
  way (a merge whose first parent is an older commit rolled the state back);
- every commit on that line must leave a valid state (only problems it introduces
  are reported) and be entitled to its changes (`transition.check_transition`),
  judged at its own time, but never earlier than the commit it builds on nor later
  than the verifier's clock: the committer date is the pusher's to choose;
- a merge has the one shape an approval merge has: two parents, one request
  approved, nothing else;
- a quarantine commit's tombstones carry the highest generation of their claim
  file's history (`tombstones.claim_versions`), which only git's history can tell.
A merge of an approval branch is judged as one change by the merge's author.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from fnmatch import fnmatchcase
from typing import Any

from .. import clock
from ..domain import names
from ..domain.branch import Store
from ..domain.models import Approval, Claim, Config
from ..domain.state import Doc, Problem, State
from ..domain.transition import (
    HANDOFF_TO,
    QUARANTINE_OP,
    Changed,
    CommitMeta,
    check_transition,
    parse_doc,
)
from ..domain.validate import check_messages_at, check_state
from ..gitio import GitError
from . import carried, signatures
from .history import Entry, read_commits
from .tombstones import claim_versions


def commit_meta(entry: Entry) -> CommitMeta:
    """Who made a pushed commit, when, and as which session and operation.

    `entry` comes from `history.read_commits`, which reads the whole range in one
    git process and is what `log` reads too: the session and operation judged here
    are the ones the audit trail shows (a repeated trailer's last value).
    """
    return CommitMeta(
        commit=entry.commit,
        author_email=entry.author_email,
        session=entry.session,
        op=entry.op,
        time=entry.time,
        handoff_to=entry.get(HANDOFF_TO),
    )


Changes = list[tuple[str, str | None, str | None]]  # (path, old blob, new blob)


def changed_files(
    store: Store, parent: str | None, commit: str, modes: dict[str, str] | None = None
) -> Changes:
    """(path, old blob, new blob) of every file that differs (diff-tree -r -z); with
    `modes`, also each new entry's git mode there (the file-mode rule judges it)."""
    argv = ["diff-tree", "-r", "-z", "--no-renames", "--no-commit-id"]
    argv += [parent, commit] if parent else ["--root", commit]
    found, _ = _diff_entries(store, store.git.run(argv).stdout.split(b"\0"), 0, modes)
    return found


def changed_files_of(
    store: Store, pairs: list[tuple[str | None, str]]
) -> list[tuple[Changes, dict[str, str]]] | None:
    """`changed_files` (with modes) of each (parent, commit) of a range, in one git
    process (`diff-tree --stdin`: a process per commit was half of what verifying a
    commit cost); None when its output is not one section per pair, as asked."""
    if not pairs:
        return []
    lines = "".join(f"{commit} {parent}\n" if parent else f"{commit}\n" for parent, commit in pairs)
    argv = ["diff-tree", "--stdin", "-r", "-z", "--no-renames", "--always", "--root"]
    try:
        out = store.git.run(argv, input=lines.encode()).stdout.split(b"\0")
    except GitError:
        return None  # (each commit's own diff then says which one git cannot read)
    found: list[tuple[Changes, dict[str, str]]] = []
    i = 0
    for _, commit in pairs:
        if i >= len(out) or out[i].decode(errors="replace") != commit:
            return None  # each section opens with its commit's id
        modes: dict[str, str] = {}
        changes, i = _diff_entries(store, out, i + 1, modes)
        found.append((changes, modes))
    return found if i >= len(out) - 1 else None


def _diff_entries(
    store: Store, out: list[bytes], i: int, modes: dict[str, str] | None
) -> tuple[Changes, int]:
    """The entries of `diff-tree -r -z` output from `out[i]` up to the next section's
    header (or the end), and where they stop."""
    zero = store.info.zero_oid
    found: Changes = []
    while i + 1 < len(out) and out[i].startswith(b":"):
        header = out[i].decode()
        path = out[i + 1].decode("utf-8", "surrogateescape")
        i += 2
        _, new_mode, old, new, _ = header[1:].split(" ", 4)
        if modes is not None and new != zero:
            modes[path] = new_mode
        found.append((path, None if old == zero else old, None if new == zero else new))
    return found, i


def verify_commit(
    store: Store,
    meta: CommitMeta,
    parent: str | None,
    commit: str,
    now: datetime | None = None,
    approver: str | None = None,
    diff: tuple[Changes, dict[str, str]] | None = None,
    signed: str | None = None,
) -> list[Problem]:
    """Problems of one commit, judged at its own time — but never later than `now`
    (the verifier's clock): a committer date is the pusher's to choose, so a commit
    dated in the future could otherwise pass off a takeover as "after expiry".
    `diff`: its `changed_files` and their modes, when read already (`judged`).
    `signed`: the commit whose signature speaks for it (a carried commit's request,
    `audit.carried`), when not its own."""
    future: list[Problem] = []
    if now is not None and meta.time > now:
        old_cfg = store.load(parent).config if parent else None
        skew = old_cfg.skew if old_cfg else timedelta(seconds=60)
        if meta.time > now + skew:
            future.append(
                Problem(
                    store.ref,
                    "future-date",
                    f"commit {commit[:10]} is dated {meta.time:%Y-%m-%dT%H:%M:%SZ}, beyond this "
                    f"server's clock plus the clock-skew grace",
                )
            )
        meta = replace(meta, time=now)
    # Both through the parse cache (by blob id): along a range each commit's new state is
    # the next one's old state, and most files are the same blobs, so a push parses what
    # it changed, not every file of every commit.
    old_state = store.load(parent) if parent else State()
    new_state = store.load(commit)
    new_view = store.view(commit)
    if approver is not None:  # a proposal, judged as this approver's act
        verdict = signatures.Verdict([], approver)
    else:
        verdict = signatures.judge(
            store, signed or commit, meta.session, meta.author_email, old_state, new_state
        )
    if verdict.acting_as is not None:
        # With signatures required, who approves is the key's to say, not the author line.
        meta = replace(meta, author_email=verdict.acting_as)
    before = {(p.path, p.rule, p.message) for p in check_state(old_state, meta.time)}
    problems = [
        p for p in check_state(new_state, meta.time) if (p.path, p.rule, p.message) not in before
    ]
    changes = []
    message_paths = []
    if diff is None:
        modes: dict[str, str] = {}
        diff = (changed_files(store, parent, commit, modes), modes)
    files, modes = diff
    for path, old_oid, new_oid in files:
        old_doc = _doc(store, path, old_oid)
        mode = modes.get(path)
        # A submodule's id names a commit that is not here: never read it as a file.
        new_doc = b"" if mode == GITLINK else _doc(store, path, new_oid)
        changes.append(Changed(path, old_doc, new_doc, mode))
        if path.startswith(f"{names.ROOT}/messages/") and new_oid:
            message_paths.append(path)
    problems += check_messages_at(new_view, new_state, message_paths)
    page = next((c for c in changes if c.path == names.state_page_path()), None)
    if page is not None and isinstance(page.new, bytes):
        problems += _state_page(page.new, new_state, new_view, meta)
    problems += check_transition(old_state, new_state, changes, meta)
    if meta.op == QUARANTINE_OP and parent is not None and old_state.config is not None:
        problems += _check_tombstones(store, parent, changes)
    problems = future + verdict.problems + problems
    short = commit[:10]
    return [
        p
        if p.message.startswith("commit ")
        else Problem(p.path, p.rule, f"commit {short}: {p.message}")
        for p in problems
    ]


def verify_carried(
    store: Store, parent: str, commit: str, request: str, diff: Changes, now: datetime
) -> list[Problem]:
    """Problems of `commit`, a carried commit of `request` on `parent` that this clone
    made (its message the request's, its change `diff`, the request's over its base) and
    has not pushed: judged as the server judges a commit, its signature the request's.
    What makes it a carried commit (the base, the id, the message, the change) the
    carrier made sure of as it built it; `audit.carried` judges those where it lands."""
    from ..store.requests import message_of, trailers_of

    got = store.reader.read(commit)
    if got is None or got[1] != "commit":
        return [Problem(store.ref, "carried", f"commit {commit[:10]} cannot be read")]
    said = trailers_of(message_of(got[2]))
    head = got[2].split(b"\n\n", 1)[0].decode("utf-8", "replace").split("\n")
    author = next((line for line in head if line.startswith("author ")), "")
    email = author.partition("<")[2].partition(">")[0]
    meta = CommitMeta(
        commit=commit,
        author_email=email,
        session=said.get("Gitcoord-Session"),
        op=said.get("Gitcoord-Op"),
        time=now,
        handoff_to=said.get(HANDOFF_TO),
    )
    modes = {path: "100644" for path, _, new in diff if new is not None}
    return verify_commit(store, meta, parent, commit, now, None, (diff, modes), request)


GITLINK = "160000"  # a submodule entry in a tree
# How far before its commit a state page may say it was generated (the page is
# rendered, then the commit written and pushed, perhaps after a lost race or two).
PAGE_AGE = timedelta(minutes=5)


def _state_page(data: bytes, state: State, view: Any, meta: CommitMeta) -> list[Problem]:
    """CURRENT_STATE.md is accepted only as gitcoord's own rendering of the state it
    sits in, as of the time it names (no later than its commit, and not long before):
    a page on the branch cannot say what the branch does not."""
    from ..domain import statepage

    path = names.state_page_path()
    at = statepage.generated_at(data)
    skew = state.config.skew if state.config else timedelta(seconds=60)
    if at is None:
        return [Problem(path, "state-page", "not a page `gitcoord state --write` renders")]
    if not meta.time - PAGE_AGE - skew <= at <= meta.time + skew:
        return [
            Problem(
                path,
                "state-page",
                f"it says it was generated at {at:%Y-%m-%dT%H:%M:%SZ}, not at its commit's time",
            )
        ]
    if statepage.render(state, view, at) != data:
        return [
            Problem(
                path,
                "state-page",
                "it is not the rendering of the state it sits in (`gitcoord state --write` "
                "writes it)",
            )
        ]
    return []


def _doc(store: Store, path: str, oid: str | None) -> Doc:
    """`parse_doc` of the blob `oid` at `path`, through the store's caches."""

    def read() -> bytes:
        return _blob(store, oid) or b""

    return store.parse_doc(path, oid, read)


def _blob(store: Store, oid: str | None) -> bytes | None:
    """The bytes of blob `oid` (None: no file; b"": not a blob here, e.g. a submodule
    that an older parent holds)."""
    if oid is None:
        return None
    try:
        return store.view(None).blob(oid)
    except FileNotFoundError:
        return b""


def _check_tombstones(store: Store, parent: str, changes: list[Changed]) -> list[Problem]:
    """A claim that a quarantine commit leaves where it moves a claim file (what else it
    may do is `transition._check_quarantine`'s) carries the highest generation of that
    file's history, so the fencing token never goes back."""
    problems = []
    for ch in changes:
        if not isinstance(ch.new, Claim):
            continue
        versions = claim_versions(store, parent, ch.path)
        if not versions:
            problems.append(
                Problem(ch.path, "quarantine", "no valid claim in its history: nothing to carry")
            )
            continue
        top = max(v.generation for v in versions)
        if ch.new.generation != top:
            problems.append(
                Problem(
                    ch.path,
                    "generation",
                    f"a tombstone carries the highest generation of its history, {top}, "
                    f"not {ch.new.generation}",
                )
            )
    return problems


def verify_update(
    store: Store,
    old: str | None,
    new: str | None,
    now: datetime | None = None,
    pusher: str | None = None,
    server: bool = False,
    proposal: bool = False,
) -> list[Problem]:
    """Every problem with moving the coordination branch from `old` to `new`, as seen
    at `now` (default: this machine's clock).

    The new history must be `old` followed by commits each judged against the state it
    replaces: the first-parent line from `new` reaches `old` itself (not merely some
    commit that `old` also reaches, as a merge whose first parent is an older commit
    and whose second parent is the tip would: that rolls the whole state back), no
    commit in it is a root unless the branch is being created, and a merge has the one
    shape an approval merge has (`_merge_problems`).
    """
    now = now or clock.now()
    ref = store.ref
    if new is None:
        return [Problem(ref, "no-delete", "the coordination branch cannot be deleted")]
    if old is not None:
        proc = store.git.run(["merge-base", "--is-ancestor", old, new], check=False)
        if proc.returncode != 0:
            return [
                Problem(
                    ref,
                    "history",
                    f"{new[:10]} does not descend from {old[:10]}: the coordination branch's "
                    "history is never rewritten (no force-push, no rebase)",
                )
            ]
    revs = [new] if old is None else [new, f"^{old}"]
    # The first-parent line from old to new, oldest first, read in one git process
    # (through store.git: inside a hook, the pushed objects' quarantine included).
    entries = list(read_commits(store.git, revs, reverse=True))
    if old is not None and entries and (entries[0].parents or [None])[0] != old:
        first = entries[0]
        what = "is a root commit" if not first.parents else f"follows {first.parents[0][:10]}"
        return [
            Problem(
                ref,
                "history",
                f"commit {first.commit[:10]} {what}, not the branch's tip {old[:10]}: every "
                "new commit must build on the one before it along first parents (a merge "
                "whose first parent is an older commit would roll the branch back)",
            )
        ]
    config = store.load(old).config if old is not None else None
    # Only a server knows who pushed (its hook says `server`); elsewhere (validate --range,
    # CI) the commits are judged by what they say, as before accounts were mapped.
    refused, trusted = _pusher(store, config, pusher) if server else ([], True)
    if refused:
        return refused
    problems: list[Problem] = []
    if proposal and (not entries or len(entries[-1].parents) != 2):
        return [
            Problem(
                ref,
                "merge",
                f"{new[:10]} is not a merge: a proposal (a pull request's test merge) merges "
                "one approval branch into the branch",
            )
        ]
    account = None if trusted else (config, pusher)
    for _, found in judged(store, old, entries, now, account, proposal):
        problems += found
    return problems


def judged(
    store: Store,
    old: str | None,
    entries: list[Entry],
    now: datetime,
    account: tuple[Config | None, str | None] | None = None,
    proposal: bool = False,
) -> Iterator[tuple[Entry, list[Problem]]]:
    """Each commit of `entries` (the first-parent line after `old`, oldest first) with
    its problems, in order. `account`: the config and the pusher the server named,
    when that account is not trusted with everything.

    A restoring commit (`doctor --fix` on a forged tip: its tree is that of an earlier
    commit it names, `Gitcoord-Restores`) takes the branch back to that commit: what
    lies between is judged no more, and the restoring commit is judged against the
    state it restores, so a forgery pushed where no hook refused it can be undone by
    any session without rewriting history. `proposal`: the last commit is a merge not
    made yet, judged as an approver's (who may approve, and their signature, are left to
    whoever merges it). Only a forgery is undone so: the first
    commit it skips must itself be refused (else restoring would be a rollback of
    honest work, and is judged as the change it makes)."""
    undone, restoring = _restored(store, old, entries)
    # Time on the branch only moves forward: a commit is judged no earlier than the one
    # it builds on (a quarantine dated years back judged claims at a time when they
    # did not exist yet) and no later than the verifier's clock (`verify_commit`).
    floor = _time_of(store, old) if old is not None else None

    def parent_of(i: int) -> str | None:
        if restoring is not None and i == restoring[0]:
            return restoring[1]  # judged as a change of the state it restores: none
        return entries[i].parents[0] if entries[i].parents else None

    diffs = changed_files_of(store, [(parent_of(i), e.commit) for i, e in enumerate(entries)])
    if diffs is not None:
        _prefetch(store, entries, diffs)
    landed = carried.Landed(store, old)
    i = 0
    while i < len(entries):
        entry = entries[i]
        parent = parent_of(i)
        found: list[Problem] = []
        is_carried = carried.is_carried(entry)
        if len(entry.parents) > 1 and not is_carried:
            found += _merge_problems(store, entry, parent)
        meta = commit_meta(entry)
        if account is not None:
            config, pusher = account
            found += _speaks_for(store, config, pusher, meta)
            # an author email is the pusher's to write: only the account says who approves
            meta = replace(meta, author_email=f"pusher {pusher}")
        if floor is not None and meta.time < floor:
            meta = replace(meta, time=floor)
        approver = None
        if proposal and i == len(entries) - 1:
            approver = _an_approver(store, parent, meta.author_email)
        diff = diffs[i] if diffs is not None else None
        signed = None
        if is_carried:
            if diff is None:
                modes: dict[str, str] = {}
                diff = (changed_files(store, parent, entry.commit, modes), modes)
            found += carried.problems(
                store,
                entry,
                parent,
                min(meta.time, now),
                landed,
                diff[0],
                lambda old, new: changed_files(store, old, new),
            )
            signed = entry.parents[1]
        else:
            found += carried.twice(store, entry, landed)
        found += verify_commit(store, meta, parent, entry.commit, now, approver, diff, signed)
        landed.add(entry)
        if undone and i == min(undone):
            if found:
                # The first commit it undoes is refused: the restoring commit is what
                # repairs it. Nothing in between counts.
                i = max(undone) + 1
                continue
            undone, restoring = set(), None  # nothing to repair: a rollback, judged as one
        floor = meta.time
        yield entry, found
        i += 1


PREFETCHED = 4096  # folders read ahead for a range at most (`_prefetch`)


def _prefetch(
    store: Store, entries: list[Entry], diffs: list[tuple[Changes, dict[str, str]]]
) -> None:
    """Read the folders each commit of a range changed (and so the ones its state's load
    lists anew) in one exchange with cat-file, by `<commit>:<folder>`: a push of 20
    commits then costs one exchange for them, not one per folder per commit."""
    names: list[str] = []
    for entry, (changes, _) in zip(entries, diffs, strict=True):
        folders = {""}
        for path, _, _ in changes:
            parts = path.split("/")[:-1]
            folders.update("/".join(parts[: k + 1]) for k in range(len(parts)))
        names += [f"{entry.commit}:{f}" if f else f"{entry.commit}^{{tree}}" for f in folders]
        if len(names) >= PREFETCHED:
            break
    store.reader.trees(names[:PREFETCHED])


RESTORE_OP = "restore"
RESTORES = "Gitcoord-Restores"


def _restored(
    store: Store, old: str | None, entries: list[Entry]
) -> tuple[set[int], tuple[int, str] | None]:
    """The commits (indexes into `entries`) that a restoring commit undoes, and that
    commit (its index, and the commit it restores): the last restoring commit whose
    target is `old` or an earlier commit of `entries` and whose tree is that target's."""
    for r in range(len(entries) - 1, -1, -1):
        entry = entries[r]
        target = entry.get(RESTORES)
        if entry.op != RESTORE_OP or not target or len(entry.parents) != 1:
            continue
        line = [old] + [e.commit for e in entries[:r]]
        if target not in line or store.tree_of(target) != store.tree_of(entry.commit):
            continue
        start = line.index(target)  # line[k] is entries[k - 1]: entries[start:r] are undone
        return set(range(start, r)), (r, target)
    return set(), None


def _an_approver(store: Store, parent: str | None, author: str) -> str:
    """Whom a proposal is judged as: an approver of the state it would change."""
    config = store.load(parent).config if parent else None
    approvers = config.approvers if config is not None else []
    return author if author in approvers or not approvers else approvers[0]


def _time_of(store: Store, commit: str) -> datetime | None:
    got = next(iter(read_commits(store.git, [commit], limit=1)), None)
    return got.time if got is not None else None


def _merge_problems(store: Store, entry: Entry, parent: str | None) -> list[Problem]:
    """A merge is accepted in one shape only: an approver merging an approval branch
    (`gitcoord-approval/<id>`), i.e. two parents, and against its first parent it
    changes exactly one approval request, from pending to approved. Whether its author
    may approve is the transition rules' (`transition._check_approval`)."""
    from ..domain.kinds import APPROVAL, kind_at

    short = entry.commit[:10]
    if len(entry.parents) > 2:
        return [
            Problem(
                store.ref,
                "merge",
                f"commit {short} merges {len(entry.parents)} parents: only an approval "
                "branch may be merged, one at a time",
            )
        ]
    changed = changed_files(store, parent, entry.commit)
    only = changed[0][0] if len(changed) == 1 else None
    if only is None or kind_at(only) is not APPROVAL:
        return [
            Problem(
                store.ref,
                "merge",
                f"commit {short} is a merge that changes "
                + (", ".join(p for p, _, _ in changed[:3]) or "nothing")
                + ": a merge may only approve one request (an approval branch's one change)",
            )
        ]
    _, old_oid, new_oid = changed[0]
    view = store.view(None)
    before = parse_doc(only, view.blob(old_oid) if old_oid else None)
    after = parse_doc(only, view.blob(new_oid) if new_oid else None)
    if not (
        isinstance(before, Approval)
        and isinstance(after, Approval)
        and before.status == "pending"
        and after.status == "approved"
    ):
        return [
            Problem(
                only,
                "merge",
                f"commit {short} is a merge that does not approve a pending request",
            )
        ]
    return []


def _pusher(store: Store, config: Config | None, pusher: str | None) -> tuple[list[Problem], bool]:
    """Whether the server's word on who pushed lets this push in at all, and whether the
    pusher is trusted with anything (no mapping configured, or an approver's account)."""
    if config is None or not config.pushers:
        return [], True  # nobody mapped: identities are what the commits say
    account = config.pushers.get(pusher) if pusher is not None else None
    if account is None:
        who = (
            f"{pusher} is not in config.yaml's pushers"
            if pusher is not None
            else "the server did not say who pushed (GL_USER, GITEA_PUSHER_NAME, GL_USERNAME "
            "or REMOTE_USER)"
        )
        return [Problem(store.ref, "pusher", f"{who}: only mapped accounts push here")], False
    return [], account.approver


def _speaks_for(
    store: Store, config: Config | None, pusher: str | None, meta: CommitMeta
) -> list[Problem]:
    """A mapped account that is not an approver's pushes only commits that speak for one
    of its sessions (a quarantine, entitled by what it moves, by any account)."""
    assert config is not None and pusher is not None
    allowed = config.pushers[pusher].sessions
    if meta.op == QUARANTINE_OP:
        return []
    if meta.session is not None and any(fnmatchcase(meta.session, p) for p in allowed):
        return []
    said = f"speaks for {meta.session}" if meta.session else "speaks for no session"
    return [
        Problem(
            store.ref,
            "pusher",
            f"commit {(meta.commit or '')[:10]} {said}, which {pusher} may not "
            f"(its sessions: {', '.join(allowed) or 'none'})",
        )
    ]
