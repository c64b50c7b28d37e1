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
import secrets
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from .. import clock
from ..audit import history, metrics
from ..domain import mailbox, names
from ..domain.branch import DEFAULT_TIMEOUT, Identity, Outcome, Store
from ..domain.change import Change
from ..domain.models import BODY_MAX_BYTES, Heartbeat
from ..domain.state import Problem, State
from ..errors import ConflictError, InvalidError, RefusedError, UsageError
from ..gitio import Git, GitError, discover
from ..ops import approvals, claims, heartbeats, kernel, messages, milestones, pages, sessions
from ..store import forge
from ..store.pending import Pending
from .views import Snapshot, status_json

AUTO = "auto"
_BRANCH_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,99}$")


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
        self.remote_url = cfg.get(f"remote.{remote}.url") if remote else None
        self.store.remote_url = self.remote_url

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
        """Every problem of the branch tip, of `ref`, or of a directory `path` (deep)."""
        from ..domain.state import DirSource, Source, load_state
        from ..domain.validate import check_messages, check_state

        src: Source
        if path is not None:
            src = DirSource(path)
        else:
            if ref is not None:
                got = self.store.reader.read(ref)
                if got is None:
                    raise UsageError(f"no such ref or commit: {ref}")
                if got[1] != "commit":
                    raise UsageError(f"{ref} is not a commit")
                commit: str | None = got[0]
            else:
                commit, _ = self.store.snapshot()
            src = self.store.view(commit)
        state = load_state(src)
        return check_state(state) + check_messages(src, state)

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

    def _transact(
        self,
        plan: Callable[[State], Change],
        known: tuple[str | None, State] | None = None,
    ) -> Outcome:
        """One transaction, carrying what this session owes the branch (see `pending`)."""
        pending = self._pending()
        owed = pending.read() if pending is not None else {}
        if not owed:
            return self.store.transact(plan, clock.now, known=known)
        carried: dict[str, Any] = {}

        def with_owed(state: State) -> Change:
            change = plan(state)
            carried.clear()
            if change.noop or change.session != self.session:
                return change
            beat = owed.get("heartbeat")
            if beat and "Gitcoord-Heartbeat" not in change.trailers:
                try:
                    doc = Heartbeat.model_validate(beat)
                except ValueError:
                    doc = None
                last = state.heartbeats.get(doc.session) if doc else None
                if doc is not None and (last is None or last.at < doc.at):
                    change.writes[names.heartbeat_path(doc.session)] = doc
                    change.trailers["Gitcoord-Heartbeat"] = clock.iso(doc.at)
                carried["heartbeat"] = beat
            if owed.get("collisions"):
                change.trailers["Gitcoord-Collisions"] = str(owed["collisions"])
                carried["collisions"] = owed["collisions"]
            return change

        outcome = self.store.transact(with_owed, clock.now, known=known)
        if outcome.commit and carried and pending is not None:
            pending.settle(carried)
        return outcome

    def init(self, template: str | None = None, **settings: Any) -> Outcome:
        tpl = None
        if template is not None:
            from ..domain import templates

            if template.endswith((".yaml", ".yml")) or os.sep in template:
                template = os.path.join(self._path, template)  # like every path: relative to -C
            tpl = templates.load(template, self._toplevel())
        return self._transact(
            lambda s: sessions.init(s, clock.now(), template=tpl, session=self.session, **settings)
        )

    # --- the work board --------------------------------------------------------

    def task_add(
        self,
        title: str,
        *,
        priority: str = "P2",
        depends_on: tuple[str, ...] = (),
        milestone: str | None = None,
        note: str = "",
    ) -> Outcome:
        from ..ops import board

        for d in depends_on:
            names.check_task_id(d)
        if milestone is not None:
            names.check_milestone(milestone)
        return self._transact(
            lambda s: board.add(
                s,
                clock.now(),
                session=self.session,
                title=title,
                priority=priority,
                depends_on=depends_on,
                milestone=milestone,
                note=note,
            )
        )

    def tasks(self, status: str | None = None) -> list[dict[str, Any]]:
        from ..ops import board

        _, state = self.store.snapshot()
        now = clock.now()
        rows = [board.task_json(state, t, now) for t in board.board(state, now)]
        if status is None or status == "open":
            rows = [r for r in rows if r["status"] != "done"]
        elif status != "all":
            rows = [r for r in rows if r["status"] == status]
        return rows

    def task(self, task_id: str) -> dict[str, Any]:
        from ..ops import board

        names.check_task_id(task_id)
        _, state = self.store.snapshot()
        found = state.tasks.get(task_id)
        if found is None:
            raise RefusedError(f"no task {task_id}", task=task_id)
        return board.task_json(state, found, clock.now())

    def task_done(self, task_id: str) -> Outcome:
        from ..ops import board

        names.check_task_id(task_id)
        return self._transact(
            lambda s: board.done(s, clock.now(), session=self.session, task_id=task_id)
        )

    def next(
        self, *, take: bool = False, ttl: str | timedelta | None = None, hours: float | None = None
    ) -> Outcome:
        from ..ops import board

        lease = _lease(ttl, hours)
        return self._transact(
            lambda s: board.next_task(s, clock.now(), session=self.session, take=take, ttl=lease)
        )

    def milestone_add(self, name: str, steps: tuple[str, ...]) -> Outcome:

        names.check_milestone(name)
        return self._transact(
            lambda s: milestones.milestone_add(
                s, clock.now(), session=self.session, name=name, steps=steps
            )
        )

    def milestone_done(self, name: str, step: str) -> Outcome:

        names.check_milestone(name)
        return self._transact(
            lambda s: milestones.milestone_done(
                s, clock.now(), session=self.session, name=name, step=step
            )
        )

    def milestones(self) -> list[dict[str, Any]]:

        _, state = self.store.snapshot()
        return [milestones.milestone_json(m) for _, m in sorted(state.milestones.items())]

    def register(
        self, role: str | None = None, goal: str | None = None, number: int | None = None
    ) -> Outcome:
        session = self._need_session()
        return self._transact(
            lambda s: sessions.register(
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
        _check_resource(type_, name)
        lease = _lease(ttl, hours)
        try:
            return self._transact(
                lambda s: claims.claim(
                    s,
                    clock.now(),
                    session=self.session,
                    type_=type_,
                    name=name,
                    ttl=lease,
                    note=note,
                    approval_id=_approval_id(),
                )
            )
        except ConflictError:
            pending = self._pending()
            if pending is not None:
                pending.add_collision()  # counted in `metrics` once carried to the branch
            raise

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
            lambda s: claims.renew(
                s, clock.now(), session=self.session, type_=type_, name=name, ttl=lease
            )
        )

    def release(self, type_: str, name: str) -> Outcome:
        names.check_claim_type(type_)
        names.check_claim_name(name)
        return self._transact(
            lambda s: claims.release(s, clock.now(), session=self.session, type_=type_, name=name)
        )

    # --- heartbeats and messages ---------------------------------------------

    def heartbeat(
        self, action: str, target: str, phase: str, progress: int, *, force: bool = False
    ) -> dict[str, Any]:
        """Record what this session is doing; pushes only when due (see README)."""
        session = self._need_session()
        beat = heartbeats.make_heartbeat(session, action, target, phase, progress, clock.now())
        outcome = self._transact(lambda s: heartbeats.heartbeat(s, beat, force=force))
        result = outcome.change.result
        pending = self._pending()
        if pending is not None:
            if result["action"] == "deferred":
                pending.defer_heartbeat(result["heartbeat"])
            else:  # pushed, or skipped as the branch already says so: older owed beats are moot
                owed = pending.read().get("heartbeat")
                if owed and owed.get("at", "") <= result["heartbeat"]["at"]:
                    pending.settle({"heartbeat": owed})
        return {**result, "changed": outcome.commit is not None, "commit": outcome.commit}

    def send(self, to: str, subject: str, body: str, reply_to: str | None = None) -> Outcome:
        if len(body.encode("utf-8")) > BODY_MAX_BYTES:
            raise InvalidError(
                f"message body is {len(body.encode('utf-8'))} bytes; the limit is "
                f"{BODY_MAX_BYTES} bytes (64 KiB): put large content in the repository and "
                "send its path",
                limit=BODY_MAX_BYTES,
            )
        if reply_to is not None:
            names.check_message_id(reply_to)
        if to != names.BROADCAST and not names.is_number(to):
            names.check_session_id(to)

        def plan(state: State) -> Change:
            view = self.store.view_of(state)
            original = mailbox.find(view, reply_to) if reply_to else None
            while True:
                mid = clock.message_id(clock.precise_now(), secrets.token_hex(3))
                if mailbox.find(view, mid) is None:
                    break
            return messages.send(
                state,
                clock.now(),
                session=self.session,
                to=to,
                subject=subject,
                body=body,
                message_id=mid,
                original=original,
                reply_to=reply_to,
            )

        return self._transact(plan)

    def inbox(self, *, include_read: bool = False, peek: bool = False) -> dict[str, Any]:
        session = self._need_session()
        tip, state = self.store.snapshot()
        kernel.require_registered(state, session)
        seen = state.reads.get(session)
        old = self.store.view(seen.through) if seen is not None else None
        if old is not None and old.entries("") is None:
            old = None  # the marked commit is gone (branch recreated): all unread
        view = self.store.view_of(state)
        items = mailbox.inbox(view, old, session, include_read=include_read)
        shown = []
        for item in items:
            entry = {**item.message.model_dump(mode="json"), "read": item.read}
            if item.message.reply_to:
                orig = mailbox.find(view, item.message.reply_to)
                entry["in_reply_to"] = (
                    {"id": orig.id, "sender": orig.sender, "subject": orig.subject}
                    if orig
                    else {"id": item.message.reply_to}
                )
            shown.append(entry)
        unread = sum(1 for i in items if not i.read)
        marked = None
        if unread and not peek and tip is not None:
            through = tip

            def mark(s: State) -> Change:
                return messages.mark_read(
                    s, clock.now(), session=session, through=through, seen=seen
                )

            # Just fetched: the first round plans on it (no second fetch) unless it moved.
            outcome = self._transact(mark, known=(tip, state))
            marked = outcome.commit
        return {
            "session": session,
            "messages": shown,
            "unread": unread,
            "marked_read": marked is not None,
            "commit": marked,
        }

    # --- history -------------------------------------------------------------

    def log(
        self,
        *,
        session: str | None = None,
        resource: str | None = None,
        op: str | None = None,
        since: datetime | None = None,
        limit: int | None = 50,
    ) -> list[history.Entry]:
        tip = self.store.fetch_tip(time.monotonic() + self.store.timeout)  # no state needed
        if tip is None:
            return []
        unfiltered = session is None and resource is None and op is None
        walk = limit if unfiltered else None  # a filter may skip any number of commits
        found = []
        for entry in history.entries(self.store.git, tip, since, walk):
            if history.matches(entry, session=session, resource=resource, op=op):
                found.append(entry)
                if limit is not None and len(found) >= limit:
                    break
        return found

    def metrics(self) -> dict[str, Any]:
        tip, state = self.store.snapshot()
        entries = list(history.entries(self.store.git, tip)) if tip else []
        return metrics.metrics(entries, state, clock.now())

    def state_page(self, *, write: bool = False) -> tuple[str, Outcome | None]:
        from . import render

        tip, state = self.store.snapshot()
        now = clock.now()
        recent = mailbox.recent(self.store.view_of(state), 10)
        page = render.state_page(
            status_json(Snapshot(tip, state, self.store.where), now), recent, now
        )
        if not write:
            return page, None
        data = page.encode("utf-8")
        return page, self._transact(
            lambda s: pages.state_page(s, clock.now(), session=self.session, page=data)
        )

    # --- path claims -----------------------------------------------------------

    def guard(self, paths: list[str], *, timeout: float = 3.0) -> dict[str, Any]:
        """Which of `paths` fall inside a binding path claim of another session.

        Reads the freshest state it can within `timeout` seconds and says so
        (`fresh: false`) when it had to use the last fetched state instead.
        Paths may be absolute, or relative to the repository's top level.
        """
        from ..domain import overlap

        tip, state, fresh = self.store.snapshot_or_cached(timeout)
        now = clock.now()
        skew = state.config.skew if state.config else timedelta(0)
        claims = [
            c
            for c in state.claims.values()
            if c.type == overlap.PATH_TYPE
            and c.holder != self.session
            and not c.takeable(now, skew)
        ]
        rel = [self._repo_relative(p) for p in paths]
        violations = []
        for original, path in zip(paths, rel, strict=True):
            if path is None:
                continue  # outside this repository: not ours to guard
            for c in claims:
                if overlap.path_in(c.name, path):
                    violations.append(
                        {
                            "path": path,
                            "given": original,
                            "holder": c.holder,
                            "claim": c.name,
                            "expires_at": clock.iso(c.expires_at),
                            "generation": c.generation,
                        }
                    )
                    break
        return {"violations": violations, "fresh": fresh, "tip": tip, "checked": len(paths)}

    def check_paths(self, paths: list[str]) -> list[dict[str, Any]]:
        """`guard(paths)["violations"]`: each {path, holder, claim, expires_at}."""
        result: list[dict[str, Any]] = self.guard(paths)["violations"]
        return result

    def staged_paths(self) -> list[str]:
        out = self.store.git.run(
            ["diff", "--cached", "--name-only", "-z", "--no-renames"],
            cwd=self._toplevel(),
        ).stdout
        return [p.decode("utf-8", "surrogateescape") for p in out.split(b"\0") if p]

    def _toplevel(self) -> str | None:
        if self._top is None:
            proc = self.store.git.run(["rev-parse", "--show-toplevel"], check=False, cwd=self._path)
            self._top = proc.stdout.decode().strip() if proc.returncode == 0 else ""
        return self._top or None

    def _repo_relative(self, path: str) -> str | None:
        top = self._toplevel()
        full = path if os.path.isabs(path) else os.path.join(self._path, path)
        if top is None:
            return path.lstrip("/")
        rel = os.path.relpath(os.path.realpath(full), os.path.realpath(top))
        if rel.startswith(".."):
            return None
        return rel.replace(os.sep, "/")

    # --- approvals -------------------------------------------------------------

    def request_approval(
        self, subject: str, *, note: str = "", kind: str = "general", open_pr: bool = False
    ) -> dict[str, Any]:
        """Record a pending request and push `gitcoord-approval/<id>`, whose one commit
        marks it approved: a listed approver merging that branch approves it."""
        aid = _approval_id()
        outcome = self._transact(
            lambda s: approvals.request_approval(
                s,
                clock.now(),
                session=self.session,
                approval_id=aid,
                subject=subject,
                note=note,
                kind=kind,
            )
        )
        assert outcome.commit is not None
        request = self.store.load(outcome.commit).approvals[aid]
        branch = names.APPROVAL_BRANCH_PREFIX + aid
        change = Change(
            "approval-grant",
            f"approve {aid}: {subject[:60]}",
            resource=f"approval/{aid}",
            writes={names.approval_path(aid): approvals.approved(request, clock.now(), None)},
            trailers={"Gitcoord-Approval": aid},
        )
        proposal = self.store.write_commit(outcome.commit, change, clock.now())
        self.store.publish_branch(branch, proposal)
        pr = forge.pull_request(self.remote_url, self.store.branch, branch)
        created = forge.gh_pr_create(self.store.branch, branch, subject, note) if open_pr else None
        return {
            "approval": request.model_dump(mode="json"),
            "commit": outcome.commit,
            "branch": branch,
            "proposal": proposal,
            "pull_request_url": created or pr,
            "how": (
                f"open a pull request from {branch} into {self.store.branch}"
                + (f": {pr}" if pr else "")
                + f"; a listed approver merging it approves. Or: gitcoord approval grant {aid}"
            ),
        }

    def grant_approval(self, approval_id: str) -> Outcome:
        names.check_approval_id(approval_id)
        approver = self.store.identity.email
        return self._transact(
            lambda s: approvals.grant_approval(
                s, clock.now(), approval_id=approval_id, approver=approver, session=self.session
            )
        )

    def approvals(self) -> list[dict[str, Any]]:
        _, state = self.store.snapshot()
        return [
            a.model_dump(mode="json") for a in sorted(state.approvals.values(), key=lambda a: a.id)
        ]

    def activate(self) -> Outcome:
        return self._transact(lambda s: approvals.activate(s, clock.now(), session=self.session))

    def verify_range(self, spec: str) -> list[Problem]:
        """Problems of moving the branch along `OLD..NEW` (what CI and the hooks check)."""
        from ..audit.verify import verify_update

        old_name, sep, new_name = spec.partition("..")
        if not sep or not new_name:
            raise UsageError(f"invalid range {spec!r}: use OLD..NEW (OLD may be empty)")
        old = self._commit(old_name) if old_name and set(old_name) != {"0"} else None
        return verify_update(self.store, old, self._commit(new_name))

    def install_workflow(self) -> Outcome:
        from ..faces import githooks as hooks

        data = hooks.workflow(self.store.branch)
        path = ".github/workflows/gitcoord.yml"

        def plan(state: State) -> Change:
            kernel.require_initialised(state)
            if self.session is not None:
                kernel.require_registered(state, self.session)
            src = self.store.view_of(state)
            try:
                same = src.read(path) == data
            except FileNotFoundError:
                same = False
            if same:
                return Change("hooks", "hooks", session=self.session)
            return Change(
                "hooks",
                "install the validating GitHub workflow",
                session=self.session,
                resource="workflow/gitcoord",
                writes={path: data},
            )

        return self._transact(plan)

    def _commit(self, name: str) -> str:
        if name.startswith("-"):
            raise UsageError(f"invalid revision {name!r}")
        got = self.store.reader.read(name)
        if got is None or got[1] != "commit":
            raise UsageError(f"no such commit: {name}")
        return got[0]

    def _need_session(self) -> str:
        if not self.session:
            raise RefusedError(
                "no session: pass --session ID or set GITCOORD_SESSION",
                hint="export GITCOORD_SESSION=<id>",
            )
        return self.session


def _approval_id() -> str:
    return f"{clock.now():%Y%m%d}-{secrets.token_hex(3)}"


def _check_resource(type_: str, name: str) -> None:
    from ..domain import overlap

    names.check_claim_type(type_)
    names.check_claim_name(name)
    problem = overlap.range_problem(name)
    if problem:
        raise UsageError(problem, field="name")
    if type_ == overlap.PATH_TYPE:
        try:
            overlap.matcher(name)
        except ValueError as exc:
            raise UsageError(str(exc), field="name") from None


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


