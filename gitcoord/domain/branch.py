"""The coordination branch: whole states over the store's register of trees.

`gitcoord.store` knows trees, commits and compare-and-swap, nothing of what the files
mean. This is the gate every mutating command passes, built on the store's generic
transaction (`TreeStore.transact`): each round, on the tip the store read,

    load the state at that tip, refuse if it is broken
    plan = operation(state)               # pure; may raise a conflict
    validate(state after plan) and the transition (who may change what)
    hand the store the files as YAML, the commit message with its trailers, the time

and the store writes the commit and swaps it in, or goes round again on a lost race.

`Store` (the name the rest of the package has always used: `coord.store`) offers
what callers need: states (`snapshot`, `load`), views of trees (`view`, `view_of`),
the transaction (`transact`), and the store's own attributes.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from ..errors import ConflictError, GitcoordError, InvalidError, RefusedError, RemoteError
from ..gitio import Git, GitError, ObjectReader, RepoInfo, is_object_id
from ..store.parsecache import ParseCache
from ..store.transaction import (
    DEFAULT_TIMEOUT,
    Decision,
    Identity,
    Known,
    TreeStore,
    Unchanged,
    Write,
)
from ..store.trees import Files, TreeSource
from . import yamlio
from .change import Change
from .kinds import kind_at
from .models import CARRIED, Claim
from .state import Doc, Problem, State, Validated, load_state
from .transition import HANDOFF_TO, Changed, CommitMeta, check_transition, doc_at, parse_doc
from .validate import check_messages, check_state, overlap_problems

__all__ = ["DEFAULT_TIMEOUT", "Identity", "Outcome", "Store", "TreeSource", "commit_message"]

# Everything `yamlio.load`'s answer depends on besides the bytes (the parse cache keeps
# answers only of this version): when yamlio's own code changes what it accepts or
# returns, add a revision here (`/rev-2`).
PARSE_VERSION = (
    f"ruamel-{yamlio.parser_version()}/max-{yamlio.MAX_FILE_BYTES}-{yamlio.MAX_FLOW_DEPTH}"
)
KEPT_STATES = 4  # states a Store keeps by commit (`Store.load`)


@dataclass
class Outcome:
    """What a transaction did."""

    change: Change
    commit: str | None  # None when the operation changed nothing
    tip: str | None  # the tip it was decided on
    attempts: int
    landed: str | None = None  # the tip its push made, when it pushed (`Done.landed`)
    carried: bool = False  # another clone's push carried it (`Done.carried`)


class CachedSource(TreeSource):
    """A commit's tree whose files `load_state` parses through the parse cache, and
    takes from the documents its store validated before (`Validated`)."""

    validated: Validated | None = None

    def load_yaml(self, path: str) -> Any:
        """`yamlio.load(self.read(path))`, from the parse cache when the blob is in it
        (then the blob is not even read)."""
        return self.parse(path)


class Store:
    """The coordination branch of one repository: states in, commits out."""

    def __init__(
        self,
        info: RepoInfo,
        git: Git,
        *,
        branch: str,
        remote: str | None,
        identity: Identity,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.trees = TreeStore(
            info, git, branch=branch, remote=remote, identity=identity, timeout=timeout
        )
        self.info = info
        self.git = git
        self.branch = branch
        self.remote = remote
        self.identity = identity
        self.timeout = timeout
        self.ref = self.trees.ref
        self.mirror = self.trees.mirror
        self.reader: ObjectReader = self.trees.reader
        self.parsed = ParseCache(
            info.common_dir, self.mirror, parse=yamlio.load, version=PARSE_VERSION
        )
        self.validated = Validated()
        # The last few states loaded, by commit: a commit names its tree, so its state
        # never changes. Along a verified range each commit's state is the next one's
        # old state, and a write decides on the tip its check just loaded: one State
        # object for both, whose rules are then checked once (`validate.check_state`).
        self._states: dict[str, State] = {}
        self.trees.wrote = self._wrote
        self.trees.parsed = self.parsed  # (group commit hands its new entries on)
        # Called with every tip read to act on (and its state) before anything is built
        # on it or shown from it: the API verifies signatures there (`api.trust`).
        # The state comes as a function: a tip verified before needs no state at all.
        self.tip_check: Callable[[str | None, Callable[[], State]], None] | None = None
        self._pinned: tuple[str | None] | None = None  # reads at this tip (`pinned`)
        self.trees.waited_on = self._verify_ahead

    def _verify_ahead(self, tip: str | None) -> None:
        """A tip fetched while this clone waits in the remote's queue: checked now, so
        that the turn, when it comes, checks only what the push before it brought (at
        10 machines of 20 sessions the head of the queue checked the nine pushes since
        its last turn, ~180 commits, 1.4 s in which nobody else could go). A tip that
        cannot be verified, or not now (a git or file error), is left to the turn's own
        check, which refuses it or says what is wrong."""
        if self.tip_check is None or tip is None:
            return
        with contextlib.suppress(GitcoordError, GitError, OSError):
            self.tip_check(tip, lambda: self.load(tip))

    def checked(self, tip: str | None, state: State) -> State:
        if self.tip_check is not None:
            self.tip_check(tip, lambda: state)
        return state

    @property
    def remote_url(self) -> str | None:
        """The remote's URL (set by the Coordinator): the machine-wide turn's key."""
        return self.trees.remote_url

    @remote_url.setter
    def remote_url(self, url: str | None) -> None:
        self.trees.remote_url = url

    def close(self) -> None:
        self.trees.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def where(self) -> str:
        return self.trees.where

    # --- reading -------------------------------------------------------------

    def fetch_tip(self, deadline: float) -> str | None:
        """The branch tip as it is now: fetched from the remote, or read locally (or the
        tip reads are `pinned` to)."""
        if self._pinned is not None:
            return self._pinned[0]
        return self.trees.fetch_tip(deadline)

    @contextlib.contextmanager
    def pinned(self, tip: str | None) -> Iterator[None]:
        """Reads (`snapshot`, `fetch_tip`) see `tip` instead of fetching: several reads
        that make one picture (the web page's overview) show one moment, for one fetch.
        Writes are not pinned: a transaction always fetches the tip it builds on."""
        outer, self._pinned = self._pinned, (tip,)
        try:
            yield
        finally:
            self._pinned = outer

    def tree_of(self, commit: str) -> str | None:
        return self.trees.tree_of(commit)

    def view(self, commit: str | None) -> TreeSource:
        """The tree of `commit` (empty when None or unknown), read on demand."""
        return self.trees.view(commit)

    def view_of(self, state: State) -> TreeSource:
        """The tree a loaded state came from (for reading messages on demand)."""
        src = state.source
        return src if isinstance(src, TreeSource) else TreeSource(self.reader, None)

    def _wrote(self, path: str, blob: str, data: bytes) -> None:
        """A file this process wrote, for the loads to come (the next member of a group
        decides on it: `ParseCache.learn`), if a State holds its kind."""
        kind = kind_at(path)
        if kind is not None and kind.held is not None and path.endswith(".yaml"):
            self.parsed.learn(blob, data)

    def parse_doc(self, path: str, blob: str | None, read: Callable[[], bytes]) -> Doc:
        """`transition.parse_doc(path, read())` for the blob `blob`, through the parse
        cache and the documents validated before when a State holds the kind: along a
        push's commits the same files change again and again, and each commit's old and
        new versions were parsed once already, by the loads of its states."""
        if blob is None:
            return None
        kind = kind_at(path)
        if kind is None or kind.held is None:
            return parse_doc(path, read())
        if (hit := self.validated.get(kind.model, blob)) is not None:
            return hit
        try:
            doc = kind.model.model_validate(self.parsed.parse(blob, read))
        except ValueError:  # YAML or schema (pydantic's ValidationError is one)
            return read()  # as parse_doc: check_state reports it
        self.validated.put(kind.model, blob, doc)
        return doc

    def load(self, tip: str | None) -> State:
        if tip is None:
            return State()
        if (known := self._states.get(tip)) is not None:
            return known
        tree = self.tree_of(tip)
        src = CachedSource(self.reader, tree, self.parsed, tip)
        src.validated = self.validated
        state = load_state(src)
        # Kept only by a full object id of a commit that is here: a name that can move
        # (a ref) or an object not fetched yet would keep a state that is not its own.
        if tree is not None and is_object_id(tip):
            if len(self._states) >= KEPT_STATES:
                self._states.pop(next(iter(self._states)), None)
            self._states[tip] = state
        return state

    def snapshot(self) -> tuple[str | None, State]:
        deadline = time.monotonic() + self.timeout
        tip = self.fetch_tip(deadline)
        state = self.checked(tip, self.load(tip))
        self.parsed.save()
        return tip, state

    def snapshot_or_cached(self, timeout: float) -> tuple[str | None, State, bool]:
        """The freshest state reachable within `timeout`; falls back to the last
        fetched one (third value False) when the remote does not answer in time."""
        try:
            tip = self.fetch_tip(time.monotonic() + timeout)
            fresh = True
        except RemoteError:
            tip = self.trees.mirror_tip()
            fresh = False
        state = self.checked(tip, self.load(tip))
        self.parsed.save()
        return tip, state, fresh

    def last_commit(self, tip: str, path: str) -> str | None:
        return self.trees.last_commit(tip, path)

    # --- writing -------------------------------------------------------------

    def transact(
        self,
        plan: Callable[[State], Change],
        now: Callable[[], datetime],
        *,
        repair: bool = False,
        known: tuple[str | None, State] | None = None,
    ) -> Outcome:
        """`plan` on the state at the tip, validated, as one commit swapped in for the
        tip (again on the new tip after a lost race: see `TreeStore.transact`).

        `repair` (doctor --fix): plan on a broken state, and judge the result by
        loading the tree written (it may delete files, which `State.apply` cannot).
        `known`: a tip and its state fetched a moment ago (e.g. by the read that led to
        this write): the first round plans on them instead of fetching again.
        """
        decide = self.decider(plan, now, repair=repair, known=known)
        try:
            done = self.trees.transact(decide, known=None if known is None else Known(known[0]))
        finally:
            self.parsed.save()  # after the push and the turn: off the contended path
        return Outcome(done.result, done.commit, done.tip, done.attempts, done.landed, done.carried)

    def decider(
        self,
        plan: Callable[[State], Change],
        now: Callable[[], datetime],
        *,
        repair: bool = False,
        known: tuple[str | None, State] | None = None,
    ) -> Callable[[str | None], Decision[Change]]:
        """The gate for one operation, as the store's transaction calls it each round:
        `plan` on the state at the tip it is given, validated (see `transact`)."""
        first = known

        def decide(tip: str | None) -> Decision[Change]:
            nonlocal first
            if first is not None and first[0] == tip:  # the first round: on the known tip
                state = first[1]
            elif repair:  # doctor --fix works on a tip that cannot be verified: its job
                state = self.load(tip)
            elif (on := self.trees.chained_on) is not None:
                # On a commit other sessions of this clone chained on the tip, for one
                # push (group commit): the tip is what is verified; each chained commit
                # was judged as it was written, as this clone's own writes are.
                if self.tip_check is not None:
                    base = on[0]
                    self.tip_check(base, lambda: self.load(base))
                state = self.load(tip)
            else:
                state = self.checked(tip, self.load(tip))
            first = None
            return self._decide(plan, now, repair, tip, state)

        return decide

    def _decide(
        self,
        plan: Callable[[State], Change],
        now: Callable[[], datetime],
        repair: bool,
        tip: str | None,
        state: State,
    ) -> Decision[Change]:
        """One round's gate: what to write on `tip`, whose state is `state`."""
        if not repair:
            _refuse_broken(state, tip)
        try:
            change = plan(state)
        except ConflictError as exc:
            self._add_winner(exc, tip)
            raise
        if change.noop:
            return Unchanged(change)
        when = now()
        meta = CommitMeta(
            None,
            self.identity.email,
            change.session,
            change.op,
            when,
            change.trailers.get(HANDOFF_TO),
        )
        changes = [Changed(p, doc_at(state, p), d) for p, d in change.writes.items()]
        commit = files = message = None
        signer, required = signer_of(change, state)
        if required and change.session:
            self._own_key(change.session, state, signer, required)
        if repair or any(doc is None for doc in change.writes.values()):
            # A change that deletes (doctor --fix, upgrade's moves) is judged by the tree
            # it writes: `State.apply` cannot delete.
            files, message = _files(change), commit_message(change)
            commit = self.trees.write_commit(tip, files, message, when, signer, required)
            after = self.load(commit)
            bad = check_state(after, when) + check_messages(self.view(commit), after)
        else:
            after = state.apply(change.writes)
            # Claims of different holders that overlap are judged where this write makes
            # one, as the verifier judges a commit by the problems it adds: a pair that was
            # there before (a branch written before the item grammar may hold one;
            # `validate` and `doctor` report it) does not stop its holders' other writes.
            written = {d.key for d in change.writes.values() if isinstance(d, Claim)}
            was = set(overlap_problems(state, when, written))
            bad = check_state(after) + [
                p for p in overlap_problems(after, when, written) if p not in was
            ]
        bad += check_transition(state, after, changes, meta)
        if bad:
            raise InvalidError(
                f"refusing to write an invalid state: {bad[0]}",
                problems=[p.to_json() for p in bad],
            )
        if files is None or message is None:
            files, message = _files(change), commit_message(change)
        return Write(
            files,
            message,
            when,
            change,
            commit=commit,
            signer=signer,
            signature_required=required,
            # (a session's write on a branch that takes carried commits: only those)
            carriable=change.session is not None
            and state.config is not None
            and state.format >= CARRIED,
        )

    def _own_key(self, session: str, state: State, role: str, required: bool) -> None:
        """Refuse before writing what the verifier would refuse after: speaking for a
        session bound to another key than the one that would sign."""
        from ..sshsig import fingerprint

        known = state.sessions.get(session)
        bound = known.key if known is not None else None
        key = self.trees.signer(role, required)
        if bound is not None and key is not None and key.public != bound:
            raise RefusedError(
                f"session {session} is bound to key {fingerprint(bound)}, not this machine's "
                f"{fingerprint(key.public)}: only its own key speaks for it where signatures "
                "are required (`gitcoord key show`)",
                session=session,
            )

    def _add_winner(self, exc: ConflictError, tip: str | None) -> None:
        path = exc.details.get("path")
        if tip and isinstance(path, str):
            commit = self.last_commit(tip, path)
            if commit:
                exc.details["commit"] = commit
                exc.message += f" (since commit {commit[:10]})"
                exc.args = (exc.message,)

    def write_commit(self, tip: str | None, change: Change, when: datetime) -> str:
        """The commit of `change` over `tip`, written but not on any branch (an approval
        branch's proposal: a session's work, signed by its key when it has one)."""
        return self.trees.write_commit(
            tip, _files(change), commit_message(change), when, "session", False
        )

    def publish_branch(self, branch: str, commit: str) -> None:
        """Create `refs/heads/<branch>` at `commit` (on the remote when there is one)."""
        self.trees.publish_branch(branch, commit)

    def remove_branch(self, branch: str) -> bool:
        """Delete `refs/heads/<branch>` (on the remote when there is one), best effort."""
        return self.trees.remove_branch(branch)


def signer_of(change: Change, state: State) -> tuple[str, bool]:
    """Whose key signs `change`'s commit, and whether the branch requires it: what a
    session does is signed by the key bound to it ("session": this user's machine key);
    a commit that speaks for no session is a person's act (init, approvals, the
    approver list), signed by that person's own key ("person")."""
    required = bool(state.config is not None and state.config.require_signatures)
    return ("session" if change.session else "person"), required


def commit_message(change: Change) -> str:
    """The subject, then the Gitcoord-* trailers that make `git log` the audit trail."""
    trailers = {"Gitcoord-Op": change.op}
    if change.session:
        trailers["Gitcoord-Session"] = change.session
    if change.resource:
        trailers["Gitcoord-Resource"] = change.resource
    trailers.update(change.trailers)
    lines = [f"{k}: {v}" for k, v in trailers.items()]
    lines += [f"{k}: {v}" for k, values in change.repeated.items() for v in values]
    return "\n".join([change.subject, "", *lines]) + "\n"


def _files(change: Change) -> Files:
    """What the change writes, as the bytes of each file (None: delete it)."""
    return {path: None if doc is None else _dump(doc) for path, doc in change.writes.items()}


def _dump(doc: BaseModel | bytes) -> bytes:
    return doc if isinstance(doc, bytes) else yamlio.dump(doc)


def _refuse_broken(state: State, tip: str | None) -> None:
    problems: list[Problem] = check_state(state)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise InvalidError(
            f"the coordination branch at {(tip or '')[:10]} is invalid: {problems[0]}{more}; "
            "run `gitcoord validate` (or `gitcoord doctor`) to list the problems and "
            "`gitcoord doctor --fix` to move the bad files into coordination/quarantine/ "
            "(bytes kept)",
            problems=[p.to_json() for p in problems],
            tip=tip,
        )
