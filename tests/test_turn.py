"""Transactions of one clone (GITCOORD_TURN=clone, the default) or of one machine
(`machine`) on a remote branch take turns (store.turns.local_turn): a waiter gets the turn
when the holder lets go, a turn never given within the timeout is exit 6 with nothing
written, and a waiter that gave up never keeps the lock."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import World, git, run

from gitcoord.store.turns import _turn

HOLD = (
    "import fcntl, sys, time\n"
    "fh = open(sys.argv[1], 'a')\n"
    "fcntl.flock(fh, fcntl.LOCK_EX)\n"
    "print('held', flush=True)\n"
    "time.sleep(float(sys.argv[2]))\n"
)


def hold(path: Path, seconds: float) -> subprocess.Popen[str]:
    """Another process of this machine in the middle of its turn for `seconds`."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline() == "held\n"
    return proc


def turn_file(repo: Path, scope: str) -> Path:
    if scope == "machine":  # per user, in the runtime directory, keyed by the remote's URL
        (path,) = Path(os.environ["XDG_RUNTIME_DIR"]).glob("gitcoord-*/turn-*.flock")
    else:
        (path,) = (repo / ".git" / "gitcoord").glob("turn-*.flock")
    return path


def tip(world: World) -> str:
    return git(world.remote, "rev-parse", "refs/heads/gitcoord").strip()


@pytest.mark.parametrize("scope", ["clone", "machine"])
def test_a_turn_not_given_in_time_is_exit_6_with_nothing_written(
    world: World, scope: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITCOORD_TURN", scope)
    a = world.clone("a")
    assert run(a, "init").code == 0
    assert run(a, "register", "--role", "r", "--goal", "g", session="s1").code == 0
    path = turn_file(a, scope)
    before = tip(world)
    holder = hold(path, 30)
    try:
        r = run(a, "--timeout", "1", "claim", "task", "x", session="s1")
        assert r.code == 6, (r.code, r.err)
        assert f"waiting for this {scope}'s other gitcoord commands; nothing was" in r.err
        assert tip(world) == before
        if scope == "clone":  # another clone of this machine is not held up by it
            b = world.clone("b")
            assert run(b, "register", "--role", "r", "--goal", "g", session="s2").code == 0
            before = tip(world)
    finally:
        holder.kill()
        holder.wait()
    assert run(a, "claim", "task", "x", session="s1").code == 0  # the lock went with it
    assert tip(world) != before


def test_a_waiter_gets_the_turn_when_the_holder_lets_go(world: World) -> None:
    a = world.clone("a")
    assert run(a, "init").code == 0
    assert run(a, "register", "--role", "r", "--goal", "g", session="s1").code == 0
    holder = hold(turn_file(a, "clone"), 1.0)
    try:
        r = run(a, "--timeout", "30", "claim", "task", "y", session="s1")
        assert r.code == 0, r.err
        assert holder.poll() is not None  # it was granted only once the holder was gone
    finally:
        holder.kill()
        holder.wait()


def test_a_waiter_given_up_on_releases_the_turn_it_gets_later(tmp_path: Path) -> None:
    path = tmp_path / "turn.flock"
    holder = hold(path, 1.0)
    try:
        assert _turn(str(path), time.monotonic() + 0.2) is None  # gave up; its thread waits on
    finally:
        holder.wait()
    # The abandoned waiter got the lock when the holder exited, and let it go: another
    # process takes it at once (a non-blocking attempt, retried while that thread runs).
    probe = (
        "import fcntl, sys, time\n"
        "fh = open(sys.argv[1], 'a')\n"
        "end = time.monotonic() + 10\n"
        "while True:\n"
        "    try:\n"
        "        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB); print('ok'); break\n"
        "    except BlockingIOError:\n"
        "        if time.monotonic() > end: print('still held'); break\n"
        "        time.sleep(0.01)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe, str(path)], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "ok"
    fh = _turn(str(path), time.monotonic() + 5)
    assert fh is not None
    fh.close()
