"""Shared pieces of the benchmark suite: a hermetic environment, remotes on every
transport, fast history building with `git fast-import`, a scaled clock, statistics.

Everything a benchmark creates lives under one temporary directory; git reads no
configuration but the suite's own (temporary HOME, GIT_CONFIG_NOSYSTEM=1).
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from testing import servers

# --- environment ---------------------------------------------------------------------


def git(
    cwd: Path | str, *args: str, env: dict[str, str] | None = None, input: bytes | None = None
) -> str:
    proc = subprocess.run(
        ["git", *args], cwd=cwd, env=env, input=input, capture_output=True, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args[:3])} failed: {proc.stderr.decode().strip()}")
    return proc.stdout.decode()


def hermetic_env(home: Path) -> dict[str, str]:
    """The environment every process of the suite runs under (as in tests/conftest.py)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "GITCOORD_"))}
    cfg = home / ".gitconfig"
    cfg.write_text(
        "[user]\n\tname = Bench\n\temail = bench@example.com\n[init]\n\tdefaultBranch = main\n"
        "[gc]\n\tauto = 0\n"
    )
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        GIT_CONFIG_NOSYSTEM="1",
        GIT_CONFIG_GLOBAL=str(cfg),
        GIT_TERMINAL_PROMPT="0",
        GITCOORD_AGENT="0",  # cold unless a benchmark asks for the agent
        GITCOORD_AGENT_IDLE="60",
        PYDANTIC_DISABLE_PLUGINS="__all__",
    )
    # gitcoord keeps its per-user runtime files (the machine-wide turn, the agent's
    # socket) under XDG_RUNTIME_DIR: ours, inside the benchmark's temporary directory.
    runtime = home.parent / "run"
    runtime.mkdir(mode=0o700, exist_ok=True)
    env["XDG_RUNTIME_DIR"] = str(runtime)
    return env


@contextlib.contextmanager
def setenv(values: dict[str, str]) -> Iterator[None]:
    """This process's environment with `values` set for the block, then as it was."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def use_env(env: dict[str, str]) -> None:
    """Run this process (and the workers it forks) under the hermetic environment."""
    for k in list(os.environ):
        if k.startswith(("GIT_", "GITCOORD_")) or k == "XDG_RUNTIME_DIR":
            del os.environ[k]
    os.environ.update(env)


def gitcoord_argv() -> list[str]:
    """The installed console script (what a session runs), or `python -m gitcoord`."""
    exe = Path(sys.executable).with_name("gitcoord")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "gitcoord"]


def find_lighttpd(install: bool) -> tuple[str | None, str]:
    """The lighttpd binary, installing Debian's package when missing and allowed (root
    with apt-get), as .ci/run does: without starting it as a system service (a
    policy-rc.d that refuses, for the duration of the install only)."""

    if found := servers.lighttpd():
        return found, "lighttpd (already installed)"
    if not install:
        return None, "lighttpd is not installed and --no-install was given"
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return None, "lighttpd is not installed and this is not root with apt-get"
    policy = Path("/usr/sbin/policy-rc.d")
    made = False
    if not policy.exists():
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
        made = True
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    argv = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "lighttpd"]
    try:
        if subprocess.run(argv, capture_output=True, env=env, check=False).returncode != 0:
            subprocess.run(["apt-get", "update", "-qq"], capture_output=True, env=env)
            subprocess.run(argv, capture_output=True, env=env, check=False)
    finally:
        if made:
            policy.unlink(missing_ok=True)
    if found := servers.lighttpd():
        return found, "lighttpd (installed now with apt-get, not started as a service)"
    return None, "lighttpd is not installed and apt-get could not install it"


def bare_remote(path: Path, env: dict[str, str]) -> Path:
    git(path.parent, "init", "-q", "--bare", str(path), env=env)
    git(path, "config", "http.receivepack", "true", env=env)
    return path


def clone(url: str, dest: Path, env: dict[str, str]) -> Path:
    """A clone whose `origin` is `url`. A file:// remote is cloned from its path (local
    clone: hard links, no upload-pack) and then pointed at the URL: the same clone, made
    faster, and every later fetch and push goes through file:// as a session's would."""
    if url.startswith("file://"):
        git(dest.parent, "clone", "-q", url[len("file://") :], str(dest), env=env)
        git(dest, "remote", "set-url", "origin", url, env=env)
    else:
        git(dest.parent, "clone", "-q", url, str(dest), env=env)
    return dest


def branch_commits(repo: Path, env: dict[str, str], ref: str = "refs/heads/gitcoord") -> set[str]:
    return set(git(repo, "rev-list", ref, env=env).split())


# --- building histories fast -----------------------------------------------------------


@dataclass
class FastHistory:
    """A valid coordination history built in memory — the same pure `gitcoord.ops`
    functions a transaction calls, on a `State` updated with each change — and written
    with one `git fast-import` instead of one push per commit."""

    author: str = "Bench <bench@example.com>"
    commits: list[tuple[int, bytes, dict[str, bytes]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        from gitcoord.domain.state import State

        self.state = State()

    def apply(
        self, change: Any, when: datetime, render: Callable[[Any], bytes] | None = None
    ) -> None:
        """Append the commit `change` makes; `render` (a faster `yamlio.dump` for
        documents of a known simple shape) is checked against `yamlio.dump` now and then."""
        from gitcoord.domain import yamlio
        from gitcoord.domain.branch import commit_message

        if change.noop:
            return
        dump = render or yamlio.dump
        blobs = {
            path: doc if isinstance(doc, bytes) else dump(doc)
            for path, doc in change.writes.items()
        }
        if render is not None and len(self.commits) % 500 == 0:
            for path, doc in change.writes.items():
                if not isinstance(doc, bytes) and blobs[path] != yamlio.dump(doc):
                    raise AssertionError(f"fast rendering of {path} differs from yamlio.dump")
        self.state = self.state.apply(change.writes)
        message = commit_message(change)  # the store's own
        self.commits.append((int(when.timestamp()), message.encode(), blobs))

    def raw(self, subject: str, when: datetime, blobs: dict[str, bytes]) -> None:
        """A commit of plain files (the naive floor's own tree)."""
        self.commits.append((int(when.timestamp()), (subject + "\n").encode(), blobs))

    def write(
        self,
        repo: Path,
        env: dict[str, str],
        ref: str = "refs/heads/gitcoord",
        repack: bool = False,
    ) -> str:
        """Append the commits to `ref` of `repo` (created when missing); returns the tip.
        `repack`: then repack the repository as `git gc` would leave a long-lived remote
        (fast-import's own pack keeps long delta chains that make every read slower)."""
        have = (
            subprocess.run(
                ["git", "rev-parse", "--verify", "-q", ref], cwd=repo, env=env, capture_output=True
            )
            .stdout.decode()
            .strip()
        )
        out = bytearray()
        for i, (when, message, blobs) in enumerate(self.commits):
            out += f"commit {ref}\n".encode()
            out += f"committer {self.author} {when} +0000\n".encode()
            out += b"data %d\n%s\n" % (len(message), message)
            if i == 0 and have:
                out += f"from {have}\n".encode()
            for path, data in blobs.items():
                out += f"M 100644 inline {path}\n".encode()
                out += b"data %d\n%s\n" % (len(data), data)
        subprocess.run(
            ["git", "fast-import", "--quiet", "--done"],
            cwd=repo,
            env=env,
            input=bytes(out) + b"done\n",
            capture_output=True,
            check=True,
        )
        self.commits.clear()
        if repack:
            git(repo, "repack", "-a", "-d", "-f", "-q", env=env)
        return git(repo, "rev-parse", ref, env=env).strip()


def setup_sessions(
    hist: FastHistory,
    sessions: Sequence[str],
    when: datetime,
    *,
    slots: int | None = None,
    claims: Sequence[str] = (),
) -> None:
    """init, every session registered, and (optionally) each `claims[i]` resource claimed
    and released by sessions[i] — so every run of a benchmark starts from the same state."""
    from gitcoord.ops import claims as claim_ops
    from gitcoord.ops import sessions as session_ops

    hist.apply(session_ops.init(hist.state, when, slots=slots or max(12, len(sessions))), when)
    for sid in sessions:
        hist.apply(
            session_ops.register(
                hist.state, when, session=sid, role=f"role of {sid}", goal="bench"
            ),
            when,
        )
    for sid, res in zip(sessions, claims, strict=False):
        type_, _, name = res.partition("/")
        hist.apply(claim_ops.claim(hist.state, when, session=sid, type_=type_, name=name), when)
        hist.apply(claim_ops.release(hist.state, when, session=sid, type_=type_, name=name), when)


# --- a scaled clock ----------------------------------------------------------------------


@dataclass(frozen=True)
class SimClock:
    """Simulated time running `rate` times faster than the wall clock, shared by every
    process that installs it (they agree on `real0`)."""

    sim0: datetime
    real0: float
    rate: float

    def now(self) -> datetime:
        return self.sim0 + timedelta(seconds=(time.time() - self.real0) * self.rate)

    def minutes(self) -> float:
        return (time.time() - self.real0) * self.rate / 60

    def real_at(self, sim_minutes: float) -> float:
        return self.real0 + sim_minutes * 60 / self.rate

    def install(self) -> None:
        """Make `gitcoord.clock` (the only clock gitcoord reads) follow this one."""
        from gitcoord import clock

        clock.now = lambda: self.now().replace(microsecond=0)  # type: ignore[assignment]
        clock.precise_now = self.now  # type: ignore[assignment]


# --- numbers -----------------------------------------------------------------------------


def pct(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, -(-p * len(ordered) // 100) - 1))
    return ordered[int(rank)]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def ms(seconds: float) -> str:
    if seconds != seconds:  # NaN
        return "–"
    return f"{seconds * 1000:.0f} ms" if seconds >= 0.1 else f"{seconds * 1000:.1f} ms"


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def machine() -> dict[str, str]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        usable = os.cpu_count() or 1
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cores": f"{usable} usable ({os.cpu_count()} online)",
        "cpu": model,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "git": subprocess.run(["git", "--version"], capture_output=True, text=True).stdout.strip(),
        "os": f"{platform.system()} {platform.release()} {platform.machine()}",
    }


def loadavg() -> str:
    try:
        return " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:  # pragma: no cover
        return "?"


@contextlib.contextmanager
def workdir(keep: bool = False) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="gitcoord-bench-"))
    try:
        yield path
    finally:
        if not keep:
            shutil.rmtree(path, ignore_errors=True)


def measured_alone(
    data: dict[str, Any],
    section: str,
    command: str,
    rest: str = "the rest of this page comes from the run named at its top",
) -> list[str]:
    """The lines that open a section an --only run measured by itself: by which command,
    when, how long it took, under which load; and where the rest of the page is from."""
    m = data["machine"]
    return [
        f"Measured on its own by `.venv/bin/{command}` on {m['date']} in "
        f"{data['timings'].get(section, 0):.0f} s (load average at start "
        f"{m['load at start']}, at end {m['load at end']}; {m['cores']}); {rest}.",
        "",
    ]
