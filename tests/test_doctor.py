"""`gitcoord doctor [--fix]` on real repositories: explain, then repair in one commit.

One bad file on the coordination branch makes every mutation refuse (exit 5).
`doctor` explains each problem and what `--fix` would do; `--fix` moves each bad
file to `coordination/quarantine/` (bytes kept) in ONE commit through the normal
compare-and-swap transaction, after which `validate` passes and work goes on. The
quarantine commit is itself held to the transition rules — by `validate --range`
and by the server's pre-receive hook — which let it move only files that really
break the rules: it cannot be abused to delete a valid claim. Where it moves a
claim file it leaves a released tombstone carrying the highest generation of the
file's history, so fencing tokens never go back.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from conftest import World, at, git, run, spawn
from reliability import REF, branch_files, commit_files, hand_push, show, tip, trailers

SESSION_B = at("coordination/sessions/b.yaml")


def q(path: str) -> str:
    """Where `doctor --fix` sets the file at `path` aside."""
    return "coordination/quarantine/" + path.removeprefix("coordination/").replace("/", "__")


def founded(world: World) -> Path:
    a = world.clone("a")
    assert run(a, "init").code == 0
    for s in ("a", "b"):
        assert run(a, "register", "--role", "r", "--goal", "g", session=s).code == 0
    return a


def jdoc(r: Any) -> dict[str, Any]:
    doc = r.json()
    assert isinstance(doc, dict)
    return doc


def test_doctor_on_a_healthy_branch_exits_0(world: World) -> None:
    a = founded(world)
    r = run(a, "doctor")
    assert r.code == 0 and r.out.startswith("healthy"), (r.out, r.err)
    doc = jdoc(run(a, "doctor", "--json"))
    assert doc["healthy"] is True and doc["problems"] == [] and doc["quarantine"] == []
    before = tip(world.remote)
    r = run(a, "doctor", "--fix")
    assert r.code == 0 and tip(world.remote) == before


def test_duplicate_number_quarantines_the_later_registration_and_what_hangs_on_it(
    world: World,
) -> None:
    a = founded(world)
    assert run(a, "claim", "task", "kept", session="a").code == 0
    assert run(a, "claim", "task", "orphan", session="b").code == 0
    assert run(a, "send", "a", "hello", "from b", session="b").code == 0
    # By hand: b (registered second) takes a's number 1.
    text = show(world.remote, REF, SESSION_B).replace(b"number: 2", b"number: 1")
    hand_push(a, {SESSION_B: text})

    r = run(a, "claim", "task", "new", session="a")
    assert r.code == 5 and "doctor --fix" in r.err, r.err
    r = run(a, "doctor")
    assert r.code == 5, (r.out, r.err)
    assert "number 1 is also held by session 'a'" in r.err, r.err
    assert f"{SESSION_B} -> {q(SESSION_B)}" in r.err, r.err

    before = len(trailers(world.remote))
    r = run(a, "doctor", "--fix", "--json")
    assert r.code == 0, (r.out, r.err)
    doc = jdoc(r)
    moved = {q["path"] for q in doc["quarantine"]}
    assert SESSION_B in moved
    assert at("coordination/claims/task/orphan.yaml") in moved  # held by b: orphaned
    assert any(p.startswith("coordination/messages/a/") for p in moved)  # sent by b
    assert at("coordination/sessions/a.yaml") not in moved
    assert at("coordination/claims/task/kept.yaml") not in moved
    history = trailers(world.remote)
    assert len(history) == before + 1, "one commit"
    assert history[-1]["Gitcoord-Op"] == "quarantine"
    assert doc["commit"] == history[-1]["commit"]
    files = branch_files(world.remote)
    assert not moved & set(files)
    # Only b ever held task/orphan and nobody else asked to: no tombstone names a
    # session that did not hold it, and doctor says the generation was not carried.
    (orphan,) = [q for q in doc["quarantine"] if q["path"].endswith("/orphan.yaml")]
    assert orphan["tombstone"] is None and "--session" in orphan["not_carried"], orphan
    assert show(world.remote, REF, q(SESSION_B)) == text

    assert run(a, "validate").code == 0
    assert run(a, "claim", "task", "new", session="a").code == 0
    # The quarantine commit itself passes the rules the server hook applies.
    r = run(a, "validate", "--range", f"{history[-2]['commit']}..{history[-1]['commit']}")
    assert r.code == 0, r.err
    # b can register again (a new number) and carry on.
    r = run(a, "register", "--role", "r", "--goal", "g", "--json", session="b")
    assert r.code == 0 and jdoc(r)["session"]["number"] == 2


def test_a_second_quarantine_of_the_same_path_keeps_both_copies(world: World) -> None:
    a = founded(world)
    path = at("coordination/sessions/zz.yaml")
    for n, junk in enumerate((b"first: [\n", b"second: [\n"), start=1):
        hand_push(a, {path: junk})
        r = run(a, "doctor", "--fix", "--json")
        assert r.code == 0, r.err
        copy = jdoc(r)["quarantine"][0]["to"]
        assert copy == (
            q(at("coordination/sessions/zz.yaml"))
            if n == 1
            else q(at("coordination/sessions/zz.yaml")).replace(".yaml", ".2.yaml")
        )
        assert show(world.remote, REF, copy) == junk
    assert run(a, "validate").code == 0


def test_a_broken_config_is_explained_not_quarantined(world: World) -> None:
    a = founded(world)
    hand_push(a, {"coordination/config.yaml": b"slots: [oops\n"})
    before = tip(world.remote)
    r = run(a, "doctor")
    assert r.code == 5
    assert "not repairable by quarantine" in r.err and "git show" in r.err, r.err
    r = run(a, "doctor", "--fix")
    assert r.code == 5 and "coordination/config.yaml" in r.err, r.err
    assert "Traceback" not in r.err
    assert tip(world.remote) == before, "nothing written"


def test_unreadable_entries_are_problems_not_crashes(world: World) -> None:
    """A submodule entry (a commit id where a file belongs) pushed by hand."""
    a = founded(world)
    sub = tip(world.remote)
    assert sub is not None
    hand_push(a, {at("coordination/claims/task/sub.yaml"): sub.encode()}, mode="160000")
    r = run(a, "validate")
    assert r.code == 5 and at("coordination/claims/task/sub.yaml") in r.err, (r.code, r.err)
    r = run(a, "doctor", "--fix")
    assert r.code == 0, r.err
    assert "generation not carried: no version in its history is a valid claim" in r.out, r.out
    assert run(a, "validate").code == 0


def test_a_forged_quarantine_that_deletes_a_valid_claim_is_refused(world: World) -> None:
    """The quarantine rule is objective: moving a valid file, or writing anything else
    under quarantine/, fails `validate --range` and the server's pre-receive hook."""
    a = founded(world)
    assert run(a, "claim", "task", "precious", session="a").code == 0
    claim = at("coordination/claims/task/precious.yaml")
    git(a, "fetch", "-q", "origin")
    base = tip(a, f"refs/remotes/origin/{'gitcoord'}")
    assert base is not None
    forged = commit_files(
        a,
        {claim: None, q(claim): show(a, base, claim)},
        parent=base,
        message="quarantine\n\nGitcoord-Op: quarantine\nGitcoord-Session: b",
    )
    r = run(a, "validate", "--range", f"{base}..{forged}")
    assert r.code == 5 and "[quarantine]" in r.err and claim in r.err, r.err

    planted = commit_files(
        a,
        {"coordination/quarantine/fake.yaml": b"x: 1\n"},
        parent=base,
        message="plant\n\nGitcoord-Op: send\nGitcoord-Session: b",
    )
    r = run(a, "validate", "--range", f"{base}..{planted}")
    assert r.code == 5 and "[quarantine]" in r.err, r.err

    assert run(world.root, "hooks", "install", "--server", str(world.remote)).code == 0
    for bad in (forged, planted):
        proc = subprocess.run(
            ["git", "push", "origin", f"{bad}:{REF}"], cwd=a, capture_output=True, text=True
        )
        assert proc.returncode != 0 and "[quarantine]" in proc.stderr, proc.stderr
    assert tip(world.remote) == base


def test_doctor_fix_passes_the_server_hook(world: World) -> None:
    a = founded(world)
    hand_push(a, {at("coordination/heartbeats/b.yaml"): b"session: b\nprogress: lots\n"})
    assert run(world.root, "hooks", "install", "--server", str(world.remote)).code == 0
    r = run(a, "doctor", "--fix")
    assert r.code == 0, r.err
    assert trailers(world.remote)[-1]["Gitcoord-Op"] == "quarantine"
    assert run(a, "heartbeat", "working", "x", "y", "5", session="b").code == 0
    assert run(a, "validate").code == 0


def test_two_doctors_racing_write_one_quarantine_commit(world: World) -> None:
    a = founded(world)
    b = world.clone("b")
    hand_push(a, {at("coordination/tasks/t9.yaml"): b"id: t9\ntitle: [\n"})
    before = len(trailers(world.remote))
    procs = [spawn(c, "--timeout", "120", "doctor", "--fix") for c in (a, b, a, b)]
    results = [(p.communicate(timeout=180), p.returncode) for p in procs]
    assert [code for _, code in results] == [0, 0, 0, 0], results
    history = trailers(world.remote)
    assert len(history) == before + 1, [h["subject"] for h in history[before:]]
    assert run(b, "validate").code == 0


FENCED = at("coordination/claims/task/fenced.yaml")


def claimed(clone: Path, session: str) -> int:
    """Claim task/fenced as `session`; the generation granted."""
    r = run(clone, "claim", "task", "fenced", "--json", session=session)
    assert r.code == 0, r.err
    generation = jdoc(r)["claim"]["generation"]
    assert isinstance(generation, int)
    return generation


def test_a_quarantined_claim_leaves_a_tombstone_that_keeps_its_generation(world: World) -> None:
    """The fencing token of a resource only grows, even across `doctor --fix`: the claim
    file set aside leaves a released tombstone with the highest generation the file's
    history holds, so the next grant is 4, not 1 — in a commit the server hook accepts."""
    a = founded(world)
    for s in ("a", "b", "a"):  # a new grant after each release: generations 1, 2, 3
        claimed(a, s)
        assert run(a, "release", "task", "fenced", session=s).code == 0
    released = show(world.remote, REF, FENCED)
    assert b"generation: 3\n" in released and b"holder: a\n" in released
    # By hand: a broken claim file. It still says `generation: 9`, but it is not a valid
    # claim, so that number counts for nothing.
    broken = released.replace(b"generation: 3", b"generation: 9")
    broken = broken.replace(b"holder: a", b"holder: [a")
    hand_push(a, {FENCED: broken})
    assert run(a, "claim", "task", "fenced", session="b").code == 5
    assert run(world.root, "hooks", "install", "--server", str(world.remote)).code == 0

    r = run(a, "doctor")
    assert r.code == 5 and "a released tombstone keeps generation 3" in r.err, r.err
    before = tip(world.remote)
    r = run(a, "doctor", "--fix", "--json")
    assert r.code == 0, (r.out, r.err)
    (moved,) = jdoc(r)["quarantine"]
    assert moved["path"] == FENCED, moved
    assert moved["to"] == q(FENCED)
    tomb = moved["tombstone"]
    assert (tomb["generation"], tomb["holder"]) == (3, "a") and tomb["released_at"], tomb
    assert show(world.remote, REF, moved["to"]) == broken, "the bytes are kept"
    assert FENCED in branch_files(world.remote)
    history = trailers(world.remote)
    assert history[-1]["Gitcoord-Op"] == "quarantine" and history[-2]["commit"] == before
    r = run(a, "validate", "--range", f"{before}..{history[-1]['commit']}")
    assert r.code == 0, r.err
    assert run(a, "validate").code == 0

    assert claimed(a, "b") == 4, "the fencing token went back"
    assert run(a, "validate", "--range", f"{before}..{tip(world.remote)}").code == 0


def test_a_valid_claim_set_aside_does_not_stand_for_its_history(world: World) -> None:
    """The file set aside may be a valid claim that breaks a rule — here of a session
    that is not registered, with generation 1: it counts, but the history before it
    still does too, and the tombstone is its last registered holder's."""
    a = founded(world)
    for s in ("a", "b", "a"):
        claimed(a, s)
        assert run(a, "release", "task", "fenced", session=s).code == 0
    ghost = (
        b"type: task\nname: fenced\nholder: ghost\ngeneration: 1\n"
        b"acquired_at: '2026-01-01T00:00:00Z'\nexpires_at: '2026-01-01T01:00:00Z'\n"
    )
    hand_push(a, {FENCED: ghost})
    r = run(a, "doctor", "--fix", "--json")
    assert r.code == 0, r.err
    (moved,) = jdoc(r)["quarantine"]
    tomb = moved["tombstone"]
    assert (tomb["generation"], tomb["holder"]) == (3, "a"), tomb
    assert "last held by ghost" in tomb["note"], tomb
    assert claimed(a, "b") == 4


def test_a_tombstone_must_carry_the_highest_generation(world: World) -> None:
    """A quarantine commit made by hand is held to the same rule: its tombstone's
    generation is checked against the history, by `validate --range` and the hook."""
    a = founded(world)
    for s in ("a", "b"):
        claimed(a, s)
        assert run(a, "release", "task", "fenced", session=s).code == 0
    released = show(world.remote, REF, FENCED)  # b's, generation 2
    assert b"generation: 2\n" in released
    hand_push(a, {FENCED: b"type: task\nname: [\n"})
    git(a, "fetch", "-q", "origin")
    base = tip(a, "refs/remotes/origin/gitcoord")
    assert base is not None
    copy = q(FENCED)

    def forge(tombstone: bytes) -> str:
        return commit_files(
            a,
            {FENCED: tombstone, copy: show(a, base, FENCED)},
            parent=base,
            message="quarantine\n\nGitcoord-Op: quarantine",
        )

    reset = forge(released.replace(b"generation: 2", b"generation: 1"))
    r = run(a, "validate", "--range", f"{base}..{reset}")
    assert r.code == 5 and "[generation]" in r.err and "2, not 1" in r.err, r.err
    held = forge(released.replace(b"released_at:", b"renewed_at:"))  # binds again: no
    r = run(a, "validate", "--range", f"{base}..{held}")
    assert r.code == 5 and "a tombstone is a released claim" in r.err, r.err
    right = forge(released)
    assert run(a, "validate", "--range", f"{base}..{right}").code == 0

    assert run(world.root, "hooks", "install", "--server", str(world.remote)).code == 0
    proc = subprocess.run(
        ["git", "push", "origin", f"{reset}:{REF}"], cwd=a, capture_output=True, text=True
    )
    assert proc.returncode != 0 and "[generation]" in proc.stderr, proc.stderr
    assert tip(world.remote) == base


def test_the_session_running_doctor_holds_a_tombstone_nobody_else_can(world: World) -> None:
    """When the last holder is itself set aside, `doctor --fix --session ID` leaves the
    tombstone in ID's name (its note says whose it was), so the generation carries on."""
    a = founded(world)
    claimed(a, "b")
    text = show(world.remote, REF, SESSION_B).replace(b"number: 2", b"number: 1")
    hand_push(a, {SESSION_B: text})  # b takes a's number: b and its claim are set aside
    r = run(a, "doctor", "--fix", "--json", session="a")
    assert r.code == 0, r.err
    (moved,) = [q for q in jdoc(r)["quarantine"] if q["path"] == FENCED]
    tomb = moved["tombstone"]
    assert (tomb["holder"], tomb["generation"]) == ("a", 1), tomb
    assert "last held by b" in tomb["note"] and tomb["released_at"], tomb
    assert run(a, "register", "--role", "r", "--goal", "g", session="b").code == 0
    assert claimed(a, "b") == 2
