"""`gitcoord integrate claude-code`: gitcoord's hooks and MCP server in a project's settings.

`claude_code(project_dir)` merges gitcoord's hook entries into
`<project>/.claude/settings.json` and its MCP server into `<project>/.mcp.json`.
Merged, never overwritten: every other key, hook and server stays as it was,
running it twice changes nothing, and `remove=True` takes out only gitcoord's
entries (recognised by their command, `... gitcoord hook <name>`). What those
entries run is `gitcoord.faces.claude.hooks`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    pass

# --- what gets installed ----------------------------------------------------------

GUARDED_TOOLS = "Edit|Write|MultiEdit|NotebookEdit|Bash"
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
    # Always: the conversation's identity is freed for the next one in this worktree
    # (`identity.release`); with --release-on-stop its claims are released too.
    wanted["SessionEnd"] = group(None, "stop", *(["--release"] if release_on_stop else []))
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
            from ...errors import InvalidError

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
    from ...errors import InvalidError

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
    from ...errors import InvalidError

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
    from ...errors import UsageError

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


