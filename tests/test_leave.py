"""`gitcoord leave`: release everything, free the number, keep the history.

The decision (pure, `ops.sessions.leave`), the command on real git, and the rules
the verifier holds every pushed commit to: a session that left writes nothing until
it registers again, holds no claim, and is sent no message — tried with commits
crafted with plain git plumbing, next to honest work that still passes.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from conftest import World, at, git, run
from reliability import REF, commit_files, show, tip
from test_ops import SEC, T0, apply, make_state, session

from gitcoord.domain import kinds, yamlio
from gitcoord.domain.models import FORMAT, Claim
from gitcoord.errors import RefusedError
from gitcoord.ops import claims, kernel, messages, sessions


def held(state, who: str, name: str):
    change = claims.claim(state, T0, session=who, type_="task", name=name)
    return apply(state, change)


# --- the operation ------------------------------------------------------------------


def test_leave_releases_every_claim_frees_the_number_and_keeps_the_file() -> None:
    state = make_state(session("alice", 1), session("bob", 2))
    state = held(held(state, "alice", "a"), "alice", "b")
    state = held(state, "bob", "c")
    change = sessions.leave(state, T0 + SEC, session="alice")
    assert change.op == "leave" and change.result["action"] == "left"
    assert change.result["released"] == ["task/a", "task/b"]
    assert change.repeated == {"Gitcoord-Released": ["task/a", "task/b"]}
    after = apply(state, change)
    assert after.sessions["alice"].left_at == T0 + SEC  # the file stays
    assert "alice" not in after.present and 1 in after.free_numbers()
    assert after.claims["task/a"].released_at == T0 + SEC
    assert after.claims["task/c"].released_at is None  # bob's is untouched
    # leaving twice changes nothing
    again = sessions.leave(after, T0 + 2 * SEC, session="alice")
    assert again.noop and again.result["action"] == "already-left"


def test_a_session_that_left_is_refused_until_it_registers_again() -> None:
    state = make_state(session("alice", 1), session("bob", 2))
    gone = apply(state, sessions.leave(state, T0 + SEC, session="alice"))
    with pytest.raises(RefusedError, match=r"left at .* register"):
        kernel.require_registered(gone, "alice")
    with pytest.raises(RefusedError, match="unknown recipient"):
        messages.resolve_recipient(gone, "alice")
    with pytest.raises(RefusedError, match="no session has number 1"):
        messages.resolve_recipient(gone, "1")
    # carol takes the freed number; alice comes back with another
    carol = apply(gone, sessions.register(gone, T0 + 2 * SEC, session="carol", role="r", goal="g"))
    assert carol.sessions["carol"].number == 1
    back = sessions.register(carol, T0 + 3 * SEC, session="alice", role="r2", goal="g2")
    after = apply(carol, back)
    alice = after.sessions["alice"]
    assert (alice.number, alice.left_at, alice.registered_at) == (3, None, T0 + 3 * SEC)
    with pytest.raises(RefusedError, match="not registered"):
        sessions.leave(after, T0, session="mallory")


# --- on real git --------------------------------------------------------------------


def json_of(cwd: Path, *args: str, session: str | None = None) -> dict:
    r = run(cwd, "--json", *args, session=session)
    assert r.code == 0, r.out + r.err
    return json.loads(r.out)


def test_leave_on_the_branch_and_who_may_take_over(world: World) -> None:
    a = world.clone("a")
    assert run(a, "init", "--slots", "2").code == 0
    assert run(a, "register", "--role", "r", "--goal", "g", session="alice").code == 0
    assert run(a, "register", "--role", "r", "--goal", "g", session="bob").code == 0
    assert run(a, "claim", "task", "x", "--hours", "2", session="alice").code == 0
    assert run(a, "claim", "path", "src/**", session="alice").code == 0
    full = run(a, "register", "--role", "r", "--goal", "g", session="carol")
    assert full.code == 3  # both numbers taken

    left = run(a, "leave", session="alice")
    assert left.code == 0, left.err
    assert "alice left; number 1 is free again; released path/src/**, task/x" in left.out
    assert run(a, "leave", session="alice").out.strip() == "alice had already left"

    status = json_of(a, "status")
    assert [s["id"] for s in status["sessions"]] == ["bob"] and status["free_numbers"] == [1]
    assert {c["resource"]: c["status"] for c in status["claims"]} == {
        "path/src/**": "released",
        "task/x": "released",
    }
    # the file stays with its history; the number goes to the next session
    assert b"left_at:" in show(world.remote, REF, at("coordination/sessions/alice.yaml"))
    assert (
        json_of(a, "register", "--role", "r", "--goal", "g", session="carol")["session"]["number"]
        == 1
    )
    # bob takes alice's claim at once (released, not expired): the next generation
    taken = json_of(a, "claim", "task", "x", session="bob")
    assert taken["claim"]["generation"] == 2 and taken["op"] == "claim"
    assert json_of(a, "metrics")["work_collisions"] == 0
    # alice is refused until she registers again, and is sent nothing meanwhile
    r = run(a, "claim", "task", "y", session="alice")
    assert r.code == 4 and "left at" in r.err and "register" in r.err
    r = run(a, "send", "alice", "hi", "there", session="bob")
    assert r.code == 4 and "unknown recipient" in r.err
    r = run(a, "register", "--role", "r", "--goal", "g", session="alice")
    assert r.code == 3  # both numbers are taken now
    log = json_of(a, "log", "--op", "leave")["entries"]
    assert [(e["session"], e["resource"]) for e in log] == [("alice", "session/alice")]
    # every commit of the branch passes the verifier, the leave included
    assert run(a, "validate", "--range", f"..{tip(world.remote)}").code == 0


@pytest.fixture
def departed(world: World) -> tuple[Path, str]:
    """alice registered, claimed, and left; the server hook judges every push."""
    a = world.clone("a")
    assert run(a, "init").code == 0
    for who in ("alice", "bob"):
        assert run(a, "register", "--role", "r", "--goal", "g", session=who).code == 0
    assert run(a, "claim", "task", "x", session="alice").code == 0
    assert run(a, "hooks", "install", "--server", str(world.remote)).code == 0
    assert run(a, "leave", session="alice").code == 0, "an honest leave passes the hook"
    base = tip(world.remote)
    assert base is not None
    git(a, "fetch", "-q", "origin")
    return a, base


def push(clone: Path, commit: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "push", "origin", f"{commit}:{REF}"], cwd=clone, capture_output=True, text=True
    )


def trailers(op: str, who: str) -> str:
    return f"{op} by hand\n\nGitcoord-Op: {op}\nGitcoord-Session: {who}"


def test_the_verifier_refuses_writes_by_a_session_that_left(
    world: World, departed: tuple[Path, str]
) -> None:
    a, base = departed
    beat = (
        b"session: alice\naction: sneaking\ntarget: x\nphase: p\nprogress: 1\n"
        b"at: '2026-01-01T00:00:00Z'\n"
    )
    forged = commit_files(
        a,
        {kinds.heartbeat_path("alice", fmt=FORMAT): beat},
        parent=base,
        message=trailers("heartbeat", "alice"),
    )
    r = run(a, "validate", "--range", f"{base}..{forged}")
    assert r.code == 5 and "[left]" in r.err and "register again" in r.err, r.err
    proc = push(a, forged)
    assert proc.returncode != 0 and "[left]" in proc.stderr, proc.stderr
    assert tip(world.remote) == base


def test_the_verifier_refuses_a_leave_that_keeps_a_claim_or_is_not_ones_own(
    world: World, departed: tuple[Path, str]
) -> None:
    a, _ = departed
    assert run(a, "claim", "task", "z", session="bob").code == 0
    git(a, "fetch", "-q", "origin")
    now = tip(world.remote)
    assert now is not None
    bob = show(a, now, kinds.session_path("bob", fmt=FORMAT))
    gone = bob + b"left_at: '2030-01-01T00:00:00Z'\n"
    # bob "leaves" but keeps task/z: a session that left holds no claim
    keeps = commit_files(
        a,
        {kinds.session_path("bob", fmt=FORMAT): gone},
        parent=now,
        message=trailers("leave", "bob"),
    )
    r = run(a, "validate", "--range", f"{now}..{keeps}")
    assert r.code == 5 and "[left]" in r.err and "still holds task/z" in r.err, r.err
    assert push(a, keeps).returncode != 0
    # alice (gone) or anyone else cannot make bob leave
    forced = commit_files(
        a,
        {kinds.session_path("bob", fmt=FORMAT): gone},
        parent=now,
        message=trailers("leave", "carol"),
    )
    r = run(a, "validate", "--range", f"{now}..{forced}")
    # (marking another session left is a reclaim, refused while it was seen recently)
    assert r.code == 5 and "[reclaim]" in r.err, r.err
    assert tip(world.remote) == now
    # and the honest leave, which releases task/z in the same commit, passes
    assert run(a, "leave", session="bob").code == 0
    released = show(world.remote, REF, kinds.claim_path("task", "z", fmt=FORMAT))
    assert Claim.model_validate(yamlio.load(released)).released_at is not None


def test_the_verifier_refuses_a_message_to_a_session_that_left(
    world: World, departed: tuple[Path, str]
) -> None:
    a, base = departed
    mid = "20300101T000000000Z-abcdef"
    msg = (
        f"id: {mid}\nsender: bob\nto: alice\nsubject: hi\nbody: there\n"
        "sent_at: '2030-01-01T00:00:00Z'\n"
    ).encode()
    forged = commit_files(
        a,
        {kinds.message_path("alice", mid, fmt=FORMAT): msg},
        parent=base,
        message=trailers("send", "bob"),
    )
    r = run(a, "validate", "--range", f"{base}..{forged}")
    assert r.code == 5 and "has left" in r.err, r.err


def test_a_session_that_left_comes_back_by_registering(
    world: World, departed: tuple[Path, str]
) -> None:
    a, _ = departed
    r = run(a, "register", "--role", "back", "--goal", "again", session="alice")
    assert r.code == 0, r.err  # the hook let it through: registering is what it may do
    alice = json_of(a, "status")["sessions"]
    assert {s["id"]: s["role"] for s in alice} == {"bob": "r", "alice": "back"}
    assert run(a, "claim", "task", "x", session="alice").code == 0
    assert json_of(a, "metrics")["work_collisions"] == 0
    # her history before she left is still hers, newest first
    entries = json_of(a, "log", "--session", "alice")["entries"]
    assert [e["op"] for e in entries] == ["claim", "register", "leave", "claim", "register"]
