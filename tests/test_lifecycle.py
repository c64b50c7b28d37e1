"""Sessions that come and go (issue #15): reclaiming a session not seen for a day, and
Claude Code conversations that keep one identity per working context.

Reclaim: any session may reclaim one not seen (no heartbeat, no registration) for
reclaim_after_hours plus the grace — its number is freed, its claims released as
tombstones, the log says who, and the reclaimed session is told when it comes back;
`register` does it by itself when every number is taken. The verifier judges it at
its own clock, so a crafted early reclaim is refused by the hook.

Claude Code: twenty conversations one after another in one project, through the
real hook commands with the JSON Claude Code sends (startup, `/clear`, restarts, a
crash without SessionEnd), on a 12-slot template branch: every one is coordinated,
numbers do not leak, and `status` shows who is who; two windows at once are two
sessions.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from conftest import World, at, git, run
from reliability import commit_files, tip
from test_integrate import hook_input, installed, integrate, run_hook

DAY = 24 * 3600


def ok(cwd: Path, *args: str, session: str | None = None) -> dict[str, Any]:
    r = run(cwd, "--json", *args, session=session)
    assert r.code == 0, (args, r.out, r.err)
    doc = json.loads(r.out)
    assert isinstance(doc, dict)
    return doc


@pytest.fixture
def two(world: World) -> Path:
    a = world.clone("a")
    ok(a, "init", "--slots", "2")
    ok(a, "register", "--role", "r", "--goal", "g", session="s1")
    ok(a, "register", "--role", "r", "--goal", "g", session="s2")
    ok(a, "claim", "task", "t1", "--ttl", "1d", session="s1")
    return a


def test_a_session_unseen_for_a_day_is_reclaimed(
    two: Path, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = two
    ok(a, "hooks", "install", "--server", str(world.remote))
    r = run(a, "reclaim", "s1", session="s2")
    assert r.code == 4 and "can be reclaimed" in r.err, r.err  # seen just now
    monkeypatch.setenv("GITCOORD_CLOCK_OFFSET", str(DAY + 120))
    done = ok(a, "reclaim", "s1", session="s2")
    assert done["released"] == ["task/t1"] and done["number"] == 1
    log = ok(a, "log", "--op", "reclaim")
    rows = log if isinstance(log, list) else log.get("entries", log.get("log", []))
    assert rows and rows[0]["session"] == "s2"
    claims = {c["resource"]: c for c in ok(a, "status")["claims"]}
    assert claims["task/t1"]["status"] == "released"
    r = run(a, "claim", "task", "t2", session="s1")
    assert r.code == 4 and "reclaimed by s2" in r.err, r.err
    back = run(a, "register", session="s1")
    assert back.code == 0 and "while you were away, s2 reclaimed" in back.out, back.out
    # the generation carries on for the next holder
    assert ok(a, "claim", "task", "t1", session="s2")["claim"]["generation"] == 2


def test_register_reclaims_the_longest_unseen_number_when_all_are_taken(
    two: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = two
    r = run(a, "register", "--role", "r", "--goal", "g", session="s3")
    assert r.code == 3 and "reclaim_after_hours" in r.err, r.err
    monkeypatch.setenv("GITCOORD_CLOCK_OFFSET", str(DAY / 2))
    ok(a, "heartbeat", "working", "x", "y", "10", "--force", session="s2")
    monkeypatch.setenv("GITCOORD_CLOCK_OFFSET", str(DAY + 120))
    got = ok(a, "register", "--role", "r", "--goal", "g", session="s3")
    assert got["reclaimed"] == "s1" and got["session"]["number"] == 1  # s2 was seen later


def test_the_verifier_refuses_an_early_or_overreaching_reclaim(two: Path, world: World) -> None:
    a = two
    ok(a, "hooks", "install", "--server", str(world.remote))
    git(a, "fetch", "-q", "origin")
    now = tip(world.remote)
    assert now is not None
    s1 = git(a, "show", f"{now}:{at('coordination/sessions/s1.yaml')}")
    when = "2026-12-01T00:00:00Z"
    gone = f"{s1}left_at: '{when}'\nreclaimed_by: s2\n"
    early = commit_files(
        a,
        {at("coordination/sessions/s1.yaml"): gone.encode()},
        parent=now,
        message="reclaim\n\nGitcoord-Op: reclaim\nGitcoord-Session: s2\n",
    )
    r = run(a, "validate", "--range", f"{now}..{early}")
    assert r.code == 5 and "[reclaim]" in r.err, r.err
    pushed = git(a, "push", "origin", f"{early}:refs/heads/gitcoord", check=False)
    assert tip(world.remote) == now, pushed


def _conversation(
    project: Path,
    cmd: dict[str, str],
    claude_id: str,
    env: dict[str, str] | None = None,
    **start: Any,
) -> str:
    """One Claude Code conversation's start and one tool use; returns who it is."""
    payload = hook_input(project, "SessionStart", **start)
    payload["session_id"] = claude_id
    r = run_hook(cmd["SessionStart"], project, payload, **(env or {}))
    assert r.returncode == 0 and "you are coordination session" in r.stdout, (r.stdout, r.stderr)
    me = r.stdout.split("you are coordination session `", 1)[1].split("`", 1)[0]
    use = hook_input(project, "PostToolUse", tool_name="Read", tool_input={"file_path": "x"})
    use["session_id"] = claude_id
    assert run_hook(cmd["PostToolUse"], project, use, **(env or {})).returncode == 0
    return me


def _end(project: Path, cmd: dict[str, str], claude_id: str, reason: str) -> None:
    payload = hook_input(project, "SessionEnd", reason=reason)
    payload["session_id"] = claude_id
    assert run_hook(cmd["SessionEnd"], project, payload).returncode == 0


@pytest.mark.slow
def test_twenty_claude_conversations_keep_one_identity_and_leak_no_number(
    world: World,
) -> None:
    project = world.clone("project")
    ok(project, "init", "--template", "dev-12")
    integrate(project, "--no-mcp")
    cmd = installed(project)
    seen: list[str] = []
    crashed = None
    for i in range(20):
        cid = str(uuid.UUID(int=i + 1))
        source = "startup" if i % 4 == 0 else "clear"
        # the conversation before crashed (no SessionEnd): once it has been idle for
        # GITCOORD_CLAUDE_IDLE, its identity is free again (0 here: no waiting)
        env = {"GITCOORD_CLAUDE_IDLE": "0"} if crashed is not None else None
        seen.append(_conversation(project, cmd, cid, env, source=source))
        if i == 9:
            crashed = cid  # no SessionEnd: killed
            continue
        crashed = None
        _end(project, cmd, cid, "clear" if i % 4 != 3 else "prompt_input_exit")
    assert len(set(seen)) == 1, seen  # one working context, one identity throughout
    # a second window open at the same time is a second session
    first = _conversation(project, cmd, str(uuid.UUID(int=100)), source="startup")
    second = _conversation(project, cmd, str(uuid.UUID(int=101)), source="startup")
    assert first == seen[0] and second != first
    status = ok(project, "status")
    mine = [s for s in status["sessions"] if s["id"].startswith("claude-")]
    assert sorted(s["id"] for s in mine) == sorted({first, second})
    # hook-registered sessions take vacant template roles, not a placeholder
    assert all(s["role"] != "Claude Code session" for s in mine), mine
    assert len({s["number"] for s in mine}) == 2


def test_one_explicit_session_in_two_conversations_is_reported(world: World) -> None:
    project = world.clone("project")
    ok(project, "init")
    integrate(project, "--no-mcp")
    cmd = installed(project)
    for cid in ("aaaa1111", "bbbb2222"):
        payload = hook_input(project, "SessionStart", source="startup")
        payload["session_id"] = cid
        r = run_hook(cmd["SessionStart"], project, payload, GITCOORD_SESSION="shared")
        assert r.returncode == 0, r.stderr
    assert "also in use by another Claude Code conversation" in r.stdout
