"""Judging a carried commit: one clone's push landing another clone's request.

A clone that waits publishes the commit it decided, its request (`store.requests`);
whichever clone pushes next may carry it: a commit on the branch whose second parent is
the request, whose tree is its parent's with the request's files, and whose message is
the request's. The carrier's own key (or none) proves nothing about the session it
speaks for; the request does. So a carried commit is accepted only when:

- the branch is at format 5 (`models.CARRIED`) or later, which every clone that may
  read it can verify;
- its second parent is a commit of one parent (the tip it was decided on, the *base*),
  and both messages are the same bytes: the session, operation and request id are the
  request's own;
- the request id and end (`Gitcoord-Request`, `Gitcoord-Valid-Until`) are well formed,
  and the commit is no later than that end (judged at its own time, which is never
  earlier than its parent's nor later than the verifier's clock);
- the base is on the branch's first-parent line within AGE commits of the parent;
- the id did not land before, carried or pushed by its own clone, within AGE commits;
- it changes exactly what the request changed over its base: the same paths, to the
  same blobs;
- and then as every commit: entitled to its change by the transition rules, and, where
  signatures are required, signed — the request, by the key bound to its session
  (`verify.verify_commit` is given the request to judge the signature of).

A commit that is no carried commit but names a request id is refused when that id landed
within AGE commits: an id lands once.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from ..domain.branch import Store
from ..domain.models import CARRIED
from ..domain.state import Problem
from ..gitio import commit_parents
from ..sshsig import split_commit
from ..store.requests import REQUEST, VALID_UNTIL, is_id, message_of, until_of
from .history import Entry, read_commits

AGE = 512  # commits along first parents in which a request's base and its id are looked for


def is_carried(entry: Entry) -> bool:
    return len(entry.parents) == 2 and entry.get(REQUEST) is not None


class Landed:
    """The first-parent line before the commit being judged (AGE commits before the
    range, then each commit judged) and the request ids landed on it. Read from git
    only when a commit that names a request is judged: most ranges have none."""

    def __init__(self, store: Store, old: str | None) -> None:
        self.store = store
        self.old = old
        self._line: list[str] | None = None
        self._ids: set[str] = set()
        self._judged: list[Entry] = []  # added before the line was read

    def _load(self) -> list[str]:
        if self._line is None:
            self._line = []
            if self.old is not None:
                for entry in read_commits(self.store.git, [self.old], limit=AGE):
                    self._line.append(entry.commit)
                    self._ids.update(entry.trailers.get(REQUEST, []))
                self._line.reverse()  # oldest first
            for entry in self._judged:
                self._append(entry)
            self._judged = []
        return self._line

    def _append(self, entry: Entry) -> None:
        assert self._line is not None
        self._line.append(entry.commit)
        self._ids.update(entry.trailers.get(REQUEST, []))
        if len(self._line) > 2 * AGE:
            del self._line[: len(self._line) - AGE]

    def has_id(self, rid: str) -> bool:
        self._load()
        return rid in self._ids

    def within(self, commit: str) -> bool:
        """Whether `commit` is among the last AGE commits of the line."""
        return commit in self._load()[-AGE:]

    def add(self, entry: Entry) -> None:
        if self._line is None:
            self._judged.append(entry)
        else:
            self._append(entry)


Changes = list[tuple[str, str | None, str | None]]  # (path, old blob, new blob)


def problems(
    store: Store,
    entry: Entry,
    parent: str | None,
    when: datetime,
    landed: Landed,
    diff: Changes,
    changed: Callable[[str, str], Changes],
) -> list[Problem]:
    """Why the carried commit `entry` (on `parent`, judged at time `when`, changing `diff`)
    may not land; [] when it may. `changed(old, new)`: what a commit changed over another
    (`verify.changed_files`, which imports this module)."""
    short = entry.commit[:10]
    request = entry.parents[1]

    def no(message: str) -> list[Problem]:
        return [Problem(store.ref, "carried", f"commit {short} {message}")]

    got = store.reader.read(request)
    if got is None or got[1] != "commit":
        return no(f"carries {request[:10]}, which is no commit here")
    mine = store.reader.read(entry.commit)
    assert mine is not None
    payload, _ = split_commit(got[2], store.info.object_format)
    bases = commit_parents(payload)
    if len(bases) != 1:
        return no("carries a request that is not one commit on a tip of the branch")
    base = bases[0]
    if message_of(payload) != message_of(mine[2]):
        return no("does not say what the request it carries says (its message differs)")
    if entry.session is None:
        return no("carries a request that speaks for no session: only a session's write is carried")
    rid, until = entry.get(REQUEST), until_of(entry.get(VALID_UNTIL))
    if not is_id(rid) or until is None:
        return no(f"carries a request without a well-formed {REQUEST} and {VALID_UNTIL}")
    assert rid is not None
    config = store.load(parent).config if parent else None
    if config is None or config.format < CARRIED:
        # Before format 5 a clone may run a gitcoord that refuses a commit of two
        # parents: nothing is carried until `upgrade` says every clone takes them.
        fmt = config.format if config is not None else "none"
        return no(
            f"carries a request on a branch at format {fmt}: carried commits need format "
            f"{CARRIED} (`gitcoord upgrade`)"
        )
    skew = config.skew
    if when > until + skew:
        return no(f"carries a request that ended at {entry.get(VALID_UNTIL)}")
    if not landed.within(base):
        return no(
            f"carries a request decided on {base[:10]}, not one of the branch's last {AGE} commits"
        )
    if landed.has_id(rid):
        return no(f"carries request {rid}, which landed already: a request lands once")
    asked = {(path, new) for path, _, new in changed(base, request)}
    made = {(path, new) for path, _, new in diff}
    if asked != made:
        return no("does not change what the request it carries changes")
    return []


def twice(store: Store, entry: Entry, landed: Landed) -> list[Problem]:
    """A commit that is not carried but names a request id that landed already."""
    rid = entry.get(REQUEST)
    if rid is None or not landed.has_id(rid):
        return []
    return [
        Problem(
            store.ref,
            "carried",
            f"commit {entry.commit[:10]} names request {rid}, which landed already: a "
            "request lands once",
        )
    ]
