"""The server has the last word: a file that passes validation cannot make a command fail.

YAML on the branch is plain data (no anchors or aliases, refused before anything is
built from the document); every cross reference — a task's dependencies and
milestone, a message's `reply_to`, a claim's holder — names something that exists;
every claimed glob compiles and every claimed range is in order. Each rule is tried
with a commit made by plain git plumbing, as an attacker would: `validate --range`
and the server's pre-receive hook refuse it, `doctor --fix` sets such a file aside
when it got on the branch before the hook, and the CLI's own honest work still passes.
"""

from __future__ import annotations

import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from conftest import World, at, git, run
from pydantic import BaseModel, ValidationError
from reliability import REF, commit_files, hand_push, show, tip

from gitcoord import clock
from gitcoord.domain import kinds, yamlio
from gitcoord.domain.models import (
    DEPENDS_MAX,
    FORMAT,
    Claim,
    Config,
    Message,
    Milestone,
    Session,
    Step,
    Task,
)
from gitcoord.domain.state import State
from gitcoord.domain.validate import check_state

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
# 219 bytes that expand to 9**6 = 531441 strings (the kind that cost the hook 7 s, 590 MB).
BOMB = (
    b'a: &a ["x","x","x","x","x","x","x","x","x"]\n'
    b"b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
    b"c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
    b"d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
    b"e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n"
    b"f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n"
)


def founded(world: World) -> Path:
    a = world.clone("a")
    assert run(a, "init").code == 0
    for s in ("a", "b"):
        assert run(a, "register", "--role", "r", "--goal", "g", session=s).code == 0
    return a


def crafted(
    a: Path, changes: dict[str, bytes], session: str = "a", op: str = "task-add"
) -> tuple[str, str]:
    """(base, commit): a commit by plain git plumbing on origin's tip, not pushed."""
    git(a, "fetch", "-q", "origin")
    base = tip(a, f"refs/remotes/origin/{REF.rsplit('/', 1)[-1]}")
    assert base is not None
    msg = f"hand edit\n\nGitcoord-Op: {op}\nGitcoord-Session: {session}"
    return base, commit_files(a, changes, parent=base, message=msg)


def refused_everywhere(
    world: World, a: Path, base: str, bad: str, needle: str, *, install: bool = True
) -> None:
    """`validate --range` and the server's pre-receive hook both refuse `bad`, naming why."""
    r = run(a, "validate", "--range", f"{base}..{bad}")
    assert r.code == 5 and needle in r.err, (r.code, r.err)
    if install:
        assert run(world.root, "hooks", "install", "--server", str(world.remote)).code == 0
    proc = subprocess.run(
        ["git", "push", "origin", f"{bad}:{REF}"], cwd=a, capture_output=True, text=True
    )
    assert proc.returncode != 0 and needle in proc.stderr, proc.stderr
    assert tip(world.remote) == base


def quarantined_by_doctor(a: Path, path: str) -> None:
    """Pushed before the hook was there: `validate` names it, `doctor --fix` sets it aside."""
    r = run(a, "validate")
    assert r.code == 5 and path in r.err, r.err
    r = run(a, "doctor", "--fix", session="a")
    assert r.code == 0, r.err
    assert run(a, "validate").code == 0
    files = git(a, "ls-tree", "-r", "--name-only", f"refs/remotes/origin/{REF.rsplit('/', 1)[-1]}")
    assert path not in files


# --- YAML is plain data --------------------------------------------------------------


def test_anchors_and_aliases_are_refused_before_anything_is_built() -> None:
    for doc in (BOMB, b"x: &a 1\n", b"x: [1, *a]\n", b"<<: *a\n", b"? &k a\n: 1\n"):
        try:
            yamlio.load(doc)
        except yamlio.YamlProblem as exc:
            assert yamlio.NO_ANCHORS in str(exc)
        else:
            raise AssertionError(f"loaded {doc!r}")
    # `&` and `*` inside text are just text
    assert yamlio.load(b"a: 'x & y * z'\nb: x&y\nc: '*'\nd: a*b\n") == {
        "a": "x & y * z",
        "b": "x&y",
        "c": "*",
        "d": "a*b",
    }


def test_the_writer_never_emits_an_anchor() -> None:
    class Twice(BaseModel):
        x: list[str]
        y: list[str]

    shared = ["t1", "t2"]
    raw = yamlio.dump(Twice(x=shared, y=shared))
    assert b"&" not in raw and b"*" not in raw
    assert yamlio.load(raw) == {"x": shared, "y": shared}


def test_an_alias_bomb_is_refused_by_the_hook_and_set_aside_by_doctor(world: World) -> None:
    a = founded(world)
    path = at("coordination/tasks/t1.yaml")
    hand_push(a, {path: BOMB})  # before the hook: doctor must cope
    quarantined_by_doctor(a, path)
    git(a, "fetch", "-q", "origin")
    base, bad = crafted(a, {path: BOMB})
    refused_everywhere(world, a, base, bad, yamlio.NO_ANCHORS)


# --- the pure checks -----------------------------------------------------------------


def _task(tid: str, *deps: str, milestone: str | None = None) -> Task:
    return Task(
        id=tid,
        title="x",
        depends_on=list(deps),
        milestone=milestone,
        created_by="a",
        created_at=NOW,
    )


def _claim(type_: str, name: str, **kw: object) -> Claim:
    fields: dict[str, object] = {
        "type": type_,
        "name": name,
        "holder": "a",
        "generation": 1,
        "acquired_at": NOW,
        "expires_at": NOW + timedelta(hours=1),
        **kw,
    }
    return Claim.model_validate(fields)


def _state(**kw: object) -> State:
    session = Session(id="a", number=1, role="r", goal="g", registered_at=NOW, updated_at=NOW)
    fields: dict[str, object] = {"config": Config(created_at=NOW), "sessions": {"a": session}}
    return State(**{**fields, **kw})  # type: ignore[arg-type]


def rules_of(state: State) -> set[tuple[str, str]]:
    return {(p.path.rsplit("/", 1)[-1], p.rule) for p in check_state(state, NOW)}


def test_every_dependency_and_milestone_of_a_task_exists() -> None:
    m = Milestone(name="launch", steps=[Step(name="s")], created_by="a", created_at=NOW)
    good = {"t1": _task("t1"), "t2": _task("t2", "t1", milestone="launch")}
    assert rules_of(_state(tasks=good, milestones={"launch": m})) == set()
    assert rules_of(_state(tasks={"t2": _task("t2", "t1")})) == {("t2.yaml", "depends-on")}
    assert rules_of(_state(tasks={"t1": _task("t1", milestone="gone")})) == {
        ("t1.yaml", "milestone")
    }


def test_no_task_waits_for_itself() -> None:
    assert rules_of(_state(tasks={"t1": _task("t1", "t1")})) == {("t1.yaml", "depends-on")}
    cycle = {"t1": _task("t1", "t3"), "t2": _task("t2", "t1"), "t3": _task("t3", "t2")}
    hanger = {"t4": _task("t4", "t1"), "t5": _task("t5")}  # waits for a cycle: not on it
    assert rules_of(_state(tasks={**cycle, **hanger})) == {
        ("t1.yaml", "depends-on"),
        ("t2.yaml", "depends-on"),
        ("t3.yaml", "depends-on"),
    }
    # a long chain is no cycle, and is checked without recursion
    chain = {f"t{i}": _task(f"t{i}", *([f"t{i - 1}"] if i > 1 else [])) for i in range(1, 5001)}
    assert rules_of(_state(tasks=chain)) == set()


def test_a_dependency_list_is_bounded() -> None:
    _task("t1", *(f"t{i}" for i in range(2, DEPENDS_MAX + 2)))
    with pytest.raises(ValidationError):
        _task("t1", *(f"t{i}" for i in range(2, DEPENDS_MAX + 3)))


def test_a_claimed_glob_compiles_and_a_claimed_range_is_in_order() -> None:
    ok = {c.key: c for c in (_claim("path", "src/api/**"), _claim("batch", "prospects:1-25"))}
    assert rules_of(_state(claims=ok)) == set()
    bad = {c.key: c for c in (_claim("path", "0/[z-a]"), _claim("batch", "prospects:25-1"))}
    leaf = {
        c.key: kinds.claim_path(c.type, c.name, fmt=FORMAT).rsplit("/", 1)[-1] for c in bad.values()
    }
    assert rules_of(_state(claims=bad)) == {(name, "claim-name") for name in leaf.values()}


# --- crafted pushes ------------------------------------------------------------------


def test_crafted_references_and_globs_are_refused_by_validate_and_the_hook(world: World) -> None:
    a = founded(world)
    now = clock.now()
    glob = _claim("path", "0/[z-a]", acquired_at=now, expires_at=now + timedelta(hours=1))
    dangling = _task("t1", "t7").model_copy(update={"created_at": now})
    lost = _task("t1", milestone="nowhere").model_copy(update={"created_at": now})
    mid = clock.message_id(clock.precise_now(), "abc123")
    reply = Message(
        id=mid,
        sender="a",
        to="b",
        subject="s",
        body="b",
        sent_at=now,
        reply_to=clock.message_id(now - timedelta(days=3), "ffffff"),
    )
    attempts = [
        (
            {kinds.claim_path("path", glob.name, fmt=FORMAT): yamlio.dump(glob)},
            "claim",
            "[claim-name]",
        ),
        ({kinds.task_path("t1", fmt=FORMAT): yamlio.dump(dangling)}, "task-add", "[depends-on]"),
        ({kinds.task_path("t1", fmt=FORMAT): yamlio.dump(lost)}, "task-add", "[milestone]"),
        ({kinds.message_path("b", mid, fmt=FORMAT): yamlio.dump(reply)}, "send", "[reply-to]"),
    ]
    for i, (changes, op, needle) in enumerate(attempts):
        base, bad = crafted(a, changes, op=op)
        refused_everywhere(world, a, base, bad, needle, install=i == 0)


def test_honest_work_passes_the_hook(world: World) -> None:
    a = founded(world)
    assert run(world.root, "hooks", "install", "--server", str(world.remote)).code == 0
    start = tip(world.remote)
    assert run(a, "milestone", "add", "launch", "--step", "one", session="a").code == 0
    assert run(a, "task", "add", "first", session="a").code == 0
    r = run(a, "task", "add", "second", "--depends-on", "t1", "--milestone", "launch", session="a")
    assert r.code == 0, r.err
    assert run(a, "claim", "path", "src/api/**", session="a").code == 0
    assert run(a, "claim", "batch", "prospects:1-25", session="a").code == 0
    r = run(a, "send", "b", "hello", "there", "--json", session="a")
    assert r.code == 0, r.err
    first = r.json()["message"]["id"]
    r = run(a, "send", "a", "re: hello", "back", "--reply-to", first, session="b")
    assert r.code == 0, r.err
    assert run(a, "validate").code == 0
    r = run(a, "validate", "--range", f"{start}..{tip(world.remote)}")
    assert r.code == 0, r.err


def test_readers_survive_a_dangling_dependency_then_doctor_sets_it_aside(world: World) -> None:
    a = founded(world)
    assert run(a, "task", "add", "honest", session="a").code == 0
    now = clock.now()
    dangling = _task("t2", "t7").model_copy(update={"created_at": now})
    path = kinds.task_path("t2", fmt=FORMAT)
    hand_push(a, {path: yamlio.dump(dangling)})  # before any hook: readers must cope
    r = run(a, "task", "list")
    assert r.code == 0 and "t2" in r.out, (r.code, r.err)
    r = run(a, "task", "list", "--json")
    assert r.code == 0, r.err
    rows = {t["id"]: t for t in r.json()["tasks"]}
    assert rows["t2"]["status"] == "blocked" and rows["t2"]["waiting_for"] == ["t7"]
    r = run(a, "task", "show", "t2")
    assert r.code == 0, r.err
    assert run(a, "status").code == 0
    quarantined_by_doctor(a, path)
    assert show(world.remote, REF, kinds.task_path("t1", fmt=FORMAT))  # the honest task stays
