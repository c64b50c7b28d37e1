"""Section 9: at real network latency — `git daemon` behind a delay proxy
(`testing.netdelay.DelayProxy`: each direction held for half the round trip, and a new
connection's handshake paid), at 0, 50 and 100 ms of round trip.

1. One claim at a time, round-robin (each round runs every row once, in a rotated
   order), each timed claim released untimed right after:
   - the raw git floor (`latency.raw_floor`: fetch, temporary index, hash-object,
     update-index, write-tree, commit-tree, push with an explicit lease), and a raw push
     alone (a commit on the tip this clone pushed last: the one round trip a write
     cannot do without), each on a remote of its own;
   - `gitcoord claim` in process (a long-lived `Coordinator`) when nothing raced: its
     mirror is current, so the claim is one push;
   - the same when another clone wrote since (untimed, just before): the push on the
     stale mirror is refused, then a fetch and a push (speculation forced on, as it is
     until a refusal turns it off);
   - the same claim fetching first (experiment: the store before issue #16);
   - `gitcoord claim` as a cold CLI process (`GITCOORD_AGENT=0`).
2. Contention: 1, 2, 4, 8, 16 sessions, each a long-lived `Coordinator` in a clone of its own
   (as separate machines), alternating claim/release of a resource of its own for a
   fixed window; throughput in the window after its warm-up, latency p50/p95/max,
   attempts per success, successes per session (min/max: does anyone starve?), lost
   updates (every success reported must be on the branch) and double grants (the
   branch's claims and releases replayed in order: a claim landing while another session
   held the resource). Next to them: the ceiling of
   one push per commit (1 / the raw push's median) and the raw floor's rate. Beside it,
   the same curve with carrying (a branch at format 5 carries by default; the first curve
   turns it off with `GITCOORD_CARRY=0`; `store.requests`: the push that lands takes the
   waiting clones' published writes along).
   `experiments`: the same curve with the store as before issue #16 (fetch first, full
   jitter doubling per attempt up to a third of the time left, no giving way).
"""

from __future__ import annotations

import itertools
import multiprocessing as mp
import random
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from testing import servers
from testing.netdelay import DelayProxy

from . import common, contention
from .common import median, ms, pct
from .latency import raw_floor

RTTS = (0.0, 0.05, 0.1)
LEVELS = (1, 2, 4, 8, 16)
QUICK_LEVELS = (1, 2, 4)
HEADING = "## 9. At real network latency"

RAW_FLOOR = "raw git floor (fetch + plumbing + push)"
RAW_PUSH = "raw push alone (a commit on the tip pushed last)"
INPROC = "gitcoord claim in process, nothing raced (one push)"
STALE = "gitcoord claim in process, another clone wrote since (refused push, fetch, push)"
FETCH_FIRST = "gitcoord claim in process, fetching first (the store before #16, experiment)"
COLD = "gitcoord claim, cold CLI (GITCOORD_AGENT=0)"
ROWS = (RAW_FLOOR, RAW_PUSH, INPROC, STALE, FETCH_FIRST, COLD)

NOW = "gitcoord, not carrying (GITCOORD_CARRY=0)"
CARRY = "gitcoord, carrying (format 5, the default)"
BEFORE = "the store before #16 (experiment)"


def before_16(store: Any) -> None:
    """EXPERIMENT: one `Store` made to behave as before issue #16: every transaction
    fetches first, a winner never gives way, no tickets, and a loser backs off by full
    jitter over the round's length doubling per attempt, up to a third of the time left."""
    trees = store.trees
    trees._cached_tip = lambda pace: None
    trees._give_way = lambda *_: None
    trees.tickets = trees.upstream.along = None
    backoff = trees.backoff

    def sleep(attempt: int, deadline: float, waited: float = 0.0) -> None:
        left = deadline - time.monotonic()
        base = max(0.015, backoff.round)
        delay = random.uniform(0, min(left / 3, base * 2 ** min(attempt - 1, 10)))
        time.sleep(max(0.0, min(delay, left)))

    backoff.sleep = sleep


def _remote(root: Path, env: dict[str, str], name: str) -> Path:
    remote = common.bare_remote(root / f"{name}.git", env)
    hist = common.FastHistory()
    when = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=5)
    common.setup_sessions(hist, ["bench", "other"], when, claims=["task/cold"])
    hist.write(remote, env)
    return remote


def _clone(remote: Path, dest: Path, url: str, env: dict[str, str]) -> Path:
    """A clone of `remote` made from its path (fast), then pointed at `url` (the proxy):
    every later fetch and push goes through the delay."""
    common.git(dest.parent, "clone", "-q", str(remote), str(dest), env=env)
    common.git(dest, "remote", "set-url", "origin", url, env=env)
    return dest


def _raw_push(clone: Path, env: dict[str, str]) -> Callable[[], None]:
    """An empty commit on the tip this clone pushed last, pushed with that tip as the
    lease: one push, nothing else (the tip is known: fetched once, untimed)."""
    common.git(clone, "fetch", "-q", "origin", "+refs/heads/gitcoord:refs/bench/tip", env=env)
    last = [common.git(clone, "rev-parse", "refs/bench/tip", env=env).strip()]
    tree = common.git(clone, "rev-parse", f"{last[0]}^{{tree}}", env=env).strip()

    def op() -> None:
        commit = common.git(clone, "commit-tree", tree, "-p", last[0], "-m", "push", env=env)
        commit = commit.strip()
        common.git(
            clone,
            "push",
            "-q",
            f"--force-with-lease=refs/heads/gitcoord:{last[0]}",
            "origin",
            f"{commit}:refs/heads/gitcoord",
            env=env,
        )
        last[0] = commit

    return op


def single(tmp: Path, env: dict[str, str], base: str, rtt: float, runs: int) -> dict[str, Any]:
    """One claim at a time through the proxy at `rtt`: {row: [seconds]}."""
    from gitcoord import Coordinator
    from gitcoord.store.turns import Pace

    from .single import cli_claim

    root = tmp / f"netdelay-single-{int(rtt * 1000)}"
    root.mkdir()
    daemon_port = int(base.rsplit(":", 1)[1])
    out: dict[str, list[float]] = {row: [] for row in ROWS}
    with DelayProxy(daemon_port, rtt) as proxy:
        url = f"git://127.0.0.1:{proxy.port}"
        rel = root.relative_to(tmp)
        remotes = {name: _remote(root, env, name) for name in ("gitcoord", "raw", "push")}

        def clone(name: str, remote: str) -> Path:
            return _clone(remotes[remote], root / name, f"{url}/{rel}/{remote}.git", env)

        work, other = clone("work", "gitcoord"), clone("other", "gitcoord")
        raw, pusher = clone("raw", "raw"), clone("pusher", "push")
        coord = Coordinator(str(work), session="bench")
        old = Coordinator(str(work), session="bench")
        before_16(old.store)
        them = Coordinator(str(other), session="other")
        floor = raw_floor(raw, env, "gitcoord")
        push = _raw_push(pusher, env)
        numbers = iter(range(10**9))

        def stale() -> None:
            coord.claim("task", "stale")

        def before_stale() -> None:  # untimed: another clone writes, this one speculates
            them.claim("task", "theirs")
            them.release("task", "theirs")
            Pace(True, coord.store.trees.pace.round, 0.0).save(coord.store.trees.pace_path)

        ops: dict[str, tuple[Callable[[], Any], Callable[[], Any] | None, str | None]] = {
            RAW_FLOOR: (lambda: floor(next(numbers)), None, None),
            RAW_PUSH: (push, None, None),
            INPROC: (lambda: coord.claim("task", "inproc"), None, "inproc"),
            STALE: (stale, before_stale, "stale"),
            FETCH_FIRST: (lambda: old.claim("task", "old"), None, "old"),
            COLD: (cli_claim(work, env, "cold"), None, "cold"),
        }
        try:
            coord.snapshot()
            them.snapshot()
            for i in range(-1, runs):  # -1: warm-up round, not kept
                order = list(ROWS[i % len(ROWS) :] + ROWS[: i % len(ROWS)])
                for row in order:
                    fn, prepare, res = ops[row]
                    if prepare is not None:
                        prepare()
                    secs, _ = common.timed(fn)
                    if i >= 0:
                        out[row].append(secs)
                    if res is not None:
                        coord.release("task", res)  # untimed: the next claim grants it anew
        finally:
            for c in (coord, old, them):
                c.close()
    return out


def _session_proc(conn: Connection, clone: str, sid: str, before: bool, carry: bool) -> None:
    """One session in a clone of its own: a long-lived Coordinator, driven over `conn`."""
    import os

    from gitcoord import Coordinator

    os.environ["GITCOORD_CARRY"] = "1" if carry else "0"

    c = Coordinator(clone, session=sid)
    if before:
        before_16(c.store)
    c.snapshot()
    conn.send("ready")
    held = False
    while True:
        cmd = conn.recv()
        if cmd[0] == "stop":
            break
        _, start, end = cmd
        recs, held = contention.alternate(c, sid, start, end, held)
        conn.send(recs)
    c.close()


def double_grants(remote: Path, env: dict[str, str]) -> int:
    """Claims that landed on the branch while another session held the resource: the
    branch's `claim R by S` / `release R by S` subjects replayed oldest first."""
    held: dict[str, str] = {}
    doubled = 0
    log = common.git(remote, "log", "--reverse", "--format=%s", "gitcoord", env=env)
    for subject in log.splitlines():
        op, _, rest = subject.partition(" ")
        resource, sep, who = rest.rpartition(" by ")
        if not sep or op not in ("claim", "release"):
            continue
        if op == "claim":
            if held.get(resource, who) != who:
                doubled += 1
            held[resource] = who
        else:
            held.pop(resource, None)
    return doubled


def level(
    tmp: Path,
    env: dict[str, str],
    url: str,
    curve: str,
    rtt: float,
    n: int,
    duration: float,
    shared: bool = False,
) -> dict[str, Any]:
    """`n` sessions, each a long-lived process, in clones of their own (separate machines)
    or, `shared`, all in one clone (one machine: they take turns, and go in groups)."""
    tag = {BEFORE: "before", CARRY: "carry"}.get(curve, "now")
    name = f"{tag}-{int(rtt * 1000)}-{n}"
    root = tmp / f"netdelay-{name}{'-shared' if shared else ''}"
    root.mkdir()
    remote = contention._seed(root, env)
    ctx = mp.get_context("fork")
    procs, conns = [], []
    mine = root / "clone0"
    for k in range(n):
        if k == 0 or not shared:
            where = f"{url}/{root.relative_to(tmp)}/remote.git"
            mine = _clone(remote, root / f"clone{k}", where, env)
        parent, child = ctx.Pipe()
        p = ctx.Process(
            target=_session_proc,
            args=(child, str(mine), contention.SESSIONS[k], curve == BEFORE, curve == CARRY),
        )
        p.start()
        procs.append(p)
        conns.append(parent)
    start, end = contention.go(conns, duration, "a latency worker")
    per_session = [c.recv() for c in conns]
    for c in conns:
        c.send(("stop",))
    for p in procs:
        p.join(timeout=60)
    warm = min(2.0, duration / 4)  # all sessions starting at once: a burst, not kept

    def steady(recs: list[contention.Record]) -> list[contention.Record]:
        return [r for r in recs if r[2] is not None and start + warm <= r[1] <= end]

    done = [r for recs in per_session for r in steady(recs)]
    reported = {r[2] for recs in per_session for r in recs if r[2]}
    on_branch = common.branch_commits(remote, env)
    errors = [r[4] for recs in per_session for r in recs if r[4]]
    attempts = [r[3] for r in done]
    counts = [len(steady(recs)) for recs in per_session]
    latency = [r[1] - r[0] for r in done]
    # Starvation shows here, not in the latency of completed operations: the longest
    # stretch of the steady window in which a session (always trying) wrote nothing.
    starved = 0.0
    for recs in per_session:
        marks = [start + warm, *sorted(r[1] for r in steady(recs)), end]
        starved = max(starved, *(b - a for a, b in itertools.pairwise(marks)))
    return {
        "sessions": n,
        "ops": len(done),
        "throughput": len(done) / (duration - warm),
        "latency": latency,
        "p50": median(latency),
        "p95": pct(latency, 95),
        "max": max(latency, default=float("nan")),
        "attempts": sum(attempts) / len(attempts) if attempts else float("nan"),
        "max_attempts": max(attempts, default=0),
        "per_session": counts,
        "longest_wait": starved,
        "lost": len(reported - on_branch),
        "double_grants": double_grants(remote, env),
        "errors": errors[:5],
        "error_count": len(errors),
    }


def run(
    tmp: Path,
    env: dict[str, str],
    runs: int,
    duration: float,
    rtts: tuple[float, ...] = RTTS,
    levels: tuple[int, ...] = LEVELS,
    experiments: bool = False,
) -> dict[str, Any]:
    results: dict[str, Any] = {
        "runs": runs,
        "duration": duration,
        "rtts": list(rtts),
        "single": {},
        "curves": {},
    }
    curves = (NOW, CARRY, BEFORE) if experiments else (NOW, CARRY)
    with servers.git_daemon(tmp) as base:
        port = int(base.rsplit(":", 1)[1])
        for rtt in rtts:
            key = f"{rtt * 1000:g}"
            results["single"][key] = single(tmp, env, base, rtt, runs)
            with DelayProxy(port, rtt) as proxy:
                url = f"git://127.0.0.1:{proxy.port}"
                for curve in curves:
                    results["curves"].setdefault(curve, {})[key] = {}
                for n in levels:  # curves interleaved per level: load drift hits both
                    for curve in curves:
                        results["curves"][curve][key][n] = level(
                            tmp, env, url, curve, rtt, n, duration
                        )
    return results


# --- the report -----------------------------------------------------------------------------


def _x(v: float) -> str:
    return "–" if v != v else f"{v:.2f}×"


def _rate(seconds: float) -> str:
    return "–" if not seconds or seconds != seconds else f"{1 / seconds:.2f}"


def tables(data: dict[str, Any]) -> list[str]:
    d = data["latency"]
    lines = [
        f"`git daemon` on loopback behind `testing/netdelay.py`'s proxy, which holds each "
        "direction for half the round trip and makes a new connection pay its handshake "
        "(a real link's propagation delay; no bandwidth limit, no loss). 0 ms is the same "
        f"path with no delay. One claim: {d['runs']} round-robin rounds after a warm-up "
        "round, each timed claim released untimed right after; the raw rows on a remote of "
        "their own.",
        "",
        "| one claim, median (p90) | "
        + " | ".join(f"{k} ms RTT" for k in d["single"])
        + " | "
        + " | ".join(f"× floor at {k} ms" for k in d["single"])
        + " |",
        "|---|" + "---:|" * (2 * len(d["single"])),
    ]
    for row in ROWS:
        cells, ratios = [], []
        for series in d["single"].values():
            xs = series.get(row, [])
            cells.append(f"{ms(median(xs))} ({ms(pct(xs, 90))})")
            ratios.append(_x(median(xs) / median(series[RAW_FLOOR])))
        lines.append(f"| {row} | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |")
    lines += [
        "",
        f"Contention: sessions in clones of their own (as separate machines), each "
        f"alternating claim/release of its own resource for {d['duration']:g} s; "
        "throughput and latency count the operations completed after the window's "
        "warm-up. *Ceiling*: one push per commit, 1 / the raw push's median; *raw floor*: "
        "one writer running the raw pipeline, 1 / its median. Latency counts completed "
        "operations only, so a session that starves does not show in it; *longest without "
        "a success* does: the longest stretch of the window (after its warm-up) in which "
        "some session, trying all along, wrote nothing.",
        "",
        "| RTT | sessions | curve | ops/s | × 1 session | ceiling / raw floor (ops/s) "
        "| latency p50 / p95 / max | attempts per success (max) "
        "| successes per session min / max | longest without a success | lost | double grants "
        "| errors |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key in d["single"]:
        series = d["single"][key]
        ceiling = f"{_rate(median(series[RAW_PUSH]))} / {_rate(median(series[RAW_FLOOR]))}"
        for curve, by_rtt in d["curves"].items():
            levels = by_rtt.get(key, {})
            one = levels.get(1, {}).get("throughput", float("nan"))
            for n, lv in sorted(levels.items()):
                per = lv["per_session"]
                lines.append(
                    f"| {key} ms | {n} | {curve} | {lv['throughput']:.2f} | "
                    f"{_x(lv['throughput'] / one if one else float('nan'))} | {ceiling} | "
                    f"{ms(lv['p50'])} / {ms(lv['p95'])} / {ms(lv['max'])} | "
                    f"{lv['attempts']:.2f} ({lv['max_attempts']}) | {min(per)} / {max(per)} | "
                    f"{ms(lv.get('longest_wait', float('nan')))} | {lv['lost']} | "
                    f"{lv.get('double_grants', '–')} | {lv['error_count']} |"
                )
    errors = [
        e
        for by_rtt in d["curves"].values()
        for lv in by_rtt.values()
        for x in lv.values()
        for e in x["errors"]
    ]
    if errors:
        lines += ["", "Errors seen (first few): " + "; ".join(sorted(set(errors))[:5])]
    return lines


def targets(d: dict[str, Any], key: str = "50", curve: str = NOW) -> str:
    """Issue #16's targets at `key` ms for `curve`, against this run's measurements (one
    session's throughput: this store's, alone)."""
    s, now = d["single"].get(key), d["curves"].get(curve, {}).get(key, {})
    alone = d["curves"].get(NOW, {}).get(key, {})
    if not s or not now:
        return ""
    floor, inproc, stale = median(s[RAW_FLOOR]), median(s[INPROC]), median(s[STALE])
    one = alone.get(1, {}).get("throughput", float("nan"))
    parts = [
        f"an uncontended claim ≤ 0.7× the raw floor: {_x(inproc / floor)} (contended, a "
        f"refused push then a fetch and a push: {_x(stale / floor)})"
    ]
    for n in (8, 16):
        if n in now:
            lv = now[n]
            parts.append(
                f"{n} separate clones ≥ 1× one session's throughput: {_x(lv['throughput'] / one)}"
                f"; every session succeeding in the window: fewest {min(lv['per_session'])}; "
                f"max latency ≤ 25× the raw floor ({ms(25 * floor)}): {_x(lv['max'] / floor)}"
            )
    lost = sum(lv["lost"] for c in d["curves"].values() for x in c.values() for lv in x.values())
    doubled = sum(
        lv.get("double_grants", 0)
        for c in d["curves"].values()
        for x in c.values()
        for lv in x.values()
    )
    parts.append(f"0 lost updates and 0 double grants: {lost} and {doubled}, at every level")
    head = f"**Against #16's targets at {key} ms round trip** ({curve}): "
    return head + "; ".join(parts) + "."


def analysis(data: dict[str, Any]) -> list[str]:
    d = data["latency"]
    keys = list(d["single"])
    if not keys:
        return []
    far = keys[-1]
    s = d["single"][far]
    floor, push, inproc = median(s[RAW_FLOOR]), median(s[RAW_PUSH]), median(s[INPROC])
    stale, first, cold = median(s[STALE]), median(s[FETCH_FIRST]), median(s[COLD])
    out = [
        f"**One claim at {far} ms.** Nothing raced: {ms(inproc)} in process, "
        f"{_x(inproc / floor)} the raw floor's {ms(floor)} and {_x(inproc / push)} a raw "
        f"push alone ({ms(push)}) — the claim is that push plus Python; fetching first (the "
        f"store before #16) took {ms(first)}, {_x(first / inproc)} as long. When another "
        f"clone wrote since, the push on the stale mirror is refused and the round "
        f"fetches and pushes again: {ms(stale)} ({_x(stale / first)} fetching first), "
        f"after which the clone fetches first until a fetch finds the branch where it left "
        f"it. A cold CLI claim: {ms(cold)} ({_x(cold / floor)} the floor): Python's start "
        f"and imports, then the same one push.",
    ]
    now_curves = d["curves"].get(NOW, {})
    before_curves = d["curves"].get(BEFORE, {})
    if not now_curves:
        return out

    def spread(lv: dict[str, Any]) -> str:
        wait = lv.get("longest_wait")
        return f"{min(lv['per_session'])}–{max(lv['per_session'])}" + (
            f" ({ms(wait)})" if wait is not None else ""
        )

    fair = []
    for key in keys:
        now, before = now_curves.get(key, {}), before_curves.get(key, {})
        for n in sorted(now):
            if n > 1:
                b = f" vs {spread(before[n])}" if n in before else ""
                fair.append(f"{key} ms × {n}: {spread(now[n])}{b}")
    text = (
        f"**Fairness ({NOW}).** Successes per session (fewest–most) in the window, and the "
        "longest "
        "any session went without one"
        + (", this store vs before #16: " if before_curves else ": ")
        + "; ".join(fair)
        + "."
    )
    if before_curves:
        text += (
            " Before, a session that lost a few rounds backed off for seconds (its window "
            "doubled up to a third of the time left) while the others kept winning; now "
            "the window is at most 4 rounds and narrows the longer a session waited, and a "
            "winner that saw contention gives way for as many rounds as its win took (up to "
            "4); and a clone that went 3 rounds without landing takes a ticket: the two "
            "oldest waits go, the others stand back (`store.tickets`)."
        )
    out.append(text)
    top = max(now_curves[far])
    lv = now_curves[far][top]
    one = now_curves[far].get(1)
    text = (
        f"**Contention at {far} ms, {top} sessions, {NOW}:** {lv['throughput']:.2f} ops/s "
        f"(the ceiling of one push per commit: {_rate(push)}; the raw floor: {_rate(floor)}), "
        f"{lv['attempts']:.2f} attempts per success, latency p50 {ms(lv['p50'])}, p95 "
        f"{ms(lv['p95'])}, max {ms(lv['max'])}"
    )
    if top in before_curves.get(far, {}):
        b = before_curves[far][top]
        text += (
            f"; the store before #16 in the same run: {b['throughput']:.2f} ops/s, "
            f"{b['attempts']:.2f} attempts, p50 {ms(b['p50'])}, p95 {ms(b['p95'])}, "
            f"max {ms(b['max'])}"
        )
    text += (
        f". Sessions that take turns fairly write at most one commit per round (a fetch "
        f"and a push: each must learn the other's commit before building on it), so "
        f"{top} sessions each wait about {top} rounds for their turn; one session writing "
        f"alone, or one monopolising the branch, writes one commit per push. The longest "
        f"waiters retry right after each commit and collide with each other: attempts "
        f"per success rise with sessions (each a refused push, mostly before any pack is "
        f"sent: the lease is checked against the refs the server advertises)."
    )
    if one is not None:
        text += (
            f" One session alone: {one['throughput']:.2f} ops/s, p50 {ms(one['p50'])}, p95 "
            f"{ms(one['p95'])} — the tail is its pause of a round after every 8 back-to-back "
            f"writes, the price of letting unseen losers in."
        )
    out.append(text)
    for curve in (NOW, CARRY):
        if goals := targets(d, curve=curve):
            out.append(goals)
    return out


def section(data: dict[str, Any], command: str | None = None) -> list[str]:
    """Section 9, heading included; `command`: measured on its own by that command."""
    lines = [HEADING, ""]
    if command is not None:
        lines += common.measured_alone(data, "latency", command)
    lines += tables(data)
    if data["latency"].get("curves"):
        lines += [
            "",
            f"![Throughput against sessions under the ceiling and the raw floor, and the "
            f"fewest successes of any session, at each round trip]({CHART})",
        ]
    for note in analysis(data):
        lines += ["", note]
    return lines


# --- the chart ------------------------------------------------------------------------------

CHART = "latency.png"


def chart(data: dict[str, Any], path: Path) -> str:
    """benchmarks/latency.png: per round trip, aggregate throughput against sessions (this
    store, and before #16 when measured) under the ceiling and the raw floor, and the
    fewest successes of any session in the window (0: someone starved). Returns the path,
    or why there is none."""
    d = data.get("latency", {})
    if not d.get("curves"):
        return "no latency contention measurements in this run"
    import os
    import tempfile

    saved = os.environ.get("MPLCONFIGDIR")
    with tempfile.TemporaryDirectory(prefix="gitcoord-bench-mpl-") as mpl:
        os.environ["MPLCONFIGDIR"] = mpl
        try:
            try:
                import matplotlib

                matplotlib.use("Agg")
                import matplotlib.pyplot as plt
            except ImportError:
                return "matplotlib is not installed (`.venv/bin/pip install -e '.[bench]'`)"
            keys = list(d["single"])
            fig, axes = plt.subplots(2, len(keys), figsize=(4 * len(keys), 6.4), squeeze=False)
            style = {
                NOW: ("tab:blue", "o-"),
                CARRY: ("tab:green", "^-"),
                BEFORE: ("tab:purple", "x:"),
            }
            for col, key in enumerate(keys):
                top, bottom = axes[0][col], axes[1][col]
                series = d["single"][key]
                for curve, by_rtt in d["curves"].items():
                    levels = by_rtt.get(key, {})
                    xs = sorted(levels)
                    if not xs:
                        continue
                    color, fmt = style.get(curve, ("tab:grey", "s-"))
                    top.plot(
                        xs, [levels[n]["throughput"] for n in xs], fmt, color=color, label=curve
                    )
                    bottom.plot(
                        xs,
                        [min(levels[n]["per_session"]) for n in xs],
                        fmt,
                        color=color,
                        label=curve,
                    )
                for row, ls, label in (
                    (RAW_PUSH, "--", "ceiling: one push per commit"),
                    (RAW_FLOOR, ":", "raw floor: fetch + plumbing + push"),
                ):
                    secs = median(series.get(row, []))
                    if secs == secs and secs > 0:
                        top.axhline(1 / secs, color="black", lw=0.8, ls=ls, label=label)
                top.set_title(f"{key} ms round trip")
                top.set_ylim(bottom=0)
                bottom.set_ylim(bottom=0)
                for a in (top, bottom):
                    a.set_xscale("log", base=2)
                    ticks = sorted({n for c in d["curves"].values() for n in c.get(key, {})})
                    a.set_xticks(ticks)
                    a.set_xticklabels([str(t) for t in ticks])
                    a.grid(True, alpha=0.3)
                bottom.set_xlabel("sessions, each in a clone of its own")
            axes[0][0].set_ylabel("landed operations per second")
            axes[1][0].set_ylabel(f"fewest successes of a session\nin {d['duration']:g} s")
            axes[0][0].legend(fontsize=7)
            m = data.get("machine", {})
            fig.suptitle(
                f"gitcoord at real network latency (git daemon behind a delay proxy) · "
                f"{m.get('cores', '')}",
                fontsize=9,
            )
            fig.tight_layout()
            fig.savefig(path, dpi=100)
            plt.close(fig)
            return str(path)
        finally:
            if saved is None:
                os.environ.pop("MPLCONFIGDIR", None)
            else:
                os.environ["MPLCONFIGDIR"] = saved
