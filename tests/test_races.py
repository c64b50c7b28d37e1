"""Races between real processes on real git: first push wins, nobody is lost.

Every test here starts separate processes (never threads, never mocks) against
real repositories: a bare remote on the file system, a `git daemon` on loopback,
or one local repository with no remote. Processes of one race are all started
before any is waited for, so they genuinely overlap.

Two ways to start a process, both running the CLI's `main` with real git:
- cold (`race`): `python -m gitcoord ...`, exactly what a user runs;
- forked (`fork_race`): a child forked from this test process, which has
  already imported gitcoord, held at a gate until every child of the race
  exists, then released at once. Importing gitcoord costs ~0.5 s of CPU per
  cold process; forking skips that, which is what makes fifty 8-way rounds
  affordable on two cores, and the gate makes the race harsher than cold
  starts (which arrive spread over the import time).

What is asserted is counts, never timings: exactly one winner per contested
resource, every loser exits 3 naming the winner, exactly one commit per win on
the remote branch, no write lost when resources differ, no leftover lock files,
a clean `git fsck`, and the user's work tree untouched.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import (
    Result,
    World,
    clone_url,
    git,
    lock_files,
    run,
    run_proc,
    snapshot_worktree,
    spawn,
    wait_all,
)
from reliability import tip

import gitcoord.api.coordinator
import gitcoord.api.render
import gitcoord.domain.yamlio
from gitcoord.faces.cli import main as cli_main

# The CLI imports these lazily; loaded here so forked children do not pay for them.
_PRELOADED = (gitcoord.api.coordinator, gitcoord.api.render, gitcoord.domain.yamlio)

BRANCH = "gitcoord"
# GITCOORD_TEST_COLD_RACES=1 runs the repeated 8-way races with cold processes too
# (read at import: the hermetic fixture clears GITCOORD_* before each test).
COLD_RACES = os.environ.get("GITCOORD_TEST_COLD_RACES") == "1"
# Racers get a long deadline so that a busy machine cannot turn "slow" into exit 6:
# these tests count outcomes, and the default 30 s bound would be a timing assertion.
RACE_TIMEOUT = ("--timeout", "240")
PROC_TIMEOUT = 400  # per race: a hang fails the test instead of the suite


# --- helpers -------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def race_through_the_remote(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without turns, as sessions on different machines: every race here is decided by
    compare-and-swap alone (GITCOORD_TURN=none), never by the local flock."""
    monkeypatch.setenv("GITCOORD_TURN", "none")


@dataclass(frozen=True)
class Job:
    cwd: Path
    args: tuple[str, ...]
    session: str | None = None


def race(jobs: Sequence[Job]) -> list[Result]:
    """Start every job as its own process, then wait for all: results in job order."""
    procs = [spawn(j.cwd, *RACE_TIMEOUT, *j.args, session=j.session) for j in jobs]
    return wait_all(procs, PROC_TIMEOUT)


def fork_race(jobs: Sequence[Job]) -> list[Result]:
    """Like `race`, with forked children released together through a gate."""
    gate_r, gate_w = os.pipe()
    with tempfile.TemporaryDirectory(prefix="gitcoord-race-") as tmp:
        children: list[tuple[int, str, str]] = []
        try:
            for i, job in enumerate(jobs):
                out, err = os.path.join(tmp, f"{i}.out"), os.path.join(tmp, f"{i}.err")
                sys.stdout.flush()
                sys.stderr.flush()
                pid = os.fork()
                if pid == 0:  # pragma: no cover - the child never returns
                    _forked_child(gate_r, gate_w, job, out, err)
                children.append((pid, out, err))
        finally:
            os.close(gate_w)  # every child's read of the gate now sees EOF: go
            os.close(gate_r)
        deadline = time.monotonic() + PROC_TIMEOUT
        codes: dict[int, int] = {}
        while len(codes) < len(children):
            for pid, _, _ in children:
                if pid in codes:
                    continue
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    codes[pid] = os.waitstatus_to_exitcode(status)
            if len(codes) < len(children):
                if time.monotonic() > deadline:
                    for pid, _, _ in children:
                        if pid not in codes:
                            os.kill(pid, signal.SIGKILL)
                            os.waitpid(pid, 0)
                    raise AssertionError(f"race still running after {PROC_TIMEOUT}s")
                time.sleep(0.01)
        return [
            Result(codes[pid], Path(out).read_text(), Path(err).read_text())
            for pid, out, err in children
        ]


def _forked_child(gate_r: int, gate_w: int, job: Job, out: str, err: str) -> None:
    code = 1
    try:
        os.close(gate_w)
        for path, fd in ((out, 1), (err, 2)):
            f = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.dup2(f, fd)
            os.close(f)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False), encoding="utf-8")
        sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), encoding="utf-8")
        sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), encoding="utf-8")
        os.read(gate_r, 1)  # blocks until the parent has forked every child
        os.close(gate_r)
        argv = ["-C", str(job.cwd)]
        if job.session:
            argv += ["--session", job.session]
        code = cli_main([*argv, *RACE_TIMEOUT, *job.args])
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def describe(results: Sequence[Result], jobs: Sequence[Job] | None = None) -> str:
    lines = []
    for i, r in enumerate(results):
        who = f"{jobs[i].session} " if jobs else ""
        lines.append(f"  [{i}] {who}exit {r.code}: {(r.err or r.out).strip()[:300]}")
    return "\n".join(lines)


def subjects(repo: Path, ref: str = BRANCH) -> list[str]:
    """Commit subjects on the coordination branch of `repo`, oldest first."""
    return git(repo, "log", "--reverse", "--format=%s", ref).splitlines()


def status(clone: Path, *extra: str) -> dict:
    r = run(clone, *extra, "status", "--json")
    assert r.code == 0, r.err
    data = r.json()
    assert isinstance(data, dict)
    return data


def assert_valid(clone: Path, *extra: str) -> None:
    r = run(clone, *extra, "validate", "--json")
    assert r.code == 0, f"validate failed ({r.code}): {r.out}{r.err}"
    assert r.json() == {"valid": True, "problems": []}


def assert_fsck_clean(repo: Path) -> None:
    proc = subprocess.run(
        ["git", "fsck", "--full", "--strict", "--no-dangling"],
        cwd=repo,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, f"git fsck in {repo}: {proc.stdout}{proc.stderr}"
    noise = [
        ln
        for ln in (proc.stdout + proc.stderr).splitlines()
        if ln.strip() and not ln.startswith("notice: HEAD points to an unborn branch")
    ]
    assert noise == [], f"git fsck in {repo} reported: {noise}"


def git_dir(repo: Path) -> Path:
    return repo if (repo / "HEAD").is_file() and not (repo / ".git").exists() else repo / ".git"


def assert_no_locks(*repos: Path) -> None:
    for repo in repos:
        locks = lock_files(git_dir(repo))
        assert locks == [], f"leftover lock files in {repo}: {locks}"


def founded(world: World, clones: int, *, slots: int = 12) -> list[Path]:
    """A remote initialised with `slots` slots and `clones` fresh clones of it."""
    paths = [world.clone(f"c{i}") for i in range(1, clones + 1)]
    r = run(paths[0], "init", "--slots", str(slots))
    assert r.code == 0, r.err
    return paths


def register_all(pairs: Sequence[tuple[Path, str]]) -> None:
    """Register sessions one after the other (setup, not under test)."""
    for clone, sid in pairs:
        r = run(clone, "register", "--role", f"role of {sid}", "--goal", "race", session=sid)
        assert r.code == 0, r.err


def same_claim_rounds(
    clones: Sequence[Path],
    sessions: Sequence[str],
    rounds: int,
    launch: Callable[[Sequence[Job]], list[Result]] = race,
) -> dict[int, str]:
    """`rounds` independent races of every session for one fresh resource.

    Returns the winner of each round; fails with every bad round listed.
    """
    winners: dict[int, str] = {}
    bad: list[str] = []
    for rnd in range(rounds):
        resource = f"hot-{rnd}"
        pairs = zip(clones, sessions, strict=True)
        jobs = [Job(c, ("claim", "task", resource), s) for c, s in pairs]
        results = launch(jobs)
        codes = Counter(r.code for r in results)
        won = [jobs[i].session for i, r in enumerate(results) if r.code == 0]
        if codes != Counter({0: 1, 3: len(jobs) - 1}):
            bad.append(f"round {rnd}: exit codes {dict(codes)}\n{describe(results, jobs)}")
            continue
        winner = won[0]
        assert winner is not None
        winners[rnd] = winner
        for job, r in zip(jobs, results, strict=True):
            if r.code == 3 and f"task/{resource} is held by {winner} " not in r.err:
                bad.append(f"round {rnd}: loser {job.session} does not name {winner}: {r.err!r}")
    assert not bad, f"{len(bad)} bad round(s) of {rounds}:\n" + "\n".join(bad)
    return winners


def assert_one_commit_per_round(remote: Path, winners: dict[int, str]) -> None:
    subs = subjects(remote)
    for rnd, winner in winners.items():
        landed = [s for s in subs if s.startswith(f"claim task/hot-{rnd} by ")]
        assert landed == [f"claim task/hot-{rnd} by {winner}"], (rnd, landed)


def assert_claims_on_branch(clone: Path, expected: dict[str, str]) -> None:
    """Every resource in `expected` is claimed on the branch by the given holder."""
    claims = {c["resource"]: c for c in status(clone)["claims"]}
    missing = sorted(set(expected) - set(claims))
    assert not missing, f"{len(missing)} claim(s) lost: {missing}"
    wrong = {k: (claims[k]["holder"], v) for k, v in expected.items() if claims[k]["holder"] != v}
    assert not wrong, f"wrong holders (got, expected): {wrong}"
    for key in expected:
        assert claims[key]["generation"] == 1, claims[key]
        assert claims[key]["status"] == "live", claims[key]


def distinct_resources_race(
    clones: Sequence[Path], sessions: Sequence[str], per: int
) -> dict[str, str]:
    """Every session claims `per` resources of its own, all processes at once."""
    jobs = [
        Job(c, ("claim", "task", f"{s}-r{k}"), s)
        for c, s in zip(clones, sessions, strict=True)
        for k in range(per)
    ]
    results = race(jobs)
    codes = Counter(r.code for r in results)
    assert codes == Counter({0: len(jobs)}), f"exit codes {dict(codes)}\n{describe(results, jobs)}"
    return {f"task/{s}-r{k}": s for s in sessions for k in range(per)}


# --- 1. eight processes, one claim, fifty rounds --------------------------------------


@pytest.mark.slow
def test_same_claim_eight_way_race_has_exactly_one_winner_every_round(world: World) -> None:
    clones = founded(world, 8)
    sessions = [f"s{i}" for i in range(1, 9)]
    register_all(list(zip(clones, sessions, strict=True)))
    before = len(subjects(world.remote))

    launch = race if COLD_RACES else fork_race
    winners = same_claim_rounds(clones, sessions, rounds=50, launch=launch)

    assert len(winners) == 50
    assert_one_commit_per_round(world.remote, winners)
    # Nothing else landed: one commit per round, no duplicate, no stray retry.
    assert len(subjects(world.remote)) == before + 50
    assert_claims_on_branch(clones[-1], {f"task/hot-{r}": w for r, w in winners.items()})
    assert_valid(clones[0])
    assert_no_locks(world.remote, *clones)
    assert_fsck_clean(world.remote)


# --- 2. one session number, several sessions ------------------------------------------


def test_same_number_race_one_winner_others_get_free_numbers(world: World) -> None:
    clones = founded(world, 6)
    taken: set[int] = set()
    for rnd, number in enumerate((3, 5, 12)):
        sessions = [f"n{rnd}-{i}" for i in range(len(clones))]
        jobs = [
            Job(c, ("register", "--number", str(number), "--role", "r", "--goal", "g", "--json"), s)
            for c, s in zip(clones, sessions, strict=True)
        ]
        results = race(jobs)
        codes = Counter(r.code for r in results)
        assert codes == Counter({0: 1, 3: len(jobs) - 1}), f"round {rnd}\n{describe(results, jobs)}"
        winner = next(j.session for j, r in zip(jobs, results, strict=True) if r.code == 0)
        won = next(r for r in results if r.code == 0).json()
        assert isinstance(won, dict)
        assert won["session"]["id"] == winner
        assert won["session"]["number"] == number
        taken.add(number)
        free = [n for n in range(1, 13) if n not in taken]
        for job, r in zip(jobs, results, strict=True):
            if r.code != 3:
                continue
            doc = r.json()
            assert isinstance(doc, dict), r.out
            err = doc["error"]
            assert err["kind"] == "conflict", err
            assert err["code"] == 3, err
            assert err["number"] == number, err
            assert err["holder"] == winner, (job.session, err)
            assert err["free_numbers"] == free, (job.session, err)
            assert winner in err["message"], err

    data = status(clones[0])
    assert sorted(s["number"] for s in data["sessions"]) == [3, 5, 12]
    assert len([s for s in subjects(world.remote) if s.startswith("register ")]) == 3
    assert_valid(clones[0])


# --- 3. distinct resources: nothing lost ----------------------------------------------


@pytest.mark.slow
def test_distinct_resources_race_loses_nothing(world: World) -> None:
    clones = founded(world, 8)
    sessions = [f"d{i}" for i in range(1, 9)]
    register_all(list(zip(clones, sessions, strict=True)))
    before = len(subjects(world.remote))

    expected = distinct_resources_race(clones, sessions, per=2)

    assert_claims_on_branch(clones[0], expected)
    subs = subjects(world.remote)
    assert len(subs) == before + len(expected), subs[before:]
    assert sorted(subs[before:]) == sorted(f"claim {k} by {v}" for k, v in expected.items())
    assert_valid(clones[0])
    assert_no_locks(world.remote, *clones)


# --- 4. sessions sharing one clone ----------------------------------------------------


@pytest.mark.parametrize("mode", ["remote", "no-remote"])
def test_concurrent_init_creates_the_branch_once(world: World, mode: str) -> None:
    """Six `init`s at once (three clones, or one repository): all succeed, one creates.

    Several rounds on fresh repositories: released together through the gate, the
    racers usually build their commit within the same second, so racers in different
    clones build byte-identical init commits (same tree, no parent, same second).
    """
    bad = []
    for rnd in range(6):
        if mode == "remote":
            remote = world.root / f"remote{rnd}.git"
            git(world.root, "init", "-q", "--bare", str(remote))
            a, b, c = (world.root / f"{x}{rnd}" for x in "abc")
            for dest in (a, b, c):
                git(world.root, "clone", "-q", str(remote), str(dest))
            places, where = [a, b, c, a, b, c], remote
        else:
            a = b = where = world.local_repo(f"solo{rnd}")
            places = [a] * 6
        jobs = [Job(c, ("init", "--json")) for c in places]
        results = (race if rnd == 0 else fork_race)(jobs)  # one round of cold processes
        assert [r.code for r in results] == [0] * len(jobs), describe(results)
        docs = [r.json() for r in results]
        created = [d["created"] for d in docs]  # type: ignore[index]
        if created.count(True) != 1:
            bad.append(f"round {rnd}: created={created} commits={[d['commit'] for d in docs]}")  # type: ignore[index]
        assert subjects(where) == ["init coordination with 12 slots"]
        assert_no_locks(where, a, b)
        assert_valid(a)
    assert not bad, "more than one process says it created the branch:\n" + "\n".join(bad)


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["cold", "forked"])
def test_founding_setup_twelve_sessions_ten_in_one_clone(world: World, launcher: str) -> None:
    shared, other = founded(world, 2)
    sessions = [f"f{i:02d}" for i in range(1, 13)]
    places = [shared] * 10 + [other] * 2
    jobs = [
        Job(c, ("register", "--role", f"role {s}", "--goal", "found", "--json"), s)
        for c, s in zip(places, sessions, strict=True)
    ]
    results = (race if launcher == "cold" else fork_race)(jobs)
    assert [r.code for r in results] == [0] * 12, describe(results, jobs)
    numbers = {}
    for job, r in zip(jobs, results, strict=True):
        doc = r.json()
        assert isinstance(doc, dict)
        assert doc["session"]["id"] == job.session
        numbers[job.session] = doc["session"]["number"]
    assert sorted(numbers.values()) == list(range(1, 13)), numbers

    for clone in (shared, other):
        data = status(clone)
        assert {s["id"]: s["number"] for s in data["sessions"]} == numbers
        assert data["free_numbers"] == []
        assert_valid(clone)
    assert len([s for s in subjects(world.remote) if s.startswith("register ")]) == 12
    assert_no_locks(world.remote, shared, other)
    for repo in (world.remote, shared, other):
        assert_fsck_clean(repo)


@pytest.mark.parametrize("mode", ["no-remote", "--local"])
def test_local_only_ten_processes_one_repo_one_winner(world: World, mode: str) -> None:
    if mode == "no-remote":
        repo, extra = world.local_repo("solo"), ()
    else:
        repo, extra = world.clone("solo"), ("--local",)
    r = run(repo, *extra, "init")
    assert r.code == 0, r.err
    assert "(local)" in r.out
    sessions = [f"l{i}" for i in range(1, 11)]
    for sid in sessions:
        r = run(repo, *extra, "register", "--role", "r", "--goal", "g", session=sid)
        assert r.code == 0, r.err

    winners = {}
    for rnd in range(10):
        resource = f"hot-{rnd}"
        jobs = [Job(repo, (*extra, "claim", "task", resource), s) for s in sessions]
        results = fork_race(jobs)
        codes = Counter(r.code for r in results)
        assert codes == Counter({0: 1, 3: 9}), f"round {rnd}\n{describe(results, jobs)}"
        winner = next(j.session for j, r in zip(jobs, results, strict=True) if r.code == 0)
        winners[rnd] = winner
        for r in results:
            if r.code == 3:
                assert f"task/{resource} is held by {winner} " in r.err, r.err

    assert_one_commit_per_round(repo, winners)
    assert len(subjects(repo)) == 1 + len(sessions) + len(winners)  # init, registers, claims
    assert_claims_on_branch_local(repo, extra, winners)
    assert_valid(repo, *extra)
    assert_no_locks(repo)
    assert_fsck_clean(repo)
    # Local mode never talks to a remote.
    assert git(world.remote, "for-each-ref").strip() == ""


def assert_claims_on_branch_local(
    repo: Path, extra: tuple[str, ...], winners: dict[int, str]
) -> None:
    claims = {c["resource"]: c["holder"] for c in status(repo, *extra)["claims"]}
    assert claims == {f"task/hot-{r}": w for r, w in winners.items()}


# --- 5. the user's work tree is left alone --------------------------------------------


def tree_fingerprint(repo: Path) -> dict[str, str]:
    """Every file outside .git with a hash of its bytes, plus HEAD and the current branch."""
    files = {}
    for dirpath, dirnames, filenames in os.walk(repo):
        dirnames[:] = [d for d in dirnames if d != ".git"]
        for name in filenames:
            p = Path(dirpath, name)
            files[str(p.relative_to(repo))] = hashlib.sha256(p.read_bytes()).hexdigest()
    files[".git/HEAD"] = (repo / ".git" / "HEAD").read_text()
    files["HEAD commit"] = git(repo, "rev-parse", "HEAD").strip()
    files["refs/heads/main"] = git(repo, "rev-parse", "refs/heads/main").strip()
    files["stash"] = git(repo, "stash", "list")
    return files


@pytest.mark.parametrize("mode", ["remote", "--local"])
def test_commands_leave_dirty_worktree_index_and_head_untouched(world: World, mode: str) -> None:
    repo = world.clone("user")
    extra = ("--local",) if mode == "--local" else ()
    (repo / "tracked.txt").write_text("one\n")
    (repo / "staged.txt").write_text("base\n")
    git(repo, "add", "tracked.txt", "staged.txt")
    git(repo, "commit", "-q", "-m", "user work")
    (repo / "tracked.txt").write_text("one\nmodified, not staged\n")
    (repo / "staged.txt").write_text("base\nstaged change\n")
    git(repo, "add", "staged.txt")
    (repo / "staged.txt").write_text("base\nstaged change\nand more unstaged\n")
    (repo / "untracked.txt").write_text("mine\n")
    (repo / "sub").mkdir()
    (repo / "sub" / "notes.md").write_text("untracked in a folder\n")

    before = snapshot_worktree(repo)
    fingerprint = tree_fingerprint(repo)
    index_before = (repo / ".git" / "index").read_bytes()

    commands = [
        ("init",),
        ("register", "--role", "r", "--goal", "g"),
        ("claim", "task", "t1"),
        ("claim", "task", "t1"),  # renew
        ("status",),
        ("release", "task", "t1"),
        ("status", "--json"),
        ("validate",),
    ]
    for cmd in commands:
        # Real processes, started from inside the work tree (a subfolder) like an agent would.
        p = subprocess.run(
            [*spawn_argv(), *extra, "--session", "u1", *cmd],
            cwd=repo / "sub",
            capture_output=True,
            text=True,
            env=dict(os.environ),
            timeout=120,
            check=False,
        )
        assert p.returncode == 0, (cmd, p.stdout, p.stderr)
        changed = f"`gitcoord {' '.join(cmd)}` changed the work tree"
        assert snapshot_worktree(repo) == before, changed

    assert tree_fingerprint(repo) == fingerprint
    assert (repo / ".git" / "index").read_bytes() == index_before
    assert git(repo, "branch", "--show-current").strip() == "main"
    assert_no_locks(repo)
    if mode == "remote":
        assert "release task/t1 by u1" in subjects(world.remote)
    else:
        assert "release task/t1 by u1" in subjects(repo)


def spawn_argv() -> list[str]:
    return [sys.executable, "-m", "gitcoord"]


# --- 6. the same races over git:// ----------------------------------------------------


@pytest.mark.slow
def test_daemon_same_claim_race_and_distinct_resources(daemon_world: tuple[World, str]) -> None:
    world, url = daemon_world
    clones = [clone_url(world, url, f"g{i}") for i in range(1, 9)]
    for c in clones:
        assert git(c, "remote", "get-url", "origin").strip().startswith("git://")
    r = run(clones[0], "init")
    assert r.code == 0, r.err
    sessions = [f"g{i}" for i in range(1, 9)]
    register_all(list(zip(clones, sessions, strict=True)))
    before = len(subjects(world.remote))

    winners = same_claim_rounds(
        clones, sessions, rounds=10, launch=race if COLD_RACES else fork_race
    )
    assert len(winners) == 10
    assert_one_commit_per_round(world.remote, winners)

    expected = distinct_resources_race(clones, sessions, per=2)
    expected.update({f"task/hot-{r}": w for r, w in winners.items()})
    assert_claims_on_branch(clones[3], expected)
    assert len(subjects(world.remote)) == before + len(expected)
    assert_valid(clones[0])
    assert_no_locks(world.remote, *clones)
    assert_fsck_clean(world.remote)


# --- a push cut off by the timeout may still land --------------------------------------


def test_push_cut_off_by_timeout_that_lands_is_not_reported_as_nothing_written(
    world: World,
) -> None:
    """Found by the daemon race on a loaded machine: two claims whose push was killed
    at the 30 s deadline ("timed out ... trying to push to origin", exit 6, which the
    README defines as "nothing changed") were on the remote branch afterwards.

    Made deterministic here: the remote's pre-receive hook holds the push until the
    test lets it go, so the client's deadline kills `git push` while receive-pack
    (its own process on the remote side) goes on and updates the branch.
    """
    a = world.clone("a")
    assert run(a, "init").code == 0
    assert run(a, "register", "--role", "r", "--goal", "g", session="s1").code == 0
    entered, release = world.root / "hook-entered", world.root / "hook-release"
    hook = world.remote / "hooks" / "pre-receive"
    hook.write_text(
        "#!/bin/sh\n"
        "cat >/dev/null\n"
        f"touch '{entered}'\n"
        "i=0\n"
        f"while [ ! -e '{release}' ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done\n"
        "exit 0\n"
    )
    hook.chmod(0o755)
    try:
        r = run_proc(a, "--timeout", "5", "claim", "task", "slow", "--json", session="s1")
    finally:
        release.touch()
    if not entered.exists():
        pytest.skip(f"the push never reached the remote within the timeout: {r.out}{r.err}")
    landed = None
    for _ in range(600):  # receive-pack finishes on its own once released
        log = git(world.remote, "log", "--format=%H %s", BRANCH)
        landed = next((ln.split()[0] for ln in log.splitlines() if "claim task/slow" in ln), None)
        if landed:
            break
        time.sleep(0.05)
    assert landed, "precondition: receive-pack should complete after the client is gone"
    assert_no_locks(world.remote, a)
    if r.code == 0:
        assert r.json()["commit"] == landed  # type: ignore[index]
        return
    # Not knowing is fine; saying "nothing changed" (exit 6's documented meaning) is not:
    # the error must at least name the commit that may have landed.
    assert landed[:10] in r.out, (
        f"exit {r.code} for a claim that landed as {landed[:10]}; the error does not say "
        f"the write may have happened:\n{r.out}{r.err}"
    )


# --- a push the branch moved under, refused by the hook before it judges -----------------


def test_a_push_the_branch_moved_under_is_refused_before_judging_and_goes_again(
    world: World,
) -> None:
    """The server hook refuses, before judging a single commit, a push whose expected tip
    is no longer the branch's (git would refuse it at the ref update anyway, but only
    after the hook): in one line the pusher reads as a lost race, so it re-decides on the
    new tip and lands, instead of reporting the change as invalid.

    Made deterministic with a wrapper around the installed hook: the first push to reach
    it (clone b's) is held there until another clone's push has landed."""
    a, b = world.clone("a"), world.clone("b")
    assert run(a, "init").code == 0
    assert run(a, "register", "--role", "r", "--goal", "g", session="s1").code == 0
    assert run(b, "register", "--role", "r", "--goal", "g", session="s2").code == 0
    assert run(world.root, "hooks", "install", "--server", str(world.remote)).code == 0
    hooks = world.remote / "hooks"
    (hooks / "pre-receive").rename(hooks / "pre-receive.gitcoord")
    hold, entered, release = (world.root / n for n in ("hold", "entered", "release"))
    said = world.root / "hook-said"
    (hooks / "pre-receive").write_text(
        "#!/bin/sh\n"
        'in="$(cat)"\n'
        f"if mkdir '{hold}' 2>/dev/null; then\n"
        f"  touch '{entered}'; i=0\n"
        f"  while [ ! -e '{release}' ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done\n"
        "fi\n"
        f'printf "%s\\n" "$in" | "$(dirname "$0")/pre-receive.gitcoord" 2>>\'{said}\'\n'
        "code=$?\n"
        f"cat '{said}' >&2\n"
        "exit $code\n"
    )
    (hooks / "pre-receive").chmod(0o755)
    slow = spawn(b, "claim", "task", "tb", "--json", session="s2")
    try:
        for _ in range(600):
            if entered.exists() or slow.poll() is not None:
                break
            time.sleep(0.05)
        assert entered.exists(), "precondition: b's push should reach the hook"
        first = run(a, "claim", "task", "ta", "--json", session="s1")  # lands meanwhile
        assert first.code == 0, first.err
    finally:
        release.touch()
    (got,) = wait_all([slow], 120)
    assert got.code == 0, got.err
    assert got.json()["attempts"] >= 2  # type: ignore[index]
    assert "stale push:" in said.read_text()  # refused as stale, nothing judged
    assert "rejected" not in got.err
    claims = run(a, "status", "--json").json()["claims"]  # type: ignore[index]
    assert {(c["name"], c["holder"]) for c in claims} == {("ta", "s1"), ("tb", "s2")}
    assert run(a, "validate").code == 0


def test_only_the_hooks_own_stale_line_reads_as_a_lost_race() -> None:
    """Text a refused commit carries (a path, a session's goal) may say anything: only
    the hook's one line, alone, makes a refusal a lost race."""
    from gitcoord.store.remote import _stale_hook

    line = "remote: gitcoord: stale push: refs/heads/gitcoord is at 1234567890, not at 0"
    assert _stale_hook(f"{line}\nTo git://x\n")
    assert not _stale_hook(f"remote: gitcoord: push rejected by gitcoord:\n{line}\n")
    assert not _stale_hook("remote: gitcoord: push rejected: goal 'gitcoord: stale push: x'\n")
    assert not _stale_hook("remote: stale push: refs/heads/gitcoord\n")


# --- two clones building the same commit ----------------------------------------------


def test_identical_commit_pushed_first_by_another_clone_is_not_a_second_win(
    world: World,
) -> None:
    """Found by the concurrent-init race: two `init`s in different clones within one
    second build byte-identical commits (same tree, no parent, same timestamp, no
    session), so both push the same object id. The second push finds the branch
    already at that commit and git reports it `=` (up to date) — before it ever checks
    the lease — and both processes report `created: true`.

    Made deterministic with the remote-side programs each clone runs (config
    `remote.origin.uploadpack` / `receivepack`): clone b's fetch finishes first; clone
    a's push waits for it; b's push waits until a's commit is on the remote.
    """
    a, b = world.clone("a"), world.clone("b")
    fetched = world.root / "b-fetched"
    wrappers = world.root / "wrappers"
    wrappers.mkdir()

    def wrapper(name: str, body: str) -> str:
        path = wrappers / name
        path.write_text("#!/bin/sh\n" + body)
        path.chmod(0o755)
        return str(path)

    wait = "i=0; while ! {cond} && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done\n"
    b_upload = wrapper("b-upload", f"git upload-pack \"$@\"; rc=$?; touch '{fetched}'; exit $rc\n")
    a_receive = wrapper(
        "a-receive", wait.format(cond=f"[ -e '{fetched}' ]") + 'exec git receive-pack "$@"\n'
    )
    landed = f"git --git-dir='{world.remote}' rev-parse -q --verify refs/heads/{BRANCH} >/dev/null"
    b_receive = wrapper("b-receive", wait.format(cond=landed) + 'exec git receive-pack "$@"\n')
    git(a, "config", "remote.origin.receivepack", a_receive)
    git(b, "config", "remote.origin.uploadpack", b_upload)
    git(b, "config", "remote.origin.receivepack", b_receive)

    while time.time() % 1 > 0.2:  # start early in a second: both commits get one timestamp
        time.sleep(0.01)
    ra, rb = fork_race([Job(a, ("init", "--json")), Job(b, ("init", "--json"))])
    assert (ra.code, rb.code) == (0, 0), describe([ra, rb])
    assert fetched.exists()
    assert subjects(world.remote) == ["init coordination with 12 slots"]
    tip = git(world.remote, "rev-parse", BRANCH).strip()
    da, db = ra.json(), rb.json()
    assert isinstance(da, dict) and isinstance(db, dict)
    assert da["created"] is True and da["commit"] == tip, da  # a's push landed first
    # b's push carried the same bytes but changed nothing: b did not create the branch.
    assert db["created"] is False, (
        f"both processes say they created the branch (commit {tip[:10]}): b's push was "
        f"answered '= [up to date]' and counted as a win\n{rb.out}"
    )
    assert_no_locks(world.remote, a, b)


# --- the server judges pushes to the branch one at a time ---------------------------------


def test_pushes_racing_from_one_tip_are_judged_one_at_a_time_and_the_rest_refused_unjudged(
    world: World,
) -> None:
    """Two pushes from the same tip both reach the server's hook before either moves the
    ref. Judged side by side, the server would verify both and git would then refuse
    one under the ref's lock. In turns (`turns.judging`), the first is judged and lands,
    and the second, when its turn comes, is refused at once as a lost race, nothing
    judged; its client goes round again and lands too.

    Deterministic: the hook holds each push until both are there, then lets them in
    together."""
    a, b = world.clone("a"), world.clone("b")
    assert run(a, "init").code == 0
    assert run(a, "register", "--role", "r", "--goal", "g", session="s1").code == 0
    assert run(b, "register", "--role", "r", "--goal", "g", session="s2").code == 0
    assert run(world.root, "hooks", "install", "--server", str(world.remote)).code == 0
    for clone in (a, b):  # both know the tip: both push from it
        assert run(clone, "status").code == 0
    mirror = "refs/gitcoord/remotes/origin/gitcoord"
    assert tip(a, mirror) == tip(b, mirror) == tip(world.remote)
    entered, said = world.root / "entered", world.root / "hook-said"
    entered.mkdir()
    # In place of the installed shim: gitcoord's hook in this interpreter, imported
    # first, so that the two start judging together (not a Python start-up apart).
    (world.remote / "hooks" / "pre-receive").write_text(
        f"#!{sys.executable}\n"
        "import contextlib, io, os, sys, time\n"
        "from gitcoord.faces.cli import main\n"
        "import gitcoord.faces.githooks, gitcoord.audit.verify, gitcoord.api.coordinator\n"
        f"entered = {str(entered)!r}\n"
        "open(os.path.join(entered, str(os.getpid())), 'w').close()\n"
        "for _ in range(5000):\n"
        "    if len(os.listdir(entered)) >= 2:\n"
        "        break\n"
        "    time.sleep(0.002)\n"
        "err = io.StringIO()\n"
        "with contextlib.redirect_stderr(err):\n"
        "    code = main(['hooks', 'run', 'pre-receive'])\n"
        f"with open({str(said)!r}, 'a') as fh:\n"
        "    fh.write(err.getvalue())\n"
        "sys.stderr.write(err.getvalue())\n"
        "sys.exit(code)\n"
    )
    procs = [
        spawn(a, "claim", "task", "ta", "--json", session="s1"),
        spawn(b, "claim", "task", "tb", "--json", session="s2"),
    ]
    got = wait_all(procs, 120)
    assert len(list(entered.iterdir())) >= 2, "precondition: both pushes at the hook"
    assert all(r.code == 0 for r in got), [r.err for r in got]
    attempts = sorted(r.json()["attempts"] for r in got)  # type: ignore[index]
    assert attempts[0] == 1 and attempts[1] >= 2, attempts
    text = said.read_text()
    assert text.count("stale push:") == 1, text  # the loser: refused unjudged, once
    for r in got:
        assert "cannot lock ref" not in r.err and "rejected" not in r.err, r.err
    claims = run(a, "status", "--json").json()["claims"]  # type: ignore[index]
    assert {(c["name"], c["holder"]) for c in claims} == {("ta", "s1"), ("tb", "s2")}
    assert run(a, "validate").code == 0


def test_a_push_from_a_tip_an_accepted_push_is_leaving_waits_for_it_to_land(
    world: World,
) -> None:
    """Git moves the ref a moment after the hook accepts a push. The next push judged,
    from the same tip, finds the ref not yet moved: it waits for the accepted one to
    land (then refused as stale, unjudged), and is judged as usual if it never does."""
    import threading

    from gitcoord.faces.githooks import run_pre_receive
    from gitcoord.store.turns import judge_files

    a = world.clone("a")
    assert run(a, "init").code == 0
    assert run(a, "register", "--role", "r", "--goal", "g", session="s1").code == 0
    ref = "refs/heads/gitcoord"
    base = tip(world.remote)
    assert base is not None
    assert run(a, "claim", "task", "x", session="s1").code == 0
    ours = tip(world.remote)
    assert run(a, "claim", "task", "y", session="s1").code == 0
    theirs = tip(world.remote)  # a commit on `ours`: the "accepted" push's
    assert ours is not None and theirs is not None
    git(world.remote, "update-ref", ref, base)  # the branch back at the tip both left
    _, record = judge_files(str(world.remote), ref)
    os.makedirs(os.path.dirname(record), exist_ok=True)
    Path(record).write_text(f"{base} {theirs}\n")

    # The accepted push lands 0.2 s into the wait: this one is refused, unjudged.
    mover = threading.Timer(0.2, lambda: git(world.remote, "update-ref", ref, theirs, base))
    mover.start()
    said = run_pre_receive(str(world.remote), [f"{base} {ours} {ref}"])
    mover.join()
    assert len(said) == 1 and said[0].startswith("stale push:"), said
    assert tip(world.remote) == theirs

    # It never lands (refused under the ref's lock, say): after the wait, judged as usual.
    git(world.remote, "update-ref", ref, base)
    assert run_pre_receive(str(world.remote), [f"{base} {ours} {ref}"]) == []
    # ... and accepted, it is what the next one judged from that tip waits for.
    assert Path(record).read_text().split() == [base, ours]


def test_a_push_that_cannot_have_the_judging_turn_is_judged_without_it(tmp_path: Path) -> None:
    """The turn only saves work: held by another judge past the wait, a push goes on
    without it — and knows no accepted push to wait for, and records none."""
    import fcntl

    from gitcoord.store.turns import judge_files, judging

    lock, record = judge_files(str(tmp_path), "refs/heads/gitcoord")
    os.makedirs(os.path.dirname(lock))
    Path(record).write_text(f"{'a' * 40} {'b' * 40}\n")
    with judging(str(tmp_path), "refs/heads/gitcoord", wait=5) as free:
        assert free.held and free.accepted == ("a" * 40, "b" * 40)
    with open(lock, "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        started = time.monotonic()
        with judging(str(tmp_path), "refs/heads/gitcoord", wait=0.3) as turn:
            assert not turn.held and turn.accepted is None
            # it waited for the turn, and no longer than it was told (a generous bound:
            # the wait's end, not a speed)
            assert 0.3 <= time.monotonic() - started < 10
            turn.accept("c" * 40, "d" * 40)  # not held: the record stays the last judge's
    assert Path(record).read_text().split() == ["a" * 40, "b" * 40]


def test_the_hook_keeps_what_it_parsed_for_the_next_push(world: World) -> None:
    """The server's hook writes its parse cache (in the repository's gitcoord/ folder),
    so that the next push parses only what it changed."""
    from gitcoord.faces.githooks import run_pre_receive

    a = world.clone("a")
    assert run(a, "init").code == 0
    assert run(a, "register", "--role", "r", "--goal", "g", session="s1").code == 0
    base = tip(world.remote)
    assert run(a, "claim", "task", "x", session="s1").code == 0
    new = tip(world.remote)
    assert base is not None and new is not None
    git(world.remote, "update-ref", "refs/heads/gitcoord", base)
    parsed = world.remote / "gitcoord" / "parsed"
    assert not parsed.exists()
    assert run_pre_receive(str(world.remote), [f"{base} {new} refs/heads/gitcoord"]) == []
    (cache,) = parsed.iterdir()
    entries = json.loads(cache.read_text())["entries"]
    files = git(world.remote, "ls-tree", "-r", new).split("\n")
    blobs = {ln.split()[2] for ln in files if ln.endswith(".yaml") and "coordination/" in ln}
    assert blobs and blobs <= set(entries)
