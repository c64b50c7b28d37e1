"""Section 6: a simulated workday of the founding plan, in compressed time.

For N sessions (12, 50, 200) a seeded schedule, the same per session at every size:
  - a heartbeat every 10 simulated minutes (first one at a random offset), its progress
    changing each time (so each is due and pushed);
  - the inbox read every 20 minutes (a push only when something new arrived);
  - one task at a time: claim a random task of a pool of 2N (on exit 3, up to two more
    tries), hold it 30-90 minutes, release it, rest 1-10 minutes, claim the next;
  - a direct message to a random session about once an hour; session 1, the
    orchestrator, also broadcasts once an hour.
Sessions are lightweight in-process `Coordinator`s — one per session, long-lived — in a
few worker processes; PER_MACHINE (4) sessions share a clone, each clone standing for a
machine of its own: within a machine transactions take turns (the per-clone turn), across
machines they race through the remote (12 sessions: 3 machines; 50: 13; 200: 50). A
worker hosts the sessions of one or more machines and runs their events in time order.
Every process follows one scaled clock (`common.SimClock`, installed as gitcoord's clock),
so leases, heartbeat pacing and commit times are all simulated time; the scale is chosen
from a calibration of this machine so that the estimated demand stays near 30% of what the
cores can do, and the window is as long as the time budget allows (at least `min_minutes`:
60 in a full run, so that every session's 10-minute heartbeat comes round six times).
Each worker is also its machines' long-lived host (what the warm agent, the MCP server or
the background flusher is on a real machine): a due heartbeat is held for a ride
(`Coordinator.on_hold`), goes in the next push of any session of its clone, and the
worker flushes what is still held when its time comes (`Coordinator.flush_held`), in
simulated time like everything else. `ride=False` runs the day as before riding
(GITCOORD_RIDE=0: every due beat pushes at once), for the before/after.
Reported: pushes per simulated minute — pushes counted as they are made (a push that
carries riders is one push), landed and refused apart — by source (SOURCES: claims and
releases, heartbeats, messages, read marks; a flush of held beats counts as heartbeats),
latency, retries (`Outcome.attempts`), refused claims, lost updates (every commit
reported, riders' included, must be on the branch) and double grants
(`Coordinator.metrics()['work_collisions']`), plus how far events ran behind schedule.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import random
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from . import common

PHASES = ("research", "implement", "tests", "review")
PER_MACHINE = 4  # sessions sharing one clone (a machine): they take turns, machines race
# Where a push comes from: the schedule's kinds of event, by what they write.
SOURCES = {
    "claim": "claims",
    "release": "claims",
    "beat": "heartbeats",
    "send": "messages",
    "broadcast": "messages",
    "inbox": "read marks",
    "flush": "heartbeats",
}
UTIL = 0.3  # compress time only as far as keeps the estimated demand at 30% of the cores


@dataclass(frozen=True)
class Event:
    t: float  # simulated minutes from the start of the window
    session: str
    kind: str  # beat | inbox | claim | release | send | broadcast
    arg: str = ""


def schedule(sessions: list[str], minutes: float, seed: int) -> list[Event]:
    rng = random.Random(seed)
    events: list[Event] = []
    for k, sid in enumerate(sessions):
        off = rng.uniform(0, 10)
        t = off
        while t < minutes:
            events.append(Event(t, sid, "beat"))
            t += 10
        t = off + rng.uniform(2, 18)
        while t < minutes:
            events.append(Event(t, sid, "inbox"))
            t += 20
        t = rng.uniform(0, 10)
        while t < minutes:
            events.append(Event(t, sid, "claim"))
            hold = rng.uniform(30, 90)
            if t + hold < minutes:
                events.append(Event(t + hold, sid, "release"))
            t += hold + rng.uniform(1, 10)
        t = rng.expovariate(1 / 60)
        while t < minutes:
            others = sessions[:k] + sessions[k + 1 :]
            events.append(Event(t, sid, "send", rng.choice(others)))
            t += rng.expovariate(1 / 60)
        if k == 0:
            t = rng.uniform(20, 40)
            while t < minutes:
                events.append(Event(t, sid, "broadcast"))
                t += 60
    return sorted(events, key=lambda e: (e.t, e.session))


def _worker(
    conn: Connection,
    sessions: list[str],
    events: list[Event],
    pool: int,
    seed: int,
    runtime: str,
    clones: dict[str, str],
    ride: bool = True,
) -> None:
    # The turn is per clone (the default): the sessions of a machine (a clone) take
    # turns, machines race through the remote. A runtime folder of the worker's own
    # keeps anything per-user out of the real one.
    os.makedirs(runtime, mode=0o700, exist_ok=True)
    os.environ["XDG_RUNTIME_DIR"] = runtime
    os.environ["GITCOORD_RIDE"] = "1" if ride else "0"
    from gitcoord import Coordinator, GitcoordError
    from gitcoord import clock as gclock
    from gitcoord.api import carry
    from gitcoord.errors import ConflictError

    rng = random.Random(seed)
    coords: dict[str, Any] = {}
    # One per transaction: secs, attempts, its commit and the riders' it landed.
    tx: list[tuple[float, int, str | None, list[str]]] = []
    swaps: list[str] = []  # every push, as it went: ok, lost (refused), unknown

    for sid in sessions:
        c = Coordinator(clones[sid], session=sid)
        orig = c.store.transact

        def transact(*a: Any, _orig: Any = orig, _c: Any = c, **kw: Any) -> Any:
            t0 = time.perf_counter()
            out = _orig(*a, **kw)
            rode = list(_c.store.trees.rode)
            tx.append((time.perf_counter() - t0, out.attempts, out.commit, rode))
            return out

        c.store.transact = transact  # type: ignore[method-assign]
        up = c.store.trees.upstream
        orig_swap = up.swap

        def swap(*a: Any, _orig: Any = orig_swap, **kw: Any) -> Any:
            result = _orig(*a, **kw)
            swaps.append(result)
            return result

        up.swap = swap
        # This worker is the machine's long-lived host: it flushes what is held (below).
        c.on_hold = lambda ride_by: None
        coords[sid] = c
    hosts = {clones[sid]: sid for sid in sessions}  # a clone (machine) -> one of its sessions
    for sid in hosts.values():  # one per machine: warm
        coords[sid].snapshot()
    conn.send("ready")
    sim0, real0, rate, hard_stop = conn.recv()
    clock = common.SimClock(sim0, real0, rate)
    clock.install()
    holds: dict[str, str] = {}
    beats: dict[str, int] = {}
    recs: list[dict[str, Any]] = []
    skipped = 0

    def record(kind: str, lag: float, secs: float, first: int, pushed: int, **more: Any) -> None:
        mine = tx[first:]
        went = swaps[pushed:]
        recs.append(
            {
                "kind": kind,
                "lag": lag,
                "secs": secs,
                "commits": [m[2] for m in mine if m[2]] + [r for m in mine for r in m[3]],
                "rode": sum(len(m[3]) for m in mine),
                "pushes": went.count("ok") + went.count("unknown"),
                "refused": went.count("lost"),
                "attempts": [m[1] for m in mine],
                "conflicts": more.get("conflicts", 0),
                "error": more.get("error", ""),
            }
        )

    def flush_due(everything: bool = False) -> None:
        """What the machine's host does: push held beats whose time has come."""
        if not ride:
            return
        now = gclock.iso(gclock.now())
        for sid in hosts.values():
            times = carry.held(coords[sid].store.info.common_dir)
            if times and (everything or times[0] <= now):
                first, pushed, t0 = len(tx), len(swaps), time.perf_counter()
                error = ""
                try:
                    coords[sid].flush_held()
                except GitcoordError as exc:
                    error = f"exit {exc.code}: {exc.message}"
                record("flush", 0.0, time.perf_counter() - t0, first, pushed, error=error)

    for ev in events:
        due = clock.real_at(ev.t)
        while (left := due - time.time()) > 0:
            flush_due()
            time.sleep(min(left, 0.05))
        if time.time() > hard_stop:
            skipped += 1
            continue
        lag = max(0.0, time.time() - due)
        c = coords[ev.session]
        first, pushed = len(tx), len(swaps)
        conflicts = 0
        error = ""
        t0 = time.perf_counter()
        try:
            if ev.kind == "beat":
                n = beats[ev.session] = beats.get(ev.session, 0) + 1
                c.heartbeat(
                    "implementing",
                    holds.get(ev.session, "backlog"),
                    PHASES[n % len(PHASES)],
                    (n * 10) % 101,
                )
            elif ev.kind == "inbox":
                c.inbox()
            elif ev.kind == "claim":
                for _ in range(3):
                    name = f"t{rng.randrange(pool):04d}"
                    try:
                        c.claim("task", name, ttl="2h", note="workday")
                        holds[ev.session] = name
                        break
                    except ConflictError:
                        conflicts += 1
            elif ev.kind == "release":
                if ev.session in holds:
                    c.release("task", holds.pop(ev.session))
            elif ev.kind == "send":
                c.send(ev.arg, "progress", f"{ev.session} reports progress")
            elif ev.kind == "broadcast":
                c.send("broadcast", "standup", "priorities for the next hour")
        except GitcoordError as exc:
            error = f"exit {exc.code}: {exc.message}"
        secs = time.perf_counter() - t0
        record(ev.kind, lag, secs, first, pushed, conflicts=conflicts, error=error)
    # Held beats still waiting at the end of the window go now (and count).
    flush_due(everything=True)
    for c in coords.values():
        c.close()
    conn.send({"records": recs, "skipped": skipped})


def _calibrate(probe: Any, runs: int = 3) -> float:
    """Seconds one transaction costs here now, alone: a forced heartbeat (fetch, load the
    whole state, plan, validate, write, push), the median of a few."""
    secs = [
        common.timed(lambda i=i: probe.heartbeat("calibrating", "-", "-", i, force=True))[0]
        for i in range(runs)
    ]
    return common.median(secs)


def run_size(
    tmp: Path,
    env: dict[str, str],
    n: int,
    budget: float,
    max_minutes: float,
    seed: int,
    min_minutes: float = 1.0,
    ride: bool = True,
    pace: float | None = None,
) -> dict[str, Any]:
    """One size's day. `pace`: real seconds per simulated minute, instead of the
    calibrated compression (a slower one races less: fewer refused pushes)."""
    from gitcoord import Coordinator

    root = tmp / f"workday-{n}{'' if ride else '-noride'}"
    root.mkdir(parents=True)
    remote = common.bare_remote(root / "remote.git", env)
    sessions = [f"w{k:03d}" for k in range(1, n + 1)]
    hist = common.FastHistory()
    setup_at = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=1)
    common.setup_sessions(hist, sessions, setup_at, slots=max(12, n))
    hist.write(remote, env)
    url = f"file://{remote}"
    probe = Coordinator(str(common.clone(url, root / "probe", env)), session=sessions[0])

    cores = len(os.sched_getaffinity(0))
    per_event = _calibrate(probe)
    base = common.git(remote, "rev-parse", "gitcoord", env=env).strip()
    per_minute = len(schedule(sessions, 60, seed)) / 60  # events per simulated minute
    # Real seconds per simulated minute: the demand at UTIL of the cores, by the estimate.
    if pace is None:
        pace = max(0.1, per_minute * per_event / (cores * UTIL))
        minutes = max(min_minutes, min(max_minutes, budget / pace))
    else:
        minutes = max(min_minutes, min(max_minutes, budget / pace))
    events = schedule(sessions, minutes, seed)

    machines = [sessions[k : k + PER_MACHINE] for k in range(0, n, PER_MACHINE)]
    clones = [common.clone(url, root / f"machine{k}", env) for k in range(len(machines))]
    workers = min(len(machines), {12: 3, 50: 6}.get(n, 8))
    ctx = mp.get_context("fork")
    conns, procs = [], []
    for w in range(workers):
        where = {
            sid: str(clones[m]) for m in range(w, len(machines), workers) for sid in machines[m]
        }
        mine = [sid for sid in sessions if sid in where]
        parent, child = ctx.Pipe()
        p = ctx.Process(
            target=_worker,
            args=(
                child,
                mine,
                [e for e in events if e.session in where],
                2 * n,
                seed + w,
                str(root / f"runtime{w}"),
                where,
                ride,
            ),
        )
        p.start()
        conns.append(parent)
        procs.append(p)
    for c in conns:
        if c.recv() != "ready":
            raise RuntimeError("a workday worker failed to start")
    real0 = time.time() + 0.5
    sim0 = datetime.now(timezone.utc).replace(microsecond=0)
    rate = 60 / pace
    # Events that fall behind still run (and count) until twice the window's real length:
    # on a machine busier than calibrated, skipping them would undercount the pushes.
    hard_stop = real0 + 2 * minutes * pace + max(30.0, budget)
    for c in conns:
        c.send((sim0, real0, rate, hard_stop))
    got = [c.recv() for c in conns]
    for p in procs:
        p.join(timeout=60)
    wall = time.time() - real0

    recs = [r for g in got for r in g["records"]]
    reported = [c for r in recs for c in r["commits"]]
    on_branch = common.branch_commits(remote, env)
    new = set(common.git(remote, "rev-list", f"{base}..gitcoord", env=env).split())
    metrics = probe.metrics()
    probe.close()
    attempts = [a for r in recs for a in r["attempts"]]
    pushing = [r for r in recs if r["pushes"]]
    by_kind: dict[str, int] = {}
    by_source = dict.fromkeys(dict.fromkeys(SOURCES.values()), 0)
    refused_by_kind: dict[str, int] = {}
    for r in recs:
        by_kind[r["kind"]] = by_kind.get(r["kind"], 0) + r["pushes"]
        by_source[SOURCES[r["kind"]]] += r["pushes"]
        refused_by_kind[r["kind"]] = refused_by_kind.get(r["kind"], 0) + r["refused"]
    pushes = sum(r["pushes"] for r in recs)
    refused = sum(r["refused"] for r in recs)
    return {
        "ride": ride,
        "sessions": n,
        "workers": workers,
        "clones": len(clones),
        "per_machine": PER_MACHINE,
        "minutes": minutes,
        "pace": pace,
        "per_event_estimate": per_event,
        "events_per_minute": per_minute,
        "cores": cores,
        "events": len(events),
        "run": len(recs),
        "skipped": sum(g["skipped"] for g in got),
        "wall": wall,
        "pushes": pushes,
        "refused_pushes": refused,
        "commits": len(reported),
        "rode": sum(r["rode"] for r in recs),
        "pushes_on_branch": len(new),
        "pushes_per_minute": pushes / minutes,
        # The budget a host counts: every push it gets, refused ones too.
        "push_attempts_per_minute": (pushes + refused) / minutes,
        "pushes_by_kind": by_kind,
        "refused_by_kind": refused_by_kind,
        "pushes_by_source": by_source,
        "latency_all": [r["secs"] for r in recs],
        "latency_push": [r["secs"] for r in pushing],
        "transactions": len(attempts),
        "retries": sum(a - 1 for a in attempts),
        "retried_tx": sum(1 for a in attempts if a > 1),
        "max_attempts": max(attempts, default=0),
        "refused_claims": sum(r["conflicts"] for r in recs),
        "errors": [r["error"] for r in recs if r["error"]][:5],
        "error_count": sum(1 for r in recs if r["error"]),
        "lost": len(set(reported) - on_branch),
        "double_grants": metrics["work_collisions"],
        "lag": [r["lag"] for r in recs],
    }


def run(
    tmp: Path,
    env: dict[str, str],
    sizes: tuple[int, ...],
    budgets: dict[int, float],
    max_minutes: dict[int, float],
    seed: int = 20261122,
    min_minutes: float = 1.0,
    compare: tuple[int, ...] = (),
    compare_pace: float | None = None,
) -> dict[str, Any]:
    """Each size with riding on; the sizes in `compare` again with riding off and on,
    both at `compare_pace` (real seconds per simulated minute; None: calibrated), a
    gentler compression that races less, for the before and after."""
    data: dict[str, Any] = {
        "sizes": {
            n: run_size(tmp, env, n, budgets[n], max_minutes[n], seed, min_minutes) for n in sizes
        },
        "ride_ab": {},
    }
    for n in compare:
        data["ride_ab"][n] = {
            label: run_size(
                tmp / label,
                env,
                n,
                budgets[n] if compare_pace is None else min_minutes * compare_pace,
                max_minutes[n],
                seed,
                min_minutes,
                ride=ride,
                pace=compare_pace,
            )
            for label, ride in (("off", False), ("on", True))
        }
    return data
