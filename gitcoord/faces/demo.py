"""`gitcoord demo`: real gitcoord processes coordinating through a throwaway bare remote.

Half the sessions share one clone and half another, as in the founding setup
(several sessions in one directory, the branch also moving from elsewhere).
They register at the same instant, all race for one claim, then claim distinct
work; the dashboard and a summary are printed, and the result is checked
against the branch itself (lost updates and double grants must be 0).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..gitio import Git, clean_env


def _roster(count: int) -> list[tuple[str, str, str]]:
    """(session id, role, goal): the marketing-12 slots, then generic workers."""
    from ..domain.templates import load

    slots = load("marketing-12").slots
    out = [(s.session or f"session-{s.number}", s.role, s.goal) for s in slots[:count]]
    for i in range(len(out), count):
        out.append((f"session-{i + 1}", f"Worker {i + 1}", f"Finish batch {i + 1}"))
    return out


def _git(*args: str, cwd: Path) -> str:
    return Git.at(cwd).run(args).stdout.decode("utf-8", "replace")


class _Runner:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.operations = 0

    def start(self, cwd: Path, session: str | None, *args: str) -> subprocess.Popen[str]:
        argv = [sys.executable, "-m", "gitcoord", "-C", str(cwd)]
        if session:
            argv += ["--session", session]
        self.operations += 1
        return subprocess.Popen(
            [*argv, *args], env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    def all(self, procs: list[subprocess.Popen[str]]) -> list[tuple[int, str, str]]:
        done = []
        for p in procs:
            out, err = p.communicate(timeout=120)
            done.append((p.returncode, out, err))
        return done


def run_demo(
    count: int, *, keep: bool = False, echo: Callable[[str], Any] | None = None
) -> dict[str, Any]:
    say = echo or (lambda _msg: None)
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="gitcoord-demo-"))
    try:
        remote = tmp / "remote.git"
        _git("init", "-q", "--bare", str(remote), cwd=tmp)
        clones = [tmp / "machine-a", tmp / "machine-b"]
        for clone in clones:
            _git("clone", "-q", str(remote), str(clone), cwd=tmp)
        env = clean_env()
        env.pop("GITCOORD_SESSION", None)
        env.setdefault("GIT_AUTHOR_NAME", "gitcoord demo")
        env.setdefault("GIT_AUTHOR_EMAIL", "demo@gitcoord.invalid")
        run = _Runner(env)
        sessions = _roster(count)
        ids = [sid for sid, _, _ in sessions]
        home = {sid: clones[i % 2] for i, sid in enumerate(ids)}
        boss = ids[0]

        def each(make: Callable[[int, str], list[str]]) -> list[tuple[int, str, str]]:
            return run.all([run.start(home[sid], sid, *make(i, sid)) for i, sid in enumerate(ids)])

        def ok(results: list[tuple[int, str, str]]) -> int:
            return sum(1 for code, _, _ in results if code == 0)

        templated = count <= 12
        say(f"demo: bare remote {remote}, {count} sessions in 2 clones (2 machines)")
        init = (
            ["init", "--template", "marketing-12"] if templated else ["init", "--slots", str(count)]
        )
        code, _, err = run.all([run.start(clones[0], None, *init)])[0]
        if code != 0:
            raise RuntimeError(f"init failed: {err.strip()}")
        if templated:
            say("step 0: initialised from the founding marketing-12 roster")

        say(f"step 1: {count} sessions register at the same instant")
        regs = each(
            lambda i, sid: (
                ["register"]
                if templated
                else ["register", "--role", sessions[i][1], "--goal", sessions[i][2]]
            )
        )
        for sid, (c, _, e) in zip(ids, regs, strict=True):
            if c != 0:
                say(f"  {sid}: exit {c}: {e.strip()}")

        contested = "batch/prospects:1-25"
        say("step 2: all race for `claim batch prospects:1-25`")
        race = each(lambda i, sid: ["claim", "batch", "prospects:1-25", "--ttl", "1h"])
        winners = [sid for sid, (c, _, _) in zip(ids, race, strict=True) if c == 0]
        losers = [sid for sid, (c, _, _) in zip(ids, race, strict=True) if c == 3]
        for w in winners:
            say(f"  winner: {w}")
        if losers:
            sample = next(e for (c, _, e) in race if c == 3).strip()
            say(f"  {len(losers)} losers got exit 3, e.g. {sample}")

        say("step 3: each claims its own, non-overlapping batch of emails at the same time")
        own = each(
            lambda i, sid: ["claim", "batch", f"emails:{i * 5 + 1}-{i * 5 + 5}", "--ttl", "2h"]
        )

        say("step 4: everyone sends a heartbeat, then reports to the orchestrator")
        beats = each(
            lambda i, sid: [
                "heartbeat",
                "working",
                f"emails:{i * 5 + 1}-{i * 5 + 5}",
                "drafting",
                str(10 * (i % 10)),
            ]
        )
        sent = run.all(
            [
                run.start(home[sid], sid, "send", boss, f"Status of {sid}", "On track.")
                for sid in ids[1:]
            ]
            + [
                run.start(
                    home[boss], boss, "send", "broadcast", "Approval queue", "Human review at 8 AM."
                )
            ]
        )
        inbox = run.all([run.start(home[boss], boss, "inbox", "--json")])[0]
        read = len(json.loads(inbox[1])["messages"]) if inbox[0] == 0 else 0
        say(f"  {ok(beats)} heartbeats, {ok(sent)} messages; the orchestrator read {read}")

        say("step 5: the race winner finishes and releases; the dashboard:")
        if winners:
            run.all([run.start(home[winners[0]], winners[0], "release", "batch", "prospects:1-25")])
        status = run.all([run.start(clones[1], None, "status")])[0][1]
        say("")
        say(status.rstrip())

        # Judge by the branch itself, not by what the processes said.
        data = json.loads(run.all([run.start(clones[0], None, "status", "--json")])[0][1])
        metrics = json.loads(run.all([run.start(clones[0], None, "metrics", "--json")])[0][1])
        on_branch = {c["resource"]: c for c in data["claims"]}
        lost = sum(
            1
            for i, (sid, (c, _, _)) in enumerate(zip(ids, own, strict=True))
            if c == 0
            and on_branch.get(f"batch/emails:{i * 5 + 1}-{i * 5 + 5}", {}).get("holder") != sid
        )
        lost += max(0, ok(regs) - data["registered"])
        lost += max(0, ok(sent) - metrics["messages"]["sent"])
        log = _git("log", "--format=%h %s", "gitcoord", cwd=remote).splitlines()
        say("")
        say("audit log (git log gitcoord on the remote), newest first:")
        for line in log[:8]:
            say(f"  {line}")
        summary = {
            "sessions": count,
            "registered": data["registered"],
            "operations": run.operations,
            "race": {
                "resource": contested,
                "winners": winners,
                "losers": len(losers),
            },
            "distinct_claims": ok(own),
            "heartbeats": ok(beats),
            "messages": ok(sent),
            "commits": len(log),
            "lost_updates": lost,
            "double_grants": metrics["work_collisions"],
            "collisions_prevented": metrics["collisions_prevented"],
            "elapsed_seconds": round(time.monotonic() - started, 2),
            "kept": str(tmp) if keep else None,
        }
        say("")
        say(
            f"summary: {summary['registered']}/{count} registered, {run.operations} operations, "
            f"1 race with {len(winners)} winner and {len(losers)} losers, "
            f"{ok(own)}/{count} distinct claims, {len(log)} commits, lost updates {lost}, "
            f"double grants {summary['double_grants']}, {summary['elapsed_seconds']}s"
        )
        if keep:
            say(f"kept: {tmp}")
        return summary
    finally:
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)
