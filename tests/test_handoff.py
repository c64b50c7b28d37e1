"""Handing a claim to another session, and telling whoever a claim changed hands for
(issue #15, item 2), on real git with the server hook.

- `handoff TYPE NAME TO` moves a live claim to another present session in one commit:
  generation + 1, `handed_by`, a `handoff` op with `Gitcoord-Handoff-To`; the receiver
  reads it in its inbox, once; the giver no longer holds it;
- what a handoff may not do is refused before anything is written (not yours, not live,
  to yourself, to a session that left or does not exist);
- crafted with plain git plumbing and pushed to a bare repository whose hook judges
  it, a "handoff" cannot steal a claim (the receiver writing it), hand someone else's
  claim, name another receiver than the one written, hand an expired claim, or hand to
  a session that is not there;
- a takeover after expiry tells the previous holder, in its inbox, once.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from conftest import World, git, run
from reliability import commit_files, show, tip

from gitcoord.domain import kinds, yamlio
from gitcoord.domain.models import Claim

CLAIM = kinds.claim_path("task", "x")


def ok(cwd: Path, *args: str, session: str | None = None) -> dict[str, Any]:
    r = run(cwd, "--json", *args, session=session)
    assert r.code == 0, (args, r.code, r.out, r.err)
    doc = json.loads(r.out)
    assert isinstance(doc, dict)
    return doc


def fails(cwd: Path, code: int, *args: str, session: str | None = None) -> str:
    r = run(cwd, *args, session=session)
    assert r.code == code, (args, r.code, r.out, r.err)
    return r.err


@pytest.fixture
def trio(world: World) -> Path:
    """alice, bob and carol registered; alice holds task/x; the server hook installed."""
    a = world.clone("a")
    ok(a, "init", "--clock-skew", "0")
    for who in ("alice", "bob", "carol"):
        ok(a, "register", "--role", "r", "--goal", "g", session=who)
    ok(a, "claim", "task", "x", "--note", "half done", session="alice")
    assert run(a, "hooks", "install", "--server", str(world.remote)).code == 0
    return a


def test_a_handoff_moves_a_live_claim_and_tells_the_receiver(trio: Path, world: World) -> None:
    a = trio
    before = tip(world.remote)
    done = ok(a, "handoff", "task", "x", "2", "--ttl", "3h", session="alice")  # bob, by number
    assert (done["from"], done["to"], done["op"]) == ("alice", "bob", "handoff")
    c = done["claim"]
    assert (c["holder"], c["generation"], c["handed_by"], c["note"]) == (
        "bob",
        2,
        "alice",
        "half done",
    )
    # one commit, through the server's hook, that says what happened
    assert git(world.remote, "rev-parse", "gitcoord^").strip() == before
    message = git(world.remote, "log", "-1", "--format=%B", "gitcoord")
    assert "hand off task/x from alice to bob" in message
    assert "Gitcoord-Op: handoff" in message and "Gitcoord-Handoff-To: bob" in message
    # the receiver's inbox says so, once
    box = ok(a, "inbox", session="bob")
    assert box["unread"] == 1 and box["marked_read"] is True
    [notice] = box["notices"]
    assert (notice["kind"], notice["from"], notice["resource"]) == ("handoff", "alice", "task/x")
    text = run(a, "inbox", "--all", "--peek", session="bob").out
    assert "alice handed you task/x" in text, text
    assert ok(a, "inbox", session="bob")["notices"] == []
    assert ok(a, "inbox", session="alice")["notices"] == []  # the giver did it itself
    # it is bob's now: alice cannot release it, bob renews (the notice stays read)
    assert "held by bob" in fails(a, 4, "release", "task", "x", session="alice")
    ok(a, "renew", "task", "x", session="bob")
    assert ok(a, "inbox", session="bob")["unread"] == 0
    assert ok(a, "log", "--op", "handoff")["entries"][0]["session"] == "alice"
    m = ok(a, "metrics")
    assert (m["handoffs"], m["work_collisions"]) == (1, 0)
    ok(a, "release", "task", "x", session="bob")
    assert run(a, "validate", "--range", f"{before}..{tip(world.remote)}").code == 0


def test_what_a_handoff_may_not_do_is_refused(trio: Path, world: World) -> None:
    a = trio
    before = tip(world.remote)
    assert "held by alice" in fails(a, 4, "handoff", "task", "x", "carol", session="bob")
    assert "yours already" in fails(a, 4, "handoff", "task", "x", "alice", session="alice")
    fails(a, 4, "handoff", "task", "x", "nobody", session="alice")
    fails(a, 4, "handoff", "task", "x", "9", session="alice")
    ok(a, "leave", session="carol")
    assert "has left" in fails(a, 4, "handoff", "task", "x", "carol", session="alice")
    fails(a, 4, "handoff", "task", "nothing", "bob", session="alice")
    ok(a, "claim", "task", "y", "--ttl", "1s", session="alice")
    time.sleep(1.5)
    assert "expired" in fails(a, 4, "handoff", "task", "y", "bob", session="alice")
    assert tip(world.remote) != before  # only leave and the claim of y landed
    claims = {c["resource"]: c["holder"] for c in ok(a, "status")["claims"]}
    assert claims == {"task/x": "alice", "task/y": "alice"}


def _doc(a: Path, rev: str) -> Claim:
    return Claim.model_validate(yamlio.load(show(a, rev, CLAIM)))


def _crafted(a: Path, parent: str, doc: Claim, session: str, to: str | None) -> str:
    trailers = f"Gitcoord-Op: handoff\nGitcoord-Session: {session}\nGitcoord-Resource: task/x"
    if to is not None:
        trailers += f"\nGitcoord-Handoff-To: {to}"
    return commit_files(
        a, {CLAIM: yamlio.dump(doc)}, parent=parent, message=f"hand off task/x\n\n{trailers}"
    )


def _refused(a: Path, world: World, old: str, new: str, rule: str) -> None:
    r = run(a, "validate", "--range", f"{old}..{new}")
    assert r.code == 5 and f"[{rule}]" in r.err, r.err
    push = git(a, "push", "origin", f"{new}:refs/heads/gitcoord", check=False)
    assert tip(world.remote) == old, push


def test_a_crafted_handoff_cannot_steal_or_give_away(trio: Path, world: World) -> None:
    a = trio
    git(a, "fetch", "-q", "origin")
    now = tip(world.remote)
    assert now is not None
    held = _doc(a, now)
    at = datetime.now(timezone.utc).replace(microsecond=0)

    def moved(to: str, by: str) -> Claim:
        return held.model_copy(
            update={
                "holder": to,
                "generation": held.generation + 1,
                "acquired_at": at,
                "expires_at": at + timedelta(hours=1),
                "handed_by": by,
            }
        )

    # bob "receives" alice's live claim by writing the handoff himself: a steal
    _refused(a, world, now, _crafted(a, now, moved("bob", "alice"), "bob", "bob"), "takeover")
    # carol hands alice's claim to bob
    _refused(a, world, now, _crafted(a, now, moved("bob", "carol"), "carol", "bob"), "own-files")
    # alice hands it off, but the commit names another receiver than the file, or none
    _refused(a, world, now, _crafted(a, now, moved("bob", "alice"), "alice", "carol"), "handoff")
    _refused(a, world, now, _crafted(a, now, moved("bob", "alice"), "alice", None), "handoff")
    # ...to a session that is not registered, or with the fencing token not moved on
    _refused(a, world, now, _crafted(a, now, moved("dave", "alice"), "alice", "dave"), "handoff")
    same = moved("bob", "alice").model_copy(update={"generation": held.generation})
    _refused(a, world, now, _crafted(a, now, same, "alice", "bob"), "generation")
    # the honest shape passes: the holder of a live claim, to a present session
    honest = _crafted(a, now, moved("bob", "alice"), "alice", "bob")
    assert run(a, "validate", "--range", f"{now}..{honest}").code == 0
    assert git(a, "push", "-q", "origin", f"{honest}:refs/heads/gitcoord", check=False) == ""
    assert tip(world.remote) == honest


def test_a_crafted_handoff_of_an_expired_claim_is_refused(world: World) -> None:
    a = world.clone("a")
    ok(a, "init", "--clock-skew", "0")
    for who in ("alice", "bob"):
        ok(a, "register", "--role", "r", "--goal", "g", session=who)
    ok(a, "claim", "task", "x", "--ttl", "1s", session="alice")
    assert run(a, "hooks", "install", "--server", str(world.remote)).code == 0
    git(a, "fetch", "-q", "origin")
    now = tip(world.remote)
    assert now is not None
    time.sleep(1.5)
    held = _doc(a, now)
    at = datetime.now(timezone.utc).replace(microsecond=0)
    late = held.model_copy(
        update={
            "holder": "bob",
            "generation": held.generation + 1,
            "acquired_at": at,
            "expires_at": at + timedelta(hours=1),
            "handed_by": "alice",
        }
    )
    _refused(a, world, now, _crafted(a, now, late, "alice", "bob"), "handoff")
    # bob may take it over now, but not dressed as a handoff, nor naming another's claim
    took = late.model_copy(update={"handed_by": None, "taken_from": "alice"})

    def takeover(doc: Claim) -> str:
        return commit_files(
            a,
            {CLAIM: yamlio.dump(doc)},
            parent=now,
            message="take over\n\nGitcoord-Op: takeover\nGitcoord-Session: bob",
        )

    _refused(a, world, now, takeover(late), "claim")  # handed_by alice: a lie
    _refused(a, world, now, takeover(took.model_copy(update={"taken_from": "bob"})), "claim")
    assert run(a, "validate", "--range", f"{now}..{takeover(took)}").code == 0


def test_a_claim_after_a_release_is_taken_from_no_one(world: World) -> None:
    """alice released task/x: bob's claim of it is a grant, not a takeover, and may not
    say it was taken from alice (her inbox would tell her so)."""
    a = world.clone("a")
    ok(a, "init")
    for who in ("alice", "bob"):
        ok(a, "register", "--role", "r", "--goal", "g", session=who)
    ok(a, "claim", "task", "x", session="alice")
    ok(a, "release", "task", "x", session="alice")
    git(a, "fetch", "-q", "origin")
    now = tip(world.remote)
    assert now is not None
    gone = _doc(a, now)
    at = datetime.now(timezone.utc).replace(microsecond=0)
    grant = gone.model_copy(
        update={
            "holder": "bob",
            "generation": gone.generation + 1,
            "acquired_at": at,
            "expires_at": at + timedelta(hours=1),
            "released_at": None,
        }
    )

    def claimed(doc: Claim) -> str:
        return commit_files(
            a,
            {CLAIM: yamlio.dump(doc)},
            parent=now,
            message="claim\n\nGitcoord-Op: claim\nGitcoord-Session: bob",
        )

    r = run(
        a,
        "validate",
        "--range",
        f"{now}..{claimed(grant.model_copy(update={'taken_from': 'alice'}))}",
    )
    assert r.code == 5 and "[claim]" in r.err, r.err
    assert run(a, "validate", "--range", f"{now}..{claimed(grant)}").code == 0
    ok(a, "claim", "task", "x", session="bob")
    assert ok(a, "inbox", session="alice")["notices"] == []


def test_a_takeover_tells_the_previous_holder(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = world.clone("a")
    ok(a, "init", "--clock-skew", "0")
    for who in ("alice", "bob"):
        ok(a, "register", "--role", "r", "--goal", "g", session=who)
    ok(a, "claim", "task", "x", "--ttl", "1m", session="alice")
    ok(a, "inbox", session="alice")  # alice has read everything up to here
    monkeypatch.setenv("GITCOORD_CLOCK_OFFSET", "120")  # two minutes on: alice's lease is over
    took = ok(a, "claim", "task", "x", session="bob")
    assert (took["op"], took["claim"]["taken_from"]) == ("takeover", "alice")
    box = ok(a, "inbox", session="alice")
    assert box["unread"] == 1, box
    [notice] = box["notices"]
    assert (notice["kind"], notice["by"], notice["resource"]) == ("takeover", "bob", "task/x")
    assert "bob took over task/x" in run(a, "inbox", "--all", "--peek", session="alice").out
    assert ok(a, "inbox", session="alice")["notices"] == []
    assert ok(a, "inbox", session="bob")["notices"] == []  # the taker knows
    assert run(a, "validate").code == 0
