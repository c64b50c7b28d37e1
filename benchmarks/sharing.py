"""Sessions sharing one clone at real network latency: group commit on and off.

`python -m benchmarks.sharing [RTT_MS] [SECONDS]` (default 50 ms, 15 s): 1 and 8
long-lived sessions (each a process with its own `Coordinator`, as an MCP server runs)
in ONE clone, alternating claim/release of a resource of their own through `git daemon`
behind the delay proxy (`testing.netdelay`), with group commit (the default) and with
`GITCOORD_GROUP=0`. Prints a Markdown table: throughput and its multiple of one
session's, latency p50/p95/max (and p95 in rounds of the raw floor, measured in the same
run through the same proxy: fetch + plumbing + push), successes per session, lost
updates and double grants. Issue #16 asks 8 sessions sharing a clone for at least
4x one session's throughput with p95 within 3 rounds.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from testing import servers
from testing.netdelay import DelayProxy

from . import common, netdelay
from .latency import raw_floor

FLOOR_RUNS = 12  # raw floor rounds, after one warm-up; the median is kept


def floor(tmp: Path, env: dict[str, str], url: str) -> float:
    """The raw git floor (fetch + plumbing + push) through `url`, median seconds."""
    root = tmp / "floor"
    root.mkdir()
    remote = netdelay._remote(root, env, "raw")
    clone = netdelay._clone(remote, root / "raw", f"{url}/{root.relative_to(tmp)}/raw.git", env)
    op = raw_floor(clone, env, "gitcoord")
    op(0)
    return common.median([common.timed(lambda i=i: op(i))[0] for i in range(1, FLOOR_RUNS + 1)])


def measure(
    tmp: Path, rtt: float, duration: float
) -> tuple[dict[str, dict[int, dict[str, Any]]], float]:
    (tmp / "home").mkdir()
    env = common.hermetic_env(tmp / "home")
    out: dict[str, dict[int, dict[str, Any]]] = {}
    rounds = float("nan")
    for label, extra in (("grouped", {}), ("alone (GITCOORD_GROUP=0)", {"GITCOORD_GROUP": "0"})):
        run_env = {**env, **extra}
        common.use_env(run_env)  # the sessions are forked: they inherit it
        sub = tmp / label.split()[0]  # a daemon of its own: level() names its folders alike
        sub.mkdir()
        with (
            servers.git_daemon(sub) as base,
            DelayProxy(int(base.rsplit(":", 1)[1]), rtt) as proxy,
        ):
            url = f"git://127.0.0.1:{proxy.port}"
            if rounds != rounds:  # NaN: not measured yet
                rounds = floor(sub, run_env, url)
            out[label] = {
                n: netdelay.level(sub, run_env, url, netdelay.NOW, rtt, n, duration, shared=True)
                for n in (1, 8)
            }
    return out, rounds


def table(data: dict[str, dict[int, dict[str, Any]]], floor: float) -> str:
    rows = [
        "| sessions in one clone | pushes | writes/s | × 1 session | p50 / p95 / max | "
        "p95 in rounds | successes per session | lost | double grants |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, levels in data.items():
        one = levels[1]["throughput"]
        for n, r in levels.items():
            rounds = f"{r['p95'] / floor:.1f}"
            rows.append(
                f"| {n} | {label} | {r['throughput']:.2f} | {r['throughput'] / one:.2f}× | "
                f"{r['p50'] * 1000:.0f} / {r['p95'] * 1000:.0f} / {r['max'] * 1000:.0f} ms | "
                f"{rounds} | {min(r['per_session'])}–{max(r['per_session'])} | {r['lost']} | "
                f"{r['double_grants']} |"
            )
    return "\n".join(rows)


def main(argv: list[str]) -> None:
    rtt = float(argv[0]) / 1000 if argv else 0.05
    duration = float(argv[1]) if len(argv) > 1 else 15.0
    with common.workdir(keep=False) as tmp:
        data, rounds = measure(tmp, rtt, duration)
        print(f"raw floor (a round): {rounds * 1000:.0f} ms, median of {FLOOR_RUNS}")
        print(table(data, rounds))


if __name__ == "__main__":
    main(sys.argv[1:])
