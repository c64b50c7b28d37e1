"""The Python API: `Coordinator`, what the CLI, the MCP server and scripts call.

    from gitcoord import Coordinator
    with Coordinator(".", session="research-1") as c:
        c.claim("task", "i-match", ttl="2h")

A Coordinator is where a command runs: which repository, branch, remote and
session, and the transaction every write goes through. Its verbs (`claim`,
`task_add`, `status`, ...) are not written here: each is declared once in
`gitcoord.api.verbs` and becomes a method of this class (named by the verb, `_`
for spaces) as it does a CLI command and an MCP tool. `help(Coordinator.claim)`
shows its parameters.

Every call reads the branch as it is now (no cached state between calls), so a
long-running process never acts on a stale view. Errors are `GitcoordError`s
carrying the exit code the CLI would use.
"""

from __future__ import annotations

import inspect
import os
import re
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from .. import clock
from ..clock import iso
from ..domain import names
from ..domain.branch import DEFAULT_TIMEOUT, Identity, Outcome, Store
from ..domain.change import Change
from ..domain.state import Problem, State
from ..errors import RefusedError, UsageError
from ..gitio import Git, GitError, discover
from ..store.pending import Pending
from . import carry
from .verb import Verb
from .views import Snapshot

if TYPE_CHECKING:
    from ..sshsig import Signer

AUTO = "auto"
_BRANCH_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,99}$")


def _git_config(git: Git) -> dict[str, str]:
    proc = git.run(
        [
            "config",
            "-z",
            "--get-regexp",
            r"^(gitcoord\.|user\.name$|user\.email$|user\.signingkey$|remote\..*\.url$)",
        ],
        check=False,
    )
    found: dict[str, str] = {}
    for item in proc.stdout.split(b"\0"):
        if item:
            key, _, value = item.decode("utf-8", "replace").partition("\n")
            found[key] = value
    return found


def check_branch(name: str) -> str:
    if (
        not _BRANCH_RE.fullmatch(name)
        or ".." in name
        or name.endswith((".lock", "/", "."))
        or "//" in name
    ):
        raise UsageError(f"invalid coordination branch name {name!r}")
    return name


class Coordinator:
    def __init__(
        self,
        path: str = ".",
        *,
        session: str | None = None,
        ref: str | None = None,
        remote: str | None = AUTO,
        timeout: float | None = None,
        objects_from_env: bool = False,
    ) -> None:
        if session is None:
            session = os.environ.get("GITCOORD_SESSION") or None
        self.session = names.check_session_id(session) if session else None
        if not os.path.isdir(path):
            raise UsageError(f"no such directory: {path}")
        try:
            # objects_from_env: inside a server hook, pushed objects sit in a quarantine
            # that only the hook's environment points at.
            info = discover(path, keep_objects=objects_from_env)
        except GitError as exc:
            raise UsageError(f"not a git repository: {path} ({exc.stderr.strip()})") from None
        git = Git(info.git_dir, keep_objects=objects_from_env)
        self._path = os.path.abspath(path)
        self._top: str | None = None
        cfg = _git_config(git)
        if ref == "":
            raise UsageError("--ref needs a branch name")
        branch = check_branch(ref or cfg.get("gitcoord.ref") or "gitcoord")
        remotes = {k[len("remote.") : -len(".url")] for k in cfg if k.startswith("remote.")}
        if remote == AUTO:
            if "gitcoord.remote" in cfg:  # an empty value means local-only
                remote = cfg["gitcoord.remote"] or None
            else:
                remote = "origin" if "origin" in remotes else None
        if remote is not None and remote not in remotes:
            raise UsageError(
                f"no remote named {remote!r} in this repository "
                f"(remotes: {', '.join(sorted(remotes)) or 'none'}); use --local for local-only"
            )
        # Whether the user chose the timeout (--timeout, GITCOORD_TIMEOUT, gitcoord.timeout):
        # only then is it kept by a command that needs longer (`allow`).
        self.timeout_chosen = timeout is not None
        if timeout is None:
            raw = os.environ.get("GITCOORD_TIMEOUT") or cfg.get("gitcoord.timeout")
            self.timeout_chosen = bool(raw)
            try:
                timeout = float(raw) if raw else DEFAULT_TIMEOUT
            except ValueError:
                raise UsageError(f"timeout must be a number of seconds, not {raw!r}") from None
        if timeout <= 0:
            raise UsageError("timeout must be positive")
        identity = Identity(
            os.environ.get("GIT_AUTHOR_NAME")
            or cfg.get("user.name")
            or (self.session or "gitcoord"),
            os.environ.get("GIT_AUTHOR_EMAIL") or cfg.get("user.email") or "gitcoord@localhost",
        )
        self.store = Store(
            info, git, branch=branch, remote=remote, identity=identity, timeout=timeout
        )
        self.remote_url = cfg.get(f"remote.{remote}.url") if remote else None
        self.store.remote_url = self.remote_url
        self._person_key = cfg.get("user.signingkey") or None
        self._keys: dict[str, Signer | None] = {}
        self.store.trees.signers = self._signer
        self.store.tip_check = self._check_tip
        # What a face with a flusher on this machine sets (`faces.flusher`): called with
        # the time a held heartbeat must be pushed by. None: due beats push at once.
        self.on_hold: Callable[[str], None] | None = None
        self._flushing = False
        if carry.riding():
            self.store.trees.riders = self._riders
        from ..store import requests

        if requests.enabled():
            from . import carrier

            self.store.trees.carrier = carrier.carrier(self.store)

    # --- keys ------------------------------------------------------------------

    def machine_key(self, create: bool = True) -> Signer | None:
        """This user's signing key on this machine: what signs for the sessions it runs."""
        from ..sshsig import SigningError, machine_signer

        if "session" not in self._keys:
            try:
                self._keys["session"] = machine_signer(create=create)
            except SigningError as exc:
                raise UsageError(str(exc)) from None
        return self._keys["session"]

    def forget_keys(self) -> None:
        """Read the keys again on next use (after `key rotate` replaced the machine's)."""
        self._keys.clear()

    def person_key(self) -> Signer | None:
        """The person's own key (git's `user.signingKey`), for what approvers do."""
        from ..sshsig import SigningError, person_signer

        if self._person_key is None:
            return None
        if "person" not in self._keys:
            try:
                self._keys["person"] = person_signer(self._person_key, cwd=self._path)
            except SigningError as exc:
                raise UsageError(str(exc)) from None
        return self._keys["person"]

    def public_key(self, role: str) -> str | None:
        """The public key that signs a `role` commit here ("session" or "person"), or
        None when there is none (no ssh-keygen, no user.signingKey)."""
        try:
            signer = self.machine_key() if role == "session" else self.person_key()
        except UsageError:
            return None
        return signer.public if signer is not None else None

    def _signer(self, role: str, required: bool) -> _Signing | None:
        """The key that signs a commit of `role` ("session": the machine key; "person":
        the person's own key, never the machine's); None leaves it unsigned, which a
        branch requiring signatures refuses, so then say how to fix it instead."""
        from ..sshsig import available

        if not required and not available():
            return None  # no ssh-keygen here: unsigned, as the branch allows
        try:
            signer = self.machine_key() if role == "session" else self.person_key()
        except UsageError:
            if required:
                raise
            return None  # a key that cannot be made or read: unsigned, as the branch allows
        if signer is None:
            if required:
                raise UsageError(
                    "this branch requires signatures and what you are doing is a person's act "
                    "(an approval, the config, the approver list): sign it with your own SSH "
                    "key: git config user.signingKey ~/.ssh/id_ed25519"
                )
            return None
        return _Signing(signer)

    def _check_tip(self, tip: str | None, state: Callable[[], State]) -> None:
        """A tip this clone has not verified yet is verified before anything is built
        on it or shown from it, when the branch requires signatures (`api.trust`)."""
        from .trust import check_tip

        check_tip(self.store, tip, state)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Coordinator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    if TYPE_CHECKING:  # the verbs, attached below from the registry

        def __getattr__(self, name: str) -> Callable[..., Any]: ...

    @property
    def path(self) -> str:
        """The directory this Coordinator was opened in (`-C`); relative paths start here."""
        return self._path

    # --- reads ---------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        tip, state = self.store.snapshot()
        return Snapshot(tip, state, self.store.where)

    def problems(
        self, ref: str | None = None, path: str | None = None, notes: list[Problem] | None = None
    ) -> list[Problem]:
        """Every problem of the branch tip, of `ref`, or of a directory `path` (deep), claims
        of different holders that overlap now included (as the claim check sees them).
        `notes`: filled with what is not a problem but worth saying (`validate.notes`)."""
        from ..domain.state import DirSource, Source, load_state
        from ..domain.validate import check_messages, check_state
        from ..domain.validate import notes as state_notes

        src: Source
        if path is not None:
            src = DirSource(path)
            state = load_state(src)
        else:
            # A commit's state through the parse cache, as every command loads it (a
            # blob parses to the same document each time; problems are never cached):
            # loading it again uncached cost 5 s on a branch of 3,000 tombstones.
            if ref is not None:
                got = self.store.reader.read(ref)
                if got is None:
                    raise UsageError(f"no such ref or commit: {ref}")
                if got[1] != "commit":
                    raise UsageError(f"{ref} is not a commit")
                commit: str | None = got[0]
                state = self.store.load(commit)
            else:
                commit, state = self.store.snapshot()
            src = self.store.view(commit)
        if notes is not None:
            notes += state_notes(state)
        return check_state(state, clock.now()) + check_messages(src, state)

    def validate_tree(self, tree: str) -> list[Problem]:
        """Problems of a tree that is not (yet) a commit, e.g. a staged one."""
        from ..domain.state import load_state
        from ..domain.validate import check_messages, check_state
        from ..store.trees import TreeSource

        src = TreeSource(self.store.reader, tree)
        state = load_state(src)
        return check_state(state, clock.now()) + check_messages(src, state)

    # --- writes --------------------------------------------------------------

    def _pending(self) -> Pending | None:
        return Pending(self.store.info.common_dir, self.session) if self.session else None

    def allow(self, seconds: float) -> None:
        """Give this command at least `seconds` (a rare, heavy one: an upgrade moving every
        file), unless the user chose a timeout, which always stands."""
        if not self.timeout_chosen and self.store.timeout < seconds:
            self.store.timeout = self.store.trees.timeout = seconds

    def transact(
        self,
        plan: Callable[[State], Change],
        known: tuple[str | None, State] | None = None,
    ) -> Outcome:
        """One transaction, carrying what this session owes the branch (`carry`)."""
        pending = self._pending()
        owed = pending.read() if pending is not None else {}
        carried: dict[str, Any] = {}
        if owed and self.session is not None:
            plan = carry.carrying(plan, self.session, owed, carried)
        outcome = self.store.transact(plan, clock.now, known=known)
        if outcome.commit and carried and pending is not None:
            pending.settle(carried)
        if not outcome.carried and (made := outcome.landed or outcome.commit) is not None:
            from .trust import mark_verified

            # The whole chain its push landed, when it pushed one: every commit in it
            # this clone's own (the group's, riders), each judged as it was written.
            mark_verified(self.store, outcome.tip, made)
        return outcome

    def count_collision(self) -> None:
        """A claim this session was refused: `metrics` counts it once it reaches the branch."""
        pending = self._pending()
        if pending is not None:
            pending.add_collision()

    def settle_heartbeat(self, result: dict[str, Any]) -> None:
        pending = self._pending()
        if pending is not None:
            ride_by = carry.settle_heartbeat(pending, result)
            if ride_by is not None and self.on_hold is not None:
                self.on_hold(ride_by)

    def hold_read_mark(self, mark: Any, window: int) -> None:
        """Keep this session's moved read mark to ride the clone's next push, pushed
        within `window` seconds either way."""
        pending = self._pending()
        if pending is None:
            return
        ride_by = carry.hold_read_mark(pending, mark, window)
        if self.on_hold is not None:
            self.on_hold(ride_by)

    def kept_read_mark(self, seen: Any) -> Any:
        """The later of `seen` (the branch's read mark) and one held for a ride."""
        pending = self._pending()
        return carry.kept_read_mark(self.store, pending, seen) if pending else seen

    @property
    def holds(self) -> bool:
        """A due heartbeat may be held for a ride: a flusher will push it in time."""
        return self.on_hold is not None and carry.riding()

    def _riders(self) -> list[Any]:
        session = None if self._flushing else self.session
        return list(carry.riders(self.store, session, flush=self._flushing))

    def flush_held(self) -> list[str]:
        """Push every heartbeat and read mark this clone's sessions keep for a ride (held
        or deferred), now, in one push; the commits that landed (none when nothing was)."""
        landed: list[str] = []
        self._flushing = self.store.trees.patient = True
        riders, self.store.trees.riders = self.store.trees.riders, self._riders
        try:
            # Nothing of its own (a no-op change): what is kept rides, all due. One push
            # for all of them; one a refused push made suspect goes alone, one per
            # push (see `store.transaction`), so go on while that gets somewhere.
            kept = carry.kept(self.store.info.common_dir)
            for _ in range(carry.MAX_FLUSH_PUSHES):
                self.transact(lambda state: Change("heartbeat", "flush"))
                landed += self.store.trees.rode
                before, kept = kept, carry.kept(self.store.info.common_dir)
                if not kept or kept >= before:
                    break
        finally:
            self._flushing = self.store.trees.patient = False
            self.store.trees.riders = riders  # (none while riding is off: GITCOORD_RIDE=0)
        return landed

    # --- paths -----------------------------------------------------------------

    def check_paths(
        self,
        paths: list[str],
        *,
        timeout: float = 3.0,
        trees: Sequence[str] = (),
        always: bool = False,
    ) -> dict[str, Any]:
        """Which of `paths` fall inside a binding path claim of another session.

        Reads the freshest state it can within `timeout` seconds and says so
        (`fresh: false`, and why in `reason`) when it had to use the last fetched
        state instead. Paths may be absolute, or relative to where this Coordinator
        was opened (`-C`, else the current directory); `trees` stand for everything
        below them (a folder a command deletes or moves, or a glob such as
        `src/*/x.py`) and pass only when no claim can cover anything there.

        With no state at all to judge by (nothing ever fetched — neither gitcoord's
        mirror nor git's remote-tracking ref — and the remote not answering, or no
        coordination branch), a repository recorded as using path
        claims (`git config gitcoord.pathClaims true`, set by `hooks install`) fails
        closed: RemoteError, exit 6. Any other repository passes, and the result says
        plainly that nothing was checked (`unchecked`).

        A symlink is judged by its own name and by the file it points to (a command
        may replace the link or write through it). With no path inside the work tree
        it asks nothing, unless `always` (to list the claims others hold).
        """
        from ..domain import overlap, rules
        from ..errors import RemoteError

        given = [(p, rel) for p in paths for rel in self._repo_relatives(p)]
        below = [(p, rel) for p in trees for rel in self._repo_relatives(p)]
        if not (given or below or always):
            return {
                "violations": [],
                "fresh": True,
                "tip": None,
                "checked": len(paths) + len(trees),
                "claims": [],
            }
        reason = None
        try:
            tip: str | None = self.store.fetch_tip(time.monotonic() + timeout)
            fresh = True
        except RemoteError as exc:
            tip = self.store.trees.mirror_tip() or self._tracking_tip()
            fresh = False
            reason = exc.message
        unchecked = None
        if tip is None:
            unchecked = (
                f"the remote could not be reached ({reason}) and no coordination state was ever "
                "fetched here"
                if reason is not None
                else f"there is no coordination branch {self.store.where}"
            )
            if (given or below) and self._uses_path_claims():
                raise RemoteError(
                    f"cannot check paths against the path claims: {unchecked}, and this "
                    "repository uses path claims (git config gitcoord.pathClaims true), so "
                    "nothing passes unchecked. Fetch the state when you can (`gitcoord "
                    "status`), skip the check once (`git commit --no-verify`), or let paths "
                    "pass unchecked here (`git config gitcoord.pathClaims false`)",
                    unchecked=True,
                )
        state = self.store.checked(tip, self.store.load(tip))
        self.store.parsed.save()
        now = clock.now()
        violations = rules.path_violations(state, now, self.session, given)
        skew = state.config.skew if state.config else timedelta(0)
        binding = [
            c
            for c in state.claims.values()
            if c.type == overlap.PATH_TYPE
            and c.holder != self.session
            and not c.takeable(now, skew)
        ]
        for original, rel in below:
            glob = "**" if rel in (".", "") else "/" + rel
            claim = next((c for c in binding if overlap.globs_overlap(glob, c.name)), None)
            if claim is not None:
                violations.append(
                    {
                        "path": rel if rel not in ("", ".") else ".",
                        "given": original,
                        "holder": claim.holder,
                        "claim": claim.name,
                        "expires_at": iso(claim.expires_at),
                        "generation": claim.generation,
                    }
                )
        data: dict[str, Any] = {
            "violations": violations,
            "fresh": fresh,
            "tip": tip,
            "checked": len(paths) + len(trees),
            # what others hold now: the Claude Code guard names them when it cannot
            # tell which files a command writes
            "claims": [
                {"claim": c.name, "holder": c.holder, "expires_at": iso(c.expires_at)}
                for c in binding
            ],
        }
        if reason is not None:
            data["reason"] = reason
        if unchecked is not None:
            data["unchecked"] = unchecked
        return data

    def _tracking_tip(self) -> str | None:
        """git's own remote-tracking ref of the branch (`refs/remotes/origin/gitcoord`):
        what `git clone`, `git fetch` and gitcoord's own pushes last saw of it, before
        gitcoord ever fetched into its mirror."""
        if self.store.remote is None:
            return None
        got = self.store.reader.read(f"refs/remotes/{self.store.remote}/{self.store.branch}")
        return got[0] if got is not None and got[1] == "commit" else None

    def _uses_path_claims(self) -> bool:
        """`git config gitcoord.pathClaims`: fail closed when there is no state."""
        proc = self.store.git.run(
            ["config", "--type=bool", "--get", "gitcoord.pathClaims"], check=False
        )
        return proc.stdout.strip() == b"true"

    def staged_paths(self) -> list[str]:
        """Every path the commit being made changes, as absolute paths: added, modified,
        deleted, and both sides of a rename or copy.

        The index judged is the one `git commit` is committing: `commit -a` and
        `commit <paths>` stage into a temporary index named in GIT_INDEX_FILE for the
        hooks, which is kept here (a path relative to the directory the hook was
        started in, where git meant it)."""
        top = self.toplevel()
        if top is None:
            raise UsageError("--staged needs a work tree: this repository has none")
        staged = Git.at(top, keep_index=True)
        index = staged.env.get("GIT_INDEX_FILE")
        if index and not os.path.isabs(index):
            staged.env["GIT_INDEX_FILE"] = os.path.abspath(index)
        out = staged.run(
            ["diff", "--cached", "--name-status", "-z", "--no-renames", "--no-ext-diff"]
        ).stdout
        fields = [f.decode("utf-8", "surrogateescape") for f in out.split(b"\0") if f]
        # --no-renames: each entry is a status and one path (a rename is a D and an A)
        names = fields[1::2]
        return [os.path.join(top, name) for name in names]

    def toplevel(self) -> str | None:
        if self._top is None:
            proc = self.store.git.run(["rev-parse", "--show-toplevel"], check=False, cwd=self._path)
            self._top = proc.stdout.decode().strip() if proc.returncode == 0 else ""
        return self._top or None

    def _repo_relatives(self, path: str) -> list[str]:
        """`path` relative to the top, and the file it points to when it is a symlink
        (both only inside the work tree)."""
        found = [rel] if (rel := self._repo_relative(path)) is not None else []
        full = path if os.path.isabs(path) else os.path.join(self._path, path)
        top = self.toplevel()
        if top is not None and os.path.islink(full):
            target = os.path.relpath(os.path.realpath(full), os.path.realpath(top))
            if not (target == ".." or target.startswith(".." + os.sep)):
                found.append(target.replace(os.sep, "/"))
        return list(dict.fromkeys(found))

    def _repo_relative(self, path: str) -> str | None:
        """`path` relative to the top, or None outside the work tree. The folders on the
        way are resolved (a symlinked folder is where the file really is); the last name
        is not (a symlink is the file git tracks and a command deletes or moves)."""
        top = self.toplevel()
        full = path if os.path.isabs(path) else os.path.join(self._path, path)
        if top is None:
            return path.lstrip("/")
        full = os.path.normpath(full)
        head, name = os.path.split(full)
        resolved = os.path.join(os.path.realpath(head), name) if name else full
        rel = os.path.relpath(resolved, os.path.realpath(top))
        if rel == ".." or rel.startswith(".." + os.sep):
            return None
        return rel.replace(os.sep, "/")

    # --- the branch's history and hooks -----------------------------------------

    def verify_range(self, spec: str, proposal: bool = False) -> list[Problem]:
        """Problems of moving the branch along `OLD..NEW` (what CI and the hooks check);
        `proposal`: NEW is a merge not made yet, judged as if an approver made it."""
        from ..audit.verify import verify_update

        old_name, sep, new_name = spec.partition("..")
        if not sep or not new_name:
            raise UsageError(f"invalid range {spec!r}: use OLD..NEW (OLD may be empty)")
        old = self._commit(old_name) if old_name and set(old_name) != {"0"} else None
        return verify_update(self.store, old, self._commit(new_name), proposal=proposal)

    def _commit(self, name: str) -> str:
        if name.startswith("-"):
            raise UsageError(f"invalid revision {name!r}")
        got = self.store.reader.read(name)
        if got is None or got[1] != "commit":
            raise UsageError(f"no such commit: {name}")
        return got[0]

    def need_session(self) -> str:
        if not self.session:
            raise RefusedError(
                "no session: pass --session ID or set GITCOORD_SESSION",
                hint="export GITCOORD_SESSION=<id>",
            )
        return self.session


class _Signing:
    """A key as the store uses it: a signing failure is the user's to fix (exit 2)."""

    def __init__(self, signer: Signer) -> None:
        self._signer = signer

    @property
    def public(self) -> str:
        return self._signer.public

    def sign(self, payload: bytes) -> bytes:
        from ..sshsig import SigningError

        try:
            return self._signer.sign(payload)
        except SigningError as exc:
            raise UsageError(str(exc)) from None


def _method(verb: Verb) -> Callable[..., Any]:
    """`Coordinator.<verb>`: the verb's declared parameters, in order, as a signature."""
    params = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    for p in verb.params:
        kind = (
            inspect.Parameter.POSITIONAL_OR_KEYWORD
            if p.positional
            else inspect.Parameter.KEYWORD_ONLY
        )
        default = inspect.Parameter.empty if p.required else p.default
        params.append(inspect.Parameter(p.name, kind, default=default))
    signature = inspect.Signature(params)

    def method(self: Coordinator, *args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        values = dict(bound.arguments)
        del values["self"]
        return verb.run(self, **values)

    method.__name__ = method.__qualname__ = verb.method
    method.__qualname__ = f"Coordinator.{verb.method}"
    method.__doc__ = verb.help
    method.__signature__ = signature  # type: ignore[attr-defined]
    return method


def _attach_verbs() -> None:
    from .verbs import ALL

    for verb in ALL:
        setattr(Coordinator, verb.method, _method(verb))


_attach_verbs()
