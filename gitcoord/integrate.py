"""`gitcoord integrate claude-code` and the `gitcoord hook ...` commands it wires in.

Two halves:

1. `claude_code(project_dir)` merges gitcoord's hook entries into
   `<project>/.claude/settings.json` and its MCP server into `<project>/.mcp.json`.
   Merged, never overwritten: every other key, hook and server stays as it was,
   running it twice changes nothing, and `remove=True` takes out only gitcoord's
   entries (recognised by their command, `... gitcoord hook <name>`).

2. The `hook` click group: what those entries run. Each reads Claude Code's hook
   JSON on stdin and must never break the agent's session: it exits 0, or 2 for
   a deliberate block (the path guard), and any failure is one line on stderr
   with exit 0 — a coordination outage must not stop work. The guard fails open.

The Claude Code formats (hook configuration, hook input, exit code 2, stdout as
context, `.mcp.json`) are those of Claude Code's hooks reference,
https://code.claude.com/docs/en/hooks, and its MCP docs:

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
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from .api import Coordinator
    from .state import State

# --- what gets installed ----------------------------------------------------------

GUARDED_TOOLS = "Edit|Write|MultiEdit|NotebookEdit"
HOOK_TIMEOUT_SECONDS = 60  # Claude Code stops waiting for a hook after this
MCP_SERVER_NAME = "gitcoord"

# `gitcoord hook <name>`, `/path/to/gitcoord hook <name>`, `python -m gitcoord hook <name>`
_OURS = re.compile(
    r"""gitcoord['"]?\s+hook\s+(session-start|post-tool-use|pre-tool-use|stop)(\s|$)"""
)


def gitcoord_argv() -> list[str]:
    """How Claude Code should start this gitcoord.

    The bare name when `gitcoord` on PATH is this very installation (portable,
    safe to commit); otherwise this installation's absolute path (a venv that is
    not on PATH still works); as a last resort `python -m gitcoord`.
    """
    here = Path(sys.executable).parent / "gitcoord"
    found = shutil.which("gitcoord")
    if found and here.exists() and Path(found).resolve() == here.resolve():
        return ["gitcoord"]
    if here.exists():
        return [str(here)]
    if found:
        return [found]
    return [sys.executable, "-m", "gitcoord"]


def _hook_command(base: list[str], *args: str) -> str:
    return shlex.join([*base, "hook", *args])


def desired_hooks(base: list[str], release_on_stop: bool) -> dict[str, dict[str, Any]]:
    """Event -> the one matcher group gitcoord adds to it."""

    def group(matcher: str | None, *args: str) -> dict[str, Any]:
        entry: dict[str, Any] = {}
        if matcher is not None:
            entry["matcher"] = matcher
        entry["hooks"] = [
            {
                "type": "command",
                "command": _hook_command(base, *args),
                "timeout": HOOK_TIMEOUT_SECONDS,
            }
        ]
        return entry

    wanted = {
        "SessionStart": group(None, "session-start"),
        "PreToolUse": group(GUARDED_TOOLS, "pre-tool-use"),
        "PostToolUse": group("*", "post-tool-use"),
    }
    if release_on_stop:
        wanted["SessionEnd"] = group(None, "stop", "--release")
    return wanted


# --- JSON files, merged in place ----------------------------------------------------


class _JsonFile:
    """A JSON object file read and written back in its own style (indent, final newline)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.existed = path.exists()
        self.indent: int | str = 2
        self.newline = True
        self.data: dict[str, Any] = {}
        if self.existed:
            from .errors import InvalidError

            raw = path.read_text(encoding="utf-8")
            if raw.strip():
                try:
                    data = json.loads(raw)
                except json.JSONDecodeError as exc:
                    raise InvalidError(
                        f"{path} is not valid JSON ({exc}); fix it, then run again "
                        "(nothing was changed)"
                    ) from None
                if not isinstance(data, dict):
                    raise InvalidError(f"{path} does not hold a JSON object; nothing was changed")
                self.data = data
                self.indent = _indent_of(raw)
                self.newline = raw.endswith("\n")
        self.original = json.dumps(self.data, sort_keys=False)

    @property
    def changed(self) -> bool:
        return json.dumps(self.data, sort_keys=False) != self.original

    def save(self) -> str:
        """Write if changed; delete a file we emptied. Returns what happened."""
        if not self.changed:
            return "unchanged"
        if not self.data and self.existed:
            self.path.unlink()
            if self.path.parent.name == ".claude":
                with contextlib.suppress(OSError):  # only when empty
                    self.path.parent.rmdir()
            return "removed"
        text = json.dumps(self.data, indent=self.indent, ensure_ascii=False)
        if self.newline:
            text += "\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
            if self.existed:
                os.chmod(tmp, self.path.stat().st_mode & 0o7777)
            else:
                os.chmod(tmp, 0o644)
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        return "updated" if self.existed else "created"


def _indent_of(raw: str) -> int | str:
    for line in raw.splitlines()[1:]:
        stripped = line.lstrip(" \t")
        if stripped and len(stripped) != len(line):
            lead = line[: len(line) - len(stripped)]
            return "\t" if lead.startswith("\t") else len(lead)
    return 2


def _is_ours(hook: Any) -> bool:
    return (
        isinstance(hook, dict)
        and isinstance(hook.get("command"), str)
        and _OURS.search(hook["command"]) is not None
    )


def _has_ours(group: Any) -> bool:
    return (
        isinstance(group, dict)
        and isinstance(group.get("hooks"), list)
        and any(_is_ours(h) for h in group["hooks"])
    )


def merge_hooks(settings: dict[str, Any], wanted: dict[str, dict[str, Any]]) -> None:
    """Make gitcoord's hook groups exactly `wanted`, touching nothing else."""
    from .errors import InvalidError

    hooks = settings.get("hooks")
    if hooks is None:
        if not wanted:
            return
        hooks = settings["hooks"] = {}
    if not isinstance(hooks, dict):
        raise InvalidError('.claude/settings.json: "hooks" is not an object; nothing was changed')
    satisfied: set[str] = set()
    emptied = False
    for event in list(hooks):
        groups = hooks[event]
        if not isinstance(groups, list):
            continue
        ours = [g for g in groups if _has_ours(g)]
        if not ours:
            continue
        if event in wanted and ours == [wanted[event]]:
            satisfied.add(event)
            continue
        kept = []
        for g in groups:
            if not _has_ours(g):
                kept.append(g)
                continue
            rest = [h for h in g["hooks"] if not _is_ours(h)]
            if rest:
                kept.append({**g, "hooks": rest})
        if kept:
            hooks[event] = kept
        else:
            del hooks[event]
            emptied = True
    for event, group in wanted.items():
        if event not in satisfied:
            hooks.setdefault(event, []).append(group)
    if not hooks and emptied:
        del settings["hooks"]


def merge_mcp(doc: dict[str, Any], server: dict[str, Any] | None) -> None:
    """Add (or, with None, remove) the `gitcoord` server; other servers stay."""
    from .errors import InvalidError

    servers = doc.get("mcpServers")
    if servers is not None and not isinstance(servers, dict):
        raise InvalidError('.mcp.json: "mcpServers" is not an object; nothing was changed')
    if server is None:
        if servers and MCP_SERVER_NAME in servers:
            del servers[MCP_SERVER_NAME]
            if not servers:
                del doc["mcpServers"]
        return
    if servers is None:
        servers = doc["mcpServers"] = {}
    entry = servers.get(MCP_SERVER_NAME)
    if isinstance(entry, dict):
        # keep what the user added (env, ...); set how to start it
        entry.update(server)
    else:
        servers[MCP_SERVER_NAME] = dict(server)


def claude_code(
    project_dir: str | os.PathLike[str] = ".",
    *,
    remove: bool = False,
    mcp: bool = True,
    release_on_stop: bool = False,
) -> dict[str, Any]:
    """Wire gitcoord into Claude Code for the project at `project_dir` (or unwire it)."""
    from .errors import UsageError

    root = Path(project_dir)
    if not root.is_dir():
        raise UsageError(f"no such directory: {project_dir}")
    base = gitcoord_argv()
    settings = _JsonFile(root / ".claude" / "settings.json")
    wanted = {} if remove else desired_hooks(base, release_on_stop)
    merge_hooks(settings.data, wanted)

    mcp_file = _JsonFile(root / ".mcp.json")
    touch_mcp = remove or mcp
    if touch_mcp:
        server = None if remove else {"command": base[0], "args": [*base[1:], "mcp"]}
        merge_mcp(mcp_file.data, server)

    # Read and check both before writing either.
    did_settings = settings.save()
    did_mcp = mcp_file.save() if touch_mcp else "skipped"

    events = sorted(wanted)
    if remove:
        summary = (
            f"removed gitcoord from {settings.path} ({did_settings}) "
            f"and {mcp_file.path} ({did_mcp})"
        )
    else:
        summary = f"Claude Code hooks ({', '.join(events)}) in {settings.path}: {did_settings}"
        summary += (
            f"; MCP server '{MCP_SERVER_NAME}' in {mcp_file.path}: {did_mcp}"
            if mcp
            else "; MCP server not added (--no-mcp)"
        )
    return {
        "tool": "claude-code",
        "removed": remove,
        "settings": {"path": str(settings.path), "action": did_settings, "events": events},
        "mcp": {"path": str(mcp_file.path), "action": did_mcp},
        "command": shlex.join(base),
        "summary": summary,
    }


# --- the hook commands -------------------------------------------------------------

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
        if not session:
            sid = data.get("session_id")
            if isinstance(sid, str):
                short = re.sub(r"[^A-Za-z0-9]", "", sid)[:8].lower()
                session = f"claude-{short}" if short else None
        return cls(data, path, session)

    def coordinator(self) -> Coordinator:
        from .api import Coordinator

        opts = _root_options()
        timeout = None if os.environ.get("GITCOORD_TIMEOUT") else HOOK_REMOTE_TIMEOUT
        return Coordinator(
            self.path,
            session=self.session,
            ref=opts.get("ref"),
            remote=opts.get("remote", "auto"),
            timeout=timeout,
        )


def _root_options() -> dict[str, Any]:
    """What `gitcoord -C ... --session ... --ref ... hook X` said before `hook`."""
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return {}
    from .cli import Ctx

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
    from .errors import GitcoordError

    try:
        yield
    except GitcoordError as err:
        _say(event, f"{err.message} ({suffix})")
    except Exception as exc:
        _say(event, f"unexpected {type(exc).__name__}: {exc} ({suffix})")


def _blocked(reason: str) -> Exception:
    """Exit 2 with `gitcoord: <reason>` on stderr: Claude Code blocks the tool call."""
    from .errors import ExitCode, GitcoordError

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


def _common_dir(path: str) -> Path | None:
    """The git common dir, cheaply (no Coordinator): for the rate limit."""
    from .gitio import clean_env

    proc = subprocess.run(
        ["git", "rev-parse", "--path-format=absolute", "--git-common-dir"],
        cwd=path,
        capture_output=True,
        text=True,
        env=clean_env(),
        stdin=subprocess.DEVNULL,
        check=False,
    )
    out = proc.stdout.strip()
    return Path(out) if proc.returncode == 0 and out else None


def _ensure_registered(
    c: Coordinator, session: str, state: State | None = None
) -> tuple[dict[str, Any], bool]:
    """Register `session` unless it is; update role/goal when the environment sets them."""
    role_env = os.environ.get("GITCOORD_ROLE") or None
    goal_env = os.environ.get("GITCOORD_GOAL") or None
    if state is None:
        state = c.snapshot().state
    existing = state.sessions.get(session)
    if existing is not None and (
        (role_env is None or role_env == existing.role)
        and (goal_env is None or goal_env == existing.goal)
    ):
        return existing.model_dump(mode="json"), False
    outcome = c.register(
        role=role_env or (None if existing else DEFAULT_ROLE),
        goal=goal_env or (None if existing else DEFAULT_GOAL),
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
            from . import clock, render
            from .api import status_json

            me, created = _ensure_registered(c, inp.session)
            lines = [
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
            status = status_json(c.snapshot(), now)
            box = c.inbox(peek=True)
            state_path = _hook_state_path(c, inp.session)
            hs = _read_json(state_path)
            shown = [str(m["id"]) for m in box["messages"]]
            hs["shown"] = (list(hs.get("shown", [])) + shown)[-_SHOWN_KEEP:]
            _write_json(state_path, hs)
        click.echo("\n".join(lines))
        click.echo("")
        click.echo(render.status(status, now))
        click.echo("")
        click.echo(render.inbox(box))


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
            from . import render
            from .pending import Pending

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
                + "\n\n".join(render.message(m) for m in new)
            )
            out = {
                "hookSpecificOutput": {"hookEventName": "PostToolUse", "additionalContext": text}
            }
            click.echo(json.dumps(out))


@hook.command("pre-tool-use")
def pre_tool_use() -> None:
    """Block an edit of a file inside another session's live path claim (exit 2)."""
    blocked = ""
    with _never_fail("pre-tool-use", suffix="edit allowed: the path guard is off"):
        inp = HookInput.read()
        tool_input = inp.data.get("tool_input")
        if not isinstance(tool_input, dict):
            return
        cwd = inp.data.get("cwd")
        base_dir = cwd if isinstance(cwd, str) and os.path.isdir(cwd) else inp.path
        files = [
            os.path.join(base_dir, v)  # absolute paths stay as they are
            for k in ("file_path", "notebook_path", "path")
            if isinstance(v := tool_input.get(k), str) and v
        ]
        if not files:
            return
        with inp.coordinator() as c:
            # {path, holder, claim, expires_at} for each path inside another
            # session's live path claim (paths outside the repository: never)
            hits = [h for h in c.check_paths(files) if h.get("holder") != inp.session]
        if hits:
            h = hits[0]
            blocked = (
                f"{h.get('path')} is inside the path claim '{h.get('claim')}' held by "
                f"session {h.get('holder')} until {h.get('expires_at')}. Do not edit it: work on "
                f"something else, or ask {h.get('holder')} (`gitcoord send {h.get('holder')} "
                "SUBJECT BODY` or the MCP tool `send`) to release it."
            )
    if blocked:
        raise _blocked(blocked)


@hook.command("stop")
@click.option("--release", is_flag=True, help="Release every claim this session holds.")
def stop(release: bool) -> None:
    """At the end of the session: with --release, release this session's claims."""
    with _never_fail("stop", suffix="claims left to expire"):
        inp = HookInput.read()  # read stdin even when there is nothing to do
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
