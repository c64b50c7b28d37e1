"""One round trip when nothing raced (issue #16): a write decides on the last tip this
clone knows (its mirror ref, as its own last push or fetch left it) and pushes with that
tip as the lease, fetching only when the push is refused; an answer that writes nothing
is confirmed on a freshly fetched tip before it is reported. And the backoff's bounds.

Git processes are counted by a `git` wrapper first on PATH that logs each command line
before it runs the real git: what talks to the remote is `fetch` and `push` (and
`ls-remote`, which gitcoord never runs). No timed assertions.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import pytest
from conftest import World, git, run
from reliability import REF, tip, trailers

from gitcoord.store.transaction import TreeStore, Unchanged, Write
from gitcoord.store.turns import MIN_WINDOW_ROUNDS, WINDOW_ROUNDS, Backoff, Pace

REMOTE_VERBS = ("fetch", "push", "ls-remote", "pull", "clone")


class Calls:
    """Every `git` this process (and its children) starts, by subcommand."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        real = shutil.which("git")
        assert real is not None
        folder = root / "bin"
        folder.mkdir()
        self.log = root / "git-calls.log"
        wrapper = folder / "git"
        wrapper.write_text(
            f"#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{self.log}'\nexec '{real}' \"$@\"\n"
        )
        wrapper.chmod(0o755)
        monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")

    def clear(self) -> None:
        self.log.write_text("")

    def verbs(self) -> Counter[str]:
        found: Counter[str] = Counter()
        text = self.log.read_text() if self.log.exists() else ""
        for line in text.splitlines():
            words = line.split()
            while words and words[0] in ("-c", "-C"):
                words = words[2:]
            if words:
                found[words[0]] += 1
        return found

    def remote(self) -> Counter[str]:
        return Counter({v: n for v, n in self.verbs().items() if v in REMOTE_VERBS})


@pytest.fixture
def calls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Calls:
    return Calls(tmp_path, monkeypatch)


def two_clones(world: World) -> tuple[Path, Path]:
    a, b = world.clone("a"), world.clone("b")
    assert run(a, "init").code == 0
    assert run(a, "register", "--role", "r", "--goal", "g", session="s1").code == 0
    assert run(b, "register", "--role", "r", "--goal", "g", session="s2").code == 0
    return a, b


def pace(repo: Path) -> Pace:
    (path,) = (repo / ".git" / "gitcoord" / "pace").iterdir()
    return Pace.load(str(path))


def away(repo: Path) -> None:
    """As if this clone last learnt the tip long ago: a tip found moved is then no
    contention (which would depend on how fast this machine ran the commands before)."""
    (path,) = (repo / ".git" / "gitcoord" / "pace").iterdir()
    was = Pace.load(str(path))
    was.known_at = 0.0
    was.save(str(path))


# --- one round trip when nothing raced -------------------------------------------------


def test_an_uncontended_write_is_one_push_and_no_fetch(world: World, calls: Calls) -> None:
    a = world.clone("a")
    assert run(a, "init").code == 0
    assert run(a, "register", "--role", "r", "--goal", "g", session="s1").code == 0
    for args in (("claim", "task", "x"), ("release", "task", "x"), ("claim", "task", "y")):
        calls.clear()
        r = run(a, *args, session="s1")
        assert r.code == 0, r.err
        assert calls.remote() == {"push": 1}, (args, calls.verbs())
    # what was pushed is the remote's tip, and the clone's mirror says so
    mirror = "refs/gitcoord/remotes/origin/gitcoord"
    assert tip(world.remote) == tip(a, mirror)
    assert [t["subject"] for t in trailers(world.remote)][-3:] == [
        "claim task/x by s1",
        "release task/x by s1",
        "claim task/y by s1",
    ]


def test_local_only_writes_never_talk_to_a_remote(world: World, calls: Calls) -> None:
    repo = world.local_repo("solo")
    assert run(repo, "init").code == 0
    assert run(repo, "register", "--role", "r", "--goal", "g", session="s1").code == 0
    calls.clear()
    assert run(repo, "claim", "task", "x", session="s1").code == 0
    assert calls.remote() == {}
    assert run(repo, "release", "task", "x", session="s1").code == 0
    assert run(repo, "release", "task", "x", session="s1").code == 0  # nothing to do
    assert calls.remote() == {}
    assert tip(repo, REF) is not None and not (repo / ".git" / "refs" / "gitcoord").exists()


def test_a_stale_cached_tip_is_refused_then_fetched_and_decided_again(
    world: World, calls: Calls
) -> None:
    a, b = two_clones(world)  # b's registration: a's mirror is stale from here on
    assert run(b, "claim", "task", "x", session="s2").code == 0
    before = tip(world.remote)

    away(a)
    calls.clear()
    r = run(a, "claim", "task", "x", session="s1")
    # The first round decided on a's old tip (x free) and pushed; refused, it fetched,
    # and the second round found x held: exit 3 naming the winner, nothing written.
    assert r.code == 3, (r.code, r.err)
    assert "task/x is held by s2" in r.err, r.err
    assert calls.remote() == {"push": 1, "fetch": 1}, calls.verbs()
    assert tip(world.remote) == before

    # A write that still fits the new tip lands on it, in the round after the refusal.
    assert run(b, "claim", "task", "z", session="s2").code == 0
    moved = tip(world.remote)
    away(a)
    calls.clear()
    r = run(a, "claim", "task", "y", "--json", session="s1")
    assert r.code == 0, r.err
    doc = r.json()
    assert isinstance(doc, dict)
    # refused before: this clone fetches first (one fetch, one push, one round)
    assert calls.remote() == {"fetch": 1, "push": 1}, calls.verbs()
    assert doc["attempts"] == 1
    assert git(world.remote, "rev-parse", f"{doc['commit']}^").strip() == moved
    # That fetch found the branch moved by b, so the next write fetches first too; it
    # finds the branch where this clone left it, and the one after trusts the mirror.
    calls.clear()
    assert run(a, "release", "task", "y", session="s1").code == 0
    assert calls.remote() == {"fetch": 1, "push": 1}, calls.verbs()
    assert pace(a).speculate
    calls.clear()
    assert run(a, "claim", "task", "y", session="s1").code == 0
    assert calls.remote() == {"push": 1}, calls.verbs()


def _reset_pace(repo: Path, **fields: float) -> Pace:
    """This clone's pace with `fields` changed (what it learnt of the branch kept)."""
    (path,) = (repo / ".git" / "gitcoord" / "pace").iterdir()
    got = dataclasses.replace(Pace.load(str(path)), **fields)
    got.save(str(path))
    return got


def test_a_clone_that_saw_others_write_often_fetches_first_rather_than_push_stale(
    world: World, calls: Calls
) -> None:
    """A push on a stale mirror is refused, which costs a round trip and counts in a
    host's push budget: a clone whose looks at the branch found others writing at a
    rate that has most likely moved the tip since fetches first; one that found them
    rare still pushes at once."""
    a, b = two_clones(world)  # b's registration: a's mirror is behind by one
    for t in ("t1", "t2", "t3"):
        assert run(b, "claim", "task", t, session="s2").code == 0
    # a knew the tip a minute ago and has seen nobody else write: it pushes on its
    # mirror, is refused, and the fetch that follows counts what it missed.
    _reset_pace(a, round=0.05, known_at=time.time() - 60, contended_until=0.0)
    calls.clear()
    r = run(a, "claim", "task", "x", "--json", session="s1")
    assert r.code == 0, r.err
    assert calls.remote() == {"push": 2, "fetch": 1}, calls.verbs()
    learnt = pace(a)
    assert learnt.others == 4 and 59 <= learnt.watched <= 120

    # A minute later (as far as its pace knows) the tip has most likely moved again: it
    # fetches first, and lands in one push.
    assert run(b, "claim", "task", "t4", session="s2").code == 0
    kept = _reset_pace(
        a, known_at=time.time() - 60, contended_until=0.0, give_way_until=0.0, speculate=True
    )
    assert kept.risk(time.time()) > 0.9
    calls.clear()
    r = run(a, "claim", "task", "y", "--json", session="s1")
    assert r.code == 0, r.err
    doc = r.json()
    assert isinstance(doc, dict) and doc["attempts"] == 1
    assert calls.remote() == {"fetch": 1, "push": 1}, calls.verbs()

    # Others rare (one commit in ten minutes watched): a minute away, the mirror most
    # likely stands, and it does: one push, no fetch.
    quiet = _reset_pace(
        a,
        known_at=time.time() - 60,
        contended_until=0.0,
        give_way_until=0.0,
        speculate=True,
        watched=600.0,
        others=1.0,
    )
    assert quiet.risk(time.time()) < 0.2
    calls.clear()
    assert run(a, "release", "task", "y", session="s1").code == 0
    assert calls.remote() == {"push": 1}, calls.verbs()


def test_the_chance_the_tip_moved_follows_the_rate_seen_and_forgets_old_looks() -> None:
    p = Pace(known_at=1000.0)
    assert p.risk(5000.0) == 0.0  # nobody else seen: the mirror stands, however old
    p.observe(1010.0, 5)  # 5 commits of others in 10 s
    p.known_at = 1010.0
    assert p.risk(1010.0) == 0.0
    assert 0.3 < p.risk(1011.0) < 0.5  # 1 - e^-0.5
    assert p.risk(1020.0) > 0.99
    # A night away counts as WATCH_CAP seconds: one look cannot make a busy branch quiet.
    p.observe(1010.0 + 8 * 3600, 40)
    assert p.watched <= 5.0 + 600.0
    # Quiet looks since: the rate falls, and speculation comes back.
    for k in range(1, 8):
        p.known_at = 100_000.0 * k
        p.observe(100_000.0 * k + 60, 0)
    p.known_at = 900_000.0
    assert p.risk(900_001.0) < 0.2 and p.may_speculate(900_001.0)
    # A look from before the tip was known (a clock set back) teaches nothing.
    before = dataclasses.replace(p)
    p.observe(p.known_at - 5, 3)
    assert p == before


def test_a_stale_push_that_wins_on_the_fetched_tip_builds_on_it(world: World, calls: Calls) -> None:
    a, b = two_clones(world)
    assert run(b, "claim", "task", "other", session="s2").code == 0
    moved = tip(world.remote)
    calls.clear()
    r = run(a, "claim", "task", "mine", "--json", session="s1")
    assert r.code == 0, r.err
    doc = r.json()
    assert isinstance(doc, dict) and doc["attempts"] == 2  # the refused round, then the win
    assert calls.remote() == {"push": 2, "fetch": 1}, calls.verbs()
    assert git(world.remote, "rev-parse", f"{doc['commit']}^").strip() == moved
    st = run(b, "status", "--json").json()
    assert isinstance(st, dict)
    holders = {c["resource"]: c["holder"] for c in st["claims"] if not c.get("released_at")}
    assert holders.get("task/mine") == "s1" and holders.get("task/other") == "s2"


# --- answers that write nothing are confirmed on a fresh tip -----------------------------


def test_a_conflict_on_a_stale_tip_is_not_reported_when_the_fresh_tip_allows_it(
    world: World, calls: Calls
) -> None:
    a, b = two_clones(world)
    assert run(b, "claim", "task", "x", session="s2").code == 0
    assert run(a, "status").code == 0  # a's mirror: x held by s2
    assert run(b, "release", "task", "x", session="s2").code == 0  # ... no longer true
    calls.clear()
    r = run(a, "claim", "task", "x", session="s1")
    # The cached tip said "held by s2" (exit 3); a fetch found the release, and the
    # claim was decided again on it: granted.
    assert r.code == 0, (r.code, r.err)
    assert calls.remote() == {"fetch": 1, "push": 1}, calls.verbs()
    assert trailers(world.remote)[-1]["subject"] == "claim task/x by s1"


def test_nothing_to_do_on_a_stale_tip_is_done_on_the_fresh_one(world: World, calls: Calls) -> None:
    """A session restarted in another clone: s1 released x in clone a, then claimed it
    again from clone b. In a, releasing x looks like nothing to do (released twice is
    no error) on a's stale tip; on the fresh tip it is a release to write."""
    a, b = two_clones(world)
    assert run(a, "claim", "task", "x", session="s1").code == 0
    assert run(a, "release", "task", "x", session="s1").code == 0
    assert run(b, "claim", "task", "x", session="s1").code == 0  # s1 again, elsewhere
    calls.clear()
    r = run(a, "release", "task", "x", "--json", session="s1")
    assert r.code == 0, r.err
    doc = r.json()
    assert isinstance(doc, dict) and doc["changed"] and doc["commit"], doc
    assert calls.remote() == {"fetch": 1, "push": 1}, calls.verbs()
    assert trailers(world.remote)[-1]["subject"] == "release task/x by s1"


def test_an_answer_on_a_tip_that_still_stands_costs_one_fetch_and_no_push(
    world: World, calls: Calls
) -> None:
    a, b = two_clones(world)
    assert run(b, "claim", "task", "x", session="s2").code == 0
    assert run(a, "status").code == 0  # a's mirror is current
    calls.clear()
    r = run(a, "claim", "task", "x", session="s1")
    assert r.code == 3 and "held by s2" in r.err, r.err
    assert calls.remote() == {"fetch": 1}, calls.verbs()
    assert run(a, "claim", "task", "y", session="s1").code == 0
    assert run(a, "release", "task", "y", session="s1").code == 0
    calls.clear()
    r = run(a, "release", "task", "y", "--json", session="s1")  # released twice: no write
    assert r.code == 0 and isinstance(doc := r.json(), dict) and not doc["changed"], r.out
    assert calls.remote() == {"fetch": 1}, calls.verbs()


def test_an_unreachable_remote_is_still_exit_6_saying_so(world: World) -> None:
    a = world.clone("a")
    assert run(a, "init").code == 0
    assert run(a, "register", "--role", "r", "--goal", "g", session="s1").code == 0
    git(a, "remote", "set-url", "origin", str(world.root / "gone.git"))
    r = run(a, "--timeout", "5", "claim", "task", "x", session="s1")
    assert r.code == 6, (r.code, r.err)
    assert "cannot fetch" in r.err and "origin" in r.err, r.err


# --- fairness: bounded backoff, a contended winner gives way ---------------------------


def test_the_backoff_window_is_bounded_and_narrows_for_long_waiters() -> None:
    b = Backoff()
    b.round = 0.2
    windows = [b.window(attempt, 0.0) for attempt in range(1, 40)]
    assert windows[0] == pytest.approx(0.2)
    assert max(windows) == pytest.approx(0.2 * WINDOW_ROUNDS)  # never seconds
    assert windows == sorted(windows)
    # the longer a session has waited, the sooner it goes again
    waits = [b.window(12, waited) for waited in (0.0, 1.0, 2.0, 4.0, 8.0, 30.0)]
    assert waits == sorted(waits, reverse=True) and waits[-1] < waits[0]
    assert min(waits) >= 0.2 * MIN_WINDOW_ROUNDS


def test_pace_survives_a_round_trip_and_a_broken_file(tmp_path: Path) -> None:
    path = str(tmp_path / "gitcoord" / "pace" / "x")
    assert Pace.load(path) == Pace()
    Pace(False, 0.125, 1000.25, 1100.5, 1234.5, 3).save(path)
    assert Pace.load(path) == Pace(False, 0.125, 1000.25, 1100.5, 1234.5, 3)
    Path(path).write_text("garbage")
    assert Pace.load(path) == Pace()
    full = Pace(True, 0.125, 1000.25, 1100.5, 1234.5, 3, 999.5, 42.5, 7.0)
    full.save(path)
    assert Pace.load(path) == full
    # a file from before the rate was kept: none seen
    Path(path).write_text("1 0.1250 1000.250 1100.500 1234.500 3 999.500\n")
    assert Pace.load(path) == dataclasses.replace(full, watched=0.0, others=0.0)
    # numbers that are no times: the defaults; a broken rate alone is forgotten
    Path(path).write_text("1 nan 1000 1100 1234 3 999\n")
    assert Pace.load(path) == Pace()
    Path(path).write_text("1 0.125 1000.25 1100.5 1234.5 3 999.5 inf -3\n")
    assert Pace.load(path) == dataclasses.replace(full, watched=0.0, others=0.0)


def test_a_winner_that_lost_a_round_to_another_clone_gives_way_next_time(
    world: World,
) -> None:
    from gitcoord.gitio import Git, discover
    from gitcoord.store.transaction import Identity

    a, b = two_clones(world)
    info = discover(str(a))
    store = TreeStore(
        info, Git.at(str(a)), branch="gitcoord", remote="origin", identity=Identity("t", "t@x")
    )
    rounds: list[str | None] = []

    def decide(at: str | None) -> Unchanged[None] | Write[None]:
        rounds.append(at)
        if len(rounds) <= 2:  # another clone writes between this round's read and push
            assert run(b, "claim", "task", f"r{len(rounds)}", session="s2").code == 0
        return Write({"marks/a.txt": b"%d\n" % len(rounds)}, "mark\n", _now(), None)

    with store:
        done = store.transact(decide)
        # round 1 on the mirror (stale: b registered since), refused, no backoff;
        # round 2 fetched and lost to b; round 3 fetched and won
        assert done.attempts == 3 and len(set(rounds)) == 3
        assert done.commit is not None and tip(world.remote) == done.commit
        saved = Pace.load(store.pace_path)
        assert saved.give_way_until > 0 and saved.round > 0
        assert not saved.speculate  # its mirror was stale: fetch first next time
        # it gives way for as many rounds as its win took (the others are that far in)
        assert saved.give_way_until == pytest.approx(saved.known_at + 3 * saved.unit)


def test_a_winner_gives_way_one_round_per_round_its_win_took_up_to_a_bound() -> None:
    from gitcoord.store.turns import GIVE_WAY_ROUNDS

    contended = Pace(round=0.5, contended_until=2000.0)
    for rounds, waits in [(1, 1), (3, 3), (GIVE_WAY_ROUNDS + 5, GIVE_WAY_ROUNDS), (0, 1)]:
        pace = dataclasses.replace(contended)
        pace.won(1000.0, False, 0.5, rounds)
        assert pace.give_way_until == pytest.approx(1000.0 + waits * 0.5), rounds
    calm = Pace(round=0.5)  # no contention seen: no giving way, however long it took
    calm.won(1000.0, False, 0.5, 7)
    assert calm.give_way_until == 0.0


def test_a_run_of_one_push_wins_gives_way_by_count_or_by_time() -> None:
    """A writer whose pushes keep winning sees nobody who loses: it gives way after
    STREAK of them, or once the run has lasted STREAK_SECONDS (pushes that carry a
    group take long: a count alone let one machine hold the branch for 25 s)."""
    from gitcoord.store.turns import STREAK, STREAK_SECONDS

    quick = Pace(round=0.2)
    for k in range(STREAK):
        assert quick.give_way_until == 0.0, k
        quick.won(1000.0 + 0.2 * k, True, 0.2)
    assert quick.give_way_until == pytest.approx(1000.0 + 0.2 * (STREAK - 1) + 0.4)
    slow = Pace(round=0.2)
    took = STREAK_SECONDS / 2.5
    slow.won(1000.0, True, took)
    assert slow.give_way_until == 0.0
    slow.won(1000.0 + took, True, took)  # 2 wins, the run's length now 2 x took
    assert slow.give_way_until == 0.0
    slow.won(1000.0 + 2 * took, True, took)  # 3 x took >= STREAK_SECONDS
    assert slow.give_way_until == pytest.approx(1000.0 + 2 * took + 2 * took)
    assert slow.streak == 0  # a new run starts


def test_a_group_gives_way_for_two_pushes_not_for_its_members_decisions() -> None:
    """A push carrying a group took its members' decisions too: the others need a
    fetch and a push (about two pushes, a fetching round at least), not that long."""
    from gitcoord.store.turns import STREAK

    group = Pace(round=0.3)
    for k in range(STREAK):
        group.won(1000.0 + 0.4 * k, True, 0.9, pushed=0.25)
    assert group.give_way_until == pytest.approx(1000.0 + 0.4 * (STREAK - 1) + 0.5)
    short = Pace(round=0.3)  # pushes quicker than a fetching round: a round still
    for k in range(STREAK):
        short.won(1000.0 + 0.4 * k, True, 0.9, pushed=0.05)
    assert short.give_way_until == pytest.approx(1000.0 + 0.4 * (STREAK - 1) + 0.3)
    odd = Pace(round=0.3)  # a push time past the win's own (a clock step): the win's
    for k in range(STREAK):
        odd.won(1000.0 + 0.4 * k, True, 0.4, pushed=7.0)
    assert odd.give_way_until == pytest.approx(1000.0 + 0.4 * (STREAK - 1) + 0.8)


def _now() -> datetime:
    return datetime.fromtimestamp(int(time.time()), timezone.utc)


def _pace_file(repo: Path, **fields: float) -> Path:
    """Set this clone's pace (as if learnt): a long round, so that nothing here depends
    on how fast this machine runs the commands."""
    (path,) = (repo / ".git" / "gitcoord" / "pace").iterdir()
    Pace(True, **fields).save(str(path))
    return path


def test_a_winner_whose_tip_others_moved_right_after_it_wrote_gives_way_next_time(
    world: World,
) -> None:
    """The monopoly this prevents: a winner's own push keeps its mirror current, so it
    writes again in one push while the others need a fetch and a push and never win."""
    a, b = two_clones(world)
    path = _pace_file(a, round=10.0, known_at=time.time())  # a learnt the tip just now
    assert run(b, "claim", "task", "theirs", session="s2").code == 0  # ... and b wrote
    r = run(a, "claim", "task", "mine", session="s1")
    assert r.code == 0, r.err
    got = Pace.load(str(path))
    assert got.contended_until > time.time() and got.give_way_until > time.time()
    assert not got.speculate


def test_a_tip_moved_while_this_clone_was_away_is_no_contention(world: World) -> None:
    a, b = two_clones(world)
    path = _pace_file(a, round=10.0, known_at=time.time() - 3600)  # an hour ago
    assert run(b, "claim", "task", "theirs", session="s2").code == 0
    r = run(a, "claim", "task", "mine", session="s1")
    assert r.code == 0, r.err
    got = Pace.load(str(path))
    assert got.contended_until == 0 and got.give_way_until == 0
    assert got.known_at > time.time() - 3600


def test_the_benchmarks_delay_proxy_relays_git_both_ways(
    daemon_world: tuple[World, str],
) -> None:
    """benchmarks/netdelay.py measures through it: it must relay fetches and pushes
    faithfully (its delay is the benchmark's business, not asserted here)."""
    from testing.netdelay import DelayProxy

    world, url = daemon_world
    port = int(url.rsplit(":", 1)[1].split("/", 1)[0])
    with DelayProxy(port, rtt=0.02) as proxy:
        delayed = f"git://127.0.0.1:{proxy.port}/{world.remote.name}"
        a = world.clone("a")
        git(a, "remote", "set-url", "origin", delayed)
        assert run(a, "init").code == 0
        assert run(a, "register", "--role", "r", "--goal", "g", session="s1").code == 0
        assert run(a, "claim", "task", "x", session="s1").code == 0
        st = run(a, "status", "--json").json()
        assert isinstance(st, dict) and st["claims"][0]["holder"] == "s1"
        assert proxy.connections >= 4
    assert trailers(world.remote)[-1]["subject"] == "claim task/x by s1"
    with pytest.raises(ValueError):
        DelayProxy(port, 0.0, host="192.0.2.1")


def test_pace_forgets_times_from_a_clock_set_back(tmp_path: Path) -> None:
    path = str(tmp_path / "pace")
    later = time.time() + 3600 * 24
    Pace(True, 0.2, later, later, later, 2, later).save(path)
    got = Pace.load(path)
    assert (got.known_at, got.contended_until, got.give_way_until) == (0.0, 0.0, 0.0)
    assert got.round == 0.2 and got.streak == 2 and got.streak_since == 0.0
