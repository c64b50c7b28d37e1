"""The verifier judges what is pushed, all of it: the shape of the new history and its clock.

Crafted with plain git plumbing, each attack is refused by `validate --range` and by
the server hook on a bare repository: a merge whose first parent is an older commit
(rolling the whole state back while the tip is its second parent), a root commit as
first parent, an octopus, a merge that carries anything but one approval, and a
quarantine dated years back. Honest work — the CLI's commits and an approver's
merge of an approval branch — still passes.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from conftest import World, git, run
from reliability import REF, commit_files, show, tip

from gitcoord.domain import kinds
from gitcoord.domain.models import FORMAT

BOSS = "boss@example.com"


def push(clone: Path, commit: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "push", "origin", f"{commit}:{REF}"], cwd=clone, capture_output=True, text=True
    )


def merge_commit(clone: Path, tree_of: str, *parents: str, message: str, email: str) -> str:
    """A commit with `parents` (first parent first) whose tree is `tree_of`'s."""
    env = {"GIT_AUTHOR_EMAIL": email, "GIT_COMMITTER_EMAIL": email}
    args = ["git", "commit-tree", f"{tree_of}^{{tree}}", "-m", message]
    for p in parents:
        args += ["-p", p]
    proc = subprocess.run(
        args, cwd=clone, capture_output=True, text=True, env={**os.environ, **env}
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def refused(clone: Path, world: World, old: str, new: str, rule: str, words: str) -> None:
    r = run(clone, "validate", "--range", f"{old}..{new}")
    assert r.code == 5 and f"[{rule}]" in r.err and words in r.err, r.err
    proc = push(clone, new)
    assert proc.returncode != 0 and f"[{rule}]" in proc.stderr, proc.stderr
    assert tip(world.remote) == old


@pytest.fixture
def branch(world: World) -> tuple[Path, str, str]:
    """alice and bob registered, bob holding task/x; the server hook installed.
    Returns the clone, an early commit (before bob's claim) and the tip."""
    a = world.clone("a")
    assert run(a, "init", "--approver", BOSS).code == 0
    for who in ("alice", "bob"):
        assert run(a, "register", "--role", "r", "--goal", "g", session=who).code == 0
    early = tip(world.remote)
    assert early is not None
    assert run(a, "claim", "task", "x", "--hours", "2", session="bob").code == 0
    assert run(a, "hooks", "install", "--server", str(world.remote)).code == 0
    git(a, "fetch", "-q", "origin")
    now = tip(world.remote)
    assert now is not None
    return a, early, now


def test_a_merge_that_rolls_the_state_back_is_refused(
    world: World, branch: tuple[Path, str, str]
) -> None:
    a, early, now = branch
    # first parent: the early commit (no claim); second parent: the tip, so `now` is an
    # ancestor and the push looks like a fast-forward; the tree is the early state
    rollback = merge_commit(a, early, early, now, message="merge", email=BOSS)
    refused(a, world, now, rollback, "history", f"not the branch's tip {now[:10]}")


def test_a_root_commit_as_first_parent_is_refused(
    world: World, branch: tuple[Path, str, str]
) -> None:
    a, _, now = branch
    config = show(a, now, kinds.config_path()).replace(BOSS.encode(), b"mallory@example.com")
    root = commit_files(a, {kinds.config_path(): config}, parent=None, message="init")
    takeover = merge_commit(a, root, root, now, message="merge", email="mallory@example.com")
    refused(a, world, now, takeover, "history", "is a root commit")


def test_merges_other_than_one_approval_are_refused(
    world: World, branch: tuple[Path, str, str]
) -> None:
    a, early, now = branch
    # an octopus, even by an approver
    side = commit_files(a, {"coordination/notes.txt": b"x"}, parent=early, message="side")
    octopus = merge_commit(a, now, now, early, side, message="octopus", email=BOSS)
    refused(a, world, now, octopus, "merge", "merges 3 parents")
    # an approver's merge that changes a session, not an approval
    alice = show(a, now, kinds.session_path("alice", fmt=FORMAT)).replace(
        b"role: r", b"role: hijacked"
    )
    edited = commit_files(
        a, {kinds.session_path("alice", fmt=FORMAT): alice}, parent=now, message="edit by the boss"
    )
    carried = merge_commit(a, edited, now, early, message="merge", email=BOSS)
    refused(a, world, now, carried, "merge", "may only approve one request")


def test_an_approvers_merge_of_an_approval_branch_passes(
    world: World, branch: tuple[Path, str, str]
) -> None:
    a, _, _ = branch
    req = run(a, "--json", "approval", "request", "Ship it", session="alice")
    assert req.code == 0, req.err
    proposal = req.json()["proposal"]  # type: ignore[index]
    git(a, "fetch", "-q", "origin")
    now = tip(world.remote)
    assert now is not None
    merged = merge_commit(a, proposal, now, proposal, message="merge approval", email=BOSS)
    assert run(a, "validate", "--range", f"{now}..{merged}").code == 0
    proc = push(a, merged)
    assert proc.returncode == 0, proc.stderr
    assert tip(world.remote) == merged
    # and the CLI goes on, through the hook, on top of the merge
    assert run(a, "heartbeat", "after", "merge", "ok", "1", session="bob").code == 0


def test_a_backdated_quarantine_cannot_set_a_live_claim_aside(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dated before alice claimed, alice's path claim seems to overlap bob's long-expired
    one, so a quarantine judged at the commit's own date would condemn it."""
    a = world.clone("a")
    assert run(a, "init", "--clock-skew", "0").code == 0
    for who in ("alice", "bob"):
        assert run(a, "register", "--role", "r", "--goal", "g", session=who).code == 0
    assert run(a, "claim", "path", "src/**", "--ttl", "1s", session="bob").code == 0
    time.sleep(2)
    assert run(a, "claim", "path", "src/api/**", session="alice").code == 0  # bob's expired
    assert run(a, "hooks", "install", "--server", str(world.remote)).code == 0
    git(a, "fetch", "-q", "origin")
    now = tip(world.remote)
    assert now is not None
    claim = kinds.claim_path("path", "src/api/**", fmt=FORMAT)
    copy = "coordination/quarantine/claims__path__src%2Fapi%2F%2A%2A.yaml"
    monkeypatch.setenv("GIT_COMMITTER_DATE", "2020-01-01T00:00:00Z")
    monkeypatch.setenv("GIT_AUTHOR_DATE", "2020-01-01T00:00:00Z")
    forged = commit_files(
        a,
        {claim: None, copy: show(a, now, claim)},
        parent=now,
        message="quarantine\n\nGitcoord-Op: quarantine\nGitcoord-Session: bob",
    )
    monkeypatch.delenv("GIT_COMMITTER_DATE")
    monkeypatch.delenv("GIT_AUTHOR_DATE")
    refused(a, world, now, forged, "quarantine", "only files that break the rules")
    # alice still holds it, and bob cannot take it
    r = run(a, "claim", "path", "src/api/**", session="bob")
    assert r.code == 3 and "held by alice" in r.err, r.err
