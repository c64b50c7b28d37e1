"""The core race and the basic faults over every real transport gitcoord meets.

- file://      a bare repository on disk (git spawns receive-pack itself);
- git://       a real `git daemon` on loopback;
- http://      smart HTTP: `git http-backend` behind a real web server (lighttpd from
               Debian's package, run from a config file in a temp dir on a free loopback
               port; skipped with the reason only when the binary is absent).

For each: six separate processes race for one claim, several rounds, and exactly one
wins each round (the others exit 3 naming the winner, one commit per round lands);
a server hook that refuses is exit 5 with its message; a server that is gone is exit
6 within a bounded time with nothing written, and a retry once it is back succeeds.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import World, git, git_daemon, http_server, run, run_proc, spawn
from reliability import (
    BRANCH,
    assert_clean_failure,
    env_int,
    lock_files,
    private_agent,
    tip,
    trailers,
    warm_agent,
)

RACERS = 6
ROUNDS = env_int("GITCOORD_TRANSPORT_ROUNDS", 3)  # rounds per transport
TRANSPORTS = ["file", "daemon", "http"]
BOUND = 30.0


@contextlib.contextmanager
def serving(world: World, transport: str) -> Iterator[str]:
    """The URL of `world.remote` over `transport`, for as long as the server runs."""
    if transport == "file":
        yield f"file://{world.remote}"
    elif transport == "daemon":
        with git_daemon(world.root) as base:
            yield f"{base}/{world.remote.name}"
    else:
        git(world.remote, "config", "http.receivepack", "true")
        with http_server(world.root) as base:
            yield f"{base}/{world.remote.name}"


def clone(world: World, url: str, name: str) -> Path:
    dest = world.root / name
    git(world.root, "clone", "-q", url, str(dest))
    return dest


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_six_processes_race_for_one_claim_one_winner_per_round(
    world: World, transport: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The racers are real processes started as users start them: `python -m gitcoord`,
    # handing the command to a warm agent that forks one child per command (cheap on
    # two cores; the cold in-process path races in test_races and test_crash).
    with serving(world, transport) as url, private_agent(monkeypatch):
        clones = [clone(world, url, f"{transport}{i}") for i in range(3)]
        assert git(clones[0], "remote", "get-url", "origin").strip() == url
        r = run(clones[0], "init")
        assert r.code == 0, r.err
        sessions = [f"{transport}-s{i}" for i in range(RACERS)]
        places = [clones[i % len(clones)] for i in range(RACERS)]
        for c, s in zip(places, sessions, strict=True):
            r = run(c, "register", "--role", "racer", "--goal", "win", session=s)
            assert r.code == 0, r.err
        before = len(trailers(world.remote))
        warm_agent(clones[0])

        winners = {}
        for rnd in range(ROUNDS):
            procs = [
                spawn(c, "--timeout", "240", "claim", "task", f"hot-{rnd}", session=s)
                for c, s in zip(places, sessions, strict=True)
            ]
            results = [(p.communicate(timeout=300), p.returncode) for p in procs]
            codes = Counter(code for _, code in results)
            detail = [
                (s, code, err.strip())
                for s, ((_, err), code) in zip(sessions, results, strict=True)
            ]
            assert codes == Counter({0: 1, 3: RACERS - 1}), detail
            winner = next(s for s, (_, code) in zip(sessions, results, strict=True) if code == 0)
            winners[rnd] = winner
            for (_, err), code in results:
                assert_clean_failure(err, code)
                if code == 3:
                    assert f"task/hot-{rnd} is held by {winner}" in err, err

        history = trailers(world.remote)
        landed = [h["subject"] for h in history[before:]]
        assert sorted(landed) == sorted(f"claim task/hot-{r} by {w}" for r, w in winners.items())
        st = run(clones[1], "status", "--json").json()
        holders = {c["resource"]: c["holder"] for c in st["claims"]}  # type: ignore[index]
        assert holders == {f"task/hot-{r}": w for r, w in winners.items()}
        assert run(clones[2], "validate").code == 0
        for repo in (world.remote, *clones):
            assert lock_files(repo) == []


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_refusing_hook_and_a_server_that_is_gone(world: World, transport: str) -> None:
    with serving(world, transport) as url:
        c = clone(world, url, "c")
        assert run(c, "init").code == 0
        assert run(c, "register", "--role", "r", "--goal", "g", session="s1").code == 0
        before = tip(world.remote)

        hook = world.remote / "hooks" / "pre-receive"
        hook.write_text("#!/bin/sh\ncat >/dev/null\necho 'frozen for the release' >&2\nexit 1\n")
        hook.chmod(0o755)
        r = run_proc(c, "claim", "task", "x", session="s1")
        assert r.code == 5, (r.code, r.out, r.err)
        assert_clean_failure(r.err, r.code)
        assert "frozen for the release" in r.err, r.err
        assert tip(world.remote) == before
        hook.unlink()

    # The server is gone (for file://, the repository has moved away).
    moved = world.root / "moved.git"
    if transport == "file":
        world.remote.rename(moved)
    start = time.monotonic()
    r = run_proc(c, "--timeout", "5", "claim", "task", "x", session="s1")
    took = time.monotonic() - start
    assert r.code == 6, (r.code, r.out, r.err)
    assert_clean_failure(r.err, r.code)
    assert "origin" in r.err, r.err
    assert took < BOUND, took
    if transport == "file":
        moved.rename(world.remote)
    assert tip(world.remote) == before
    assert lock_files(c) == [] and lock_files(world.remote) == []

    with serving(world, transport) as url:
        git(c, "remote", "set-url", "origin", url)  # a new port for the restarted server
        r = run(c, "claim", "task", "x", "--json", session="s1")
        assert r.code == 0, r.err
        assert tip(world.remote) == r.json()["commit"]  # type: ignore[index]
        assert [h["subject"] for h in trailers(world.remote)][-1] == "claim task/x by s1"
        assert git(world.remote, "rev-parse", BRANCH).strip() == tip(world.remote)
