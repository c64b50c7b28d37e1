"""Sessions sharing one clone at real network latency: group commit on and off.

`python -m benchmarks.sharing [RTT_MS] [SECONDS]` (default 50 ms, 15 s): 1 and 8
long-lived sessions (each a process with its own `Coordinator`, as an MCP server runs)
in ONE clone, alternating claim/release of a resource of their own through `git daemon`
behind the delay proxy (`testing.netdelay`), with group commit (the default) and with
`GITCOORD_GROUP=0`. Prints a Markdown table: throughput and its multiple of one
session's, latency p50/p95/max (and p95 in raw-floor rounds), successes per session,
lost updates and double grants. Issue #16 asks 8 sessions sharing a clone for at least
4x one session's throughput with p95 within 3 rounds.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from testing import servers
from testing.netdelay import DelayProxy

from . import common, netdelay


def measure(tmp: Path, rtt: float, duration: float) -> dict[str, dict[int, dict[str, Any]]]:
    (tmp / "home").mkdir()
    env = common.hermetic_env(tmp / "home")
    out: dict[str, dict[int, dict[str, Any]]] = {}
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
            out[label] = {
                n: netdelay.level(sub, run_env, url, netdelay.NOW, rtt, n, duration, shared=True)
                for n in (1, 8)
            }
    return out


def table(data: dict[str, dict[int, dict[str, Any]]], floor: float | None) -> str:
    rows = [
        "| sessions in one clone | pushes | writes/s | × 1 session | p50 / p95 / max | "
        "p95 in rounds | successes per session | lost | double grants |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, levels in data.items():
        one = levels[1]["throughput"]
        for n, r in levels.items():
            rounds = f"{r['p95'] / floor:.1f}" if floor else "–"
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
    floor = float(argv[2]) / 1000 if len(argv) > 2 else None  # the raw floor, from §9
    with common.workdir(keep=False) as tmp:
        print(table(measure(tmp, rtt, duration), floor))


if __name__ == "__main__":
    main(sys.argv[1:])
