"""Where the time of one claim goes: the phases of a transaction, and of a cold process.

In process, the store's own steps are timed by wrapping them on one `Store` instance
(nothing in gitcoord/ is changed): fetch (one `git fetch`), load (read the tip's trees and
files through `git cat-file --batch`, parse the YAML, build the models), write (blobs,
trees and the commit, in process), swap (one `git push --force-with-lease`); the rest is
planning and validating. A cold CLI process adds the interpreter's start and the imports.
The raw floor, for comparison, is eight git processes.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from . import common


def _wrap(obj: Any, name: str, acc: dict[str, float], label: str) -> None:
    orig = getattr(obj, name)

    def timed(*a: Any, **kw: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return orig(*a, **kw)
        finally:
            acc[label] += time.perf_counter() - t0

    setattr(obj, name, timed)


def transaction_phases(
    coord: Any,
    runs: int,
    op: Callable[[int], Any],
    after: Callable[[int], Any],
    warmup: bool = True,
) -> dict[str, list[float]]:
    """Per-phase seconds of `op(i)` (one transaction each) on `coord`; `after(i)` runs
    untimed after each (e.g. a release, so the next claim is a grant again)."""
    store = coord.store
    acc: dict[str, float] = defaultdict(float)
    loading = [False]
    _wrap(store.trees, "fetch_tip", acc, "fetch")  # the generic store's round loop calls
    _wrap(store.trees, "write_commit", acc, "write")  # these; the domain's gate, `load`
    _wrap(store.trees.upstream, "swap", acc, "swap")
    load, read = store.load, store.reader.read

    def timed_load(*a: Any, **kw: Any) -> Any:
        loading[0] = True
        t0 = time.perf_counter()
        try:
            return load(*a, **kw)
        finally:
            acc["load"] += time.perf_counter() - t0
            loading[0] = False

    def timed_read(*a: Any, **kw: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return read(*a, **kw)
        finally:
            if loading[0]:  # reads of the state's trees and files, not of refs or bases
                acc["load reads"] += time.perf_counter() - t0

    store.load = timed_load
    store.reader.read = timed_read
    out: dict[str, list[float]] = defaultdict(list)
    for i in range(-1 if warmup else 0, runs):
        acc.clear()
        t0 = time.perf_counter()
        op(i)
        total = time.perf_counter() - t0
        got = dict(acc)
        after(i)
        if i < 0:
            continue
        out["total"].append(total)
        out["git fetch (and the ref read after it)"].append(got.get("fetch", 0.0))
        out["load state: cat-file reads"].append(got.get("load reads", 0.0))
        out["load state: YAML + models"].append(
            max(0.0, got.get("load", 0.0) - got.get("load reads", 0.0))
        )
        out["write objects"].append(got.get("write", 0.0))
        out["git push"].append(got.get("swap", 0.0))
        known = sum(got.get(k, 0.0) for k in ("fetch", "load", "write", "swap"))
        out["plan + validate + rest"].append(max(0.0, total - known))
    return dict(out)


def run(tmp: Path, env: dict[str, str], runs: int) -> dict[str, Any]:
    from gitcoord import Coordinator

    root = tmp / "phases"
    root.mkdir()
    remote = common.bare_remote(root / "remote.git", env)
    hist = common.FastHistory()
    when = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=5)
    common.setup_sessions(hist, ["bench"], when, claims=["task/x"])
    hist.write(remote, env)
    work = common.clone(f"file://{remote}", root / "clone", env)
    results: dict[str, Any] = {}
    with Coordinator(str(work), session="bench") as coord:
        results["claim"] = transaction_phases(
            coord,
            runs,
            lambda i: coord.claim("task", "x"),
            lambda i: coord.release("task", "x"),
        )
    with Coordinator(str(work), session="bench") as coord:
        # the same, for a cold process's first transaction: a new Coordinator each time
        firsts: dict[str, list[float]] = defaultdict(list)
        for _ in range(runs):
            with Coordinator(str(work), session="bench") as fresh:
                got = transaction_phases(
                    fresh, 1, lambda i: fresh.claim("task", "x"), lambda i: None, warmup=False
                )
            coord.release("task", "x")
            for k, v in got.items():
                firsts[k] += v
        results["first claim of a new Coordinator"] = dict(firsts)

        # the CLI layer: `cli.main` in this warm process (what the agent's child runs:
        # argument parsing, a new Coordinator, the claim, the output) vs Coordinator.claim
        import contextlib
        import io

        from gitcoord.faces.cli import main as cli_main

        argv = ["-C", str(work), "--session", "bench", "claim", "task", "x"]

        def cli_claim() -> None:
            with contextlib.redirect_stdout(io.StringIO()):
                if cli_main(argv) != 0:
                    raise RuntimeError("gitcoord claim failed")

        layer: dict[str, list[float]] = {"cli.main claim": [], "Coordinator.claim": []}
        for i in range(-1, runs):
            for name, fn in (
                ("cli.main claim", cli_claim),
                ("Coordinator.claim", lambda: coord.claim("task", "x")),
            ):
                secs, _ = common.timed(fn)
                coord.release("task", "x")
                if i >= 0:
                    layer[name].append(secs)
        results["cli layer"] = layer

    py = sys.executable
    repo = str(Path(__file__).resolve().parent.parent)
    bare = {**env, "PYTHONPATH": repo}
    probes = {
        "interpreter alone (python -S)": ([py, "-S", "-c", "pass"], env),
        "python start (site: the venv's .pth files)": (
            [py, "-c", "pass"],
            env,
        ),
        "python -S + gitcoord.client import": (
            [py, "-S", "-c", "import gitcoord.faces.client"],
            bare,
        ),
        "python start + gitcoord.client import": ([py, "-c", "import gitcoord.faces.client"], env),
        "python start + CLI imports": (
            [
                py,
                "-c",
                "import gitcoord.faces.cli, gitcoord.api.coordinator, gitcoord.domain.branch",
            ],
            env,
        ),
        "python start + imports + models built": (
            [py, "-c", "from gitcoord.faces import agent; agent._warm()"],
            env,
        ),
    }
    from .single import agents

    # EXPERIMENT (not gitcoord's behaviour): an agent with gc.freeze() after its warm-up,
    # so that forked children do not copy the parent's pages as the collector and the
    # reference counts touch them. Both agents run side by side, probed in the same rounds.
    frozen = "import sys, gc; from gitcoord.faces import agent; agent._warm(); gc.freeze(); "
    stock_name = "`gitcoord --version` through the warm agent"
    frozen_name = "`gitcoord --version` through an agent with gc.freeze() (experiment)"
    version = [*common.gitcoord_argv(), "--version"]
    with (
        agents(env) as stock,
        agents(env, serve=frozen + "agent.serve(sys.argv[1])") as freeze,
    ):
        probes[stock_name] = (version, stock.env)
        probes[frozen_name] = (version, freeze.env)
        names = list(probes)
        for name in names:
            results[name] = []
        for i in range(-1, runs):  # round-robin, rotated, like the claim series
            for name in names[i % len(names) :] + names[: i % len(names)]:
                argv, penv = probes[name]
                if name == stock_name:
                    stock.ensure()
                elif name == frozen_name:
                    freeze.ensure()
                secs, _ = common.timed(
                    lambda argv=argv, penv=penv: subprocess.run(
                        argv, env=penv, capture_output=True, check=True
                    )
                )
                if i >= 0:
                    results[name].append(secs)
    return results
