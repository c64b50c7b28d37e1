"""Sections 1, 2, 3 and 7: one claim at a time, next to the raw git floor, per transport.

Rows, measured round-robin (round i runs every row once, in an order rotated by i,
so load drifting on a shared machine hits every row alike):
  - the raw git floor: `latency.raw_floor`, the plain-shell pipeline of the field notes
    (fetch, temp index, hash-object, update-index, write-tree, commit-tree, push with an
    explicit lease);
  - `gitcoord claim` as a truly cold process (`GITCOORD_AGENT=0`: interpreter start,
    imports, the transaction);
  - `gitcoord claim` through the warm per-user agent (the `gitcoord` console script
    hands the command to an agent started beforehand with a private XDG_RUNTIME_DIR);
  - the same claim in process through a long-lived `gitcoord.Coordinator`.
Each timed claim grants a released resource again (generation + 1) and is released,
untimed, right after: the state stays the same size for every run of every row.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from testing import servers

from . import common
from .latency import raw_floor

FLOOR = "raw git floor"
COLD = "gitcoord claim, cold CLI (GITCOORD_AGENT=0)"
AGENT = "gitcoord claim, CLI through the warm agent"
INPROC = "gitcoord claim, in process (Coordinator)"
# Probes measured in the same rounds on file://, to decompose the agent path's time:
CLIENT = "probe: python start + import gitcoord.client (the client's own start)"
VERSION = "probe: `gitcoord --version` through the agent (client + round trip)"
CLIMAIN = "probe: claim through `cli.main` in this warm process (the agent child's work)"
PROBES = (CLIENT, VERSION, CLIMAIN)


class Agents:
    """Warm agents of our own, on a short private XDG_RUNTIME_DIR (as tests/test_agent.py).

    The socket's name carries a fingerprint of the installed code; when the code changes
    mid-run (others editing gitcoord/), `ensure` starts an agent for the new name first,
    untimed, so that every timed call really goes through a warm agent. All of them are
    stopped (socket removed, then terminated by pid) at the end.
    """

    def __init__(self, env: dict[str, str], serve: str | None = None) -> None:
        self.serve = serve  # python code run as the agent (an experiment), or the stock one
        # short (AF_UNIX paths), inside the benchmark's own temporary directory
        base = Path(env["HOME"]).parent if "HOME" in env else None
        self.runtime = tempfile.mkdtemp(prefix="a", dir=base)
        self.env = {**env, "XDG_RUNTIME_DIR": self.runtime, "GITCOORD_AGENT": "1"}
        self.procs: list[subprocess.Popen[bytes]] = []
        self.path = ""

    def _socket_path(self) -> str:
        from gitcoord.faces import client

        saved = os.environ.get("XDG_RUNTIME_DIR")
        os.environ["XDG_RUNTIME_DIR"] = self.runtime
        try:
            return client.socket_path()
        finally:
            if saved is None:
                os.environ.pop("XDG_RUNTIME_DIR", None)
            else:
                os.environ["XDG_RUNTIME_DIR"] = saved

    @staticmethod
    def _answers(path: str) -> bool:
        if not os.path.exists(path):
            return False
        with socket.socket(socket.AF_UNIX) as s:
            try:
                s.connect(path)
                return True
            except OSError:
                return False

    def ensure(self) -> None:
        path = self._socket_path()
        if path == self.path and self._answers(path):
            return
        if self.path:
            with contextlib.suppress(OSError):
                os.unlink(self.path)  # the old agent exits on its own
        how = ["-c", self.serve] if self.serve else ["-m", "gitcoord.faces.agent"]
        proc = subprocess.Popen(
            [sys.executable, *how, path],
            env=self.env,
            cwd="/",
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.procs.append(proc)
        deadline = time.monotonic() + 60
        while not self._answers(path):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the gitcoord agent did not start")
            time.sleep(0.05)
        self.path = path
        for _ in range(5):  # a new agent's first commands are slower: warm it, untimed
            subprocess.run(
                [*common.gitcoord_argv(), "--version"], env=self.env, capture_output=True
            )

    @property
    def restarts(self) -> int:
        return max(0, len(self.procs) - 1)

    def close(self) -> None:
        for sock in Path(self.runtime).rglob("*.sock*"):
            with contextlib.suppress(OSError):
                sock.unlink()  # a removed socket also makes any other agent there exit
        for proc in self.procs:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(self.runtime, ignore_errors=True)


@contextlib.contextmanager
def agents(env: dict[str, str], serve: str | None = None) -> Iterator[Agents]:
    pool = Agents(env, serve)
    try:
        pool.ensure()
        yield pool
    finally:
        pool.close()


def cli_claim(clone: Path, env: dict[str, str], name: str) -> Callable[[], None]:
    argv = [*common.gitcoord_argv(), "-C", str(clone), "--session", "bench"]

    def op() -> None:
        proc = subprocess.run(
            [*argv, "claim", "task", name], env=env, capture_output=True, check=False
        )
        if proc.returncode != 0:
            raise RuntimeError(f"gitcoord claim failed: {proc.stderr.decode().strip()}")

    return op


def measure(
    tmp: Path,
    env: dict[str, str],
    transport: str,
    url_base: str | None,
    runs: int,
    rows: list[str],
    pool: Agents | None,
) -> dict[str, list[float]]:
    from gitcoord import Coordinator

    root = tmp / f"single-{transport}"
    root.mkdir()
    remote = common.bare_remote(root / "remote.git", env)
    hist = common.FastHistory()
    when = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=5)
    common.setup_sessions(hist, ["bench"], when, claims=["task/cold"])
    hist.write(remote, env)
    url = f"{url_base}/{remote.relative_to(tmp)}" if url_base else f"file://{remote}"
    work = common.clone(url, root / "clone", env)

    coord = Coordinator(str(work), session="bench")
    floor = raw_floor(work, env, "gitcoord")
    numbers = iter(range(10**9))
    ops: dict[str, tuple[Callable[[], Any], str | None]] = {
        FLOOR: (lambda: floor(next(numbers)), None),
        COLD: (cli_claim(work, env, "cold"), "cold"),
        INPROC: (lambda: coord.claim("task", "inproc"), "inproc"),
    }
    if pool is not None:
        ops[AGENT] = (cli_claim(work, pool.env, "agent"), "agent")
        version = [*common.gitcoord_argv(), "--version"]
        ops[VERSION] = (
            lambda: subprocess.run(version, env=pool.env, capture_output=True, check=True),
            None,
        )
    client = [sys.executable, "-c", "import gitcoord.faces.client"]
    ops[CLIENT] = (lambda: subprocess.run(client, env=env, capture_output=True, check=True), None)
    from gitcoord.faces.cli import main as cli_main

    def via_cli_main() -> None:
        argv = ["-C", str(work), "--session", "bench", "claim", "task", "climain"]
        with contextlib.redirect_stdout(io.StringIO()):
            if cli_main(argv) != 0:
                raise RuntimeError("gitcoord claim failed")

    ops[CLIMAIN] = (via_cli_main, "climain")
    rows = [r for r in rows if r in ops]
    out: dict[str, list[float]] = {r: [] for r in rows}
    try:
        for i in range(-1, runs):  # -1: warm-up round (page cache, first fetch), not kept
            order = rows[i % len(rows) :] + rows[: i % len(rows)]
            for row in order:
                fn, res = ops[row]
                if row in (AGENT, VERSION) and pool is not None:
                    pool.ensure()  # untimed; a no-op unless the installed code changed
                secs, _ = common.timed(fn)
                if i >= 0:
                    out[row].append(secs)
                if res is not None:
                    coord.release("task", res)  # untimed: the next claim grants it anew
    finally:
        coord.close()
    return out


def run(
    tmp: Path, env: dict[str, str], runs: int, transport_runs: int, install: bool
) -> dict[str, Any]:
    """All transports; returns {transport: {row: [seconds]}} plus notes."""
    results: dict[str, Any] = {"series": {}, "notes": [], "runs": runs}
    all_rows = [FLOOR, COLD, AGENT, INPROC]
    with agents(env) as pool:
        results["series"]["file"] = measure(
            tmp, env, "file", None, runs, [*all_rows, *PROBES], pool
        )
        remote_rows = [FLOOR, AGENT, INPROC]
        with servers.git_daemon(tmp) as base:
            results["series"]["git daemon"] = measure(
                tmp, env, "daemon", base, transport_runs, remote_rows, pool
            )
        server, how = common.find_lighttpd(install)
        backend = servers.http_backend()
        if server and backend:
            with servers.http_server(tmp, server, backend, tmp / "lighttpd") as base:
                results["series"]["smart HTTP"] = measure(
                    tmp, env, "http", base, transport_runs, remote_rows, pool
                )
            results["notes"].append(
                f"smart HTTP: `git http-backend` as CGI behind {how}, on loopback."
            )
        else:
            why = how if not server else "this git has no git-http-backend"
            results["notes"].append(f"smart HTTP skipped: {why}.")
        if pool.restarts:
            results["notes"].append(
                f"The installed gitcoord code changed {pool.restarts} time(s) during the run "
                "(others editing it); a fresh agent was started, untimed, each time."
            )
    results["transport_runs"] = transport_runs
    return results
