"""Run the whole benchmark suite and write benchmarks/RESULTS.md, benchmarks/contention.png
and benchmarks/latency.png.

    .venv/bin/python -m benchmarks            # the full suite (about 30 minutes on 2 cores)
    .venv/bin/python -m benchmarks --quick    # a short smoke run of every section
    .venv/bin/python benchmarks/run.py ...    # the same
    .venv/bin/python -m benchmarks --only compare [--baseline REV] [--new REV] [--quick]
        # two revisions side by side (default: HEAD against the working tree), about
        # 2 minutes; writes benchmarks/COMPARE.md (benchmarks/compare.py)

Sections, all measured in one run on this machine, side by side (ratios, not absolute
times, are what to compare; medians of several runs):
  1-3. one claim: the raw git floor, `gitcoord claim` cold and through the warm agent, and
       in process (benchmarks/single.py);
  4.   contention: throughput of 1-16 concurrent sessions, loser latency, the naive
       floor's curve, lost updates (benchmarks/contention.py);
  5.   growth: status and inbox against history length, message count and claim files
       (benchmarks/growth.py);
  6.   a simulated workday for 12, 50 and 200 sessions, 4 per machine, over at least 60
       simulated minutes: pushes per minute by source, and at 50 sessions the day again
       with riding off and on at a gentler compression (benchmarks/workday.py);
  7.   transports: file://, git daemon and smart HTTP (benchmarks/single.py);
  8.   signatures: a claim unsigned, signed, signed and required (verifying another
       clone's commits), a cold CLI claim, `validate --range` and a new clone's first
       command over a signed history (benchmarks/signing.py);
  9.   latency: `git daemon` behind a delay proxy at 0, 50 and 100 ms of round trip: one
       claim next to the raw floor, and contention of 1-16 sessions in clones of their
       own, with the ceiling of one push per commit, in a table and latency.png
       (benchmarks/netdelay.py);
  10.  selfhosted: 1, 16 and 200 sessions, 4 per machine, against a remote at 50 ms with
       the server hook and signatures required: landed operations per second
       (benchmarks/selfhosted.py);
  and where the time of one claim goes (benchmarks/phases.py).
  compare: cold `--version`, `--version` through the agent and a claim in process, for
       two revisions at once (benchmarks/compare.py); only with --only compare or
       --baseline, and written to COMPARE.md, not RESULTS.md.
Hermetic: a temporary HOME and git configuration, everything in one temporary directory,
removed at the end (--keep keeps it). `--only workday`, `--only signing`, `--only
latency` and `--only selfhosted` (or any of them together) update their own sections of
an existing RESULTS.md and leave the rest of the page as it was;
any other --only run writes the page with the sections it ran. The chart needs
matplotlib (`pip install -e '.[bench]'`); without it RESULTS.md is still written and
says so.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: benchmarks/run.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = "benchmarks"

from benchmarks import (
    common,
    compare,
    contention,
    growth,
    netdelay,
    phases,
    report,
    selfhosted,
    signing,
    single,
    workday,
)

HERE = Path(__file__).resolve().parent
# Real seconds per simulated minute of the workday's riding before/after (10x compressed:
# races less than the calibrated pace, so refused pushes are nearer a real day's).
WORKDAY_COMPARE_PACE = 6.0
REPO = HERE.parent
# The sections RESULTS.md reports; `compare` has its own page, COMPARE.md.
RESULTS_SECTIONS = (
    "single",
    "phases",
    "contention",
    "growth",
    "workday",
    "signing",
    "latency",
    "selfhosted",
)
SECTIONS = (*RESULTS_SECTIONS, "compare")
# Sections whose part of RESULTS.md stands alone (its own heading, tables and analysis, no
# target): run by themselves, they replace that part of the existing page, nothing else.
MERGED = {
    "workday": (report.WORKDAY_HEADING, report.workday_section),
    "signing": (report.SIGNING_HEADING, report.signing_section),
    "latency": (netdelay.HEADING, netdelay.section),
    "selfhosted": (selfhosted.HEADING, selfhosted.section),
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--quick", action="store_true", help="a short smoke run of every section")
    ap.add_argument(
        "--out", default=str(HERE), help="where RESULTS.md, the chart and COMPARE.md go"
    )
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("--json", help="also write the raw measurements to this file")
    ap.add_argument(
        "--no-install",
        action="store_true",
        help="never apt-get install lighttpd (smart HTTP is then skipped if it is missing)",
    )
    ap.add_argument(
        "--experiments",
        action="store_true",
        help="also run the contention experiment (the store patched back to before bb78e6a, "
        "to measure what the turn and the backoff bought), and the latency section's (the "
        "store as before issue #16, fetching first); adds about a minute each",
    )
    ap.add_argument(
        "--only",
        help="comma-separated sections to run (" + ",".join(SECTIONS) + "); compare runs only "
        "when named here or when --baseline is given",
    )
    ap.add_argument(
        "--baseline",
        metavar="REV",
        help="compare: the old side, a revision of this repository (default with --only "
        "compare: HEAD); given to a full run, the run includes the compare section",
    )
    ap.add_argument(
        "--new",
        metavar="REV",
        help="compare: the new side, a revision instead of the working tree (e.g. when the "
        "working tree is mid-change and does not import)",
    )
    args = ap.parse_args(argv)
    quick = args.quick
    only = set(args.only.split(",")) if args.only else None
    if only is not None and (unknown := only - set(SECTIONS)):
        ap.error(f"unknown section(s): {', '.join(sorted(unknown))} (known: {', '.join(SECTIONS)})")
    comparing = "compare" in only if only is not None else args.baseline is not None
    if not comparing and (args.baseline or args.new):
        ap.error("--baseline and --new belong to the compare section (add it to --only)")
    results_page = only is None or bool(only & set(RESULTS_SECTIONS))
    outer_env = dict(os.environ)  # git reads this repository as the user does
    if comparing:  # before anything is measured: a mistyped revision fails at once
        try:
            revisions = (
                compare.resolve(REPO, args.baseline or "HEAD", outer_env),
                compare.resolve(REPO, args.new, outer_env),
            )
        except RuntimeError as exc:
            ap.error(str(exc))
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)

    t_start = time.monotonic()
    info = common.machine()
    info["load at start"] = common.loadavg()
    data: dict[str, object] = {"machine": info, "quick": quick, "timings": {}}
    timings: dict[str, float] = data["timings"]  # type: ignore[assignment]

    def section(name: str) -> bool:
        if name == "compare" and not comparing:
            return False
        if only is not None and name not in only:
            return False
        print(f"[{time.monotonic() - t_start:6.0f}s] {name} ...", file=sys.stderr, flush=True)
        return True

    with common.workdir(keep=args.keep) as tmp:
        (tmp / "home").mkdir()
        env = common.hermetic_env(tmp / "home")
        common.use_env(env)
        if args.keep:
            print(f"working in {tmp}", file=sys.stderr)

        if section("single"):
            t = time.monotonic()
            data["single"] = single.run(
                tmp,
                env,
                runs=3 if quick else 12,
                transport_runs=2 if quick else 8,
                install=not args.no_install,
            )
            timings["single"] = time.monotonic() - t
        if section("phases"):
            t = time.monotonic()
            data["phases"] = phases.run(tmp, env, runs=3 if quick else 10)
            timings["phases"] = time.monotonic() - t
        if section("contention"):
            t = time.monotonic()
            data["contention"] = contention.run(
                tmp,
                env,
                duration=2.0 if quick else 6.0,
                rounds=1 if quick else 3,
                experiment_levels=(8, 16) if args.experiments else (),
            )
            timings["contention"] = time.monotonic() - t
        if section("growth"):
            t = time.monotonic()
            data["growth"] = growth.run(
                tmp,
                env,
                runs=1 if quick else 9,
                claim_runs=1 if quick else 3,
                commits=2_000 if quick else 10_000,
                messages=2_000 if quick else 10_000,
                claims=100 if quick else 300,
            )
            timings["growth"] = time.monotonic() - t
        if section("workday"):
            t = time.monotonic()
            sizes = (12, 50, 200)
            if quick:
                budgets = {12: 6.0, 50: 6.0, 200: 8.0}
                longest = {12: 20.0, 50: 5.0, 200: 1.0}
            else:
                budgets = {12: 20.0, 50: 20.0, 200: 30.0}
                longest = {12: 240.0, 50: 60.0, 200: 60.0}
            data["workday"] = workday.run(
                tmp,
                env,
                sizes,
                budgets,
                longest,
                min_minutes=0.5 if quick else 60.0,
                compare=(50,),
                compare_pace=None if quick else WORKDAY_COMPARE_PACE,
            )
            timings["workday"] = time.monotonic() - t
        if section("signing"):
            t = time.monotonic()
            data["signing"] = signing.run(
                tmp,
                env,
                runs=3 if quick else 45,
                cli_every=1 if quick else 3,
                verify_runs=2 if quick else 9,
                commits=10 if quick else 50,
            )
            timings["signing"] = time.monotonic() - t
        if section("latency"):
            t = time.monotonic()
            data["latency"] = netdelay.run(
                tmp,
                env,
                runs=2 if quick else 8,
                duration=3.0 if quick else 15.0,
                levels=netdelay.QUICK_LEVELS if quick else netdelay.LEVELS,
                experiments=args.experiments,
            )
            timings["latency"] = time.monotonic() - t
        if section("selfhosted"):
            t = time.monotonic()
            data["selfhosted"] = selfhosted.run(
                tmp,
                env,
                configs=selfhosted.QUICK_CONFIGS if quick else selfhosted.CONFIGS,
                seconds=6.0 if quick else 30.0,
            )
            timings["selfhosted"] = time.monotonic() - t
        if section("compare"):
            t = time.monotonic()
            data["compare"] = compare.run(
                tmp,
                env,
                REPO,
                *revisions,
                rounds=12 if quick else 100,
                warmup=1 if quick else 3,
                budget=20.0 if quick else 95.0,
                git_env=outer_env,
            )
            timings["compare"] = time.monotonic() - t

    info["load at end"] = common.loadavg()
    timings["total"] = time.monotonic() - t_start
    import resource

    used = sum(
        getattr(resource.getrusage(who), f)
        for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
        for f in ("ru_utime", "ru_stime")
    )
    data["cpu_seconds"] = used
    if args.json:
        Path(args.json).write_text(json.dumps(data, indent=1, default=str))
    if comparing:
        command = "python -m benchmarks" + "".join(
            f" {flag} {value}"
            for flag, value in (
                ("--only", args.only),
                ("--baseline", args.baseline),
                ("--new", args.new),
            )
            if value
        )
        text = compare.markdown(
            data["compare"],  # type: ignore[arg-type]
            info,
            command + (" --quick" if quick else ""),
            quick,
        )
        (out_dir / "COMPARE.md").write_text(text)
        print(text)
        print(f"wrote {out_dir / 'COMPARE.md'}", file=sys.stderr)
    if not results_page:
        return 0
    page = out_dir / "RESULTS.md"
    ran = (only or set()) & set(RESULTS_SECTIONS)
    if only is not None and ran <= set(MERGED) and page.exists():
        command = f"python -m benchmarks --only {','.join(sorted(ran))}" + (
            " --quick" if quick else ""
        )
        if args.experiments:
            command += " --experiments"
        text = page.read_text()
        for name in sorted(ran):
            heading, render = MERGED[name]
            text = report.merge_section(text, heading, render(data, command=command))
        page.write_text(text)
        print(text)
        print(f"updated the {', '.join(sorted(ran))} section of {page}", file=sys.stderr)
        if "latency" in ran:
            print(netdelay.chart(data, out_dir / netdelay.CHART), file=sys.stderr)
        return 0
    try:
        chart = report.chart(data, out_dir / "contention.png")
        if "latency" in data:
            print(netdelay.chart(data, out_dir / netdelay.CHART), file=sys.stderr)
        text = report.markdown(
            data, chart, command="python -m benchmarks" + (" --quick" if quick else "")
        )
    except Exception:
        import pickle
        import tempfile

        with tempfile.NamedTemporaryFile(
            prefix="gitcoord-bench-", suffix=".pickle", delete=False
        ) as fh:
            pickle.dump(data, fh)
        print(f"the report failed; the measurements are in {fh.name}", file=sys.stderr)
        raise
    (out_dir / "RESULTS.md").write_text(text)
    print(text)
    print(
        f"wrote {out_dir / 'RESULTS.md'}" + (f" and {chart}" if chart.endswith(".png") else ""),
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
