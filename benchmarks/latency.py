"""Claim latency next to the raw git floor, measured in one run on the same remote.

    .venv/bin/python benchmarks/latency.py [--runs 30] [--transport file|daemon]

Prints a Markdown table: median and p90 of a sequential series of
  1. the raw git floor: fetch, temp index, hash-object, update-index,
     write-tree, commit-tree, push (the plain-shell pipeline of the field notes);
  2. `gitcoord claim` as a cold CLI process;
  3. the same claim in process through `gitcoord.Coordinator`;
and each as a ratio of the floor. Ratios, not absolute times, are what to compare.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

if __package__ in (None, ""):  # run as a script: the repository root, for `testing`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from testing.servers import git_daemon


def git(
    cwd: Path, *args: str, env: dict[str, str] | None = None, input: bytes | None = None
) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, env=env, input=input, capture_output=True, check=True
    ).stdout.decode()


def hermetic_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "GITCOORD_"))}
    cfg = home / ".gitconfig"
    cfg.write_text(
        "[user]\n\tname = Bench\n\temail = bench@example.com\n[init]\n\tdefaultBranch = main\n"
    )
    env.update(HOME=str(home), GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=str(cfg))
    return env


def series(fn: Callable[[int], None], runs: int) -> list[float]:
    fn(-1)  # warm-up (page cache, first fetch)
    out = []
    for i in range(runs):
        t = time.perf_counter()
        fn(i)
        out.append(time.perf_counter() - t)
    return out


def raw_floor(clone: Path, env: dict[str, str], ref: str) -> Callable[[int], None]:
    """The plain git pipeline, one claim file per call, CAS push with an explicit lease."""
    index = clone / ".git" / "bench-index"
    tip_ref = "refs/bench/tip"

    def op(i: int) -> None:
        git(clone, "fetch", "-q", "origin", f"+refs/heads/{ref}:{tip_ref}", env=env)
        tip = git(clone, "rev-parse", tip_ref, env=env).strip()
        ienv = {**env, "GIT_INDEX_FILE": str(index)}
        git(clone, "read-tree", tip, env=ienv)
        blob = git(
            clone, "hash-object", "-w", "--stdin", env=env, input=f"holder: raw\nn: {i}\n".encode()
        ).strip()
        git(
            clone,
            "update-index",
            "--add",
            "--cacheinfo",
            f"100644,{blob},raw-floor/r{i}.yaml",
            env=ienv,
        )
        tree = git(clone, "write-tree", env=ienv).strip()
        commit = git(clone, "commit-tree", tree, "-p", tip, "-m", f"raw {i}", env=env).strip()
        git(
            clone,
            "push",
            "-q",
            f"--force-with-lease=refs/heads/{ref}:{tip}",
            "origin",
            f"{commit}:refs/heads/{ref}",
            env=env,
        )

    return op


def cli_claim(clone: Path, env: dict[str, str]) -> Callable[[int], None]:
    exe = str(Path(sys.executable).with_name("gitcoord"))
    argv = [exe] if os.path.exists(exe) else [sys.executable, "-m", "gitcoord"]

    def op(i: int) -> None:
        subprocess.run(
            [*argv, "-C", str(clone), "--session", "bench", "claim", "task", f"cli-{i}"],
            env=env,
            check=True,
            capture_output=True,
        )

    return op


def api_claim(clone: Path, env: dict[str, str]) -> tuple[Callable[[int], None], Callable[[], None]]:
    os.environ.update({k: env[k] for k in ("HOME", "GIT_CONFIG_NOSYSTEM", "GIT_CONFIG_GLOBAL")})
    from gitcoord import Coordinator

    coord = Coordinator(str(clone), session="bench")

    def op(i: int) -> None:
        coord.claim("task", f"api-{i}")

    return op, coord.close


def measure(runs: int, transport: str) -> dict[str, list[float]]:
    with tempfile.TemporaryDirectory(prefix="gitcoord-bench-") as tmp_s:
        tmp = Path(tmp_s)
        (tmp / "home").mkdir()
        env = hermetic_env(tmp / "home")
        remote = tmp / "remote.git"
        git(tmp, "init", "-q", "--bare", str(remote), env=env)
        with contextlib.ExitStack() as stack:
            url = str(remote)
            if transport == "daemon":
                url = stack.enter_context(git_daemon(tmp)) + "/remote.git"
            clone = tmp / "clone"
            git(tmp, "clone", "-q", url, str(clone), env=env)
            gc = [sys.executable, "-m", "gitcoord", "-C", str(clone)]
            subprocess.run([*gc, "init"], env=env, check=True, capture_output=True)
            subprocess.run(
                [*gc, "--session", "bench", "register", "--role", "bench", "--goal", "measure"],
                env=env,
                check=True,
                capture_output=True,
            )
            api_op, close = api_claim(clone, env)
            results = {
                "raw git floor": series(raw_floor(clone, env, "gitcoord"), runs),
                "gitcoord claim (cold CLI)": series(cli_claim(clone, env), runs),
                "gitcoord claim (in process)": series(api_op, runs),
            }
            close()
            return results


def report(results: dict[str, list[float]], runs: int, transport: str) -> str:
    floor = statistics.median(results["raw git floor"])
    lines = [
        f"Sequential series of {runs} claims per row, {transport} remote, "
        f"{datetime.now(timezone.utc):%Y-%m-%d}, {platform.machine()} with {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, {git(Path('.'), '--version').strip()}.",
        "",
        "| operation | median | p90 | × floor |",
        "|---|---:|---:|---:|",
    ]
    for name, xs in results.items():
        med = statistics.median(xs)
        p90 = sorted(xs)[int(0.9 * (len(xs) - 1))]
        lines.append(f"| {name} | {med * 1000:.1f} ms | {p90 * 1000:.1f} ms | {med / floor:.2f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--transport", choices=["file", "daemon"], default="file")
    args = ap.parse_args()
    print(report(measure(args.runs, args.transport), args.runs, args.transport))


if __name__ == "__main__":
    main()
