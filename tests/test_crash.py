"""kill -9 at random points of a mutation: nothing half-done, nothing stuck, nothing lost.

Real `python -m gitcoord` processes (run in process: GITCOORD_AGENT=0, so the killed
process is the one doing the work) are started on claim, release, register, send
and heartbeat --force, and SIGKILLed after a random 0-400 ms — before, during or
after their fetch, object writes, push and reply. Two ways to die:

- `proc`:  only the gitcoord process dies; the git it started (a fetch or a push in
           flight) is orphaned and finishes or fails on its own — a crashed agent;
- `group`: its whole process group dies at once, git included — a killed terminal,
           container or tool timeout. The remote is a `git daemon`, so the server
           side lives on as a real server would.

Several kill loops run at once, each on its own clone and sessions. After every
kill, once nothing of the killed process is left running: no `*.lock` under any
.git (a git killed while it moved gitcoord's mirror ref may leave that ref's lock,
which the next command must clear once it is stale), no refs but branches,
remote-tracking refs and gitcoord's mirror of the tip (refs/gitcoord/remotes/...),
the user's work tree as it was, and the next command
works. At the end, over the whole history:
- every commit is a complete operation: `validate --range <root>..<tip>` judges
  each one as the server hook would, and each claim/release commit's tree holds
  exactly the claim that commit says it wrote;
- every command that reported success (it finished before its kill) has its
  commit on the branch — no phantom success;
- the claims on the branch are exactly what the replayed claim and release
  commits say.

`GITCOORD_CRASH_KILLS` sets the number of kills per loop (default 25; four loops: 100
kills). `GITCOORD_CRASH_SEED` replays a run (the seed is printed on failure).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import World, git, git_daemon, run, snapshot_worktree
from reliability import (
    BRANCH,
    REF,
    env_int,
    lock_files,
    show,
    stray_refs,
    tip,
    trailers,
)

from gitcoord.domain import kinds, yamlio
from gitcoord.domain.models import FORMAT
from gitcoord.store.remote import STALE_LOCK_SECONDS

KILLS_PER_LOOP = env_int("GITCOORD_CRASH_KILLS", 25)
LOOPS = 4


@dataclass
class Loop:
    clone: Path
    sessions: list[str]
    kill_group: bool
    seed: int
    kills: int = 0
    killed_mid_way: int = 0  # the kill came before the process had finished
    finished_ok: list[str] = field(default_factory=list)  # commits reported by survivors
    failures: list[str] = field(default_factory=list)


def command(rng: random.Random, session: str, n: int) -> list[str]:
    resource = f"r{rng.randrange(4)}"
    choice = rng.choice(["claim", "claim", "release", "register", "send", "heartbeat"])
    if choice == "claim":
        return ["claim", "task", resource, "--ttl", "1h"]
    if choice == "release":
        return ["release", "task", resource]
    if choice == "register":
        return ["register", "--role", f"role {n}", "--goal", "survive kill -9"]
    if choice == "send":
        return ["send", "broadcast", f"crash {n}", f"message {n} from {session}"]
    return ["heartbeat", "testing", "crash", f"kill-{n}", str(n % 101), "--force"]


def _gone(pgid: int, timeout: float = 60.0) -> bool:
    """Wait until no process of the group is left (orphaned git finishes on its own)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.02)
    return False


MIRROR = os.path.join("refs", "gitcoord", "remotes", "")


def stale_mirror_lock_cleared(clone: Path, locks: list[str], env: dict[str, str]) -> list[str]:
    """A git killed while it moved gitcoord's mirror of the tip leaves that ref's lock,
    which git never removes. gitcoord clears such a lock once it is older than any live
    git could hold it: age it past that, and the next command must clear it and work.
    Returns the locks still there."""
    old = time.time() - STALE_LOCK_SECONDS - 5
    for lk in locks:
        os.utime(lk, (old, old))
    argv = [sys.executable, "-m", "gitcoord", "-C", str(clone), "status", "--json"]
    done = subprocess.run(argv, capture_output=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    return lock_files(clone)


def run_loop(loop: Loop, remote: Path) -> None:
    """Every sixth command runs to its end (and must work: the next command after
    kills); the others are killed at a random point of the time such a command takes
    on this machine now, which the completed ones measure."""
    rng = random.Random(loop.seed)
    worktree = snapshot_worktree(loop.clone)
    env = {**os.environ, "GITCOORD_AGENT": "0"}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # speed only: reuse compiled modules
    took = [1.0]
    n = 0
    while loop.kills < KILLS_PER_LOOP:
        n += 1
        kill = n % 6 != 1
        session = rng.choice(loop.sessions)
        argv = [sys.executable, "-m", "gitcoord", "-C", str(loop.clone), "--session", session]
        argv += ["--timeout", "120", *command(rng, session, n), "--json"]
        start = time.monotonic()
        proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            start_new_session=True,  # its own process group: pgid == pid
        )
        if kill:
            typical = sorted(took)[len(took) // 2]
            time.sleep(rng.uniform(0.2, 1.1) * typical)
            try:
                if loop.kill_group:
                    os.killpg(proc.pid, signal.SIGKILL)
                else:
                    os.kill(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            loop.kills += 1
        out, err = proc.communicate(timeout=120)
        if not kill:
            took.append(time.monotonic() - start)
        if not _gone(proc.pid):
            loop.failures.append(f"#{n}: processes of group {proc.pid} still running")
            os.killpg(proc.pid, signal.SIGKILL)
        if proc.returncode == 0:  # it finished (before any kill): its word must hold
            loop.finished_ok.append(json.loads(out).get("commit") or "")
        elif proc.returncode == -signal.SIGKILL:
            loop.killed_mid_way += 1
        elif proc.returncode not in (3, 4):  # conflicts and refusals are answers too
            loop.failures.append(f"#{n}: {argv[-6:]} exit {proc.returncode}: {err}")
        for repo in (loop.clone, remote):
            locks = lock_files(repo)
            # The daemon's receive-pack is no process of the killed group: a push the kill
            # cut off may still be finishing on the server side. Give it a moment; a lock
            # it leaves behind is still one.
            settle = time.monotonic() + 10
            while repo == remote and locks and time.monotonic() < settle:
                time.sleep(0.05)
                locks = lock_files(repo)
            if repo == loop.clone and locks and all(MIRROR in lk for lk in locks):
                locks = stale_mirror_lock_cleared(loop.clone, locks, env)
            if locks:
                loop.failures.append(f"#{n}: lock files left: {locks}")
        stray = stray_refs(loop.clone)
        if stray:
            loop.failures.append(f"#{n}: stray refs {stray}")
        if snapshot_worktree(loop.clone) != worktree:
            loop.failures.append(f"#{n}: the work tree changed")


@pytest.fixture
def daemon_remote(world: World) -> Iterator[str]:
    with git_daemon(world.root) as base:
        yield f"{base}/{world.remote.name}"


@pytest.mark.slow
def test_kill_9_at_random_points_loses_nothing_and_leaves_nothing_behind(
    world: World, daemon_remote: str
) -> None:
    seed = int(os.environ.get("GITCOORD_CRASH_SEED") or random.randrange(1 << 30))
    loops: list[Loop] = []
    for i in range(LOOPS):
        # Half the loops push to the file system (`proc` kills only: killing a local
        # receive-pack would be killing the server), half to the daemon (`group` kills).
        group = i % 2 == 1
        url = daemon_remote if group else str(world.remote)
        dest = world.root / f"k{i}"
        git(world.root, "clone", "-q", url, str(dest))
        (dest / "work.txt").write_text("the user's own work, never touched\n")
        loops.append(Loop(dest, [f"k{i}a", f"k{i}b"], group, seed + i))
    assert run(loops[0].clone, "init", "--slots", "20").code == 0
    for loop in loops:
        for s in loop.sessions:
            r = run(loop.clone, "register", "--role", "r", "--goal", "g", session=s)
            assert r.code == 0, r.err

    threads = [threading.Thread(target=run_loop, args=(lp, world.remote)) for lp in loops]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    failures = [f for lp in loops for f in lp.failures]
    assert not failures, f"seed {seed}:\n" + "\n".join(failures[:20])
    kills = sum(lp.kills for lp in loops)
    assert kills == LOOPS * KILLS_PER_LOOP
    mid = sum(lp.killed_mid_way for lp in loops)
    print(f"\nkills survived: {kills}, {mid} of them mid-command (seed {seed})")
    assert mid >= kills // 4, "most kills came too late to test anything"

    # The next command works, everywhere, for everyone.
    for loop in loops:
        for s in loop.sessions:
            r = run(loop.clone, "claim", "task", f"after-{s}", "--json", session=s)
            assert r.code == 0, (s, r.out, r.err)

    check_history(world.remote, [c for lp in loops for c in lp.finished_ok], seed)


def check_history(remote: Path, reported: list[str], seed: int) -> None:
    history = trailers(remote)
    on_branch = {h["commit"] for h in history}
    phantoms = [c for c in reported if c and c not in on_branch]
    assert not phantoms, f"seed {seed}: success reported for commits not on the branch: {phantoms}"

    # Every commit, judged as the server's hook would judge it.
    root = history[0]["commit"]
    r = run(remote, "--local", "validate", "--range", f"{root}..{history[-1]['commit']}")
    assert r.code == 0, f"seed {seed}: {r.err}"
    assert run(remote, "--local", "validate").code == 0

    # Each claim/release commit wrote exactly the claim it says; replaying them gives
    # the claims on the branch.
    replay: dict[str, dict[str, object]] = {}
    for h in history:
        op, res = h.get("Gitcoord-Op"), h.get("Gitcoord-Resource")
        if op not in ("claim", "renew", "takeover", "release") or not res:
            continue
        type_, name = res.split("/", 1)
        doc = yamlio.load(show(remote, h["commit"], kinds.claim_path(type_, name, fmt=FORMAT)))
        assert doc["holder"] == h["Gitcoord-Session"], (h, doc)
        assert str(doc["generation"]) == h["Gitcoord-Generation"], (h, doc)
        assert (doc.get("released_at") is not None) == (op == "release"), (h, doc)
        replay[res] = {"holder": doc["holder"], "generation": doc["generation"]}
    st = run(remote, "--local", "status", "--json").json()
    now = {
        c["resource"]: {"holder": c["holder"], "generation": c["generation"]}
        for c in st["claims"]  # type: ignore[index]
    }
    assert now == replay, f"seed {seed}"
    assert git(remote, "rev-parse", BRANCH).strip() == tip(remote, REF)
