"""The human's daily review, end to end with the CLI (issue #14), as the seeds run it.

Three sessions ask: the registry's approval, a deploy claim (a type that requires
approval) and a general request; the human reads the queue, approves two at once,
rejects one with a reason; the registry activates; each session reads the decision
in its inbox. A session escalates to `human`; the humans' mailbox shows it open until
an approver answers. A claim waiting for approval keeps its resource while it waits
(its lease starts when granted) but lapses after approval_wait_hours, and a grant of
a request that no longer means anything is refused and says why.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import World, git, run
from reliability import REF, show

HUMAN = "test@example.com"  # the fixtures' git identity: the approver


def ok(cwd: Path, *args: str, session: str | None = None) -> dict[str, Any]:
    r = run(cwd, "--json", *args, session=session)
    assert r.code == 0, (args, r.out, r.err)
    doc = json.loads(r.out)
    assert isinstance(doc, dict)
    return doc


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@pytest.fixture
def team(world: World) -> Path:
    a = world.clone("a")
    ok(a, "init", "--slots", "3", "--approver", HUMAN, "--require-approval", "deploy")
    for sid, role in (("s1", "orchestrator"), ("s2", "deployer"), ("s3", "research")):
        ok(a, "register", "--role", role, "--goal", "g", session=sid)
    return a


def test_the_daily_review_with_the_cli(
    team: Path, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = team
    registry = ok(a, "approval", "request", "Final registry", "--kind", "registry", session="s1")
    deploy = ok(a, "claim", "deploy", "prod", "--ttl", "1h", session="s2")
    general = ok(a, "approval", "request", "Buy the domain", "--note", "12 EUR", session="s3")
    reg_id = registry["approval"]["id"]
    dep_id = deploy["claim"]["approval"]
    gen_id = general["approval"]["id"]
    # the claim waits for its approval: its lease has not started
    assert deploy["claim"]["status"] == "pending"
    assert deploy["claim"]["lease_seconds"] == 3600

    queue = ok(a, "approval", "list")["approvals"]
    assert {r["id"] for r in queue} == {reg_id, dep_id, gen_id}
    times = [r["requested_at"] for r in queue]
    assert times == sorted(times)  # oldest first
    rows = {r["id"]: r for r in queue}
    assert rows[reg_id]["gates"] == "activation"
    assert rows[dep_id]["gates"] == "claim deploy/prod" and rows[dep_id]["lapses_at"]
    assert rows[gen_id]["note"] == "12 EUR" and rows[gen_id]["requested_by"] == "s3"
    text = run(a, "approval", "list").out
    assert "asked by s3" in text and "note: 12 EUR" in text and "lapses at" in text

    # someone who is not an approver cannot decide
    with monkeypatch.context() as m:
        m.setenv("GIT_AUTHOR_EMAIL", "eve@example.com")
        r = run(a, "approval", "reject", gen_id, "--reason", "no")
        assert r.code == 4 and "not a listed approver" in r.err, r.err

    granted = ok(a, "approval", "grant", reg_id, dep_id)  # two at once, a commit each
    assert [d["approval"]["status"] for d in granted["decisions"]] == ["approved"] * 2
    commits = {d["commit"] for d in granted["decisions"]}
    assert len(commits) == 2
    rejected = ok(a, "approval", "reject", gen_id, "--reason", "Use the existing domain")
    assert rejected["approval"]["status"] == "rejected"
    assert rejected["approval"]["reason"] == "Use the existing domain"
    assert ok(a, "approval", "list")["approvals"] == []  # nothing waits
    assert len(ok(a, "approval", "list", "--all")["approvals"]) == 3
    # decided requests leave no approval branch behind
    git(a, "fetch", "-q", "--prune", "origin")
    assert "gitcoord-approval/" not in git(a, "branch", "-r")

    # the deploy claim is live, its lease counted from the grant
    claims = {c["resource"]: c for c in ok(a, "status")["claims"]}
    prod = claims["deploy/prod"]
    assert prod["status"] == "live"
    grant_time = _ts(granted["decisions"][1]["approval"]["approved_at"])
    assert abs(_ts(prod["expires_at"]) - (grant_time + timedelta(hours=1))) < timedelta(seconds=2)

    assert ok(a, "activate", session="s1")["activation"]["active"] is True

    # each session reads the decision in its inbox, once
    box = ok(a, "inbox", session="s3")
    (decision,) = box["decisions"]
    assert decision["status"] == "rejected" and decision["reason"] == "Use the existing domain"
    assert "your request was REJECTED" in run(a, "inbox", "--all", "--peek", session="s3").out
    assert ok(a, "inbox", session="s3")["decisions"] == []  # read now
    assert ok(a, "inbox", session="s2")["decisions"][0]["status"] == "approved"
    assert ok(a, "inbox", session="s1")["decisions"][0]["id"] == reg_id


def test_escalations_reach_every_approver_until_one_answers(
    team: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = team
    sent = ok(a, "send", "human", "Escalation", "Outreach is blocked on legal", session="s2")
    mid = sent["message"]["id"]
    assert sent["message"]["to"] == "human"
    box = ok(a, "inbox")  # the approver, with no session: the humans' mailbox
    assert [m["id"] for m in box["messages"]] == [mid] and box["messages"][0]["handled_by"] is None
    assert "open" in run(a, "inbox").out
    # a person answers, as a person (no session): signed and authored as the approver
    reply = ok(a, "send", "s2", "Re: Escalation", "Legal says go", "--reply-to", mid)
    assert reply["message"]["sender"] == HUMAN
    assert ok(a, "inbox")["messages"] == []  # handled
    handled = ok(a, "inbox", "--all")["messages"][0]
    assert handled["handled_by"] == HUMAN
    got = ok(a, "inbox", session="s2")["messages"]
    assert [m["sender"] for m in got] == [HUMAN]
    # people broadcast too
    ok(a, "send", "broadcast", "Standup", "10:00 tomorrow")
    assert ok(a, "inbox", session="s1")["messages"][-1]["subject"] == "Standup"
    # someone who is not an approver and has no session cannot write as a person
    monkeypatch.setenv("GIT_AUTHOR_EMAIL", "eve@example.com")
    r = run(a, "send", "s1", "x", "y")
    assert r.code == 4 and "not one" in r.err, r.err
    r = run(a, "inbox")
    assert r.code == 4 and "not one" in r.err, r.err


def test_reading_another_inbox_never_marks_it_read(team: Path) -> None:
    a = team
    ok(a, "send", "s3", "hello", "world", session="s1")
    peeked = ok(a, "inbox", "--for", "s3")
    assert [m["subject"] for m in peeked["messages"]] == ["hello"]
    assert peeked["marked_read"] is False
    assert ok(a, "inbox", session="s3")["unread"] == 1  # still unread for s3


def test_a_waiting_claim_lapses_and_a_late_grant_says_so(
    team: Path, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = team
    waiting = ok(a, "claim", "deploy", "prod", session="s2")
    aid = waiting["claim"]["approval"]
    # two hours on (past the 2 h default lease, within the 24 h wait): still s2's
    monkeypatch.setenv("GITCOORD_CLOCK_OFFSET", str(3 * 3600))
    r = run(a, "claim", "deploy", "prod", session="s3")
    assert r.code == 3, r.err
    # a day and more on: the request lapsed, the resource is free again
    monkeypatch.setenv("GITCOORD_CLOCK_OFFSET", str(25 * 3600))
    queue = ok(a, "approval", "list")["approvals"]
    assert [(q["id"], q["status"]) for q in queue] == [(aid, "lapsed")]
    lapsed = ok(a, "inbox", session="s2")["decisions"]
    assert [d["status"] for d in lapsed] == ["lapsed"]
    r = run(a, "approval", "grant", aid)
    assert r.code == 4 and "no longer means anything" in r.err and "lapsed" in r.err, r.err
    taken = ok(a, "claim", "deploy", "prod", session="s3")
    assert taken["claim"]["holder"] == "s3"
    assert b"lease_seconds" in show(world.remote, REF, "coordination/claims/deploy/prod.yaml")


def test_a_rejection_frees_the_waiting_claim(team: Path) -> None:
    a = team
    aid = ok(a, "claim", "deploy", "prod", session="s2")["claim"]["approval"]
    ok(a, "approval", "reject", aid, "--reason", "Freeze until Monday")
    claims = {c["resource"]: c for c in ok(a, "status")["claims"]}
    assert claims["deploy/prod"]["status"] == "released"
    assert ok(a, "claim", "deploy", "prod", session="s3")["claim"]["holder"] == "s3"
    r = run(a, "approval", "grant", aid)
    assert r.code == 4 and "rejected" in r.err


def test_the_human_adds_and_reprioritises_tasks(team: Path) -> None:
    a = team
    task = ok(a, "task", "add", "Fix the landing page")["task"]  # the approver, no session
    assert task["created_by"] == HUMAN
    mine = ok(a, "task", "add", "Write copy", session="s1")["task"]
    assert ok(a, "task", "priority", mine["id"], "P0")["task"]["priority"] == "P0"  # a person
    assert ok(a, "task", "priority", mine["id"], "P1", session="s1")["task"]["priority"] == "P1"
    r = run(a, "task", "priority", mine["id"], "P3", session="s2")  # not its creator
    assert r.code == 4 and "creator" in r.err, r.err
    assert ok(a, "task", "priority", task["id"], "P0")["changed"] is True
    top = ok(a, "task", "list")
    rows = top if isinstance(top, list) else top["tasks"]
    assert rows[0]["id"] == task["id"]


def test_the_messages_board_shows_who_read_what_and_marks_nothing(team: Path) -> None:
    a = team
    ok(a, "send", "broadcast", "Standup", "10:00", session="s1")
    ok(a, "send", "s3", "Review", "please", session="s2")
    ok(a, "send", "human", "Escalation", "stuck", session="s3")
    ok(a, "inbox", session="s2")  # s2 reads the broadcast
    board = ok(a, "messages")["messages"]
    by_subject = {m["subject"]: m for m in board}
    assert by_subject["Standup"]["read_by"] == ["s2"]
    assert by_subject["Standup"]["unread_by"] == ["s3"]
    assert by_subject["Review"]["unread_by"] == ["s3"]
    assert by_subject["Escalation"]["handled_by"] is None
    assert ok(a, "inbox", session="s3")["unread"] == 2  # the board marked nothing
    assert [m["subject"] for m in ok(a, "messages", "--involving", "s2")["messages"]] == ["Review"]
