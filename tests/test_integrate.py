"""`gitcoord integrate claude-code` and the hook commands it installs.

The settings files are merged, never overwritten: a project's own keys, hooks
and MCP servers survive, a second run changes no byte, and `--remove` gives the
original files back. The hook commands are then run exactly as Claude Code
would run them: the command strings from `.claude/settings.json`, through a
shell, with a hook-input JSON on stdin, in a clone with gitcoord initialised.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import World, flusher_lock, git, run

CLAUDE_SESSION = "0123abcd-89ef-4567-89ab-cdef01234567"
ME = "claude-0123abcd"  # what the hooks derive from CLAUDE_SESSION

ORIGINAL_SETTINGS: dict[str, Any] = {
    "$schema": "https://json.schemastore.org/claude-code-settings.json",
    "permissions": {"allow": ["Bash(npm run test:*)"], "deny": ["Read(./.env)"]},
    "env": {"FOO": "bär"},
    "hooks": {
        "PreToolUse": [
            {
                "matcher": "Bash",
                "hooks": [{"type": "command", "command": "./scripts/check-bash.sh"}],
            }
        ],
        "PostToolUse": [
            {
                "matcher": "Edit|Write",
                "hooks": [{"type": "command", "command": "npx prettier --write ."}],
            }
        ],
        "Stop": [{"hooks": [{"type": "command", "command": "notify-send done"}]}],
    },
    "model": "opus",
}
ORIGINAL_MCP: dict[str, Any] = {
    "mcpServers": {
        "github": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-github"]}
    }
}


def dumps(data: dict[str, Any], indent: int = 2) -> str:
    return json.dumps(data, indent=indent, ensure_ascii=False) + "\n"


def load(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def integrate(project: Path, *args: str) -> dict[str, Any]:
    r = run(project, "integrate", "claude-code", *args, "--json")
    assert r.code == 0, (r.out, r.err)
    doc = json.loads(r.out)
    assert isinstance(doc, dict) and doc["summary"]
    return doc


def commands(settings: dict[str, Any], event: str) -> list[str]:
    return [h["command"] for g in settings["hooks"].get(event, []) for h in g["hooks"]]


def gitcoord_hooks(settings: dict[str, Any]) -> dict[str, list[str]]:
    return {
        event: [c for c in commands(settings, event) if " hook " in c]
        for event in settings.get("hooks", {})
        if any(" hook " in c for c in commands(settings, event))
    }


@pytest.fixture
def project(world: World) -> Path:
    p = world.clone("project")
    assert run(p, "init").code == 0
    return p


# --- merging ----------------------------------------------------------------------


def test_merge_keeps_everything_is_idempotent_and_removes_cleanly(project: Path) -> None:
    settings_path = project / ".claude" / "settings.json"
    mcp_path = project / ".mcp.json"
    settings_path.parent.mkdir()
    settings_path.write_text(dumps(ORIGINAL_SETTINGS), encoding="utf-8")
    mcp_path.write_text(dumps(ORIGINAL_MCP), encoding="utf-8")
    before = settings_path.read_bytes(), mcp_path.read_bytes()

    doc = integrate(project, "--release-on-stop")
    assert doc["settings"]["action"] == "updated" and doc["mcp"]["action"] == "updated"
    settings = load(settings_path)
    # every key of the project's own stays, in its order, with its values
    for key, value in ORIGINAL_SETTINGS.items():
        if key != "hooks":
            assert settings[key] == value
    assert list(settings)[: len(ORIGINAL_SETTINGS)] == list(ORIGINAL_SETTINGS)
    # the project's own hooks come first and unchanged; gitcoord's are added
    for event, groups in ORIGINAL_SETTINGS["hooks"].items():
        assert settings["hooks"][event][: len(groups)] == groups
    ours = gitcoord_hooks(settings)
    assert set(ours) == {"SessionStart", "PreToolUse", "PostToolUse", "SessionEnd"}
    assert [c.split(" hook ")[1] for c in ours["PreToolUse"]] == ["pre-tool-use"]
    assert [c.split(" hook ")[1] for c in ours["SessionEnd"]] == ["stop --release"]
    guard = next(g for g in settings["hooks"]["PreToolUse"] if g["matcher"] != "Bash")
    assert guard["matcher"] == "Edit|Write|MultiEdit|NotebookEdit|Bash"
    assert guard["hooks"][0]["type"] == "command" and guard["hooks"][0]["timeout"] > 0
    mcp = load(mcp_path)
    assert mcp["mcpServers"]["github"] == ORIGINAL_MCP["mcpServers"]["github"]
    server = mcp["mcpServers"]["gitcoord"]
    assert server["args"][-1] == "mcp" and "gitcoord" in " ".join(
        [server["command"], *server["args"]]
    )

    # twice: not one byte changes
    after_first = settings_path.read_bytes(), mcp_path.read_bytes()
    doc = integrate(project, "--release-on-stop")
    assert doc["settings"]["action"] == "unchanged" and doc["mcp"]["action"] == "unchanged"
    assert (settings_path.read_bytes(), mcp_path.read_bytes()) == after_first

    # --remove: the original files, byte for byte
    doc = integrate(project, "--remove")
    assert doc["removed"] is True
    assert (settings_path.read_bytes(), mcp_path.read_bytes()) == before
    doc = integrate(project, "--remove")
    assert doc["settings"]["action"] == "unchanged" and doc["mcp"]["action"] == "unchanged"
    assert (settings_path.read_bytes(), mcp_path.read_bytes()) == before


def test_creates_missing_files_and_remove_deletes_what_it_created(project: Path) -> None:
    doc = integrate(project, "--no-mcp")
    assert doc["settings"]["action"] == "created" and doc["mcp"]["action"] == "skipped"
    assert not (project / ".mcp.json").exists()
    settings = load(project / ".claude" / "settings.json")
    assert set(settings) == {"hooks"}
    assert set(gitcoord_hooks(settings)) == {
        "SessionStart",
        "PreToolUse",
        "PostToolUse",
        "SessionEnd",  # always: it frees the conversation's identity for the next one
    }

    assert integrate(project)["mcp"]["action"] == "created"
    assert set(load(project / ".mcp.json")["mcpServers"]) == {"gitcoord"}

    integrate(project, "--remove")
    assert not (project / ".claude").exists()
    assert not (project / ".mcp.json").exists()
    # git sees nothing left behind
    assert git(project, "status", "--porcelain") == ""


def test_rerun_replaces_its_own_entries_and_keeps_the_file_style(project: Path) -> None:
    settings_path = project / ".claude" / "settings.json"
    settings_path.parent.mkdir()
    stale = {
        "hooks": {
            "PreToolUse": [
                {
                    "matcher": "Edit",
                    "hooks": [
                        {"type": "command", "command": "/old/venv/bin/gitcoord hook pre-tool-use"},
                        {"type": "command", "command": "./mine.sh"},
                    ],
                }
            ],
            "SessionEnd": [
                {"hooks": [{"type": "command", "command": "gitcoord hook stop --release"}]}
            ],
        }
    }
    settings_path.write_text(json.dumps(stale, indent=4), encoding="utf-8")  # no final newline
    integrate(project, "--no-mcp")
    text = settings_path.read_text(encoding="utf-8")
    assert text.startswith('{\n    "hooks"') and not text.endswith("\n")
    settings = load(settings_path)
    # the stale guard is replaced, not duplicated; the user's hook in its group stays
    assert commands(settings, "PreToolUse")[0] == "./mine.sh"
    assert [c for c in commands(settings, "PreToolUse") if "gitcoord" in c] == [
        c for c in gitcoord_hooks(settings)["PreToolUse"]
    ]
    assert len(gitcoord_hooks(settings)["PreToolUse"]) == 1
    assert "/old/venv" not in text
    # integrating without --release-on-stop keeps a SessionEnd entry without --release
    assert [c.split(" hook ")[1] for c in gitcoord_hooks(settings)["SessionEnd"]] == ["stop"]
    snapshot = settings_path.read_bytes()
    integrate(project, "--no-mcp")
    assert settings_path.read_bytes() == snapshot


def test_invalid_json_is_refused_and_nothing_is_written(project: Path) -> None:
    settings_path = project / ".claude" / "settings.json"
    settings_path.parent.mkdir()
    settings_path.write_text('{"hooks": {,}', encoding="utf-8")
    r = run(project, "integrate", "claude-code")
    assert r.code == 5 and "not valid JSON" in r.err
    assert settings_path.read_text(encoding="utf-8") == '{"hooks": {,}'
    assert not (project / ".mcp.json").exists()


# --- the hook commands, run as Claude Code runs them ------------------------------------


def hook_env(project: Path, **extra: str) -> dict[str, str]:
    # Claude Code's environment has none of ours; but riding stays off as in every test
    # (no flusher outlives one) unless a test turns it on.
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("GITCOORD_") or k == "GITCOORD_RIDE"
    }
    env["CLAUDE_PROJECT_DIR"] = str(project)
    env.update(extra)
    return env


def run_hook(
    command: str, project: Path, payload: dict[str, Any] | str, **env: str
) -> subprocess.CompletedProcess[str]:
    data = payload if isinstance(payload, str) else json.dumps(payload)
    return subprocess.run(
        command,
        shell=True,
        input=data,
        capture_output=True,
        text=True,
        cwd=project,
        env=hook_env(project, **env),
        timeout=120,
        check=False,
    )


def hook_input(project: Path, event: str, **fields: Any) -> dict[str, Any]:
    return {
        "session_id": CLAUDE_SESSION,
        "transcript_path": "/tmp/transcript.jsonl",
        "cwd": str(project),
        "permission_mode": "default",
        "hook_event_name": event,
        **fields,
    }


def edit_input(project: Path, event: str, path: str) -> dict[str, Any]:
    return hook_input(
        project,
        event,
        tool_name="Edit",
        tool_input={"file_path": str(project / path), "old_string": "a", "new_string": "b"},
        tool_use_id="toolu_01",
    )


def installed(project: Path) -> dict[str, str]:
    """Event -> the exact command string integrate wrote for it."""
    settings = load(project / ".claude" / "settings.json")
    found = {}
    for event, cmds in gitcoord_hooks(settings).items():
        assert len(cmds) == 1, cmds
        found[event] = cmds[0]
    return found


def status(cwd: Path) -> dict[str, Any]:
    r = run(cwd, "status", "--json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert isinstance(doc, dict)
    return doc


def test_hook_commands_run_register_beat_deliver_guard_and_release(
    world: World, project: Path
) -> None:
    integrate(project, "--release-on-stop")
    cmd = installed(project)
    other = world.clone("other")
    assert run(other, "register", "--role", "API", "--goal", "ship", session="bob").code == 0

    # SessionStart: registers the session and prints who it is, the status and the inbox
    r = run_hook(
        cmd["SessionStart"],
        project,
        hook_input(project, "SessionStart", source="startup"),
        GITCOORD_ROLE="Frontend",
        GITCOORD_GOAL="ship the login page",
    )
    assert r.returncode == 0, r.stderr
    assert f"you are coordination session `{ME}`" in r.stdout
    assert "SESSIONS" in r.stdout and "bob" in r.stdout  # the status
    assert f"no unread messages for {ME}" in r.stdout  # the inbox
    seen = {s["id"]: s for s in status(other)["sessions"]}
    assert seen[ME]["role"] == "Frontend" and seen[ME]["goal"] == "ship the login page"
    # again (resume, compact): still registered once, nothing new written
    tip = status(other)["tip"]
    r = run_hook(cmd["SessionStart"], project, hook_input(project, "SessionStart", source="resume"))
    assert r.returncode == 0 and ME in r.stdout, r.stderr
    assert status(other)["tip"] == tip

    # PostToolUse: a heartbeat and new messages as additional context, at most once a minute.
    # The beat is held to ride the clone's next push (this test plays the flusher that the
    # hook would otherwise start, which pushes it within heartbeat_min_seconds).
    sent = run(other, "send", ME, "Heads up", "I own src/api", "--json", session="bob")
    assert sent.code == 0, sent.err
    with flusher_lock(project):
        r = run_hook(
            cmd["PostToolUse"],
            project,
            edit_input(project, "PostToolUse", "README.md"),
            GITCOORD_RIDE="1",  # as Claude Code runs it
        )
        assert r.returncode == 0, r.stderr
        out = json.loads(r.stdout)["hookSpecificOutput"]
        assert out["hookEventName"] == "PostToolUse"
        assert "Heads up" in out["additionalContext"]
        assert "I own src/api" in out["additionalContext"]
        me = next(s for s in status(other)["sessions"] if s["id"] == ME)
        assert me["heartbeat"] is None  # held, not pushed on its own
        assert run(project, "flush").code == 0  # what the flusher does by its time
        me = next(s for s in status(other)["sessions"] if s["id"] == ME)
        assert me["heartbeat"] is not None and me["stale"] is False
        started = time.monotonic()
        r = run_hook(cmd["PostToolUse"], project, edit_input(project, "PostToolUse", "README.md"))
        assert r.returncode == 0 and r.stdout == "" and r.stderr == ""  # rate limited
        assert time.monotonic() - started < 30
        # past the interval: beats again, and a message already shown is not shown twice
        r = run_hook(
            cmd["PostToolUse"],
            project,
            edit_input(project, "PostToolUse", "README.md"),
            GITCOORD_HOOK_INTERVAL="0",
        )
        assert r.returncode == 0 and r.stdout == "", (r.stdout, r.stderr)

    # PreToolUse: the path guard
    assert run(other, "claim", "path", "src/api/**", session="bob").code == 0
    r = run_hook(cmd["PreToolUse"], project, edit_input(project, "PreToolUse", "src/api/users.py"))
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "bob" in r.stderr and "src/api/**" in r.stderr and "src/api/users.py" in r.stderr
    r = run_hook(cmd["PreToolUse"], project, edit_input(project, "PreToolUse", "src/web/app.ts"))
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    # its own path claim does not block the session itself
    assert run(project, "claim", "path", "src/web/**", session=ME).code == 0
    r = run_hook(cmd["PreToolUse"], project, edit_input(project, "PreToolUse", "src/web/app.ts"))
    assert (r.returncode, r.stderr) == (0, ""), r.stderr
    # NotebookEdit names its file notebook_path
    nb = hook_input(
        project,
        "PreToolUse",
        tool_name="NotebookEdit",
        tool_input={"notebook_path": str(project / "src/api/nb.ipynb"), "new_source": "x"},
    )
    assert run_hook(cmd["PreToolUse"], project, nb).returncode == 2

    # SessionEnd with --release-on-stop: this session's claims are released
    assert run(project, "claim", "task", "login-page", session=ME).code == 0
    r = run_hook(cmd["SessionEnd"], project, hook_input(project, "SessionEnd", reason="exit"))
    assert r.returncode == 0, r.stderr
    claims = {c["resource"]: c for c in status(other)["claims"]}
    assert claims["task/login-page"]["status"] == "released"
    assert claims["path/src/web/**"]["status"] == "released"
    assert claims["path/src/api/**"]["status"] == "live"  # bob's stays


def test_hooks_never_break_the_session(world: World, project: Path) -> None:
    integrate(project, "--release-on-stop")
    cmd = installed(project)
    assert run(project, "register", "--role", "r", "--goal", "g", session=ME).code == 0

    # garbage or empty input: exit 0
    for command in cmd.values():
        for payload in ("not json", "", "[]"):
            r = run_hook(command, project, payload)
            assert r.returncode == 0, (command, payload, r.stderr)

    # bob's path claim, seen once by this clone before the remote goes away
    other = world.clone("other")
    assert run(other, "register", "--role", "API", "--goal", "ship", session="bob").code == 0
    assert run(other, "claim", "path", "src/api/**", session="bob").code == 0
    assert any(c["holder"] == "bob" for c in status(project)["claims"])

    # the remote is gone: every hook exits 0 with one line on stderr ...
    git(project, "remote", "set-url", "origin", str(world.root / "gone.git"))
    for event, payload in [
        ("SessionStart", hook_input(project, "SessionStart", source="startup")),
        ("PostToolUse", edit_input(project, "PostToolUse", "a.py")),
        ("SessionEnd", hook_input(project, "SessionEnd", reason="exit")),
    ]:
        r = run_hook(cmd[event], project, payload, GITCOORD_HOOK_INTERVAL="0")
        assert r.returncode == 0, (event, r.stdout, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("gitcoord hook "), (event, r.stderr)
    # ... except the guard, which still knows bob's claim from the last fetch
    r = run_hook(cmd["PreToolUse"], project, edit_input(project, "PreToolUse", "src/api/a.py"))
    assert r.returncode == 2 and "bob" in r.stderr, (r.stdout, r.stderr)
    r = run_hook(cmd["PreToolUse"], project, edit_input(project, "PreToolUse", "src/web/a.py"))
    assert (r.returncode, r.stderr) == (0, ""), r.stderr

    # a guard that cannot run at all fails open, with a warning
    r = run_hook(
        cmd["PreToolUse"],
        project,
        edit_input(project, "PreToolUse", "src/api/a.py"),
        GITCOORD_SESSION="../not-a-session",
    )
    assert r.returncode == 0, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "guard is off" in lines[0], r.stderr

    # outside any repository: nothing to coordinate, still exit 0
    elsewhere = world.root / "plain"
    elsewhere.mkdir()
    r = subprocess.run(
        cmd["PostToolUse"],
        shell=True,
        input=json.dumps(edit_input(elsewhere, "PostToolUse", "x")),
        capture_output=True,
        text=True,
        cwd=elsewhere,
        env=hook_env(elsewhere),
        check=False,
    )
    assert r.returncode == 0, r.stderr


def test_a_session_that_left_registers_again_at_its_next_start(world: World, project: Path) -> None:
    integrate(project)
    cmd = installed(project)
    start = hook_input(project, "SessionStart", source="startup")
    r = run_hook(cmd["SessionStart"], project, start, GITCOORD_ROLE="UI", GITCOORD_GOAL="ship")
    assert r.returncode == 0 and "(just registered)" in r.stdout, r.stderr
    assert run(project, "leave", session=ME).code == 0
    assert ME not in {s["id"] for s in status(project)["sessions"]}
    r = run_hook(cmd["SessionStart"], project, start, GITCOORD_ROLE="UI", GITCOORD_GOAL="ship")
    assert r.returncode == 0 and "(just registered)" in r.stdout, r.stdout + r.stderr
    assert ME in {s["id"] for s in status(project)["sessions"]}
    assert run(project, "claim", "task", "x", session=ME).code == 0
