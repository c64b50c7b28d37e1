"""`gitcoord demo`: real gitcoord processes coordinating through a throwaway bare remote.

Half the sessions share one clone and half another, as in the founding setup
(several sessions in one directory, the branch also moving from elsewhere).
They register at the same instant, all race for one claim, then claim distinct
work; the dashboard and a summary are printed, and the result is checked
against the branch itself (lost updates and double grants must be 0).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .gitio import clean_env

# The founding marketing registry's roster (shared/seeds 003), abridged.
ROSTER = [
    (
        "marketing-orchestrator",
        "Orchestrator - Master Coordinator",
        "Coordinate 12 sessions to $120k MRR",
    ),
    (
        "marketing-research-1",
        "Research AI - Prospect Finding (Batch 1)",
        "Find 25 prospects/day, score 70+/100",
    ),
    (
        "marketing-research-2",
        "Research AI - Prospect Finding (Batch 2)",
        "Find 25 prospects/day, score 70+/100",
    ),
    (
        "marketing-outreach-1",
        "Outreach AI - Morning Batch 1",
        "Send 17 personalized emails/day, 95%+ delivery",
    ),
    (
        "marketing-outreach-2",
        "Outreach AI - Morning Batch 2",
        "Send 17 personalized emails/day, 95%+ delivery",
    ),
    (
        "marketing-outreach-3",
        "Outreach AI - Afternoon Batch",
        "Send 16 personalized emails/day, 95%+ delivery",
    ),
    (
        "marketing-conversation-1",
        "Conversation AI - High Priority",
        "Process high-value replies within 1 hour",
    ),
    (
        "marketing-conversation-2",
        "Conversation AI - Standard",
        "Process standard replies within 2 hours",
    ),
    (
        "marketing-conversation-3",
        "Conversation AI - Support",
        "Process remaining replies within 4 hours",
    ),
    (
        "marketing-human-approver",
        "Human Interface AI - Approval queue",
        "Prepare the approval queue daily by 8 AM",
    ),
    (
        "marketing-sales-closer-1",
        "Sales Closer AI - Primary",
        "Support 10+ sales calls/week, 30%+ close rate",
    ),
    (
        "marketing-sales-closer-2",
        "Sales Closer AI - Backup",
        "Handle overflow calls, 30%+ close rate",
    ),
]


def _roster(count: int) -> list[tuple[str, str, str]]:
    out = list(ROSTER[:count])
    for i in range(len(out), count):
        out.append((f"session-{i + 1}", f"Worker {i + 1}", f"Finish batch {i + 1}"))
    return out


def _git(*args: str, cwd: Path) -> None:
    subprocess.run(["git", *args], cwd=cwd, env=clean_env(), check=True, capture_output=True)


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
        home = {sid: clones[i % 2] for i, (sid, _, _) in enumerate(sessions)}

        say(f"demo: bare remote {remote}, {count} sessions in 2 clones")
        code, _, err = run.all(
            [run.start(clones[0], None, "init", "--slots", str(max(12, count)))]
        )[0]
        if code != 0:
            raise RuntimeError(f"init failed: {err.strip()}")

        say(f"step 1: {count} sessions register at the same instant")
        regs = run.all(
            [
                run.start(home[sid], sid, "register", "--role", role, "--goal", goal)
                for sid, role, goal in sessions
            ]
        )
        registered = sum(1 for c, _, _ in regs if c == 0)
        for (sid, _, _), (c, _, e) in zip(sessions, regs, strict=True):
            if c != 0:
                say(f"  {sid}: exit {c}: {e.strip()}")

        contested = "task/deploy-church-guidance"
        say(f"step 2: all {count} race for `claim {contested.replace('/', ' ')}`")
        race = run.all(
            [
                run.start(home[sid], sid, "claim", "task", "deploy-church-guidance", "--ttl", "1h")
                for sid, _, _ in sessions
            ]
        )
        winners = [sid for (sid, _, _), (c, _, _) in zip(sessions, race, strict=True) if c == 0]
        losers = [sid for (sid, _, _), (c, _, _) in zip(sessions, race, strict=True) if c == 3]
        for w in winners:
            say(f"  winner: {w}")
        if losers:
            sample = next(e for (c, _, e) in race if c == 3).strip()
            say(f"  {len(losers)} losers got exit 3, e.g. {sample}")

        say("step 3: every session claims its own batch at the same time")
        own = run.all(
            [
                run.start(home[sid], sid, "claim", "task", f"batch-{i + 1}", "--ttl", "2h")
                for i, (sid, _, _) in enumerate(sessions)
            ]
        )
        own_ok = sum(1 for c, _, _ in own if c == 0)

        say("step 4: the winner finishes and releases; the dashboard:")
        if winners:
            run.all(
                [
                    run.start(
                        home[winners[0]], winners[0], "release", "task", "deploy-church-guidance"
                    )
                ]
            )
        status = run.all([run.start(clones[1], None, "status")])[0][1]
        say("")
        say(status.rstrip())

        # Check the claims against the branch itself, not against what processes said.
        check = run.all([run.start(clones[0], None, "status", "--json")])[0][1]
        import json

        data = json.loads(check)
        on_branch = {c["resource"]: c for c in data["claims"]}
        lost = sum(
            1
            for i, (c, _, _) in enumerate(own)
            if c == 0 and f"task/batch-{i + 1}" not in on_branch
        )
        contested_claim = on_branch.get(contested)
        double = max(0, len(winners) - 1)
        log = subprocess.run(
            ["git", "log", "--format=%h %s", "gitcoord"],
            cwd=remote,
            env=clean_env(),
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
        say("")
        say("audit log (git log gitcoord on the remote), newest first:")
        for line in log[:8]:
            say(f"  {line}")
        summary = {
            "sessions": count,
            "registered": registered,
            "operations": run.operations,
            "race": {
                "resource": contested,
                "winners": winners,
                "losers": len(losers),
                "generation": contested_claim["generation"] if contested_claim else None,
            },
            "distinct_claims": own_ok,
            "commits": len(log),
            "lost_updates": lost,
            "double_grants": double,
            "elapsed_seconds": round(time.monotonic() - started, 2),
            "kept": str(tmp) if keep else None,
        }
        say("")
        say(
            f"summary: {registered}/{count} registered, 1 race with {len(winners)} winner and "
            f"{len(losers)} losers, {own_ok}/{count} distinct claims, {len(log)} commits, "
            f"lost updates {lost}, double grants {double}, {summary['elapsed_seconds']}s"
        )
        if keep:
            say(f"kept: {tmp}")
        return summary
    finally:
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)
        elif os.environ.get("GITCOORD_DEBUG"):
            print(tmp, file=sys.stderr)
