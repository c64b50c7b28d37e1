"""Communication end to end: messages, inboxes, replies, heartbeats, the log, metrics, state page.

Real git throughout: a bare remote and separate clones of it, the CLI run in
process (`conftest.run`), and what landed on the branch read back with plain
git. Time moves with `GITCOORD_CLOCK_OFFSET`, never with sleeps, and no test
asserts a duration of its own.
"""

from __future__ import annotations

import io
import json
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from conftest import World, git, run

from gitcoord import clock
from gitcoord.api.coordinator import Coordinator
from gitcoord.audit import metrics
from gitcoord.domain import kinds, mailbox, names, yamlio
from gitcoord.domain.change import Change
from gitcoord.domain.models import BODY_MAX_BYTES, FORMAT, Message
from gitcoord.domain.state import State
from gitcoord.ops import kernel, messages

BRANCH = "gitcoord"


# --- helpers ----------------------------------------------------------------------


def jrun(cwd: Path | str, *args: str, session: str | None = None) -> tuple[int, dict[str, Any]]:
    """Run with --json after the subcommand; stdout must be exactly one JSON document."""
    r = run(cwd, *args, "--json", session=session)
    try:
        doc = json.loads(r.out)
    except json.JSONDecodeError:  # pragma: no cover - the message is the point
        raise AssertionError(f"not one JSON document: {r.out!r} {r.err!r}") from None
    assert isinstance(doc, dict), doc
    if r.code != 0:
        assert set(doc) == {"error"} and doc["error"]["code"] == r.code, doc
    return r.code, doc


def ok(cwd: Path | str, *args: str, session: str | None = None) -> dict[str, Any]:
    code, doc = jrun(cwd, *args, session=session)
    assert code == 0, doc
    return doc


def fails(cwd: Path | str, code: int, *args: str, session: str | None = None) -> dict[str, Any]:
    got, doc = jrun(cwd, *args, session=session)
    assert got == code, doc
    return dict(doc["error"])


def register(cwd: Path, sid: str, *extra: str) -> dict[str, Any]:
    return ok(
        cwd, "register", "--role", f"role of {sid}", "--goal", f"goal of {sid}", *extra, session=sid
    )


def tip(world: World) -> str:
    return git(world.remote, "rev-parse", f"refs/heads/{BRANCH}").strip()


def show(world: World, path: str, rev: str = BRANCH) -> str:
    return git(world.remote, "show", f"{rev}:{path}")


def trailers(world: World, rev: str) -> dict[str, str]:
    out = git(world.remote, "log", "-1", "--format=%(trailers:only,unfold)", rev)
    found: dict[str, str] = {}
    for line in out.splitlines():
        if line.strip():
            key, _, value = line.partition(": ")
            found[key] = value
    return found


def changed_paths(world: World, rev: str) -> set[str]:
    return set(git(world.remote, "diff-tree", "--no-commit-id", "-r", "--name-only", rev).split())


def commit_time(world: World, rev: str) -> int:
    return int(git(world.remote, "log", "-1", "--format=%ct", rev).strip())


def at(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """Move this process's clock `seconds` ahead of real time."""
    monkeypatch.setenv("GITCOORD_CLOCK_OFFSET", str(seconds))


def send(cwd: Path, sender: str, to: str, subj: str, body: str = "body", *extra: str) -> str:
    doc = ok(cwd, "send", to, subj, body, *extra, session=sender)
    assert doc["changed"] is True and doc["commit"]
    return str(doc["message"]["id"])


def inbox(cwd: Path, sid: str, *flags: str) -> dict[str, Any]:
    return ok(cwd, "inbox", *flags, session=sid)


def subjects(doc: dict[str, Any]) -> list[str]:
    return [m["subject"] for m in doc["messages"]]


def counted_loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The ids of the messages the inbox opens from now on (a file that is no message: "?")."""
    loads: list[str] = []
    real_load = mailbox._load

    def counting_load(view: Any, entry: Any) -> Message | None:
        msg = real_load(view, entry)
        loads.append(msg.id if msg else "?")
        return msg

    monkeypatch.setattr(mailbox, "_load", counting_load)
    return loads


def pending_file(clone: Path, sid: str) -> Path:
    return clone / ".git" / "gitcoord" / "pending" / f"{sid}.json"


def status_of(cwd: Path, sid: str) -> dict[str, Any]:
    doc = ok(cwd, "status")
    found = [s for s in doc["sessions"] if s["id"] == sid]
    assert len(found) == 1, doc
    return dict(found[0])


@pytest.fixture
def trio(world: World) -> tuple[Path, Path, Path]:
    """Three clones of one remote: alice (#1) in a, bob (#2) in b, carol (#3) and dave (#4) in c."""
    a, b, c = world.clone("a"), world.clone("b"), world.clone("c")
    ok(a, "init")
    register(a, "alice")
    register(b, "bob")
    register(c, "carol")
    register(c, "dave")
    return a, b, c


# --- 1. messages reach exactly the right inboxes ------------------------------------


def test_direct_number_and_broadcast_messages_reach_the_right_inboxes(
    world: World, trio: tuple[Path, Path, Path]
) -> None:
    a, b, c = trio
    ids = [
        send(a, "alice", "bob", "alice to bob"),
        send(c, "carol", "1", "carol to number 1"),
        send(b, "bob", "broadcast", "bob to everyone"),
        send(c, "dave", "carol", "dave to carol"),
        send(a, "alice", "4", "alice to number 4"),
    ]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)  # time-sortable, unique
    for mid in ids:
        names.check_message_id(mid)

    # the files: one per message, at messages/<resolved recipient>/<day>/<id>.yaml
    files = git(world.remote, "ls-tree", "-r", "--name-only", BRANCH, "coordination/messages")
    expected_to = ["bob", "alice", "broadcast", "carol", "dave"]
    assert sorted(files.split()) == sorted(
        kinds.message_path(to, mid, fmt=FORMAT) for to, mid in zip(expected_to, ids, strict=True)
    )
    stored = show(world, kinds.message_path("alice", ids[1], fmt=FORMAT))
    assert "to: alice" in stored and "sender: carol" in stored

    # every session reads its inbox from a different clone than the senders used
    got = {
        "alice": inbox(b, "alice", "--peek"),
        "bob": inbox(c, "bob", "--peek"),
        "carol": inbox(a, "carol", "--peek"),
        "dave": inbox(a, "dave", "--peek"),
    }
    assert subjects(got["alice"]) == ["carol to number 1", "bob to everyone"]
    assert subjects(got["bob"]) == ["alice to bob"]  # not his own broadcast
    assert subjects(got["carol"]) == ["bob to everyone", "dave to carol"]
    assert subjects(got["dave"]) == ["bob to everyone", "alice to number 4"]
    assert got["alice"]["messages"][0]["to"] == "alice"  # number resolved to the id
    assert got["alice"]["messages"][0]["sender"] == "carol"
    assert got["dave"]["messages"][1]["to"] == "dave"
    for doc in got.values():
        assert doc["unread"] == len(doc["messages"])
        assert all(m["read"] is False for m in doc["messages"])
        mids = [m["id"] for m in doc["messages"]]
        assert mids == sorted(mids)  # oldest first


def test_send_errors_write_nothing(
    world: World, trio: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, _, _ = trio
    before = tip(world)
    assert fails(a, 4, "send", "zed", "s", "b", session="alice")["recipient"] == "zed"
    fails(a, 4, "send", "9", "s", "b", session="alice")  # no session has number 9
    fails(a, 4, "send", "0", "s", "b", session="alice")
    fails(a, 2, "send", "bad name!", "s", "b", session="alice")
    fails(a, 4, "send", "bob", "s", "b", session="stranger")  # sender not registered
    fails(a, 5, "send", "bob", "two\nlines", "b", session="alice")  # subject must be one line
    err = fails(a, 5, "send", "bob", "big", "x" * (BODY_MAX_BYTES + 1), session="alice")
    assert err["limit"] == BODY_MAX_BYTES
    # the same through stdin, with a multi-byte body just over the limit
    big = ("é" * (BODY_MAX_BYTES // 2) + "x").encode("utf-8")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(big)))
    fails(a, 5, "send", "bob", "big", "-", session="alice")
    assert tip(world) == before  # nothing was written by any of them


@pytest.mark.parametrize("recipient", ["²", "١"])
def test_non_ascii_digit_recipient_is_a_usage_or_refused_error(
    world: World, trio: tuple[Path, Path, Path], recipient: str
) -> None:
    """str.isdigit() is true for '²' and '١'; such a recipient must not crash (exit 1)."""
    a, _, _ = trio
    before = tip(world)
    code, doc = jrun(a, "send", recipient, "s", "b", session="alice")
    assert code in (2, 4), doc
    assert tip(world) == before


def test_body_from_stdin_and_exact_round_trip(
    world: World, trio: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b, _ = trio
    tricky = [
        "diff --git a/x b/x\n  indented\n\ttab\ntrailing spaces   \n\n\nlast line",
        "  leading spaces and no newline",
        "ends with newlines\n\n",
        "key: value # not a comment\n- not a list\n'quotes\" \u00e9\u4e2d\U0001f600",
        "",
    ]
    for body in tricky:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(body.encode("utf-8"))))
        send(a, "alice", "bob", "stdin body", "-")
    exact = "y" * BODY_MAX_BYTES  # exactly 64 KiB is allowed
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(exact.encode())))
    send(a, "alice", "bob", "exact limit", "-")
    got = inbox(b, "bob")
    assert [m["body"] for m in got["messages"]] == [*tricky, exact]
    assert ok(b, "validate")["valid"] is True


# --- 2. unread state -----------------------------------------------------------------


def test_inbox_marks_read_with_a_committed_mark(
    world: World, trio: tuple[Path, Path, Path]
) -> None:
    a, b, _ = trio
    send(a, "alice", "bob", "one")
    send(a, "alice", "bob", "two")

    before = tip(world)
    peek = inbox(b, "bob", "--peek")
    assert subjects(peek) == ["one", "two"] and peek["unread"] == 2
    assert peek["marked_read"] is False and peek["commit"] is None
    assert tip(world) == before  # --peek pushes nothing

    first = inbox(b, "bob")
    assert subjects(first) == ["one", "two"] and first["unread"] == 2
    assert first["marked_read"] is True and first["commit"] == tip(world)
    mark = show(world, kinds.read_path("bob", fmt=FORMAT))
    assert f"through: {before}" in mark  # the commit the inbox was read at
    assert git(world.remote, "rev-parse", f"{first['commit']}^").strip() == before
    assert changed_paths(world, first["commit"]) == {kinds.read_path("bob", fmt=FORMAT)}
    tr = trailers(world, first["commit"])
    assert tr["Gitcoord-Op"] == "read" and tr["Gitcoord-Read-Through"] == before

    after_read = tip(world)
    again = inbox(b, "bob")
    assert again["messages"] == [] and again["unread"] == 0
    assert again["marked_read"] is False and again["commit"] is None
    assert tip(world) == after_read  # nothing unread: nothing pushed

    every = inbox(b, "bob", "--all")
    assert subjects(every) == ["one", "two"]
    assert [m["read"] for m in every["messages"]] == [True, True]
    assert every["unread"] == 0 and tip(world) == after_read

    send(a, "alice", "bob", "three")
    mixed = inbox(b, "bob", "--all", "--peek")
    assert subjects(mixed) == ["one", "two", "three"]
    assert [m["read"] for m in mixed["messages"]] == [True, True, False]
    assert mixed["unread"] == 1 and mixed["marked_read"] is False
    assert subjects(inbox(b, "bob")) == ["three"]
    assert subjects(inbox(b, "bob")) == []


def test_read_mark_follows_the_session_to_another_clone(
    world: World, trio: tuple[Path, Path, Path]
) -> None:
    a, b, _ = trio
    elsewhere = world.clone("bob-laptop")
    send(a, "alice", "bob", "one")
    assert subjects(inbox(b, "bob")) == ["one"]
    marked = tip(world)
    doc = inbox(elsewhere, "bob")  # same session id, a clone that never read anything
    assert doc["messages"] == [] and doc["marked_read"] is False
    assert tip(world) == marked
    assert subjects(inbox(elsewhere, "bob", "--all", "--peek")) == ["one"]

    send(a, "alice", "bob", "two")
    assert subjects(inbox(elsewhere, "bob")) == ["two"]
    assert inbox(b, "bob")["messages"] == []  # and back again
    assert [m["read"] for m in inbox(b, "bob", "--all")["messages"]] == [True, True]


def test_message_arriving_while_reading_stays_unread(
    world: World, trio: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A message pushed after the inbox was read but before the mark landed is not lost."""
    a, b, _ = trio
    send(a, "alice", "bob", "seen")
    real = mailbox.inbox
    sent: list[str] = []

    def inbox_then_someone_sends(*args: Any, **kwargs: Any) -> list[mailbox.Item]:
        items = real(*args, **kwargs)
        if not sent:
            with Coordinator(str(a), session="alice") as c:
                sent.append(
                    c.send("bob", "late", "arrived during the read").change.result["message"]["id"]
                )
        return items

    monkeypatch.setattr(mailbox, "inbox", inbox_then_someone_sends)
    doc = inbox(b, "bob")
    assert subjects(doc) == ["seen"] and doc["marked_read"] is True
    monkeypatch.setattr(mailbox, "inbox", real)
    late = inbox(b, "bob")
    assert [m["id"] for m in late["messages"]] == sent


# --- 3. replies ------------------------------------------------------------------------


def test_replies_link_to_their_message(world: World, trio: tuple[Path, Path, Path]) -> None:
    a, b, c = trio
    question = send(a, "alice", "bob", "question", "who owns nginx?")
    answer = send(b, "bob", "alice", "re: question", "carol does", "--reply-to", question)
    announce = send(c, "carol", "broadcast", "deployed")
    thanks = send(a, "alice", "carol", "re: deployed", "thanks", "--reply-to", announce)
    follow = send(a, "alice", "bob", "also", "and the cron?", "--reply-to", question)  # own msg

    got = inbox(a, "alice", "--peek")
    reply = next(m for m in got["messages"] if m["id"] == answer)
    assert reply["reply_to"] == question
    assert reply["in_reply_to"] == {"id": question, "sender": "alice", "subject": "question"}
    assert trailers(world, BRANCH + "~1")["Gitcoord-Reply-To"] == announce
    carol = inbox(c, "carol", "--peek")
    assert [m["id"] for m in carol["messages"]] == [thanks]
    assert carol["messages"][0]["in_reply_to"] == {
        "id": announce,
        "sender": "carol",
        "subject": "deployed",
    }
    bob = inbox(b, "bob", "--peek")
    assert [m["id"] for m in bob["messages"]] == [question, announce, follow]
    assert "in_reply_to" not in bob["messages"][0]
    assert bob["messages"][2]["in_reply_to"]["id"] == question
    text = run(b, "inbox", "--peek", session="bob")
    assert text.code == 0 and f"re: [{question}] alice: question" in text.out


def test_bad_reply_to_is_refused_or_usage(world: World, trio: tuple[Path, Path, Path]) -> None:
    a, b, c = trio
    private = send(a, "alice", "bob", "between us")
    before = tip(world)
    unknown = clock.message_id(datetime(2020, 1, 2, 3, 4, 5, tzinfo=timezone.utc), "abcdef")
    err = fails(b, 4, "send", "alice", "re", "x", "--reply-to", unknown, session="bob")
    assert err["reply_to"] == unknown
    # carol could not have received alice's message to bob
    fails(c, 4, "send", "alice", "re", "x", "--reply-to", private, session="carol")
    # (lower(): the T and Z of an id are upper case; its random hex may have no letters)
    for malformed in ("nope", private + "0", private.lower(), "../../etc"):
        fails(b, 2, "send", "alice", "re", "x", "--reply-to", malformed, session="bob")
    assert tip(world) == before


# --- 4. heartbeats ----------------------------------------------------------------------


def test_heartbeat_skip_defer_carry_force(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    a = world.clone("a")
    ok(a, "init")
    register(a, "alice")
    hb = ("implementing", "i-match", "tests")

    at(monkeypatch, 0)
    first = ok(a, "heartbeat", *hb, "10", session="alice")
    assert first["action"] == "pushed" and first["commit"] == tip(world)
    assert changed_paths(world, first["commit"]) == {kinds.heartbeat_path("alice", fmt=FORMAT)}
    assert trailers(world, first["commit"])["Gitcoord-Heartbeat"] == first["heartbeat"]["at"]
    assert "progress: 10" in show(world, kinds.heartbeat_path("alice", fmt=FORMAT))

    # unchanged and younger than heartbeat_quiet_seconds: skipped, nothing pushed
    at(monkeypatch, 30)
    before = tip(world)
    doc = ok(a, "heartbeat", *hb, "10", session="alice")
    assert (doc["action"], doc["changed"], doc["commit"]) == ("skipped", False, None)
    assert doc["last_pushed_at"] == first["heartbeat"]["at"]
    assert tip(world) == before and not pending_file(a, "alice").exists()

    # changed, but sooner than heartbeat_min_seconds: deferred to the pending file
    at(monkeypatch, 60)
    doc = ok(a, "heartbeat", *hb, "20", session="alice")
    assert (doc["action"], doc["changed"]) == ("deferred", False)
    assert tip(world) == before
    owed = json.loads(pending_file(a, "alice").read_text())
    assert owed["heartbeat"]["progress"] == 20
    assert status_of(a, "alice")["heartbeat"]["progress"] == 10
    # a write that changes nothing does not carry it
    register(a, "alice")
    assert tip(world) == before and pending_file(a, "alice").exists()

    # the session's next write carries it: file + trailer in the same commit
    at(monkeypatch, 80)
    claim = ok(a, "claim", "task", "z", session="alice")
    assert claim["commit"] == tip(world)
    assert changed_paths(world, claim["commit"]) == {
        kinds.heartbeat_path("alice", fmt=FORMAT),
        kinds.claim_path("task", "z", fmt=FORMAT),
    }
    tr = trailers(world, claim["commit"])
    assert tr["Gitcoord-Heartbeat"] == owed["heartbeat"]["at"] and tr["Gitcoord-Op"] == "claim"
    assert "progress: 20" in show(world, kinds.heartbeat_path("alice", fmt=FORMAT))
    assert not pending_file(a, "alice").exists()
    assert status_of(a, "alice")["heartbeat"]["progress"] == 20

    # deferred again, then --force pushes a newer one and settles the owed one
    at(monkeypatch, 90)
    assert ok(a, "heartbeat", *hb, "30", session="alice")["action"] == "deferred"
    at(monkeypatch, 95)
    forced = ok(a, "heartbeat", *hb, "40", "--force", session="alice")
    assert forced["action"] == "pushed" and forced["commit"] == tip(world)
    assert "progress: 40" in show(world, kinds.heartbeat_path("alice", fmt=FORMAT))
    assert not pending_file(a, "alice").exists()
    # --force pushes even an unchanged heartbeat
    at(monkeypatch, 100)
    again = ok(a, "heartbeat", *hb, "40", "--force", session="alice")
    assert again["action"] == "pushed" and again["commit"] == tip(world) != forced["commit"]

    # unchanged but older than heartbeat_quiet_seconds (600): pushed
    at(monkeypatch, 100 + 601)
    quiet = ok(a, "heartbeat", *hb, "40", session="alice")
    assert quiet["action"] == "pushed" and quiet["commit"] == tip(world)
    # changed and older than heartbeat_min_seconds (120): pushed
    at(monkeypatch, 100 + 601 + 121)
    assert ok(a, "heartbeat", *hb, "50", session="alice")["action"] == "pushed"

    # deferred, then carried by a send
    at(monkeypatch, 100 + 601 + 130)
    assert (
        ok(a, "heartbeat", "reviewing", "i-match", "pr", "60", session="alice")["action"]
        == "deferred"
    )
    sent = ok(a, "send", "broadcast", "status", "reviewing now", session="alice")
    assert kinds.heartbeat_path("alice", fmt=FORMAT) in changed_paths(world, sent["commit"])
    assert "Gitcoord-Heartbeat" in trailers(world, sent["commit"])
    assert "action: reviewing" in show(world, kinds.heartbeat_path("alice", fmt=FORMAT))


def test_heartbeat_argument_errors(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    a = world.clone("a")
    ok(a, "init")
    register(a, "alice")
    before = tip(world)
    for progress in ("101", "-1", "abc", "50.5"):
        assert run(a, "heartbeat", "x", "y", "z", progress, session="alice").code == 2
    fails(a, 4, "heartbeat", "x", "y", "z", "5", session="stranger")
    fails(a, 5, "heartbeat", "x", "y" * 201, "z", "5", session="alice")
    assert tip(world) == before
    assert ok(a, "heartbeat", "x", "y", "z", "0", session="alice")["action"] == "pushed"
    at(monkeypatch, 200)
    assert ok(a, "heartbeat", "x", "y", "z", "100", session="alice")["action"] == "pushed"


def test_skipped_heartbeat_supersedes_an_older_deferred_one(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Beat A (pushed), B (deferred), A again (skipped: the branch already says A).

    The session's latest report is A, so its next write must not publish the older B.
    """
    a = world.clone("a")
    ok(a, "init")
    register(a, "alice")
    at(monkeypatch, 0)
    ok(a, "heartbeat", "implementing", "x", "tests", "10", session="alice")
    at(monkeypatch, 30)
    assert (
        ok(a, "heartbeat", "implementing", "x", "tests", "20", session="alice")["action"]
        == "deferred"
    )
    at(monkeypatch, 60)
    assert (
        ok(a, "heartbeat", "implementing", "x", "tests", "10", session="alice")["action"]
        == "skipped"
    )
    at(monkeypatch, 70)
    ok(a, "claim", "task", "z", session="alice")
    assert status_of(a, "alice")["heartbeat"]["progress"] == 10


def test_stale_marking(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = world.clone("a"), world.clone("b")
    ok(a, "init")
    register(a, "alice")
    register(b, "bob")
    register(a, "carol")
    at(monkeypatch, 0)
    beat = ok(a, "heartbeat", "implementing", "x", "tests", "10", session="alice")["heartbeat"]

    at(monkeypatch, 15 * 60)
    alice = status_of(b, "alice")
    assert alice["stale"] is False and alice["last_seen"] == beat["at"]
    assert alice["heartbeat"] == {k: v for k, v in beat.items() if k != "session"}
    carol = status_of(b, "carol")
    assert carol["stale"] is False and carol["heartbeat"] is None
    assert carol["last_seen"] == carol["registered_at"]

    at(monkeypatch, 21 * 60)
    ok(b, "heartbeat", "reviewing", "y", "pr", "50", session="bob")
    assert status_of(b, "alice")["stale"] is True
    assert status_of(b, "carol")["stale"] is True
    bob = status_of(a, "bob")
    assert bob["stale"] is False and bob["heartbeat"]["action"] == "reviewing"
    assert "STALE" in run(a, "status").out

    # the threshold is the branch's config: 5 minutes on another coordination branch
    at(monkeypatch, 0)
    ok(a, "--ref", "fast", "init", "--stale-after", "5")
    ok(a, "--ref", "fast", "register", "--role", "r", "--goal", "g", session="alice")
    ok(a, "--ref", "fast", "heartbeat", "x", "y", "z", "1", session="alice")
    at(monkeypatch, 3 * 60)
    assert ok(a, "--ref", "fast", "status")["sessions"][0]["stale"] is False
    at(monkeypatch, 6 * 60)
    assert ok(a, "--ref", "fast", "status")["sessions"][0]["stale"] is True


# --- 5. the log -------------------------------------------------------------------------


def test_log_filters_against_a_known_sequence(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = world.clone("a"), world.clone("b")
    steps: list[tuple[int, Path, str | None, list[str]]] = [
        (0, a, None, ["init"]),
        (0, a, "alice", ["register", "--role", "r", "--goal", "g"]),
        (0, b, "bob", ["register", "--role", "r", "--goal", "g"]),
        (0, a, "alice", ["claim", "task", "a"]),
        (0, b, "bob", ["claim", "task", "b"]),
        (0, b, "bob", ["claim", "task", "ab"]),
        (0, a, "alice", ["claim", "service", "api"]),
        (0, a, "alice", ["release", "task", "a"]),
        (0, a, "alice", ["send", "bob", "hello", "there"]),
        (0, b, "bob", ["heartbeat", "x", "y", "z", "5"]),
        (7200, b, "bob", ["claim", "task", "c"]),
        (7200, a, "alice", ["claim", "task", "a"]),
        (7200, b, "bob", ["inbox"]),
    ]
    seq: list[dict[str, Any]] = []  # oldest first: (commit, session, op, resource)
    for offset, clone, session, args in steps:
        at(monkeypatch, offset)
        doc = ok(clone, *args, session=session)
        assert doc["commit"] == tip(world), args
        seq.append({"commit": doc["commit"], "session": session, "args": args})
    newest = list(reversed(seq))
    assert git(world.remote, "rev-list", BRANCH).split() == [s["commit"] for s in newest]

    def log(*args: str) -> list[dict[str, Any]]:
        return list(ok(a, "log", *args)["entries"])

    at(monkeypatch, 7200)
    every = log()
    assert [e["commit"] for e in every] == [s["commit"] for s in newest]
    assert [e["op"] for e in every] == [
        "read",
        "claim",
        "claim",
        "heartbeat",
        "send",
        "release",
        "claim",
        "claim",
        "claim",
        "claim",
        "register",
        "register",
        "init",
    ]
    for e in every:
        assert set(e) >= {"time", "session", "op", "resource", "commit"}
        assert e["time"].endswith("Z")
        assert e["time"] == clock.iso(
            datetime.fromtimestamp(commit_time(world, e["commit"]), timezone.utc)
        )
    assert [e["session"] for e in every] == [s["session"] for s in newest]
    assert every[4]["resource"].startswith("message/")

    alice = log("--session", "alice")
    assert [(e["op"], e["resource"]) for e in alice] == [
        ("claim", "task/a"),
        ("send", every[4]["resource"]),
        ("release", "task/a"),
        ("claim", "service/api"),
        ("claim", "task/a"),
        ("register", "session/alice"),
    ]
    assert [e["resource"] for e in log("--resource", "task")] == [
        "task/a",
        "task/c",
        "task/a",
        "task/ab",
        "task/b",
        "task/a",
    ]
    assert [e["resource"] for e in log("--resource", "task/")] == [
        "task/a",
        "task/c",
        "task/a",
        "task/ab",
        "task/b",
        "task/a",
    ]
    assert [e["resource"] for e in log("--resource", "task/a")] == ["task/a"] * 3  # not task/ab
    assert [e["resource"] for e in log("--resource", "service")] == ["service/api"]
    assert log("--resource", "tas") == []
    assert log("--resource", "session/bob")[0]["op"] == "register"
    assert [e["op"] for e in log("--op", "release")] == ["release"]
    assert [e["commit"] for e in log("--op", "claim", "--session", "bob")] == [
        seq[10]["commit"],
        seq[5]["commit"],
        seq[4]["commit"],
    ]
    assert log("--op", "takeover") == []

    # --since: a duration back from now, or an ISO time; the old commits are 2h older
    assert [e["commit"] for e in log("--since", "30m")] == [s["commit"] for s in newest[:3]]
    since = clock.iso(datetime.fromtimestamp(commit_time(world, seq[10]["commit"]), timezone.utc))
    assert [e["commit"] for e in log("--since", since)] == [s["commit"] for s in newest[:3]]
    assert len(log("--since", "1d")) == len(seq)

    assert [e["commit"] for e in log("--limit", "2")] == [s["commit"] for s in newest[:2]]
    assert [
        e["resource"] for e in log("--session", "alice", "--resource", "task", "--limit", "2")
    ] == ["task/a", "task/a"]
    assert run(a, "log", "--limit", "0").code == 2
    assert run(a, "log", "--since", "yesterday-ish").code == 2
    text = run(a, "log", "--limit", "1")
    assert text.code == 0 and "read" in text.out and seq[-1]["commit"][:10] in text.out


# --- 6. metrics -----------------------------------------------------------------------------


def test_metrics_from_a_scripted_history(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b, c = world.clone("a"), world.clone("b"), world.clone("c")
    at(monkeypatch, 0)
    ok(a, "init")
    register(a, "alice")
    register(b, "bob")
    register(c, "carol")
    ok(a, "heartbeat", "implementing", "x", "tests", "10", session="alice")
    ok(b, "heartbeat", "reviewing", "y", "pr", "10", session="bob")  # bob's only beat
    ok(a, "claim", "task", "x", "--ttl", "30m", session="alice")

    # bob is refused twice; the count rides along with his next write
    fails(b, 3, "claim", "task", "x", session="bob")
    fails(b, 3, "claim", "task", "x", session="bob")
    assert json.loads(pending_file(b, "bob").read_text())["collisions"] == 2
    assert ok(c, "metrics")["collisions_prevented"] == 0
    carrier = ok(b, "claim", "task", "y", session="bob")
    assert trailers(world, carrier["commit"])["Gitcoord-Collisions"] == "2"
    assert not pending_file(b, "bob").exists()
    assert ok(c, "metrics")["collisions_prevented"] == 2

    # messages: two direct ones answered 60 s and 180 s later, plus distractors
    m1 = send(a, "alice", "bob", "q1")
    at(monkeypatch, 30)
    send(a, "alice", "bob", "q1 again", "x", "--reply-to", m1)  # the sender: not an answer
    at(monkeypatch, 60)
    r1 = send(b, "bob", "alice", "a1", "x", "--reply-to", m1)
    m2 = send(c, "carol", "1", "q2")
    at(monkeypatch, 240)
    r2 = send(a, "alice", "carol", "a2", "x", "--reply-to", m2)
    send(c, "carol", "bob", "never answered")
    bc = send(a, "alice", "broadcast", "news")
    send(b, "bob", "alice", "re news", "x", "--reply-to", bc)  # broadcasts are not timed

    def ct(mid: str) -> int:
        return commit_time(
            world,
            git(
                world.remote, "log", "-1", "--format=%H", f"--grep=Gitcoord-Message: {mid}", BRANCH
            ).strip(),
        )

    d1, d2 = ct(r1) - ct(m1), ct(r2) - ct(m2)
    assert 60 <= d1 < 90 and 180 <= d2 < 210, (d1, d2)  # the offsets plus real time

    # alice beats every 10 minutes for two hours; one takeover after expiry on the way
    for step in range(1, 13):
        at(monkeypatch, step * 600)
        assert (
            ok(a, "heartbeat", "implementing", "x", "tests", "10", session="alice")["action"]
            == "pushed"
        )
        if step == 1:
            send(b, "bob", "alice", "a1 again", "x", "--reply-to", m1)  # only the first counts
        if step == 3:
            at(monkeypatch, 1800 + 60 + 30)  # past expiry and the clock-skew grace
            assert ok(b, "claim", "task", "x", session="bob")["op"] == "takeover"

    at(monkeypatch, 7200)
    m = ok(c, "metrics")
    assert (m["registered"], m["slots"]) == (3, 12)
    assert m["claims_granted"] == 3  # alice x, bob y, bob's takeover of x
    assert m["collisions_prevented"] == 2
    assert m["takeovers_after_expiry"] == 1
    assert m["work_collisions"] == 0
    assert m["commits"] == int(git(world.remote, "rev-list", "--count", BRANCH))
    msgs = m["messages"]
    assert (msgs["sent"], msgs["direct"], msgs["answered"]) == (9, 8, 2)
    # five of the direct messages are replies; of the three that ask, carol's to bob was
    # never answered: it counts against the target, not as nothing
    assert (msgs["replies"], msgs["asked"]) == (5, 3)
    assert (
        msgs["answered_within_target"],
        msgs["answered_late"],
        msgs["unanswered"],
        msgs["waiting"],
    ) == (2, 0, 1, 0)
    assert msgs["within_target_share"] == 0.6667
    assert msgs["response_seconds_median"] == (d1 + d2) / 2
    assert msgs["response_seconds_p95"] == d2
    up = m["heartbeat_uptime"]
    assert up["stale_after_minutes"] == 20
    sessions = up["sessions"]
    assert [(sid, v["number"], v["heartbeats"]) for sid, v in sessions.items()] == [
        ("alice", 1, 13),
        ("bob", 2, 1),
        ("carol", 3, 0),
    ]
    assert sessions["alice"]["uptime"] == 1.0
    # one 20-minute window out of ~2 hours
    assert abs(sessions["bob"]["uptime"] - 1200 / 7200) < 0.01
    assert abs(sessions["carol"]["uptime"] - 1200 / 7200) < 0.01
    assert abs(up["mean"] - (1 + 2 * 1200 / 7200) / 3) < 0.01
    assert m["targets"] == {
        "all_registered": False,
        "zero_work_collisions": True,
        "response_under_5_min": False,  # 2 of 3 answered in time, though both under 5 min
        "uptime_over_90": False,
    }
    assert "work collisions          0" in run(c, "metrics").out


def test_work_collisions_replay_in_branch_order_despite_clock_skew(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """alice's clock runs 30 s fast (inside the 60 s skew grace). She claims and releases
    task/x; then bob, whose clock is right, claims it. No two leases ever overlapped on
    the branch, but bob's commit carries an earlier time than alice's two."""
    a, b = world.clone("a"), world.clone("b")
    ok(a, "init")
    register(a, "alice")
    register(b, "bob")
    at(monkeypatch, 30)
    ok(a, "claim", "task", "x", session="alice")
    at(monkeypatch, 31)
    ok(a, "release", "task", "x", session="alice")
    at(monkeypatch, 0)
    assert ok(b, "claim", "task", "x", session="bob")["claim"]["generation"] == 2
    assert ok(a, "metrics")["work_collisions"] == 0


def test_work_collisions_detect_a_real_double_grant(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The replay is not vacuous: a hand-made commit (plain git, bypassing gitcoord) that
    hands alice's live claim to bob is counted as a work collision."""
    a = world.clone("a")
    ok(a, "init")
    register(a, "alice")
    register(a, "bob")
    ok(a, "claim", "task", "x", session="alice")
    assert ok(a, "metrics")["work_collisions"] == 0
    wt = world.root / "hand-edit"
    git(a, "fetch", "-q", "origin")
    git(a, "worktree", "add", "-q", "--detach", str(wt), f"origin/{BRANCH}")
    path = wt / kinds.claim_path("task", "x", fmt=FORMAT)
    text = path.read_text()
    expires = next(ln for ln in text.splitlines() if ln.startswith("expires_at:"))
    path.write_text(
        text.replace("holder: alice", "holder: bob").replace("generation: 1", "generation: 2")
    )
    git(
        wt,
        "commit",
        "-q",
        "-am",
        "claim task/x by bob\n\nGitcoord-Op: claim\n"
        "Gitcoord-Session: bob\nGitcoord-Resource: task/x\nGitcoord-Generation: 2\n"
        f"Gitcoord-Expires: {expires.split(': ', 1)[1].strip(chr(39))}",
    )
    git(wt, "push", "-q", "origin", f"HEAD:refs/heads/{BRANCH}")
    m = ok(a, "metrics")
    assert m["work_collisions"] == 1 and m["targets"]["zero_work_collisions"] is False


def test_percentile_is_nearest_rank() -> None:
    """p95 of 1..20 is 19 (19 of 20 values are <= 19), as p95 of 1..40 is 38."""
    assert metrics._percentile([float(x) for x in range(1, 41)], 95) == 38
    assert metrics._percentile([float(x) for x in range(1, 21)], 95) == 19


# --- 7. state page -------------------------------------------------------------------------


def test_state_write_commits_current_state(world: World, trio: tuple[Path, Path, Path]) -> None:
    a, b, c = trio
    ok(a, "claim", "task", "i-match", "--note", "scoring", session="alice")
    ok(b, "claim", "service", "nginx", session="bob")
    ok(c, "claim", "task", "done-already", session="carol")
    ok(c, "release", "task", "done-already", session="carol")
    ok(b, "heartbeat", "reviewing", "pr-7", "tests", "40", session="bob")
    send(a, "alice", "bob", "Need review of i-match")
    send(c, "carol", "broadcast", "Deployed treasury | v2")

    before = tip(world)
    page = ok(a, "state")["markdown"]
    assert tip(world) == before  # without --write nothing is committed
    doc = ok(b, "state", "--write", session="bob")
    assert doc["commit"] == tip(world) and doc["path"] == names.state_page_path()
    assert git(world.remote, "rev-parse", f"{doc['commit']}^").strip() == before
    assert changed_paths(world, doc["commit"]) == {names.state_page_path()}
    written = show(world, names.state_page_path())
    assert written == doc["markdown"]
    assert written.startswith("# Current state")
    for sid in ("alice", "bob", "carol", "dave"):
        assert f"| {sid} |" in written
    assert "| task/i-match | alice | live | 1 |" in written
    assert "| service/nginx | bob | live | 1 |" in written
    assert "done-already" not in written  # released: not a live claim
    assert "Need review of i-match" in written
    assert "Deployed treasury \\| v2" in written
    assert "reviewing pr-7 (tests)" in written and "40%" in written
    live = "## Claims"  # the page says "## Claims" since the verifier renders it again
    assert page[page.index(live) :] == written[written.index(live) :]  # same claims, messages
    assert ok(a, "validate")["valid"] is True


def test_state_page_lists_only_the_ten_newest_messages(
    world: World, trio: tuple[Path, Path, Path]
) -> None:
    a, _, _ = trio
    for i in range(12):
        send(a, "alice", ["bob", "broadcast", "carol"][i % 3], f"subject number {i:02d}")
    page = ok(a, "state")["markdown"]
    shown = [f"subject number {i:02d}" for i in range(12) if f"subject number {i:02d}" in page]
    assert shown == [f"subject number {i:02d}" for i in range(2, 12)]


# --- 8. an inbox over 10,000 messages ----------------------------------------------------------


def bulk_messages(total: int, sessions: list[str], today: datetime) -> list[Message]:
    """`total` messages spread over 30 days ending today: one in 50 a broadcast, the rest
    to every session in turn, from a rotating sender (never the recipient itself)."""
    base = today.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=29)
    out = []
    for i in range(total):
        to = names.BROADCAST if i % 50 == 0 else sessions[i % len(sessions)]
        sender = sessions[(i * 7 + i // 50 + 1) % len(sessions)]
        if sender == to:
            sender = sessions[(i * 7 + i // 50 + 2) % len(sessions)]
        sent = base + timedelta(days=(i // len(sessions)) % 30, seconds=i, milliseconds=i % 1000)
        mid = clock.message_id(sent, f"{i:06x}")
        out.append(
            Message(
                id=mid,
                sender=sender,
                to=to,
                subject=f"bulk {i}",
                body=f"message {i}",
                sent_at=sent.replace(microsecond=0),
            )
        )
    return out


def message_yaml(msg: Message) -> bytes:
    """What `yamlio.dump(msg)` writes for the bulk messages' plain one-line fields, without
    paying ruamel's pure-Python emitter 10,000 times (the test checks a sample is identical)."""
    return (
        f"id: {msg.id}\nsender: {msg.sender}\nto: {msg.to}\nsubject: {msg.subject}\n"
        f"body: {msg.body}\nsent_at: '{clock.iso(msg.sent_at)}'\n"
    ).encode()


def bulk_send(clone: Path, messages: list[Message]) -> list[str]:
    """Put `messages` on the branch through the store: one transaction per sender, each
    speaking for that sender (so it obeys the branch's rules like any `send`)."""
    by_sender: dict[str, list[Message]] = {}
    for msg in messages:
        by_sender.setdefault(msg.sender, []).append(msg)
    commits = []
    for sender, mine in sorted(by_sender.items()):

        def plan(state: State, sender: str = sender, mine: list[Message] = mine) -> Change:
            kernel.require_registered(state, sender)
            return Change(
                "send",
                f"send {len(mine)} messages from {sender}",
                session=sender,
                writes={kinds.message_path(m.to, m.id, fmt=FORMAT): message_yaml(m) for m in mine},
            )

        with Coordinator(str(clone), session=sender, timeout=600) as coord:
            outcome = coord.store.transact(plan, clock.now)
        assert outcome.commit is not None
        commits.append(outcome.commit)
    return commits


@pytest.mark.slow
def test_inbox_over_ten_thousand_messages_reads_only_what_is_new(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = world.clone("a"), world.clone("b")
    ok(a, "init", "--slots", "32")
    crowd = ["alice", "bob"] + [f"s{n:02d}" for n in range(3, 21)]
    for sid in crowd:
        register(a, sid)
    bulk = bulk_messages(10_000, crowd, clock.now())
    assert len({m.id for m in bulk}) == 10_000
    for msg in bulk[::97]:
        assert message_yaml(msg) == yamlio.dump(msg)
    commits = bulk_send(a, bulk)
    assert commits[-1] == tip(world) and len(commits) == len(crowd)

    files = git(
        world.remote, "ls-tree", "-r", "--name-only", BRANCH, "coordination/messages"
    ).split()
    assert sorted(files) == sorted(kinds.message_path(m.to, m.id, fmt=FORMAT) for m in bulk)
    per_dir: dict[str, int] = {}
    for path in files:
        folder = path.rsplit("/", 1)[0]
        per_dir[folder] = per_dir.get(folder, 0) + 1
    assert max(per_dir.values()) < 100
    assert len({"/".join(p.split("/")[3:5]) for p in files}) == 30  # days: <YYYY-MM>/<DD>

    in_folders = [m for m in bulk if m.to in ("alice", names.BROADCAST)]
    expected = sorted(m.id for m in in_folders if m.sender != "alice")
    assert any(m.sender == "alice" for m in in_folders)  # own broadcasts exist, to be hidden
    assert 0 < len(expected) < len(in_folders) < 10_000 // 10

    loads = counted_loads(monkeypatch)
    first = inbox(b, "alice")  # from a clone that did not write the bulk
    assert [m["id"] for m in first["messages"]] == expected
    assert first["unread"] == len(expected) and first["marked_read"] is True
    # it opened alice's and the broadcast folders (own broadcasts must be opened to be
    # recognised), nothing else
    assert sorted(loads) == sorted(m.id for m in in_folders)

    loads.clear()
    marked = tip(world)
    nothing = inbox(b, "alice")
    assert nothing["messages"] == [] and tip(world) == marked
    assert loads == []  # every day folder is unchanged since the mark: none opened

    new = send(a, "bob", "alice", "the only new one")
    loads.clear()
    one = inbox(b, "alice")
    assert [m["id"] for m in one["messages"]] == [new]
    assert one["messages"][0]["subject"] == "the only new one"
    assert loads == [new]  # today's folder changed, but only the new file was opened
    assert inbox(b, "alice")["messages"] == []


def test_own_broadcasts_are_opened_once_not_at_every_inbox(
    world: World, trio: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A session that broadcasts and hears nothing has nothing unread, so its read mark
    never moves (nothing is pushed for it): its own broadcasts, in a folder it reads, are
    still opened once only. What others send is found as before."""
    a, b, _ = trio
    mine = [send(a, "alice", "broadcast", f"news {i}") for i in range(4)]
    loads = counted_loads(monkeypatch)
    first = inbox(a, "alice")
    assert first["messages"] == [] and first["unread"] == 0 and first["marked_read"] is False
    assert sorted(loads) == sorted(mine)  # opened, to be known as its own
    before = tip(world)
    loads.clear()
    assert inbox(a, "alice")["messages"] == [] and loads == []  # not opened again
    assert tip(world) == before  # and nothing was pushed for it

    more = send(a, "alice", "broadcast", "one more")
    theirs = send(b, "bob", "broadcast", "hello")
    loads.clear()
    got = inbox(a, "alice")
    assert [m["id"] for m in got["messages"]] == [theirs] and got["marked_read"] is True
    assert sorted(loads) == sorted([more, theirs])  # only what came since
    loads.clear()
    assert inbox(a, "alice")["messages"] == [] and loads == []
    every = inbox(a, "alice", "--all")
    assert [(m["id"], m["read"]) for m in every["messages"]] == [(theirs, True)]

    # --peek leaves what is unread unread, so it is found again
    direct = send(b, "bob", "alice", "direct")
    assert [m["id"] for m in inbox(a, "alice", "--peek")["messages"]] == [direct]
    assert [m["id"] for m in inbox(a, "alice")["messages"]] == [direct]


def test_what_a_clone_looked_through_counts_only_while_the_mark_stands(
    world: World, trio: tuple[Path, Path, Path]
) -> None:
    """The session reads on another machine meanwhile: its mark moves past what this clone
    looked through, and this clone then reads by the mark (what was read there is not
    shown as unread here)."""
    a, b, c = trio
    send(a, "alice", "broadcast", "mine")
    assert inbox(a, "alice")["messages"] == []  # this clone looked through its own broadcast
    news = send(b, "bob", "alice", "news")
    elsewhere = world.clone("alice-elsewhere")
    assert [m["id"] for m in inbox(elsewhere, "alice")["messages"]] == [news]
    assert inbox(a, "alice")["messages"] == []  # read on the other machine: not unread here
    later = send(c, "carol", "broadcast", "later")
    assert [m["id"] for m in inbox(a, "alice")["messages"]] == [later]


def test_a_damaged_look_through_record_is_ignored(
    world: World, trio: tuple[Path, Path, Path]
) -> None:
    """What this clone keeps of how far it looked is a cache: a file that is not what it
    writes, or names a commit that is not here, is ignored, and nothing unread is lost."""
    a, b, _ = trio
    send(a, "alice", "broadcast", "mine")
    assert inbox(a, "alice")["messages"] == []
    (record,) = (a / ".git" / "gitcoord" / "scanned").rglob("alice")
    news = send(b, "bob", "alice", "news")
    for junk in ("not a line", f"{'e' * 40} -", f"{'0' * 40} {'1' * 39}", "\xff\xfe"):
        record.write_text(junk + "\n", encoding="latin-1")
        got = inbox(a, "alice", "--peek")
        assert [m["id"] for m in got["messages"]] == [news], junk
    assert [m["id"] for m in inbox(a, "alice")["messages"]] == [news]


def test_inbox_marks_read_on_the_tip_it_read_and_refetches_only_if_it_moved(
    world: World,
) -> None:
    a, b = world.clone("a"), world.clone("b")
    assert run(a, "init").code == 0
    for repo, sid in ((a, "alice"), (b, "bob")):
        assert run(repo, "register", "--role", "r", "--goal", "g", session=sid).code == 0
    assert run(b, "send", "alice", "one", "first", session="bob").code == 0
    with Coordinator(str(a), session="alice") as c:
        fetches: list[list[str]] = []
        real = c.store.trees.upstream.fetch

        def counted(deadline: float) -> bool:
            fetches.append([])
            return real(deadline)

        c.store.trees.upstream.fetch = counted  # type: ignore[method-assign]
        got = c.inbox()
        assert got["unread"] == 1 and got["marked_read"]
        assert len(fetches) == 1  # the read's fetch served the mark's first round
        # The branch moves between the read and the mark: compare-and-swap refuses the
        # first round, the second fetches and marks on the new tip.
        assert run(b, "send", "alice", "two", "second", session="bob").code == 0
        tip, state = c.store.snapshot()
        assert run(b, "send", "alice", "three", "third", session="bob").code == 0
        assert tip is not None
        out = c.store.transact(
            lambda s: messages.mark_read(
                s, clock.now(), session="alice", through=tip, seen=state.reads["alice"]
            ),
            clock.now,
            known=(tip, state),
        )
        assert out.attempts == 2 and out.commit is not None
        assert git(world.remote, "rev-parse", "refs/heads/gitcoord").strip() == out.commit
        parent = git(world.remote, "rev-parse", f"{out.commit}^").strip()
        assert parent == out.tip != tip  # decided on the tip bob's third message made
