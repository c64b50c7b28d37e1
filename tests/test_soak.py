"""Soak: twelve sessions, real processes, several clones, one remote, continuous mixed work.

For GITCOORD_SOAK_SECONDS (default 30), twelve sessions — three in each of four
clones — run `gitcoord` processes back to back: claims and takeovers on a small
shared pool of resources (so most claims contend), renewals, releases, messages
to each other and to everyone, heartbeats, inbox reads, re-registrations and
status reads. Then, over the whole history:

- zero double grants: `gitcoord metrics --json` reports no work collision, and an
  independent replay here agrees — in commit order, nobody is granted a resource
  whose lease (plus the clock-skew grace) another session still held — and the
  fencing token grows by exactly one per grant;
- zero lost writes: every command that reported success has its commit on the
  branch's first-parent line, and what it wrote is there (the message file, the
  claim in that commit's tree);
- every commit valid: `validate --range <root>..<tip>` judges each commit as the
  server's hook would, and the tip validates deeply.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pytest
from conftest import World, git, run, spawn
from reliability import (
    REF,
    assert_fencing,
    branch_files,
    env_int,
    lock_files,
    private_agent,
    trailers,
    warm_agent,
)

from gitcoord.domain import kinds
from gitcoord.domain.models import FORMAT

SECONDS = env_int("GITCOORD_SOAK_SECONDS", 30)
CLONES = 4
PER_CLONE = 3
POOL = [f"pool-{i}" for i in range(6)]
GRACE = 60


@dataclass
class Worker:
    clone: Path
    session: str
    seed: int
    done: Counter[str] = field(default_factory=Counter)
    ok: list[tuple[str, dict[str, object]]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    took: list[tuple[str, float]] = field(default_factory=list)


def pick(rng: random.Random, w: Worker, everyone: list[str]) -> list[str]:
    res = rng.choice(POOL)
    roll = rng.random()
    if roll < 0.30:
        return ["claim", "task", res, "--ttl", rng.choice(["20s", "1m", "5m"])]
    if roll < 0.40:
        return ["renew", "task", res, "--ttl", "2m"]
    if roll < 0.55:
        return ["release", "task", res]
    if roll < 0.70:
        to = rng.choice([*everyone, "broadcast"])
        return ["send", to, f"soak from {w.session}", f"n={w.done.total()} {rng.random()}"]
    if roll < 0.80:
        return ["heartbeat", "soaking", res, "load", str(rng.randrange(101)), "--force"]
    if roll < 0.88:
        return ["inbox"]
    if roll < 0.93:
        return ["register", "--role", f"soak {rng.randrange(3)}", "--goal", "zero lost writes"]
    return ["status"]


def work(w: Worker, everyone: list[str], until: float) -> None:
    rng = random.Random(w.seed)
    while time.monotonic() < until:
        argv = pick(rng, w, everyone)
        start = time.monotonic()
        p = spawn(w.clone, "--timeout", "120", *argv, "--json", session=w.session)
        out, err = p.communicate(timeout=300)
        w.done[argv[0]] += 1
        w.took.append((argv[0], time.monotonic() - start))
        if p.returncode == 0:
            w.ok.append((argv[0], json.loads(out)))
        elif p.returncode not in (3, 4):  # taken by someone else / not yours: answers
            w.failures.append(f"{w.session} {argv}: exit {p.returncode}: {out}{err}")


@pytest.mark.slow
def test_twelve_sessions_soak_loses_nothing_and_grants_nothing_twice(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    with private_agent(monkeypatch):  # as users run it: through the warm agent
        soak(world)


def soak(world: World) -> None:
    clones = [world.clone(f"soak{i}") for i in range(CLONES)]
    assert run(clones[0], "init").code == 0
    workers = []
    seed = random.randrange(1 << 30)
    for i, c in enumerate(clones):
        for j in range(PER_CLONE):
            sid = f"soak-{i}-{j}"
            assert run(c, "register", "--role", "soak", "--goal", "g", session=sid).code == 0
            workers.append(Worker(c, sid, seed + len(workers)))
    everyone = [w.session for w in workers]
    warm_agent(clones[0])
    until = time.monotonic() + SECONDS
    threads = [threading.Thread(target=work, args=(w, everyone, until)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    failures = [f for w in workers for f in w.failures]
    assert not failures, f"seed {seed}:\n" + "\n".join(failures[:10])
    ops = sum(w.done.total() for w in workers)
    wrote = [(w.session, verb, doc) for w in workers for verb, doc in w.ok if doc.get("commit")]
    print(
        f"\nsoak: {ops} operations by {len(workers)} sessions in {SECONDS}s, "
        f"{len(wrote)} commits reported (seed {seed})"
    )

    remote = world.remote
    history = trailers(remote)
    on_branch = {h["commit"]: h for h in history}

    # Zero lost writes: each reported commit is on the branch and holds what it wrote.
    lost = [(s, v, d["commit"]) for s, v, d in wrote if d["commit"] not in on_branch]
    assert not lost, f"seed {seed}: reported but not on the branch: {lost[:5]}"
    files = set(branch_files(remote))
    for session, verb, doc in wrote:
        h = on_branch[str(doc["commit"])]
        assert h.get("Gitcoord-Session") == session, (session, verb, h)
        if verb == "send":
            m = doc["message"]
            assert kinds.message_path(m["to"], m["id"], fmt=FORMAT) in files, m  # type: ignore[index]
        if verb in ("claim", "renew", "release"):
            c = doc["claim"]
            assert h.get("Gitcoord-Resource") == c["resource"], (h, c)  # type: ignore[index]
            assert h.get("Gitcoord-Generation") == str(c["generation"]), (h, c)  # type: ignore[index]

    # Zero double grants: gitcoord's own metrics, and a replay in commit order.
    m = run(remote, "--local", "metrics", "--json").json()
    assert m["work_collisions"] == 0, m  # type: ignore[index]
    assert_no_double_grant(history)
    grants = assert_fencing(history)
    assert sum(grants.values()) >= 1

    # Every commit valid, as the server hook would judge it; and the tip, deeply.
    r = run(
        remote, "--local", "validate", "--range", f"{history[0]['commit']}..{history[-1]['commit']}"
    )
    assert r.code == 0, f"seed {seed}: {r.err[:3000]}"
    assert run(remote, "--local", "validate").code == 0
    for repo in (remote, *clones):
        assert lock_files(repo) == []
    assert git(remote, "rev-parse", REF).strip() == history[-1]["commit"]


def assert_no_double_grant(history: list[dict[str, str]]) -> None:
    """In commit order: a claim or takeover by someone else than the holder only once
    the holder released, or its lease plus the grace ended by the commit's time."""
    held: dict[str, tuple[str, datetime | None]] = {}  # resource -> (holder, expires) if live
    for h in history:
        op, res, who = h.get("Gitcoord-Op"), h.get("Gitcoord-Resource"), h.get("Gitcoord-Session")
        if not res or not who or op not in ("claim", "takeover", "renew", "release"):
            continue
        when = datetime.fromtimestamp(int(h["time"]), timezone.utc)
        expires_raw = h.get("Gitcoord-Expires")
        expires = (
            datetime.fromisoformat(expires_raw.replace("Z", "+00:00")) if expires_raw else None
        )
        current = held.get(res)
        if op in ("claim", "takeover") and current and current[0] != who:
            holder, until = current
            assert until is not None and (when - until).total_seconds() >= GRACE, (
                f"{h['commit'][:10]} {h['subject']}: granted while {holder} held it "
                f"until {until} (+{GRACE}s grace)"
            )
        if op == "release":
            held.pop(res, None)
        else:
            held[res] = (who, expires)
