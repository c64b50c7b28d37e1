"""Time: skewed clocks (GITCOORD_CLOCK_OFFSET) and the fencing token across takeovers.

A lease is only as good as the clocks that read it, so a claim can be taken over
only `clock_skew_seconds` (default 60) after its expiry:
- a holder whose clock is up to that much behind still stops using its lease
  before anyone else may take it;
- a session whose clock is ahead by less than the grace cannot take a claim
  before its holder believes it expired;
- a session far ahead is bounded by the server: with gitcoord's pre-receive hook
  its commits dated beyond the server's clock plus the grace are refused.
And over any history, the generation (fencing token) of a resource grows by exactly
one with every new grant — claim after release, or takeover — and never otherwise.

Clock offsets stand in for elapsed time too, so nothing here sleeps.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from conftest import World, git, git_daemon, run
from reliability import assert_fencing, tip, trailers

GRACE = 60


def at(monkeypatch: pytest.MonkeyPatch, when: datetime) -> None:
    """Make this process's gitcoord clock read `when` (to the second) from now on."""
    offset = (when - datetime.now(timezone.utc)).total_seconds()  # the real clock
    monkeypatch.setenv("GITCOORD_CLOCK_OFFSET", str(round(offset)))


def skew(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    monkeypatch.setenv("GITCOORD_CLOCK_OFFSET", str(seconds))


def expiry(r: object) -> datetime:
    doc = r.json()  # type: ignore[attr-defined]
    return datetime.fromisoformat(doc["claim"]["expires_at"].replace("Z", "+00:00"))


@pytest.fixture
def two(world: World) -> Path:
    c = world.clone("c")
    assert run(c, "init").code == 0
    for s in ("a", "b", "c"):
        assert run(c, "register", "--role", "r", "--goal", "g", session=s).code == 0
    return c


def test_a_holder_50s_behind_stops_before_anyone_may_take_over(
    two: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    skew(monkeypatch, -50)  # a's clock is 50 s behind
    r = run(two, "claim", "task", "x", "--ttl", "10m", "--json", session="a")
    assert r.code == 0, r.err
    expires = expiry(r)  # in a's clock: a uses the lease until its clock says so,
    believed_until = expires + timedelta(seconds=50)  # which is this, truly
    # b (correct clock) a few seconds after a stopped: still inside the grace.
    at(monkeypatch, believed_until + timedelta(seconds=5))
    r = run(two, "claim", "task", "x", session="b")
    assert r.code == 3, r.err
    assert "clock-skew grace" in r.err, r.err
    # Past expiry + grace: taken over, fencing token + 1.
    at(monkeypatch, expires + timedelta(seconds=GRACE + 2))
    r = run(two, "claim", "task", "x", "--json", session="b")
    assert r.code == 0, r.err
    assert r.json()["claim"]["generation"] == 2  # type: ignore[index]
    assert believed_until < expires + timedelta(seconds=GRACE), "the grace covered the skew"


def test_a_session_ahead_within_the_grace_cannot_take_over_early(
    two: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    r = run(two, "claim", "task", "x", "--ttl", "30s", "--json", session="a")
    assert r.code == 0, r.err
    expires = expiry(r)
    # b is 55 s ahead: when its clock reads just past a's expiry, a's lease is still
    # live in truth, and the grace keeps b out.
    for ahead in (10, 35, 55):
        skew(monkeypatch, ahead + 30)  # 30 s of lease elapsed + `ahead` of skew
        r = run(two, "claim", "task", "x", session="b")
        assert r.code == 3, (ahead, r.err)
    # 50 s behind is even further from taking over.
    skew(monkeypatch, -50)
    assert run(two, "claim", "task", "x", session="b").code == 3
    at(monkeypatch, expires + timedelta(seconds=GRACE + 2))
    assert run(two, "claim", "task", "x", session="b").code == 0


def test_a_session_far_ahead_is_bounded_by_the_servers_clock(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through a real server (git daemon, whose clock is its own) with gitcoord's
    pre-receive hook: a session 3 hours ahead cannot take over a live claim — nor
    write at all — while one 50 s ahead writes normally."""
    with git_daemon(world.root) as base:
        c = world.root / "d"
        git(world.root, "clone", "-q", f"{base}/{world.remote.name}", str(c))
        assert run(c, "init").code == 0
        for s in ("a", "b"):
            assert run(c, "register", "--role", "r", "--goal", "g", session=s).code == 0
        assert run(c, "claim", "task", "x", "--ttl", "1h", session="a").code == 0
        before = tip(world.remote)
        assert run(world.root, "hooks", "install", "--server", str(world.remote)).code == 0

        skew(monkeypatch, 3 * 3600)
        r = run(c, "claim", "task", "x", session="b")
        assert r.code == 5, (r.code, r.err)
        assert "future-date" in r.err or "clock-skew grace" in r.err, r.err
        r = run(c, "send", "a", "hi", "from the future", session="b")
        assert r.code == 5 and "future-date" in r.err, r.err
        assert tip(world.remote) == before

        skew(monkeypatch, 50)
        assert run(c, "send", "a", "hi", "slightly ahead", session="b").code == 0
        assert run(c, "claim", "task", "x", session="b").code == 3
    history = trailers(world.remote)
    holders = {h.get("Gitcoord-Resource"): h.get("Gitcoord-Session") for h in history}
    assert holders["task/x"] == "a"


def test_generation_strictly_increases_across_every_takeover_in_the_history(
    two: Path, monkeypatch: pytest.MonkeyPatch, world: World
) -> None:
    """A chain of takeovers, releases, re-claims and renewals on a few resources, each
    session's clock moved past the previous lease plus the grace; then the history's
    `Gitcoord-Generation` trailers are checked per resource."""
    sessions = ["a", "b", "c"]
    t = datetime.now(timezone.utc).replace(microsecond=0)
    steps = 0
    for rnd in range(6):
        for k, res in enumerate(("x", "y")):
            who = sessions[(rnd + k) % 3]
            at(monkeypatch, t)
            r = run(two, "claim", "task", res, "--ttl", "30s", "--json", session=who)
            assert r.code == 0, (rnd, res, who, r.err)
            steps += 1
            if rnd % 3 == 1:  # renew: same token
                assert run(two, "renew", "task", res, "--ttl", "30s", session=who).code == 0
            if rnd % 3 == 2:  # release, then the next grant continues the count
                assert run(two, "release", "task", res, session=who).code == 0
        t += timedelta(seconds=30 + GRACE + 5)
    history = trailers(world.remote)
    grants = assert_fencing(history)
    assert grants["task/x"] == 6 and grants["task/y"] == 6, grants
    takeovers = [h for h in history if h.get("Gitcoord-Op") == "takeover"]
    assert len(takeovers) >= 4, [h["subject"] for h in history]
    assert steps == 12
