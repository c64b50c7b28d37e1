"""One grammar for claim names that cover items (issue #15, item 3), on real git.

- a batch's items are written as people write them (`1-25`, `1..25`, `1,3,7`, `1-5,9`,
  `prospects`, `prospects:*`); any two claims that can cover one item conflict, whatever
  the spelling, and `doctor`, `validate` and `metrics` agree with the claim check;
- a batch name outside the grammar is refused (exit 2) with the accepted forms;
- a path claim of a folder (`docs/`) covers everything below it;
- a claim type neither in use nor common is questioned (`claim i-match task`);
- a branch written before the grammar still loads: its claims renew and release,
  `validate` notes them, and the server hook refuses a crafted overlapping claim.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from conftest import World, git, run
from reliability import commit_files, show, tip

from gitcoord.domain import kinds, overlap, yamlio
from gitcoord.domain.models import Claim

HOUR = timedelta(hours=1)


def ok(cwd: Path, *args: str, session: str | None = None) -> dict[str, Any]:
    r = run(cwd, "--json", *args, session=session)
    assert r.code == 0, (args, r.code, r.out, r.err)
    doc = json.loads(r.out)
    assert isinstance(doc, dict)
    return doc


def fails(cwd: Path, code: int, *args: str, session: str | None = None) -> dict[str, Any]:
    r = run(cwd, "--json", *args, session=session)
    assert r.code == code, (args, r.code, r.out, r.err)
    err: dict[str, Any] = json.loads(r.out)["error"]
    return err


def commits(world: World) -> int:
    return int(git(world.remote, "rev-list", "--count", "gitcoord").strip())


@pytest.fixture
def pair(world: World) -> Path:
    a = world.clone("a")
    ok(a, "init")
    for who in ("alice", "bob", "carol"):
        ok(a, "register", "--role", f"role of {who}", "--goal", "g", session=who)
    return a


def test_every_spelling_of_a_shared_item_conflicts(pair: Path, world: World) -> None:
    a = pair
    ok(a, "claim", "batch", "prospects:1-25", session="alice")
    before = commits(world)
    # the cases: each was granted while prospects:1-25 was held
    for name in ("prospects:1,3", "prospects:1..5", "prospects", "prospects:*", "prospects:30,2"):
        err = fails(a, 3, "claim", "batch", name, session="bob")
        assert (err["holder"], err["resource"]) == ("alice", "batch/prospects:1-25"), err
    assert commits(world) == before
    # what shares no item is granted, under one spelling of its items
    got = ok(a, "claim", "batch", "prospects:40..45,26", session="bob")["claim"]
    assert got["resource"] == "batch/prospects:26,40-45"
    got = ok(a, "claim", "batch", "prospects:27-30,31", session="bob")["claim"]
    assert got["resource"] == "batch/prospects:27-31"
    # ...which also renews and releases under the spelling it was claimed with
    assert ok(a, "release", "batch", "prospects:26,40..45", session="bob")["action"] == "released"
    # a list conflicts where one of its items does, in both directions
    err = fails(a, 3, "claim", "batch", "prospects:28-28,50", session="carol")
    assert err["resource"] == "batch/prospects:27-31", err
    ok(a, "claim", "batch", "emails", session="carol")  # a whole set of another set
    err = fails(a, 3, "claim", "batch", "emails:18", session="alice")
    assert (err["holder"], err["resource"]) == ("carol", "batch/emails"), err
    # the whole set, once free, conflicts with every part of it
    ok(a, "release", "batch", "prospects:1-25", session="alice")
    ok(a, "release", "batch", "prospects:27-31", session="bob")
    ok(a, "claim", "batch", "prospects:*", session="alice")
    live = {c["resource"] for c in ok(a, "status")["claims"] if c["status"] == "live"}
    assert "batch/prospects" in live and "batch/prospects:*" not in live, live
    err = fails(a, 3, "claim", "batch", "prospects:99", session="bob")
    assert err["resource"] == "batch/prospects", err
    assert ok(a, "validate")["valid"] is True
    assert ok(a, "metrics")["work_collisions"] == 0


@pytest.mark.parametrize(
    "name",
    ["prospects:a-c", "prospects:1-", "prospects:1,,3", "prospects:", "pro/spects:1-5", "p:5-1"],
)
def test_a_batch_outside_the_grammar_is_refused_with_the_forms(
    pair: Path, world: World, name: str
) -> None:
    before = commits(world)
    err = fails(pair, 2, "claim", "batch", name, session="alice")
    assert "SET:1-25 or SET:1..25" in err["message"] and "SET:1,3,7" in err["message"], err
    assert commits(world) == before


def test_a_folder_path_claim_covers_everything_below_it(pair: Path) -> None:
    a = pair
    got = ok(a, "claim", "path", "docs/", session="alice")["claim"]
    assert got["resource"] == "path/docs/**"
    r = run(a, "guard", "docs/guide/intro.md", session="bob")
    assert r.code == 3 and "alice" in r.err, r.err
    assert run(a, "guard", "src/docs.md", session="bob").code == 0
    err = fails(a, 3, "claim", "path", "docs/guide/**", session="bob")
    assert err["resource"] == "path/docs/**", err
    assert ok(a, "release", "path", "docs/", session="alice")["action"] == "released"


def test_a_swapped_type_and_name_is_questioned(pair: Path, world: World) -> None:
    a = pair
    before = commits(world)
    err = fails(a, 2, "claim", "i-match", "task", session="alice")
    assert "did you mean `claim task i-match`?" in err["message"], err
    assert "--new-type" in err["message"]
    err = fails(a, 2, "claim", "widgets", "w1", session="alice")
    assert "new on this branch" in err["message"] and "--new-type" in err["message"], err
    assert commits(world) == before
    ok(a, "claim", "task", "i-match", session="alice")  # the common types pass
    ok(a, "claim", "widgets", "w1", "--new-type", session="alice")  # insisted
    ok(a, "claim", "widgets", "w2", session="bob")  # in use now: not questioned


def _legacy(a: Path, now: str, name: str, holder: str) -> dict[str, bytes]:
    """A claim file as a gitcoord without the item grammar wrote it."""
    at = datetime.now(timezone.utc).replace(microsecond=0)
    doc = Claim(
        type="batch",
        name=name,
        holder=holder,
        generation=1,
        acquired_at=at,
        expires_at=at + HOUR,
    )
    return {kinds.claim_path("batch", name): yamlio.dump(doc)}


def test_a_branch_from_before_the_grammar_still_works(pair: Path, world: World) -> None:
    """Claims an older gitcoord let through — a name the grammar refuses, and a whole set
    with one of its ranges held by another — load; their holders go on working; validate
    and doctor say what they are; the claim check and metrics agree."""
    a = pair
    base = tip(world.remote)
    assert base is not None
    first = commit_files(
        a,
        {**_legacy(a, base, "prospects:a-c", "alice"), **_legacy(a, base, "leads", "alice")},
        parent=base,
        message="claims\n\nGitcoord-Op: claim\nGitcoord-Session: alice\n"
        "Gitcoord-Resource: batch/leads",
    )
    second = commit_files(
        a,
        _legacy(a, first, "leads:1-3", "bob"),
        parent=first,
        message="claim\n\nGitcoord-Op: claim\nGitcoord-Session: bob\n"
        "Gitcoord-Resource: batch/leads:1-3",
    )
    git(a, "push", "-q", "origin", f"{second}:refs/heads/gitcoord")
    # it loads, and every session still writes
    assert {c["resource"] for c in ok(a, "status")["claims"]} >= {
        "batch/prospects:a-c",
        "batch/leads",
        "batch/leads:1-3",
    }
    ok(a, "claim", "task", "t1", session="carol")
    ok(a, "renew", "batch", "prospects:a-c", session="alice")
    ok(a, "renew", "batch", "leads", session="alice")  # the pair was there before
    # validate and doctor name the overlap (the claim check's own answer); the old name
    # is a note, not a problem
    r = run(a, "validate")
    assert r.code == 5 and "batch/leads" in r.err and "[overlap]" in r.err, r.err
    assert "prospects:a-c" not in r.err
    r = run(a, "doctor")
    assert r.code == 5 and "[overlap]" in r.err, r.err
    # metrics replays the history with the same answer: two holders of one item
    assert ok(a, "metrics")["work_collisions"] == 1
    # nobody may claim a third part of it, and the old name is not claimed anew
    err = fails(a, 3, "claim", "batch", "leads:2", session="carol")
    assert err["holder"] in ("alice", "bob"), err
    fails(a, 2, "claim", "batch", "prospects:d-f", session="carol")
    ok(a, "release", "batch", "leads:1-3", session="bob")
    r = run(a, "--json", "validate")
    assert r.code == 0, r.err
    warned = json.loads(r.out)["warnings"]
    assert len(warned) == 1 and "prospects%3Aa-c" in warned[0], warned
    assert ok(a, "release", "batch", "prospects:a-c", session="alice")["action"] == "released"


def test_the_hook_refuses_a_crafted_overlapping_claim(pair: Path, world: World) -> None:
    a = pair
    ok(a, "claim", "batch", "prospects:1-25", session="alice")
    assert run(a, "hooks", "install", "--server", str(world.remote)).code == 0
    git(a, "fetch", "-q", "origin")
    now = tip(world.remote)
    assert now is not None
    for name in ("prospects:3,9", "prospects:*", "prospects:10..12"):
        forged = commit_files(
            a,
            _legacy(a, now, name, "bob"),
            parent=now,
            message="claim\n\nGitcoord-Op: claim\nGitcoord-Session: bob",
        )
        r = run(a, "validate", "--range", f"{now}..{forged}")
        assert r.code == 5 and "[overlap]" in r.err, r.err
        push = git(a, "push", "origin", f"{forged}:refs/heads/gitcoord", check=False)
        assert tip(world.remote) == now, push
    # a new claim of a name outside the grammar is refused by the hook too
    forged = commit_files(
        a,
        _legacy(a, now, "emails:x-y", "bob"),
        parent=now,
        message="claim\n\nGitcoord-Op: claim\nGitcoord-Session: bob",
    )
    r = run(a, "validate", "--range", f"{now}..{forged}")
    assert r.code == 5 and "[claim-name]" in r.err and "SET:1,3,7" in r.err, r.err
    assert show(a, now, kinds.claim_path("batch", "prospects:1-25"))


def test_the_grammar_itself() -> None:
    cover = overlap.overlaps
    assert cover("batch", "prospects:1-25", "prospects:1,3")
    assert cover("batch", "prospects:1-25", "prospects:1..5")
    assert cover("batch", "prospects:1-25", "prospects")
    assert cover("batch", "prospects:1-25", "prospects:*")
    assert cover("batch", "prospects:1-5,9", "prospects:8-9")
    assert not cover("batch", "prospects:1-5,9", "prospects:6-8")
    assert not cover("batch", "prospects:1-25", "prospects:26-50")
    assert not cover("batch", "prospects:1-25", "emails:1-25")
    # other types: a bare name covers its parts; parts that are not items only themselves
    assert cover("service", "api", "api:v2")
    assert not cover("service", "api:v2", "api:v3")
    assert not cover("task", "t1", "t10")
    assert overlap.canonical("prospects:9,1..3,2") == "prospects:1-3,9"
    assert overlap.canonical("prospects:*") == "prospects"
    assert overlap.items_problem("service", "api:1.2") is None  # a version, not items
    assert overlap.items_problem("service", "api:3-1") is not None
    assert overlap.folder_glob("docs/") == "docs/**"
    assert overlap.folder_glob("src/api/**") == "src/api/**"
