"""Heartbeats that ride: a due beat is held, and goes in the next push of any session of
its clone — as a commit of its own, signed by the machine's key — or, if no push comes,
by the background flusher within heartbeat_min_seconds.

Real processes and a real bare remote (with gitcoord's server hook and signatures
required where said). Pushes are counted in the remote's reflog, never timed. Where a
test plays the flusher itself, it holds the clone's flusher lock, so the commands it
runs start none (a real one is the subject of its own test).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import World, flusher_lock, git, run, spawn, wait_all
from reliability import REF, trailers

SESSIONS = ("a", "b", "c", "d")
HAS_SSH_KEYGEN = subprocess.run(["which", "ssh-keygen"], capture_output=True).returncode == 0


@pytest.fixture(autouse=True)
def riding(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITCOORD_RIDE", "1")


def pushes(remote: Path) -> int:
    out = git(remote, "reflog", "show", "--format=%H", REF, check=False)
    return len(out.splitlines())


def pending_dir(clone: Path) -> Path:
    return clone / ".git" / "gitcoord" / "pending"


def ok(clone: Path, *args: str, session: str | None = None) -> dict[str, Any]:
    r = run(clone, *args, "--json", session=session)
    assert r.code == 0, (args, r.err)
    doc = json.loads(r.out)
    assert isinstance(doc, dict)
    return doc


def beat(clone: Path, sid: str, progress: int) -> dict[str, Any]:
    return ok(clone, "heartbeat", "implementing", "x", "tests", str(progress), session=sid)


def first_beat(clone: Path, sid: str) -> None:
    doc = ok(clone, "heartbeat", "implementing", "x", "tests", "10", "--force", session=sid)
    assert doc["action"] == "pushed"


def setup(world: World, clone: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Sessions a-d registered, each with a first beat on the branch, and the clock
    moved past heartbeat_min_seconds so the next is due."""
    git(world.remote, "config", "core.logAllRefUpdates", "always")
    for sid in SESSIONS:
        ok(clone, "register", "--role", "r", "--goal", "g", session=sid)
        first_beat(clone, sid)
    monkeypatch.setenv("GITCOORD_CLOCK_OFFSET", "300")


def started(world: World, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A clone of a new branch (no hook, no signatures) with `setup` done."""
    clone = world.clone("m1")
    ok(clone, "init")
    setup(world, clone, monkeypatch)
    return clone


def signed_world(world: World) -> Path:
    """A clone of a remote that requires signatures and runs gitcoord's server hook."""
    clone = world.clone("m1")
    key = world.root / "id_boss"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    git(clone, "config", "user.signingKey", str(key))
    ok(clone, "init", "--slots", "20", "--require-signatures", "--approver", "test@example.com")
    ok(clone, "hooks", "install", "--server", str(world.remote))
    return clone


def new_commits(world: World, since: int) -> list[dict[str, str]]:
    return trailers(world.remote)[since:]


@pytest.mark.skipif(not HAS_SSH_KEYGEN, reason="ssh-keygen (OpenSSH) is not installed")
def test_held_beats_ride_another_sessions_claim_in_its_one_push(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three sessions' due beats are held (nothing pushed); the fourth session's claim
    carries them: one push, four commits — the claim, then each beat as its session's
    own commit, signed by the machine's key — which the server hook let in and which
    replay valid. What rode is no longer kept."""
    clone = signed_world(world)
    setup(world, clone, monkeypatch)
    before, commits = pushes(world.remote), len(trailers(world.remote))
    with flusher_lock(clone):
        for progress, sid in enumerate(("a", "b", "c"), start=5):
            doc = beat(clone, sid, progress * 10)
            assert doc["action"] == "held" and doc["commit"] is None, doc
            assert doc["ride_within"] == 120
        assert pushes(world.remote) == before  # held: not a push
        assert sorted(p.name for p in pending_dir(clone).glob("*.json")) == [
            "a.json",
            "b.json",
            "c.json",
        ]
        doc = ok(clone, "claim", "task", "x", session="d")
        assert doc["changed"] is True
    assert pushes(world.remote) == before + 1
    landed = new_commits(world, commits)
    # The whole chain the push landed is recorded as verified (each commit this clone's,
    # judged as it was written), not only the claim: no command verifies the beats again.
    (verified,) = (clone / ".git" / "gitcoord" / "verified").iterdir()
    assert verified.read_text().split()[0] == landed[-1]["commit"]
    assert [(t["subject"], t["Gitcoord-Session"]) for t in landed] == [
        ("claim task/x by d", "d"),
        ("heartbeat a: implementing x (tests, 50%)", "a"),
        ("heartbeat b: implementing x (tests, 60%)", "b"),
        ("heartbeat c: implementing x (tests, 70%)", "c"),
    ]
    for t in landed:  # each signed (the hook requires it); and git sees a signature
        out = git(world.remote, "cat-file", "commit", t["commit"])
        assert "-----BEGIN SSH SIGNATURE-----" in out
    assert list(pending_dir(clone).glob("*.json")) == []
    status = ok(clone, "status")
    progress = {s["id"]: s["heartbeat"]["progress"] for s in status["sessions"]}
    assert progress == {"a": 50, "b": 60, "c": 70, "d": 10}
    r = run(clone, "validate", "--range", f"{landed[0]['commit']}~1..{landed[-1]['commit']}")
    assert r.code == 0, r.err + r.out


def test_a_due_beat_waits_unless_riding_is_off_or_forced_or_the_action_changes(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    clone = started(world, monkeypatch)
    ok(clone, "register", "--role", "r", "--goal", "g", session="e")
    with flusher_lock(clone):
        assert beat(clone, "e", 0)["action"] == "held"  # a first beat waits too
        assert beat(clone, "a", 20)["action"] == "held"
        forced = ok(clone, "heartbeat", "implementing", "x", "tests", "30", "--force", session="b")
        assert forced["action"] == "pushed" and forced["commit"]
        changed = ok(clone, "heartbeat", "blocked", "x", "tests", "30", session="c")
        assert changed["action"] == "pushed" and changed["commit"]
        monkeypatch.setenv("GITCOORD_RIDE", "0")
        assert beat(clone, "d", 20)["action"] == "pushed"


def test_flush_pushes_what_is_held_in_one_push_and_nothing_when_nothing_is(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    clone = started(world, monkeypatch)
    before = pushes(world.remote)
    assert ok(clone, "flush") == {"pushed": 0, "commits": []}
    assert pushes(world.remote) == before
    with flusher_lock(clone):
        beat(clone, "a", 20)
        beat(clone, "b", 20)
        r = run(clone, "flush")
    assert r.code == 0 and r.out.strip() == "pushed 2 held heartbeat(s) in one push", r.out
    assert pushes(world.remote) == before + 1
    assert list(pending_dir(clone).glob("*.json")) == []
    r = run(clone, "flush")
    assert r.out.strip() == "nothing held for a ride; nothing to push"
    assert pushes(world.remote) == before + 1


def test_riders_that_cannot_go_never_sink_the_push_they_ride(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kept files that are wrong, and a beat the remote's hook refuses, ride along:
    the session's own write still lands, exactly once, and what can never go is no
    longer kept. The refusal comes from a real pre-receive hook that refuses any push
    with a heartbeat of session c in it."""
    clone = started(world, monkeypatch)
    hook = world.remote / "hooks" / "pre-receive"
    hook.write_text(
        "#!/bin/sh\nwhile read old new ref; do\n"
        '  if git log --format=%s "$old..$new" | grep -q "^heartbeat c:"; then\n'
        '    echo "no beats of c here" >&2; exit 1\n  fi\ndone\n'
    )
    hook.chmod(0o755)
    with flusher_lock(clone):
        beat(clone, "a", 40)
        beat(clone, "c", 40)
        folder = pending_dir(clone)
        ghost = json.loads((folder / "a.json").read_text())
        ghost["heartbeat"]["session"] = "ghost"  # no such session registered
        (folder / "ghost.json").write_text(json.dumps(ghost))
        (folder / "b.json").write_text(json.dumps({**ghost}))  # a beat of another session
        (folder / "junk.json").write_text("{not json")
        (folder / "..json").write_text("{}")
        before, commits = pushes(world.remote), len(trailers(world.remote))
        doc = ok(clone, "claim", "task", "x", session="d")
    assert doc["changed"] is True
    landed = [t["subject"] for t in new_commits(world, commits)]
    assert landed == ["claim task/x by d"]  # the claim went again without the riders
    assert pushes(world.remote) == before + 1  # the refused push never landed
    files = [p for p in folder.glob("*.json") if p.name != "junk.json"]
    kept = {p.name: json.loads(p.read_text()) for p in files}
    # What can never go is no longer kept; the two refused with others go alone now.
    assert {name for name, data in kept.items() if "heartbeat" in data} == {"a.json", "c.json"}
    assert kept["a.json"]["heartbeat_suspect"] is True
    assert kept["c.json"]["heartbeat_suspect"] is True

    # Alone, a's beat lands; c's is refused alone, so it was the cause: dropped.
    r = run(clone, "flush")
    assert r.code == 0, r.err
    landed = [t["subject"] for t in new_commits(world, commits)]
    assert landed == ["claim task/x by d", "heartbeat a: implementing x (tests, 40%)"]
    assert pushes(world.remote) == before + 2
    assert not any("heartbeat" in json.loads(p.read_text()) for p in folder.glob("?.json"))
    doc = ok(clone, "claim", "task", "y", session="d")  # nothing suspect left to ride
    assert pushes(world.remote) == before + 3


def test_concurrent_writers_and_held_beats_each_land_exactly_once(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Six sessions claim at once through one clone while three others' beats are held:
    every claim lands once, every held beat lands once, in fewer pushes than writes."""
    clone = world.clone("m1")
    ok(clone, "init", "--slots", "20")
    git(world.remote, "config", "core.logAllRefUpdates", "always")
    writers = [f"w{i}" for i in range(6)]
    for sid in ("a", "b", "c", *writers):
        ok(clone, "register", "--role", "r", "--goal", "g", session=sid)
    for sid in ("a", "b", "c"):
        first_beat(clone, sid)
    monkeypatch.setenv("GITCOORD_CLOCK_OFFSET", "300")
    with flusher_lock(clone):
        for sid in ("a", "b", "c"):
            assert beat(clone, sid, 90)["action"] == "held"
        before, commits = pushes(world.remote), len(trailers(world.remote))
        procs = [spawn(clone, "claim", "task", f"t{i}", session=s) for i, s in enumerate(writers)]
        results = wait_all(procs, 180)
    assert all(r.code == 0 for r in results), [r.err for r in results]
    landed = [t["subject"] for t in new_commits(world, commits)]
    assert sorted(s for s in landed if s.startswith("claim")) == sorted(
        f"claim task/t{i} by {s}" for i, s in enumerate(writers)
    )
    beats = sorted(s for s in landed if s.startswith("heartbeat"))
    assert beats == [f"heartbeat {s}: implementing x (tests, 90%)" for s in ("a", "b", "c")]
    assert pushes(world.remote) - before <= len(writers)  # the beats took no push of their own
    assert list(pending_dir(clone).glob("*.json")) == []


def _flushers(clone: Path) -> list[int]:
    """Processes running `flush --wait` for this clone."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            argv = (Path("/proc") / pid / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"flush" in argv and b"--wait" in argv and str(clone).encode() in argv:
            found.append(int(pid))
    return found


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs /proc")
def test_a_held_beat_with_no_push_to_ride_is_pushed_by_the_flusher_which_then_leaves(
    world: World,
) -> None:
    """No other write comes: the background flusher the command started pushes the held
    beats by their time (two sessions' in one push), and leaves once none is held."""
    clone = world.clone("m1")
    ok(clone, "init")
    git(world.remote, "config", "core.logAllRefUpdates", "always")
    # heartbeat_min_seconds 3, as an approver-less team may set it: a plain commit.
    work = world.root / "edit"
    git(world.root, "clone", "-q", "-b", "gitcoord", str(world.remote), str(work))
    config = work / "coordination" / "config.yaml"
    text = config.read_text()
    assert "heartbeat_min_seconds: 120\n" in text
    config.write_text(text.replace("heartbeat_min_seconds: 120\n", "heartbeat_min_seconds: 3\n"))
    git(work, "commit", "-qam", "config: beats may go every 3 s")
    git(work, "push", "-q", "origin", "gitcoord")
    for sid in ("a", "b"):
        ok(clone, "register", "--role", "r", "--goal", "g", session=sid)
        first_beat(clone, sid)
    time.sleep(3.5)
    before = pushes(world.remote)
    procs = [
        spawn(clone, "heartbeat", "implementing", "x", "tests", "70", "--json", session=s)
        for s in ("a", "b")
    ]
    docs = [json.loads(r.out) for r in wait_all(procs, 60)]
    assert [d["action"] for d in docs] == ["held", "held"], docs
    deadline = time.monotonic() + 60
    while list(pending_dir(clone).glob("*.json")) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert list(pending_dir(clone).glob("*.json")) == []
    assert pushes(world.remote) == before + 1
    subjects = [t["subject"] for t in trailers(world.remote)[-2:]]
    assert sorted(subjects) == [
        "heartbeat a: implementing x (tests, 70%)",
        "heartbeat b: implementing x (tests, 70%)",
    ]
    while _flushers(clone) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _flushers(clone) == []


def test_beats_sent_again_and_again_do_not_put_their_push_off(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hook that beats every minute replaces the held beat with the newest, but the
    time by which it goes stays the first one's."""
    clone = started(world, monkeypatch)
    kept = pending_dir(clone) / "a.json"
    with flusher_lock(clone):
        beat(clone, "a", 20)
        first = json.loads(kept.read_text())
        monkeypatch.setenv("GITCOORD_CLOCK_OFFSET", "360")
        assert beat(clone, "a", 30)["action"] == "held"
        again = json.loads(kept.read_text())
    assert again["heartbeat"]["progress"] == 30
    assert again["ride_by"] == first["ride_by"]


def test_a_moved_read_mark_is_held_counts_at_once_and_rides_the_next_push(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reading the inbox moves the read mark without a push of its own: the next
    inbox of the session already reads by it (nothing read turns unread), and the
    clone's next push carries it, as the session's own commit."""
    clone = started(world, monkeypatch)
    ok(clone, "send", "a", "hello", "from b", session="b")
    before, commits = pushes(world.remote), len(trailers(world.remote))
    with flusher_lock(clone):
        box = ok(clone, "inbox", session="a")
        assert box["unread"] == 1 and box["marked_read"] is True and box["mark_held"] is True
        assert box["commit"] is None
        assert pushes(world.remote) == before
        again = ok(clone, "inbox", session="a")
        assert again["unread"] == 0 and again["messages"] == []
        ok(clone, "claim", "task", "x", session="d")
    landed = new_commits(world, commits)
    assert [(t["subject"][:18], t["Gitcoord-Session"]) for t in landed] == [
        ("claim task/x by d", "d"),
        ("read inbox of a th", "a"),
    ]
    assert pushes(world.remote) == before + 1
    assert list(pending_dir(clone).glob("*.json")) == []
    # Another clone (no kept mark there) reads a's inbox as read: the mark is on the branch.
    other = world.clone("m2")
    assert ok(other, "inbox", "--peek", session="a")["unread"] == 0


def test_the_flusher_leaves_at_once_when_nothing_is_held(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`flush --wait` with nothing held (here a time left for nothing, as a file edited by
    hand could say) returns at once and forgets the time; one already running for the
    clone makes a second one leave at once."""
    clone = started(world, monkeypatch)
    folder = pending_dir(clone)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "a.json").write_text(json.dumps({"ride_by": "2000-01-01T00:00:00Z"}))
    doc = ok(clone, "flush", "--wait")
    assert doc == {"waited": 0.0, "pushed": 0, "pushes": 0, "running": False}
    assert not (folder / "a.json").exists()
    with flusher_lock(clone):
        doc = ok(clone, "flush", "--wait")
    assert doc["running"] is True
    r = run(clone, "flush", "--wait")
    assert r.out.strip().startswith("flushed 0 held"), r.out


def test_a_push_carries_at_most_32_riders_and_the_rest_go_later(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Thirty-three sessions' beats held, a thirty-fourth session's claim: its push carries
    32 of them (MAX_RIDERS) and the claim; the last one stays held for the next push."""
    from gitcoord.store.transaction import MAX_RIDERS

    clone = world.clone("m1")
    ok(clone, "init", "--slots", "40")
    git(world.remote, "config", "core.logAllRefUpdates", "always")
    held = [f"h{k:02d}" for k in range(MAX_RIDERS + 1)]
    for sid in [*held, "w"]:
        ok(clone, "register", "--role", "r", "--goal", "g", session=sid)
        first_beat(clone, sid)
    monkeypatch.setenv("GITCOORD_CLOCK_OFFSET", "300")
    with flusher_lock(clone):
        for sid in held:
            assert beat(clone, sid, 50)["action"] == "held"
        before, commits = pushes(world.remote), len(trailers(world.remote))
        ok(clone, "claim", "task", "x", session="w")
        assert pushes(world.remote) == before + 1
        landed = new_commits(world, commits)
        assert landed[0]["subject"] == "claim task/x by w"
        assert len(landed) == 1 + MAX_RIDERS
        rode = {t["Gitcoord-Session"] for t in landed[1:]}
        assert len(rode) == MAX_RIDERS and rode < set(held)
        assert [p.stem for p in pending_dir(clone).glob("*.json")] == list(set(held) - rode)
        assert ok(clone, "flush")["pushed"] == 1
    assert list(pending_dir(clone).glob("*.json")) == []


def test_a_flush_fetches_before_it_decides(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """`flush` pushes on the tip it fetched, never on the clone's cached one: it runs when
    nothing else of the clone pushed for a while, when the branch has most likely moved,
    and a push on a stale tip would be refused (a push counted against the budget). So
    the clone's pace still trusts its cached tip afterwards: no push of it was refused."""
    from gitcoord.store.turns import Pace

    clone = started(world, monkeypatch)
    other = world.clone("m2")
    ok(other, "register", "--role", "r", "--goal", "g", session="e")
    pace = Path(next((clone / ".git" / "gitcoord" / "pace").iterdir()))
    with flusher_lock(clone):
        assert beat(clone, "a", 20)["action"] == "held"
        ok(other, "claim", "task", "y", session="e")  # the branch moves past the clone's tip
        # A pace that would have any other write decide on the cached tip at once.
        Pace(speculate=True, round=0.2, known_at=time.time()).save(str(pace))
        assert ok(clone, "flush")["pushed"] == 1
    assert Pace.load(str(pace)).speculate, "the flush pushed on the cached tip and was refused"
    assert trailers(world.remote)[-1]["Gitcoord-Session"] == "a"
