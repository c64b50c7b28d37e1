"""Remote faults with real git: unreachable, refusing, hanging, dying mid-push, lost replies.

Every test checks four things a user relies on:
- the exit code (6 remote unreachable or timed out, 5 refused by the remote's hook);
- a one-line message that says what failed (never a traceback);
- nothing half-written: the remote's branch is exactly as before (or, when the
  push got through, holds exactly one commit for the operation), no lock files,
  the user's work tree untouched;
- a retry once the fault is gone succeeds.

Faults are real: a path that does not exist, a closed loopback port, server
hooks that refuse, hang or kill receive-pack, and a TCP proxy in this process
that relays a real `git daemon` and cuts a push mid-pack or swallows the
server's verdict. The only time checks are generous "within N seconds" bounds on
exit 6 (`--timeout` keeps them short).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import World, git, git_daemon, run, run_proc, snapshot_worktree
from reliability import (
    BRANCH,
    Proxy,
    assert_clean_failure,
    daemon_port,
    lock_files,
    private_agent,
    proxy,
    tip,
    trailers,
    warm_agent,
)

from testing.servers import free_port

# Generous: exit 6 must come "within N s" of a --timeout of a few seconds, on a busy
# two-core machine that also imports Python (~0.5 s) for every process.
BOUND = 30.0


def timed(cwd: Path, *args: str, session: str | None = None) -> tuple[int, str, str, float]:
    start = time.monotonic()
    r = run_proc(cwd, *args, session=session)
    return r.code, r.out, r.err, time.monotonic() - start


def setup(world: World, name: str = "a") -> Path:
    clone = world.clone(name)
    assert run(clone, "init").code == 0
    r = run(clone, "register", "--role", "r", "--goal", "g", session="s1")
    assert r.code == 0, r.err
    return clone


def remote_tip(world: World) -> str | None:
    return tip(world.remote)


def ops_on(repo: Path, subject_prefix: str) -> list[str]:
    return [t["subject"] for t in trailers(repo) if t["subject"].startswith(subject_prefix)]


def hook(world: World, body: str, name: str = "pre-receive") -> Path:
    path = world.remote / "hooks" / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


# --- unreachable --------------------------------------------------------------------


@pytest.mark.parametrize("where", ["missing-path", "closed-port"])
def test_unreachable_remote_is_exit_6_nothing_written_and_retry_succeeds(
    world: World, where: str
) -> None:
    clone = setup(world)
    good = git(clone, "remote", "get-url", "origin").strip()
    bad = (
        str(world.root / "no-such-remote.git")
        if where == "missing-path"
        else (f"git://127.0.0.1:{free_port()}/remote.git")
    )
    git(clone, "remote", "set-url", "origin", bad)
    before_remote, before_local = remote_tip(world), tip(clone, f"refs/remotes/origin/{BRANCH}")
    worktree = snapshot_worktree(clone)

    for cmd in (("claim", "task", "x"), ("send", "broadcast", "s", "b"), ("status",)):
        code, out, err, took = timed(clone, "--timeout", "5", *cmd, session="s1")
        assert code == 6, (cmd, code, out, err)
        assert_clean_failure(err, code)
        assert err.count("\n") == 1, err
        assert "cannot fetch" in err and "origin" in err, err
        assert took < BOUND, took

    assert remote_tip(world) == before_remote
    assert tip(clone, f"refs/remotes/origin/{BRANCH}") == before_local
    assert lock_files(clone) == []
    assert snapshot_worktree(clone) == worktree

    git(clone, "remote", "set-url", "origin", good)
    r = run(clone, "claim", "task", "x", session="s1")
    assert r.code == 0, r.err
    assert ops_on(world.remote, "claim task/x") == ["claim task/x by s1"]


def test_json_error_for_an_unreachable_remote_is_one_document(world: World) -> None:
    clone = setup(world)
    git(clone, "remote", "set-url", "origin", str(world.root / "gone.git"))
    r = run_proc(clone, "--timeout", "5", "claim", "task", "x", "--json", session="s1")
    assert r.code == 6
    doc = json.loads(r.out)
    assert doc["error"]["code"] == 6 and doc["error"]["kind"] == "remote", doc
    assert r.err == ""


# --- refused by the remote -----------------------------------------------------------


def test_pre_receive_that_refuses_is_exit_5_with_its_message(world: World) -> None:
    clone = setup(world)
    before = remote_tip(world)
    hook(world, "cat >/dev/null\necho 'policy: the coordination branch is frozen' >&2\nexit 1\n")
    r = run_proc(clone, "claim", "task", "x", session="s1")
    assert r.code == 5, (r.code, r.out, r.err)
    assert_clean_failure(r.err, r.code)
    assert "policy: the coordination branch is frozen" in r.err, r.err
    assert "origin rejected the change" in r.err, r.err
    assert remote_tip(world) == before
    assert lock_files(world.remote) == [] and lock_files(clone) == []

    (world.remote / "hooks" / "pre-receive").unlink()
    assert run(clone, "claim", "task", "x", session="s1").code == 0
    assert ops_on(world.remote, "claim task/x") == ["claim task/x by s1"]


def test_pre_receive_that_hangs_is_exit_6_within_the_timeout_and_nothing_lands(
    world: World,
) -> None:
    clone = setup(world)
    before = remote_tip(world)
    release = world.root / "release"
    # "Forever" for the client: it waits for the test to let go, then refuses.
    hook(
        world,
        "cat >/dev/null\ni=0\n"
        f"while [ ! -e '{release}' ] && [ $i -lt 2400 ]; do sleep 0.05; i=$((i+1)); done\n"
        "exit 1\n",
    )
    try:
        code, out, err, took = timed(clone, "--timeout", "3", "claim", "task", "x", session="s1")
    finally:
        release.touch()
    assert code == 6, (code, out, err)
    assert_clean_failure(err, code)
    assert "timed out after 3s" in err and "origin" in err, err
    assert took < BOUND, took
    _wait_for_receive_pack(world)
    assert remote_tip(world) == before
    assert lock_files(world.remote) == []

    (world.remote / "hooks" / "pre-receive").unlink()
    r = run(clone, "claim", "task", "x", session="s1")
    assert r.code == 0, r.err
    assert ops_on(world.remote, "claim task/x") == ["claim task/x by s1"]


def _wait_for_receive_pack(world: World) -> None:
    """The orphaned receive-pack of a killed push finishes on its own: wait for it."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
        if str(world.remote) not in ps:
            return
        time.sleep(0.1)


def test_pre_receive_that_kills_receive_pack_is_exit_6_and_nothing_lands(world: World) -> None:
    """The server side dies mid-push (receive-pack killed): the client cannot know the
    outcome from the connection, re-reads the branch, and reports exit 6 naming the
    failure once its timeout is spent; nothing is half-written on the remote."""
    clone = setup(world)
    before = remote_tip(world)
    hook(world, "cat >/dev/null\nkill -9 $PPID\nsleep 1\nexit 1\n")
    code, out, err, took = timed(clone, "--timeout", "4", "claim", "task", "x", session="s1")
    assert code == 6, (code, out, err)
    assert_clean_failure(err, code)
    assert "origin" in err, err
    assert took < BOUND, took
    assert remote_tip(world) == before
    assert lock_files(world.remote) == [] and lock_files(clone) == []
    (world.remote / "hooks" / "pre-receive").unlink()
    assert run(clone, "claim", "task", "x", session="s1").code == 0
    assert ops_on(world.remote, "claim task/x") == ["claim task/x by s1"]
    assert run(clone, "validate").code == 0


# --- a connection that dies mid-push, through a real git daemon --------------------------


@pytest.fixture
def proxied(world: World) -> Iterator[tuple[World, Path, Proxy]]:
    """A clone whose origin is a TCP proxy in front of a real `git daemon`."""
    with git_daemon(world.root) as base, proxy(daemon_port(base)) as p:
        url = f"{p.url_base}/{world.remote.name}"
        dest = world.root / "p"
        git(world.root, "clone", "-q", url, str(dest))
        assert run(dest, "init").code == 0
        assert run(dest, "register", "--role", "r", "--goal", "g", session="s1").code == 0
        yield world, dest, p


def test_every_push_cut_mid_pack_is_exit_6_nothing_lands_and_retry_succeeds(
    proxied: tuple[World, Path, Proxy],
) -> None:
    world, clone, p = proxied
    before = remote_tip(world)
    p.break_pushes("cut", cut_after=60)
    code, out, err, took = timed(clone, "--timeout", "5", "claim", "task", "x", session="s1")
    assert p.broken >= 1, "the proxy never saw a push"
    assert code == 6, (code, out, err)
    assert_clean_failure(err, code)
    assert "origin" in err and "the remote end hung up" in err, err
    assert took < BOUND, took
    assert remote_tip(world) == before, "a cut push must not land"
    assert lock_files(world.remote) == [] and lock_files(clone) == []

    p.break_pushes("pass", 0)
    r = run(clone, "claim", "task", "x", "--json", session="s1")
    assert r.code == 0, r.err
    assert ops_on(world.remote, "claim task/x") == ["claim task/x by s1"]
    assert run(clone, "validate").code == 0


def test_one_push_cut_mid_pack_is_retried_and_lands_once(
    proxied: tuple[World, Path, Proxy],
) -> None:
    world, clone, p = proxied
    p.break_pushes("cut", 1, cut_after=60)
    r = run_proc(clone, "claim", "task", "x", "--json", session="s1")
    assert p.broken == 1
    assert r.code == 0, (r.out, r.err)
    landed = r.json()["commit"]  # type: ignore[index]
    assert tip(world.remote) == landed
    assert ops_on(world.remote, "claim task/x") == ["claim task/x by s1"]


# --- the push is accepted but its verdict is lost -----------------------------------------


@pytest.mark.parametrize("command", ["claim", "send"])
def test_push_accepted_but_reply_lost_reports_the_commit_that_landed_once(
    proxied: tuple[World, Path, Proxy], command: str
) -> None:
    """The proxy relays the whole push and swallows the server's report: the client
    must not push again (a duplicate) nor report a phantom: it re-reads the branch,
    finds its own commit there, and reports that one."""
    world, clone, p = proxied
    before = len(trailers(world.remote))
    p.break_pushes("swallow", 1, hold=0.3)
    args = ("claim", "task", "x") if command == "claim" else ("send", "broadcast", "subj", "body")
    r = run_proc(clone, *args, "--json", session="s1")
    assert p.broken == 1, "the proxy never saw a push"
    history = trailers(world.remote)
    assert len(history) == before + 1, [h["subject"] for h in history[before:]]
    landed = history[-1]
    assert r.code == 0, (r.out, r.err)
    assert r.json()["commit"] == landed["commit"]  # type: ignore[index]
    assert landed["Gitcoord-Session"] == "s1"
    # The next command sees the truth.
    st = run(clone, "status", "--json").json()
    if command == "claim":
        assert [c["holder"] for c in st["claims"]] == ["s1"]  # type: ignore[index]
    assert run(clone, "validate").code == 0


def test_reply_lost_and_timeout_then_next_command_sees_the_true_state(
    proxied: tuple[World, Path, Proxy],
) -> None:
    """Worse: the verdict is lost AND the client's deadline expires before it can
    re-read. Exit 6 then — but the next command sees the claim as it truly is, and
    claiming again is a renewal of the same grant, not a second commit of a grant."""
    world, clone, p = proxied
    p.break_pushes("swallow", 1_000, hold=8)
    code, out, err, took = timed(clone, "--timeout", "3", "claim", "task", "x", session="s1")
    assert took < BOUND, took
    assert_clean_failure(err, code)
    landed = [t for t in trailers(world.remote) if t["subject"] == "claim task/x by s1"]
    assert len(landed) <= 1, landed
    if code == 0:
        assert landed, "exit 0 for a claim that is not on the branch (a phantom success)"
    else:
        assert code == 6, (code, out, err)
    p.break_pushes("pass", 0)
    st = run(clone, "status", "--json").json()
    holders = {c["resource"]: c["holder"] for c in st["claims"]}  # type: ignore[index]
    assert holders == ({"task/x": "s1"} if landed else {}), (holders, landed)
    r = run(clone, "claim", "task", "x", "--json", session="s1")
    assert r.code == 0, r.err
    grants = [t for t in trailers(world.remote) if t["subject"].startswith("claim task/x")]
    assert len(grants) == 1, grants
    assert r.json()["claim"]["generation"] == 1  # type: ignore[index]
    assert run(clone, "validate").code == 0


# --- the same through the warm agent ----------------------------------------------------


def test_unreachable_through_the_warm_agent_is_still_exit_6(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: the agent ignored SIGCHLD and its command children inherited that,
    so every git exit code read as 0 — a claim against a missing remote "succeeded"
    with a commit that exists nowhere but in the clone."""
    with private_agent(monkeypatch):
        clone = setup(world)
        assert warm_agent(clone), "no agent started"
        git(clone, "remote", "set-url", "origin", str(world.root / "gone.git"))
        before = tip(clone, f"refs/remotes/origin/{BRANCH}")
        r = run_proc(clone, "--timeout", "5", "claim", "task", "x", session="s1")
        assert r.code == 6, (r.code, r.out, r.err)
        assert "cannot fetch" in r.err, r.err
        assert tip(clone, f"refs/remotes/origin/{BRANCH}") == before
        assert remote_tip(world) is not None and "claim task/x" not in str(trailers(world.remote))


# --- a git killed mid ref-update ------------------------------------------------------


def test_a_stale_lock_on_gitcoords_mirror_ref_is_cleared_and_a_fresh_one_is_left(
    world: World,
) -> None:
    """A git killed while it moved gitcoord's mirror of the tip (a killed terminal takes
    the whole process group) leaves `<ref>.lock`; git never removes it. Once it is older
    than any live git holds a ref lock, the next command removes it and sees the
    branch as it is; a fresh lock may belong to a live git and is not touched."""
    from gitcoord.store.remote import STALE_LOCK_SECONDS

    clone, other = setup(world), world.clone("b")
    gitdir = Path(git(clone, "rev-parse", "--git-common-dir").strip())
    if not gitdir.is_absolute():
        gitdir = clone / gitdir
    mirror = gitdir / "refs" / "gitcoord" / "remotes" / "origin" / BRANCH
    assert mirror.exists()
    lock = mirror.with_name(mirror.name + ".lock")

    # The branch moves on elsewhere; this clone's mirror is locked by a "killed" git.
    assert run(other, "register", "--role", "r", "--goal", "g", session="s2").code == 0
    lock.write_text("")
    r = run(clone, "--timeout", "10", "status", "--json")
    assert r.code == 0, r.err
    assert lock.exists(), "a fresh lock may be a live git's: left alone"

    old = time.time() - STALE_LOCK_SECONDS - 1
    os.utime(lock, (old, old))
    r = run(clone, "status", "--json")
    assert r.code == 0, r.err
    assert not lock.exists()
    assert mirror.read_text().strip() == remote_tip(world)
    assert "s2" in {s["id"] for s in json.loads(r.out)["sessions"]}, r.out

    # The same after a push of ours: the mirror follows it, lock cleared.
    lock.write_text("")
    os.utime(lock, (old, old))
    r = run(clone, "claim", "task", "x", session="s1")
    assert r.code == 0, r.err
    assert lock_files(clone) == []
    assert mirror.read_text().strip() == remote_tip(world)
