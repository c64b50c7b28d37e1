"""The `gitcoord hook ...` commands that Claude Code runs (wired in by `integrate claude-code`).

Each reads Claude Code's hook JSON on stdin and must never break the agent's
session: it exits 0, or 2 for a deliberate block (the path guard), and any
failure is one line on stderr with exit 0 — a coordination outage must not stop
work. The guard fails open, except where the repository says it uses path claims
(`gitcoord.pathClaims`) and there is no state at all to judge by.

The Claude Code formats (hook input, exit code 2, stdout as context) are those of
Claude Code's hooks reference, https://code.claude.com/docs/en/hooks:

- SessionStart: plain stdout is added to the session's context.
- PreToolUse: exit 2 blocks the tool call and feeds stderr to Claude.
- PostToolUse: on exit 0 plain stdout only reaches the debug log, so new
  messages go out as `{"hookSpecificOutput": {"hookEventName": "PostToolUse",
  "additionalContext": ...}}`.
- Stop fires at the end of every turn, SessionEnd when the session ends: the
  release-on-stop entry is therefore a SessionEnd hook.

Module-level imports are click and the standard library only: the hooks run on
every tool call, and the Coordinator (pydantic, ...) is imported only when a
hook actually has work to do.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from ...api.coordinator import Coordinator
    from ...domain.state import State

DEFAULT_ROLE = "Claude Code session"


DEFAULT_GOAL = "not set (export GITCOORD_GOAL before starting Claude Code)"


HOOK_REMOTE_TIMEOUT = 15.0  # seconds; unless GITCOORD_TIMEOUT says otherwise


POST_TOOL_INTERVAL = 60.0  # seconds between two heartbeat/inbox rounds of one session


_SHOWN_KEEP = 200


class HookInput:
    """Claude Code's hook JSON (stdin), and where and as whom the hook acts."""

    def __init__(self, data: dict[str, Any], path: str, session: str | None) -> None:
        self.data = data
        self.path = path
        self.session = session
        # seconds since another live conversation used this explicit session, if one did
        self.shared: float | None = None

    def shared_note(self) -> str | None:
        if self.shared is None:
            return None
        return (
            f"gitcoord: session `{self.session}` is also in use by another Claude Code "
            f"conversation (active {int(self.shared)} s ago): both act as one session and "
            'would both "hold" its claims; give this one its own GITCOORD_SESSION.'
        )

    @classmethod
    def read(cls) -> HookInput:
        data: dict[str, Any] = {}
        if not sys.stdin.isatty():
            with contextlib.suppress(ValueError, OSError):
                raw = json.loads(sys.stdin.read() or "{}")
                if isinstance(raw, dict):
                    data = raw
        opts = _root_options()
        path = opts.get("path") or "."
        if path == ".":
            cwd = data.get("cwd")
            path = os.environ.get("CLAUDE_PROJECT_DIR") or (cwd if isinstance(cwd, str) else ".")
        session = opts.get("session") or os.environ.get("GITCOORD_SESSION") or None
        inp = cls(data, path, session)
        sid = data.get("session_id")
        if isinstance(sid, str) and sid and re.search(r"[A-Za-z0-9]", sid):
            common = _common_dir(path)
            if common is not None:
                from . import identity

                if session:
                    inp.shared = identity.shared_explicit(common, session, sid)
                elif data.get("hook_event_name") == "SessionEnd":
                    inp.session = identity.release(common, sid) or identity.short_name(sid)
                else:
                    worktree = os.path.realpath(path)
                    inp.session = identity.resolve(common, worktree, sid)
            elif not session:
                inp.session = identity_name(sid)
        return inp

    def coordinator(self) -> Coordinator:
        from ...api.coordinator import Coordinator
        from .. import flusher

        opts = _root_options()
        timeout = None if os.environ.get("GITCOORD_TIMEOUT") else HOOK_REMOTE_TIMEOUT
        coord = Coordinator(
            self.path,
            session=self.session,
            ref=opts.get("ref"),
            remote=opts.get("remote", "auto"),
            timeout=timeout,
        )
        flusher.install(coord)
        return coord


def _root_options() -> dict[str, Any]:
    """What `gitcoord -C ... --session ... --ref ... hook X` said before `hook`."""
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return {}
    from ..cli.app import Ctx

    obj = ctx.find_object(Ctx)
    if obj is None:
        return {}
    return {"path": obj.path, "session": obj.session, "ref": obj.ref, "remote": obj.remote}


def _say(event: str, message: str) -> None:
    first = " ".join(message.split())
    click.echo(f"gitcoord hook {event}: {first}", err=True)


@contextlib.contextmanager
def _never_fail(event: str, *, suffix: str = "continuing without coordination") -> Iterator[None]:
    """Turn any failure into one line on stderr and exit 0."""
    from ...errors import GitcoordError

    try:
        yield
    except GitcoordError as err:
        _say(event, f"{err.message} ({suffix})")
    except Exception as exc:
        _say(event, f"unexpected {type(exc).__name__}: {exc} ({suffix})")


def _blocked(reason: str) -> Exception:
    """Exit 2 with `gitcoord: <reason>` on stderr: Claude Code blocks the tool call."""
    from ...errors import ExitCode, GitcoordError

    class Blocked(GitcoordError):
        code = ExitCode.USAGE  # 2
        kind = "blocked"

    return Blocked(reason)


def _hook_state_path(c: Coordinator, session: str) -> Path:
    return Path(c.store.info.common_dir) / "gitcoord" / "hooks" / f"{session}.json"


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(data, fh)
    os.replace(tmp, path)


def identity_name(claude_id: str) -> str | None:
    from . import identity

    return identity.short_name(claude_id)


def _common_dir(path: str) -> Path | None:
    """The git common dir, cheaply (no Coordinator): for the rate limit."""
    from ...gitio import Git

    proc = Git.at(path).run(
        ["rev-parse", "--path-format=absolute", "--git-common-dir"], check=False
    )
    out = proc.stdout.decode("utf-8", "surrogateescape").strip()
    return Path(out) if proc.returncode == 0 and out else None


def _ensure_registered(
    c: Coordinator, session: str, state: State | None = None
) -> tuple[dict[str, Any], bool]:
    """Register `session` unless it is; update role/goal when the environment sets them."""
    role_env = os.environ.get("GITCOORD_ROLE") or None
    goal_env = os.environ.get("GITCOORD_GOAL") or None
    if state is None:
        state = c.snapshot().state
    existing = state.present.get(session)
    if existing is not None and (
        (role_env is None or role_env == existing.role)
        and (goal_env is None or goal_env == existing.goal)
    ):
        return existing.model_dump(mode="json"), False
    number = None
    vacant = []
    if existing is None and state.roster is not None:
        free = set(state.free_numbers())
        vacant = [slot for slot in state.roster.slots if slot.number in free]
        # a vacant template role that fits ($GITCOORD_ROLE), else the first vacant one
        fits = [v for v in vacant if role_env and v.role.casefold() == role_env.casefold()]
        chosen = fits or vacant
        number = chosen[0].number if chosen else None
    from_slot = existing is None and bool(vacant)
    outcome = c.register(
        role=role_env or (None if existing or from_slot else DEFAULT_ROLE),
        goal=goal_env or (None if existing or from_slot else DEFAULT_GOAL),
        number=number,
    )
    return dict(outcome.change.result["session"]), existing is None


@click.group("hook")
def hook() -> None:
    """Claude Code hook handlers: each reads the hook's JSON on stdin.

    Installed by `gitcoord integrate claude-code`. They always exit 0 (a
    coordination outage must not stop work), except `pre-tool-use`, which
    exits 2 to block an edit inside another session's live path claim.
    The session is --session / $GITCOORD_SESSION, else `claude-` and the first
    8 characters of Claude Code's session id; a new session registers with
    $GITCOORD_ROLE and $GITCOORD_GOAL.
    """


@hook.command("session-start")
def session_start() -> None:
    """Register this session if needed; print its inbox and the status as context."""
    with _never_fail("session-start"):
        inp = HookInput.read()
        if not inp.session:
            _say("session-start", "no session id: set GITCOORD_SESSION (no coordination)")
            return
        with inp.coordinator() as c:
            from ... import clock
            from ...api import render
            from ...domain import untrusted

            me, created = _ensure_registered(c, inp.session)
            note = inp.shared_note()
            lines = [*([note] if note else [])]
            lines += [
                f"gitcoord: you are coordination session `{inp.session}` "
                f"(#{me['number']}, role: {me['role']}) on {c.store.where}"
                + (" (just registered)." if created else "."),
                "Other AI sessions work in this repository too. Before you work on a task, "
                "a service or a set of files, claim it so no one else takes it: the gitcoord "
                "MCP tool `claim` (pass session="
                f'"{inp.session}" if the server has no session) or '
                f"`gitcoord --session {inp.session} claim TYPE NAME` "
                "(e.g. `claim task i-match`, `claim path 'src/api/**'`). A held claim is an "
                "error naming its holder: pick other work or message them. Edits to files "
                "under another session's path claim are blocked. Release claims when done.",
            ]
            env_file = os.environ.get("CLAUDE_ENV_FILE")
            if env_file and not os.environ.get("GITCOORD_SESSION"):
                with contextlib.suppress(OSError), open(env_file, "a", encoding="utf-8") as fh:
                    fh.write(f"export GITCOORD_SESSION={shlex.quote(inp.session)}\n")
            now = clock.now()
            status = c.status()  # with its health line, unanswered messages included
            box = c.inbox(peek=True)
            state_path = _hook_state_path(c, inp.session)
            hs = _read_json(state_path)
            shown = [str(m["id"]) for m in box["messages"]]
            hs["shown"] = (list(hs.get("shown", [])) + shown)[-_SHOWN_KEEP:]
            _write_json(state_path, hs)
        click.echo("\n".join(lines))
        click.echo("")
        # Roles, goals, notes and messages are other sessions' words: data, not orders.
        click.echo(untrusted.fenced(render.status(status, now) + "\n\n" + render.inbox(box)))


@hook.command("post-tool-use")
def post_tool_use() -> None:
    """At most once a minute: a heartbeat, and any new messages as context."""
    with _never_fail("post-tool-use"):
        inp = HookInput.read()
        if not inp.session:
            return
        common = _common_dir(inp.path)
        if common is None:
            return
        interval = float(os.environ.get("GITCOORD_HOOK_INTERVAL", POST_TOOL_INTERVAL))
        state_path = common / "gitcoord" / "hooks" / f"{inp.session}.json"
        hs = _read_json(state_path)
        now_s = time.time()
        last = hs.get("last_run")
        if isinstance(last, (int, float)) and 0 <= now_s - last < interval:
            return
        hs["last_run"] = now_s
        _write_json(state_path, hs)  # claim this round before the slow part

        with inp.coordinator() as c:
            from ...api import render
            from ...domain import untrusted
            from ...store.pending import Pending

            state = c.snapshot().state
            _ensure_registered(c, inp.session, state)
            # Keep the session's own last report (what the agent said it does); only
            # when there is none, say which tool it just used.
            owed = Pending(c.store.info.common_dir, inp.session).read().get("heartbeat")
            last_beat = state.heartbeats.get(inp.session)
            if isinstance(owed, dict) and {"action", "target", "phase", "progress"} <= set(owed):
                fields = (owed["action"], owed["target"], owed["phase"], int(owed["progress"]))
            elif last_beat is not None:
                fields = (last_beat.action, last_beat.target, last_beat.phase, last_beat.progress)
            else:
                tool = str(inp.data.get("tool_name") or "tools")[:100]
                fields = ("working", "-", f"using {tool}", 0)
            c.heartbeat(*fields)

            box = c.inbox(peek=True)
            hs = _read_json(state_path) or hs
            seen = set(map(str, hs.get("shown", [])))
            new = [m for m in box["messages"] if not m.get("read") and m["id"] not in seen]
            if new:
                hs["shown"] = (list(hs.get("shown", [])) + [m["id"] for m in new])[-_SHOWN_KEEP:]
                _write_json(state_path, hs)
        if new:
            text = (
                f"gitcoord: {len(new)} new message(s) for {inp.session} "
                "(mark them read with the MCP tool `inbox` or `gitcoord inbox`):\n\n"
                + untrusted.fenced("\n\n".join(render.message(m) for m in new))
            )
            out = {
                "hookSpecificOutput": {"hookEventName": "PostToolUse", "additionalContext": text}
            }
            click.echo(json.dumps(out))


UNCLEAR_POLICIES = ("allow", "ask", "deny")


def _unclear_policy(c: Coordinator) -> str:
    """What to do with a Bash command whose writes the guard cannot read, while others
    hold path claims: $GITCOORD_BASH_UNCLEAR, else `git config gitcoord.bashUnclear`:
    `allow` (the default: allowed, with a note to the agent naming the claims), `ask`
    (Claude Code asks the person), `deny` (blocked). Anything else asks."""
    value = os.environ.get("GITCOORD_BASH_UNCLEAR")
    if value is None:
        proc = c.store.git.run(["config", "--get", "gitcoord.bashUnclear"], check=False)
        value = proc.stdout.decode("utf-8", "replace").strip() if proc.returncode == 0 else ""
    value = value.strip().lower() or "allow"
    return value if value in UNCLEAR_POLICIES else "ask"


def _claim_hit(h: dict[str, Any], what: str) -> str:
    return (
        f"{what} {h.get('path')}, inside the path claim '{h.get('claim')}' held by "
        f"session {h.get('holder')} until {h.get('expires_at')}. Do not change it: work on "
        f"something else, or ask {h.get('holder')} (`gitcoord send {h.get('holder')} "
        "SUBJECT BODY` or the MCP tool `send`) to release it."
    )


def _judge_tool_call(inp: HookInput) -> tuple[str, str, str]:
    """(why to block, a note when it cannot tell, the policy for that note)."""
    from ...errors import RemoteError

    tool_input = inp.data.get("tool_input")
    if not isinstance(tool_input, dict):
        return "", "", ""
    cwd = inp.data.get("cwd")
    base_dir = cwd if isinstance(cwd, str) and os.path.isdir(cwd) else inp.path
    command = tool_input.get("command")
    tool = inp.data.get("tool_name")
    if isinstance(command, str) and tool in (None, "Bash"):
        from . import bash

        found = bash.writes(command, base_dir)
        files, trees, unclear = found.files, found.trees, found.unclear
        shown = " ".join(command.split())
        shown = shown if len(shown) <= 120 else shown[:117] + "..."
        what = f"The command `{shown}` writes"
    else:
        files = [
            os.path.join(base_dir, v)  # absolute paths stay as they are
            for k in ("file_path", "notebook_path", "path")
            if isinstance(v := tool_input.get(k), str) and v
        ]
        trees, unclear = [], []
        what = "This edit changes"
    if not (files or trees or unclear):
        return "", "", ""
    with inp.coordinator() as c:
        try:
            # {path, holder, claim, expires_at} for each path inside another
            # session's live path claim (paths outside the repository: never)
            data = c.check_paths(files, trees=trees, always=bool(unclear))
        except RemoteError as err:
            if err.details.get("unchecked"):
                return f"{err.message}.", "", ""
            raise
        hits = [h for h in data["violations"] if h.get("holder") != inp.session]
        if hits:
            return _claim_hit(hits[0], what), "", ""
        held = [cl for cl in data.get("claims", []) if cl.get("holder") != inp.session]
        if not unclear or not held:
            return "", "", ""
        policy = _unclear_policy(c)
    claims = ", ".join(f"'{cl['claim']}' ({cl['holder']})" for cl in held[:10])
    note = (
        f"gitcoord cannot tell which files this command writes ({'; '.join(unclear[:3])}). "
        f"Other sessions hold path claims: {claims}. Do not change files under them; "
        "write such commands with plain file names, or use the Edit and Write tools."
    )
    return "", note, policy


@hook.command("pre-tool-use")
def pre_tool_use() -> None:
    """Block an edit, or a Bash command that writes, of a file inside another session's
    live path claim (exit 2); say when a Bash command's writes cannot be read."""
    blocked, note, policy = "", "", ""
    with _never_fail("pre-tool-use", suffix="allowed: the path guard is off"):
        inp = HookInput.read()
        blocked, note, policy = _judge_tool_call(inp)
    if blocked:
        raise _blocked(blocked)
    if note and policy == "deny":
        raise _blocked(note + " (blocked: git config gitcoord.bashUnclear deny)")
    if note:
        out: dict[str, Any] = {"hookEventName": "PreToolUse"}
        if policy == "ask":
            out["permissionDecision"] = "ask"
            out["permissionDecisionReason"] = note
        else:
            out["additionalContext"] = note
        click.echo(json.dumps({"hookSpecificOutput": out}))


@hook.command("stop")
@click.option("--release", is_flag=True, help="Release every claim this session holds.")
@click.option("--leave", is_flag=True, help="Leave: release everything and free the number.")
def stop(release: bool, leave: bool) -> None:
    """At the end of the conversation (SessionEnd): its identity is free for the next
    conversation in this worktree; with --release its claims are released, with
    --leave the session leaves (claims released, number freed)."""
    with _never_fail("stop", suffix="claims left to expire"):
        inp = HookInput.read()  # read stdin even when there is nothing to do
        if leave and inp.session:
            with inp.coordinator() as c:
                c.leave()
            _say("stop", f"{inp.session} left: its claims are released and its number free")
            return
        if not release or not inp.session:
            return
        with inp.coordinator() as c:
            mine = [
                (cl["type"], cl["name"])
                for cl in c.status()["claims"]
                if cl["holder"] == inp.session and cl["status"] != "released"
            ]
            done, failed = [], []
            for type_, name in mine:
                try:
                    c.release(type_, name)
                    done.append(f"{type_}/{name}")
                except Exception as exc:  # keep releasing the others
                    failed.append(f"{type_}/{name} ({exc})")
        if done or failed:
            _say(
                "stop",
                f"released {', '.join(done) or 'nothing'}"
                + (f"; could not release {', '.join(failed)}" if failed else ""),
            )
