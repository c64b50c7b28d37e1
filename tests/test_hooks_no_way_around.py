"""Hooks with no way around them (issue #15, item 5), each way around that was found:

- `git commit -a` and `git commit <paths>` stage into a temporary index (GIT_INDEX_FILE):
  the guard judges that one, not the index on disk;
- deletions and both names of a rename are judged, not only added and modified files;
- `guard --staged` from a subfolder of the work tree;
- gitcoord-validate judges the staged tree, not the working tree;
- with no state to judge by, a repository that uses path claims fails closed, and any
  other says plainly that it checked nothing (not that the remote was slow);
- the Claude Code guard judges Bash commands that write files, and says when it cannot
  tell;
- the server shim runs a gitcoord it finds, and a server where it finds none still takes
  pushes to every other branch, saying how to fix it for the coordination branch.

The pre-commit framework itself runs in tests/test_precommit_framework.py.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import World, at, git, run

from gitcoord.faces.claude.bash import writes

CLAIM = "src/api/**"
BRANCH = "gitcoord"


def ok(cwd: Path, *args: str, session: str | None = None) -> dict[str, Any]:
    r = run(cwd, "--json", *args, session=session)
    assert r.code == 0, (args, r.code, r.out, r.err)
    doc = r.json()
    assert isinstance(doc, dict)
    return doc


def sh(
    cwd: Path, *args: str, session: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, **(env or {})}
    full.pop("GITCOORD_SESSION", None)
    if session:
        full["GITCOORD_SESSION"] = session
    return subprocess.run(
        ["git", *args], cwd=cwd, env=full, capture_output=True, text=True, check=False
    )


def write(root: Path, path: str, text: str) -> None:
    target = root / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)


def claimed(world: World) -> Path:
    """s1 holds path 'src/api/**' (made in clone a); s2 is registered too."""
    a = world.clone("a")
    ok(a, "init", "--slots", "4")
    ok(a, "register", "--role", "one", "--goal", "g", session="s1")
    ok(a, "register", "--role", "two", "--goal", "g", session="s2")
    ok(a, "claim", "path", CLAIM, session="s1")
    return a


def with_files(world: World, name: str = "c") -> Path:
    c = world.clone(name)
    for path in ("src/api/a.py", "src/api/b.py", "docs/x.md"):
        write(c, path, f"{path}\n")
    git(c, "add", "-A")
    git(c, "commit", "-q", "-m", "files")
    return c


# --- the client pre-commit hook and `guard --staged` ---------------------------------------


def test_the_client_hook_judges_the_index_being_committed(world: World) -> None:
    claimed(world)
    c = with_files(world)
    ok(c, "hooks", "install")
    head = git(c, "rev-parse", "HEAD")

    def refused(*args: str, word: str = "src/api/a.py") -> None:
        p = sh(c, "commit", "-q", "-m", "try", *args, session="s2")
        assert p.returncode != 0, (p.returncode, p.stdout, p.stderr)
        assert word in p.stderr and "s1" in p.stderr, p.stderr
        assert git(c, "rev-parse", "HEAD") == head
        git(c, "reset", "-q", "--hard", "HEAD")

    # `commit -a`: the change is in a temporary index only
    write(c, "src/api/a.py", "changed\n")
    refused("-a")
    # `commit <path>`: another temporary index
    write(c, "src/api/a.py", "changed\n")
    refused("src/api/a.py")
    # `commit -a` deleting a claimed file
    (c / "src" / "api" / "a.py").unlink()
    refused("-a")
    # a rename away: judged by its old name
    git(c, "mv", "src/api/b.py", "docs/b.py")
    refused(word="src/api/b.py")
    # an unclaimed change with `commit -a` passes
    write(c, "docs/x.md", "more\n")
    p = sh(c, "commit", "-q", "-a", "-m", "docs", session="s2")
    assert p.returncode == 0, p.stderr


def test_guard_staged_from_a_subfolder_sees_every_staged_file(world: World) -> None:
    claimed(world)
    c = with_files(world)
    write(c, "src/api/a.py", "changed\n")
    git(c, "add", "src/api/a.py")
    git(c, "mv", "src/api/b.py", "docs/b.py")
    for where in (c, c / "docs", c / "src" / "api"):
        r = run(where, "--json", "guard", "--staged", session="s2")
        assert r.code == 3, (where, r.out, r.err)
        doc = r.json()
        assert isinstance(doc, dict)
        paths = sorted(v["path"] for v in doc["error"]["violations"])
        assert paths == ["src/api/a.py", "src/api/b.py"], (where, paths)
    # the holder passes from anywhere; PATHS stay relative to where gitcoord runs
    assert run(c / "docs", "guard", "--staged", session="s1").code == 0
    assert run(c / "src", "guard", "api/a.py", session="s2").code == 3
    assert run(c / "src", "guard", "a.py", session="s2").code == 0


def test_validate_index_judges_what_is_staged(world: World) -> None:
    a = world.clone("a")
    ok(a, "init", "--slots", "4")
    ok(a, "register", "--role", "one", "--goal", "g", session="s1")
    c = world.clone("c")
    git(c, "checkout", "-q", BRANCH)
    sessions = c / "coordination" / "sessions"

    def own(sid: str) -> Path:  # a session's file in the clone's work tree (sharded folders)
        path = c / at(f"coordination/sessions/{sid}.yaml")
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    text = own("s1").read_text()

    # an untracked broken file beside a valid staged change: valid
    (sessions / "junk.yaml").write_text("{{{ not yaml\n")
    write(
        c,
        at("coordination/sessions/s9.yaml"),
        text.replace("id: s1", "id: s9").replace("number: 1", "number: 2"),
    )
    git(c, "add", at("coordination/sessions/s9.yaml"))
    r = run(c, "hooks", "run", "validate-index")
    assert r.code == 0, r.err
    # (the working tree itself is not valid: what the old hook judged)
    assert run(c, "validate", str(c)).code == 5

    # an invalid staged file, fixed in the working tree only: invalid
    write(c, at("coordination/sessions/s8.yaml"), text.replace("id: s1", "id: s8"))
    git(c, "add", at("coordination/sessions/s8.yaml"))
    own("s8").write_text(text.replace("id: s1", "id: s8").replace("number: 1", "number: 3"))
    r = run(c, "hooks", "run", "validate-index")
    assert r.code == 5 and "[unique-number]" in r.err, (r.code, r.err)

    # `commit -a`: the temporary index, through the client hook
    git(c, "reset", "-q")
    (sessions / "junk.yaml").unlink()
    ok(c, "hooks", "install")
    write(c, at("coordination/sessions/s1.yaml"), text.replace("number: 1", "number: 0"))
    p = sh(c, "commit", "-q", "-a", "-m", "number 0", session="s1")
    assert p.returncode != 0 and at("coordination/sessions/s1.yaml") in p.stderr, p.stderr

    # off the coordination branch, nothing staged under coordination/: nothing to judge
    d = with_files(world, "d")
    write(d, "coordination/README", "not a state\n")
    write(d, "docs/x.md", "more\n")
    git(d, "add", "docs/x.md")
    r = run(d, "hooks", "run", "validate-index")
    assert r.code == 0 and "nothing staged under coordination/" in r.out, (r.out, r.err)
    git(d, "add", "coordination/README")
    assert run(d, "hooks", "run", "validate-index").code == 5


# --- no state to judge by ------------------------------------------------------------------


def unreachable_clone(world: World, name: str) -> Path:
    """A clone whose remote has gone away before it ever fetched the coordination state
    (git's remote-tracking ref of it included: `git clone` brings one)."""
    c = world.clone(name)
    git(c, "update-ref", "-d", f"refs/remotes/origin/{BRANCH}")
    git(c, "remote", "set-url", "origin", str(world.root / "gone.git"))
    return c


def test_no_state_fails_closed_where_path_claims_are_used(world: World) -> None:
    claimed(world)
    c = unreachable_clone(world, "c")

    # not recorded: passes, saying plainly that nothing was checked, and why
    r = run(c, "guard", "src/api/x.py", session="s2")
    assert r.code == 0, r.err
    assert "not checked" in r.out and "nothing was checked" in r.err, (r.out, r.err)
    assert "gone.git" in r.err and "in time" not in r.err, r.err
    doc = ok(c, "guard", "src/api/x.py", session="s2")
    assert doc["unchecked"] and doc["fresh"] is False and doc["violations"] == []

    # `hooks install` records that the repository uses path claims: now it refuses
    installed = ok(c, "hooks", "install")
    assert installed["path_claims"] is True
    assert git(c, "config", "gitcoord.pathClaims").strip() == "true"
    r = run(c, "--json", "guard", "src/api/x.py", session="s2")
    assert r.code == 6, (r.out, r.err)
    err = r.json()["error"]  # type: ignore[index]
    assert err["unchecked"] is True and "gitcoord.pathClaims" in err["message"]
    write(c, "docs/y.md", "y\n")
    git(c, "add", "docs/y.md")
    p = sh(c, "commit", "-q", "-m", "y", session="s2")
    assert p.returncode != 0 and "gitcoord.pathClaims" in p.stderr, p.stderr

    # an explicit `false` is kept by `hooks install`, and lets paths pass unchecked
    git(c, "config", "gitcoord.pathClaims", "false")
    assert ok(c, "hooks", "install")["path_claims"] is False
    assert run(c, "guard", "src/api/x.py", session="s2").code == 0

    # once a state was fetched, it judges by it (and says the remote could not be reached)
    d = world.clone("d")
    ok(d, "hooks", "install")
    assert run(d, "status").code == 0
    git(d, "remote", "set-url", "origin", str(world.root / "gone.git"))
    r = run(d, "guard", "src/api/x.py", session="s2")
    assert r.code == 3 and "last fetched state" in r.err, r.err
    r = run(d, "guard", "docs/x.md", session="s2")
    assert r.code == 0 and "could not reach the remote" in r.err, r.err
    # a fresh clone never fetched through gitcoord, but `git clone` brought the branch
    e = world.clone("e")
    ok(e, "hooks", "install")
    git(e, "remote", "set-url", "origin", str(world.root / "gone.git"))
    r = run(e, "guard", "src/api/x.py", session="s2")
    assert r.code == 3 and "last fetched state" in r.err, r.err


def test_no_coordination_branch_fails_closed_where_path_claims_are_used(
    world: World,
) -> None:
    c = world.clone("c")  # the remote has no coordination branch at all
    assert run(c, "guard", "src/api/x.py", session="s2").code == 0
    git(c, "config", "gitcoord.pathClaims", "true")
    r = run(c, "guard", "src/api/x.py", session="s2")
    assert r.code == 6 and "no coordination branch" in r.err, r.err
    assert run(c, "guard", session="s2").code == 0  # nothing to check: nothing refused


# --- Claude Code: Bash commands ------------------------------------------------------------


CASES_WRITE = [
    ("echo x > src/api/a.py", ["src/api/a.py"], []),
    ("printf x >> src/api/a.py 2>&1", ["src/api/a.py"], []),
    ("cat > src/api/new.py <<'EOF'\nrm -rf /\nEOF", ["src/api/new.py"], []),
    ("sed -i 's/a/b/' src/api/a.py", ["src/api/a.py"], []),
    ("sed -i.bak -e s/a/b/ docs/x.md src/api/a.py", ["docs/x.md", "src/api/a.py"], []),
    ("perl -pi -e 's/a/b/' src/api/a.py", ["src/api/a.py"], []),
    ("mv src/api/a.py docs/", ["src/api/a.py", "docs/a.py"], []),
    ("mv src/api docs/api", [], ["src/api", "docs/api"]),
    ("cp docs/x.md src/api/", ["src/api/x.md"], []),
    ("cp -r docs src/api/new", [], ["src/api/new"]),
    ("rm -f src/api/a.py", ["src/api/a.py"], []),
    ("rm -rf src", [], ["src"]),
    ("rm src/api/*.py", [], ["src/api/*.py"]),
    ("touch src/api/{a,b}.py", ["src/api/a.py", "src/api/b.py"], []),
    ("echo x | tee -a src/api/a.py", ["src/api/a.py"], []),
    ("git checkout -- src/api/a.py", ["src/api/a.py"], []),
    ("git checkout HEAD~1 src/api/a.py", ["src/api/a.py"], []),
    ("git restore --source HEAD src/api/a.py", ["src/api/a.py"], []),
    ("git rm -q src/api/a.py", ["src/api/a.py"], []),
    ("git rm -r src/api", [], ["src/api"]),
    ("git mv src/api/a.py docs/a.py", ["src/api/a.py", "docs/a.py"], []),
    ("git -C src rm api/a.py", ["src/api/a.py"], []),
    ("cd src && rm api/a.py", ["src/api/a.py"], []),
    ("FOO=1 sudo rm src/api/a.py", ["src/api/a.py"], []),
    ("bash -c 'echo x > src/api/a.py'", ["src/api/a.py"], []),
    ("echo $(rm src/api/a.py)", ["src/api/a.py"], []),
    ("dd if=/dev/zero of=src/api/a.py count=1", ["src/api/a.py"], []),
    ("ln -s ../x src/api/link", ["src/api/link"], []),
    ("install -m 644 docs/x.md src/api/x.md", ["src/api/x.md"], []),
    ("truncate -s 0 src/api/a.py", ["src/api/a.py"], []),
    ("curl -o src/api/a.py https://example.invalid/a", ["src/api/a.py"], []),
]
CASES_NONE = [
    "ls -la 2>/dev/null",
    "sed -n 's/a/b/p' src/api/a.py",
    "git checkout main",
    "git status && git diff -- src/api/a.py",
    "cat src/api/a.py | grep x > /dev/null",
    "git commit -m \"$(cat <<'EOF'\nsubject: rm src/api/a.py > x\nEOF\n)\"",
    "python -c 'print(1)'",
    "# don't rm src/api/a.py\nls",
    "echo 'rm src/api/a.py > x'",
    "git ls-files | xargs grep foo",
    "npm test && pytest -q",
]
CASES_UNCLEAR = [
    "rm $FILE",
    'echo x > "$OUT"',
    "cd $DIR && rm a.py",
    "find . -name '*.pyc' -delete",
    "find src -name x -exec rm {} \\;",
    "git ls-files | xargs sed -i s/a/b/",
    "echo 'unclosed",
    "git apply fix.diff",
    "patch -p1 < fix.diff",
    "cat > x <<EOF\nno end",
    "tar xzf a.tgz",
]


@pytest.mark.parametrize(("command", "files", "trees"), CASES_WRITE)
def test_bash_writes_are_read(
    tmp_path: Path, command: str, files: list[str], trees: list[str]
) -> None:
    (tmp_path / "src" / "api").mkdir(parents=True)
    (tmp_path / "src" / "api" / "a.py").write_text("")
    (tmp_path / "docs").mkdir()
    got = writes(command, str(tmp_path))
    rel = [os.path.relpath(p, tmp_path) for p in got.files]
    rel_trees = [os.path.relpath(p, tmp_path) for p in got.trees]
    assert (rel, rel_trees, got.unclear) == (files, trees, []), command


@pytest.mark.parametrize("command", CASES_NONE)
def test_bash_commands_that_write_nothing_here(tmp_path: Path, command: str) -> None:
    got = writes(command, str(tmp_path))
    assert not got, (command, got)


@pytest.mark.parametrize("command", CASES_UNCLEAR)
def test_bash_commands_it_cannot_read_say_so(tmp_path: Path, command: str) -> None:
    got = writes(command, str(tmp_path))
    assert got.unclear and not got.files, (command, got)


def pre_tool_use(
    monkeypatch: pytest.MonkeyPatch, project: Path, command: str, session: str = "s2"
) -> tuple[int, str, str]:
    """`gitcoord hook pre-tool-use` with the JSON Claude Code sends for a Bash call."""
    payload = {
        "session_id": "0123abcd-89ef-4567-89ab-cdef01234567",
        "transcript_path": "/tmp/transcript.jsonl",
        "cwd": str(project),
        "permission_mode": "default",
        "hook_event_name": "PreToolUse",
        "tool_name": "Bash",
        "tool_input": {"command": command, "description": "a command"},
        "tool_use_id": "toolu_01",
    }
    monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps(payload)))
    monkeypatch.setenv("CLAUDE_PROJECT_DIR", str(project))
    r = run(project, "hook", "pre-tool-use", session=session)
    return r.code, r.out, r.err


def test_the_claude_guard_blocks_bash_writes_of_claimed_files(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = claimed(world)
    c = with_files(world)
    blocked = [
        "echo x > src/api/a.py",
        "sed -i s/a/b/ src/api/a.py",
        "mv src/api/a.py docs/a.py",
        "cp docs/x.md src/api/x.md",
        "rm src/api/a.py",
        "rm -r src",
        "echo x | tee src/api/a.py",
        "git checkout -- src/api/a.py",
        "git rm src/api/a.py",
        "git mv src/api/b.py docs/b.py",
    ]
    for command in blocked:
        code, out, err = pre_tool_use(monkeypatch, c, command)
        assert code == 2, (command, out, err)
        assert "s1" in err and CLAIM in err and command.split()[0] in err, (command, err)
    # through a symlink to a claimed file
    (c / "docs" / "link.py").symlink_to("../src/api/a.py")
    code, _, err = pre_tool_use(monkeypatch, c, "echo x >> docs/link.py")
    assert code == 2 and "src/api/a.py" in err, err
    # the holder may; nobody else is stopped from writing elsewhere
    assert pre_tool_use(monkeypatch, c, "rm src/api/a.py", session="s1")[0] == 0
    outside = "echo x > /tmp/gitcoord-test-out.txt"
    for command in ("echo x > docs/x.md", "ls src/api", "git checkout main", outside):
        assert pre_tool_use(monkeypatch, c, command) == (0, "", ""), command

    # cannot tell: allowed with a note to the agent naming the claims (the default) ...
    code, out, err = pre_tool_use(monkeypatch, c, "rm $TARGET")
    assert code == 0, err
    note = json.loads(out)["hookSpecificOutput"]
    assert note["hookEventName"] == "PreToolUse" and "permissionDecision" not in note
    assert "cannot tell" in note["additionalContext"] and CLAIM in note["additionalContext"]
    # ... or the person is asked, or it is blocked (git config gitcoord.bashUnclear)
    git(c, "config", "gitcoord.bashUnclear", "ask")
    code, out, _ = pre_tool_use(monkeypatch, c, "rm $TARGET")
    note = json.loads(out)["hookSpecificOutput"]
    assert code == 0 and note["permissionDecision"] == "ask", note
    assert CLAIM in note["permissionDecisionReason"]
    git(c, "config", "gitcoord.bashUnclear", "deny")
    code, out, err = pre_tool_use(monkeypatch, c, "rm $TARGET")
    assert code == 2 and "cannot tell" in err and "bashUnclear" in err, (out, err)
    monkeypatch.setenv("GITCOORD_BASH_UNCLEAR", "allow")  # the environment wins
    assert pre_tool_use(monkeypatch, c, "rm $TARGET")[0] == 0
    monkeypatch.delenv("GITCOORD_BASH_UNCLEAR")

    # with no claim held by anyone else, an unreadable command needs no note
    ok(a, "release", "path", CLAIM, session="s1")
    assert pre_tool_use(monkeypatch, c, "rm $TARGET") == (0, "", "")


def test_the_claude_guard_fails_closed_only_where_path_claims_are_used(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    claimed(world)
    c = unreachable_clone(world, "c")
    code, _, err = pre_tool_use(monkeypatch, c, "rm src/api/a.py")
    assert code == 0, err
    git(c, "config", "gitcoord.pathClaims", "true")
    code, _, err = pre_tool_use(monkeypatch, c, "rm src/api/a.py")
    assert code == 2 and "gitcoord.pathClaims" in err, err
    # a command that writes nothing never needs the state
    assert pre_tool_use(monkeypatch, c, "ls")[0] == 0


def test_the_bash_guard_as_claude_code_runs_it(world: World) -> None:
    claimed(world)
    c = with_files(world)
    ok(c, "integrate", "claude-code")
    settings = json.loads((c / ".claude" / "settings.json").read_text())
    group = next(g for g in settings["hooks"]["PreToolUse"] if "Bash" in g["matcher"].split("|"))
    command = group["hooks"][0]["command"]
    payload = {
        "session_id": "0123abcd-89ef-4567-89ab-cdef01234567",
        "cwd": str(c),
        "hook_event_name": "PreToolUse",
        "tool_name": "Bash",
        "tool_input": {"command": "sed -i 's/x/y/' src/api/a.py"},
    }
    env = {**os.environ, "CLAUDE_PROJECT_DIR": str(c), "GITCOORD_SESSION": "s2"}
    p = subprocess.run(
        command,
        shell=True,
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        cwd=c,
        env=env,
        timeout=120,
        check=False,
    )
    assert p.returncode == 2 and "src/api/a.py" in p.stderr and "s1" in p.stderr, p.stderr


# --- the server shim -------------------------------------------------------------------------


def tools_only(tmp_path: Path) -> Path:
    """A PATH with git and the shell tools the shim uses, and no gitcoord or python."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("git", "cat", "dirname", "id"):
        found = subprocess.run(["which", tool], capture_output=True, text=True, check=True)
        (bin_dir / tool).symlink_to(found.stdout.strip())
    return bin_dir


def shim_recording(world: World, interpreter: str) -> Path:
    """A clone of a remote with a session, and the server hook installed there with
    `interpreter` as the one that installed it (what the shim runs first)."""
    a = world.clone("a")
    ok(a, "init", "--slots", "4")
    ok(a, "register", "--role", "one", "--goal", "g", session="s1")
    ok(world.root, "hooks", "install", "--server", str(world.remote))
    hook = world.remote / "hooks" / "pre-receive"
    text = hook.read_text()
    assert f"recorded={sys.executable}\n" in text
    hook.write_text(text.replace(f"recorded={sys.executable}", f"recorded={interpreter}"))
    return a


def test_the_server_shim_without_gitcoord_takes_other_pushes_and_says_how_to_fix(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the interpreter that installed it is gone (or unreadable by the server's user)
    a = shim_recording(world, "/nonexistent/python3")

    work = world.clone("work")
    write(work, "README.md", "hello\n")
    git(work, "add", "README.md")
    git(work, "commit", "-q", "-m", "readme")
    bare = tools_only(tmp_path)
    monkeypatch.setenv("PATH", str(bare))

    # other branches: pushed, created and deleted as ever
    p = sh(work, "push", "origin", "HEAD:main", "HEAD:refs/heads/scratch")
    assert p.returncode == 0, p.stderr
    p = sh(work, "push", "origin", ":refs/heads/scratch")
    assert p.returncode == 0, p.stderr

    # the coordination branch: refused, saying what was tried and how to fix it
    tip = git(world.remote, "rev-parse", BRANCH)
    r = run(a, "heartbeat", "x", "y", "z", "5", "--force", session="s1")
    assert r.code == 5, (r.out, r.err)
    for word in ("/nonexistent/python3", "pip install", "hooks install --server", "other"):
        assert word in r.err, (word, r.err)
    assert git(world.remote, "rev-parse", BRANCH) == tip

    # with `gitcoord` on PATH, the shim runs it: valid pushes land, invalid ones are judged
    venv = Path(sys.executable).parent
    on_path = tmp_path / "on-path"
    on_path.mkdir()
    (on_path / "gitcoord").symlink_to(venv / "gitcoord")
    monkeypatch.setenv("PATH", f"{on_path}{os.pathsep}{bare}")
    ok(a, "heartbeat", "x", "y", "z", "5", "--force", session="s1")
    assert git(world.remote, "rev-parse", BRANCH) != tip
    tip = git(world.remote, "rev-parse", BRANCH)
    # or, last, `python3 -m gitcoord`
    (on_path / "gitcoord").unlink()
    (on_path / "python3").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    (on_path / "python3").chmod(0o755)
    ok(a, "heartbeat", "x", "y", "z", "6", "--force", session="s1")
    assert git(world.remote, "rev-parse", BRANCH) != tip
    h = world.clone("h")
    git(h, "checkout", "-q", BRANCH)
    write(h, at("coordination/sessions/s1.yaml"), "{{{ not yaml\n")
    git(h, "commit", "-q", "-a", "-m", "break it")
    p = sh(h, "push", "origin", BRANCH)
    assert p.returncode != 0 and "[yaml]" in p.stderr, p.stderr


def test_hooks_install_records_path_claims_once(world: World) -> None:
    c = world.clone("c")
    assert ok(c, "hooks", "install")["path_claims"] is True
    assert git(c, "config", "gitcoord.pathClaims").strip() == "true"
    r = run(c, "hooks", "install")
    assert r.code == 0 and "gitcoord.pathClaims" in r.out, r.out
    assert "path_claims" not in ok(world.root, "hooks", "install", "--server", str(world.remote))


def test_the_server_shim_passes_over_an_interpreter_without_gitcoords_dependencies(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The interpreter that installed the hook still runs but no longer has what gitcoord
    needs (its venv's packages gone: here, Python without its site-packages): the shim
    finds that out (its run fails, and the check, which imports nothing, says why) and
    goes on to `gitcoord` on PATH."""
    bare_python = tmp_path / "bare-python"
    bare_python.write_text(f'#!/bin/sh\nexec "{sys.executable}" -S "$@"\n')
    bare_python.chmod(0o755)
    a = shim_recording(world, str(bare_python))
    bare = tools_only(tmp_path)
    monkeypatch.setenv("PATH", str(bare))
    tip = git(world.remote, "rev-parse", BRANCH)
    r = run(a, "heartbeat", "x", "y", "z", "5", "--force", session="s1")
    assert r.code == 5 and str(bare_python) in r.err, (r.out, r.err)
    assert git(world.remote, "rev-parse", BRANCH) == tip

    on_path = tmp_path / "on-path"
    on_path.mkdir()
    (on_path / "gitcoord").symlink_to(Path(sys.executable).parent / "gitcoord")
    monkeypatch.setenv("PATH", f"{on_path}{os.pathsep}{bare}")
    ok(a, "heartbeat", "x", "y", "z", "6", "--force", session="s1")
    assert git(world.remote, "rev-parse", BRANCH) != tip


def test_the_server_shim_starts_one_interpreter_a_push_and_checks_it_only_on_a_refusal(
    world: World, tmp_path: Path
) -> None:
    """The interpreter that installed the hook runs gitcoord at once (a check before it
    cost an interpreter's start at every push); only when that run refuses does the shim
    check that it could run gitcoord at all, and then passes its verdict on."""
    started = tmp_path / "started"
    logged = tmp_path / "logged-python"
    logged.write_text(f'#!/bin/sh\necho "$1" >> "{started}"\nexec "{sys.executable}" "$@"\n')
    logged.chmod(0o755)
    a = shim_recording(world, str(logged))

    tip = git(world.remote, "rev-parse", BRANCH)
    ok(a, "heartbeat", "x", "y", "z", "5", "--force", session="s1")
    assert git(world.remote, "rev-parse", BRANCH) != tip
    assert started.read_text().split() == ["-m"]  # gitcoord, and nothing else

    started.unlink()
    h = world.clone("h")
    git(h, "checkout", "-q", BRANCH)
    write(h, at("coordination/sessions/s1.yaml"), "{{{ not yaml\n")
    git(h, "commit", "-q", "-a", "-m", "break it")
    tip = git(world.remote, "rev-parse", BRANCH)
    p = sh(h, "push", "origin", BRANCH)
    assert p.returncode != 0 and "[yaml]" in p.stderr, p.stderr
    assert git(world.remote, "rev-parse", BRANCH) == tip
    assert started.read_text().split() == ["-m", "-c"]  # the run refused; the check passed
