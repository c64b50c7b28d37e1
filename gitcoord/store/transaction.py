"""The store: the coordination branch as a compare-and-swap register of whole states.

One transaction, used by every mutating command:

    read the tip (fetch it when there is a remote)
    load the state at that tip, refuse if it is broken
    plan = operation(state)               # pure; may raise a conflict
    validate(state after plan)
    write blobs, trees and a commit whose parent is the tip (no work tree, no index)
    compare-and-swap the branch from tip to the commit
        remote: git push --force-with-lease=<ref>:<tip>   (receive-pack checks under lock)
        local:  git update-ref <ref> <commit> <tip>
    on losing the race: back off with jitter and go round again on the new tip

The loser never merges: it re-reads and the operation decides afresh, so a claim
that someone else won becomes exit 3 naming the winner.

Several processes may run this at once in one clone. They share nothing but
refs, and every ref write is either a compare-and-swap we retry or a cache
(`refs/gitcoord/remotes/<remote>/<branch>`) whose lock collisions we tolerate.
FETCH_HEAD is never written and no index file is ever used.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import random
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any

from pydantic import BaseModel

from ..domain import yamlio
from ..domain.change import Change
from ..domain.state import Problem, State, load_state
from ..domain.transition import Changed, CommitMeta, check_transition, doc_at
from ..domain.validate import check_messages, check_state
from ..errors import ConflictError, InvalidError, RemoteError
from ..gitio import (
    Git,
    GitError,
    GitTimeout,
    ObjectReader,
    ObjectWriter,
    RepoInfo,
    TreeEntry,
    format_commit,
    format_tree,
)
from .parsecache import ParseCache

DEFAULT_TIMEOUT = 30.0
MAX_ATTEMPTS = 40
_LOCK_TIMEOUT = ["core.filesRefLockTimeout=1000"]
_LOCK_ERRORS = ("cannot lock ref", "Unable to create", "unable to resolve reference", "is at ")
_STALE = ("stale info", "fetch first", "non-fast-forward", "failed to update ref", "cannot lock")


class CutOff(RemoteError):
    """A git process talking to the remote was stopped at the deadline, mid-way."""


@dataclass(frozen=True)
class Identity:
    name: str
    email: str

    def signature(self) -> str:
        return f"{self.name} <{self.email}>"


@dataclass
class Outcome:
    """What a transaction did."""

    change: Change
    commit: str | None  # None when the operation changed nothing
    tip: str | None  # the tip it was decided on
    attempts: int


class TreeSource:
    """`state.Source` over a commit's tree, read through one cat-file process."""

    def __init__(
        self,
        reader: ObjectReader,
        root_tree: str | None,
        parsed: ParseCache | None = None,
        commit: str | None = None,
    ) -> None:
        self._reader = reader
        self._root = root_tree
        self.commit = commit  # the commit whose tree this is, when it is one
        self._cache: dict[str, list[TreeEntry] | None] = {}
        self._parsed = parsed

    def entries(self, path: str) -> list[TreeEntry] | None:
        if path in self._cache:
            return self._cache[path]
        found: list[TreeEntry] | None
        if self._root is None:
            found = None
        elif path == "":
            found = self._reader.tree(self._root)
        else:
            parent, _, leaf = path.rpartition("/")
            above = self.entries(parent)
            entry = next((e for e in above or [] if e.name == leaf), None)
            found = self._reader.tree(entry.oid) if entry is not None and entry.is_tree else None
        self._cache[path] = found
        return found

    def listdir(self, path: str) -> list[tuple[str, bool]] | None:
        found = self.entries(path)
        return None if found is None else [(e.name, e.is_tree) for e in found]

    def blob(self, oid: str) -> bytes:
        got = self._reader.read(oid)
        if got is None:
            raise FileNotFoundError(oid)
        return got[2]

    def _entry(self, path: str) -> TreeEntry | None:
        parent, _, leaf = path.rpartition("/")
        return next((e for e in self.entries(parent) or [] if e.name == leaf), None)

    def read(self, path: str) -> bytes:
        entry = self._entry(path)
        got = self._reader.read(entry.oid) if entry is not None else None
        if got is None:
            raise FileNotFoundError(path)
        return got[2]

    def load_yaml(self, path: str) -> Any:
        """`yamlio.load(self.read(path))`, from the parse cache when the blob is in it
        (then the blob is not even read)."""
        entry = self._entry(path)
        if self._parsed is None or entry is None or entry.is_tree:
            return yamlio.load(self.read(path))
        return self._parsed.parse(entry.oid, lambda: self.read(path))


class Store:
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
        self.info = info
        self.git = git
        self.branch = branch
        self.remote = remote
        self.identity = identity
        self.timeout = timeout
        self.ref = f"refs/heads/{branch}"
        # Our own copy of the remote tip. Not refs/remotes/<remote>/<branch>: `git push`
        # moves that one without checking its old value, so a late push in this clone
        # could set it back between a fetch and the read that follows. Only our fetch
        # (which checks the old value) writes this ref.
        self.mirror = f"refs/gitcoord/remotes/{remote}/{branch}" if remote else self.ref
        self.reader = ObjectReader(git)
        self.writer = ObjectWriter(info)
        self.parsed = ParseCache(info.common_dir, self.mirror)

    def close(self) -> None:
        self.reader.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def where(self) -> str:
        return f"{self.branch} on {self.remote}" if self.remote else f"{self.branch} (local)"

    # --- reading -------------------------------------------------------------

    def fetch_tip(self, deadline: float) -> str | None:
        """The branch tip as it is now: fetched from the remote, or read locally."""
        if self.remote is not None and not self._fetch(deadline):
            return None
        got = self.reader.read(self.mirror)
        if got is None:
            return None
        if got[1] != "commit":
            raise InvalidError(f"{self.mirror} does not point at a commit")
        return got[0]

    def _fetch(self, deadline: float) -> bool:
        """Fetch the remote branch into its mirror ref; False when it does not exist."""
        assert self.remote is not None
        argv = [
            "fetch",
            "--quiet",
            "--no-tags",
            "--no-write-fetch-head",
            "--no-auto-gc",
            "--no-auto-maintenance",
            "--no-recurse-submodules",
            "--no-write-commit-graph",
            "--refmap=",
            self.remote,
            f"+{self.ref}:{self.mirror}",
        ]
        for attempt in range(4):
            proc = self._run_remote(argv, deadline, "fetch from")
            if proc.returncode == 0:
                return True
            err = proc.stderr.decode("utf-8", "replace")
            if "couldn't find remote ref" in err:
                return False
            if any(s in err for s in _LOCK_ERRORS):
                # Another process in this clone is writing the mirror: the objects are
                # here; fetch again (cheap) so we end up with a tip no older than ours.
                if attempt < 3:
                    self._sleep(attempt, deadline)
                continue
            raise RemoteError(
                f"cannot fetch {self.branch} from {self.remote}: {_first_error(err)}",
                remote=self.remote,
            )
        return True  # the mirror was written by a concurrent fetch; good enough, CAS guards

    def _run_remote(
        self, argv: list[str], deadline: float, what: str
    ) -> subprocess.CompletedProcess[bytes]:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise RemoteError(
                f"timed out after {self.timeout:g}s talking to {self.remote}", remote=self.remote
            )
        try:
            return self.git.run(argv, check=False, timeout=remaining, config=_LOCK_TIMEOUT)
        except GitTimeout:
            raise CutOff(
                f"timed out after {self.timeout:g}s trying to {what} {self.remote}",
                remote=self.remote,
            ) from None

    def tree_of(self, commit: str) -> str | None:
        got = self.reader.read(commit)
        if got is None or got[1] != "commit":
            return None
        return got[2].split(b"\n", 1)[0].split(b" ")[1].decode()

    def view(self, commit: str | None) -> TreeSource:
        """The tree of `commit` (empty when None or unknown), read on demand."""
        return TreeSource(self.reader, self.tree_of(commit) if commit else None, commit=commit)

    def view_of(self, state: State) -> TreeSource:
        """The tree a loaded state came from (for reading messages on demand)."""
        src = state.source
        return src if isinstance(src, TreeSource) else TreeSource(self.reader, None)

    def load(self, tip: str | None) -> State:
        if tip is None:
            return State()
        return load_state(TreeSource(self.reader, self.tree_of(tip), self.parsed, tip))

    def snapshot(self) -> tuple[str | None, State]:
        deadline = time.monotonic() + self.timeout
        tip = self.fetch_tip(deadline)
        state = self.load(tip)
        self.parsed.save()
        return tip, state

    def snapshot_or_cached(self, timeout: float) -> tuple[str | None, State, bool]:
        """The freshest state reachable within `timeout`; falls back to the last
        fetched one (third value False) when the remote does not answer in time."""
        try:
            tip = self.fetch_tip(time.monotonic() + timeout)
            fresh = True
        except RemoteError:
            got = self.reader.read(self.mirror)
            tip = got[0] if got is not None and got[1] == "commit" else None
            fresh = False
        state = self.load(tip)
        self.parsed.save()
        return tip, state, fresh

    def last_commit(self, tip: str, path: str) -> str | None:
        proc = self.git.run(["log", "-1", "--format=%H", tip, "--", path], check=False)
        return proc.stdout.decode().strip() or None

    # --- writing -------------------------------------------------------------

    def transact(
        self,
        plan: Callable[[State], Change],
        now: Callable[[], datetime],
        *,
        repair: bool = False,
        known: tuple[str | None, State] | None = None,
    ) -> Outcome:
        """`repair` (doctor --fix): plan on a broken state, and judge the result by
        loading the tree written (it may delete files, which `State.apply` cannot).
        `known`: a tip and its state fetched a moment ago (e.g. by the read that led to
        this write): the first round plans on them instead of fetching again. Nothing
        is assumed: if the branch moved since, compare-and-swap refuses and the next
        round fetches.

        Transactions from one clone take turns (an flock, released by the kernel
        even on kill -9): racing each other through the remote would only burn
        pushes, since all but one would lose. Across clones, compare-and-swap decides.
        """
        deadline = time.monotonic() + self.timeout
        try:
            with self._local_turn(deadline):
                try:
                    return self._attempts(plan, now, repair, deadline, known)
                except RemoteError as exc:
                    if self._pending is None:
                        raise
                    return self._settle_pending(exc)
        finally:
            self.parsed.save()  # after the push and the turn: off the contended path

    _pending: str | None = None
    _round: float = 0.0  # how long the last lost round took (the backoff's unit)
    remote_url: str | None = None  # set by the Coordinator: the machine-wide turn's key
    _push_error: str | None = None

    def _settle_pending(self, exc: RemoteError) -> Outcome:
        """A push was sent but its outcome never came back (cut off, or the deadline hit
        while the server was still at it). Look once more, briefly; never claim that
        nothing was written when the commit may yet land."""
        pending = self._pending
        assert pending is not None
        try:
            tip = self.fetch_tip(time.monotonic() + min(10.0, self.timeout))
            if tip is not None and self._contains(tip, pending):
                return Outcome(self._pending_change, pending, tip, 0)
        except RemoteError:
            pass
        why = f" (last push: {self._push_error})" if self._push_error else ""
        raise RemoteError(
            f"{exc.message.removesuffix('; nothing was written')}{why}; commit {pending[:10]} "
            "was sent and may still land: check `gitcoord log` before retrying",
            commit=pending,
            uncertain=True,
            remote=self.remote,
        ) from None

    @contextlib.contextmanager
    def _local_turn(self, deadline: float) -> Iterator[None]:
        # One turn per clone (and remote branch) by default: sessions sharing a clone
        # would only race each other for its mirror ref and burn pushes. Separate clones
        # race through the remote, as separate machines do: with each transaction now
        # parsing only what changed, racing (compare-and-swap, backoff) overlaps their
        # fetches and beat a machine-wide turn by 1.2-1.8x at 8 and 16 clones
        # (benchmarks, 2 cores). `machine` keeps the machine-wide turn, keyed by URL.
        scope = os.environ.get("GITCOORD_TURN", "clone")
        if scope == "none":  # no turns at all: every transaction races (tests use this)
            yield
            return
        if self.remote_url and scope == "machine":  # else "clone"
            base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
            folder = os.path.join(base, f"gitcoord-{os.getuid()}")
            scope, who = f"{self.remote_url}\0{self.ref}", "machine"
        else:
            folder = os.path.join(self.info.common_dir, "gitcoord")
            scope, who = f"{self.remote}\0{self.ref}", "clone"
        os.makedirs(folder, mode=0o700, exist_ok=True)
        key = hashlib.sha1(scope.encode()).hexdigest()[:12]
        fh = _turn(os.path.join(folder, f"turn-{key}.flock"), deadline)
        if fh is None:
            raise RemoteError(
                f"timed out after {self.timeout:g}s waiting for this {who}'s other "
                "gitcoord commands; nothing was written"
            )
        try:
            yield
        finally:
            fh.close()  # releases the flock: the kernel wakes a waiter at once

    def _attempts(
        self,
        plan: Callable[[State], Change],
        now: Callable[[], datetime],
        repair: bool,
        deadline: float,
        known: tuple[str | None, State] | None = None,
    ) -> Outcome:
        pending: str | None = None  # a commit whose push may have landed (reply lost)
        self._pending = self._push_error = None
        for attempt in range(1, MAX_ATTEMPTS + 1):
            started = time.monotonic()
            if attempt == 1 and known is not None:
                tip, state = known
            else:
                tip = self.fetch_tip(deadline)
                if pending is not None and tip is not None and self._contains(tip, pending):
                    return Outcome(self._pending_change, pending, tip, attempt)
                state = self.load(tip)
            if not repair:
                _refuse_broken(state, tip)
            try:
                change = plan(state)
            except ConflictError as exc:
                self._add_winner(exc, tip)
                raise
            if change.noop:
                return Outcome(change, None, tip, attempt)
            when = now()
            meta = CommitMeta(None, self.identity.email, change.session, change.op, when)
            changes = [Changed(p, doc_at(state, p), d) for p, d in change.writes.items()]
            if repair:
                commit = self.write_commit(tip, change, when)
                after = self.load(commit)
                bad = check_state(after, when) + check_messages(self.view(commit), after)
            else:
                after = state.apply(change.writes)
                bad = check_state(after, when)
            bad += check_transition(state, after, changes, meta)
            if bad:
                raise InvalidError(
                    f"refusing to write an invalid state: {bad[0]}",
                    problems=[p.to_json() for p in bad],
                )
            if not repair:
                commit = self.write_commit(tip, change, when)
            result = self._swap(tip, commit, deadline)
            if result == "ok":
                return Outcome(change, commit, tip, attempt)
            if result == "unknown":
                pending, self._pending_change = commit, change
                self._pending = pending
            self._round = time.monotonic() - started
            self._sleep(attempt, deadline)
        raise RemoteError(
            f"gave up after {MAX_ATTEMPTS} attempts: {self.where} kept moving; nothing was written",
            attempts=MAX_ATTEMPTS,
        )

    _pending_change: Change

    def _add_winner(self, exc: ConflictError, tip: str | None) -> None:
        path = exc.details.get("path")
        if tip and isinstance(path, str):
            commit = self.last_commit(tip, path)
            if commit:
                exc.details["commit"] = commit
                exc.message += f" (since commit {commit[:10]})"
                exc.args = (exc.message,)

    def _contains(self, tip: str, commit: str) -> bool:
        if tip == commit:
            return True
        proc = self.git.run(["merge-base", "--is-ancestor", commit, tip], check=False)
        return proc.returncode == 0

    def write_commit(self, tip: str | None, change: Change, when: datetime) -> str:
        blobs = {
            path: (None if doc is None else self.writer.write("blob", _dump(doc)))
            for path, doc in change.writes.items()
        }
        base_tree = self.tree_of(tip) if tip is not None else None
        tree = self._build_tree(base_tree, "", blobs)
        sig = self.identity.signature()
        data = format_commit(
            tree or self.writer.write("tree", b""),
            [tip] if tip else [],
            sig,
            sig,
            int(when.timestamp()),
            commit_message(change),
        )
        return self.writer.write("commit", data)

    def _build_tree(
        self, base: str | None, prefix: str, blobs: dict[str, str | None]
    ) -> str | None:
        """A new tree: `base` with the files in `blobs` (relative to `prefix`) replaced.

        Subtrees with no change keep their object id, so a write costs objects
        proportional to its depth, not to the size of the state.
        """
        entries = {e.name: e for e in (self.reader.tree(base) if base else [])}
        children: dict[str, dict[str, str | None]] = {}
        for path, oid in blobs.items():
            head, sep, rest = path.partition("/")
            if sep:
                children.setdefault(head, {})[rest] = oid
            elif oid is None:
                entries.pop(head, None)
            else:
                entries[head] = TreeEntry("100644", head, oid)
        for name, sub in children.items():
            old = entries.get(name)
            new = self._build_tree(
                old.oid if old and old.is_tree else None, prefix + name + "/", sub
            )
            if new is None:
                entries.pop(name, None)
            else:
                entries[name] = TreeEntry("40000", name, new)
        if not entries:
            return None
        return self.writer.write("tree", format_tree(entries.values()))

    def _swap(self, old: str | None, new: str, deadline: float) -> str:
        """Compare-and-swap the branch. 'ok', 'lost' (someone was first) or 'unknown'."""
        if self.remote is None:
            proc = self.git.run(
                ["update-ref", "-m", "gitcoord", self.ref, new, old or self.info.zero_oid],
                check=False,
                config=_LOCK_TIMEOUT,
            )
            if proc.returncode == 0:
                return "ok"
            err = proc.stderr.decode("utf-8", "replace")
            if any(s in err for s in _LOCK_ERRORS):
                return "lost"
            raise GitError(["update-ref", self.ref], proc.returncode, proc.stderr)

        try:
            proc = self._run_remote(
                [
                    "push",
                    "--porcelain",
                    "--no-verify",
                    f"--force-with-lease={self.ref}:{old or ''}",
                    self.remote,
                    f"{new}:{self.ref}",
                ],
                deadline,
                "push to",
            )
        except CutOff:
            return "unknown"  # killed mid-push: the server may still complete it
        status = _porcelain_status(proc.stdout.decode("utf-8", "replace"), self.ref)
        err = proc.stderr.decode("utf-8", "replace")
        if status is None:
            # No verdict for our ref: the connection failed. The push may still have
            # landed; the next round's fetch tells.
            if proc.returncode != 0 and not _maybe_sent(err):
                raise RemoteError(
                    f"cannot push to {self.remote}: {_first_error(err)}; nothing was written",
                    remote=self.remote,
                )
            self._push_error = _first_error(err)  # said when we give up (_settle_pending)
            return "unknown"
        flag, summary = status
        if flag == "=":
            # "Up to date": an identical commit is already there (two inits in the same
            # second build the same bytes). Git says so before it checks the lease, so
            # it is not our win: re-read and re-decide.
            return "lost"
        if flag in (" ", "+", "*"):
            return "ok"
        if "hook declined" in summary or "pre-receive" in summary:
            raise InvalidError(
                f"{self.remote} rejected the change: {_remote_message(err) or summary}",
                remote=self.remote,
            )
        if any(s in summary for s in _STALE):
            return "lost"
        return "unknown"

    def publish_branch(self, branch: str, commit: str) -> None:
        """Create `refs/heads/<branch>` at `commit` (on the remote when there is one)."""
        ref = f"refs/heads/{branch}"
        if self.remote is None:
            self.git.run(["update-ref", ref, commit, self.info.zero_oid], config=_LOCK_TIMEOUT)
            return
        deadline = time.monotonic() + self.timeout
        proc = self._run_remote(
            [
                "push",
                "--porcelain",
                "--no-verify",
                f"--force-with-lease={ref}:",
                self.remote,
                f"{commit}:{ref}",
            ],
            deadline,
            "push to",
        )
        status = _porcelain_status(proc.stdout.decode("utf-8", "replace"), ref)
        if status is None or status[0] not in (" ", "*", "+", "="):
            err = proc.stderr.decode("utf-8", "replace")
            why = status[1] if status else _first_error(err)
            raise RemoteError(f"cannot push {branch} to {self.remote}: {why}", remote=self.remote)

    def _sleep(self, attempt: int, deadline: float) -> None:
        # Full jitter over the length of the round just lost, doubling per attempt:
        # racers spread over as many round-lengths as there are of them, so the next
        # round has a winner instead of another pile-up (a fixed small base did not).
        # The window is capped by a third of the time left, not by a fixed span: 16
        # racers with 300 ms rounds need ~5 s to spread out, and a 2 s cap kept them
        # colliding (12 attempts per success where 5.5 was reachable, benchmarks).
        left = deadline - time.monotonic()
        base = max(0.015, self._round)
        delay = random.uniform(0, min(left / 3, base * 2 ** min(attempt - 1, 10)))
        time.sleep(max(0.0, min(delay, left)))


def _turn(path: str, deadline: float) -> IO[str] | None:
    """The turn file, flocked, or None at the deadline.

    A waiter blocks in flock() (in a thread, so the deadline holds): the kernel
    wakes it the moment the holder lets go. Polling with sleeps left gaps between
    turns that, once a transaction took ~85 ms, cost a third of the throughput of
    8 sessions taking turns. A waiter given up on closes its file (and so the lock)
    itself whenever it gets it; its file is never the caller's.
    """
    fh = open(path, "a")  # noqa: SIM115 (handed to the caller, or closed here)
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return fh
    except BlockingIOError:
        pass
    except BaseException:
        fh.close()
        raise
    guard = threading.Lock()
    got = threading.Event()
    abandoned = False

    def wait() -> None:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX)
        except OSError:
            fh.close()
            return
        with guard:  # decided under the guard: taken, or given up on, never both
            if abandoned:
                fh.close()
            else:
                got.set()

    threading.Thread(target=wait, name="gitcoord-turn", daemon=True).start()
    if got.wait(max(0.0, deadline - time.monotonic())):
        return fh
    with guard:
        if got.is_set():
            return fh
        abandoned = True
    return None


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


def _dump(doc: BaseModel | bytes) -> bytes:
    if isinstance(doc, bytes):
        return doc
    from ..domain import yamlio

    return yamlio.dump(doc)


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


def _porcelain_status(out: str, ref: str) -> tuple[str, str] | None:
    for line in out.splitlines():
        parts = line.split("\t")
        if len(parts) >= 3 and parts[1].endswith(":" + ref):
            return parts[0][:1] or " ", parts[2]
    return None


def _first_error(err: str) -> str:
    lines = [ln.strip() for ln in err.splitlines() if ln.strip()]
    for ln in lines:
        if ln.startswith(("fatal:", "error:")):
            return ln.split(":", 1)[1].strip()
    return lines[0] if lines else "unknown error"


def _remote_message(err: str) -> str:
    return " ".join(
        ln[len("remote:") :].strip() for ln in err.splitlines() if ln.startswith("remote:")
    ).strip()


def _maybe_sent(err: str) -> bool:
    """Did the failure happen after the pack may have reached the server?"""
    before = (
        "Could not read from remote repository",
        "unable to access",
        "Connection refused",
        "does not appear to be a git repository",
        "not found",
        "unable to connect",
        "Could not resolve host",
        "No such file or directory",
        "timed out",
    )
    return not any(s in err for s in before)
