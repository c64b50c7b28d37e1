"""The Python API: `Coordinator`, what the CLI, the MCP server and scripts call.

    from gitcoord import Coordinator
    with Coordinator(".", session="research-1") as c:
        c.claim("task", "i-match", ttl="2h")

Every call reads the branch as it is now (no cached state between calls), so a
long-running process never acts on a stale view. Errors are `GitcoordError`s
carrying the exit code the CLI would use.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from . import clock, names, ops
from .errors import RefusedError, UsageError
from .gitio import Git, GitError, discover
from .state import Problem, State
from .store import DEFAULT_TIMEOUT, Identity, Outcome, Store

AUTO = "auto"
_BRANCH_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,99}$")


@dataclass(frozen=True)
class Snapshot:
    tip: str | None
    state: State
    where: str


def _git_config(git: Git) -> dict[str, str]:
    proc = git.run(
        [
            "config",
            "-z",
            "--get-regexp",
            r"^(gitcoord\.|user\.name$|user\.email$|remote\..*\.url$)",
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
        not _BRANCH_RE.match(name)
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
    ) -> None:
        if session is None:
            session = os.environ.get("GITCOORD_SESSION") or None
        self.session = names.check_session_id(session) if session else None
        if not os.path.isdir(path):
            raise UsageError(f"no such directory: {path}")
        try:
            info = discover(path)
        except GitError as exc:
            raise UsageError(f"not a git repository: {path} ({exc.stderr.strip()})") from None
        git = Git(info.git_dir)
        cfg = _git_config(git)
        branch = check_branch(ref or cfg.get("gitcoord.ref") or "gitcoord")
        remotes = {k[len("remote.") : -len(".url")] for k in cfg if k.startswith("remote.")}
        if remote == AUTO:
            remote = cfg.get("gitcoord.remote") or ("origin" if "origin" in remotes else None)
            if remote == "":
                remote = None
        if remote is not None and remote not in remotes:
            raise UsageError(
                f"no remote named {remote!r} in this repository "
                f"(remotes: {', '.join(sorted(remotes)) or 'none'}); use --local for local-only"
            )
        if timeout is None:
            raw = os.environ.get("GITCOORD_TIMEOUT") or cfg.get("gitcoord.timeout")
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

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Coordinator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- reads ---------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        tip, state = self.store.snapshot()
        return Snapshot(tip, state, self.store.where)

    def status(self) -> dict[str, Any]:
        snap = self.snapshot()
        return status_json(snap, clock.now())

    def validate(self, ref: str | None = None, path: str | None = None) -> list[Problem]:
        from .validate import check_state

        if path is not None:
            from .state import DirSource, load_state

            return check_state(load_state(DirSource(path)))
        if ref is not None:
            got = self.store.reader.read(ref)
            if got is None:
                raise UsageError(f"no such ref or commit: {ref}")
            if got[1] != "commit":
                raise UsageError(f"{ref} is not a commit")
            return check_state(self.store.load(got[0]))
        return check_state(self.snapshot().state)

    # --- writes --------------------------------------------------------------

    def _transact(self, plan: Callable[[State], ops.Change]) -> Outcome:
        return self.store.transact(plan, clock.now)

    def init(self, **settings: Any) -> Outcome:
        return self._transact(lambda s: ops.init(s, clock.now(), **settings))

    def register(
        self, role: str | None = None, goal: str | None = None, number: int | None = None
    ) -> Outcome:
        session = self._need_session()
        return self._transact(
            lambda s: ops.register(
                s, clock.now(), session=session, role=role, goal=goal, number=number
            )
        )

    def claim(
        self,
        type_: str,
        name: str,
        *,
        ttl: str | timedelta | None = None,
        hours: float | None = None,
        note: str | None = None,
    ) -> Outcome:
        names.check_claim_type(type_)
        names.check_claim_name(name)
        lease = _lease(ttl, hours)
        return self._transact(
            lambda s: ops.claim(
                s, clock.now(), session=self.session, type_=type_, name=name, ttl=lease, note=note
            )
        )

    def renew(
        self,
        type_: str,
        name: str,
        *,
        ttl: str | timedelta | None = None,
        hours: float | None = None,
    ) -> Outcome:
        names.check_claim_type(type_)
        names.check_claim_name(name)
        lease = _lease(ttl, hours)
        return self._transact(
            lambda s: ops.renew(
                s, clock.now(), session=self.session, type_=type_, name=name, ttl=lease
            )
        )

    def release(self, type_: str, name: str) -> Outcome:
        names.check_claim_type(type_)
        names.check_claim_name(name)
        return self._transact(
            lambda s: ops.release(s, clock.now(), session=self.session, type_=type_, name=name)
        )

    def _need_session(self) -> str:
        if not self.session:
            raise RefusedError(
                "no session: pass --session ID or set GITCOORD_SESSION",
                hint="export GITCOORD_SESSION=<id>",
            )
        return self.session


def _lease(ttl: str | timedelta | None, hours: float | None) -> timedelta | None:
    if ttl is not None and hours is not None:
        raise UsageError("give either --hours or --ttl, not both")
    if isinstance(ttl, str):
        return clock.parse_ttl(ttl)
    if ttl is not None:
        return ttl
    if hours is not None:
        return clock.hours(hours)
    return None


def status_json(snap: Snapshot, now: Any) -> dict[str, Any]:
    state = snap.state
    config = state.config
    sessions = sorted(state.sessions.values(), key=lambda s: s.number)
    claims = sorted(state.claims.values(), key=lambda c: c.key)
    return {
        "where": snap.where,
        "tip": snap.tip,
        "initialised": state.initialised,
        "slots": config.slots if config else None,
        "registered": len(sessions),
        "free_numbers": state.free_numbers(),
        "sessions": [s.model_dump(mode="json") for s in sessions],
        "claims": [
            {**c.model_dump(mode="json"), "resource": c.key, "status": c.status(now)}
            for c in claims
        ],
        "problems": [p.to_json() for p in state.problems],
    }
