"""The work board, ranges, templates and milestones, on real git and real bare remotes.

Races start real, separate `python -m gitcoord` processes (never threads, never
mocks) in several clones of one bare remote, all started before any is waited
for. What is asserted is who got what and what the branch says, never timings:

- `next --claim` hands every winner a different task, the most urgent ones, and
  the branch's claim files name exactly the sessions that were told they won;
  with fewer ready tasks than sessions the rest get exit 3 ("nothing left");
- `task add` from many processes at once gives ids t1..tN, each title once;
- dependencies gate readiness, `task done` is one commit that releases the claim;
- range claims conflict only when they share an item of the same set;
- templates seed slots, tasks and milestones; milestones report progress.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO_ROOT, Result, World, git, run, spawn
from ruamel.yaml import YAML

BRANCH = "gitcoord"
PROC_TIMEOUT = 180  # a hang fails the test, not the suite
TEMPLATES = REPO_ROOT / "gitcoord" / "templates"


# --- helpers ---------------------------------------------------------------------------


def jrun(cwd: Path | str, *args: str, session: str | None = None) -> tuple[int, dict[str, Any]]:
    """Run the CLI in process with --json; stdout must be exactly one JSON document."""
    r = run(cwd, *args, "--json", session=session)
    return r.code, _doc(r)


def _doc(r: Result) -> dict[str, Any]:
    try:
        doc = json.loads(r.out)
    except json.JSONDecodeError as exc:  # pragma: no cover - the message is the point
        raise AssertionError(
            f"stdout is not one JSON document ({exc}):\n{r.out!r}\n{r.err}"
        ) from None
    assert isinstance(doc, dict), doc
    if r.code == 0:
        assert "error" not in doc, doc
    else:
        assert set(doc) == {"error"}, doc
        assert doc["error"]["code"] == r.code, (r.code, doc)
    return doc


def ok(cwd: Path | str, *args: str, session: str | None = None) -> dict[str, Any]:
    code, doc = jrun(cwd, *args, session=session)
    assert code == 0, doc
    return doc


def fails(cwd: Path | str, code: int, *args: str, session: str | None = None) -> dict[str, Any]:
    got, doc = jrun(cwd, *args, session=session)
    assert got == code, doc
    err: dict[str, Any] = doc["error"]
    return err


def register(cwd: Path, sid: str, *extra: str) -> dict[str, Any]:
    return ok(cwd, "register", "--role", f"role of {sid}", "--goal", "goal", *extra, session=sid)


def race(jobs: Sequence[tuple[Path, str, tuple[str, ...]]]) -> list[Result]:
    """Start (cwd, session, args) jobs as real processes, all before waiting for any."""
    procs = [spawn(cwd, *args, "--json", session=sid) for cwd, sid, args in jobs]
    results = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=PROC_TIMEOUT)
            results.append(Result(p.returncode, out, err))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    return results


def commits(world: World) -> int:
    """Commits on the remote's coordination branch: the truth every clone agrees on."""
    return int(git(world.remote, "rev-list", "--count", BRANCH).strip())


def subjects(world: World, last: int) -> list[str]:
    """Subjects of the last `last` commits on the remote branch, oldest first."""
    out = git(world.remote, "log", f"-{last}", "--reverse", "--format=%s", BRANCH)
    return out.splitlines()


def branch_files(world: World, under: str) -> list[str]:
    out = git(world.remote, "ls-tree", "-r", "--name-only", BRANCH, "--", under)
    return out.split()


_YAML = YAML(typ="safe", pure=True)


def branch_yaml(world: World, path: str) -> Any:
    return _YAML.load(git(world.remote, "show", f"{BRANCH}:{path}"))


def changed_paths(world: World, rev: str) -> set[str]:
    out = git(world.remote, "diff-tree", "--no-commit-id", "-r", "--name-only", rev)
    return set(out.split())


def template_yaml(name: str) -> dict[str, Any]:
    """A shipped template read straight from its file, independently of gitcoord."""
    doc: dict[str, Any] = _YAML.load((TEMPLATES / f"{name}.yaml").read_text())
    return doc


def task_ids_by_key(template: dict[str, Any]) -> dict[str, str]:
    return {t["key"]: f"t{i + 1}" for i, t in enumerate(template.get("tasks", []))}


# --- 1. racing `next --claim` ---------------------------------------------------------------


SESSIONS = [f"s{i}" for i in range(1, 7)]
PRIORITY_RANK = {"P0": 0, "P1": 1, "P2": 2, "P3": 3}


@pytest.mark.slow
def test_racing_next_claim_hands_out_distinct_tasks_most_urgent_first(world: World) -> None:
    clones = [world.clone(f"c{k}") for k in range(3)]
    home = {sid: clones[i % 3] for i, sid in enumerate(SESSIONS)}
    ok(clones[0], "init")
    register(clones[0], "lead")
    for sid in SESSIONS:
        register(home[sid], sid)

    board: dict[str, tuple[str, str]] = {}  # id -> (priority, title), in creation order
    ready: list[str] = []  # open, unclaimed, dependencies done

    def add(title: str, priority: str, *deps: str) -> str:
        extra = [a for d in deps for a in ("--depends-on", d)]
        t = ok(clones[0], "task", "add", title, "--priority", priority, *extra, session="lead")
        tid: str = t["task"]["id"]
        board[tid] = (priority, title)
        if not deps:
            ready.append(tid)
        return tid

    def urgency(tid: str) -> tuple[int, int]:
        return PRIORITY_RANK[board[tid][0]], int(tid[1:])

    held: dict[str, str] = {}  # task -> session, over all rounds

    def race_round(expect_winners: int) -> list[str]:
        before = commits(world)
        expected_order = sorted(ready, key=urgency)[:expect_winners]
        results = race([(home[sid], sid, ("next", "--claim", "--ttl", "1h")) for sid in SESSIONS])
        won: dict[str, str] = {}
        losers = []
        for sid, r in zip(SESSIONS, results, strict=True):
            doc = _doc(r)
            if r.code == 0:
                assert doc["claimed"] is True, doc
                assert doc["claim"]["holder"] == sid, doc
                assert doc["claim"]["generation"] == 1, doc
                tid = doc["task"]["id"]
                assert tid not in won.values(), f"{tid} handed to {won} and {sid}"
                won[sid] = tid
            else:
                assert r.code == 3, (sid, r.code, r.out, r.err)
                assert doc["error"]["kind"] == "conflict"
                assert "nothing left" in doc["error"]["message"], doc
                losers.append(sid)
        assert len(won) == expect_winners, (won, [r.err for r in results])
        assert len(losers) == len(SESSIONS) - expect_winners
        # every winner has a different task, and they are the most urgent ready ones
        assert sorted(won.values(), key=urgency) == expected_order
        # one commit per win and nothing else; each plan took the most urgent task left
        # on the state it was decided on, so the branch's history claims in priority order
        assert commits(world) == before + expect_winners
        claimed_in_order = [
            re.fullmatch(r"claim task/(t\d+) by (s\d)", s) for s in subjects(world, expect_winners)
        ]
        assert all(claimed_in_order), subjects(world, expect_winners)
        assert [m.group(1) for m in claimed_in_order if m] == expected_order
        assert {m.group(1): m.group(2) for m in claimed_in_order if m} == {
            t: s for s, t in won.items()
        }
        # the claim files on the branch name exactly the session that was told it won
        for sid, tid in won.items():
            c = branch_yaml(world, f"coordination/claims/task/{tid}.yaml")
            assert (c["holder"], c["generation"], c.get("released_at")) == (sid, 1, None)
            held[tid] = sid
            ready.remove(tid)
        return list(won.values())

    # round 1: eight ready tasks of mixed priorities, six sessions: six distinct winners
    for i, pri in enumerate(["P2", "P0", "P3", "P1", "P0", "P2", "P1", "P3"]):
        add(f"round 1 task {i}", pri)
    race_round(expect_winners=6)
    assert sorted(ready, key=urgency) == [t for t in board if board[t][0] == "P3"]

    # round 2: four ready (two left over, two new), six sessions: two get exit 3
    add("round 2 urgent", "P0")
    add("round 2 routine", "P2")
    race_round(expect_winners=4)
    assert ready == []

    # round 3: everything done by its holder; two ready tasks and one waiting for one of
    # them: the blocked task is never handed out
    for tid, sid in held.items():
        ok(home[sid], "task", "done", tid, session=sid)
    first = add("round 3 first", "P1")
    add("round 3 second", "P3")
    blocked = add("round 3 after first", "P0", first)
    race_round(expect_winners=2)
    assert ok(clones[1], "task", "show", blocked)["task"]["status"] == "blocked"
    assert not branch_files(world, f"coordination/claims/task/{blocked}.yaml")

    # round 4: nothing ready at all: every session is told so, nothing is written
    before = commits(world)
    results = race([(home[sid], sid, ("next", "--claim")) for sid in SESSIONS])
    assert [r.code for r in results] == [3] * len(SESSIONS), [r.err for r in results]
    assert all("nothing left" in _doc(r)["error"]["message"] for r in results)
    assert commits(world) == before

    # the whole history is valid, and replaying it finds no task granted twice at once
    assert run(clones[2], "validate").code == 0
    metrics = ok(clones[2], "metrics")
    assert (metrics["claims_granted"], metrics["work_collisions"]) == (12, 0)
    tasks = ok(clones[2], "task", "list", "--status", "all")["tasks"]
    assert Counter(t["status"] for t in tasks) == {"done": 10, "claimed": 2, "blocked": 1}


# --- 2. concurrent `task add` ------------------------------------------------------------------


@pytest.mark.slow
def test_concurrent_task_add_never_collides(world: World) -> None:
    clones = [world.clone(f"c{k}") for k in range(3)]
    ok(clones[0], "init")
    for i, sid in enumerate(SESSIONS):
        register(clones[i % 3], sid)
    before = commits(world)
    titles = {sid: f"Task added by {sid}" for sid in SESSIONS}
    jobs = [
        (clones[i % 3], sid, ("task", "add", titles[sid], "--priority", f"P{i % 4}"))
        for i, sid in enumerate(SESSIONS)
    ]
    results = race(jobs)
    assert [r.code for r in results] == [0] * len(SESSIONS), [r.err for r in results]
    told = {sid: _doc(r)["task"]["id"] for sid, r in zip(SESSIONS, results, strict=True)}

    n = len(SESSIONS)
    expected_ids = {f"t{k}" for k in range(1, n + 1)}
    assert set(told.values()) == expected_ids, told
    assert commits(world) == before + n
    on_branch = branch_files(world, "coordination/tasks")
    assert sorted(on_branch) == sorted(f"coordination/tasks/{t}.yaml" for t in expected_ids)
    docs = {t: branch_yaml(world, f"coordination/tasks/{t}.yaml") for t in expected_ids}
    assert Counter(d["title"] for d in docs.values()) == Counter(titles.values())
    for i, sid in enumerate(SESSIONS):
        doc = docs[told[sid]]  # the id each process was told holds its own title
        assert (doc["title"], doc["created_by"], doc["priority"]) == (titles[sid], sid, f"P{i % 4}")
    # and every clone reads the same board
    for clone in clones:
        listed = ok(clone, "task", "list", "--status", "all")["tasks"]
        assert {t["id"]: t["title"] for t in listed} == {t: d["title"] for t, d in docs.items()}


# --- 3. dependencies, done, priorities -----------------------------------------------------


def test_dependencies_gate_readiness_and_done_releases_in_one_commit(world: World) -> None:
    a, b = world.clone("a"), world.clone("b")
    ok(a, "init")
    register(a, "alice")
    register(b, "bob")

    t1 = ok(a, "task", "add", "Build the API", "--priority", "P1", session="alice")["task"]
    assert (t1["id"], t1["status"], t1["waiting_for"]) == ("t1", "ready", [])
    t2 = ok(
        b,
        "task",
        "add",
        "Document the API",
        "--priority",
        "P0",
        "--depends-on",
        "t1",
        session="bob",
    )["task"]
    assert (t2["id"], t2["status"], t2["depends_on"], t2["waiting_for"]) == (
        "t2",
        "blocked",
        ["t1"],
        ["t1"],
    )

    listed = {t["id"]: t for t in ok(b, "task", "list")["tasks"]}
    assert listed["t2"]["status"] == "blocked" and listed["t2"]["waiting_for"] == ["t1"]
    assert listed["t1"]["status"] == "ready" and listed["t1"]["holder"] is None
    assert [t["id"] for t in ok(a, "task", "list", "--status", "blocked")["tasks"]] == ["t2"]
    shown = ok(a, "task", "show", "t2")["task"]
    assert (shown["status"], shown["waiting_for"], shown["holder"]) == ("blocked", ["t1"], None)

    # `next` skips the blocked P0 for the ready P1, and without --claim writes nothing
    before = commits(world)
    nxt = ok(b, "next", session="bob")
    assert (nxt["task"]["id"], nxt["claimed"], nxt["commit"]) == ("t1", False, None)
    assert commits(world) == before

    # claiming the blocked task is refused, naming what it waits for
    err = fails(b, 4, "claim", "task", "t2", session="bob")
    assert "t1" in err["message"] and err["waiting"] == ["t1"], err
    assert not branch_files(world, "coordination/claims/task/t2.yaml")

    got = ok(b, "next", "--claim", session="bob")
    assert (got["task"]["id"], got["task"]["status"], got["task"]["holder"]) == (
        "t1",
        "claimed",
        "bob",
    )
    err = fails(a, 3, "next", session="alice")
    assert "nothing left" in err["message"] and err["counts"] == {"claimed": 1, "blocked": 1}

    # only the holder marks it done; an unclaimed task must be claimed first
    err = fails(a, 4, "task", "done", "t1", session="alice")
    assert "bob" in err["message"], err
    err = fails(a, 4, "task", "done", "t2", session="alice")
    assert "claim it first" in err["message"], err
    assert commits(world) == before + 1

    done = ok(b, "task", "done", "t1", session="bob")
    assert done["task"]["status"] == "done" and done["task"]["done_by"] == "bob"
    assert commits(world) == before + 2  # one commit: the task and its claim together
    assert changed_paths(world, BRANCH) == {
        "coordination/tasks/t1.yaml",
        "coordination/claims/task/t1.yaml",
    }
    claim = branch_yaml(world, "coordination/claims/task/t1.yaml")
    assert claim["holder"] == "bob" and claim["released_at"] is not None
    task = branch_yaml(world, "coordination/tasks/t1.yaml")
    assert task["done_by"] == "bob" and task["done_at"] is not None
    status = {c["resource"]: c for c in ok(a, "status")["claims"]}
    assert status["task/t1"]["status"] == "released"

    # t2 is ready now, and `next` hands it out
    shown = ok(a, "task", "show", "t2")["task"]
    assert (shown["status"], shown["waiting_for"]) == ("ready", [])
    assert ok(a, "next", "--claim", session="alice")["task"]["id"] == "t2"

    # a done task cannot be claimed again, and done twice writes nothing
    err = fails(a, 4, "claim", "task", "t1", session="alice")
    assert "done" in err["message"], err
    again = ok(b, "task", "done", "t1", session="bob")
    assert again["changed"] is False and again["commit"] is None
    assert [t["id"] for t in ok(a, "task", "list")["tasks"]] == ["t2"]
    assert [t["id"] for t in ok(a, "task", "list", "--status", "done")["tasks"]] == ["t1"]
    assert run(a, "validate").code == 0


def test_priorities_first_then_oldest_first(world: World) -> None:
    a = world.clone("a")
    ok(a, "init")
    register(a, "alice")
    plan = [
        ("p2-old", "P2"),
        ("p1-old", "P1"),
        ("p0-old", "P0"),
        ("p3", "P3"),
        ("p1-new", "P1"),
        ("p0-new", "P0"),
        ("p2-new", "P2"),
    ]
    for title, pri in plan:
        ok(a, "task", "add", title, "--priority", pri, session="alice")
    expected = ["p0-old", "p0-new", "p1-old", "p1-new", "p2-old", "p2-new", "p3"]
    assert [t["title"] for t in ok(a, "task", "list")["tasks"]] == expected
    assert ok(a, "next", session="alice")["task"]["title"] == "p0-old"
    taken = [ok(a, "next", "--claim", session="alice")["task"]["title"] for _ in expected]
    assert taken == expected
    fails(a, 3, "next", "--claim", session="alice")
    # the default priority is P2
    assert ok(a, "task", "add", "plain", session="alice")["task"]["priority"] == "P2"


def test_task_add_refuses_unknown_dependencies_and_bad_priorities(world: World) -> None:
    a = world.clone("a")
    ok(a, "init")
    register(a, "alice")
    ok(a, "task", "add", "exists", session="alice")
    before = commits(world)
    err = fails(
        a, 4, "task", "add", "x", "--depends-on", "t1", "--depends-on", "t9", session="alice"
    )
    assert err["missing"] == ["t9"] and "t9" in err["message"], err
    fails(a, 4, "task", "add", "x", "--milestone", "nope", session="alice")
    for bad in ("P9", "p1", "high", ""):
        fails(a, 2, "task", "add", "x", "--priority", bad, session="alice")
    fails(a, 2, "task", "add", "x", "--depends-on", "x1", session="alice")
    fails(a, 2, "task", "show", "first")
    fails(a, 4, "task", "show", "t7")
    fails(a, 4, "task", "done", "t7", session="alice")
    fails(a, 4, "task", "add", "by a stranger", session="stranger")
    assert commits(world) == before
    assert branch_files(world, "coordination/tasks") == ["coordination/tasks/t1.yaml"]


# --- 4. range claims ------------------------------------------------------------------------


def test_range_claims_conflict_only_on_shared_items(world: World) -> None:
    a, b = world.clone("a"), world.clone("b")
    ok(a, "init")
    register(a, "research-1")
    register(b, "research-2")
    r1 = ("research-1", a)
    r2 = ("research-2", b)

    def claim(who: tuple[str, Path], name: str, code: int = 0, type_: str = "batch") -> Any:
        sid, cwd = who
        if code == 0:
            return ok(cwd, "claim", type_, name, session=sid)
        return fails(cwd, code, "claim", type_, name, session=sid)

    claim(r1, "prospects:1-25")
    claim(r2, "prospects:26-50")  # adjacent: no shared item

    before = commits(world)
    for overlapping in ("prospects:25-30", "prospects:1-25", "prospects:7", "prospects:0-100"):
        err = claim(r2, overlapping, code=3)
        assert err["holder"] == "research-1", err
        assert err["resource"] == "batch/prospects:1-25", err
        assert "research-1" in err["message"] and "prospects:1-25" in err["message"], err
    err = claim(r1, "prospects:50-60", code=3)  # the other way round, on r2's last item
    assert (err["holder"], err["resource"]) == ("research-2", "batch/prospects:26-50")
    assert commits(world) == before

    # other sets, and other claim types, never conflict
    claim(r2, "emails:1-50")
    claim(r1, "emails:51-60")
    claim(r1, "leads:1-25")
    claim(r2, "prospects:1-25", type_="review")
    # a reversed range is a usage error before anything is written
    before = commits(world)
    claim(r2, "prospects:30-20", code=2)
    claim(r2, "emails:9-1", code=2)
    assert commits(world) == before

    # the same holder may overlap its own ranges, but not someone else's
    claim(r1, "prospects:10-20")
    claim(r1, "prospects:20-25")
    err = claim(r1, "prospects:20-30", code=3)
    assert err["holder"] == "research-2", err

    # a released range frees its items (the ones no other claim still covers)
    ok(a, "release", "batch", "prospects:1-25", session="research-1")
    claim(r2, "prospects:1-9")
    err = claim(r2, "prospects:15-22", code=3)  # 10-20 and 20-25 are still r1's
    assert err["holder"] == "research-1"
    assert err["resource"] in ("batch/prospects:10-20", "batch/prospects:20-25"), err
    live = {
        c["resource"]: c["holder"]
        for c in ok(b, "status")["claims"]
        if c["status"] == "live" and c["resource"].startswith("batch/prospects")
    }
    assert live == {
        "batch/prospects:1-9": "research-2",
        "batch/prospects:10-20": "research-1",
        "batch/prospects:20-25": "research-1",
        "batch/prospects:26-50": "research-2",
    }
    assert run(a, "validate").code == 0


@pytest.mark.parametrize(
    ("type_", "first", "second", "how"),
    [
        ("batch", "prospects:1-25", "prospects:20-30", "released"),
        ("batch", "prospects:20-25", "prospects:1-25", "released"),
        ("path", "src/api/**", "src/**", "released"),
        ("batch", "prospects:20-25", "prospects:1-25", "expired"),
    ],
)
def test_a_claim_that_no_longer_binds_frees_its_items(
    world: World, monkeypatch: pytest.MonkeyPatch, type_: str, first: str, second: str, how: str
) -> None:
    """Once A's claim is released (or expired past the grace), B may claim an overlapping
    name, whichever of the two names sorts first."""
    a, b = world.clone("a"), world.clone("b")
    ok(a, "init", "--clock-skew", "0")
    register(a, "research-1")
    register(b, "research-2")
    ok(a, "claim", type_, first, "--ttl", "1m", session="research-1")
    err = fails(b, 3, "claim", type_, second, session="research-2")
    assert err["holder"] == "research-1", err
    if how == "released":
        ok(a, "release", type_, first, session="research-1")
    else:
        monkeypatch.setenv("GITCOORD_CLOCK_OFFSET", "120")  # B's clock: two minutes on
    got = ok(b, "claim", type_, second, session="research-2")["claim"]
    assert (got["holder"], got["status"]) == ("research-2", "live")
    assert run(b, "validate").code == 0


# --- 5. templates ---------------------------------------------------------------------------


def test_marketing_template_registers_sessions_with_their_slots(world: World) -> None:
    tpl = template_yaml("marketing-12")
    slots = {s["number"]: s for s in tpl["slots"]}
    a, b = world.clone("a"), world.clone("b")
    init = ok(a, "init", "--template", "marketing-12")
    assert init["created"] is True and init["template"] == "marketing-12"
    assert init["config"]["slots"] == len(tpl["slots"]) == 12
    roster = branch_yaml(world, "coordination/roster.yaml")
    assert roster["template"] == "marketing-12"
    assert [(s["number"], s["role"]) for s in roster["slots"]] == [
        (s["number"], s["role"]) for s in tpl["slots"]
    ]

    # --number with no role or goal: the slot's
    s4 = ok(b, "register", "--number", "4", session="outreach-morning")["session"]
    assert (s4["number"], s4["role"], s4["goal"]) == (4, slots[4]["role"], slots[4]["goal"])
    # a session whose id is a slot's suggested id: that slot's number, role and goal
    research = next(s for s in tpl["slots"] if s["session"] == "marketing-research-1")
    assert research["number"] == 2
    got = ok(a, "register", session="marketing-research-1")["session"]
    assert (got["number"], got["role"], got["goal"]) == (2, research["role"], research["goal"])
    closer = next(s for s in tpl["slots"] if s["session"] == "marketing-sales-closer-2")
    got = ok(b, "register", session="marketing-sales-closer-2")["session"]
    assert (got["number"], got["role"]) == (closer["number"], closer["role"])
    # an explicit role still wins over the slot's
    got = ok(a, "register", "--number", "7", "--role", "Mine", session="conv")["session"]
    assert (got["number"], got["role"], got["goal"]) == (7, "Mine", slots[7]["goal"])

    by_number = {s["number"]: s["id"] for s in ok(a, "status")["sessions"]}
    assert by_number == {
        2: "marketing-research-1",
        4: "outreach-morning",
        7: "conv",
        12: "marketing-sales-closer-2",
    }

    # the day's batch tasks and the activation milestone
    ids = task_ids_by_key(tpl)
    board = {t["id"]: t for t in ok(b, "task", "list", "--status", "all")["tasks"]}
    assert set(board) == set(ids.values())
    for t in tpl["tasks"]:
        row = board[ids[t["key"]]]
        assert (row["title"], row["priority"]) == (t["title"], t.get("priority", "P2"))
        assert row["depends_on"] == [ids[d] for d in t.get("depends_on", [])]
        assert row["status"] == ("blocked" if t.get("depends_on") else "ready")
    ms = ok(b, "milestone", "list")["milestones"]
    assert [(m["name"], [s["name"] for s in m["steps"]], m["progress"]) for m in ms] == [
        (m["name"], [s if isinstance(s, str) else s["name"] for s in m["steps"]], 0.0)
        for m in tpl["milestones"]
    ]
    assert run(a, "validate").code == 0


def test_dev_template_seeds_the_priority_matrix_and_milestone(world: World) -> None:
    tpl = template_yaml("dev-12")
    a = world.clone("a")
    ok(a, "init", "--template", "dev-12")
    ids = task_ids_by_key(tpl)
    tasks = ok(a, "task", "list", "--status", "all")["tasks"]
    assert len(tasks) == len(tpl["tasks"]) == 14
    assert Counter(t["priority"] for t in tasks) == {"P0": 3, "P1": 4, "P2": 4, "P3": 3}
    assert Counter(t["priority"] for t in tasks) == Counter(t["priority"] for t in tpl["tasks"])
    # listed by priority
    ranks = [PRIORITY_RANK[t["priority"]] for t in tasks]
    assert ranks == sorted(ranks)
    by_id = {t["id"]: t for t in tasks}
    dependent = {
        ids[t["key"]]: [ids[d] for d in t["depends_on"]]
        for t in tpl["tasks"]
        if t.get("depends_on")
    }
    assert dependent == {
        ids["auto-fix"]: [ids["monitoring"]],
        ids["ci-cd"]: [ids["critical-tests"]],
    }
    for tid, t in by_id.items():
        if tid in dependent:
            assert (t["status"], t["waiting_for"]) == ("blocked", dependent[tid]), t
        else:
            assert t["status"] == "ready", t
    blocked = ok(a, "task", "list", "--status", "blocked")["tasks"]
    assert {t["id"] for t in blocked} == set(dependent)
    # the first task to do is the oldest P0
    register(a, "dev")
    first_p0 = next(t for t in tpl["tasks"] if t["priority"] == "P0")
    assert ok(a, "next", session="dev")["task"]["title"] == first_p0["title"]
    # the milestone, and the tasks that belong to it
    ms = ok(a, "milestone", "list")["milestones"]
    assert [(m["name"], len(m["steps"]), m["progress"]) for m in ms] == [
        ("church-guidance-launch", 3, 0.0)
    ]
    members = {t["id"] for t in tasks if t["milestone"] == "church-guidance-launch"}
    assert members == {ids["deploy-church"], ids["ssl"]}
    status = ok(a, "status")
    assert status["template"] == "dev-12"
    assert status["tasks"] == {"ready": 12, "blocked": 2}
    # a dev-12 slot's suggested id gets its number
    assert ok(a, "register", session="master-orchestrator")["session"]["number"] == 12
    # init again (even with the other template) changes nothing
    before = commits(world)
    assert ok(a, "init", "--template", "marketing-12")["created"] is False
    assert commits(world) == before
    assert run(a, "validate").code == 0


MINE = """\
name: mine
description: two sessions and a plan
slots:
  - {number: 1, session: alpha, role: Alpha role, goal: Alpha goal}
  - {number: 2, session: beta, role: Beta role, goal: Beta goal}
tasks:
  - {key: first, title: First thing, priority: P1}
  - {key: second, title: Second thing, priority: P0, depends_on: [first]}
milestones:
  - {name: ship, steps: [Build, Release]}
"""


def test_templates_are_listed_and_user_templates_are_usable(world: World) -> None:
    a = world.clone("a")
    listed = {t["name"]: t for t in ok(a, "templates")["templates"]}
    assert set(listed) == {"dev-12", "marketing-12"}
    for name in ("dev-12", "marketing-12"):
        tpl = template_yaml(name)
        assert listed[name]["source"] == "shipped"
        assert (listed[name]["slots"], listed[name]["tasks"]) == (
            len(tpl["slots"]),
            len(tpl["tasks"]),
        )
        assert listed[name]["description"] == tpl["description"]

    folder = a / ".gitcoord" / "templates"
    folder.mkdir(parents=True)
    (folder / "mine.yaml").write_text(MINE)
    listed = {t["name"]: t for t in ok(a, "templates")["templates"]}
    assert set(listed) == {"dev-12", "marketing-12", "mine"}
    assert (listed["mine"]["slots"], listed["mine"]["tasks"]) == (2, 2)
    assert Path(listed["mine"]["source"]).resolve() == (folder / "mine.yaml").resolve()

    init = ok(a, "init", "--template", "mine")
    assert (init["template"], init["config"]["slots"]) == ("mine", 2)
    got = ok(a, "register", session="beta")["session"]
    assert (got["number"], got["role"], got["goal"]) == (2, "Beta role", "Beta goal")
    tasks = {t["id"]: t for t in ok(a, "task", "list")["tasks"]}
    assert {t: (v["title"], v["status"]) for t, v in tasks.items()} == {
        "t1": ("First thing", "ready"),
        "t2": ("Second thing", "blocked"),
    }
    assert [m["name"] for m in ok(a, "milestone", "list")["milestones"]] == ["ship"]
    # every slot number is taken once both register; a third gets exit 3
    assert ok(a, "register", session="alpha")["session"]["number"] == 1
    fails(a, 3, "register", session="gamma")


BROKEN = {
    "yaml": "name: broken\nslots: [\n",
    "schema": "name: broken\nslots:\n  - {number: 1, role: r, goal: g, colour: red}\n",
    "numbering": "name: broken\nslots:\n  - {number: 2, role: r, goal: g}\n",
    "depends": (
        "name: broken\nslots:\n  - {number: 1, role: r, goal: g}\n"
        "tasks:\n  - {key: a, title: A, depends_on: [nope]}\n"
    ),
    "priority": (
        "name: broken\nslots:\n  - {number: 1, role: r, goal: g}\n"
        "tasks:\n  - {key: a, title: A, priority: urgent}\n"
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_malformed_template_is_invalid_and_writes_nothing(world: World, case: str) -> None:
    a = world.clone("a")
    folder = a / ".gitcoord" / "templates"
    folder.mkdir(parents=True)
    (folder / "broken.yaml").write_text(BROKEN[case])
    err = fails(a, 5, "init", "--template", "broken")
    assert "broken" in err["message"], err
    fails(a, 5, "init", "--template", str(folder / "broken.yaml"))
    assert git(world.remote, "branch", "--list", BRANCH).strip() == ""


def test_unknown_template_is_a_usage_error(world: World) -> None:
    a = world.clone("a")
    err = fails(a, 2, "init", "--template", "marketing-13")
    assert "dev-12" in err["message"] and "marketing-12" in err["message"], err
    fails(a, 2, "init", "--template", str(a / "no-such-roster.yaml"))
    assert git(world.remote, "branch", "--list", BRANCH).strip() == ""


def test_relative_template_path_is_relative_to_dash_c(world: World) -> None:
    """`-C PATH` runs as if started in PATH (like git -C), as `validate PATH` does."""
    a = world.clone("a")
    (a / "rosters").mkdir()
    (a / "rosters" / "team.yaml").write_text(MINE.replace("name: mine", "name: team"))
    init = ok(a, "init", "--template", "rosters/team.yaml")
    assert (init["template"], init["config"]["slots"]) == ("team", 2)


# --- 6. milestones --------------------------------------------------------------------------


def test_milestones_progress_by_number_and_by_text(world: World) -> None:
    a, b = world.clone("a"), world.clone("b")
    ok(a, "init")
    register(a, "alice")
    register(b, "bob")
    steps = ["Deploy", "Domain & SSL", "Verify", "Announce"]
    added = ok(
        a, "milestone", "add", "launch", *[x for s in steps for x in ("--step", s)], session="alice"
    )["milestone"]
    assert ([s["name"] for s in added["steps"]], added["progress"]) == (steps, 0.0)
    ok(
        b,
        "milestone",
        "add",
        "cleanup",
        "--step",
        "Sweep",
        "--step",
        "Mop",
        "--step",
        "Dry",
        session="bob",
    )

    def progress() -> tuple[dict[str, float], dict[str, float]]:
        listed = {m["name"]: m["progress"] for m in ok(b, "milestone", "list")["milestones"]}
        status = {m["name"]: m["progress"] for m in ok(a, "status")["milestones"]}
        return listed, status

    assert progress() == ({"launch": 0.0, "cleanup": 0.0},) * 2

    before = commits(world)
    m = ok(b, "milestone", "done", "launch", "2", session="bob")["milestone"]  # by number
    assert m["progress"] == 25.0
    assert m["steps"][1]["done_by"] == "bob" and m["steps"][0]["done_at"] is None
    m = ok(a, "milestone", "done", "launch", "Deploy", session="alice")["milestone"]  # by text
    assert m["progress"] == 50.0
    ok(a, "milestone", "done", "cleanup", "Mop", session="alice")
    assert commits(world) == before + 3
    assert progress() == ({"launch": 50.0, "cleanup": 33.3},) * 2
    on_branch = branch_yaml(world, "coordination/milestones/launch.yaml")
    assert [s.get("done_by") for s in on_branch["steps"]] == ["alice", "bob", None, None]

    # done again: nothing written
    again = ok(a, "milestone", "done", "launch", "Domain & SSL", session="alice")
    assert again["changed"] is False and again["milestone"]["progress"] == 50.0
    assert commits(world) == before + 3

    # unknown steps and milestones are refused, a duplicate is a conflict
    for step in ("5", "0", "Celebrate", "deploy"):
        err = fails(a, 4, "milestone", "done", "launch", step, session="alice")
        assert "Deploy" in err["message"], err  # the steps are listed
    fails(a, 4, "milestone", "done", "nope", "1", session="alice")
    err = fails(b, 3, "milestone", "add", "launch", "--step", "Other", session="bob")
    assert "launch" in err["message"]
    fails(a, 2, "milestone", "add", "empty", session="alice")
    fails(a, 2, "milestone", "add", "bad name", "--step", "x", session="alice")
    fails(a, 4, "milestone", "add", "ghost", "--step", "x", session="stranger")
    assert commits(world) == before + 3

    for step in ("3", "Announce"):
        ok(b, "milestone", "done", "launch", step, session="bob")
    ok(b, "milestone", "done", "cleanup", "1", session="bob")
    ok(b, "milestone", "done", "cleanup", "Dry", session="bob")
    assert progress() == ({"launch": 100.0, "cleanup": 100.0},) * 2
    assert run(a, "validate").code == 0
