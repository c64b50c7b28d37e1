"""RESULTS.md and the contention chart, from the measurements of one run."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from . import common, netdelay, selfhosted
from .common import median, ms, pct
from .contention import EXPERIMENTS, NAIVE, OWN, PREVIOUS, SHARED, TURNS
from .growth import TARGET_ROWS
from .signing import (
    BASELINE,
    CHECK,
    CLI_REQUIRED,
    CLI_UNSIGNED,
    FIRST_OFF,
    FIRST_ON,
    INPROC_CHECK,
    INPROC_SIGN,
    RANGE_OFF,
    RANGE_ON,
    REQUIRED,
    REQUIRED2,
    SIGN,
    SIGNED,
    SPAWN,
    UNSIGNED,
    UNSIGNED2,
)
from .single import AGENT, CLIENT, CLIMAIN, COLD, FLOOR, INPROC, VERSION

# The field notes' naive floor, measured earlier on a 2-core machine (ops/s).
FIELD_NOTES_NAIVE = {1: 20.6, 4: 11.6, 8: 6.3, 16: 2.8}


def _x(v: float) -> str:
    return "–" if v != v else f"{v:.2f}×"


def _ok(met: bool | str | None) -> str:
    if isinstance(met, str):
        return met
    return "n/a" if met is None else ("**met**" if met else "**not met**")


# --- the numbers each target is judged on ----------------------------------------------------


def _floor_ratios(data: dict[str, Any], transport: str = "file") -> dict[str, float]:
    series = data.get("single", {}).get("series", {}).get(transport)
    if not series:
        return {}
    floor = median(series[FLOOR])
    return {row: median(xs) / floor for row, xs in series.items()}


def _one_session(curves: dict[str, dict[int, dict[str, Any]]], name: str) -> float:
    """One session's throughput, the baseline of a curve. The gitcoord curves share one:
    the mean of their identical 1-session measurements (one clone, one session), which
    cuts the noise every ratio of those curves carries."""
    if name == NAIVE:
        return float(curves[NAIVE].get(1, {}).get("throughput") or "nan")
    ones = [curves[c][1]["throughput"] for c in (OWN, TURNS, SHARED) if 1 in curves.get(c, {})]
    return sum(ones) / len(ones) if ones else float("nan")


def _relative(curves: dict[str, dict[int, dict[str, Any]]], name: str) -> dict[int, float]:
    one = _one_session(curves, name)
    return {n: d["throughput"] / one for n, d in curves[name].items()}


def _growth_ratios(data: dict[str, Any], dim: str) -> dict[str, float]:
    pair = data.get("growth", {}).get("pairs", {}).get(dim)
    if not pair:
        return {}
    small, large = pair["sizes"]
    rows = pair["rows"]
    return {r: median(rows[large][r]) / median(rows[small][r]) for r in rows[small]}


def _same_work(data: dict[str, Any], dim: str) -> bool:
    """Did every target row read the same objects and start the same git processes at
    both sizes (a measure of work the machine's load cannot blur)?"""
    pair = data.get("growth", {}).get("pairs", {}).get(dim, {})
    work = pair.get("work", {})
    if len(work) != 2:
        return False
    small, large = pair["sizes"]
    return all(work[small].get(r) == work[large].get(r) for r in TARGET_ROWS)


def targets(data: dict[str, Any]) -> list[tuple[str, str, bool | str | None]]:
    out: list[tuple[str, str, bool | str | None]] = []
    fr = _floor_ratios(data)
    if fr:
        cold, agent = fr.get(COLD, float("nan")), fr.get(AGENT, float("nan"))
        out.append(
            (
                "`gitcoord claim` as a CLI process ≤ 3× the raw floor (file://); the agent "
                "is the design for it",
                f"through the agent {_x(agent)}; truly cold (`GITCOORD_AGENT=0`) {_x(cold)}",
                agent <= 3.0,
            )
        )
        out.append(
            (
                "in-process claim ≤ 1× the raw floor",
                _x(fr.get(INPROC, float("nan"))),
                fr.get(INPROC, 99) <= 1.0,
            )
        )
    curves = data.get("contention", {}).get("curves")
    if curves:
        for n, need in ((8, 1.0), (16, 0.8)):
            for name, where in (
                (OWN, "each in its own clone (racing, the default)"),
                (TURNS, "each in its own clone, taking turns (GITCOORD_TURN=machine)"),
                (SHARED, "sharing one clone"),
            ):
                rel = _relative(curves, name)
                if n in rel:
                    out.append(
                        (
                            f"{n} concurrent sessions on distinct resources, {where}: "
                            f"aggregate throughput ≥ {need:g}× one session's",
                            _x(rel[n]),
                            rel[n] >= need,
                        )
                    )
    lost = 0
    seen = False
    if curves:
        seen = True
        lost += sum(d["lost"] for c in curves.values() for d in c.values())
    wd = data.get("workday", {}).get("sizes", {})
    if wd:
        seen = True
        lost += sum(d["lost"] for d in wd.values())
        ab = data["workday"].get("ride_ab", {})
        lost += sum(d["lost"] for runs in ab.values() for d in runs.values())
    if seen:
        out.append(
            (
                "0 lost updates (every success reported is on the branch at the end)",
                f"{lost} lost",
                lost == 0,
            )
        )
    for dim, what in (("history", "history length"), ("messages", "total message count")):
        gr = _growth_ratios(data, dim)
        if gr:
            worst = max(TARGET_ROWS, key=lambda r: gr[r])
            by_time = all(gr[r] <= 1.1 for r in TARGET_ROWS)
            same = _same_work(data, dim)
            got = (
                f"worst {_x(gr[worst])} ({worst}); "
                + ", ".join(f"{r.split(',')[0]} {_x(gr[r])}" for r in TARGET_ROWS[:2])
                + ("; identical work at both sizes" if same else "; the work differs")
            )
            verdict: bool | str = by_time
            if not by_time and same:
                verdict = "**met by work, not by time**: the time excess is noise"
            out.append((f"status and inbox independent of {what} (10k ≤ 1.1× small)", got, verdict))
    if 12 in wd:
        d = wd[12]
        out.append(
            (
                "the 12-session workday at or under 6 pushes per (simulated) minute",
                f"{d['pushes_per_minute']:.2f} pushes/min",
                d["pushes_per_minute"] <= 6.0,
            )
        )
    for n, runs in sorted(data.get("workday", {}).get("ride_ab", {}).items()):
        on = runs["on"]
        out.append(
            (
                f"the {n}-session workday at or under 6 pushes per (simulated) minute, "
                "riding on (landed; with refused ones)",
                f"{on['pushes_per_minute']:.2f}; {on['push_attempts_per_minute']:.2f} "
                f"pushes/min (off: {runs['off']['pushes_per_minute']:.2f}; "
                f"{runs['off']['push_attempts_per_minute']:.2f})",
                on["push_attempts_per_minute"] <= 6.0
                or (
                    "**met by landed pushes**, not with refused ones"
                    if on["pushes_per_minute"] <= 6.0
                    else False
                ),
            )
        )
    if wd:
        dg = sum(d["double_grants"] for d in wd.values())
        out.append(("0 double grants in the workday (work collisions)", f"{dg}", dg == 0))
    return out


# --- tables -------------------------------------------------------------------------------


def _single_table(data: dict[str, Any]) -> list[str]:
    s = data["single"]
    series = s["series"]["file"]
    floor = median(series[FLOOR])
    lines = [
        f"Round-robin series on a `file://` remote: {s['runs']} rounds after a warm-up round; "
        "each round runs every row once, in a rotated order.",
        "",
        "| operation | median | p90 | × floor |",
        "|---|---:|---:|---:|",
    ]
    for row in (FLOOR, COLD, AGENT, INPROC):  # the probes go to the analysis
        if row in series:
            xs = series[row]
            lines.append(
                f"| {row} | {ms(median(xs))} | {ms(pct(xs, 90))} | {_x(median(xs) / floor)} |"
            )
    return lines


def _transport_table(data: dict[str, Any]) -> list[str]:
    s = data["single"]
    lines = [
        f"Medians of {s['transport_runs']} round-robin rounds per transport "
        f"({s['runs']} on file://), on loopback.",
        "",
        "| transport | raw floor | claim in process | × floor | CLI through agent | × floor |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for transport, series in s["series"].items():
        floor = median(series[FLOOR])
        inp = median(series.get(INPROC, []))
        agt = median(series.get(AGENT, []))
        lines.append(
            f"| {transport} | {ms(floor)} | {ms(inp)} | {_x(inp / floor)} | {ms(agt)} | "
            f"{_x(agt / floor)} |"
        )
    lines += [""] + [f"- {n}" for n in s["notes"]]
    return lines


START_ROWS = (
    "interpreter alone (python -S)",
    "python start (site: the venv's .pth files)",
    "python -S + gitcoord.client import",
    "python start + gitcoord.client import",
    "`gitcoord --version` through the warm agent",
    "`gitcoord --version` through an agent with gc.freeze() (experiment)",
    "python start + CLI imports",
    "python start + imports + models built",
)


def _phases_table(data: dict[str, Any]) -> list[str]:
    p = data["phases"]
    lines = [
        "Medians per phase of an in-process claim (the store's steps timed on one instance), "
        "and of the first claim of a new `Coordinator` (what every CLI command pays after "
        "its imports, in a cold process or in the agent's child):",
        "",
        "| phase | claim, warm Coordinator | first claim, new Coordinator |",
        "|---|---:|---:|",
    ]
    first = p.get("first claim of a new Coordinator", {})
    for k, xs in p["claim"].items():
        lines.append(f"| {k} | {ms(median(xs))} | {ms(median(first.get(k, [])))} |")
    layer = p.get("cli layer")
    if layer:
        a, b = median(layer["cli.main claim"]), median(layer["Coordinator.claim"])
        lines += [
            "",
            f"The CLI layer in a warm process (what the agent's child runs): `cli.main` claim "
            f"{ms(a)} vs `Coordinator.claim` {ms(b)} (+{ms(a - b)}: parsing, a new "
            "Coordinator — `git rev-parse`, `git config`, a new `cat-file` — and output).",
        ]
    start = median(p["interpreter alone (python -S)"])
    lines += [
        "",
        "| process start-up (no git work) | median | beyond the bare interpreter |",
        "|---|---:|---:|",
    ]
    for k in START_ROWS:
        if k in p:
            m = median(p[k])
            beyond = "–" if k.startswith("interpreter") else ms(m - start)
            lines.append(f"| {k} | {ms(m)} | {beyond} |")
    return lines


def _contention_table(data: dict[str, Any]) -> list[str]:
    c = data["contention"]
    curves = c["curves"]
    levels = sorted(curves[OWN])
    rel = {name: _relative(curves, name) for name in curves}
    lines = [
        f"Each level: a fresh remote with the same seeded state, a {c['duration']:g} s window "
        "after every process is ready; throughput counts completions after the window's "
        "warm-up. Sessions alternate claim/release of their own resource (one commit each); "
        "naive writers rewrite their own file. × 1 is relative to one session: for the "
        f"gitcoord curves the mean of their identical 1-session runs "
        f"({_one_session(curves, OWN):.2f} ops/s), for the naive floor its own.",
        "",
        "| sessions | separate clones, racing (default): ops/s | × 1 | separate clones, taking "
        "turns (GITCOORD_TURN=machine): ops/s | × 1 | one shared clone: ops/s | × 1 | naive "
        "floor: ops/s | × 1 | field notes' naive |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n in levels:
        cells = []
        for name in (OWN, TURNS, SHARED, NAIVE):
            d = curves.get(name, {}).get(n)
            cells += [f"{d['throughput']:.2f}", _x(rel[name][n])] if d else ["–", "–"]
        fn = FIELD_NOTES_NAIVE.get(n)
        lines.append(f"| {n} | " + " | ".join(cells) + f" | {fn if fn else '–'} |")
    exp = [e for e in EXPERIMENTS if curves.get(e)]
    if exp:
        lines += [
            "",
            "Experiment (a benchmark-only patch of one `Store` instance in each session "
            "process, not gitcoord's behaviour; see benchmarks/contention.py):",
            "",
            "| sessions | experiment | ops/s | × 1 | attempts per success | op latency p50 / p95 |",
            "|---:|---|---:|---:|---:|---:|",
        ]
        for n in levels:
            for e in exp:
                if n in curves[e]:
                    d = curves[e][n]
                    lines.append(
                        f"| {n} | {e} | {d['throughput']:.2f} | {_x(rel[e][n])} | "
                        f"{1 + d['retries'] / max(1, d['reported']):.2f} | "
                        f"{ms(median(d['latency']))} / {ms(pct(d['latency'], 95))} |"
                    )
    lines += [
        "",
        "| sessions | curve | op latency p50 / p95 | attempts per success (max) | loser "
        "latency to exit 3: p50 / p95 (losers) | one winner per race | lost updates | "
        "errors |",
        "|---:|---|---:|---:|---:|:-:|---:|---:|",
    ]
    for n in levels:
        for name in (OWN, TURNS, SHARED, NAIVE):
            if n not in curves.get(name, {}):
                continue
            d = curves[name][n]
            succ = d["reported"] or 1
            losers = d["losers"]
            lose = (
                f"{ms(median(losers))} / {ms(pct(losers, 95))} ({len(losers)})" if losers else "–"
            )
            lines.append(
                f"| {n} | {name} | {ms(median(d['latency']))} / {ms(pct(d['latency'], 95))} | "
                f"{1 + d['retries'] / succ:.2f} ({d['max_attempts']}) | {lose} | "
                f"{'yes' if d['one_winner_each_round'] else 'NO'} | {d['lost']} | "
                f"{d['error_count']} |"
            )
    errors = [e for cv in curves.values() for d in cv.values() for e in d["errors"]]
    if errors:
        lines += ["", f"First errors: {errors[:3]}"]
    return lines


def _growth_tables(data: dict[str, Any]) -> list[str]:
    g = data["growth"]
    lines = [
        "In process, medians of the rounds given with each pair (after a warm-up round), the "
        "two sizes of a pair measured in alternating rounds. *Work* is what alice's process "
        "did: objects read through `cat-file` / git processes started — it does not depend "
        "on the machine's load."
    ]
    for dim, pair in g["pairs"].items():
        small, large = pair["sizes"]
        rows = pair["rows"]
        work = pair.get("work", {})
        load = pair.get("load", {})
        lines += [
            "",
            f"**{dim}: {small} vs {large}** ({pair.get('runs', g['runs'])} rounds; built in "
            + " / ".join(f"{pair['build_seconds'][s]:.1f} s" for s in pair["sizes"])
            + ")",
            "",
            f"| operation | {small} | {large} | ratio | of which loading the state | "
            "work (objects / git processes) |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for r in rows[small]:
            a, b = median(rows[small][r]), median(rows[large][r])
            mark = " (target)" if r in TARGET_ROWS and dim != "claims" else ""
            la = median(load.get(small, {}).get(r, []))
            lb = median(load.get(large, {}).get(r, []))
            wa, wb = work.get(small, {}).get(r), work.get(large, {}).get(r)
            w = f"{wa[0]} / {wa[1]} → {wb[0]} / {wb[1]}" if wa and wb else "–"
            lines.append(
                f"| {r}{mark} | {ms(a)} | {ms(b)} | {_x(b / a)} | {ms(la)} → {ms(lb)} | {w} |"
            )
    return lines


def _real_load(d: dict[str, Any]) -> float:
    """Share of the cores the uncompressed day would keep busy: events per real minute
    times the calibrated cost of one transaction, over the cores' seconds per minute."""
    return float(d["events_per_minute"] * d["per_event_estimate"] / (60 * d["cores"]))


def _pushes_cell(d: dict[str, Any]) -> str:
    """Landed pushes, and refused ones beside them (older runs counted commits)."""
    if "refused_pushes" not in d:
        return str(d["pushes"])
    return f"{d['pushes']} (+{d['refused_pushes']} refused)"


def _per_minute_cell(d: dict[str, Any]) -> str:
    if "push_attempts_per_minute" not in d:
        return f"{d['pushes_per_minute']:.2f}"
    return f"{d['pushes_per_minute']:.2f} ({d['push_attempts_per_minute']:.2f} with refused)"


def _ride_table(data: dict[str, Any]) -> list[str]:
    """Riding off and on, each size of `ride_ab`, at the same (gentler) compression."""
    ab = data["workday"].get("ride_ab") or {}
    if not ab:
        return []
    n, runs = sorted(ab.items())[0]
    pace = runs["on"]["pace"]
    lines = [
        f"Held heartbeats and read marks riding the machine's pushes (*Heartbeats ride* in the "
        f"README), off and then on, at {n} sessions, both at {pace:.1f} real seconds per "
        f"simulated minute ({60 / pace:.0f}× compressed), "
        f"{runs['on']['minutes']:.0f} simulated minutes each. A push that carries riders is "
        "one push; refused pushes count against a host's limits too:",
        "",
        "| riding | pushes per minute (landed) | refused per minute | all pushes per minute | "
        "heartbeats | read marks | claims | messages | commits (of them riders) | lost | "
        "double grants |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label in ("off", "on"):
        d = runs[label]
        src = d["pushes_by_source"]
        m = d["minutes"]
        lines.append(
            f"| {label} | {d['pushes_per_minute']:.2f} | {d['refused_pushes'] / m:.2f} | "
            f"**{d['push_attempts_per_minute']:.2f}** | {src['heartbeats'] / m:.2f} | "
            f"{src['read marks'] / m:.2f} | {src['claims'] / m:.2f} | "
            f"{src['messages'] / m:.2f} | {d['commits']} ({d['rode']}) | {d['lost']} | "
            f"{d['double_grants']} |"
        )
    return lines


def _workday_table(data: dict[str, Any]) -> list[str]:
    w = data["workday"]["sizes"]
    lines = [
        "| sessions | worker processes / clones (= machines) | simulated window | "
        "real s per sim minute | "
        "events run (skipped) | pushes | pushes per sim minute | latency p50 / p95 (all events) | "
        "latency p50 / p95 (pushes) | retries (tx retried / tx) | max attempts | refused "
        "claims | lost updates | double grants | lag behind schedule p50 / p95 | the real "
        "day's load on these cores |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n, d in sorted(w.items()):
        lag = d["lag"]
        lines.append(
            f"| {n} | {d['workers']} / {d.get('clones', d['workers'])} | "
            f"{d['minutes']:.1f} min | {d['pace']:.2f} s | "
            f"{d['run']} ({d['skipped']}) | {_pushes_cell(d)} | {_per_minute_cell(d)} | "
            f"{ms(median(d['latency_all']))} / {ms(pct(d['latency_all'], 95))} | "
            f"{ms(median(d['latency_push']))} / {ms(pct(d['latency_push'], 95))} | "
            f"{d['retries']} ({d['retried_tx']} / {d['transactions']}) | {d['max_attempts']} | "
            f"{d['refused_claims']} | {d['lost']} | {d['double_grants']} | "
            f"{ms(median(lag))} / {ms(pct(lag, 95))} | {100 * _real_load(d):.1f}% |"
        )
    sourced = {n: d for n, d in sorted(w.items()) if "pushes_by_source" in d}
    if sourced:
        names = list(next(iter(sourced.values()))["pushes_by_source"])
        lines += [
            "",
            "Pushes per simulated minute by source (share of all pushes), against GitHub's "
            "published guidance of at most 6 pushes per minute per repository:",
            "",
            "| sessions | machines (sessions each) | pushes per minute | "
            + " | ".join(names)
            + " | × GitHub's 6 per minute |",
            "|---:|---:|---:|" + "---:|" * len(names) + "---:|",
        ]
        for n, d in sourced.items():
            total = max(1, d["pushes"])
            cells = [
                f"{v / d['minutes']:.2f} ({100 * v / total:.0f}%)"
                for v in d["pushes_by_source"].values()
            ]
            lines.append(
                f"| {n} | {d['clones']} ({d.get('per_machine', '–')}) | "
                f"{d['pushes_per_minute']:.2f} | " + " | ".join(cells) + " | "
                f"{d['pushes_per_minute'] / 6:.2f}× |"
            )
    lines += ["", "Pushes by kind of event:", ""]
    for n, d in sorted(w.items()):
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(d["pushes_by_kind"].items()))
        extra = f"; errors: {d['errors']}" if d["errors"] else ""
        lines.append(
            f"- {n} sessions: {kinds} (branch gained {d['pushes_on_branch']} commits; "
            f"calibrated transaction {ms(d['per_event_estimate'])}, "
            f"{d['events_per_minute']:.1f} events per simulated minute){extra}"
        )
    return lines


# --- analysis ----------------------------------------------------------------------------------


def _m(data: dict[str, Any], *keys: str) -> float:
    cur: Any = data
    for k in keys:
        if not isinstance(cur, dict) or k not in cur:
            return float("nan")
        cur = cur[k]
    return median(cur) if isinstance(cur, list) else float("nan")


def _diff(a: float, b: float) -> str:
    """a − b, or a plain statement when noise makes it come out negative."""
    d = a - b
    return ms(d) if d >= 0 else f"≈ 0 (within the noise: {ms(d)})"


def _cli_analysis(data: dict[str, Any], met: dict[str, bool | str | None]) -> list[str]:
    series = data["single"]["series"]["file"]
    f, i = median(series[FLOOR]), median(series[INPROC])
    a, c = median(series.get(AGENT, [])), median(series.get(COLD, []))
    client = median(series.get(CLIENT, []))
    version = median(series.get(VERSION, []))
    climain = median(series.get(CLIMAIN, []))
    p = data.get("phases", {})
    interp = _m(p, "interpreter alone (python -S)")
    start = _m(p, "python start (site: the venv's .pth files)")
    pclient = _m(p, "python start + gitcoord.client import")
    pversion = _m(p, "`gitcoord --version` through the warm agent")
    pfrozen = _m(p, "`gitcoord --version` through an agent with gc.freeze() (experiment)")
    warm = _m(p, "python start + imports + models built")
    verdict = "met" if met.get("cli") else "not met"
    freeze_helps = (pfrozen - pclient) < 0.8 * (pversion - pclient)
    freeze = "; `gc.freeze()` after `_warm()`" if freeze_helps else ""
    out = [
        f"**CLI claim ≤ 3× the floor ({verdict}).** Through the agent a claim took {ms(a)} "
        f"({_x(a / f)} the floor's {ms(f)}); truly cold {ms(c)} ({_x(c / f)}). Probes "
        "measured in the same rounds decompose the agent path:",
        f"- the client process alone (start Python, import `gitcoord.client`): {ms(client)}, "
        f"{_x(client / f)} the floor by itself. In the start-up probes (section below), of "
        f"{ms(pclient)}: the bare interpreter {ms(interp)}, `site` {_diff(start, interp)} "
        "(the venv's .pth files: `.ci/run` installs in editable *compat* mode, a plain path, "
        "because setuptools' default `__editable__` finder imports pathlib at every start, "
        f"~30 ms), the client's imports (socket, json, struct, zlib) {_diff(pclient, start)};",
        f"- `gitcoord --version` through the agent (the client plus the round trip: connect, "
        f"the environment as JSON, fork, click, reply): {ms(version)}, so the round trip is "
        f"{_diff(version, client)}. Side by side, an agent with `gc.freeze()` after its "
        f"warm-up (experiment) answered in {ms(pfrozen)} vs {ms(pversion)};",
        f"- the child's work, the claim through `cli.main` in a warm process: {ms(climain)} "
        f"vs {ms(i)} through a long-lived `Coordinator` — the CLI layer (a new `Coordinator` "
        "per command: `git rev-parse`, `git config`, a new `cat-file --batch`; parsing; "
        f"output) is {_diff(climain, i)};",
        f"- client + round trip + child = {ms(version + climain)}, against the {ms(a)} measured.",
        f"The truly cold process pays instead {_diff(warm, interp)} of `site`, imports and "
        "model building before any git work: that is what the agent removes.",
    ]
    if not met.get("cli"):
        out.append(
            "To change (client and agent, not the transaction): start the console script "
            "without `site` (a launcher running `python -S -I` with the package's path set)"
            f"{freeze}; let the agent cache per directory what `Coordinator()` discovers with "
            "two git processes (`rev-parse`, `config`; re-read when `.git/config` changes)."
        )
    else:
        out.append(
            "Done since the first runs: the client imports only what talking to the agent "
            "needs (subprocess, tempfile, hashlib and typing only when no agent answers: ~30 ms "
            "less), and the development install no longer runs an import hook at start-up. "
            "Still possible: a launcher that starts the client without `site` (`python -S -I`)"
            f"{freeze}, and per-directory caching in the agent of what `Coordinator()` "
            "discovers with `git rev-parse` and `git config`."
        )
    return out


def _inproc_analysis(data: dict[str, Any], met: dict[str, bool | str | None]) -> list[str]:
    series = data["single"]["series"]["file"]
    f, i = median(series[FLOOR]), median(series[INPROC])
    ph = data.get("phases", {}).get("claim", {})
    parts = ", ".join(f"{k} {ms(median(v))}" for k, v in ph.items() if k != "total")
    verdict = "met" if met.get("inproc") else "not met"
    out = [
        f"**In-process claim ≤ 1× the floor ({verdict}: {_x(i / f)}).** A transaction starts "
        "two git processes (fetch, push) where the floor starts eight, and does the rest in "
        f"process: {parts}. The fetch and the push are the floor's own dominant costs, so "
        "the claim can at best tie the floor plus its Python work."
    ]
    if not met.get("inproc"):
        out.append(
            "The excess is the Python work above; loading the state already parses only the "
            "files changed since the last command (the parse cache, see Growth/claims)."
        )
    return out


def _contention_analysis(data: dict[str, Any], met: dict[str, bool | str | None]) -> list[str]:
    curves = data["contention"]["curves"]
    duration = float(data["contention"].get("duration", float("nan")))
    rel = {n: _relative(curves, n) for n in curves if curves[n]}
    nan = float("nan")

    def att(name: str, n: int) -> str:
        d = curves.get(name, {}).get(n)
        return "–" if not d else f"{1 + d['retries'] / max(1, d['reported']):.1f}"

    def at(name: str, n: int) -> str:
        return _x(rel.get(name, {}).get(n, nan))

    out = [
        "**Contention.** Sessions sharing a clone take turns (an flock in the clone's "
        "`.git`); separate clones race through the remote, as separate machines do, and the "
        "loser of a round backs off by full jitter over that round's own length × "
        "2^(attempt−1) (at most a third of the time left before the deadline: a fixed 2 s "
        f"cap kept 16 racers colliding). Separate clones racing: {at(OWN, 8)} at 8 and "
        f"{at(OWN, 16)} at 16 ({att(OWN, 8)} and {att(OWN, 16)} attempts per success); one "
        f"shared clone, taking turns: {at(SHARED, 8)}, {at(SHARED, 16)}; separate clones "
        f"taking turns machine-wide (`GITCOORD_TURN=machine`, the default until this run's "
        f"commit): {at(TURNS, 8)}, {at(TURNS, 16)}. The naive floor: {at(NAIVE, 8)}, "
        f"{at(NAIVE, 16)}. Every losing attempt is a fetch, a state load, object writing and "
        "a push refused, and here all sessions share two cores with each other and with the "
        "remote, so each wasted attempt is taken from the winners; sessions on machines of "
        "their own would lose only the remote's share.",
    ]

    def step(name: str, n: int, what: str) -> float:
        return float(curves.get(name, {}).get(n, {}).get("phases", {}).get(what, nan))

    turns8 = rel.get(TURNS, {}).get(8, nan)
    if turns8 < 1 and curves.get(TURNS, {}).get(8, {}).get("phases"):
        one = curves[TURNS].get(1, {}).get("throughput", nan)
        out.append(
            "Why separate clones taking turns stay below one session's rate: a turn cannot "
            "overlap another, and with separate clones each turn costs more than a lone "
            "session's operation. The store's steps timed in the session processes (medians; "
            "1 session → 8 in their own clones, and 8 sharing one clone): fetch "
            f"{ms(step(TURNS, 1, 'fetch'))} → {ms(step(TURNS, 8, 'fetch'))} (shared "
            f"{ms(step(SHARED, 8, 'fetch'))}): the fetch brings the objects of every commit "
            "the others made since this clone's last turn, a pack each time, which a shared "
            f"clone already has; load {ms(step(TURNS, 1, 'load'))} → "
            f"{ms(step(TURNS, 8, 'load'))}: the files the others changed are parsed (the "
            f"parse cache skips only unchanged ones); push {ms(step(TURNS, 1, 'push'))} → "
            f"{ms(step(TURNS, 8, 'push'))}. One session here ran at {one:.1f} ops/s, about "
            "twice the previous RESULTS.md's 4.8, since the parse cache: the turn-taking "
            "curves' absolute throughput rose, their ratio fell. Racing overlaps the "
            f"clones' fetches and parsing on both cores instead; in this run it gave "
            f"{at(OWN, 8)} vs {at(TURNS, 8)} taking turns at 8 and {at(OWN, 16)} vs "
            f"{at(TURNS, 16)} at 16 (racing at 16 is the most variable figure between runs: "
            f"its backoff windows reach seconds, a large part of a {duration:g} s window). "
            "A clone shared by the sessions avoids both costs: one object store, one parse "
            "cache, turns served at once. Reaching 1× with separate clones needs a turn "
            "to do several sessions' work: batching the writes of the sessions waiting for "
            "the turn into the holder's commit (each op is a pure function of the state, so "
            "they compose; the hard part is handing each waiter its own result or conflict "
            "across processes) — not built."
        )
    if curves.get(PREVIOUS):
        out.append(
            f"What the current store bought, measured in this run by patching it back (per-"
            f"clone turn, a fixed 15 ms backoff base): separate clones on one machine "
            f"{at(PREVIOUS, 8)} at 8 and {at(PREVIOUS, 16)} at 16 ({att(PREVIOUS, 8)} and "
            f"{att(PREVIOUS, 16)} attempts per success), against {at(OWN, 8)} and "
            f"{at(OWN, 16)} now (racing) and {at(TURNS, 8)} and {at(TURNS, 16)} taking turns."
        )
    timeouts = sum(
        1 for cv in curves.values() for d in cv.values() for e in d["errors"] if "exit 6" in e
    )
    if timeouts:
        out.append(
            f"{timeouts} transaction(s) gave up with exit 6 after the 30 s timeout (nothing "
            "written, and said so): under that contention a session can lose every round it "
            "tries."
        )
    lose = {
        name: {n: d["losers"] for n, d in curves.get(name, {}).items() if d["losers"]}
        for name in (OWN, TURNS, SHARED)
    }
    if lose[OWN]:
        top = max(lose[OWN])
        parts = ", ".join(
            f"{label} {ms(median(lose[name][top]))}"
            for name, label in (
                (OWN, "separate clones racing"),
                (TURNS, "separate clones taking turns"),
                (SHARED, "one clone"),
            )
            if top in lose[name]
        )
        out.append(
            f"Loser latency (time to exit 3) with {top} sessions racing for one resource: "
            f"{parts}. Taking turns, the k-th loser waits for k−1 transactions before it reads "
            "the winner's claim; racing, a loser sleeps (the backoff) before it fetches again "
            "only to find the resource held."
        )
    out.append(
        "Done since the previous RESULTS.md: a waiter blocks in `flock()` (in a thread, "
        "so the deadline holds) instead of polling with sleeps, and the backoff's cap "
        "follows the deadline. Still to try: after a lost push, fetch and re-plan at once "
        "and back off only before pushing again (a loser of a same-resource race would get "
        "exit 3 one round sooner, at the price of one more fetch per lost round)."
    )
    return out


def _growth_analysis(data: dict[str, Any], met: dict[str, bool | str | None]) -> list[str]:
    g = data["growth"]["pairs"]
    out = []
    for dim in ("history", "messages"):
        pair = g.get(dim)
        if not pair:
            continue
        small, large = pair["sizes"]
        work = pair.get("work", {})
        same = [r for r in TARGET_ROWS if work.get(small, {}).get(r) == work.get(large, {}).get(r)]
        ratios = _growth_ratios(data, dim)
        worst = max(TARGET_ROWS, key=lambda r: ratios[r])
        if len(same) == len(TARGET_ROWS):
            why = (
                "every target row did exactly the same work at both sizes (objects read, git "
                "processes)"
            )
            if ratios[worst] > 1.1:
                why += (
                    f", so the {_x(ratios[worst])} of '{worst}' is the machine's noise, not growth"
                )
        else:
            why = "work differed for: " + ", ".join(
                f"{r} ({work[small][r]} → {work[large][r]})" for r in TARGET_ROWS if r not in same
            )
        out.append(f"**Growth, {dim} ({small} vs {large}):** {why}.")
    hist = g.get("history")
    if hist:
        r = _growth_ratios(data, "history")
        out.append(
            f"`log --limit 20` with no filter: {_x(r.get('log --limit 20', float('nan')))} "
            "(git is given `--max-count`, so it stops walking at the limit; with a filter it "
            "walks until it has found 20). `metrics` reads all of history by design."
        )
    cl = g.get("claims")
    if cl:
        small, large = cl["sizes"]
        n_small, n_large = (int(x.split()[0].replace(",", "")) for x in (small, large))
        st = _m(cl, "rows", large, "status") - _m(cl, "rows", small, "status")
        ld = _m(cl, "load", large, "status") - _m(cl, "load", small, "status")
        per = st / max(1, n_large - n_small)
        obj_small, obj_large = (
            " / ".join(str(v) for v in cl.get("work", {}).get(size, {}).get("status", ()))
            for size in (small, large)
        )
        out.append(
            f"**Claim files (not a target, but the growth that matters).** `status` went "
            f"{_x(_growth_ratios(data, 'claims').get('status', float('nan')))} from {small} to "
            f"{large}: {ms(per)} per claim file, {ms(ld)} of the {ms(st)} in loading the "
            "state. Claim files are never deleted (released ones stay as tombstones carrying "
            "the fencing token), so a long-lived branch gathers them, and every command loads "
            "the whole state. What each file parses to is cached by blob id (in "
            "`.git/gitcoord/parsed/`), so a command parses only what changed since the last "
            "one; what is left per file is reading its tree entry and validating it into its "
            f"model (work: {obj_small} → {obj_large} objects read / git processes, blobs "
            "of unchanged files not read at all). Before the cache, the previous RESULTS.md "
            "measured 15.6× here (2.2 ms per file, the pure-Python YAML parse). A new clone's "
            "first command still parses everything once. Next, if branches grow to thousands of "
            "claim files: keep tombstones out of the hot path (one generations file per type) "
            "and validate only what a change touches against the rest."
        )
    return out


def _workday_analysis(data: dict[str, Any]) -> list[str]:
    w = data["workday"]["sizes"]
    parts = [
        f"{n} sessions: a transaction costs {ms(d['per_event_estimate'])}, "
        f"{d['pushes_per_minute']:.1f} pushes per simulated minute, "
        f"{100 * _real_load(d):.1f}% of these cores in real time"
        for n, d in sorted(w.items())
    ]
    per_session = [d["pushes_per_minute"] / n for n, d in w.items() if d["minutes"] >= 10]
    reach = (
        f"at this schedule's {per_session[0]:.2f} pushes per session-minute, GitHub's 6 per "
        f"minute is reached at ~{6 / per_session[0]:.0f} sessions"
        if per_session
        else "heartbeats alone are N/10 per minute"
    )
    return [
        "**Workday.** "
        + "; ".join(parts)
        + ". "
        + (
            f"With {w[12].get('per_machine', 6)} sessions per machine (a clone each; the "
            "sessions of a machine take turns, machines race through the remote), the "
            f"12-session day retried {w[12]['retries']} "
            f"times over {w[12]['transactions']} transactions (at most "
            f"{w[12]['max_attempts']} attempts for one). "
            if 12 in w
            else ""
        )
        + f"Pushes per minute scale with sessions ({reach}, with held heartbeats and read "
        "marks riding the machines' pushes); the "
        "cost of each transaction still grows with the state (every session's files are "
        "validated each time, though parsed only when they changed), which is what limits "
        "how far the 200-session day can be compressed on 2 cores. "
        f"Lost updates: {sum(d['lost'] for d in w.values())}, double grants: "
        f"{sum(d['double_grants'] for d in w.values())}, over every size."
        + "".join(
            f" At {n} sessions {d['skipped']} of {d['events']} events were skipped (the run fell "
            "too far behind its schedule on these cores): its pushes per minute are a lower bound."
            for n, d in sorted(w.items())
            if d["skipped"]
        )
    ]


def analysis(data: dict[str, Any]) -> list[str]:
    """What limits each target not met, what was tried, what to change (from this run)."""
    tg = targets(data)
    met: dict[str, bool | str | None] = {}
    for name, _, ok in tg:
        key = (
            "cli"
            if name.startswith("`gitcoord claim` as a CLI")
            else "inproc"
            if name.startswith("in-process")
            else name
        )
        met[key] = ok
    out = ["## Analysis: what limits each target, what was tried, what to change", ""]
    if "single" in data:
        out += [*_cli_analysis(data, met), "", *_inproc_analysis(data, met), ""]
    if "contention" in data:
        out += [*_contention_analysis(data, met), ""]
    if "growth" in data:
        for para in _growth_analysis(data, met):
            out += [para, ""]
    if "workday" in data:
        out += [*_workday_analysis(data), ""]
    return out


# --- signatures ------------------------------------------------------------------------------

WORKDAY_HEADING = "## 6. A simulated workday"


def workday_section(data: dict[str, Any], command: str | None = None) -> list[str]:
    """Section 6, heading included; `command`: measured on its own by that command (an
    --only run: the section then carries its own analysis, and says when and under which
    load)."""
    lines = [WORKDAY_HEADING, ""]
    if command is not None:
        lines += common.measured_alone(
            data,
            "workday",
            command,
            "the rest of this page, the targets and the analysis above included, comes "
            "from the run named at its top",
        )
    lines += [
        "Heartbeats every 10 simulated minutes, inbox every 20, one task at a time "
        "(30–90 minutes), a direct message about once an hour per session, a broadcast "
        "an hour from the orchestrator; 4 sessions per machine (a clone each: its sessions "
        "take turns, machines race through the remote); see benchmarks/workday.py. Time is "
        "compressed as far as keeps the calibrated demand near 30% of the cores, so latency "
        "and retries include more contention than the real day would have; pushes per "
        "simulated minute do not depend on the compression.",
        "",
        *_workday_table(data),
    ]
    if ride := _ride_table(data):
        lines += ["", *ride]
    if command is not None:
        lines += ["", *_workday_analysis(data)]
    return lines


SIGNING_HEADING = "## 8. Signatures: the cost of signing and verifying"
_TAGS = {
    UNSIGNED: "(a)",
    SIGNED: "(b)",
    REQUIRED: "(b′)",
    UNSIGNED2: "(a′)",
    REQUIRED2: "(c)",
    CLI_UNSIGNED: "(d)",
    CLI_REQUIRED: "(d)",
}


def _paired(xs: list[float], base: list[float]) -> float:
    """The median of the per-round differences xs[i] − base[i] (rows run in the same
    rounds): load that drifts between rounds cancels out of each difference."""
    return median([x - y for x, y in zip(xs, base, strict=True)])


def _signing_tables(data: dict[str, Any]) -> list[str]:
    s = data["signing"]
    if "skipped" in s:
        return [f"Not measured: {s['skipped']}."]
    c = s["claims"]
    series, work, signed = c["series"], c["work"], c["signed"]
    a = median(series[UNSIGNED])
    lines = [
        f"{s['ssh']}. Claims: {s['runs']} round-robin rounds after two warm-up rounds (the "
        f"cold CLI rows in {c['cli_runs']} of them); every row on a `file://` bare remote of "
        "its own; each timed claim grants a released resource again and is released, "
        "untimed, right after. In process through a long-lived `Coordinator` (as the "
        "in-process row of sections 1–3), except (d), a cold `python -m gitcoord` process "
        "each (`GITCOORD_AGENT=0`). Unsigned: ssh-keygen hidden from PATH (a folder with a "
        "symlink to git only) and no machine key, on a branch not requiring signatures. "
        "*Two clones alternating*: sessions alice and bob, each in its own clone, take "
        "turns, so each claim first fetches (and, where signatures are required, verifies) "
        "the other's claim and release. *+ over it* is the median of the per-round "
        "differences from the row's unsigned baseline.",
        "",
        "| claim | median | p90 | × its unsigned baseline | + over it | × (a) | commits "
        "signed on its remote |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row, xs in series.items():
        if row not in BASELINE:
            continue
        m = median(xs)
        base = BASELINE[row]
        b = median(series[base])
        rel = "–" if base == row else _x(m / b)
        plus = "–" if base == row else _diff(_paired(xs, series[base]), 0.0)
        got, total = signed.get(row, (0, 0))
        lines.append(
            f"| {_TAGS[row]} {row} | {ms(m)} | {ms(pct(xs, 90))} | {rel} | {plus} | "
            f"{_x(m / a)} | {got} / {total} |"
        )
    lines += [
        "",
        "On a branch not requiring signatures, `init` (a person's act) is signed only by a "
        "`user.signingKey`, which (b)'s remote has none of; what sessions do is signed by "
        "the machine key.",
        "",
        "Where a claim's time for signatures goes, in process (medians per claim; timed and "
        "counted by wrappers around `Signer.sign`, the verifier's `signed_by`, "
        "`trust.check_tip`, `trust.mark_verified` and `Git.run` — the short git processes, "
        "not the long-lived `cat-file --batch`):",
        "",
        "| claim | signing: signatures made, time | verifying the tip: time (signature "
        "checks: count, time) | recording the verified tip | git processes |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in (UNSIGNED, SIGNED, REQUIRED, UNSIGNED2, REQUIRED2):
        w = work.get(row)
        if not w:
            continue
        lines.append(
            f"| {_TAGS[row]} {row} | {w['sign']:g}, {ms(w['sign_s'])} | {ms(w['verify_s'])} "
            f"({w['check']:g}, {ms(w['check_s'])}) | {ms(w['record_s'])} | {w['git']:g} |"
        )
    lines += [
        "",
        "Measured in the same rounds:",
        "",
        "| one step | median | p90 |",
        "|---|---:|---:|",
    ]
    for row in (SIGN, CHECK, SPAWN, INPROC_SIGN, INPROC_CHECK):
        if series.get(row):
            xs = series[row]
            lines.append(f"| {row} | {ms(median(xs))} | {ms(pct(xs, 90))} |")
    v = s["verifier"]
    vs = v["series"]
    n = v["commits"]
    lines += [
        "",
        f"The verifier: a history of {n} commits made by gitcoord (init by the approver, two "
        "sessions registering, then claims and releases, every commit signed) on each of two "
        "remotes, one requiring signatures; "
        f"{s['verify_runs']} round-robin rounds after a warm-up round. `validate --range "
        "..TIP` (what the server hook and CI run) in process with a new `Coordinator` each "
        "time; a new clone's first `status`: a fresh clone each time (untimed), then a new "
        "`Coordinator` and `status` (timed).",
        "",
        f"| over {n} commits | not required | required | × | + per commit | of which "
        "signature checks, per commit | checks / git processes: not required → required |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for what, off, on in (
        ("`validate --range ..TIP`", RANGE_OFF, RANGE_ON),
        ("a new clone's first `status`", FIRST_OFF, FIRST_ON),
    ):
        x, y = median(vs[off]), median(vs[on])
        w_off, w_on = v["work"][off], v["work"][on]
        lines.append(
            f"| {what} | {ms(x)} | {ms(y)} | {_x(y / x)} | {ms(_paired(vs[on], vs[off]) / n)} "
            f"| {ms(w_on['check_s'] / n)} | {w_off['check']:g} / {w_off['git']:g} → "
            f"{w_on['check']:g} / {w_on['git']:g} |"
        )
    return lines


def _signing_analysis(data: dict[str, Any]) -> list[str]:
    s = data["signing"]
    if "skipped" in s:
        return []
    series = s["claims"]["series"]
    work = s["claims"]["work"]

    def m(row: str) -> float:
        return median(series.get(row, []))

    def plus(row: str) -> str:
        return _diff(_paired(series[row], series[BASELINE[row]]), 0.0)

    sign, check, spawn = m(SIGN), m(CHECK), m(SPAWN)
    b, b2, c = work[SIGNED], work[REQUIRED], work[REQUIRED2]
    v = s["verifier"]
    vs, n = v["series"], v["commits"]
    r_off, r_on = median(vs[RANGE_OFF]), median(vs[RANGE_ON])
    f_off, f_on = median(vs[FIRST_OFF]), median(vs[FIRST_ON])
    first_checks = v["work"][FIRST_ON]["check_s"]
    out = [
        "**Signing** an ssh-ed25519 machine key's commit is done in process (`Signer.sign`, "
        f"Ed25519 by `cryptography`, byte for byte what ssh-keygen makes): {ms(m(INPROC_SIGN))} "
        f"against {ms(sign)} for one `ssh-keygen -Y sign` process (the floor of starting any "
        f"process from this Python is {ms(spawn)}); {ms(b['sign_s'])} inside a claim, whose "
        f"fetch and push vary by more than that from one claim to the next: (b) over (a) "
        f"measured {plus(SIGNED)} ({_x(m(SIGNED) / m(UNSIGNED))} by medians). Requiring "
        "signatures adds no check while every new tip is this clone's own commit "
        f"(b′: verifying the tip {ms(b2['verify_s'])}, recording it {ms(b2['record_s'])} — "
        "reading and writing `.git/gitcoord/verified/` and loading the new commit's state; "
        f"over (a), signing included, {plus(REQUIRED)}).",
        "",
        "**Verifying** costs, per new commit, one signature check — in process for an "
        f"ssh-ed25519 key ({ms(m(INPROC_CHECK))}, against {ms(check)} for one `ssh-keygen -Y "
        "check-novalidate` process, which checks every other key) — and the transition "
        "rules — a `git diff-tree` and Python — which a client runs only where signatures are "
        "required (the hook and `validate --range` run them always), plus, per verified "
        f"range, `git merge-base` and two `git log`. With two clones alternating, each claim "
        f"verified {c['check']:g} commits and signed one, starting {c['git']:g} git processes "
        f"against {work[UNSIGNED2]['git']:g} unsigned: verifying took {ms(c['verify_s'])} of "
        f"the claim ({ms(c['check_s'])} in the signature checks), and (c) over (a′) came to "
        f"{plus(REQUIRED2)}, {_x(m(REQUIRED2) / m(UNSIGNED2))}. A cold CLI claim pays it "
        f"too, on top of its start-up: (d) {plus(CLI_REQUIRED)}, "
        f"{_x(m(CLI_REQUIRED) / m(CLI_UNSIGNED))}. Over {n} commits `validate --range` "
        f"took {_x(r_on / r_off)} ({ms(r_off / n)} per commit not required, {ms(r_on / n)} "
        "required: the rules ran in both, so the difference is the checks); a new clone's "
        f"first `status` verifies the whole history once: {ms(f_off)} → {ms(f_on)}: "
        f"{ms(first_checks)} in the signature checks, the rest "
        f"({ms((f_on - f_off - first_checks) / n)} per commit) the rules; every later "
        "command verifies only what is new. Verifying grows with history where nothing "
        "else here does (section 5): at this run's "
        f"{ms((f_on - f_off) / n)} per commit, a new clone of a 10,000-commit branch would "
        f"spend ≈ {(f_on - f_off) / n * 10_000:.0f} s on its first command (extrapolated, "
        "not measured), and so would a clone returning after that many commits.",
        "",
    ]
    cheaper = (
        "**What would make it cheaper.** With the checks in process, the rules are the cost: "
        "(1) one `git diff-tree --stdin` for a whole range instead of one per commit, which "
        "the hook and `validate --range` would gain from as well; (2) for a new clone, start "
        "from a tip an approver's key attests as verified (a signed checkpoint) and verify "
        "only what follows — a trust decision, not only a speed-up. Neither is built."
    )
    out.append(cheaper)
    return out


def signing_section(data: dict[str, Any], command: str | None = None) -> list[str]:
    """Section 8, heading included; `command`: it was measured on its own by that
    command (an --only run), so it says when and under which load."""
    lines = [SIGNING_HEADING, ""]
    if command is not None:
        lines += common.measured_alone(data, "signing", command)
    lines += _signing_tables(data)
    analysis = _signing_analysis(data)
    if analysis:
        lines += ["", *analysis]
    return lines


def merge_section(page: str, heading: str, section: list[str]) -> str:
    """`page` with the section under `heading` (up to the next `## ` heading) replaced
    by `section`, or `section` appended when the page has none."""
    lines = page.rstrip("\n").split("\n")
    start = next((i for i, line in enumerate(lines) if line == heading), None)
    if start is None:
        return "\n".join([*lines, "", *section]) + "\n"
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    tail = lines[end:]
    return "\n".join([*lines[:start], *section, *(["", *tail] if tail else [])]) + "\n"


# --- the chart -------------------------------------------------------------------------------


def chart(data: dict[str, Any], path: Path) -> str:
    """Write the contention chart; returns its path, or why there is none. matplotlib's
    configuration and font cache go to a temporary directory, removed afterwards."""
    curves = data.get("contention", {}).get("curves")
    if not curves:
        return "no contention measurements in this run"
    saved = os.environ.get("MPLCONFIGDIR")
    with tempfile.TemporaryDirectory(prefix="gitcoord-bench-mpl-") as mpl:
        os.environ["MPLCONFIGDIR"] = mpl
        try:
            return _chart(data, curves, path)
        finally:
            if saved is None:
                os.environ.pop("MPLCONFIGDIR", None)
            else:
                os.environ["MPLCONFIGDIR"] = saved


def _chart(data: dict[str, Any], curves: dict[str, Any], path: Path) -> str:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (`.venv/bin/pip install -e '.[bench]'`)"
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.2))
    style = {
        OWN: ("tab:blue", "o-"),
        SHARED: ("tab:green", "s-"),
        NAIVE: ("tab:red", "^--"),
        TURNS: ("tab:orange", "D-"),
        PREVIOUS: ("tab:purple", "x:"),
    }
    for name, curve in curves.items():
        if not curve:
            continue
        levels = sorted(curve)
        color, fmt = style[name]
        ax.plot(levels, [curve[n]["throughput"] for n in levels], fmt, color=color, label=name)
        rel = _relative(curves, name)
        bx.plot(levels, [rel[n] for n in levels], fmt, color=color, label=name)
    fl = sorted(FIELD_NOTES_NAIVE)
    ax.plot(
        fl,
        [FIELD_NOTES_NAIVE[n] for n in fl],
        ":",
        color="grey",
        label="naive floor, field notes (earlier, same kind of machine)",
    )
    for a in (ax, bx):
        a.set_xscale("log", base=2)
        a.set_xticks([1, 2, 4, 8, 16])
        a.set_xticklabels(["1", "2", "4", "8", "16"])
        a.set_xlabel("concurrent sessions (distinct resources)")
        a.grid(True, alpha=0.3)
    ax.set_ylabel("aggregate successful commits per second")
    ax.set_title("Throughput")
    bx.axhline(1.0, color="black", lw=0.8)
    bx.axhline(0.8, color="black", lw=0.8, ls="--")
    bx.set_ylabel("× one session's throughput")
    bx.set_title("Relative to one session (targets: 1× at 8, 0.8× at 16)")
    ax.legend(fontsize=7)
    m = data.get("machine", {})
    fig.suptitle(f"gitcoord contention · {m.get('cpu', '')} · {m.get('cores', '')}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)


# --- the whole page --------------------------------------------------------------------------


def markdown(data: dict[str, Any], chart_result: str, command: str) -> str:
    m = data["machine"]
    t = data["timings"]
    lines = [
        "# gitcoord benchmarks",
        "",
        f"Written by `.venv/bin/{command}` on {m['date']}"
        + (" (**--quick smoke run: too short to judge targets**)" if data.get("quick") else "")
        + f"; the run took {t['total'] / 60:.1f} minutes ("
        + ", ".join(f"{k} {v:.0f} s" for k, v in t.items() if k != "total")
        + ")"
        + (
            f" and used {data['cpu_seconds'] / 60:.1f} CPU-minutes (user + system, the suite "
            "and every process it started)"
            if "cpu_seconds" in data
            else ""
        )
        + ".",
        "",
        "| machine | |",
        "|---|---|",
        f"| CPU | {m['cpu']} |",
        f"| cores | {m['cores']} |",
        f"| Python | {m['python']} |",
        f"| git | {m['git']} |",
        f"| OS | {m['os']} |",
        f"| load average (1, 5, 15 min) | at start {m['load at start']}; at end "
        f"{m['load at end']} |",
        "",
        "Every row of a table was measured in this one run, on this machine, against the "
        "same kind of remote: compare ratios, not absolute times. Where the load average "
        "exceeds the number of cores, other work was running and absolute times are "
        "inflated.",
        "",
        "## Targets",
        "",
        "| target | measured | |",
        "|---|---|---|",
    ]
    for name, got, met in targets(data):
        lines.append(f"| {name} | {got} | {_ok(met)} |")
    lines += ["", *analysis(data)]
    if "single" in data:
        lines += ["", "## 1–3. One claim next to the raw git floor", "", *_single_table(data)]
    if "phases" in data:
        lines += ["", "### Where the time of one claim goes", "", *_phases_table(data)]
    if "contention" in data:
        lines += ["", "## 4. Contention", ""]
        if chart_result.endswith(".png"):
            lines += [f"![contention curve]({Path(chart_result).name})", ""]
        else:
            lines += [f"No chart: {chart_result}.", ""]
        lines += _contention_table(data)
    if "growth" in data:
        lines += ["", "## 5. Growth", "", *_growth_tables(data)]
    if "workday" in data:
        lines += ["", *workday_section(data)]
    if "single" in data:
        lines += ["", "## 7. Transports", "", *_transport_table(data)]
    if "signing" in data:
        lines += ["", *signing_section(data)]
    if "latency" in data:
        lines += ["", *netdelay.section(data)]
    if "selfhosted" in data:
        lines += ["", *selfhosted.section(data)]
    return "\n".join(lines) + "\n"
