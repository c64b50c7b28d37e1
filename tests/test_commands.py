"""The CLI end to end: real repositories, real bare remotes, the commands run in process.

Each test drives `gitcoord` through `conftest.run` (the same `main` the console
script calls) and checks what a user or an agent sees: the exit code, the one
JSON document on stdout, and what landed on the coordination branch (read back
with plain git).
"""

from __future__ import annotations

import json
import os
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import World, at, git, run, snapshot_worktree

from gitcoord.ops import claims

BRANCH = "gitcoord"


# --- helpers ----------------------------------------------------------------------


def jrun(cwd: Path | str, *args: str, session: str | None = None) -> tuple[int, dict[str, Any]]:
    """Run with --json after the subcommand; stdout must be exactly one JSON document."""
    args_ = list(args)
    at = args_.index("--") if "--" in args_ else len(args_)
    r = run(cwd, *args_[:at], "--json", *args_[at:], session=session)
    try:
        doc = json.loads(r.out)
    except json.JSONDecodeError as exc:  # pragma: no cover - the failure message is the point
        raise AssertionError(
            f"stdout is not one JSON document ({exc}):\n{r.out!r}\n{r.err}"
        ) from None
    assert isinstance(doc, dict), doc
    if r.code == 0:
        assert "error" not in doc, doc
    else:
        assert set(doc) == {"error"}, doc
        err = doc["error"]
        assert err["code"] == r.code, (r.code, doc)
        assert isinstance(err["message"], str) and err["message"]
    return r.code, doc


def ok(cwd: Path | str, *args: str, session: str | None = None) -> dict[str, Any]:
    code, doc = jrun(cwd, *args, session=session)
    assert code == 0, doc
    return doc


def fails(cwd: Path | str, code: int, *args: str, session: str | None = None) -> dict[str, Any]:
    got, doc = jrun(cwd, *args, session=session)
    assert got == code, doc
    return doc["error"]


def register(
    cwd: Path, sid: str, role: str = "role", goal: str = "goal", *extra: str
) -> dict[str, Any]:
    return ok(cwd, "register", "--role", role, "--goal", goal, *extra, session=sid)


def tip(repo: Path, ref: str = BRANCH) -> str | None:
    out = git(repo, "rev-parse", "--verify", "-q", f"refs/heads/{ref}^{{commit}}", check=False)
    return out.strip() or None


def count(repo: Path, ref: str = BRANCH) -> int:
    return int(git(repo, "rev-list", "--count", f"refs/heads/{ref}").strip())


def show(repo: Path, path: str, ref: str = BRANCH) -> str:
    return git(repo, "show", f"refs/heads/{ref}:{path}")


def files(repo: Path, ref: str = BRANCH) -> list[str]:
    return git(repo, "ls-tree", "-r", "--name-only", f"refs/heads/{ref}").split()


def subject(repo: Path, rev: str) -> str:
    return git(repo, "log", "-1", "--format=%s", rev).strip()


def trailers(repo: Path, rev: str) -> dict[str, str]:
    """The trailers as git itself parses them."""
    out = git(repo, "log", "-1", "--format=%(trailers:only,unfold)", rev)
    found: dict[str, str] = {}
    for line in out.splitlines():
        if line.strip():
            key, _, value = line.partition(": ")
            assert key not in found, f"duplicate trailer {key}"
            found[key] = value
    return found


def changed_paths(repo: Path, rev: str) -> list[str]:
    return git(repo, "diff-tree", "--no-commit-id", "--root", "-r", "--name-only", rev).split()


def ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def offset(monkeypatch: pytest.MonkeyPatch, seconds: int | None) -> None:
    if seconds is None:
        monkeypatch.delenv("GITCOORD_CLOCK_OFFSET", raising=False)
    else:
        monkeypatch.setenv("GITCOORD_CLOCK_OFFSET", str(seconds))


@pytest.fixture
def a(world: World) -> Path:
    """A clone whose remote has an initialised coordination branch."""
    path = world.clone("a")
    r = run(path, "init")
    assert r.code == 0, r.err
    return path


@pytest.fixture
def pair(world: World, a: Path) -> tuple[Path, Path]:
    """Two clones: alice (#1) works in `a`, bob (#2) in `b`; alice holds task/i-match."""
    b = world.clone("b")
    register(a, "alice", "Research", "25 prospects/day")
    register(b, "bob", "Review", "review everything")
    ok(a, "claim", "task", "i-match", "--ttl", "10m", session="alice")
    return a, b


# --- init -------------------------------------------------------------------------


def test_init_creates_the_branch_on_the_remote(world: World) -> None:
    a = world.clone("a")
    before = snapshot_worktree(a)
    doc = ok(a, "init", "--slots", "5", "--clock-skew", "30")
    assert doc["created"] is True and doc["changed"] is True
    assert doc["op"] == "init"
    assert doc["config"]["slots"] == 5
    assert doc["config"]["clock_skew_seconds"] == 30
    assert doc["commit"] == tip(world.remote)
    assert files(world.remote) == ["coordination/config.yaml"]
    assert "slots: 5" in show(world.remote, "coordination/config.yaml")
    assert snapshot_worktree(a) == before  # no checkout, no index, no files
    assert not (a / "coordination").exists()


def test_init_is_idempotent(world: World, a: Path) -> None:
    first = tip(world.remote)
    doc = ok(a, "init", "--slots", "3")
    assert doc["created"] is False and doc["changed"] is False
    assert doc["commit"] is None
    assert doc["config"]["slots"] == 12  # the existing settings win
    b = world.clone("b")
    assert ok(b, "init")["created"] is False
    r = run(b, "init")
    assert r.code == 0 and "already initialised" in r.out
    assert tip(world.remote) == first
    assert count(world.remote) == 1


def test_init_bad_settings_are_usage_errors(world: World) -> None:
    a = world.clone("a")
    for args in (
        ["--slots", "0"],
        ["--slots", "1001"],
        ["--slots", "many"],
        ["--clock-skew", "-1"],
        ["--lease-hours", "0"],
    ):
        err = fails(a, 2, "init", *args)
        assert err["kind"] == "usage", args
    assert tip(world.remote) is None


# --- reading an uninitialised branch ----------------------------------------------


def test_status_on_uninitialised_branch(world: World) -> None:
    a = world.clone("a")
    doc = ok(a, "status")
    assert doc["initialised"] is False
    assert doc["tip"] is None
    assert (doc["sessions"], doc["claims"], doc["problems"]) == ([], [], [])
    assert doc["where"] == "gitcoord on origin"
    r = run(a, "status")
    assert r.code == 0 and "not initialised" in r.out
    assert tip(world.remote) is None  # reading never creates the branch


def test_writes_on_uninitialised_branch_are_refused(world: World) -> None:
    a = world.clone("a")
    for args in (
        ["register", "--role", "r", "--goal", "g"],
        ["claim", "task", "x"],
        ["renew", "task", "x"],
        ["release", "task", "x"],
    ):
        err = fails(a, 4, *args, session="alice")
        assert err["kind"] == "refused", args
        assert "gitcoord init" in err["message"], args
    assert tip(world.remote) is None


# --- register ---------------------------------------------------------------------


def test_register_gives_lowest_free_numbers_across_clones(world: World, a: Path) -> None:
    b, c = world.clone("b"), world.clone("c")
    doc = register(a, "alice", "Research", "25/day")
    assert doc["created"] is True and doc["changed"] is True
    assert doc["session"] == {
        **doc["session"],
        "id": "alice",
        "number": 1,
        "role": "Research",
        "goal": "25/day",
    }
    assert register(b, "bob")["session"]["number"] == 2
    assert register(c, "carol", "x", "y", "--number", "7")["session"]["number"] == 7
    assert register(a, "dave")["session"]["number"] == 3
    status = ok(c, "status")
    assert [(s["number"], s["id"]) for s in status["sessions"]] == [
        (1, "alice"),
        (2, "bob"),
        (3, "dave"),
        (7, "carol"),
    ]
    assert status["free_numbers"] == [4, 5, 6, 8, 9, 10, 11, 12]
    assert "role: Research" in show(world.remote, at("coordination/sessions/alice.yaml"))


def test_register_taken_number_is_conflict_with_free_numbers(world: World, a: Path) -> None:
    register(a, "alice")
    register(a, "bob")
    before = tip(world.remote)
    err = fails(a, 3, "register", "--role", "r", "--goal", "g", "--number", "2", session="carol")
    assert err["kind"] == "conflict"
    assert err["free_numbers"] == list(range(3, 13))
    assert err["holder"] == "bob"
    assert err["commit"] == before  # the commit that registered bob
    r = run(a, "register", "--role", "r", "--goal", "g", "--number", "1", session="carol")
    assert r.code == 3
    assert r.out == ""
    assert "alice" in r.err and "free numbers: 3" in r.err
    assert tip(world.remote) == before


def test_register_number_out_of_range_is_usage(world: World, a: Path) -> None:
    for number in ("0", "13", "-1", "two"):
        fails(a, 2, "register", "--role", "r", "--goal", "g", "--number", number, session="alice")
    assert count(world.remote) == 1


def test_register_when_every_number_is_taken(world: World) -> None:
    a = world.clone("a")
    ok(a, "init", "--slots", "2")
    register(a, "alice")
    register(a, "bob")
    err = fails(a, 3, "register", "--role", "r", "--goal", "g", session="carol")
    assert err["free_numbers"] == []


def test_register_again_updates_role_and_goal_keeping_the_number(world: World, a: Path) -> None:
    register(a, "alice")
    first = register(a, "bob", "Review", "review")
    again = register(a, "bob", "Reviewer", "review everything")
    assert again["changed"] is True and again["created"] is False
    assert again["session"]["number"] == first["session"]["number"] == 2
    assert again["session"]["role"] == "Reviewer"
    assert again["session"]["registered_at"] == first["session"]["registered_at"]
    assert subject(world.remote, again["commit"]) == "update bob as #2"
    only_goal = ok(a, "register", "--goal", "new goal", session="bob")
    assert (only_goal["session"]["role"], only_goal["session"]["goal"]) == ("Reviewer", "new goal")


def test_unchanged_register_makes_no_commit(world: World, a: Path) -> None:
    register(a, "alice", "Research", "25/day")
    before = tip(world.remote)
    for args in (["--role", "Research", "--goal", "25/day"], [], ["--number", "1"]):
        doc = ok(a, "register", *args, session="alice")
        assert doc["changed"] is False and doc["commit"] is None
        assert doc["session"]["number"] == 1
    r = run(a, "register", session="alice")
    assert r.code == 0 and "unchanged" in r.out
    assert tip(world.remote) == before


def test_new_session_needs_role_and_goal(world: World, a: Path) -> None:
    for args in (["--role", "r"], ["--goal", "g"], []):
        fails(a, 2, "register", *args, session="alice")
    assert count(world.remote) == 1


def test_register_bad_role_or_goal_is_invalid_data(world: World, a: Path) -> None:
    for role, goal in (
        ("two\nlines", "g"),
        (" padded", "g"),
        ("x" * 201, "g"),
        ("", "g"),
        ("r", "g" * 501),
        ("r", "bell\x07"),
    ):
        fails(a, 5, "register", "--role", role, "--goal", goal, session="alice")
    assert count(world.remote) == 1


def test_register_without_a_session_is_refused_with_a_hint(a: Path) -> None:
    err = fails(a, 4, "register", "--role", "r", "--goal", "g")
    assert "GITCOORD_SESSION" in err["message"]


def test_session_from_environment_and_flag_override(
    a: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITCOORD_SESSION", "alice")
    assert ok(a, "register", "--role", "r", "--goal", "g")["session"]["id"] == "alice"
    assert register(a, "bob")["session"]["id"] == "bob"  # --session wins over the env
    assert ok(a, "claim", "task", "x")["claim"]["holder"] == "alice"


BAD_SESSION_IDS = [
    "../x",
    "a/b",
    "-rf",
    "--json",
    ".hidden",
    "a b",
    "a..b",
    "x" * 65,
    "é",
    "broadcast",
    "../../../../tmp/evil",
]


def test_bad_session_ids_are_usage_errors(
    world: World, a: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = tip(world.remote)
    for sid in BAD_SESSION_IDS:
        code, doc = jrun(a, f"--session={sid}", "register", "--role", "r", "--goal", "g")
        assert code == 2, (sid, doc)
        code, doc = jrun(a, "register", "--role", "r", "--goal", "g", f"--session={sid}")
        assert code == 2, (sid, doc)
        monkeypatch.setenv("GITCOORD_SESSION", sid)
        err = fails(a, 2, "claim", "task", "x")
        assert err["field"] == "session", sid
        monkeypatch.delenv("GITCOORD_SESSION")
    assert tip(world.remote) == before
    assert files(world.remote) == ["coordination/config.yaml"]


# --- claims -----------------------------------------------------------------------


def test_claim_without_registering_is_refused(world: World, a: Path) -> None:
    before = tip(world.remote)
    err = fails(a, 4, "claim", "task", "i-match", session="ghost")
    assert err["kind"] == "refused"
    assert "register" in err["message"] and "ghost" in err["message"]
    err = fails(a, 4, "claim", "task", "i-match")  # no session at all
    assert "GITCOORD_SESSION" in err["message"]
    for verb in ("renew", "release"):
        err = fails(a, 4, verb, "task", "i-match", session="ghost")
        assert "register" in err["message"], verb
    assert tip(world.remote) == before


def test_claim_json_and_file(world: World, a: Path) -> None:
    register(a, "alice")
    doc = ok(a, "claim", "task", "i-match", "--ttl", "10m", "--note", "matching", session="alice")
    assert doc["op"] == "claim" and doc["action"] == "claim"
    assert doc["changed"] is True and doc["commit"] == tip(world.remote)
    assert doc["attempts"] >= 1
    c = doc["claim"]
    assert (c["type"], c["name"], c["resource"]) == ("task", "i-match", "task/i-match")
    assert (c["holder"], c["generation"], c["status"], c["note"]) == (
        "alice",
        1,
        "live",
        "matching",
    )
    assert (ts(c["expires_at"]) - ts(c["acquired_at"])).total_seconds() == 600
    text = show(world.remote, at("coordination/claims/task/i-match.yaml"))
    assert "holder: alice" in text and "generation: 1" in text and "note: matching" in text


def test_claim_lease_lengths(world: World) -> None:
    a = world.clone("a")
    ok(a, "init", "--lease-hours", "0.25")
    register(a, "alice")
    cases = [
        (["--ttl", "45s"], 45),
        (["--ttl", "2h"], 7200),
        (["--hours", "1.5"], 5400),
        ([], 900),
        (["--ttl", "1d"], 86400),
    ]
    for i, (args, seconds) in enumerate(cases):
        c = ok(a, "claim", "task", f"x{i}", *args, session="alice")["claim"]
        assert (ts(c["expires_at"]) - ts(c["acquired_at"])).total_seconds() == seconds, args


def test_claim_bad_lease_is_usage(world: World, a: Path) -> None:
    register(a, "alice")
    before = tip(world.remote)
    for args in (
        ["--ttl", "10m", "--hours", "1"],
        ["--ttl", "0s"],
        ["--ttl", "31d"],
        ["--ttl", "soon"],
        ["--ttl", "-5m"],
        ["--hours", "0"],
        ["--hours", "-1"],
        ["--hours", "lots"],
        ["--hours", "721"],
    ):
        fails(a, 2, "claim", "task", "x", *args, session="alice")
    assert tip(world.remote) == before


def test_claim_held_by_another_is_conflict_naming_holder_and_commit(
    world: World, pair: tuple[Path, Path]
) -> None:
    _, b = pair
    claimed_at = tip(world.remote)
    err = fails(b, 3, "claim", "task", "i-match", session="bob")
    assert err["kind"] == "conflict"
    assert err["holder"] == "alice"
    assert err["commit"] == claimed_at
    assert err["generation"] == 1
    assert err["resource"] == "task/i-match"
    assert err["path"] == at("coordination/claims/task/i-match.yaml")
    r = run(b, "claim", "task", "i-match", session="bob")
    assert r.code == 3 and r.out == ""
    assert "alice" in r.err and claimed_at is not None and claimed_at[:10] in r.err
    assert tip(world.remote) == claimed_at


def test_claiming_own_claim_again_renews(world: World, pair: tuple[Path, Path]) -> None:
    a, _ = pair
    first = ok(a, "status")["claims"][0]
    doc = ok(a, "claim", "task", "i-match", "--ttl", "2h", session="alice")
    assert doc["op"] == "renew" and doc["changed"] is True
    c = doc["claim"]
    assert c["generation"] == 1
    assert c["acquired_at"] == first["acquired_at"]
    assert ts(c["expires_at"]) > ts(first["expires_at"])
    assert subject(world.remote, doc["commit"]) == "renew task/i-match by alice"


def test_renew_command(world: World, pair: tuple[Path, Path]) -> None:
    a, b = pair
    doc = ok(a, "renew", "task", "i-match", "--ttl", "1h", session="alice")
    assert doc["op"] == "renew" and doc["claim"]["generation"] == 1
    before = tip(world.remote)
    err = fails(b, 4, "renew", "task", "i-match", session="bob")
    assert err["holder"] == "alice"
    fails(a, 4, "renew", "task", "never-claimed", session="alice")
    fails(a, 4, "renew", "task", "i-match", session="ghost")
    assert tip(world.remote) == before


def test_release_only_by_holder_and_idempotent(world: World, pair: tuple[Path, Path]) -> None:
    a, b = pair
    err = fails(b, 4, "release", "task", "i-match", session="bob")
    assert err["holder"] == "alice"
    fails(a, 4, "release", "task", "never-claimed", session="alice")
    doc = ok(a, "release", "task", "i-match", session="alice")
    assert doc["action"] == "released" and doc["changed"] is True
    assert doc["claim"]["status"] == "released"
    released_at = tip(world.remote)
    again = ok(a, "release", "task", "i-match", session="alice")
    assert again["action"] == "already-released"
    assert again["changed"] is False and again["commit"] is None
    assert tip(world.remote) == released_at
    # the tombstone stays, so the generation keeps growing
    text = show(world.remote, at("coordination/claims/task/i-match.yaml"))
    assert "released_at:" in text and "generation: 1" in text
    status = ok(b, "status")
    assert [(c["resource"], c["status"]) for c in status["claims"]] == [
        ("task/i-match", "released")
    ]
    doc = ok(b, "claim", "task", "i-match", session="bob")
    assert (doc["op"], doc["claim"]["generation"], doc["claim"]["holder"]) == ("claim", 2, "bob")
    assert "Gitcoord-Takeover-From" not in trailers(world.remote, doc["commit"])
    fails(a, 4, "release", "task", "i-match", session="alice")
    fails(a, 4, "renew", "task", "i-match", session="alice")


def test_takeover_after_expiry_and_skew_grace(
    world: World, pair: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = pair  # alice's lease is 10 minutes, the grace 60 seconds
    err = fails(b, 3, "claim", "task", "i-match", session="bob")
    assert "until" in err["message"]
    offset(monkeypatch, 600 + 20)  # expired, but inside the grace
    err = fails(b, 3, "claim", "task", "i-match", session="bob")
    assert "grace" in err["message"]
    assert ok(b, "status")["claims"][0]["status"] == "expired"
    offset(monkeypatch, 600 + 120)  # past the grace
    doc = ok(b, "claim", "task", "i-match", session="bob")
    assert doc["op"] == "takeover" and doc["action"] == "takeover"
    assert (doc["claim"]["holder"], doc["claim"]["generation"]) == ("bob", 2)
    assert subject(world.remote, doc["commit"]) == "take over task/i-match from alice by bob"
    tr = trailers(world.remote, doc["commit"])
    assert tr["Gitcoord-Op"] == "takeover"
    assert tr["Gitcoord-Takeover-From"] == "alice"
    assert tr["Gitcoord-Generation"] == "2"
    assert tr["Gitcoord-Session"] == "bob"
    # the old holder has lost it: no renew, no release, and claiming is a conflict
    fails(a, 4, "renew", "task", "i-match", session="alice")
    fails(a, 4, "release", "task", "i-match", session="alice")
    err = fails(a, 3, "claim", "task", "i-match", session="alice")
    assert err["holder"] == "bob" and err["generation"] == 2
    offset(monkeypatch, None)
    c = ok(a, "status")["claims"][0]
    assert (c["holder"], c["generation"], c["status"]) == ("bob", 2, "live")


def test_configured_clock_skew_is_used(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = world.clone("a"), world.clone("b")
    ok(a, "init", "--clock-skew", "0")
    register(a, "alice")
    register(b, "bob")
    ok(a, "claim", "task", "x", "--ttl", "30s", session="alice")
    fails(b, 3, "claim", "task", "x", session="bob")
    offset(monkeypatch, 35)  # past expiry; no grace configured
    assert ok(b, "claim", "task", "x", session="bob")["op"] == "takeover"


def test_bad_clock_offset_is_usage(world: World, a: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    register(a, "alice")
    before = tip(world.remote)
    monkeypatch.setenv("GITCOORD_CLOCK_OFFSET", "tomorrow")
    fails(a, 2, "claim", "task", "other", session="alice")
    assert tip(world.remote) == before


def test_glob_and_long_names_are_one_file(world: World, a: Path) -> None:
    register(a, "alice")
    doc = ok(a, "claim", "path", "src/api/**", session="alice")
    assert doc["claim"]["resource"] == "path/src/api/**"
    long_name = "n" * 128
    ok(a, "claim", "task", long_name, session="alice")
    assert set(files(world.remote)) == {
        "coordination/config.yaml",
        at("coordination/sessions/alice.yaml"),
        at("coordination/claims/path/src%2Fapi%2F%2A%2A.yaml"),
        at(f"coordination/claims/task/{long_name}.yaml"),
    }
    resources = {c["resource"] for c in ok(a, "status")["claims"]}
    assert resources == {"path/src/api/**", f"task/{long_name}"}
    assert ok(a, "release", "path", "src/api/**", session="alice")["action"] == "released"


BAD_TARGETS = [
    ("task", "../../etc/passwd", "name"),
    ("task", "a/../../b", "name"),
    ("task", "..", "name"),
    ("task", ".git", "name"),
    ("task", "a//b", "name"),
    ("task", "/abs", "name"),
    ("task", "a b", "name"),
    ("task", " lead", "name"),
    ("task", "x" * 129, "name"),
    ("task", "-rf", "name"),
    ("task", "--force", "name"),
    ("..", "x", "type"),
    ("../claims", "x", "type"),
    ("Task", "x", "type"),
    ("-t", "x", "type"),
    ("a/b", "x", "type"),
    ("", "x", "type"),
]


@pytest.mark.parametrize("verb", ["claim", "renew", "release"])
def test_bad_types_and_names_are_usage_errors(world: World, a: Path, verb: str) -> None:
    register(a, "alice")
    ok(a, "claim", "task", "held", session="alice")
    before = tip(world.remote)
    for type_, name, field in BAD_TARGETS:
        err = fails(a, 2, verb, "--", type_, name, session="alice")  # '--': reach the checks
        assert err["field"] == field, (type_, name, err)
    assert tip(world.remote) == before
    assert all(p.startswith("coordination/") for p in files(world.remote))
    assert not (world.root / "etc").exists()


@pytest.mark.parametrize(
    "args",
    [
        ["--session=carol\n", "register", "--role", "r", "--goal", "g"],
        ["claim", "--", "task\n", "x"],
        ["claim", "--", "task", "x\n"],
        ["--ref=coord\n", "status"],
        ["--local", "--ref=coord\n", "status"],
    ],
    ids=["session", "type", "name", "ref", "local-ref"],
)
def test_trailing_newline_is_a_usage_error(world: World, a: Path, args: list[str]) -> None:
    register(a, "alice")
    before = tip(world.remote)
    fails(a, 2, *args, session="alice")
    assert tip(world.remote) == before


def test_dash_arguments_without_separator_are_usage_errors(world: World, a: Path) -> None:
    register(a, "alice")
    before = tip(world.remote)
    fails(a, 2, "claim", "task", "-rf", session="alice")
    fails(a, 2, "claim", "-x", "y", session="alice")
    assert tip(world.remote) == before


def test_claim_missing_argument_is_usage(a: Path) -> None:
    fails(a, 2, "claim", "task", session="alice")
    fails(a, 2, "frobnicate")


# --- status -----------------------------------------------------------------------


def test_status_needs_no_registration(world: World, pair: tuple[Path, Path]) -> None:
    before = tip(world.remote)
    c = world.clone("c")
    for session in (None, "nobody"):
        doc = ok(c, "status", session=session)
        assert doc["initialised"] is True
        assert doc["tip"] == before
        assert doc["registered"] == 2 and doc["slots"] == 12
        assert [s["id"] for s in doc["sessions"]] == ["alice", "bob"]
        (claim,) = doc["claims"]
        assert (claim["resource"], claim["holder"], claim["status"]) == (
            "task/i-match",
            "alice",
            "live",
        )
    r = run(c, "status")
    assert r.code == 0
    assert "alice" in r.out and "task/i-match" in r.out and "bob" in r.out
    assert tip(world.remote) == before


def test_json_flag_before_subcommand_too(a: Path) -> None:
    r = run(a, "--json", "status")
    assert r.code == 0
    assert json.loads(r.out)["initialised"] is True


# --- audit trail ------------------------------------------------------------------


def test_one_commit_per_transaction_with_subject_and_trailers(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = world.clone("a")
    steps: list[tuple[str | None, list[str], str | None]] = [
        (None, ["init"], None),
        ("alice", ["register", "--role", "r", "--goal", "g"], None),
        ("bob", ["register", "--role", "r", "--goal", "g"], None),
        ("alice", ["claim", "task", "i-match", "--ttl", "10m"], None),
        ("alice", ["claim", "task", "i-match", "--ttl", "10m"], None),  # renew
        ("alice", ["register", "--role", "r", "--goal", "g"], None),  # unchanged: no commit
        ("bob", ["claim", "task", "i-match"], "1000"),  # takeover
        ("bob", ["release", "task", "i-match"], "1000"),
        ("bob", ["release", "task", "i-match"], "1000"),  # already released: no commit
    ]
    commits: list[str] = []
    for session, args, shift in steps:
        offset(monkeypatch, None if shift is None else int(shift))
        before = count(world.remote) if tip(world.remote) else 0
        doc = ok(a, *args, session=session)
        after = count(world.remote)
        if doc["changed"]:
            assert after == before + 1, args
            assert doc["commit"] == tip(world.remote)
            commits.append(doc["commit"])
        else:
            assert after == before, args
    assert git(world.remote, "rev-list", "--reverse", BRANCH).split() == commits
    assert git(world.remote, "rev-list", "--merges", BRANCH).strip() == ""

    expected = [
        (
            "init coordination with 12 slots",
            {"Gitcoord-Op": "init", "Gitcoord-Slots": "12"},
            ["coordination/config.yaml"],
        ),
        (
            "register alice as #1",
            {
                "Gitcoord-Op": "register",
                "Gitcoord-Session": "alice",
                "Gitcoord-Resource": "session/alice",
                "Gitcoord-Number": "1",
            },
            [at("coordination/sessions/alice.yaml")],
        ),
        (
            "register bob as #2",
            {
                "Gitcoord-Op": "register",
                "Gitcoord-Session": "bob",
                "Gitcoord-Resource": "session/bob",
                "Gitcoord-Number": "2",
            },
            [at("coordination/sessions/bob.yaml")],
        ),
        (
            "claim task/i-match by alice",
            {
                "Gitcoord-Op": "claim",
                "Gitcoord-Session": "alice",
                "Gitcoord-Resource": "task/i-match",
                "Gitcoord-Generation": "1",
            },
            [at("coordination/claims/task/i-match.yaml")],
        ),
        (
            "renew task/i-match by alice",
            {
                "Gitcoord-Op": "renew",
                "Gitcoord-Session": "alice",
                "Gitcoord-Resource": "task/i-match",
                "Gitcoord-Generation": "1",
            },
            [at("coordination/claims/task/i-match.yaml")],
        ),
        (
            "take over task/i-match from alice by bob",
            {
                "Gitcoord-Op": "takeover",
                "Gitcoord-Session": "bob",
                "Gitcoord-Resource": "task/i-match",
                "Gitcoord-Generation": "2",
                "Gitcoord-Takeover-From": "alice",
            },
            [at("coordination/claims/task/i-match.yaml")],
        ),
        (
            "release task/i-match by bob",
            {
                "Gitcoord-Op": "release",
                "Gitcoord-Session": "bob",
                "Gitcoord-Resource": "task/i-match",
                "Gitcoord-Generation": "2",
            },
            [at("coordination/claims/task/i-match.yaml")],
        ),
    ]
    assert len(commits) == len(expected)
    for commit, (subj, trail, paths) in zip(commits, expected, strict=True):
        assert subject(world.remote, commit) == subj
        got = trailers(world.remote, commit)
        assert {k: got.get(k) for k in trail} == trail, (subj, got)
        assert set(got) - set(trail) <= {"Gitcoord-Expires"}, (subj, got)
        assert changed_paths(world.remote, commit) == paths
    for commit in commits[3:5]:
        exp = trailers(world.remote, commit)["Gitcoord-Expires"]
        assert exp.endswith("Z") and ts(exp)


def test_commands_leave_the_work_tree_alone(world: World) -> None:
    a = world.clone("a")
    (a / "README").write_text("hello\n")
    git(a, "add", "README")
    git(a, "commit", "-q", "-m", "readme")
    (a / "dirty.txt").write_text("untracked\n")
    before = snapshot_worktree(a)
    run(a, "init")
    register(a, "alice")
    ok(a, "claim", "task", "x", session="alice")
    ok(a, "release", "task", "x", session="alice")
    ok(a, "status")
    assert snapshot_worktree(a) == before
    assert git(a, "rev-parse", "--abbrev-ref", "HEAD").strip() == "main"


# --- local-only mode --------------------------------------------------------------


def test_local_only_repository_without_remote(world: World) -> None:
    solo = world.local_repo("solo")
    doc = ok(solo, "init")
    assert doc["created"] is True
    register(solo, "alice")
    c = ok(solo, "claim", "task", "x", session="alice")["claim"]
    assert c["generation"] == 1
    status = ok(solo, "status")
    assert status["where"] == "gitcoord (local)"
    assert status["tip"] == tip(solo)
    assert subject(solo, BRANCH) == "claim task/x by alice"
    assert count(solo) == 3
    assert git(solo, "rev-parse", "--verify", "-q", "HEAD", check=False).strip() == ""  # unborn
    assert not (solo / "coordination").exists()
    assert ok(solo, "init")["created"] is False
    fails(solo, 3, "claim", "task", "x", session=register(solo, "bob")["session"]["id"])


def test_local_flag_ignores_origin(world: World) -> None:
    a = world.clone("a")
    ok(a, "--local", "init")
    assert tip(a) is not None
    assert tip(world.remote) is None
    assert ok(a, "status")["initialised"] is False  # origin has nothing
    doc = ok(a, "--local", "status")
    assert doc["initialised"] is True and doc["where"] == "gitcoord (local)"


def test_local_and_remote_exclude_each_other(a: Path) -> None:
    fails(a, 2, "--local", "--remote", "origin", "status")


# --- --remote, -C, unreachable remote -----------------------------------------------


def test_missing_remote_is_usage(world: World, a: Path) -> None:
    err = fails(a, 2, "--remote", "nosuch", "status")
    assert "nosuch" in err["message"] and "origin" in err["message"]
    fails(a, 2, "--remote", "nosuch", "claim", "task", "x", session="alice")
    solo = world.local_repo("solo")
    fails(solo, 2, "--remote", "origin", "init")
    assert tip(solo) is None


def test_named_remote_and_config(world: World) -> None:
    other = world.root / "other.git"
    git(world.root, "init", "-q", "--bare", str(other))
    a = world.clone("a")
    git(a, "remote", "add", "upstream", str(other))
    doc = ok(a, "--remote", "upstream", "init")
    assert doc["commit"] == tip(other)
    assert tip(world.remote) is None
    git(a, "config", "gitcoord.remote", "upstream")
    register(a, "alice")
    assert ok(a, "status")["where"] == "gitcoord on upstream"
    assert subject(other, BRANCH) == "register alice as #1"
    assert tip(world.remote) is None


def test_unreachable_remote_is_exit_6(world: World, a: Path) -> None:
    register(a, "alice")
    git(a, "remote", "set-url", "origin", str(world.root / "gone.git"))
    err = fails(a, 6, "status")
    assert err["kind"] == "remote"
    fails(a, 6, "claim", "task", "x", session="alice")
    r = run(a, "claim", "task", "x", session="alice")
    assert r.code == 6 and r.out == "" and r.err.startswith("gitcoord: ")


def test_dash_c_from_a_subdirectory_and_a_bare_repo(world: World, a: Path) -> None:
    sub = a / "deep" / "er"
    sub.mkdir(parents=True)
    assert register(sub, "alice")["session"]["number"] == 1
    assert ok(a, "status")["registered"] == 1
    bare = ok(world.remote, "status")  # no remotes there: reads its own branch
    assert bare["initialised"] is True and bare["where"] == "gitcoord (local)"
    assert bare["tip"] == tip(world.remote)


def test_dash_c_bad_directories_are_usage(world: World) -> None:
    plain = world.root / "plain"
    plain.mkdir()
    fails(world.root / "missing", 2, "status")
    err = fails(plain, 2, "status")
    assert "not a git repository" in err["message"]


# --- --ref and gitcoord.ref --------------------------------------------------------


def test_ref_flag_and_git_config(world: World) -> None:
    a = world.clone("a")
    ok(a, "--ref", "team/coord", "init")
    assert tip(world.remote, "team/coord") is not None
    assert tip(world.remote) is None
    assert ok(a, "status")["initialised"] is False
    git(a, "config", "gitcoord.ref", "team/coord")
    status = ok(a, "status")
    assert status["initialised"] is True and status["where"] == "team/coord on origin"
    register(a, "alice")
    assert subject(world.remote, "refs/heads/team/coord") == "register alice as #1"
    assert ok(a, "--ref", BRANCH, "status")["initialised"] is False  # the flag wins
    assert tip(world.remote) is None


def test_bad_ref_names_are_usage(world: World) -> None:
    a = world.clone("a")
    for ref in (
        "-x",
        "--json",
        "a..b",
        "x.lock",
        "a//b",
        "a b",
        "ends/",
        "../up",
        ".hidden",
        "refs/../x",
        "a\nb",
    ):
        err = fails(a, 2, f"--ref={ref}", "init")
        assert "branch" in err["message"], ref
    assert git(world.remote, "for-each-ref").strip() == ""


def test_bad_configured_ref_is_usage(world: World) -> None:
    a = world.clone("a")
    git(a, "config", "gitcoord.ref", "../escape")
    fails(a, 2, "init")
    assert git(world.remote, "for-each-ref").strip() == ""


# --- JSON output shape --------------------------------------------------------------


# Run in this order on one `pair`: each row's expected code holds after the rows above it.
JSON_CASES: list[tuple[str | None, list[str], int]] = [
    (None, ["init"], 0),
    (None, ["status"], 0),
    (None, ["validate"], 0),
    ("carol", ["register", "--role", "r", "--goal", "g"], 0),
    ("carol", ["register"], 0),  # unchanged: no commit, still a document
    ("dave", ["register", "--role", "r", "--goal", "g", "--number", "1"], 3),
    ("alice", ["register", "--number", "0"], 2),
    ("alice", ["claim", "task", "other"], 0),
    ("bob", ["claim", "task", "i-match"], 3),
    ("ghost", ["claim", "task", "i-match"], 4),
    (None, ["claim", "task", "i-match"], 4),
    ("alice", ["claim", "task", "a b"], 2),
    ("alice", ["claim", "task"], 2),
    ("alice", ["claim", "task", "x", "--ttl", "forever"], 2),
    ("alice", ["claim", "task", "x", "--note", "\x07"], 5),
    ("alice", ["renew", "task", "i-match"], 0),
    ("bob", ["renew", "task", "i-match"], 4),
    ("alice", ["renew", "task", "nothing"], 4),
    ("alice", ["release", "task", "i-match"], 0),
    ("alice", ["release", "task", "i-match"], 0),  # already released
    ("bob", ["release", "task", "i-match"], 4),
    ("alice", ["--remote", "nosuch", "status"], 2),
    (None, ["validate", "--ref", "no-such-ref"], 2),
    (None, ["nosuchcommand"], 2),
    (None, ["--timeout", "0", "status"], 2),
]


def test_every_command_prints_one_json_document(world: World, pair: tuple[Path, Path]) -> None:
    a, _ = pair
    for session, args, code in JSON_CASES:
        got, doc = jrun(a, *args, session=session)  # jrun checks the shape
        assert got == code, (args, doc)
        if code:
            assert doc["error"]["kind"] in {"usage", "conflict", "refused", "invalid"}, doc
        elif args[0] in ("claim", "renew", "release"):
            assert {"op", "changed", "commit", "attempts", "claim", "action"} <= set(doc), doc
    git(a, "remote", "set-url", "origin", str(world.root / "gone.git"))
    got, doc = jrun(a, "status")
    assert got == 6 and doc["error"]["kind"] == "remote"


def test_text_mode_errors_go_to_stderr(pair: tuple[Path, Path]) -> None:
    _, b = pair
    r = run(b, "claim", "task", "i-match", session="bob")
    assert r.code == 3
    assert r.out == ""
    assert r.err.startswith("gitcoord: ") and "alice" in r.err


def test_unexpected_errors_are_exit_1(a: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    register(a, "alice")

    def boom(*_: object, **__: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(claims, "claim", boom)
    err = fails(a, 1, "claim", "task", "x", session="alice")
    assert "RuntimeError: boom" in err["message"]
    monkeypatch.setenv("GITCOORD_DEBUG", "1")
    with pytest.raises(RuntimeError):
        run(a, "claim", "task", "x", session="alice")


# --- validate and broken branches ---------------------------------------------------


def _git_env(cwd: Path, env: dict[str, str], *args: str, data: bytes | None = None) -> str:
    proc = subprocess.run(
        ["git", *args],
        cwd=cwd,
        input=data,
        capture_output=True,
        env={**os.environ, **env},
        check=False,
    )
    if proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {proc.stderr.decode()}")
    return proc.stdout.decode().strip()


def hand_commit(world: World, writes: dict[str, bytes | None], message: str = "hand edit") -> str:
    """Push a commit made with plain git plumbing from a separate clone (no gitcoord)."""
    fixer = world.root / "fixer"
    if not fixer.exists():
        git(world.root, "clone", "-q", str(world.remote), str(fixer))
    git(fixer, "fetch", "-q", "origin", f"+refs/heads/{BRANCH}:refs/remotes/origin/{BRANCH}")
    parent = git(fixer, "rev-parse", f"refs/remotes/origin/{BRANCH}").strip()
    env = {"GIT_INDEX_FILE": str(world.root / "fixer.index")}
    _git_env(fixer, env, "read-tree", parent)
    for path, data in writes.items():
        if data is None:
            _git_env(fixer, env, "update-index", "--force-remove", path)
        else:
            blob = _git_env(fixer, env, "hash-object", "-w", "--stdin", data=data)
            _git_env(fixer, env, "update-index", "--add", "--cacheinfo", f"100644,{blob},{path}")
    tree = _git_env(fixer, env, "write-tree")
    commit = _git_env(fixer, env, "commit-tree", tree, "-p", parent, "-m", message)
    git(fixer, "push", "-q", "origin", f"{commit}:refs/heads/{BRANCH}")
    (world.root / "fixer.index").unlink()
    return commit


SESSIONS = "coordination/sessions"
CLAIM = at("coordination/claims/task/i-match.yaml")


def _replace(world: World, path: str, old: str, new: str) -> bytes:
    text = show(world.remote, path)
    assert old in text, text
    return text.replace(old, new).encode()


BREAKAGES: dict[str, tuple[Any, str, str]] = {
    # name: (writes(world), path, rule)
    "duplicate-number": (
        lambda w: {
            at(f"{SESSIONS}/bob.yaml"): _replace(
                w, at(f"{SESSIONS}/bob.yaml"), "number: 2", "number: 1"
            )
        },
        at(f"{SESSIONS}/bob.yaml"),
        "unique-number",
    ),
    "number-out-of-range": (
        lambda w: {
            at(f"{SESSIONS}/bob.yaml"): _replace(
                w, at(f"{SESSIONS}/bob.yaml"), "number: 2", "number: 99"
            )
        },
        at(f"{SESSIONS}/bob.yaml"),
        "number-range",
    ),
    "malformed-yaml": (
        lambda w: {at(f"{SESSIONS}/alice.yaml"): b"id: [alice\nnumber: 1\n"},
        at(f"{SESSIONS}/alice.yaml"),
        "yaml",
    ),
    "not-utf8": (
        lambda w: {at(f"{SESSIONS}/alice.yaml"): b"id: \xff\xfe\n"},
        at(f"{SESSIONS}/alice.yaml"),
        "yaml",
    ),
    "unknown-field": (
        lambda w: {
            at(f"{SESSIONS}/alice.yaml"): show(w.remote, at(f"{SESSIONS}/alice.yaml")).encode()
            + b"colour: blue\n"
        },
        at(f"{SESSIONS}/alice.yaml"),
        "schema",
    ),
    "claim-in-wrong-file": (
        lambda w: {at("coordination/claims/task/other.yaml"): show(w.remote, CLAIM).encode()},
        at("coordination/claims/task/other.yaml"),
        "path",
    ),
    "session-id-mismatch": (
        lambda w: {
            at(f"{SESSIONS}/carol.yaml"): _replace(
                w, at(f"{SESSIONS}/bob.yaml"), "number: 2", "number: 3"
            )
        },
        at(f"{SESSIONS}/carol.yaml"),
        "path",
    ),
    "stray-file": (
        lambda w: {f"{SESSIONS}/notes.txt": b"remember the milk\n"},
        f"{SESSIONS}/notes.txt",
        "layout",
    ),
    "unknown-top-level-entry": (
        lambda w: {"coordination/extra.yaml": b"a: 1\n"},
        "coordination/extra.yaml",
        "layout",
    ),
    "unregistered-holder": (
        lambda w: {CLAIM: _replace(w, CLAIM, "holder: alice", "holder: ghost")},
        CLAIM,
        "holder-registered",
    ),
    "config-deleted": (
        lambda w: {"coordination/config.yaml": None},
        "coordination/config.yaml",
        "layout",
    ),
}


@pytest.mark.parametrize("case", sorted(BREAKAGES))
def test_broken_branch_validate_refuse_and_status(
    world: World, pair: tuple[Path, Path], case: str
) -> None:
    a, b = pair
    good = tip(world.remote)
    make, path, rule = BREAKAGES[case]
    bad = hand_commit(world, make(world), f"break: {case}")

    def listed(problems: list[dict[str, str]]) -> bool:
        return any(p["path"] == path and p["rule"] == rule for p in problems)

    # validate lists the problem with its file and rule (JSON and text)
    err = fails(b, 5, "validate")
    assert err["kind"] == "invalid"
    assert listed(err["problems"]), err["problems"]
    r = run(b, "validate")
    assert r.code == 5 and r.out == ""
    assert f"{path}: " in r.err and f"[{rule}]" in r.err

    # mutations refuse to build on it; nothing is pushed
    for session, args in [
        ("alice", ["claim", "task", "another"]),
        ("alice", ["release", "task", "i-match"]),
        ("dave", ["register", "--role", "r", "--goal", "g"]),
    ]:
        refused = fails(a, 5, *args, session=session)
        assert "validate" in refused["message"], args
        assert listed(refused["problems"]), (args, refused)
    assert tip(world.remote) == bad

    # reads still work, and say what is wrong
    status = ok(b, "status")
    assert status["tip"] == bad
    assert listed(status["problems"]), status["problems"]

    # the last good commit validates by --ref, the broken one does not
    git(b, "fetch", "-q", "origin")
    assert ok(b, "validate", "--ref", good or "") == {"valid": True, "problems": []}
    assert listed(fails(b, 5, "validate", "--ref", bad)["problems"])
    assert listed(fails(b, 5, "validate", "--ref", f"origin/{BRANCH}")["problems"])


@pytest.mark.parametrize(
    "case",
    [
        "duplicate-number",
        "malformed-yaml",
        "config-deleted",
    ],
)
def test_text_status_points_at_problems(world: World, pair: tuple[Path, Path], case: str) -> None:
    _, b = pair
    make, _, _ = BREAKAGES[case]
    hand_commit(world, make(world), f"break: {case}")
    r = run(b, "status")
    assert r.code == 0
    assert "PROBLEMS" in r.out and "gitcoord validate" in r.out


def test_validate_lists_every_problem(world: World, pair: tuple[Path, Path]) -> None:
    _, b = pair
    hand_commit(
        world,
        {
            "coordination/extra.yaml": b"a: 1\n",
            at(f"{SESSIONS}/alice.yaml"): b"id: [alice\n",
            at(f"{SESSIONS}/bob.yaml"): _replace(
                world, at(f"{SESSIONS}/bob.yaml"), "number: 2", "number: 50"
            ),
        },
    )
    err = fails(b, 5, "validate")
    found = {(p["path"], p["rule"]) for p in err["problems"]}
    assert {
        ("coordination/extra.yaml", "layout"),
        (at(f"{SESSIONS}/alice.yaml"), "yaml"),
        (at(f"{SESSIONS}/bob.yaml"), "number-range"),
    } <= found
    assert err["message"].startswith(f"{len(err['problems'])} problem(s)")


def test_fixing_the_branch_unblocks_writes(world: World, pair: tuple[Path, Path]) -> None:
    a, _ = pair
    hand_commit(world, {"coordination/extra.yaml": b"a: 1\n"})
    fails(a, 5, "claim", "task", "other", session="alice")
    hand_commit(world, {"coordination/extra.yaml": None}, "fix: remove extra.yaml")
    assert ok(a, "validate") == {"valid": True, "problems": []}
    assert ok(a, "claim", "task", "other", session="alice")["changed"] is True


def test_validate_ref_errors(world: World, pair: tuple[Path, Path]) -> None:
    a, _ = pair
    fails(a, 2, "validate", "--ref", "no-such-ref")
    blob = git(world.remote, "rev-parse", f"{BRANCH}:coordination/config.yaml").strip()
    git(a, "fetch", "-q", "origin")
    fails(a, 2, "validate", "--ref", blob)
    fails(a, 2, "validate", "--ref", "origin/gitcoord", str(a))


def _checkout_branch(world: World, dest: str) -> Path:
    path = world.root / dest
    git(world.root, "clone", "-q", "--branch", BRANCH, str(world.remote), str(path))
    return path


def test_validate_path_on_a_directory(world: World, pair: tuple[Path, Path]) -> None:
    a, _ = pair
    snap = _checkout_branch(world, "snap")
    assert (snap / "coordination" / "config.yaml").is_file()
    assert ok(a, "validate", str(snap)) == {"valid": True, "problems": []}

    bob = snap / at(f"{SESSIONS}/bob.yaml")
    bob.write_text(bob.read_text().replace("number: 2", "number: 1"))
    (snap / CLAIM).write_text("holder: [\n")
    (snap / "coordination" / "junk").mkdir()
    err = fails(a, 5, "validate", str(snap))
    found = {(p["path"], p["rule"]) for p in err["problems"]}
    assert found == {
        (at(f"{SESSIONS}/bob.yaml"), "unique-number"),
        (CLAIM, "yaml"),
        ("coordination/junk", "layout"),
    }
    # a directory is read as it is on disk: the (valid) branch itself is not consulted
    assert ok(a, "validate") == {"valid": True, "problems": []}
    (snap / "coordination" / "junk").rmdir()
    (snap / CLAIM).unlink()
    err = fails(a, 5, "validate", str(snap))
    assert {(p["path"], p["rule"]) for p in err["problems"]} == {
        (at(f"{SESSIONS}/bob.yaml"), "unique-number")
    }


def test_validate_path_errors(world: World, a: Path) -> None:
    fails(a, 2, "validate", str(world.root / "does-not-exist"))
    f = world.root / "file.txt"
    f.write_text("x")
    fails(a, 2, "validate", str(f))


def test_validate_relative_path_is_relative_to_dash_c(
    world: World, pair: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, _ = pair
    git(a, "worktree", "add", "-q", "snap", f"origin/{BRANCH}")
    monkeypatch.chdir(world.root)  # "snap" does not exist here, only inside `a`
    assert ok(a, "validate", "snap") == {"valid": True, "problems": []}


def test_reads_of_a_broken_branch_need_no_session(world: World, pair: tuple[Path, Path]) -> None:
    hand_commit(world, {"coordination/extra.yaml": b"a: 1\n"})
    c = world.clone("c")
    assert ok(c, "status")["initialised"] is True
    fails(c, 5, "validate")
