"""Tickets (store.tickets): clones that keep losing the race for the branch are served in
the order they began. Each rule is tried with tickets made by plain git plumbing, as a
waiting clone (or a hostile one) would push them, against real clones and a real bare
remote; the CLI runs as it does for users.

What is checked: a clone stands back for a live ticket older than its wait and goes
once the holder's write landed (its ticket deleted in the same push); a writer deciding
on the tip it knows learns of a new ticket from the bell, at its next push; a ticket
whose holder is gone, or a pile of fake ones, holds nobody back for long and is deleted
by the next push that passes it; a remote that refuses these refs turns them off and
every write still lands."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from conftest import World, git, run, spawn, wait_all
from test_latency import two_clones

# The servers with gitcoord's hook, from the pushers' tests: smart HTTP and gitolite.
from test_pushers import Site, site  # noqa: F401  (a fixture)

from gitcoord.store.tickets import MAX_EXPIRE, key

BRANCH = "refs/heads/gitcoord"
PREFIX = f"refs/gitcoord/tickets/{key(BRANCH)}/"


def tip(world: World) -> str:
    return git(world.remote, "rev-parse", BRANCH).strip()


def tickets(world: World) -> dict[str, str]:
    out = git(world.remote, "for-each-ref", "--format=%(refname) %(objectname)", PREFIX)
    return dict(line.split() for line in out.splitlines())


def ring(world: World) -> str:
    """A new commit on the bell, made in the remote itself (as a waiter's push leaves it)."""
    tree = git(world.remote, "hash-object", "-w", "-t", "tree", "/dev/null").strip()
    args = ["commit-tree", "-m", "bell", tree]
    old = git(world.remote, "rev-parse", "-q", "--verify", PREFIX + "bell", check=False).strip()
    if old:
        args[1:1] = ["-p", old]
    bell = git(world.remote, *args).strip()
    git(world.remote, "update-ref", PREFIX + "bell", bell)
    return bell


def wait_for(world: World, clone: str, at: str) -> str:
    """A ticket of `clone` (its name in the queue), its wait begun at branch commit `at`."""
    ref = f"{PREFIX}waiting/{clone}"
    git(world.remote, "update-ref", ref, at)
    ring(world)
    return ref


def clone_name(repo: Path) -> str:
    return (repo / ".git" / "gitcoord" / "clone").read_text().strip()


def set_pace(repo: Path, fields: dict[int, str]) -> None:
    """Fields of this clone's pace file (`store.turns.Pace`, a cache) set by hand."""
    (pace,) = (repo / ".git" / "gitcoord" / "pace").glob("*")
    now = pace.read_text().split()
    for k, value in fields.items():
        now[k] = value
    pace.write_text(" ".join(now) + "\n")


def slow_rounds(repo: Path, seconds: float) -> None:
    """This clone measured its rounds at `seconds` each: it then waits a few such rounds
    for a ticket's holder before passing it over."""
    set_pace(repo, {0: "0", 1: f"{seconds:.4f}"})  # (and fetch first)


def two_waits_ahead(world: World, a: Path, b: Path, first: str) -> tuple[str, str]:
    """a claims `first`; then two waits stand ahead of a's next write: the oldest (a
    clone that is slow, or gone) and b's, begun on a's claim. Their ticket refs."""
    assert run(b, "claim", "task", "warm", session="s2").code == 0  # b's clone has a name
    oldest = tip(world)
    assert run(a, "claim", "task", first, session="s1").code == 0
    gone = wait_for(world, "f" * 16, oldest)
    waits = wait_for(world, clone_name(b), tip(world))
    slow_rounds(a, 3.0)  # a waits up to 12 s for them before passing them over
    return gone, waits


def refuse_ticket_refs(world: World) -> None:
    """A pre-receive hook on the remote that declines any push touching ticket refs."""
    hook = world.remote / "hooks" / "pre-receive"
    hook.write_text(
        "#!/bin/sh\n"
        "while read -r old new ref; do\n"
        '  case "$ref" in refs/gitcoord/tickets/*) echo "no such refs here" >&2; exit 1;; esac\n'
        "done\n"
    )
    hook.chmod(0o755)


@pytest.fixture
def two(world: World) -> tuple[Path, Path]:
    """Clones a and b of one remote, a session registered in each."""
    return two_clones(world)


def test_a_clone_stands_back_for_older_waits_and_goes_once_they_landed(
    world: World, two: tuple[Path, Path]
) -> None:
    a, b = two
    gone, _ = two_waits_ahead(world, a, b, "first")
    before = tip(world)
    late = spawn(a, "claim", "task", "late", session="s1")
    time.sleep(2.0)
    assert tip(world) == before, "a went while two older waits stood"
    assert run(b, "claim", "task", "waited", session="s2").code == 0
    (r,) = wait_all([late], 60)
    assert r.code == 0, r.err
    log = git(world.remote, "log", "--format=%s", BRANCH).splitlines()
    assert log[0].startswith("claim task/late by s1"), log[:3]
    assert log[1].startswith("claim task/waited by s2"), log[:3]
    left = tickets(world)
    assert f"{PREFIX}waiting/{clone_name(b)}" not in left  # deleted as b landed
    assert gone in left  # a went once only one wait was ahead: it did not pass it over


def test_a_clone_just_served_writes_once_more_at_once_and_then_waits_its_turn(
    world: World, two: tuple[Path, Path]
) -> None:
    """A turn carries two writes (a claim and the release that follows), not three."""
    a, b = two
    _, waits = two_waits_ahead(world, a, b, "one")
    set_pace(a, {11: f"{time.time() + 30:.3f}"})  # as if a's ticket was just served
    began = time.monotonic()
    assert run(a, "release", "task", "one", session="s1").code == 0  # the turn's second
    assert time.monotonic() - began < 6.0  # it did not wait for b
    assert waits in tickets(world)
    third = spawn(a, "claim", "task", "three", session="s1")
    time.sleep(2.0)
    assert third.poll() is None and git(
        world.remote, "log", "-1", "--format=%s", BRANCH
    ).startswith("release task/one"), "a wrote a third time while b waited"
    assert run(b, "claim", "task", "waited", session="s2").code == 0
    (r,) = wait_all([third], 60)
    assert r.code == 0, r.err
    log = git(world.remote, "log", "-3", "--format=%s", BRANCH).splitlines()
    assert [line.split(" by ")[0] for line in log] == [
        "claim task/three",
        "claim task/waited",
        "release task/one",
    ], log


def test_the_bell_stops_a_writer_that_decides_on_the_tip_it_knows(
    world: World, two: tuple[Path, Path]
) -> None:
    a, _ = two
    ring(world)  # someone waited once
    assert run(a, "status").code == 0  # a read fetches: a knows the bell
    assert run(a, "claim", "task", "one", session="s1").code == 0
    older = tip(world)
    assert run(a, "claim", "task", "two", session="s1").code == 0  # one push, on its mirror
    gone = [wait_for(world, c * 16, older) for c in "ef"]  # clones that are gone
    assert run(a, "claim", "task", "three", session="s1").code == 0
    # a's push on its mirror carried the bell as a knew it and was refused; its fetch then
    # showed the tickets, which a waited for, passed over and deleted as it landed.
    assert not set(gone) & set(tickets(world))
    log = git(world.remote, "log", "-1", "--format=%s", BRANCH)
    assert log.startswith("claim task/three by s1")


def test_without_the_bell_a_writer_on_the_tip_it_knows_never_sees_a_ticket(
    world: World, two: tuple[Path, Path]
) -> None:
    """The test above without the bell: the tickets stay. (What the bell is for.)"""
    a, _ = two
    assert run(a, "claim", "task", "one", session="s1").code == 0
    assert run(a, "claim", "task", "two", session="s1").code == 0
    refs = [f"{PREFIX}waiting/{c * 16}" for c in "ef"]
    for ref in refs:
        git(world.remote, "update-ref", ref, tip(world))  # no ring
    assert run(a, "claim", "task", "three", session="s1").code == 0
    assert set(refs) <= set(tickets(world))


def test_fake_tickets_hold_nobody_back_for_long_and_honest_work_lands(
    world: World, two: tuple[Path, Path]
) -> None:
    a, b = two
    at = tip(world)
    assert run(a, "claim", "task", "one", session="s1").code == 0
    fakes = [wait_for(world, f"{i:016x}", at) for i in range(40)]
    # And refs no wait could be: a blob, a commit that is not on the branch.
    blob = git(world.remote, "hash-object", "-w", "-t", "blob", "/dev/null").strip()
    git(world.remote, "update-ref", f"{PREFIX}waiting/blob", blob)
    tree = git(world.remote, "hash-object", "-w", "-t", "tree", "/dev/null").strip()
    stray = git(world.remote, "commit-tree", "-m", "x", tree).strip()
    git(world.remote, "update-ref", f"{PREFIX}waiting/stray", stray)
    r = run(b, "--timeout", "20", "claim", "task", "two", session="s2")
    assert r.code == 0, r.err
    left = sum(f in tickets(world) for f in fakes)
    assert len(fakes) - MAX_EXPIRE <= left < len(fakes)  # some deleted, 16 at most a push
    for n in range(12):  # each push deletes a few of those it passed over
        if not set(fakes) & set(tickets(world)):
            break
        assert run(b, "claim", "task", f"more-{n}", session="s2").code == 0
    assert not set(fakes) & set(tickets(world))


def test_a_remote_that_refuses_ticket_refs_turns_them_off_and_writes_still_land(
    world: World, two: tuple[Path, Path]
) -> None:
    a, _ = two
    refuse_ticket_refs(world)
    older = tip(world)
    assert run(a, "claim", "task", "zero", session="s1").code == 0
    gone = [wait_for(world, c * 16, older) for c in "ef"]  # a's push would delete them
    r = run(a, "claim", "task", "one", session="s1")
    assert r.code == 0, r.err
    assert set(gone) <= set(tickets(world))  # the remote took the write, not the deletions
    (pace,) = (a / ".git" / "gitcoord" / "pace").glob("*")
    assert float(pace.read_text().split()[9]) > time.time() + 3600  # off here for a day
    before = tip(world)
    assert run(a, "claim", "task", "two", session="s1").code == 0
    assert tip(world) != before


@pytest.mark.slow
def test_clones_racing_with_tickets_lose_nothing_and_grant_each_claim_once(
    world: World,
) -> None:
    """Eight clones as eight machines (turns per clone, tickets on), every session racing
    for one resource and claiming three of its own at once, behind two stale tickets that
    all of them stand back for, pass over and delete: one winner, nothing lost, no ticket
    left behind, the branch valid."""
    from test_races import (
        Job,
        assert_claims_on_branch,
        assert_fsck_clean,
        assert_valid,
        describe,
        founded,
        race,
        register_all,
    )

    clones = founded(world, 8)
    sessions = [f"s{i}" for i in range(1, 9)]
    register_all(list(zip(clones, sessions, strict=True)))
    older = tip(world)
    assert run(clones[0], "claim", "task", "warm", session="s1").code == 0
    for c in "ef":
        wait_for(world, c * 16, older)
    jobs = [Job(c, ("claim", "task", "hot"), s) for c, s in zip(clones, sessions, strict=True)]
    jobs += [
        Job(c, ("claim", "task", f"{s}-r{k}"), s)
        for c, s in zip(clones, sessions, strict=True)
        for k in range(3)
    ]
    results = race(jobs)
    hot = [r.code for r in results[:8]]
    assert sorted(hot) == [0] + [3] * 7, describe(results, jobs)
    assert all(r.code == 0 for r in results[8:]), describe(results, jobs)
    winner = sessions[hot.index(0)]
    mine = {f"task/{s}-r{k}": s for s in sessions for k in range(3)}
    assert_claims_on_branch(clones[-1], {"task/hot": winner, **mine})
    assert not [ref for ref in tickets(world) if "/waiting/" in ref]
    assert_valid(clones[0])
    assert_fsck_clean(world.remote)


def test_tickets_pass_through_smart_http_and_gitolite_with_the_server_hook(
    site: Site,  # noqa: F811
) -> None:
    """Through a server that knows who pushes, gitcoord's hook installed: a push that
    lands a write and deletes tickets passed over, all or nothing, is taken."""
    alice = site.clone("alice")
    assert run(alice, "init").code == 0
    assert run(alice, "register", "--role", "r", "--goal", "g", session="alice").code == 0
    older = git(site.repo, "rev-parse", BRANCH).strip()
    assert run(alice, "claim", "task", "one", session="alice").code == 0
    served = World(site.repo.parent, site.repo)
    gone = [wait_for(served, c * 16, older) for c in "ef"]
    assert run(alice, "status").code == 0  # alice knows the bell
    r = run(alice, "claim", "task", "two", session="alice")
    assert r.code == 0, r.err
    assert not set(gone) & set(tickets(served))
    log = git(site.repo, "log", "-1", "--format=%s", BRANCH)
    assert log.startswith("claim task/two by alice")


def test_a_hook_that_declines_pushes_with_ticket_refs_turns_them_off_after_the_write_lands(
    world: World, two: tuple[Path, Path]
) -> None:
    """The hook declines the whole push (the branch's commits with it), so the push goes
    again alone: it lands, and only then are tickets off."""
    a, _ = two
    assert run(a, "claim", "task", "zero", session="s1").code == 0
    refuse_ticket_refs(world)
    mine = wait_for(world, clone_name(a), tip(world))  # left by a wait of a's that was cut
    assert run(a, "status").code == 0  # a sees it: its next push would delete it
    (pace,) = (a / ".git" / "gitcoord" / "pace").glob("*")
    assert float(pace.read_text().split()[9]) < time.time()
    r = run(a, "claim", "task", "one", session="s1")
    assert r.code == 0, r.err
    assert git(world.remote, "log", "-1", "--format=%s", BRANCH).startswith("claim task/one")
    assert mine in tickets(world)
    assert float(pace.read_text().split()[9]) > time.time() + 3600


def test_a_clone_name_that_cannot_be_kept_is_made_for_the_process_and_nothing_fails(
    tmp_path: Path,
) -> None:
    """Where .git/gitcoord cannot hold the name (here: a file stands where the folder
    goes; a .git the user may only read fails the same way), a name is still made."""
    from gitcoord.store.tickets import clone_id

    git_dir = tmp_path / "dot-git"
    git_dir.mkdir()
    (git_dir / "gitcoord").write_text("not a folder\n")
    name = clone_id(str(git_dir))
    assert len(name) == 16 and int(name, 16) >= 0
    assert (git_dir / "gitcoord").read_text() == "not a folder\n"
    assert sorted(p.name for p in git_dir.iterdir()) == ["gitcoord"]  # no file left
    kept = tmp_path / "kept"
    kept.mkdir()
    assert clone_id(str(kept)) == clone_id(str(kept))  # kept where it can be: one name


# --- the server's judge (audit.tickets): what a hostile pusher tries -------------------


def push(clone: Path, *specs: str) -> tuple[int, str]:
    """`git push --atomic` of raw refspecs from a clone (plain git, no gitcoord)."""
    proc = subprocess.run(
        ["git", "push", "--porcelain", "--atomic", "origin", *specs],
        cwd=clone,
        capture_output=True,
        text=True,
        check=False,
    )
    return proc.returncode, proc.stdout + proc.stderr


def make(clone: Path, *args: str) -> str:
    return git(clone, *args).strip()


@pytest.fixture
def judged(world: World, two: tuple[Path, Path]) -> tuple[Path, Path]:
    """Two clones of a remote with gitcoord's server hook; a has fetched the branch."""
    a, b = two
    assert run(a, "hooks", "install", "--server", str(world.remote)).code == 0
    assert run(a, "claim", "task", "zero", session="s1").code == 0
    git(a, "fetch", "-q", "origin", f"+{BRANCH}:refs/remotes/origin/gitcoord")
    return a, b


def test_the_server_refuses_tickets_that_no_honest_clone_pushes(
    world: World, judged: tuple[Path, Path]
) -> None:
    a, _ = judged
    on_branch = make(a, "rev-parse", "refs/remotes/origin/gitcoord")
    empty = make(a, "hash-object", "-w", "-t", "tree", "/dev/null")
    ring1 = make(a, "commit-tree", "-m", "bell", empty)
    assert push(a, f"{ring1}:{PREFIX}bell")[0] == 0  # a first ring: a root commit
    git(a, "fetch", "-q", "origin", f"+{PREFIX}bell:refs/bell")

    def ring() -> str:
        return make(a, "commit-tree", "-p", ring1, "-m", "bell", empty)

    blob = make(a, "hash-object", "-w", "--stdin")
    off_branch = make(a, "commit-tree", "-m", "not on the branch", empty)
    files = subprocess.run(
        ["git", "mktree"],
        cwd=a,
        input=f"100644 blob {blob}\tf\n",
        text=True,
        capture_output=True,
        check=True,
    ).stdout.strip()
    stuffed = make(a, "commit-tree", "-p", ring1, "-m", "bell", files)
    not_chained = make(a, "commit-tree", "-m", "a new chain", empty)
    w = f"{PREFIX}waiting/"
    attempts = {
        "a blob": [f"{blob}:{w}{'1' * 16}", f"{ring()}:{PREFIX}bell"],
        "a commit off the branch": [f"{off_branch}:{w}{'1' * 16}", f"{ring()}:{PREFIX}bell"],
        "no ring": [f"{on_branch}:{w}{'1' * 16}"],
        "two at once": [
            f"{on_branch}:{w}{'1' * 16}",
            f"{on_branch}:{w}{'2' * 16}",
            f"{ring()}:{PREFIX}bell",
        ],
        "a name that is no clone's": [f"{on_branch}:{w}alice", f"{ring()}:{PREFIX}bell"],
        "a ref that is no ticket": [f"{on_branch}:{PREFIX}other"],
        "a ring with files": [f"{on_branch}:{w}{'1' * 16}", f"{stuffed}:{PREFIX}bell"],
        "a ring on no bell (forced)": [
            f"{on_branch}:{w}{'1' * 16}",
            f"+{not_chained}:{PREFIX}bell",
        ],
        "the bell deleted": [f":{PREFIX}bell"],
    }
    for what, specs in attempts.items():
        code, said = push(a, *specs)
        assert code != 0, what
        assert "gitcoord" in said and "hook declined" in said, (what, said)
    assert tickets(world) == {f"{PREFIX}bell": ring1}  # nothing of it landed
    # What an honest clone pushes passes: a ticket on the branch with a ring, deleted.
    mine = f"{w}{'1' * 16}"
    assert push(a, f"{on_branch}:{mine}", f"{ring()}:{PREFIX}bell")[0] == 0
    assert push(a, f":{mine}")[0] == 0
    # Another branch's queue is not this server's to judge, as other refs are not.
    assert push(a, f"{blob}:refs/gitcoord/tickets/{key('refs/heads/x')}/anything")[0] == 0


def test_two_clones_that_ring_the_same_bell_in_the_same_second_do_not_ring_alike(
    world: World, judged: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two clones that saw the same bell take a ticket in the same second. Rings of the
    same bell made alike were the same commit: the second push found the bell "up to
    date" (git says so before it checks the lease), sent the ticket alone, and the hook
    refused a ticket with no ring — which the clone took for a remote that refuses
    tickets, and turned them off for a day (seen at 10 machines of 20 sessions: a clone
    without tickets raced the queue every round). The later one now loses the bell's
    lease, a round lost, and takes its place in line at the next look."""
    from gitcoord.api.coordinator import Coordinator
    from gitcoord.store.tickets import Wait

    a, b = judged
    monkeypatch.setattr(time, "time", lambda: 1_900_000_000.0)  # one second for both
    with Coordinator(str(a), session="s1") as first, Coordinator(str(b), session="s2") as second:
        deadline = time.monotonic() + 60
        waits = []
        for coord in (first, second):
            store = coord.store.trees
            assert store.tickets is not None
            wait = Wait(store.tickets, None)
            wait.look(0.1, store.fetch_tip(deadline))
            waits.append(wait)
        assert waits[0].bell == waits[1].bell  # (both saw the same bell, or none)
        assert waits[0].take(deadline)
        assert not waits[1].take(deadline)  # a lease lost, not a refusal
        second_store = second.store.trees
        waits[1].look(0.1, second_store.fetch_tip(deadline))
        assert waits[1].take(deadline)
        assert second_store.tickets is not None
        assert first.store.trees.tickets is not None
        on = tickets(world)
        assert first.store.trees.tickets.mine_ref in on
        assert second_store.tickets.mine_ref in on


def test_a_group_waits_in_line_from_its_first_lost_round_and_goes_only_first(
    world: World, judged: tuple[Path, Path]
) -> None:
    """A group's leader decides for every member in each round: a lost round costs them
    all. With one wait older than its own, a lone writer goes (the two oldest race) and
    a group stands back; the group takes a ticket after one round without landing, not
    three; it gives the wait ahead of it the group's floor before passing it over; and
    while it stands back it verifies each tip it fetches, so its turn has none to check."""
    import threading

    from gitcoord.api import trust
    from gitcoord.api.coordinator import Coordinator
    from gitcoord.store.tickets import GROUP_HEAD_FLOOR, HEAD_FLOOR, TICKET_AFTER, Wait

    a, b = judged
    with Coordinator(str(a), session="s1") as first, Coordinator(str(b), session="s2") as second:
        deadline = time.monotonic() + 60
        ahead = Wait(first.store.trees.tickets, None)  # type: ignore[arg-type]
        ahead.look(0.1, first.store.trees.fetch_tip(deadline))
        assert ahead.take(deadline)  # one wait, older than anything b begins now:
        assert run(b, "claim", "task", "later", session="s2").code == 0  # (a tip later)
        store = second.store.trees
        assert store.tickets is not None
        alone, grouped = Wait(store.tickets, None), Wait(store.tickets, None)
        grouped.grouped()
        now = store.fetch_tip(deadline)
        assert alone.look(0.1, now) == 0  # the oldest two go: a's and this one
        assert grouped.look(0.1, now) == 1  # only the oldest: a's
        assert (alone.after, grouped.after) == (TICKET_AFTER, 1)
        assert (alone.floor, grouped.floor) == (HEAD_FLOOR, GROUP_HEAD_FLOOR)
        time.sleep(HEAD_FLOOR + 0.2)  # a's holder never lands: past a lone writer's patience
        assert grouped.look(0.1, store.fetch_tip(deadline)) == 1  # not a group's
        assert not grouped.passed
        # Standing back: it looks again and again; once a's write landed (its ticket
        # deleted in the same push) it goes, and it verified that tip as it fetched it,
        # so its turn does not (`TreeStore.waited_on`).
        store.waiting = grouped
        # (Its patience counted from here, so that a slow box stays in line.)
        grouped._first.clear()
        grouped._moved = time.monotonic()
        went: list[str | None] = []

        def stand_back() -> None:
            try:
                went.append(store._stand_back(now, store.pace, deadline))
            except BaseException as exc:
                went.append(repr(exc))

        behind = threading.Thread(target=stand_back)
        behind.start()
        time.sleep(0.5)
        assert behind.is_alive(), went  # a's wait goes first
        first.claim("task", "served")  # a's turn: its ticket goes with its write
        behind.join(30)
        landed = tip(world)
        assert went == [landed] and landed != now
        assert trust.read(second.store).tip == landed  # type: ignore[union-attr]
        assert grouped.look(0.1, landed) == 0


def test_a_group_that_becomes_first_by_its_own_ticket_decides_on_a_fresh_tip(
    world: World, judged: tuple[Path, Path]
) -> None:
    """A group stands back for an older wait, takes its ticket (a push), and its own
    turns out the oldest: the tickets it looked at came with a fetch from before that
    push (and a verification), and the wait it stood back for may have landed since. It
    fetches before deciding every member on the tip, rather than decide them all on one
    that is gone."""
    from gitcoord.api.coordinator import Coordinator
    from gitcoord.store.tickets import Wait

    a, b = judged
    with Coordinator(str(a), session="s1") as first, Coordinator(str(b), session="s2") as second:
        deadline = time.monotonic() + 60
        store = second.store.trees
        assert store.tickets is not None
        began = store.fetch_tip(deadline)  # where b's waits begin: older than a's ticket
        assert run(a, "claim", "task", "one", session="s1").code == 0
        ahead = Wait(first.store.trees.tickets, None)  # type: ignore[arg-type]
        ahead.look(0.1, first.store.trees.fetch_tip(deadline))
        assert ahead.take(deadline)  # a's wait, at a later tip than b's began
        stale = store.fetch_tip(deadline)  # what b fetched (with a's ticket) ...
        assert run(a, "claim", "task", "two", session="s1").code == 0  # ... then a wrote
        fresh = tip(world)

        wait = Wait(store.tickets, began)
        wait.grouped()
        store.waiting = wait
        assert wait.look(0.1, stale) == 1  # a's wait is ahead, as b last fetched it
        went = store._stand_back(stale, store.pace, deadline)
        assert wait.holding and wait.back == 0  # its ticket taken: the oldest wait
        assert went == fresh != stale
        assert store.mirror_tip() == fresh
        wait.leave(deadline)


def test_a_group_first_in_line_that_lost_a_round_looks_again_at_once(
    world: World, judged: tuple[Path, Path]
) -> None:
    """After a lost round a ticket holder pauses a little (up to a quarter of a round),
    lest it spin through rounds lost to writers who do not know of its ticket. A group
    that the line said was first lost to the push it waited for, landing as it decided:
    it looks again as soon as it would next in line, its members waiting with it."""
    from gitcoord.api.coordinator import Coordinator
    from gitcoord.store import transaction
    from gitcoord.store.tickets import Wait
    from gitcoord.store.turns import Pace

    _, b = judged
    with Coordinator(str(b), session="s2") as coord:
        assert coord.store.trees.tickets is not None
        pace = Pace(round=8.0)
        for grouped, back in ((True, 0), (True, 1), (False, 0)):
            wait = Wait(coord.store.trees.tickets, None)
            if grouped:
                wait.grouped()
            wait.back = back
            pauses = {transaction._after_lost(wait, pace) for _ in range(20)}
            if grouped and back == 0:
                assert pauses == {transaction.NEXT_IN_LINE}
            else:
                assert all(0 <= p <= pace.unit / 4 for p in pauses) and max(pauses) > 0.2


def test_a_group_gives_no_way_after_a_win_where_the_line_takes_turns(
    world: World, judged: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A winner under contention pauses before its next write so that the others get in;
    a group's leader does not, where the remote takes tickets: the line already lets the
    others go first, and its members would wait out the pause besides. Without members, or
    with tickets off in the clone, it pauses as before."""
    from gitcoord.api.coordinator import Coordinator
    from gitcoord.store import cancel, group
    from gitcoord.store.turns import Pace

    _, b = judged
    paused: list[float] = []
    monkeypatch.setattr(cancel.CANCELLED, "wait", lambda seconds=None: paused.append(seconds))
    path = str(tmp_path / "g.sock")
    with Coordinator(str(b), session="s2") as coord:
        store = coord.store.trees
        deadline = time.monotonic() + 60

        def gives_way(members: int, tickets_off: float = 0.0) -> bool:
            leader = group.Leader(path)
            joined = [group.join(path) for _ in range(members)]
            try:
                pace = Pace(give_way_until=time.time() + 3, tickets_off=tickets_off)
                paused.clear()
                store._give_way(pace, deadline, leader)
                return bool(paused)
            finally:
                for chan in joined:
                    assert chan is not None
                    chan.close()
                leader.close()

        assert not gives_way(members=2)
        assert gives_way(members=0)
        assert gives_way(members=2, tickets_off=time.time() + 3600)


def test_an_honest_wait_passes_the_judge_and_a_full_queue_is_a_round_lost(
    world: World, judged: tuple[Path, Path]
) -> None:
    """Through the client's own code: a ticket taken is on the remote; with the queue
    full (tickets made behind the hook's back) the take is refused as a round lost, and
    tickets stay on in the clone; once tickets out of the window are deleted, it lands."""
    from gitcoord.api.coordinator import Coordinator
    from gitcoord.audit.tickets import MAX_WAITING
    from gitcoord.store.tickets import Wait

    _, b = judged
    with Coordinator(str(b), session="s2") as coord:
        store = coord.store.trees
        assert store.tickets is not None
        deadline = time.monotonic() + 60
        wait = Wait(store.tickets, None)
        wait.look(0.1, store.fetch_tip(deadline))
        assert wait.take(deadline)
        assert tickets(world)[store.tickets.mine_ref] == wait.began
        wait.leave(deadline)
        assert store.tickets.mine_ref not in tickets(world)

        at = tip(world)
        lines = "".join(f"create {PREFIX}waiting/{i:016x} {at}\n" for i in range(MAX_WAITING))
        subprocess.run(
            ["git", "update-ref", "--stdin"], cwd=world.remote, input=lines, text=True, check=True
        )
        wait = Wait(store.tickets, None)
        wait.look(0.1, store.fetch_tip(deadline))
        assert not wait.take(deadline)  # refused: the queue is full; no error
        assert store.tickets.mine_ref not in tickets(world)
    (pace_file,) = (b / ".git" / "gitcoord" / "pace").glob("*")
    off = float(pace_file.read_text().split()[9]) if pace_file.exists() else 0.0
    assert off < time.time()  # tickets are not off in b
