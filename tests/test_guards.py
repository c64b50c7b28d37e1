"""Guards and approvals with real git: the server's pre-receive hook, `validate --range`,
the client pre-commit hook, path and range claims, and approvals.

Nothing is mocked: every invalid commit below is made by hand the way a person (or
a confused agent) would make it — check out the coordination branch, edit a YAML
file, `git commit`, `git push` — against a real bare remote with the real hook
installed by `gitcoord hooks install --server`.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO_ROOT, World, git, run
from hypothesis import given, settings
from hypothesis import strategies as st

from gitcoord.domain import overlap

BRANCH = "gitcoord"
BOSS = "boss@example.com"
SESSIONS = "coordination/sessions"
API_CLAIM = "coordination/claims/path/src%2Fapi%2F%2A%2A.yaml"
TASK_CLAIM = "coordination/claims/task/t1.yaml"


# --- helpers ----------------------------------------------------------------------------


def sh(
    cwd: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """A real git command with extra environment; never raises (the caller checks)."""
    return subprocess.run(
        ["git", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        check=False,
    )


def ok(cwd: Path, *args: str, session: str | None = None) -> dict[str, Any]:
    r = run(cwd, "--json", *args, session=session)
    assert r.code == 0, (args, r.code, r.out, r.err)
    doc = r.json()
    assert isinstance(doc, dict)
    return doc


def fails(cwd: Path, code: int, *args: str, session: str | None = None) -> dict[str, Any]:
    r = run(cwd, "--json", *args, session=session)
    assert r.code == code, (args, r.code, r.out, r.err)
    doc = r.json()
    assert isinstance(doc, dict) and set(doc) == {"error"}, doc
    err: dict[str, Any] = doc["error"]
    return err


def rev(cwd: Path, name: str) -> str:
    return git(cwd, "rev-parse", name).strip()


def remote_tip(world: World, ref: str = BRANCH) -> str | None:
    out = git(world.remote, "for-each-ref", "--format=%(objectname)", f"refs/heads/{ref}")
    return out.strip() or None


def hand_clone(world: World, name: str) -> Path:
    """A clone with the coordination branch checked out, for editing it by hand."""
    h = world.clone(name)
    git(h, "checkout", "-q", BRANCH)
    return h


def reset_to_remote(h: Path) -> str:
    git(h, "fetch", "-q", "origin")
    git(h, "checkout", "-q", BRANCH)
    git(h, "reset", "-q", "--hard", f"origin/{BRANCH}")
    git(h, "clean", "-qfdx")
    return rev(h, "HEAD")


def hand_commit(h: Path, edits: dict[str, str], subject: str, *, session: str | None = None) -> str:
    """Edit files in a checkout of the branch and `git commit` them (with a trailer)."""
    for path, text in edits.items():
        target = h / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        git(h, "add", path)
    argv = ["commit", "-q", "-m", subject]
    if session is not None:
        argv += ["-m", f"Gitcoord-Session: {session}\nGitcoord-Op: edit"]
    git(h, *argv)
    return rev(h, "HEAD")


def read(h: Path, path: str) -> str:
    return (h / path).read_text()


def assert_rejected(proc: subprocess.CompletedProcess[str], path: str, rule: str) -> None:
    assert proc.returncode != 0, f"push was accepted:\n{proc.stdout}{proc.stderr}"
    assert "pre-receive hook declined" in proc.stderr, proc.stderr
    assert path in proc.stderr, (path, proc.stderr)
    assert f"[{rule}]" in proc.stderr, (rule, proc.stderr)


def assert_invalid_range(h: Path, old: str, new: str, path: str, rule: str) -> None:
    r = run(h, "--local", "validate", "--range", f"{old}..{new}")
    assert r.code == 5, (r.code, r.out, r.err)
    assert path in r.err and f"[{rule}]" in r.err, r.err
    doc = run(h, "--local", "--json", "validate", "--range", f"{old}..{new}").json()
    assert isinstance(doc, dict)
    problems = doc["error"]["problems"]
    assert any(p["path"].startswith(path) and p["rule"] == rule for p in problems), problems


def message_path(h: Path, to: str) -> str:
    files = git(h, "ls-tree", "-r", "--name-only", "HEAD", f"coordination/messages/{to}").split()
    assert len(files) == 1, files
    return files[0]


@dataclass
class Scene:
    world: World
    a: Path  # the CLI's clone (sessions s1, s2)
    h: Path  # a clone with the branch checked out, for hand edits


def make_scene(world: World) -> Scene:
    """boss@example.com the approver; s1 and s2 registered, s1 holding path
    'src/api/**' and task t1, a message from s1 to s2; then the server hook installed in
    the bare remote (CLI traffic through the hook: test_server_hook_passes_valid_traffic)."""
    a = world.clone("a")
    ok(a, "init", "--slots", "4", "--approver", BOSS)
    ok(a, "register", "--role", "one", "--goal", "g", session="s1")
    ok(a, "register", "--role", "two", "--goal", "g", session="s2")
    ok(a, "claim", "path", "src/api/**", session="s1")
    ok(a, "claim", "task", "t1", session="s1")
    ok(a, "send", "s2", "hello", "the body", session="s1")
    install_server_hook(world)
    return Scene(world, a, hand_clone(world, "h"))


def install_server_hook(world: World) -> None:
    r = run(world.root, "hooks", "install", "--server", str(world.remote))
    assert r.code == 0, r.err
    hook = world.remote / "hooks" / "pre-receive"
    assert os.access(hook, os.X_OK) and b"gitcoord pre-receive" in hook.read_bytes()


# --- 1 + 2: the server hook and `validate --range` reject the same hand-made commits -------


@dataclass(frozen=True)
class Bad:
    name: str
    path: str  # the file the rejection must name (a path or the ref)
    rule: str
    make: Callable[[Path], str]  # builds the commit(s) in the hand clone; returns the new tip


def _dup_number(h: Path) -> str:
    text = read(h, f"{SESSIONS}/s2.yaml").replace("id: s2", "id: s3")
    text = text.replace("number: 2", "number: 1")
    return hand_commit(h, {f"{SESSIONS}/s3.yaml": text}, "register s3 by hand", session="s3")


def _overlapping_path_claim(h: Path) -> str:
    text = (
        read(h, API_CLAIM)
        .replace("name: src/api/**", "name: src/api/v1/**")
        .replace("holder: s1", "holder: s2")
    )
    path = "coordination/claims/path/src%2Fapi%2Fv1%2F%2A%2A.yaml"
    return hand_commit(h, {path: text}, "claim path/src/api/v1/** by s2", session="s2")


def _rewrite_others_claim(h: Path) -> str:
    text = read(h, TASK_CLAIM).replace("note: ''", "note: mine now")
    assert "note: mine now" in text
    return hand_commit(h, {TASK_CLAIM: text}, "edit s1's claim", session="s2")


def _takeover_unexpired(h: Path) -> str:
    text = read(h, TASK_CLAIM).replace("holder: s1", "holder: s2")
    text = text.replace("generation: 1", "generation: 2")
    return hand_commit(h, {TASK_CLAIM: text}, "take over task/t1 from s1 by s2", session="s2")


def _malformed_yaml(h: Path) -> str:
    path = f"{SESSIONS}/s2.yaml"
    return hand_commit(h, {path: "id: [s2\nnumber: 2\n"}, "oops", session="s2")


def _message_modified(h: Path) -> str:
    path = message_path(h, "s2")
    text = read(h, path).replace("the body", "a different body")
    assert "a different body" in text
    return hand_commit(h, {path: text}, "edit a sent message", session="s1")


def _no_trailer(h: Path) -> str:
    path = f"{SESSIONS}/s2.yaml"
    text = read(h, path).replace("role: two", "role: edited by hand")
    return hand_commit(h, {path: text}, "fix role")  # author test@example.com, not an approver


INVALID = [
    Bad("duplicate-number", f"{SESSIONS}/s3.yaml", "unique-number", _dup_number),
    Bad(
        "overlapping-path-claims",
        "coordination/claims/path/src%2Fapi%2Fv1%2F%2A%2A.yaml",
        "overlap",
        _overlapping_path_claim,
    ),
    Bad("rewrite-others-claim", TASK_CLAIM, "own-files", _rewrite_others_claim),
    Bad("takeover-unexpired", TASK_CLAIM, "takeover", _takeover_unexpired),
    Bad("malformed-yaml", f"{SESSIONS}/s2.yaml", "yaml", _malformed_yaml),
    Bad("message-modified", "coordination/messages/s2/", "append-only", _message_modified),
    Bad("no-session-trailer", f"{SESSIONS}/s2.yaml", "session-trailer", _no_trailer),
]


def test_server_hook_and_validate_range_reject_hand_made_commits(world: World) -> None:
    scene = make_scene(world)
    h = scene.h
    failures: list[str] = []
    for bad in INVALID:
        old = reset_to_remote(h)
        new = bad.make(h)
        assert rev(h, "HEAD^") == old
        # what the CI workflow runs, on the objects before they are pushed
        try:
            assert_invalid_range(h, old, new, bad.path, bad.rule)
        except AssertionError as exc:
            failures.append(f"validate --range, {bad.name}: {exc}")
        proc = sh(h, "push", "origin", BRANCH)
        try:
            assert_rejected(proc, bad.path, bad.rule)
            assert remote_tip(world) == old, "the branch moved"
        except AssertionError as exc:
            failures.append(f"pre-receive, {bad.name}: {exc}")
    assert not failures, "\n\n".join(failures)

    # nothing got through: the branch is the valid one the CLI built
    old = reset_to_remote(h)
    assert remote_tip(world) == old == rev(scene.a, f"origin/{BRANCH}")
    assert ok(scene.a, "validate")["valid"] is True

    # while a hand edit within the rules passes both: s2 changing its own role
    path = f"{SESSIONS}/s2.yaml"
    text = read(h, path).replace("role: two", "role: edited by hand")
    new = hand_commit(h, {path: text}, "s2 edits its role", session="s2")
    r = run(h, "--local", "validate", "--range", f"{old}..{new}")
    assert r.code == 0, r.err
    proc = sh(h, "push", "origin", BRANCH)
    assert proc.returncode == 0, proc.stderr
    assert remote_tip(world) == new


def test_server_hook_judges_a_takeover_by_its_own_clock_not_the_commit_date(
    world: World,
) -> None:
    """A takeover of a claim that is live now, in a commit whose committer date is forged
    3 hours ahead (past the lease and its grace), must still be refused at push time."""
    scene = make_scene(world)
    h = scene.h
    old = reset_to_remote(h)
    text = read(h, TASK_CLAIM).replace("holder: s1", "holder: s2")
    text = text.replace("generation: 1", "generation: 2")
    (h / TASK_CLAIM).write_text(text)
    git(h, "add", TASK_CLAIM)
    future = str(int(time.time()) + 3 * 3600) + " +0000"
    p = sh(
        h,
        "commit",
        "-q",
        "-m",
        "take over task/t1 from s1 by s2",
        "-m",
        "Gitcoord-Session: s2",
        env={"GIT_COMMITTER_DATE": future, "GIT_AUTHOR_DATE": future},
    )
    assert p.returncode == 0, p.stderr
    new = rev(h, "HEAD")
    failures = []
    r = run(h, "--local", "validate", "--range", f"{old}..{new}")
    if r.code != 5:
        failures.append(f"validate --range exited {r.code}, not 5 ({r.out}{r.err})")
    proc = sh(h, "push", "origin", BRANCH)
    if proc.returncode == 0 or remote_tip(world) != old:
        failures.append(f"the push was accepted: s2 now holds task/t1\n{proc.stderr}")
    assert not failures, "\n".join(failures)


def test_server_hook_rejects_force_push_and_delete(world: World) -> None:
    scene = make_scene(world)
    h = scene.h
    tip = reset_to_remote(h)
    older = rev(h, "HEAD~2")

    # rewinding the branch: validate --range names the rule, the hook refuses the force-push
    assert_invalid_range(h, tip, older, f"refs/heads/{BRANCH}", "history")
    git(h, "reset", "-q", "--hard", older)
    proc = sh(h, "push", "--force", "origin", BRANCH)
    assert_rejected(proc, f"refs/heads/{BRANCH}", "history")
    assert remote_tip(world) == tip

    # a rewritten (not rewound) history: amend the tip and force-push
    reset_to_remote(h)
    git(h, "commit", "-q", "--amend", "-m", "rewritten")
    proc = sh(h, "push", "--force", "origin", BRANCH)
    assert_rejected(proc, f"refs/heads/{BRANCH}", "history")

    # deleting the branch
    proc = sh(h, "push", "origin", "--delete", BRANCH)
    assert_rejected(proc, f"refs/heads/{BRANCH}", "no-delete")
    assert remote_tip(world) == tip


def test_server_hook_passes_valid_traffic_and_other_refs(world: World) -> None:
    scene = make_scene(world)  # the hook is installed: every push below runs it
    first = rev(scene.a, f"origin/{BRANCH}")
    b = world.clone("b")
    c = world.clone("c")
    ok(b, "register", "--role", "three", "--goal", "g", session="s3")
    ok(c, "claim", "task", "t2", "--ttl", "10m", session="s2")
    ok(b, "claim", "path", "docs/**", session="s3")
    ok(c, "release", "task", "t2", session="s2")
    ok(b, "claim", "task", "t2", session="s3")  # a released claim is granted anew
    ok(c, "send", "s3", "re", "hi", session="s2")
    ok(b, "heartbeat", "implementing", "t2", "tests", "40", "--force", session="s3")
    status = ok(b, "status")
    assert status["registered"] == 3 and status["problems"] == []
    claims = {c["resource"]: c for c in status["claims"]}
    assert claims["task/t2"]["holder"] == "s3" and claims["task/t2"]["generation"] == 2
    assert claims["path/docs/**"]["status"] == "live"
    assert [s["id"] for s in status["sessions"]] == ["s1", "s2", "s3"]
    assert status["sessions"][2]["heartbeat"]["progress"] == 40

    # the traffic that passed the hook is a valid range for the workflow's command too
    git(scene.a, "fetch", "-q", "origin")
    new = rev(scene.a, f"origin/{BRANCH}")
    assert new != first and remote_tip(world) == new
    assert run(scene.a, "--local", "validate", "--range", f"{first}..{new}").code == 0
    assert run(scene.a, "--local", "validate", "--range", f"..{new}").code == 0

    # other refs pass untouched, garbage and rewrites included
    work = world.clone("work")
    (work / "coordination").mkdir()
    (work / "coordination" / "config.yaml").write_text("{{{ not yaml\n")
    (work / "junk.bin").write_bytes(b"\0\1\2garbage")
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "garbage on main")
    proc = sh(work, "push", "origin", "HEAD:main", "HEAD:refs/heads/scratch")
    assert proc.returncode == 0, proc.stderr
    assert remote_tip(world, "main") == remote_tip(world, "scratch") == rev(work, "HEAD")
    git(work, "commit", "-q", "--amend", "-m", "garbage, rewritten")
    proc = sh(work, "push", "--force", "origin", "HEAD:main", ":refs/heads/scratch")
    assert proc.returncode == 0, proc.stderr
    assert remote_tip(world, "main") == rev(work, "HEAD")
    assert remote_tip(world, "scratch") is None
    assert remote_tip(world) == new


def test_server_hook_chains_an_existing_hook_and_the_cli_reports_rejection_as_5(
    world: World, tmp_path: Path
) -> None:
    flag = tmp_path / "frozen"
    original = f'#!/bin/sh\nif [ -e "{flag}" ]; then echo "frozen by the admin" >&2; exit 1; fi\n'
    hook = world.remote / "hooks" / "pre-receive"
    hook.write_text(original)
    hook.chmod(0o755)
    a = world.clone("a")
    ok(a, "init", "--slots", "4")
    ok(a, "register", "--role", "one", "--goal", "g", session="s1")
    got = ok(world.root, "hooks", "install", "--server", str(world.remote))
    assert got["moved"] is True and got["chained"]

    flag.touch()
    tip = remote_tip(world)
    r = run(a, "heartbeat", "x", "y", "z", "5", "--force", session="s1")
    assert r.code == 5, (r.code, r.out, r.err)
    assert "frozen by the admin" in r.err, r.err
    assert remote_tip(world) == tip
    flag.unlink()
    ok(a, "heartbeat", "x", "y", "z", "5", "--force", session="s1")
    assert remote_tip(world) != tip

    gone = ok(world.root, "hooks", "uninstall", "--server", str(world.remote))
    assert gone["removed"] is True and gone["restored"]
    assert hook.read_text() == original


def test_github_workflow_is_committed_idempotently(world: World) -> None:
    a = world.clone("a")
    ok(a, "init", "--slots", "4")
    ok(a, "register", "--role", "one", "--goal", "g", session="s1")
    # this test's gitcoord is installed from a local directory, which a runner cannot
    # reach: the workflow is told what to install (see test_the_workflow_installs_...)
    pin = "gitcoord @ git+https://git.example/gitcoord@" + "ab" * 20
    got = ok(a, "hooks", "install", "--github-workflow", "--install", pin, session="s1")
    assert got["commit"]
    git(a, "fetch", "-q", "origin")
    tip = rev(a, f"origin/{BRANCH}")
    assert tip == got["commit"]
    text = git(a, "show", f"{tip}:.github/workflows/gitcoord.yml")
    assert f'branches: ["{BRANCH}"]' in text
    assert "gitcoord --local" in text and "validate" in text and "--range" in text
    assert "@BRANCH@" not in text and "@REQUIREMENT@" not in text
    assert f'pip install "{pin}"' in text
    changed = git(a, "show", "--name-only", "--format=", tip).split()
    assert changed == [".github/workflows/gitcoord.yml"], changed
    # the commit that added it is a valid step for the workflow's own command
    assert run(a, "--local", "validate", "--range", f"{tip}~1..{tip}").code == 0

    again = ok(a, "hooks", "install", "--github-workflow", "--install", pin, session="s1")
    assert again["commit"] is None and again["changed"] is False
    r = run(a, "hooks", "install", "--github-workflow", "--install", pin, session="s1")
    assert r.code == 0 and "already" in r.out
    git(a, "fetch", "-q", "origin")
    assert rev(a, f"origin/{BRANCH}") == tip


# --- 3: the client pre-commit hook ---------------------------------------------------------


def test_pre_commit_hook_guards_path_claims_and_chains(world: World, tmp_path: Path) -> None:
    a = world.clone("a")
    ok(a, "init", "--slots", "4")
    ok(a, "register", "--role", "one", "--goal", "g", session="s1")
    ok(a, "register", "--role", "two", "--goal", "g", session="s2")
    claim = ok(a, "claim", "path", "src/api/**", session="s1")["claim"]
    expires = claim["expires_at"]

    c = world.clone("c")
    marker = tmp_path / "marker"
    original = f'#!/bin/sh\necho ran >> "{marker}"\n'.encode()
    hook = c / ".git" / "hooks" / "pre-commit"
    hook.write_bytes(original)
    hook.chmod(0o755)
    original_mode = hook.stat().st_mode

    installed = ok(c, "hooks", "install")
    assert installed["chained"] and installed["moved"] is True
    assert b"gitcoord pre-commit" in hook.read_bytes()
    again = ok(c, "hooks", "install")  # idempotent: the chained original stays put
    assert again["moved"] is False and again["chained"] == installed["chained"]
    assert Path(installed["chained"]).read_bytes() == original

    def ran() -> int:
        return marker.read_text().count("ran") if marker.exists() else 0

    def commit(path: str, session: str, *extra: str) -> subprocess.CompletedProcess[str]:
        target = c / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(f"{path} by {session}\n")
        git(c, "add", path)
        return sh(c, "commit", "-q", *extra, "-m", f"{path}", env={"GITCOORD_SESSION": session})

    # unclaimed paths pass for anyone
    p = commit("README.md", "s2")
    assert p.returncode == 0, p.stderr
    assert ran() == 1
    head = rev(c, "HEAD")

    # inside s1's claim: refused for s2, naming file, holder, glob and expiry
    p = commit("src/api/x.py", "s2")
    assert p.returncode != 0
    for word in ("src/api/x.py", "s1", "src/api/**", expires):
        assert word in p.stderr, (word, p.stderr)
    assert rev(c, "HEAD") == head
    assert ran() == 2  # the existing hook still ran first

    # the holder may commit there
    p = sh(c, "commit", "-q", "-m", "x by s1", env={"GITCOORD_SESSION": "s1"})
    assert p.returncode == 0, p.stderr
    assert rev(c, "HEAD") != head
    assert ran() == 3

    # --no-verify bypasses every pre-commit hook
    p = commit("src/api/y.py", "s2", "--no-verify")
    assert p.returncode == 0, p.stderr
    assert ran() == 3

    # uninstall restores the original hook byte for byte
    gone = ok(c, "hooks", "uninstall")
    assert gone["removed"] is True and gone["restored"]
    assert hook.read_bytes() == original
    assert hook.stat().st_mode == original_mode
    assert not (c / ".git" / "hooks" / "pre-commit.gitcoord-chained").exists()
    p = commit("src/api/z.py", "s2")
    assert p.returncode == 0, p.stderr  # no guard any more, the original hook only
    assert ran() == 4


def test_pre_commit_hook_validates_staged_coordination_state(world: World) -> None:
    a = world.clone("a")
    ok(a, "init", "--slots", "4")
    ok(a, "register", "--role", "one", "--goal", "g", session="s1")
    c = world.clone("c")
    ok(c, "hooks", "install")
    git(c, "checkout", "-q", BRANCH)
    head = rev(c, "HEAD")

    text = (c / SESSIONS / "s1.yaml").read_text().replace("id: s1", "id: s9")
    (c / SESSIONS / "s9.yaml").write_text(text)
    git(c, "add", f"{SESSIONS}/s9.yaml")
    p = sh(c, "commit", "-q", "-m", "register s9 by hand", env={"GITCOORD_SESSION": "s9"})
    assert p.returncode != 0, p.stdout
    assert f"{SESSIONS}/s9.yaml" in p.stderr and "[unique-number]" in p.stderr, p.stderr
    assert rev(c, "HEAD") == head  # refused before the commit existed

    # a valid staged state commits (the hook checks the state, not who wrote it)
    text = text.replace("number: 1", "number: 2")
    (c / SESSIONS / "s9.yaml").write_text(text)
    git(c, "add", f"{SESSIONS}/s9.yaml")
    p = sh(c, "commit", "-q", "-m", "register s9 by hand", env={"GITCOORD_SESSION": "s9"})
    assert p.returncode == 0, p.stderr
    assert rev(c, "HEAD") != head


# --- 4: path and range claims --------------------------------------------------------------


def test_path_claims_conflict_only_across_holders(world: World) -> None:
    a = world.clone("a")
    ok(a, "init", "--slots", "4")
    ok(a, "register", "--role", "one", "--goal", "g", session="s1")
    ok(a, "register", "--role", "two", "--goal", "g", session="s2")
    ok(a, "claim", "path", "src/api/**", session="s1")

    for glob in ("src/**", "src/api/v1/*.py", "*.py", "src/api"):
        err = fails(a, 3, "claim", "path", glob, session="s2")
        assert err["holder"] == "s1" and "src/api/**" in err["message"], (glob, err)
    # names in the text message too
    r = run(a, "claim", "path", "src/**", session="s2")
    assert r.code == 3 and "s1" in r.err and "src/api/**" in r.err, r.err

    for glob in ("docs/**", "src/web/**", "src/apix/*.py", "tests/api/**"):
        ok(a, "claim", "path", glob, session="s2")
    # the holder may overlap itself
    ok(a, "claim", "path", "src/api/v1/**", session="s1")
    ok(a, "claim", "path", "src/api/handlers.py", session="s1")
    assert ok(a, "validate")["valid"] is True


def test_range_claims(world: World) -> None:
    a = world.clone("a")
    ok(a, "init", "--slots", "4")
    ok(a, "register", "--role", "one", "--goal", "g", session="s1")
    ok(a, "register", "--role", "two", "--goal", "g", session="s2")
    ok(a, "claim", "batch", "prospects:1-25", session="s1")
    ok(a, "claim", "batch", "prospects:26-50", session="s2")  # adjacent: no overlap
    r = run(a, "claim", "batch", "prospects:25-30", session="s2")
    assert r.code == 3 and "s1" in r.err and "prospects:1-25" in r.err, r.err
    r = run(a, "claim", "batch", "prospects:7", session="s2")
    assert r.code == 3 and "prospects:1-25" in r.err, r.err
    ok(a, "claim", "batch", "emails:1-25", session="s2")  # another set never conflicts
    ok(a, "claim", "batch", "emails:20-30", session="s2")  # own overlap
    ok(a, "claim", "other", "prospects:1-25", "--new-type", session="s2")  # another type
    assert run(a, "claim", "batch", "prospects:30-20", session="s2").code == 2


def test_pathspec_is_a_declared_dependency() -> None:
    """Path claims and the guard match globs with `pathspec` (gitcoord/overlap.py), so a
    plain `pip install gitcoord` must bring it."""
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    declared = [re.split(r"[<>=!~ ;\[]", d, maxsplit=1)[0].lower() for d in project["dependencies"]]
    assert "pathspec" in declared, declared


_SEGMENTS = ["a", "b", "*", "**", "a*", "?", "[ab]"]
_globs = st.lists(st.sampled_from(_SEGMENTS), min_size=1, max_size=4).map("/".join)
_paths = st.lists(st.sampled_from(["a", "b", "ab", "ba", "c"]), min_size=1, max_size=4).map(
    "/".join
)


@settings(max_examples=250, deadline=None)
@given(g1=_globs, g2=_globs, paths=st.lists(_paths, min_size=1, max_size=8))
def test_globs_overlap_is_sound(g1: str, g2: str, paths: list[str]) -> None:
    for p in paths:
        if overlap.path_in(g1, p) and overlap.path_in(g2, p):
            assert overlap.globs_overlap(g1, g2), (g1, g2, p)
            assert overlap.globs_overlap(g2, g1), (g2, g1, p)


# --- 5: approvals ----------------------------------------------------------------------------


def test_registry_approval_by_grant_and_activation(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = world.clone("a")
    ok(a, "init", "--slots", "2", "--approver", BOSS)
    ok(a, "register", "--role", "one", "--goal", "g", session="s1")

    r = run(a, "approval", "request", "Final registry", "--kind", "registry", session="s1")
    assert r.code == 0, r.err
    m = re.search(r"requested approval (\S+) \(registry\)", r.out)
    assert m, r.out
    aid = m.group(1)
    branch = f"gitcoord-approval/{aid}"
    assert f"open a pull request from {branch} into {BRANCH}" in r.out, r.out
    assert f"gitcoord approval grant {aid}" in r.out
    assert remote_tip(world, branch), "the approval branch was not pushed"

    err = fails(a, 4, "activate", session="s1")
    assert "pending activation: 1/2 registered" in err["message"], err
    r = run(a, "status")
    assert "pending activation: 1/2 registered, approval pending" in r.out, r.out
    assert ok(a, "status")["activation"]["active"] is False

    ok(a, "register", "--role", "two", "--goal", "g", session="s2")
    err = fails(a, 4, "activate", session="s2")
    assert "pending activation: 2/2 registered" in err["message"], err

    # a non-approver cannot grant
    err = fails(a, 4, "approval", "grant", aid, session="s1")
    assert "test@example.com" in err["message"] and "approver" in err["message"], err
    assert [x["status"] for x in ok(a, "approval", "list")["approvals"]] == ["pending"]

    monkeypatch.setenv("GIT_AUTHOR_EMAIL", BOSS)
    got = ok(a, "approval", "grant", aid)
    assert got["approval"]["status"] == "approved"
    assert got["approval"]["approved_by"] == BOSS
    monkeypatch.setenv("GIT_AUTHOR_EMAIL", "test@example.com")

    r = run(a, "status")
    assert "pending activation: 2/2 registered, approval approved" in r.out, r.out
    done = ok(a, "activate", session="s1")
    assert done["activation"]["active"] is True
    assert "registry: active" in run(a, "status").out
    assert ok(a, "validate")["valid"] is True


def test_approval_by_merging_the_branch_through_the_server_hook(world: World) -> None:
    scene = make_scene(world)
    a, h = scene.a, scene.h
    req = ok(a, "approval", "request", "Ship it", "--note", "please", session="s1")
    aid = req["approval"]["id"]
    branch = req["branch"]
    assert branch == f"gitcoord-approval/{aid}"
    assert remote_tip(world, branch) == req["proposal"]

    old = reset_to_remote(h)
    merge_env = {"GIT_AUTHOR_EMAIL": "test@example.com", "GIT_COMMITTER_EMAIL": "test@example.com"}
    p = sh(h, "merge", "-q", "--no-ff", "-m", "merge approval", f"origin/{branch}", env=merge_env)
    assert p.returncode == 0, p.stderr
    new = rev(h, "HEAD")
    assert_invalid_range(h, old, new, f"coordination/approvals/{aid}.yaml", "session-trailer")
    proc = sh(h, "push", "origin", BRANCH)
    assert_rejected(proc, f"coordination/approvals/{aid}.yaml", "session-trailer")
    assert remote_tip(world) == old

    # a session trailer does not make a non-approver's merge an approval
    git(h, "reset", "-q", "--hard", old)
    msg = "merge approval\n\nGitcoord-Session: s1"
    p = sh(h, "merge", "-q", "--no-ff", "-m", msg, f"origin/{branch}", env=merge_env)
    assert p.returncode == 0, p.stderr
    assert_invalid_range(h, old, rev(h, "HEAD"), f"coordination/approvals/{aid}.yaml", "approver")

    git(h, "reset", "-q", "--hard", old)
    boss = {"GIT_AUTHOR_EMAIL": BOSS, "GIT_COMMITTER_EMAIL": BOSS}
    p = sh(h, "merge", "-q", "--no-ff", "-m", "merge approval", f"origin/{branch}", env=boss)
    assert p.returncode == 0, p.stderr
    new = rev(h, "HEAD")
    assert run(h, "--local", "validate", "--range", f"{old}..{new}").code == 0
    proc = sh(h, "push", "origin", BRANCH)
    assert proc.returncode == 0, proc.stderr
    assert remote_tip(world) == new

    rows = {x["id"]: x for x in ok(a, "approval", "list", "--all")["approvals"]}
    assert rows[aid]["status"] == "approved"
    assert ok(a, "validate")["valid"] is True
    # and the CLI keeps working on top of the merge, through the hook
    ok(a, "heartbeat", "merging", "x", "done", "100", session="s2")


def test_required_approval_keeps_a_claim_pending(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = world.clone("a")
    ok(a, "init", "--slots", "4", "--approver", BOSS, "--require-approval", "deploy")
    ok(a, "register", "--role", "one", "--goal", "g", session="s1")

    r = run(a, "claim", "deploy", "prod", session="s1")
    assert r.code == 0 and "PENDING approval" in r.out, (r.out, r.err)
    got = ok(a, "claim", "deploy", "prod", session="s1")  # renewal keeps the same gate
    claim = got["claim"]
    aid = claim["approval"]
    assert aid and claim["status"] == "pending"

    def status() -> str:
        claims = {c["resource"]: c for c in ok(a, "status")["claims"]}
        return str(claims["deploy/prod"]["status"])

    assert status() == "pending"
    assert aid in ok(a, "status")["approvals_pending"]
    ok(a, "claim", "task", "t1", session="s1")  # other types are live at once
    claims = {c["resource"]: c for c in ok(a, "status")["claims"]}
    assert claims["task/t1"]["status"] == "live"

    fails(a, 4, "approval", "grant", aid, session="s1")
    assert status() == "pending"
    monkeypatch.setenv("GIT_AUTHOR_EMAIL", BOSS)
    ok(a, "approval", "grant", aid)
    monkeypatch.setenv("GIT_AUTHOR_EMAIL", "test@example.com")
    assert status() == "live"
    assert ok(a, "validate")["valid"] is True


def test_the_workflow_installs_this_gitcoord_pinned_or_says_why_it_cannot(world: World) -> None:
    from gitcoord.faces import githooks

    commit = "0123456789abcdef0123456789abcdef01234567"
    vcs = '{"url": "https://github.com/o/gitcoord", "vcs_info": {"vcs": "git", "commit_id": "%s"}}'
    assert githooks.installed_requirement(vcs % commit, "0.1.0") == (
        f"gitcoord @ git+https://github.com/o/gitcoord@{commit}"
    )
    archive = (
        '{"url": "https://h/gitcoord-0.1.0.tar.gz", "archive_info": {"hashes": {"sha256": "ff"}}}'
    )
    assert githooks.installed_requirement(archive, "0.1.0").endswith("tar.gz#sha256=ff")
    assert githooks.installed_requirement(None, "0.1.0") == "gitcoord==0.1.0"  # from an index
    local = '{"url": "file:///home/me/gitcoord", "dir_info": {"editable": true}}'
    with pytest.raises(githooks.UsageError, match="cannot install from: pass --install"):
        githooks.installed_requirement(local, "0.1.0")
    for loose in ("gitcoord", "gitcoord>=0.1", "gitcoord @ git+https://x/y@main", 'a"; rm -rf /'):
        with pytest.raises(githooks.UsageError, match="not pinned"):
            githooks.pinned(loose)

    # on real git: this test's local installation is refused, and nothing is committed
    a = world.clone("a")
    ok(a, "init", "--slots", "2")
    ok(a, "register", "--role", "one", "--goal", "g", session="s1")
    before = rev(a, f"origin/{BRANCH}")
    r = run(a, "hooks", "install", "--github-workflow", session="s1")
    assert r.code == 2 and "--install SPEC" in r.err, r.err
    r = run(a, "hooks", "install", "--github-workflow", "--install", "gitcoord", session="s1")
    assert r.code == 2 and "not pinned" in r.err, r.err
    git(a, "fetch", "-q", "origin")
    assert rev(a, f"origin/{BRANCH}") == before


def _workflow_pr_command(text: str, merge: str) -> list[str]:
    """The pull-request step's command from the installed workflow, as the runner runs
    it (`${{ github.sha }}` is the test merge GitHub prepared)."""
    step = text.split("Validate the pull request's merge", 1)[1]
    body = step.split("run: >-", 1)[1]
    lines = [
        ln.strip() for ln in body.splitlines()[1:] if ln.strip() and not ln.strip().startswith("#")
    ]
    command = " ".join(lines).replace("${{ github.sha }}", merge)
    assert command.startswith("gitcoord "), command
    return [part.strip('"') for part in command.split()[1:]]


def _github_test_merge(clone: Path, base: str, head: str) -> str:
    """The merge GitHub prepares for a pull request (refs/pull/N/merge): base as first
    parent, the branch as second, by GitHub's identity — made with plain git."""
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "GitHub",
        "GIT_AUTHOR_EMAIL": "noreply@github.com",
        "GIT_COMMITTER_NAME": "GitHub",
        "GIT_COMMITTER_EMAIL": "noreply@github.com",
    }
    tree = subprocess.run(
        ["git", "merge-tree", "--write-tree", base, head],
        cwd=clone,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()[0]
    return subprocess.run(
        [
            "git",
            "commit-tree",
            tree,
            "-p",
            base,
            "-p",
            head,
            "-m",
            f"Merge {head[:7]} into {base[:7]}",
        ],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def test_the_workflows_pull_request_step_judges_the_merge_it_would_make(world: World) -> None:
    """The PR check runs `validate --proposal --range MERGE^1..MERGE` on GitHub's test
    merge: an approval branch's pull request passes even after the branch moved on;
    one that brings anything else (rewriting another session's claim) is refused, as
    is a merge that is not an approval's shape."""
    a = world.clone("a")
    ok(a, "init", "--slots", "4", "--approver", "test@example.com")  # this test's identity
    ok(a, "register", "--role", "one", "--goal", "g", session="s1")
    ok(a, "register", "--role", "two", "--goal", "g", session="s2")
    pin = "gitcoord @ git+https://git.example/gitcoord@" + "ab" * 20
    ok(a, "hooks", "install", "--github-workflow", "--install", pin)  # as the approver
    req = ok(a, "approval", "request", "ship", session="s1")
    ok(a, "claim", "task", "t1", session="s2")  # the branch moves on after the request
    git(a, "fetch", "-q", "origin", f"+refs/heads/{req['branch']}:refs/heads/proposal")
    base = rev(a, f"origin/{BRANCH}")
    text = git(a, "show", f"{base}:.github/workflows/gitcoord.yml")
    merge = _github_test_merge(a, base, rev(a, "proposal"))
    argv = _workflow_pr_command(text, merge)
    assert "--proposal" in argv and f"{merge}^1..{merge}" in argv
    r = run(a, *argv)
    assert r.code == 0 and "valid" in r.out, r.err
    # a pull request that also rewrites s2's registration: refused, naming the merge rule
    s2 = git(a, "show", f"{base}:coordination/sessions/s2.yaml")
    bad = commit_on(
        a,
        rev(a, "proposal"),
        {"coordination/sessions/s2.yaml": s2.replace("role: two", "role: hijacked")},
    )
    merge = _github_test_merge(a, base, bad)
    r = run(a, *_workflow_pr_command(text, merge))
    assert r.code == 5 and "[merge]" in r.err, r.err
    # `--proposal` judges a merge only
    r = run(a, "--local", "validate", "--proposal", "--range", f"{base}~1..{base}")
    assert r.code == 5 and "not a merge" in r.err, r.err


def commit_on(clone: Path, parent: str, files: dict[str, str]) -> str:
    from reliability import commit_files

    return commit_files(
        clone, {k: v.encode() for k, v in files.items()}, parent=parent, message="more"
    )
