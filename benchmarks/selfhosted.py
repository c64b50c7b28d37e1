"""Many sessions on a self-hosted remote at real latency, with the server hook and signatures.

`python -m benchmarks.selfhosted [--sessions 200] [--machines 50] [--rtt-ms 50]
[--seconds 30] [--json FILE]`: a bare remote served by `git daemon` behind the delay
proxy (`testing.netdelay`, loopback only, started and stopped here), on a branch that
requires signatures, with gitcoord's `pre-receive` hook installed. Each machine is a
process with a clone, a machine key and a runtime folder of its own; its sessions are
threads, each a long-lived `Coordinator` (as an MCP server runs one), registered and
bound to the machine's key before the window. In the window every session alternates
claim and release of a task of its own as fast as it lands them: the sessions of a
machine take its clone's turn and go in groups, machines race through the remote.

Prints landed operations per second (after a warm-up), pushes that landed (the remote's
reflog) and operations per push, latency p50/p95/max, the fewest successes of any
session, lost updates (every commit reported must be on the branch) and double grants.
Issue #16 asks 200 sessions to sustain at least 10 landed operations per second at 50 ms
with the hook and signatures, 0 lost. On one 2-core machine every simulated machine's
client work (deciding, signing, verifying every commit the others land) shares the same
cores as the server's hook, so the figure is a floor for real, separate machines.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from testing import servers
from testing.netdelay import DelayProxy

from . import common, contention, netdelay
from .common import median, pct

APPROVER = "admin@example.com"
Record = contention.Record


def _machine(conn: Connection, clone: str, sessions: list[str], home: str, runtime: str) -> None:
    """One machine: its sessions as threads, each with a Coordinator of its own."""
    os.environ["HOME"] = home
    os.environ["XDG_CONFIG_HOME"] = os.path.join(home, ".config")
    os.makedirs(runtime, mode=0o700, exist_ok=True)
    os.environ["XDG_RUNTIME_DIR"] = runtime
    from gitcoord import Coordinator, GitcoordError

    coords = {sid: Coordinator(clone, session=sid, timeout=120) for sid in sessions}
    errors: list[str] = []

    def register(sid: str) -> None:
        try:
            coords[sid].register(role=f"role of {sid}", goal="bench")
        except GitcoordError as exc:
            errors.append(f"{sid}: exit {exc.code}: {exc.message}")

    threads = [threading.Thread(target=register, args=(s,)) for s in sessions]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    conn.send(("registered", errors))
    if conn.recv()[0] != "warm":
        return
    for c in coords.values():
        c.snapshot()  # verified the branch as it is now (the hook's and others' commits)
    conn.send("ready")
    _, start, end = conn.recv()
    recs: dict[str, list[Record]] = {sid: [] for sid in sessions}

    def session(sid: str) -> None:
        recs[sid] = contention.alternate(coords[sid], sid, start, end)[0]

    threads = [threading.Thread(target=session, args=(s,)) for s in sessions]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    conn.send(recs)
    for c in coords.values():
        c.close()


def _git(cwd: Path, *args: str, env: dict[str, str]) -> str:
    return common.git(cwd, *args, env=env)


def measure(
    tmp: Path, env: dict[str, str], sessions: int, machines: int, rtt: float, seconds: float
) -> dict[str, Any]:
    """One configuration, in a folder of its own under `tmp`, under `env` (this process's
    environment, `common.use_env`: the machines are forked from it)."""
    # A folder of its own per run: a configuration may run more than once (TARGET_RUNS).
    name = f"selfhosted-{sessions}-{machines}-{int(rtt * 1000)}-"
    tmp = Path(tempfile.mkdtemp(prefix=name, dir=tmp))
    srv = tmp / "srv"
    srv.mkdir()
    remote = common.bare_remote(srv / "remote.git", env)
    _git(remote, "config", "core.logAllRefUpdates", "always", env=env)
    admin = common.clone(f"file://{remote}", tmp / "admin", env)
    key = tmp / "approver_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    _git(admin, "config", "user.signingKey", str(key), env=env)
    _git(admin, "config", "user.email", APPROVER, env=env)
    gitcoord = [*common.gitcoord_argv(), "-C", str(admin)]
    run = {**env, "GITCOORD_AGENT": "0"}
    init = [*gitcoord, "init", "--slots", str(sessions), "--require-signatures"]
    subprocess.run([*init, "--approver", APPROVER], check=True, env=run, capture_output=True)

    names = [f"s{k:03d}" for k in range(sessions)]
    per = [names[m::machines] for m in range(machines)]
    ctx = mp.get_context("fork")
    conns: list[Connection] = []
    procs = []
    # Every clone before any machine starts: a local clone copies the remote's object
    # folder, and the first machines' registrations pushing meanwhile (their quarantine
    # folders coming and going) made a later clone fail.
    clones = [common.clone(f"file://{remote}", tmp / f"machine{m}", env) for m in range(len(per))]
    for m, mine in enumerate(per):
        clone = clones[m]
        home = tmp / f"home{m}"
        home.mkdir()
        parent, child = ctx.Pipe()
        p = ctx.Process(
            target=_machine, args=(child, str(clone), mine, str(home), str(tmp / f"run{m}"))
        )
        p.start()
        procs.append(p)
        conns.append(parent)
    setup_errors = [e for c in conns for e in c.recv()[1]]
    # The hook goes in after the registrations (setup, not measured); from now on every
    # push is judged by it, and every machine talks to the remote through the delay.
    hook = [*gitcoord, "hooks", "install", "--server", str(remote)]
    subprocess.run(hook, check=True, env=run, capture_output=True)
    # The hooks' warm agent (the server's user's) in a runtime folder of its own, short
    # enough for a socket's path; it leaves when its socket goes, at the end.
    hooks_runtime = Path(tempfile.mkdtemp(prefix="gcb", dir="/tmp"))
    # GITCOORD_AGENT=1: the daemon's hooks go through the agent, as a server user's do.
    hooks_env = {"XDG_RUNTIME_DIR": str(hooks_runtime), "GITCOORD_AGENT": "1"}
    try:
        with common.setenv(hooks_env):
            got, start, end, base_tip = _window(srv, remote, clones, conns, rtt, seconds, env)
    finally:
        for sock in hooks_runtime.rglob("*.sock"):
            sock.unlink()
        shutil.rmtree(hooks_runtime, ignore_errors=True)
    for p in procs:
        p.join(timeout=120)
    return _results(remote, env, got, start, end, base_tip, sessions, machines, rtt, seconds) | {
        "setup_errors": setup_errors[:5]
    }


def _window(
    srv: Path,
    remote: Path,
    clones: list[Path],
    conns: list[Connection],
    rtt: float,
    seconds: float,
    env: dict[str, str],
) -> tuple[list[dict[str, list[Record]]], float, float, str]:
    """Every machine to the delayed remote, and the measured window."""
    with servers.git_daemon(srv) as base, DelayProxy(int(base.rsplit(":", 1)[1]), rtt) as proxy:
        url = f"git://127.0.0.1:{proxy.port}/remote.git"
        for clone in clones:
            _git(clone, "remote", "set-url", "origin", url, env=env)
        for c in conns:
            c.send(("warm",))
        base_tip = _git(remote, "rev-parse", "gitcoord", env=env).strip()
        start, end = contention.go(conns, seconds, "a machine")
        got: list[dict[str, list[Record]]] = [c.recv() for c in conns]
    return got, start, end, base_tip


def _results(
    remote: Path,
    env: dict[str, str],
    got: list[dict[str, list[Record]]],
    start: float,
    end: float,
    base_tip: str,
    sessions: int,
    machines: int,
    rtt: float,
    seconds: float,
) -> dict[str, Any]:
    warm = min(5.0, seconds / 4)
    per_session = [recs for g in got for recs in g.values()]

    def steady(recs: list[Record]) -> list[Record]:
        return [r for r in recs if r[2] is not None and start + warm <= r[1] <= end]

    done = [r for recs in per_session for r in steady(recs)]
    reported = {r[2] for recs in per_session for r in recs if r[2]}
    on_branch = common.branch_commits(remote, env)
    errors = [r[4] for recs in per_session for r in recs if r[4]]
    # When each push landed: the remote's reflog, its times in whole seconds.
    reflog = _git(remote, "reflog", "show", "--date=unix", "--format=%gd", "gitcoord", env=env)
    pushes = [int(line.rsplit("@{", 1)[1].rstrip("}")) for line in reflog.splitlines()]
    in_window = [t for t in pushes if start + warm <= t + 0.5 <= end + 1]
    landed = len(_git(remote, "rev-list", f"{base_tip}..gitcoord", env=env).split())
    latency = [r[1] - r[0] for r in done]
    counts = [len(steady(recs)) for recs in per_session]
    return {
        "sessions": sessions,
        "machines": machines,
        "rtt": rtt,
        "seconds": seconds,
        "warm": warm,
        "ops": len(done),
        "ops_per_second": len(done) / (seconds - warm),
        "pushes_in_window": len(in_window),
        "commits_landed": landed,
        "ops_per_push": (len(done) / len(in_window)) if in_window else float("nan"),
        "p50": median(latency),
        "p95": pct(latency, 95),
        "max": max(latency, default=float("nan")),
        "fewest": min(counts, default=0),
        "most": max(counts, default=0),
        "starved": sum(1 for n in counts if n == 0),
        "lost": len(reported - on_branch),
        "double_grants": netdelay.double_grants(remote, env),
        "errors": errors[:5],
        "error_count": len(errors),
    }


HEADING = "## 10. Many sessions on a self-hosted remote"
# (sessions, machines). The target's configuration, 200 sessions on 10 machines, runs TARGET_RUNS
# times: one 30 s window of it gave 8.0 to 16.0 ops/s on the same kind of box, so the
# verdict is on the median of the runs, not on one that happened to be lucky.
TARGET_RUNS = 3
CONFIGS = ((1, 1), (16, 4), *((200, 10),) * TARGET_RUNS, (200, 50))
QUICK_CONFIGS = ((1, 1), (8, 2))
TARGET_OPS = 10.0  # landed operations per second at 200 sessions (#16)


def run(
    tmp: Path,
    env: dict[str, str],
    configs: tuple[tuple[int, int], ...] = CONFIGS,
    rtt: float = 0.05,
    seconds: float = 30.0,
) -> dict[str, Any]:
    return {
        "rtt": rtt,
        "configs": [measure(tmp, env, n, m, rtt, seconds) for n, m in configs],
    }


def section(data: dict[str, Any], command: str | None = None) -> list[str]:
    """Section 10 of RESULTS.md, heading included."""
    d = data["selfhosted"]
    lines = [HEADING, ""]
    if command is not None:
        lines += common.measured_alone(
            data, "selfhosted", command, "the rest of this page comes from the run named at its top"
        )
    lines += [
        f"`git daemon` behind the delay proxy at {d['rtt'] * 1000:.0f} ms round trip, on a "
        "branch that requires signatures, with gitcoord's `pre-receive` hook installed (run "
        "through the warm agent of the user running the daemon). Each machine is a process "
        "with a clone and a machine key of its own; its sessions are threads, each a "
        "long-lived `Coordinator` alternating claim and release of a task of its own as fast "
        "as they land (the sessions of a machine go in groups, machines race). Throughput "
        "after a warm-up; pushes are the remote's reflog. All of it — every machine's "
        "deciding, signing and verifying of every commit the others land, and the hook — "
        "shares the same 2 cores, so these are floors for separate machines (`python -m "
        "benchmarks.selfhosted --sessions N --machines M` runs one).",
        "",
        "| sessions | machines (sessions each) | landed ops/s | pushes/s | ops per push | "
        "latency p50 / p95 / max | successes per session (fewest–most) | sessions with none "
        "| lost | double grants | errors |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in d["configs"]:
        span = r["seconds"] - r["warm"]
        lines.append(
            f"| {r['sessions']} | {r['machines']} ({r['sessions'] / r['machines']:g}) | "
            f"**{r['ops_per_second']:.2f}** | {r['pushes_in_window'] / span:.2f} | "
            f"{r['ops_per_push']:.2f} | {r['p50']:.2f} / {r['p95']:.2f} / {r['max']:.2f} s | "
            f"{r['fewest']}–{r['most']} | {r['starved']} | {r['lost']} | "
            f"{r['double_grants']} | {r['error_count']} |"
        )
    failed = [r for r in d["configs"] if r["error_count"]]
    if failed:  # what the errors were: a count alone says nothing of a timeout vs a bug
        lines += ["", "Errors (the first of each configuration's, as the sessions reported them):"]
        lines += [
            f"- {r['sessions']} on {r['machines']}: {r['error_count']}, e.g. "
            f"`{str(r['errors'][0])[:300]}`"
            for r in failed
            if r["errors"]
        ]
    lines += verdict([r for r in d["configs"] if r["sessions"] >= 200])
    return lines


def verdict(big: list[dict[str, Any]]) -> list[str]:
    """Against #16's 200-session target: the median of each machine count's runs (one
    window is too noisy to judge by), the best of those medians, and every run's losses."""
    if not big:
        return []
    by_machines: dict[int, list[float]] = {}
    for r in big:
        by_machines.setdefault(r["machines"], []).append(r["ops_per_second"])
    medians = {m: median(v) for m, v in by_machines.items()}
    best = max(medians, key=lambda m: medians[m])
    lost = sum(r["lost"] for r in big)
    met = medians[best] >= TARGET_OPS and lost == 0
    runs = "; ".join(
        f"{m} machines: median {medians[m]:.2f} of " + ", ".join(f"{v:.2f}" for v in by_machines[m])
        for m in sorted(by_machines)
    )
    return [
        "",
        f"Against #16's target (200 sessions, hook and signatures, ≥ {TARGET_OPS:g} landed "
        f"operations per second, 0 lost), judged on the median of each configuration's runs "
        f"({runs}): best {medians[best]:.2f} ops/s ({best} machines), lost {lost}: "
        + ("**met**." if met else "**not met** on these 2 cores."),
    ]


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.selfhosted")
    ap.add_argument("--sessions", type=int, default=200)
    ap.add_argument("--machines", type=int, default=50)
    ap.add_argument("--rtt-ms", type=float, default=50.0)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument(
        "--no-carry",
        action="store_true",
        help="GITCOORD_CARRY=0 in every machine: no clone publishes or carries requests "
        "(to compare with carrying, on by default)",
    )
    ap.add_argument("--json", help="also write the measurements to this file")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="gitcoord-selfhosted-") as tmp:
        (Path(tmp) / "home").mkdir()
        env = common.hermetic_env(Path(tmp) / "home")
        if args.no_carry:
            env["GITCOORD_CARRY"] = "0"
        common.use_env(env)
        data = measure(
            Path(tmp), env, args.sessions, args.machines, args.rtt_ms / 1000, args.seconds
        )
    if args.json:
        Path(args.json).write_text(json.dumps(data, indent=1))
    print(
        f"{data['sessions']} sessions on {data['machines']} machines, "
        f"{args.rtt_ms:g} ms round trip, hook and signatures: "
        f"{data['ops_per_second']:.2f} landed ops/s over {data['seconds'] - data['warm']:.0f} s; "
        f"{data['pushes_in_window']} pushes, {data['ops_per_push']:.2f} ops per push; "
        f"latency p50 {data['p50']:.2f} s, p95 {data['p95']:.2f} s, max {data['max']:.2f} s; "
        f"fewest successes {data['fewest']} (most {data['most']}, {data['starved']} sessions "
        f"with none); lost {data['lost']}, double grants {data['double_grants']}; "
        f"errors {data['error_count']} {data['errors'][:2]} setup {data['setup_errors'][:2]}"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
