"""The branch where compare-and-swap happens: on a remote, or local when there is none.

Reading fetches the remote branch into gitcoord's own mirror ref; writing is one
compare-and-swap with the expected old value always given explicitly:

    remote: git push --force-with-lease=<ref>:<tip>   (receive-pack checks under lock)
    local:  git update-ref <ref> <commit> <tip>

Several processes may do this at once in one clone. They share nothing but refs,
and every ref write is either a compare-and-swap the caller retries or a cache
(`refs/gitcoord/remotes/<remote>/<branch>`) whose lock collisions we tolerate. The
mirror is written by our fetch and, after a push of ours that the remote accepted,
moved from the tip pushed over to the commit pushed (a local compare-and-swap), so
it holds the last tip this clone knows either way.
FETCH_HEAD is never written and no index file is ever used.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Sequence
from typing import Literal

from ..errors import InvalidError, RemoteError
from ..gitio import Git, GitError, GitTimeout, ObjectReader, RepoInfo
from .turns import Backoff

_LOCK_TIMEOUT = ["core.filesRefLockTimeout=1000"]
_LOCK_ERRORS = ("cannot lock ref", "Unable to create", "unable to resolve reference", "is at ")
# What gitcoord's pre-receive hook says, alone, of a push whose expected tip is no longer
# the branch's (another push landed while it was on its way): git would refuse it at the
# ref update anyway, so the hook refuses it before judging a single commit. A lost race,
# not a verdict on the commits: the pusher re-reads and re-decides.
STALE_PUSH = "stale push:"
_STALE = ("stale info", "fetch first", "non-fast-forward", "failed to update ref", "cannot lock")
# A live git holds a ref's lock file for milliseconds (lock, write, rename). One much
# older than that was left by a git killed mid-update (a killed terminal or tool
# timeout takes the whole process group), and git never removes it: every later write
# of that ref would fail for good.
STALE_LOCK_SECONDS = 10.0

Swap = Literal["ok", "lost", "unknown"]
# A ref pushed along with the branch, all or nothing (`git push --atomic`): (ref, the value
# it must have now (None: absent), its new value (None: deleted)). New equal to old pushes
# nothing and only checks the lease (`store.tickets`: the bell).
Also = tuple[str, str | None, str | None]


class AlsoRefused(RemoteError):
    """The remote would not take a ref pushed along with the branch (no atomic pushes,
    or a rule or hook refusing refs outside the branches): nothing was written. `sure`:
    it said so of those refs; else a hook declined the whole push, which may have been
    for the branch's commits (the push alone then tells)."""

    def __init__(self, message: str, *, remote: str | None, sure: bool = True) -> None:
        super().__init__(message, remote=remote)
        self.sure = sure


class CutOff(RemoteError):
    """A git process talking to the remote was stopped at the deadline, mid-way."""


class RemoteBranch:
    """`branch` of `remote` (None: the local branch), read and compare-and-swapped."""

    def __init__(
        self,
        info: RepoInfo,
        git: Git,
        reader: ObjectReader,
        backoff: Backoff,
        *,
        branch: str,
        remote: str | None,
        timeout: float,
    ) -> None:
        self.info = info
        self.git = git
        self.reader = reader
        self.backoff = backoff
        self.branch = branch
        self.remote = remote
        self.timeout = timeout
        self.ref = f"refs/heads/{branch}"
        # Our own copy of the remote tip. Not refs/remotes/<remote>/<branch>: `git push`
        # moves that one without checking its old value, so a late push in this clone
        # could set it back between a fetch and the read that follows. Only our fetch
        # and our accepted push (both checking the old value) write this ref.
        self.mirror = f"refs/gitcoord/remotes/{remote}/{branch}" if remote else self.ref
        self.push_error: str | None = None  # why the last push had no verdict
        # Refs fetched along with the branch: (remote glob, local glob), `store.tickets`.
        self.along: tuple[str, str] | None = None

    @property
    def where(self) -> str:
        return f"{self.branch} on {self.remote}" if self.remote else f"{self.branch} (local)"

    # --- reading -------------------------------------------------------------

    def fetch_tip(self, deadline: float) -> str | None:
        """The branch tip as it is now: fetched from the remote, or read locally."""
        if self.remote is not None and not self.fetch(deadline):
            return None
        return self.mirror_tip(strict=True)

    def mirror_tip(self, *, strict: bool = False) -> str | None:
        """The tip as last fetched (no git process talks to the remote). `strict`:
        a mirror that is no commit is an error, else it reads as no branch."""
        got = self.reader.read(self.mirror)
        if got is None:
            return None
        if got[1] != "commit":
            if not strict:
                return None
            raise InvalidError(f"{self.mirror} does not point at a commit")
        return got[0]

    def fetch(self, deadline: float) -> bool:
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
            *(["--prune"] if self.along else []),  # (tickets served are deleted)
            self.remote,
            f"+{self.ref}:{self.mirror}",
        ]
        if self.along is not None:
            argv.append(f"+{self.along[0]}:{self.along[1]}")
        for attempt in range(4):
            proc = self.run(argv, deadline, "fetch from")
            if proc.returncode == 0:
                return True
            err = proc.stderr.decode("utf-8", "replace")
            if "couldn't find remote ref" in err:
                return False
            if any(s in err for s in _LOCK_ERRORS):
                # Another process in this clone is writing the mirror: the objects are
                # here; fetch again (cheap) so we end up with a tip no older than ours.
                # Or a killed git left its lock behind: clear it, then fetch again.
                self.clear_stale_lock()
                if attempt < 3:
                    self.backoff.sleep(attempt, deadline)
                continue
            raise RemoteError(
                f"cannot fetch {self.branch} from {self.remote}: {_first_error(err)}",
                remote=self.remote,
            )
        return True  # the mirror was written by a concurrent fetch; good enough, CAS guards

    def run(
        self, argv: list[str], deadline: float, what: str
    ) -> subprocess.CompletedProcess[bytes]:
        """Run a git command that talks to the remote, stopped at `deadline`."""
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

    def contains(self, tip: str, commit: str) -> bool:
        """Is `commit` in the history of `tip`?"""
        if tip == commit:
            return True
        proc = self.git.run(["merge-base", "--is-ancestor", commit, tip], check=False)
        return proc.returncode == 0

    # --- writing -------------------------------------------------------------

    def swap(self, old: str | None, new: str, deadline: float, also: Sequence[Also] = ()) -> Swap:
        """Compare-and-swap the branch. 'ok', 'lost' (someone was first) or 'unknown'.
        `also` (remote only): refs updated with it, all or nothing; 'lost' too when one
        of their leases failed, `AlsoRefused` when the remote would not take them."""
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

        argv = ["push", "--porcelain", "--no-verify"]
        argv += ["--atomic"] if also else []
        argv.append(f"--force-with-lease={self.ref}:{old or ''}")
        argv += [f"--force-with-lease={ref}:{was or ''}" for ref, was, _ in also]
        argv += [self.remote, f"{new}:{self.ref}"]
        argv += [f"{now or ''}:{ref}" for ref, _, now in also]
        try:
            proc = self.run(argv, deadline, "push to")
        except CutOff:
            return "unknown"  # killed mid-push: the server may still complete it
        out = proc.stdout.decode("utf-8", "replace")
        status = _porcelain_status(out, self.ref)
        err = proc.stderr.decode("utf-8", "replace")
        if also and (status is None or "atomic" in status[1]):
            if status is None and "atomic" in err:  # "the receiving end does not support"
                raise AlsoRefused(f"{self.remote} takes no atomic pushes", remote=self.remote)
            if status is not None:
                why = _refusal([_porcelain_status(out, ref) for ref, _, _ in also])
                if why is not None:
                    raise AlsoRefused(f"{self.remote} refused: {why}", remote=self.remote)
                return "lost"  # a lease failed (the bell rang, say), or a lock was taken
        if status is None:
            # No verdict for our ref: the connection failed. The push may still have
            # landed; the next round's fetch tells.
            if proc.returncode != 0 and not _maybe_sent(err):
                raise RemoteError(
                    f"cannot push to {self.remote}: {_first_error(err)}; nothing was written",
                    remote=self.remote,
                )
            self.push_error = _first_error(err)  # said when the caller gives up
            return "unknown"
        flag, summary = status
        if flag == "=":
            # "Up to date": an identical commit is already there (two inits in the same
            # second build the same bytes). Git says so before it checks the lease, so
            # it is not our win: re-read and re-decide.
            return "lost"
        if flag in (" ", "+", "*"):
            self.advance_mirror(old, new)
            return "ok"
        if "hook declined" in summary or "pre-receive" in summary:
            if _stale_hook(err):
                return "lost"
            if also:
                why = _remote_message(err) or summary
                raise AlsoRefused(f"{self.remote} refused: {why}", remote=self.remote, sure=False)
            raise InvalidError(
                f"{self.remote} rejected the change: {_remote_message(err) or summary}",
                remote=self.remote,
            )
        if any(s in summary for s in _STALE):
            return "lost"
        return "unknown"

    def push_refs(self, updates: Sequence[Also], deadline: float) -> bool:
        """Push refs other than the branch, all or nothing, each with its lease: True
        when they landed, False when a lease failed (someone was first); `AlsoRefused`
        when the remote would not take them, `RemoteError` when it could not be reached."""
        assert self.remote is not None and updates
        argv = ["push", "--porcelain", "--no-verify", "--atomic"]
        argv += [f"--force-with-lease={ref}:{was or ''}" for ref, was, _ in updates]
        argv += [self.remote, *(f"{now or ''}:{ref}" for ref, _, now in updates)]
        try:
            proc = self.run(argv, deadline, "push to")
        except CutOff:
            return False  # as if refused: the next fetch shows what landed
        out = proc.stdout.decode("utf-8", "replace")
        statuses = [_porcelain_status(out, ref) for ref, _, _ in updates]
        if all(s is not None and s[0] in (" ", "*", "+", "=", "-") for s in statuses):
            return True
        err = proc.stderr.decode("utf-8", "replace")
        if all(s is None for s in statuses):
            if "atomic" in err:  # "the receiving end does not support --atomic push"
                raise AlsoRefused(f"{self.remote} takes no atomic pushes", remote=self.remote)
            if _maybe_sent(err):
                return False  # no verdict: the next fetch shows what landed
            raise RemoteError(
                f"cannot push to {self.remote}: {_first_error(err)}", remote=self.remote
            )
        why = _refusal(statuses)
        if why is not None:
            said = _remote_message(err)
            raise AlsoRefused(
                f"{self.remote} refused: {why}" + (f" ({said})" if said else ""),
                remote=self.remote,
            )
        return False

    def advance_mirror(self, old: str | None, new: str) -> None:
        """After our push from `old` to `new`: the mirror says `new`, so the next
        transaction can decide on it without fetching. A local compare-and-swap from
        `old`: if a fetch moved the mirror meanwhile, it holds a tip at least as new.
        Best effort: the mirror is a cache, and every push states its lease."""
        argv = ["update-ref", "-m", "gitcoord: pushed", self.mirror, new, old or self.info.zero_oid]
        proc = self.git.run(argv, check=False, config=_LOCK_TIMEOUT)
        if proc.returncode != 0 and self.clear_stale_lock():
            self.git.run(argv, check=False, config=_LOCK_TIMEOUT)

    def clear_stale_lock(self) -> bool:
        """Remove the mirror ref's lock file when it is older than any live git could
        hold it (see STALE_LOCK_SECONDS). Only gitcoord's own mirror ref: it is a cache
        that the next fetch rewrites, and every push states its lease, so even a
        lock removed under a stalled git costs at most a stale read that the
        compare-and-swap catches. True when a lock was removed."""
        if self.mirror == self.ref:
            return False  # no remote: the branch itself, which is not ours to unlock
        lock = os.path.join(self.info.common_dir, *self.mirror.split("/")) + ".lock"
        try:
            age = time.time() - os.stat(lock).st_mtime
            if age < STALE_LOCK_SECONDS:
                return False
            os.unlink(lock)
        except OSError:  # no lock (a reftable repository has none), or gone meanwhile
            return False
        return True

    def publish_branch(self, branch: str, commit: str) -> None:
        """Create `refs/heads/<branch>` at `commit` (on the remote when there is one)."""
        ref = f"refs/heads/{branch}"
        if self.remote is None:
            self.git.run(["update-ref", ref, commit, self.info.zero_oid], config=_LOCK_TIMEOUT)
            return
        deadline = time.monotonic() + self.timeout
        proc = self.run(
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

    def remove_branch(self, branch: str) -> bool:
        """Delete `refs/heads/<branch>` (on the remote when there is one); False when it
        was not there or could not be deleted (a cleanup: never an error)."""
        ref = f"refs/heads/{branch}"
        if self.remote is None:
            proc = self.git.run(["update-ref", "-d", ref], check=False, config=_LOCK_TIMEOUT)
            return proc.returncode == 0
        deadline = time.monotonic() + self.timeout
        try:
            proc = self.run(
                ["push", "--porcelain", "--no-verify", self.remote, f":{ref}"],
                deadline,
                "push to",
            )
        except RemoteError:
            return False
        status = _porcelain_status(proc.stdout.decode("utf-8", "replace"), ref)
        return status is not None and status[0] == "-"


def _porcelain_status(out: str, ref: str) -> tuple[str, str] | None:
    for line in out.splitlines():
        parts = line.split("\t")
        if len(parts) >= 3 and parts[1].endswith(":" + ref):
            return parts[0][:1] or " ", parts[2]
    return None


def _refusal(statuses: Sequence[tuple[str, str] | None]) -> str | None:
    """Why refs pushed all or nothing were refused, when it was not a lost race: a lease
    that failed, or a ref locked or moved under the server's transaction (every ref then
    says "atomic transaction failed", the lock's own words going to stderr)."""
    for status in statuses:
        if status is None or status[0] != "!":
            continue
        if "atomic" in status[1] or any(w in status[1] for w in _STALE):
            continue
        return status[1]
    return None


def _first_error(err: str) -> str:
    lines = [ln.strip() for ln in err.splitlines() if ln.strip()]
    for ln in lines:
        if ln.startswith(("fatal:", "error:")):
            return ln.split(":", 1)[1].strip()
    return lines[0] if lines else "unknown error"


def _stale_hook(err: str) -> bool:
    """Whether the hook's only words are that the push is stale (`STALE_PUSH`): its one
    line, so that no text a refused commit carries can pass for it."""
    said = [ln[len("remote:") :].strip() for ln in err.splitlines() if ln.startswith("remote:")]
    said = [ln for ln in said if ln]
    return len(said) == 1 and said[0].startswith(f"gitcoord: {STALE_PUSH} ")


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
