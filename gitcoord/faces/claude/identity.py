"""One gitcoord identity per working context, across Claude Code's restarts and `/clear`.

Claude Code gives every conversation a new session id: each restart, each `/clear`.
Registering each as a new gitcoord session filled the twelve numbers within a day and
left the thirteenth uncoordinated. So the hooks keep, per clone, a small table of
identities (`<git common dir>/gitcoord/claude-identities.json`, under an flock): each
is a gitcoord session id bound to a worktree and to the Claude session that uses it
now. A Claude session takes, in order:
  1. the identity it is bound to already (every hook of one conversation);
  2. else an identity of the same worktree that no conversation uses now: one whose
     conversation ended (SessionEnd, `hook stop`) or has been idle longer than
     `GITCOORD_CLAUDE_IDLE` seconds (default 600: a crash leaves no SessionEnd);
  3. else a new identity, `claude-` and the first 8 characters of its session id.
So one window that restarts or clears keeps its number, its claims and its inbox;
two windows open at once in one worktree are two sessions. A session named
explicitly (--session, $GITCOORD_SESSION) is not managed, but two live conversations
using one explicit name are detected and reported: both would "hold" its claims.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

FILE = "claude-identities.json"
IDLE_ENV = "GITCOORD_CLAUDE_IDLE"
DEFAULT_IDLE = 600.0


def idle_seconds() -> float:
    try:
        return float(os.environ.get(IDLE_ENV) or DEFAULT_IDLE)
    except ValueError:
        return DEFAULT_IDLE


def short_name(claude_id: str) -> str | None:
    short = re.sub(r"[^A-Za-z0-9]", "", claude_id)[:8].lower()
    return f"claude-{short}" if short else None


@contextlib.contextmanager
def _table(common_dir: Path) -> Iterator[dict[str, Any]]:
    folder = common_dir / "gitcoord"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / FILE
    with open(folder / (FILE + ".lock"), "a+b") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            data = json.loads(path.read_text("utf-8")) if path.exists() else {}
        except (OSError, ValueError):
            data = {}  # a damaged table: start again (identities are re-bound as used)
        if not isinstance(data, dict):
            data = {}
        data.setdefault("slots", [])
        data.setdefault("explicit", {})
        yield data
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True), "utf-8")
        os.replace(tmp, path)


def resolve(common_dir: Path, worktree: str, claude_id: str, now: float | None = None) -> str:
    """The gitcoord session this Claude conversation acts as (see the module's doc)."""
    now = time.time() if now is None else now
    idle = idle_seconds()
    with _table(common_dir) as data:
        slots: list[dict[str, Any]] = [s for s in data["slots"] if isinstance(s, dict)]
        data["slots"] = slots
        for slot in slots:
            if slot.get("claude") == claude_id:
                slot["active_at"] = now
                return str(slot["session"])
        free = [
            s
            for s in slots
            if s.get("worktree") == worktree
            and (s.get("claude") is None or now - float(s.get("active_at") or 0) > idle)
        ]
        if free:
            slot = max(free, key=lambda s: float(s.get("active_at") or 0))
            slot.update(claude=claude_id, active_at=now)
            return str(slot["session"])
        name = short_name(claude_id) or "claude-session"
        taken = {s.get("session") for s in slots}
        base, n = name, 2
        while name in taken:
            name, n = f"{base}-{n}", n + 1
        slots.append({"session": name, "worktree": worktree, "claude": claude_id, "active_at": now})
        return name


def release(common_dir: Path, claude_id: str) -> str | None:
    """The conversation ended (SessionEnd): its identity is free for the next one."""
    with _table(common_dir) as data:
        for slot in data["slots"]:
            if isinstance(slot, dict) and slot.get("claude") == claude_id:
                slot["claude"] = None
                return str(slot["session"])
    return None


def shared_explicit(
    common_dir: Path, session: str, claude_id: str, now: float | None = None
) -> float | None:
    """Record that `claude_id` acts as the explicitly named `session`; when another
    live conversation does too, how many seconds ago it was last active."""
    now = time.time() if now is None else now
    with _table(common_dir) as data:
        users: dict[str, Any] = data["explicit"].setdefault(session, {})
        others = [
            now - float(at)
            for cid, at in users.items()
            if cid != claude_id and now - float(at) <= idle_seconds()
        ]
        users[claude_id] = now
        for cid in [c for c, at in users.items() if now - float(at) > idle_seconds()]:
            del users[cid]
    return min(others) if others else None
