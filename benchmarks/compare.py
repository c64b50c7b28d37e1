"""Two revisions of gitcoord side by side in one run: did a change make anything slower?

    .venv/bin/python -m benchmarks --only compare                  # HEAD against the working tree
    .venv/bin/python -m benchmarks --only compare --baseline REV   # REV against the working tree
    .venv/bin/python -m benchmarks --only compare --baseline A --new B   # two revisions
    .venv/bin/python -m benchmarks --only compare --baseline HEAD --new HEAD  # A/A: the noise

Figures from separate runs differ by more than most changes do (the load of a shared
machine drifts by tens of percent within minutes), so a before/after comparison has to
measure both sides in the same run, interleaved. Three figures, the ones a restructuring
could plausibly move:
  - a cold `python -m gitcoord --version` (GITCOORD_AGENT=0): interpreter start and the
    imports the command line needs — what a new module layout changes first;
  - `python -m gitcoord --version` through the warm per-user agent: the client's own start
    (standard library only, by design) and one round trip over the Unix socket;
  - a claim in process (`from gitcoord import Coordinator` in a long-lived worker): the
    transaction itself, on a local bare remote (file://), timed without its release.

Each side is one directory put first on PYTHONPATH, with the same interpreter: a revision
extracted with `git archive`, or the working tree itself. Every process runs in a neutral
working directory (else `python -m` would import the gitcoord of the current directory),
and each side checks that its `gitcoord` really comes from its own directory. Only the
public surface both layouts keep is used — `python -m gitcoord ...` and `from gitcoord
import Coordinator` — never an internal module, whose path a restructuring changes.

Each side has its own XDG_RUNTIME_DIR, so its own agent, started as a user's first command
starts it (a command that finds no agent runs in its own process and starts one). The
agent's socket name carries a fingerprint of the code, which we do not compute (that would
mean importing the client's internals): instead the agents are found in /proc by their
command line, which names their socket under our runtime directory. A timed call after
which a new agent appeared ran in its own process (the working tree changed under us), so
it is discarded, the new agent is waited for and warmed, and the call is measured again.
At the end every agent is stopped: its socket removed (an agent exits when it loses its
socket), then terminated by pid.

Rounds alternate the sides (old, new, old, new, ...), and the side that goes first swaps
every round, so load drifting on the machine hits both alike and neither always follows the
other. Reported: medians, the spread (p25–p75 and p90) and the ratio new/old of the medians
with a 95% interval from a paired bootstrap over the rounds. Timings are never asserted.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from . import common

COLD = "cold `python -m gitcoord --version` (GITCOORD_AGENT=0)"
AGENT = "`python -m gitcoord --version` through the warm agent"
CLAIM = "claim in process (`Coordinator.claim`, file:// remote)"
FIGURES = (COLD, AGENT, CLAIM)
SIDES = ("old", "new")
WORKTREE = "working tree"

# The in-process worker: only the public API (`gitcoord.Coordinator`), so that it runs
# unchanged against any layout. One line on stdin = one claim; it answers with the
# seconds the claim took; the release that follows (so the next claim grants the same
# resource again, generation + 1, and the state stays the same size) is not timed.
# Anything gitcoord itself might print goes to stderr, never into the answers.
WORKER = """\
import json, sys, time
answers, sys.stdout = sys.stdout, sys.stderr
import gitcoord
from gitcoord import Coordinator

coord = Coordinator(sys.argv[1], session="bench", remote="origin")
coord.init()
coord.register(role="benchmark", goal="compare two revisions")
print(json.dumps({"ready": gitcoord.__file__}), file=answers, flush=True)
for line in sys.stdin:
    name = line.strip()
    t = time.perf_counter()
    coord.claim("task", name, ttl="1h")
    seconds = time.perf_counter() - t
    coord.release("task", name)
    print(json.dumps({"seconds": seconds}), file=answers, flush=True)
coord.close()
"""

# Asked of every side before anything is timed: which gitcoord it imports.
WHICH = "import gitcoord; from gitcoord import Coordinator; print(gitcoord.__file__)"


# --- the two sides -------------------------------------------------------------------------


@dataclass
class Revision:
    """What one side runs: a commit of the repository, or its working tree (commit None)."""

    asked: str  # as given on the command line, or WORKTREE
    commit: str | None
    describe: str


def _git_out(repo: Path, *args: str, env: dict[str, str]) -> str:
    # GIT_OPTIONAL_LOCKS=0: `status` must not refresh (write) the index of a repository
    # another engineer is committing in.
    proc = subprocess.run(
        ["git", "-C", str(repo), *args],
        env={**env, "GIT_OPTIONAL_LOCKS": "0"},
        capture_output=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args[:2])} failed: {proc.stderr.decode().strip()}")
    return proc.stdout.decode().strip()


def resolve(repo: Path, rev: str | None, env: dict[str, str]) -> Revision:
    """`rev` as a commit (None: the working tree), with a line that describes it.
    Read-only git commands only: the repository's index and HEAD are someone else's."""
    if rev is None:
        head = _git_out(repo, "log", "-1", "--format=%h %s", "HEAD", env=env)
        changed = _git_out(repo, "status", "--porcelain", "--", "gitcoord", env=env)
        n = len(changed.splitlines())
        return Revision(
            WORKTREE, None, f"working tree: HEAD {head}, {n} changed paths in gitcoord/"
        )
    try:
        commit = _git_out(
            repo, "rev-parse", "--verify", "--end-of-options", f"{rev}^{{commit}}", env=env
        )
    except RuntimeError:
        raise RuntimeError(f"{rev!r} names no commit of {repo}") from None
    return Revision(rev, commit, _git_out(repo, "log", "-1", "--format=%h %s", commit, env=env))


def extract(repo: Path, commit: str, dest: Path, env: dict[str, str]) -> Path:
    """`git archive COMMIT | tar -x -C DEST`; returns the directory to put on PYTHONPATH."""
    dest.mkdir(parents=True)
    archive = subprocess.Popen(
        ["git", "-C", str(repo), "archive", "--format=tar", commit],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert archive.stdout is not None
    tar = subprocess.run(
        ["tar", "-x", "-C", str(dest)], stdin=archive.stdout, capture_output=True, check=False
    )
    archive.stdout.close()
    err = archive.stderr.read().decode() if archive.stderr else ""
    if archive.wait() != 0 or tar.returncode != 0:
        raise RuntimeError(f"extracting {commit[:12]} failed: {err}{tar.stderr.decode()}")
    return package_root(dest)


def package_root(tree: Path) -> Path:
    """The directory holding the `gitcoord` package: the tree itself, or its src/."""
    for root in (tree, tree / "src"):
        if (root / "gitcoord" / "__init__.py").is_file():
            return root
    raise RuntimeError(f"no gitcoord package in {tree}")


def code_stamp(root: Path) -> list[tuple[str, int, int]]:
    """Every .py file of the package with its mtime and size: to tell whether the code a
    side runs changed during the run (only the working tree can)."""
    out = []
    for path in sorted((root / "gitcoord").rglob("*.py")):
        with contextlib.suppress(OSError):
            st = path.stat()
            out.append((str(path.relative_to(root)), st.st_mtime_ns, st.st_size))
    return out


# --- agents, found by their command line -----------------------------------------------------


def _processes(marker: str) -> dict[int, int]:
    """{pid: parent pid} of the live processes whose command line contains `marker`."""
    found: dict[int, int] = {}
    needle = marker.encode()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/cmdline", "rb") as fh:
                if needle not in fh.read():
                    continue
            with open(f"/proc/{entry.name}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue  # gone meanwhile
        fields = stat[stat.rindex(b")") + 2 :].split()
        if fields[0] != b"Z":
            found[int(entry.name)] = int(fields[1])
    return found


def _answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX) as s:
        try:
            s.connect(str(path))
            return True
        except OSError:
            return False


class SideAgent:
    """The warm agent of one side, started the way a user's first command starts it.

    Its runtime directory is private to the side; an agent is a process whose command
    line names a socket under it (a command the agent forks has the same command line,
    so only processes whose parent is not one of them count as agents)."""

    def __init__(self, runtime: Path, env: dict[str, str], version: Callable[[], float]) -> None:
        self.runtime = runtime
        self.marker = str(runtime) + os.sep
        self.env = env
        self.version = version  # one untimed-or-timed `--version` call through the client
        self.started: set[int] = set()  # every agent pid seen, for the cleanup
        self.starts = 0

    def agents(self) -> set[int]:
        procs = _processes(self.marker)
        top = {pid for pid, parent in procs.items() if parent not in procs}
        self.started |= top
        return top

    def sockets(self) -> set[Path]:
        return set(self.runtime.rglob("*.sock"))

    def wait_ready(self, known: set[Path]) -> None:
        """Wait for a new agent's socket to answer, check the agent runs this side's code
        (its PYTHONPATH), and warm it with a few untimed calls."""
        deadline = time.monotonic() + 60
        while not any(_answers(s) for s in self.sockets() - known):
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"no gitcoord agent answered under {self.runtime} within 60 s "
                    "(a socket path too long for AF_UNIX falls back to the system's temporary "
                    "directory, outside the benchmark's)"
                )
            time.sleep(0.05)
        self.starts += 1
        for pid in self.agents():
            with contextlib.suppress(OSError):
                environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
                want = f"PYTHONPATH={self.env['PYTHONPATH']}".encode()
                if want not in environ:
                    raise RuntimeError(f"agent {pid} does not run with {want.decode()}")
        for _ in range(5):  # a new agent's first commands are slower
            self.version()

    def start(self) -> None:
        """The first command: finds no agent, runs in its own process and starts one."""
        known = self.sockets()
        before = self.agents()
        self.version()
        if not self.agents() - before:
            raise RuntimeError(
                "`python -m gitcoord --version` started no agent (GITCOORD_AGENT=1, "
                f"XDG_RUNTIME_DIR={self.runtime})"
            )
        self.wait_ready(known)

    def timed_call(self) -> tuple[float, bool]:
        """One timed call; False if it did not go through a warm agent (it started one:
        the code changed, so the fingerprint and the socket's name did), which is then
        waited for and warmed."""
        known, before = self.sockets(), self.agents()
        secs = self.version()
        if self.agents() - before:
            self.wait_ready(known)
            return secs, False
        return secs, True

    def stop(self) -> list[int]:
        """Remove the sockets (each agent exits when it loses its own), then terminate
        every agent this side started, by pid, waiting for it to go; returns any that
        would not."""
        for sock in self.runtime.rglob("*.sock*"):
            with contextlib.suppress(OSError):
                sock.unlink()
        alive = self.started | self.agents()
        deadline = time.monotonic() + 10
        sig = signal.SIGTERM
        while alive:
            still = set(_processes(self.marker))  # the marker again: never a reused pid
            alive &= still
            for pid in alive:
                with contextlib.suppress(OSError):
                    os.kill(pid, sig)
            if not alive:
                break
            if time.monotonic() > deadline:
                if sig == signal.SIGKILL:
                    break
                sig, deadline = signal.SIGKILL, time.monotonic() + 5
            time.sleep(0.05)
        return sorted(alive)


# --- one side ---------------------------------------------------------------------------------


@dataclass
class Side:
    label: str
    revision: Revision
    root: Path  # first on PYTHONPATH
    env: dict[str, str]  # GITCOORD_AGENT=0
    cwd: Path  # neutral: no gitcoord/ in it
    agent: SideAgent | None = None
    worker: subprocess.Popen[str] | None = None
    worker_log: IO[str] | None = None
    samples: dict[str, list[float]] = field(default_factory=lambda: {f: [] for f in FIGURES})
    discarded: int = 0
    stamp: list[tuple[str, int, int]] = field(default_factory=list)

    def run(self, argv: Sequence[str], env: dict[str, str]) -> float:
        t = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, *argv],
            cwd=self.cwd,
            env=env,
            capture_output=True,
            check=False,
            timeout=120,
        )
        secs = time.perf_counter() - t
        if proc.returncode != 0 or b"version" not in proc.stdout + proc.stderr:
            raise RuntimeError(
                f"{self.label} side{self.hint}: {' '.join(argv)} failed ({proc.returncode}): "
                f"{(proc.stderr or proc.stdout).decode().strip()[-2000:]}"
            )
        return secs

    def cold(self) -> float:
        return self.run(["-m", "gitcoord", "--version"], self.env)

    def check_import(self) -> str:
        proc = subprocess.run(
            [sys.executable, "-c", WHICH],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
        )
        where = proc.stdout.strip()
        if proc.returncode != 0:
            raise RuntimeError(
                f"the {self.label} side ({self.revision.describe}) does not import{self.hint}: "
                f"{proc.stderr.strip()[-2000:]}"
            )
        if not Path(where).resolve().is_relative_to(self.root.resolve()):
            raise RuntimeError(f"the {self.label} side imports {where}, not from {self.root}")
        return where

    @property
    def is_worktree(self) -> bool:
        return self.revision.commit is None

    @property
    def hint(self) -> str:
        if not self.is_worktree:
            return ""
        return " (the working tree, mid-change? retry later, or compare revisions: --new REV)"

    def start_worker(self, clone: Path, log: Path) -> None:
        self.worker_log = log.open("w")
        self.worker = subprocess.Popen(
            [sys.executable, "-c", WORKER, str(clone)],
            cwd=self.cwd,
            env=self.env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.worker_log,
            text=True,
            bufsize=1,
        )
        ready = self._answer()
        if not Path(ready["ready"]).resolve().is_relative_to(self.root.resolve()):
            raise RuntimeError(f"the {self.label} worker imports {ready['ready']}")

    def _answer(self) -> dict[str, Any]:
        assert self.worker is not None and self.worker.stdout is not None
        line = self.worker.stdout.readline()
        if not line:
            self.worker.wait()
            assert self.worker_log is not None
            self.worker_log.flush()
            tail = Path(self.worker_log.name).read_text()[-2000:]
            raise RuntimeError(f"the {self.label} side's in-process worker failed: {tail}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def claim(self) -> float:
        assert self.worker is not None and self.worker.stdin is not None
        self.worker.stdin.write("compare\n")
        self.worker.stdin.flush()
        return float(self._answer()["seconds"])

    def stop(self) -> None:
        if self.worker is not None:
            with contextlib.suppress(OSError):
                assert self.worker.stdin is not None
                self.worker.stdin.close()
            try:
                self.worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.worker.kill()
                self.worker.wait()
        if self.worker_log is not None:
            self.worker_log.close()
        if self.agent is not None and (left := self.agent.stop()):
            print(f"compare: agents {left} would not exit", file=sys.stderr)


def _setup(
    tmp: Path, env: dict[str, str], label: str, revision: Revision, root: Path
) -> tuple[Side, Path]:
    """One side: its neutral working directory, environment, agent, remote and clone."""
    base = tmp / label
    base.mkdir()
    cwd = base / "cwd"
    cwd.mkdir()
    side_env = {**env, "PYTHONPATH": str(root), "GITCOORD_AGENT": "0"}
    side = Side(label, revision, root, side_env, cwd, stamp=code_stamp(root))
    side.check_import()
    # short, private, 0700: the agent's socket lives under it (AF_UNIX paths are short)
    runtime = tmp / f"r{label}"
    runtime.mkdir(mode=0o700)
    agent_env = {**side_env, "GITCOORD_AGENT": "1", "XDG_RUNTIME_DIR": str(runtime)}
    side.env["XDG_RUNTIME_DIR"] = str(runtime)  # the cold side's turn files, if any
    side.agent = SideAgent(
        runtime, agent_env, lambda: side.run(["-m", "gitcoord", "--version"], agent_env)
    )
    remote = common.bare_remote(base / "remote.git", env)
    clone = common.clone(f"file://{remote}", base / "clone", env)
    return side, clone


# --- numbers ------------------------------------------------------------------------------------


def paired_interval(
    old: Sequence[float], new: Sequence[float], resamples: int = 2000
) -> tuple[float, float]:
    """95% interval of median(new) / median(old), bootstrapping whole rounds (a round's old
    and new sample stay together: they saw the same moment of the machine)."""
    rng = random.Random(0)
    n = min(len(old), len(new))
    if n < 2:
        return float("nan"), float("nan")
    ratios = []
    for _ in range(resamples):
        idx = [rng.randrange(n) for _ in range(n)]
        ratios.append(common.median([new[i] for i in idx]) / common.median([old[i] for i in idx]))
    return common.pct(ratios, 2.5), common.pct(ratios, 97.5)


def summary(values: Sequence[float]) -> dict[str, float]:
    return {
        "median": common.median(values),
        "p25": common.pct(values, 25),
        "p75": common.pct(values, 75),
        "p90": common.pct(values, 90),
        "n": len(values),
    }


# --- the section --------------------------------------------------------------------------------


def run(
    tmp: Path,
    env: dict[str, str],
    repo: Path,
    old: Revision,
    new: Revision,
    rounds: int,
    warmup: int,
    budget: float,
    git_env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Measure `old` against `new` (see `resolve`; the working tree is `repo`'s).

    `rounds` rounds after `warmup` untimed ones, fewer if the measured rounds would take
    more than `budget` seconds (a loaded machine): the section keeps to its time.
    `env`: the suite's hermetic environment; `git_env`: the one to read `repo` with (the
    user's, for git's safe.directory checks). Returns the series and their summaries."""
    git_env = git_env if git_env is not None else dict(os.environ)
    tmp = tmp / "compare"
    tmp.mkdir()
    revisions = {"old": old, "new": new}
    sides: dict[str, Side] = {}
    clones: dict[str, Path] = {}
    notes: list[str] = []
    t_start = time.monotonic()
    try:
        for label, rev in revisions.items():
            if rev.commit is None:
                root = package_root(repo)
            else:
                root = extract(repo, rev.commit, tmp / "src" / label, git_env)
            sides[label], clones[label] = _setup(tmp, env, label, rev, root)
        for label in SIDES:
            side = sides[label]
            assert side.agent is not None
            side.start_worker(clones[label], tmp / label / "worker.log")
            side.agent.start()

        def one(side: Side, figure: str) -> float:
            if figure == COLD:
                return side.cold()
            if figure == CLAIM:
                return side.claim()
            assert side.agent is not None
            for _ in range(5):
                secs, warm = side.agent.timed_call()
                if warm:
                    return secs
                side.discarded += 1
            raise RuntimeError(f"the {side.label} side's agent keeps being replaced")

        t_rounds = time.monotonic()
        for i in range(-warmup, rounds):  # negative: warm-up rounds (page cache, .pyc), not kept
            if i == 0:
                t_rounds = time.monotonic()
            elif i > 0 and time.monotonic() - t_rounds > budget:
                notes.append(
                    f"Stopped after {i} of {rounds} rounds: the time budget of {budget:.0f} s "
                    "for the measured rounds was spent (a loaded machine)."
                )
                break
            order = [sides["old"], sides["new"]]
            if i % 2:
                order.reverse()  # the side that goes first swaps every round
            for figure in FIGURES:
                for side in order:
                    secs = one(side, figure)
                    if i >= 0:
                        side.samples[figure].append(secs)
            if i >= 0 and (i + 1) % 20 == 0 and i + 1 < rounds:
                print(
                    f"         compare: {i + 1}/{rounds} rounds, "
                    f"{time.monotonic() - t_start:.0f} s",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        for side in sides.values():
            side.stop()

    for side in sides.values():
        if side.is_worktree and code_stamp(side.root) != side.stamp:
            notes.append(
                f"The working tree's gitcoord/ changed during the run (others editing it): the "
                f"{side.label} side's command-line figures measured whatever code was there at "
                "each call; its in-process worker kept the code it imported at the start."
            )
        assert side.agent is not None
        if side.agent.starts > 1 or side.discarded:
            notes.append(
                f"The {side.label} side's agent was replaced {side.agent.starts - 1} time(s) "
                f"(its code changed); {side.discarded} call(s) that ran in their own process "
                "instead were discarded and measured again through the new, warmed agent."
            )
    figures: dict[str, Any] = {}
    for figure in FIGURES:
        before, after = sides["old"].samples[figure], sides["new"].samples[figure]
        lo, hi = paired_interval(before, after)
        figures[figure] = {
            "old": summary(before),
            "new": summary(after),
            "ratio": common.median(after) / common.median(before)
            if before and after
            else float("nan"),
            "interval": [lo, hi],
        }
    return {
        "sides": {
            label: {
                "asked": side.revision.asked,
                "commit": side.revision.commit,
                "describe": side.revision.describe,
                "path": str(side.root),
            }
            for label, side in sides.items()
        },
        "rounds": len(sides["old"].samples[COLD]),
        "warmup": warmup,
        "nproc": len(os.sched_getaffinity(0)),
        "series": {f: {label: sides[label].samples[f] for label in SIDES} for f in FIGURES},
        "figures": figures,
        "notes": notes,
        "seconds": time.monotonic() - t_start,
    }


# --- the page -------------------------------------------------------------------------------------


def _num(seconds: float) -> str:
    """Milliseconds without the unit, as precise as `common.ms`."""
    return common.ms(seconds).removesuffix(" ms")


def _spread(s: dict[str, float]) -> str:
    return f"{_num(s['p25'])}–{_num(s['p75'])} · {common.ms(s['p90'])}"


def markdown(result: dict[str, Any], machine: dict[str, str], command: str, quick: bool) -> str:
    old, new = result["sides"]["old"], result["sides"]["new"]

    def name(side: dict[str, Any]) -> str:
        if side["commit"] is None:
            return str(side["describe"])
        return f"`{side['asked']}` = {side['describe']}"

    lines = [
        "# gitcoord: two revisions side by side",
        "",
        f"Written by `.venv/bin/{command}` on {machine['date']}"
        + (" (**--quick smoke run: too few samples to judge**)" if quick else "")
        + f"; the comparison took {result['seconds']:.0f} s.",
        "",
        f"- **old**: {name(old)}",
        f"- **new**: {name(new)}",
        f"- machine: nproc {result['nproc']} ({machine['cpu']}); {machine['python']}; "
        f"{machine['git']}; load average at start {machine.get('load at start', '?')}, "
        f"at end {machine.get('load at end', '?')}",
        f"- samples: {result['rounds']} per figure and side, in {result['rounds']} rounds "
        f"after {result['warmup']} warm-up round(s); each round measures every figure on "
        "both sides, alternating old and new, the side that goes first swapping every round",
        "",
        "| figure | old median | new median | **new/old** (95% interval) "
        "| old p25–p75 · p90 | new p25–p75 · p90 |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for figure in FIGURES:
        f = result["figures"][figure]
        lo, hi = f["interval"]
        interval = f" ({lo:.2f}–{hi:.2f})" if lo == lo else ""
        lines.append(
            f"| {figure} | {common.ms(f['old']['median'])} | {common.ms(f['new']['median'])} "
            f"| **{f['ratio']:.2f}×**{interval} | {_spread(f['old'])} | {_spread(f['new'])} |"
        )
    lines += [
        "",
        "new/old below 1 means the new side is faster. The interval comes from resampling "
        "whole rounds (a paired bootstrap): one that contains 1.00 means this run cannot tell "
        "the two sides apart. Each side runs the same interpreter with its own directory "
        "first on PYTHONPATH, its own agent and its own file:// remote; see "
        "benchmarks/compare.py.",
    ]
    if result["notes"]:
        lines += ["", *(f"- {n}" for n in result["notes"])]
    return "\n".join(lines) + "\n"
