"""Section 4: contention — aggregate throughput of N concurrent sessions, loser latency,
and the naive floor's curve at the same concurrency.

Four curves, each level on a fresh bare remote seeded with the same state (16 sessions
registered, each with its own claim file, released), each level running for a fixed
window after every process is ready (throughput counts the operations completed in the
window after its first quarter, at most 2 s: every session starting at the same instant
is a burst no real deployment sees):
  - gitcoord, separate clones: each session is its own process with one long-lived
    `Coordinator` in a clone of its own; as gitcoord does by default (turns are per
    clone), they race through the remote as separate machines would, and compare-and-swap
    and the backoff decide;
  - gitcoord, separate clones taking turns: the same with GITCOORD_TURN=machine, so this
    user's clones of the remote take turns under one flock keyed by the remote's URL;
  - gitcoord, one shared clone: the same processes, all in one clone (the founding
    setup);
  - the naive floor: the raw git pipeline of section 1 in a process per writer with a
    clone of its own, retrying a rejected push at once with no backoff.
Session k alternates `claim task sk` / `release task sk` (distinct resources; each op is
one commit, and the state keeps its size); naive writer k rewrites its own file.
After the window, every process of the gitcoord curves races for one fresh resource
(3 rounds): the losers' time to exit 3 (`ConflictError`) is the loser latency, and each
round must have exactly one winner. At the end every commit reported as a success must be
on the remote branch (lost updates: must be 0). An experiment at 8 and 16 sessions patches
the store back to its behaviour before commit bb78e6a (see `previous_store`).
"""

from __future__ import annotations

import multiprocessing as mp
import time
from datetime import datetime, timedelta, timezone
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from . import common

LEVELS = (1, 2, 4, 8, 16)
MAX_SESSIONS = max(LEVELS)
SESSIONS = [f"s{k:02d}" for k in range(1, MAX_SESSIONS + 1)]
OWN = "gitcoord, separate clones (racing, the default)"
TURNS = "gitcoord, separate clones taking turns (GITCOORD_TURN=machine)"
SHARED = "gitcoord, one shared clone"
NAIVE = "naive floor"
PREVIOUS = "separate clones, one machine, previous store (per-clone turn, 15 ms backoff)"
EXPERIMENTS = (PREVIOUS,)

Record = tuple[float, float, str | None, int, str]  # start, end, commit, attempts, error


def go(conns: list[Connection], duration: float, who: str) -> tuple[float, float]:
    """Once every worker on `conns` said "ready", tell them all the same window to run
    in, starting a moment from now: returns its start and end (wall clock)."""
    for c in conns:
        if c.recv() != "ready":
            raise RuntimeError(f"{who} failed to start")
    start = time.time() + 0.3
    end = start + duration
    for c in conns:
        c.send(("run", start, end))
    return start, end


def _sleep_until(t: float) -> None:
    while (left := t - time.time()) > 0:
        time.sleep(min(left, 0.05))


def alternate(
    c: Any, sid: str, start: float, end: float, held: bool = False
) -> tuple[list[Record], bool]:
    """From `start` to `end`, claim and release task/<sid> by turns as fast as they land:
    each operation's record, and whether the task is held at the end."""
    from gitcoord import GitcoordError

    recs: list[Record] = []
    _sleep_until(start)
    while time.time() < end:
        t0 = time.time()
        try:
            out = c.release("task", sid) if held else c.claim("task", sid)
            held = not held
            recs.append((t0, time.time(), out.commit, out.attempts, ""))
        except GitcoordError as exc:
            recs.append((t0, time.time(), None, 0, f"exit {exc.code}: {exc.message}"))
    return recs, held


def previous_store(store: Any) -> None:
    """EXPERIMENT: patch one `Store` back to how it behaved before commit bb78e6a, to
    measure in the same run what that change bought: the transaction's turn taken per
    clone (not per remote URL for the whole machine), and a lost round followed by full
    jitter over 15 ms x 2^attempt (at most 1 s) instead of over the round's own length."""
    import random

    store.remote_url = None  # no URL: store.turns.local_turn falls back to the clone's .git

    def sleep(attempt: int, deadline: float, waited: float = 0.0) -> None:
        delay = random.uniform(0, min(1.0, 0.015 * 2 ** min(attempt, 8)))
        time.sleep(max(0.0, min(delay, deadline - time.monotonic())))

    store.trees.backoff.sleep = sleep


def _session_proc(
    conn: Connection, clone: str, sid: str, experiment: str = "", turn: str = ""
) -> None:
    """One gitcoord session: a long-lived Coordinator, driven over `conn`. `turn`: the
    GITCOORD_TURN it runs with (empty: gitcoord's default)."""
    import os

    if turn:
        os.environ["GITCOORD_TURN"] = turn
    from gitcoord import Coordinator, GitcoordError
    from gitcoord.errors import ConflictError

    c = Coordinator(clone, session=sid)
    if experiment == PREVIOUS:
        previous_store(c.store)
    phases = _time_phases(c.store)
    c.snapshot()  # warm: first fetch, cat-file started
    conn.send("ready")
    held = False
    while True:
        cmd = conn.recv()
        if cmd[0] == "stop":
            break
        if cmd[0] == "run":
            _, start, end = cmd
            for spent in phases.values():
                spent.clear()
            recs, held = alternate(c, sid, start, end, held)
            conn.send({"recs": recs, "phases": phases})
        elif cmd[0] == "race":
            _, start, name = cmd
            _sleep_until(start)
            t0 = time.perf_counter()
            try:
                out = c.claim("task", name)
                conn.send(("won", time.perf_counter() - t0, out.commit, out.attempts))
            except ConflictError:
                conn.send(("lost", time.perf_counter() - t0, None, 0))
            except GitcoordError as exc:
                conn.send(("error", time.perf_counter() - t0, None, f"exit {exc.code}: {exc}"))
    c.close()


def _time_phases(store: Any) -> dict[str, list[float]]:
    """Time the store's steps in this session process (instance attributes and this
    process's copy of the module: nothing outside the benchmark changes)."""
    import gitcoord.store.turns

    phases: dict[str, list[float]] = {"turn wait": [], "fetch": [], "load": [], "push": []}

    def timed(name: str, fn: Any) -> Any:
        def run(*a: Any, **kw: Any) -> Any:
            t = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                phases[name].append(time.perf_counter() - t)

        return run

    gitcoord.store.turns._turn = timed("turn wait", gitcoord.store.turns._turn)
    store.trees.upstream.fetch = timed("fetch", store.trees.upstream.fetch)
    store.load = timed("load", store.load)
    store.trees.upstream.swap = timed("push", store.trees.upstream.swap)
    return phases


def _naive_proc(conn: Connection, clone: str, k: int, env: dict[str, str]) -> None:
    """One naive writer: the raw pipeline, a rejected push retried at once."""
    import subprocess

    def g(*args: str, input: bytes | None = None, extra: dict[str, str] | None = None) -> str:
        return subprocess.run(
            ["git", *args],
            cwd=clone,
            env={**env, **(extra or {})},
            input=input,
            capture_output=True,
            check=True,
        ).stdout.decode()

    index = {"GIT_INDEX_FILE": str(Path(clone) / ".git" / "bench-index")}
    conn.send("ready")
    cmd = conn.recv()
    _, start, end = cmd
    recs: list[Record] = []
    _sleep_until(start)
    i = 0
    while time.time() < end:
        i += 1
        t0 = time.time()
        attempts = 0
        while True:
            attempts += 1
            g("fetch", "-q", "origin", "+refs/heads/gitcoord:refs/bench/tip")
            tip = g("rev-parse", "refs/bench/tip").strip()
            g("read-tree", tip, extra=index)
            blob = g("hash-object", "-w", "--stdin", input=f"writer: {k}\nn: {i}\n".encode())
            g(
                "update-index",
                "--add",
                "--cacheinfo",
                f"100644,{blob.strip()},naive/w{k}.yaml",
                extra=index,
            )
            tree = g("write-tree", extra=index).strip()
            commit = g("commit-tree", tree, "-p", tip, "-m", f"naive {k} {i}").strip()
            push = subprocess.run(
                [
                    "git",
                    "push",
                    "-q",
                    f"--force-with-lease=refs/heads/gitcoord:{tip}",
                    "origin",
                    f"{commit}:refs/heads/gitcoord",
                ],
                cwd=clone,
                env=env,
                capture_output=True,
                check=False,
            )
            if push.returncode == 0:
                recs.append((t0, time.time(), commit, attempts, ""))
                break
            if time.time() > end:  # the window is over: abandon the op (no lease to honour)
                recs.append((t0, time.time(), None, attempts, "gave up"))
                break
    conn.send(recs)
    cmd = conn.recv()


def _seed(root: Path, env: dict[str, str]) -> Path:
    remote = common.bare_remote(root / "remote.git", env)
    hist = common.FastHistory()
    when = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=5)
    common.setup_sessions(
        hist, SESSIONS, when, slots=32, claims=[f"task/{sid}" for sid in SESSIONS]
    )
    hist.raw(
        "naive writers' files",
        when,
        {f"naive/w{k}.yaml": b"writer: %d\n" % k for k in range(MAX_SESSIONS)},
    )
    hist.write(remote, env)
    return remote


def _level(
    tmp: Path, env: dict[str, str], curve: str, n: int, duration: float, rounds: int
) -> dict[str, Any]:
    tag = {OWN: "own", TURNS: "turns", SHARED: "shared", NAIVE: "naive", PREVIOUS: "previous"}
    root = tmp / f"contention-{tag[curve]}-{n}"
    root.mkdir()
    remote = _seed(root, env)
    url = f"file://{remote}"
    ctx = mp.get_context("fork")
    procs, conns = [], []
    shared = common.clone(url, root / "shared", env) if curve == SHARED else None
    experiment = curve if curve in EXPERIMENTS else ""
    for k in range(n):
        mine = shared or common.clone(url, root / f"clone{k}", env)
        parent, child = ctx.Pipe()
        if curve == NAIVE:
            p = ctx.Process(target=_naive_proc, args=(child, str(mine), k, env))
        else:
            turn = "machine" if curve == TURNS else ""
            p = ctx.Process(
                target=_session_proc, args=(child, str(mine), SESSIONS[k], experiment, turn)
            )
        p.start()
        procs.append(p)
        conns.append(parent)
    start, end = go(conns, duration, "a contention worker")
    recs: list[Record] = []
    phases: dict[str, list[float]] = {}
    for c in conns:
        got = c.recv()
        if isinstance(got, dict):  # a gitcoord session: its records and its steps' times
            recs += got["recs"]
            for name, spent in got["phases"].items():
                phases.setdefault(name, []).extend(spent)
        else:
            recs += got
    races: list[tuple[str, float, str | None, Any]] = []
    winners_ok = True
    if curve != NAIVE and n > 1:
        for r in range(rounds):
            at = time.time() + 0.3
            for c in conns:
                c.send(("race", at, f"hot-{r}"))
            got = [c.recv() for c in conns]
            races += got
            winners_ok &= sum(1 for g in got if g[0] == "won") == 1
    for c in conns:
        c.send(("stop",))
    for p in procs:
        p.join(timeout=60)
    # Steady state: completions after the first `warm` seconds (all sessions start at
    # once, a burst that no real deployment sees), up to the end of the window.
    warm = min(2.0, duration / 4)
    done = [r for r in recs if r[2] is not None and start + warm <= r[1] <= end]
    reported = {r[2] for r in recs if r[2]} | {g[2] for g in races if g[2]}
    on_branch = common.branch_commits(remote, env)
    errors = [r[4] for r in recs if r[4] and r[4] != "gave up"]
    errors += [str(g[3]) for g in races if g[0] == "error"]
    attempts = [r[3] for r in recs if r[2] is not None]
    return {
        "sessions": n,
        "ops": len(done),
        "throughput": len(done) / (duration - warm),
        "latency": [r[1] - r[0] for r in done],
        "retries": sum(a - 1 for a in attempts),
        "max_attempts": max(attempts, default=0),
        "lost": len(reported - on_branch),
        "reported": len(reported),
        "unfinished": sum(1 for r in recs if r[4] == "gave up"),
        "errors": errors[:5],
        "error_count": len(errors),
        "losers": [g[1] for g in races if g[0] == "lost"],
        "winners": [g[1] for g in races if g[0] == "won"],
        "one_winner_each_round": winners_ok,
        "phases": {name: common.median(spent) for name, spent in phases.items() if spent},
    }


def run(
    tmp: Path,
    env: dict[str, str],
    duration: float,
    rounds: int,
    levels: tuple[int, ...] = LEVELS,
    experiment_levels: tuple[int, ...] = (),
) -> dict[str, Any]:
    results: dict[str, Any] = {"duration": duration, "rounds": rounds, "curves": {}}
    curves = (OWN, TURNS, SHARED, NAIVE, *(EXPERIMENTS if experiment_levels else ()))
    for curve in curves:
        results["curves"][curve] = {}
    for n in levels:  # curves interleaved per level, so load drift hits all of them alike
        for curve in curves:
            if curve not in EXPERIMENTS or n in experiment_levels:
                results["curves"][curve][n] = _level(tmp, env, curve, n, duration, rounds)
    return results
