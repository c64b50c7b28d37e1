"""The health line and honest metrics (issue #14): what needs a person now, per day.

Real git throughout (a bare remote, clones, the CLI in process). Time moves with
`GITCOORD_CLOCK_OFFSET`: each step is placed at a chosen UTC time of the real day
(`at_time`), so day boundaries never depend on when the suite runs.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from conftest import World, run
from test_communication import fails, ok, register, send
from test_untrusted import BIDI, OSC

from gitcoord import clock
from gitcoord.api.coordinator import Coordinator
from gitcoord.api.verbs import reads
from gitcoord.audit import history, replies
from gitcoord.domain import health as domain_health

TODAY = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)


def at_time(monkeypatch: pytest.MonkeyPatch, when: datetime) -> None:
    """Set this process's clock to `when` (it then runs on with real time)."""
    offset = (when - datetime.now(timezone.utc)).total_seconds()
    monkeypatch.setenv("GITCOORD_CLOCK_OFFSET", str(offset))


def no_ages(text: str) -> str:
    """The line without durations (two reads a moment apart may differ by a minute)."""
    return re.sub(r"\b\d+(h\d+m|m|s|d\d+h)\b", "<age>", text)


@pytest.fixture
def troubled(world: World, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Four sessions at today's 01:27: alice and carol silent since they registered at
    01:00 (stale), both holding live claims; two questions asked at 01:02 unanswered, one
    answered in a minute, one just asked; a blocked P0 task; an approval pending since
    01:02."""
    a, b, c = world.clone("a"), world.clone("b"), world.clone("c")
    base = TODAY + timedelta(hours=1)
    at_time(monkeypatch, base)
    ok(a, "init")
    register(a, "alice")
    register(b, "bob")
    register(c, "carol")
    register(c, "dave")
    ok(a, "claim", "task", "x", session="alice")
    ok(c, "claim", "task", "y", session="carol")
    ok(c, "claim", "task", "z", "--ttl", "10m", session="carol")  # expired by the end
    ok(b, "claim", "service", "api", session="bob")
    ok(c, "task", "add", "Schema", "--priority", "P1", session="carol")  # t1
    ok(c, "task", "add", "Deploy", "--priority", "P0", "--depends-on", "t1", session="carol")
    ok(c, "task", "add", "Hotfix", "--priority", "P0", session="carol")  # t3: ready
    ok(c, "task", "add", "Docs", "--priority", "P2", "--depends-on", "t1", session="carol")
    at_time(monkeypatch, base + timedelta(minutes=2))  # whatever the setup took
    request = ok(c, "approval", "request", "Go live?", session="dave")["approval"]["id"]
    m1 = send(a, "alice", "bob", "q1")
    m2 = send(a, "alice", "carol", "q2")
    m3 = send(c, "dave", "bob", "q3")
    send(a, "alice", "broadcast", "news")
    at_time(monkeypatch, base + timedelta(minutes=3))
    send(b, "bob", "alice", "re q1", "fine", "--reply-to", m1)
    at_time(monkeypatch, base + timedelta(minutes=27))
    ok(b, "heartbeat", "reviewing", "pr", "tests", "50", session="bob")
    ok(c, "heartbeat", "deploying", "api", "prep", "10", session="dave")
    m4 = send(b, "bob", "dave", "q4")  # not five minutes old: waiting, not unanswered
    at_time(monkeypatch, base + timedelta(minutes=27, seconds=30))
    return {"a": a, "b": b, "c": c, "request": request, "m": [m1, m2, m3, m4]}


def test_status_says_what_needs_attention(troubled: dict[str, Any]) -> None:
    a, request = troubled["a"], troubled["request"]
    m1, m2, m3, m4 = troubled["m"]
    doc = ok(a, "status")
    health = doc["health"]
    assert health["ok"] is False
    sessions = health["sessions"]
    assert (sessions["present"], sessions["fresh"], sessions["stale"]) == (4, 2, 2)
    assert sessions["fresh_share"] == 0.5 and sessions["target_met"] is False
    assert [(s["id"], s["claims"]) for s in health["stale_sessions"]] == [
        ("alice", ["task/x"]),
        ("carol", ["task/y"]),
    ]  # not task/z: it expired
    assert all(s["silent_seconds"] >= 25 * 60 for s in health["stale_sessions"])
    assert [(c["resource"], c["holder"]) for c in health["stale_claims"]] == [
        ("task/x", "alice"),
        ("task/y", "carol"),
    ]
    unanswered = health["unanswered"]
    assert unanswered["count"] == 2 and unanswered["after_seconds"] == 300
    assert [(m["id"], m["sender"], m["to"]) for m in unanswered["messages"]] == [
        (m2, "alice", "carol"),
        (m3, "dave", "bob"),
    ]
    assert m1 not in str(unanswered) and m4 not in str(unanswered)
    assert health["blocked_p0"] == [{"id": "t2", "title": "Deploy", "waiting_for": ["t1"]}]
    [pending] = health["approvals_pending"]
    assert (pending["id"], pending["requested_by"]) == (request, "dave")
    assert pending["age_seconds"] >= 25 * 60
    flags = {c["resource"]: c["holder_stale"] for c in doc["claims"]}
    assert flags == {"task/x": True, "task/y": True, "task/z": True, "service/api": False}

    line = health["line"]
    assert line.startswith("health: ATTENTION · ")
    assert "2 of 4 sessions stale (alice, carol), holding 2 live claims (task/x, task/y)" in line
    assert "2 direct messages unanswered over 5m (oldest 25m, to carol, bob)" in line
    assert "1 blocked P0 task (t2)" in line
    assert f"1 approval pending ({request}; oldest 25m)" in line

    text = run(a, "status").out
    assert line in text.splitlines()
    claims = text.split("CLAIMS", 1)[1].splitlines()
    assert re.search(r"task/x\s+alice STALE\s+1", next(ln for ln in claims if "task/x" in ln))
    assert "STALE" not in next(ln for ln in claims if "service/api" in ln)
    assert "STALE" not in next(ln for ln in claims if "task/z" in ln)  # expired: no one's
    section = text.split("\nHEALTH\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert "  stale: #1 alice, silent for 27m, holds task/x" in section
    assert any(
        ln.startswith("  live claim held by a stale session: task/y (carol,") for ln in section
    )
    assert any(f"[{m3}] dave -> bob" in ln for ln in section)
    assert "  blocked P0: t2 waits for t1" in section
    assert any(
        ln.startswith(f"  approval pending for 25m: {request} (general, by dave)") for ln in section
    )

    # the same document for the state page and any other face
    with Coordinator(str(a)) as c:
        again = reads.health(c)
    assert no_ages(again["line"]) == no_ages(line)
    assert again["unanswered"]["count"] == 2 and again["stale_claims"] == health["stale_claims"]
    page = ok(a, "state")["markdown"]
    assert "2 of 4 sessions stale (alice, carol)" in page
    assert "- blocked P0: t2 waits for t1" in page


def test_metrics_today_puts_now_next_to_the_figures(troubled: dict[str, Any]) -> None:
    a = troubled["a"]
    m = ok(a, "metrics", "--today")
    status = ok(a, "status")["health"]
    now = m["now"]
    assert no_ages(now["line"]) == no_ages(status["line"])
    assert now["unanswered"]["count"] == 2 and len(now["stale_claims"]) == 2
    assert m["heartbeat_uptime"]["now"] == 0.5
    assert {sid: v["fresh_now"] for sid, v in m["heartbeat_uptime"]["sessions"].items()} == {
        "alice": False,
        "bob": True,
        "carol": False,
        "dave": True,
    }

    period = m["period"]
    assert period["label"] == f"today {TODAY:%Y-%m-%d}"
    assert period["from"] == f"{TODAY:%Y-%m-%d}T00:00:00Z"
    msgs = period["messages"]
    assert (msgs["sent"], msgs["direct"], msgs["replies"], msgs["asked"]) == (6, 5, 1, 4)
    assert (
        msgs["answered_within_target"],
        msgs["answered_late"],
        msgs["unanswered"],
        msgs["waiting"],
    ) == (1, 0, 2, 1)
    assert msgs["within_target_share"] == 0.3333
    assert period["targets"]["response_under_5_min"] is False  # 1 answered, 2 not: missed
    assert period["claims_granted"] == 4 and period["work_collisions"] == 0
    assert [d["day"] for d in m["days"]] == [f"{TODAY:%Y-%m-%d}"]
    assert m["messages"]["unanswered"] == 2  # all time: the same history

    text = run(a, "metrics", "--today").out
    assert f"TODAY {TODAY:%Y-%m-%d}" in text
    assert "of 4 asking: 1 answered within 5m, 0 later, 2 unanswered, 1 waiting" in text
    assert "33.3% within 5m  (target 90% within 5m: MISSED)" in text
    assert "2/4 sessions fresh (50.0%)  (target > 90%: MISSED)" in text
    assert text.count("health: ATTENTION") == 1


def test_metrics_per_day_and_the_reply_target_met(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Yesterday: one question answered in two minutes, one never; today: one answered
    in a minute. Yesterday misses the target, today meets it, all time misses it; the
    unanswered one is over a day old, so the health line no longer counts it."""
    a, b = world.clone("a"), world.clone("b")
    yesterday = TODAY - timedelta(days=1)
    at_time(monkeypatch, yesterday + timedelta(minutes=30))
    ok(a, "init", "--approver", "test@example.com")  # the tests' git identity
    register(a, "alice")
    register(b, "bob")
    granted = ok(a, "approval", "request", "Go", session="alice")["approval"]["id"]
    ok(a, "approval", "grant", granted)  # approved: no longer pending
    ok(a, "claim", "task", "a", session="alice")
    q1 = send(a, "alice", "bob", "q1")
    at_time(monkeypatch, yesterday + timedelta(minutes=32))
    send(b, "bob", "alice", "re q1", "x", "--reply-to", q1)
    at_time(monkeypatch, yesterday + timedelta(minutes=33))
    q2 = send(a, "alice", "bob", "q2")
    at_time(monkeypatch, TODAY + timedelta(hours=1))
    ok(a, "heartbeat", "x", "y", "z", "1", session="alice")
    ok(b, "heartbeat", "x", "y", "z", "1", session="bob")
    ok(b, "claim", "task", "b", session="bob")
    q3 = send(b, "bob", "alice", "q3")
    at_time(monkeypatch, TODAY + timedelta(hours=1, minutes=1))
    send(a, "alice", "bob", "re q3", "x", "--reply-to", q3)
    at_time(monkeypatch, TODAY + timedelta(hours=1, minutes=10))

    def counts(f: dict[str, Any]) -> tuple[Any, ...]:
        msg = f["messages"]
        return (
            f["claims_granted"],
            msg["asked"],
            msg["answered_within_target"],
            msg["unanswered"],
            msg["within_target_share"],
            f["targets"]["response_under_5_min"],
        )

    day = ok(a, "metrics", "--day", f"{yesterday:%Y-%m-%d}")
    assert counts(day["period"]) == (1, 2, 1, 1, 0.5, False)
    assert day["period"]["to"] == f"{TODAY:%Y-%m-%d}T00:00:00Z"
    today = ok(a, "metrics", "--today")
    assert counts(today["period"]) == (1, 1, 1, 0, 1.0, True)
    assert counts(today) == (2, 3, 2, 1, 0.6667, False)  # all time

    since = ok(a, "metrics", "--since", f"{yesterday:%Y-%m-%d}")
    assert [d["day"] for d in since["days"]] == [f"{yesterday:%Y-%m-%d}", f"{TODAY:%Y-%m-%d}"]
    assert [counts(d) for d in since["days"]] == [counts(day["period"]), counts(today["period"])]
    assert counts(since["period"]) == counts(today)
    # yesterday: each session registered at 00:30 and was fresh for 20 of its 23.5 hours
    ups = since["days"][0]["heartbeat_uptime"]["sessions"]
    assert abs(ups["alice"]["uptime"] - 20 / (23.5 * 60)) < 0.0001
    assert [d["heartbeat_uptime"]["sessions"]["alice"]["heartbeats"] for d in since["days"]] == [
        0,
        1,
    ]
    assert "DAYS" in run(a, "metrics", "--since", f"{yesterday:%Y-%m-%d}").out

    # q2 went unanswered, but over a day ago: the health line is about now
    health = ok(a, "status")["health"]
    assert health["unanswered"]["count"] == 0 and q2 not in json.dumps(health)
    assert health["approvals_pending"] == [] and health["ok"] is True
    assert ok(a, "metrics")["now"]["unanswered"]["count"] == 0
    with Coordinator(str(a)) as c:  # given the whole history, it still looks back a day
        tip, state = c.store.snapshot()
        assert tip is not None
        everything = replies.message_log(history.entries(c.store.git, tip))
        assert q2 in everything.sent and q2 not in everything.answered
        assert domain_health.health(state, clock.now(), everything)["unanswered"]["count"] == 0
    assert health["line"] == (
        "health: ok · 2/2 sessions fresh · no message unanswered over "
        "5m · no blocked P0 task · no approval pending"
    )

    assert fails(a, 2, "metrics", "--day", "yesterday")["kind"] == "usage"
    assert fails(a, 2, "metrics", "--today", "--day", f"{TODAY:%Y-%m-%d}")["kind"] == "usage"
    tomorrow = TODAY + timedelta(days=1)
    assert fails(a, 2, "metrics", "--day", f"{tomorrow:%Y-%m-%d}")["kind"] == "usage"


def test_status_table_fits_the_terminal(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    a = world.clone("a")
    ok(a, "init")
    role = "Prospect research for the western region, batch one of two, " * 2 + BIDI
    register(a, "alice")
    ok(a, "register", "--role", role.strip(), "--goal", f"25/day {OSC}", session="bob")
    ok(a, "claim", "task", "x", "--note", "n" * 120, session="bob")

    def table(columns: int) -> list[str]:
        monkeypatch.setenv("COLUMNS", str(columns))
        out = run(a, "status").out
        assert "\x9d" not in out and "\u202e" not in out  # escaped at any width
        sessions = out.split("SESSIONS\n", 1)[1].split("\n\n", 1)[0].splitlines()
        claims = out.split("CLAIMS\n", 1)[1].split("\n\n", 1)[0].splitlines()
        return sessions + claims

    narrow = table(80)
    assert all(len(ln) <= 80 for ln in narrow), narrow
    bob = next(ln for ln in narrow if " bob " in ln)
    assert "Prospect research" in bob and "…" in bob
    wide = table(400)
    assert any(role.strip().replace("\u202e", "\\u202e") in ln for ln in wide)
    assert any("n" * 120 in ln for ln in wide)
    middle = table(160)
    assert all(len(ln) <= 160 for ln in middle)
    cut = next(ln for ln in middle if " bob " in ln)
    assert len(cut) > len(bob)  # more room, more of the role: not a fixed 36


def test_health_needs_no_history_beyond_a_day(world: World, tmp_path: Path) -> None:
    """Without any message the health line says so; an uninitialised branch has none."""
    a = world.clone("a")
    assert ok(a, "status")["health"] is None
    ok(a, "init")
    health = ok(a, "status")["health"]
    assert health["line"] == (
        "health: ok · no sessions · no message unanswered over 5m · "
        "no blocked P0 task · no approval pending"
    )


def test_escalations_to_people_and_lapsed_requests(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A message to the approvers (`human`) waits for a person: the health line shows it
    until one answers (the sessions' reply target does not count it). A claim's request
    nobody decided lapses: nothing is pending any more. The state page, which the
    verifier renders again from its commit, carries the same line."""
    a = world.clone("a")
    base = TODAY + timedelta(hours=1)
    at_time(monkeypatch, base)
    ok(a, "init", "--approver", "test@example.com", "--require-approval", "deploy")
    register(a, "s1")
    deploy = ok(a, "claim", "deploy", "prod", session="s1")["claim"]["approval"]
    general = ok(a, "approval", "request", "Buy the domain", session="s1")["approval"]["id"]
    mid = send(a, "s1", "human", "Escalation")
    at_time(monkeypatch, base + timedelta(minutes=10, seconds=30))
    ok(a, "heartbeat", "x", "y", "z", "1", session="s1")

    health = ok(a, "status")["health"]
    assert [(m["id"], m["sender"], m["to"]) for m in health["unanswered"]["messages"]] == [
        (mid, "s1", "human")
    ]
    assert "1 direct message unanswered over 5m (oldest 10m, to human)" in health["line"]
    # Oldest request first, then by id: the two may or may not fall in one second.
    pending = health["approvals_pending"]
    assert {p["id"] for p in pending} == {deploy, general}
    assert pending == sorted(pending, key=lambda p: (p["requested_at"], p["id"]))
    before = ok(a, "log", "--limit", "1")["entries"][0]["commit"]
    page = ok(a, "state", "--write", session="s1")
    assert "1 direct message unanswered over 5m (oldest 10m, to human)" in page["markdown"]
    assert ok(a, "validate", "--range", f"{before}..{page['commit']}")["valid"] is True
    msgs = ok(a, "metrics")["messages"]
    assert (msgs["to_human"], msgs["asked"], msgs["unanswered"]) == (1, 0, 0)

    send(a, "s1", "human", "Re: Escalation", "still blocked", "--reply-to", mid)  # not an answer
    assert ok(a, "status")["health"]["unanswered"]["count"] == 1
    ok(a, "send", "s1", "Re: Escalation", "go ahead", "--reply-to", mid)  # a person answers
    health = ok(a, "status")["health"]
    assert health["unanswered"]["count"] == 0
    page = ok(a, "state")["markdown"]
    assert "no message unanswered over 5m" in page

    at_time(monkeypatch, base + timedelta(hours=25))  # past approval_wait_hours (24)
    ok(a, "heartbeat", "x", "y", "z", "2", session="s1")
    health = ok(a, "status")["health"]
    assert [p["id"] for p in health["approvals_pending"]] == [general]  # deploy's lapsed
    assert health["stale_claims"] == []
