"""The small wrong results of issue #15 (item 4), each on real git, each as a user met it.

- a message to yourself was "sent" and never shown: refused, saying why;
- `register --number N` moved a session but kept its old slot's role;
- registering without a role took whichever slot's role was free (after a lost race,
  another one's), and that slot's own session then got exit 3;
- `init --template` on an existing branch ignored the template without a word;
- no command showed which template roles are vacant;
- finishing a task left its milestone at 0%;
- a step meant for a human could be ticked by any session, and never unticked;
- `log --op clam` returned nothing;
- `heartbeat ... 40%` was refused with a confusing message;
- `approval request --pr` said nothing when `gh` is missing;
- `next` handed a service developer the SSL task.
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from conftest import World, git, run
from reliability import commit_files, show, tip

from gitcoord.domain import kinds, yamlio
from gitcoord.domain.models import Milestone

HUMAN = "test@example.com"  # the fixtures' git identity


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


def _slots(a: Path) -> dict[int, dict[str, Any]]:
    return {s["number"]: s for s in ok(a, "status")["vacant"]}


def test_a_message_to_yourself_is_refused(world: World) -> None:
    a = world.clone("a")
    ok(a, "init")
    ok(a, "register", "--role", "r", "--goal", "g", session="alice")
    ok(a, "register", "--role", "r", "--goal", "g", session="bob")
    before = commits(world)
    for to in ("alice", "1"):
        err = fails(a, 4, "send", to, "note", "to self", session="alice")
        assert "itself" in err["message"], err
    assert commits(world) == before
    ok(a, "send", "bob", "hello", "there", session="alice")  # others still reach


def test_moving_to_another_template_slot_takes_its_role(world: World) -> None:
    a = world.clone("a")
    ok(a, "init", "--template", "dev-12")
    slots = _slots(a)
    got = ok(a, "register", "--number", "4", session="dev")["session"]
    assert (got["number"], got["role"]) == (4, slots[4]["role"])
    moved = ok(a, "register", "--number", "6", session="dev")["session"]
    assert (moved["number"], moved["role"], moved["goal"]) == (
        6,
        slots[6]["role"],
        slots[6]["goal"],
    )
    # a role of its own is kept when it moves; a role given with the move wins
    ok(a, "register", "--number", "7", "--role", "Mine", session="own")
    kept = ok(a, "register", "--number", "8", session="own")["session"]
    # (its goal was its slot's: the new slot's goal replaces it)
    assert (kept["number"], kept["role"], kept["goal"]) == (8, "Mine", slots[8]["goal"])
    given = ok(a, "register", "--number", "9", "--role", "New", session="dev")["session"]
    assert (given["number"], given["role"]) == (9, "New")
    # registering again without --number keeps the number and the role
    again = ok(a, "register", session="dev")
    assert again["changed"] is False and again["session"]["number"] == 9


def test_no_role_takes_no_slot_it_did_not_ask_for(world: World) -> None:
    """A session that gives no role gets a template slot's role only by asking for the
    slot (--number) or being its suggested session: never whichever number was free
    when its push landed — after a lost race, another slot's, whose own session then
    found its number taken."""
    a = world.clone("a")
    ok(a, "init", "--template", "marketing-12")
    before = commits(world)
    err = fails(a, 2, "register", session="late-comer")
    assert "--number N" in err["message"] and "vacant: 1: " in err["message"], err
    assert commits(world) == before
    # the slot's own session registers into it
    mine = ok(a, "register", session="marketing-research-1")["session"]
    assert mine["number"] == 2
    # asking for a slot takes its role; a role of one's own takes a free number
    assert ok(a, "register", "--number", "3", session="late-comer")["session"]["number"] == 3
    ok(a, "register", "--role", "Helper", "--goal", "g", session="helper")
    # a slot's own session, whose slot was taken, is told so and how to go on
    err = fails(a, 3, "register", session="marketing-research-2")
    assert "the template's slot for marketing-research-2" in err["message"], err


def test_init_with_a_template_on_an_existing_branch_says_it_was_not_applied(
    world: World,
) -> None:
    a = world.clone("a")
    ok(a, "init", "--template", "marketing-12")
    before = commits(world)
    doc = ok(a, "init", "--template", "dev-12")
    assert doc["created"] is False and doc["template"] == "marketing-12"
    [warning] = doc["warnings"]
    assert "--template dev-12 was NOT applied" in warning and "--ref NAME" in warning
    r = run(a, "init", "--template", "dev-12")
    assert r.code == 0 and "NOT applied" in r.out and "NOT applied" in r.err, r
    assert commits(world) == before
    # the same template, or none, is simply "already initialised"
    assert "warnings" not in ok(a, "init", "--template", "marketing-12")
    assert "warnings" not in ok(a, "init")


def test_status_shows_the_vacant_template_roles(world: World) -> None:
    a = world.clone("a")
    ok(a, "init", "--template", "dev-12")
    assert sorted(_slots(a)) == list(range(1, 13))
    ok(a, "register", session="master-orchestrator")
    ok(a, "register", "--number", "2", session="dns")
    vacant = _slots(a)
    assert 12 not in vacant and 2 not in vacant and len(vacant) == 10
    assert vacant[1]["session"] == "deploy-church-guidance"
    text = run(a, "status").out
    assert "VACANT" in text and "Deployment - Church Guidance Deployment" in text, text
    plain = world.local_repo("plain")  # a branch without a template has no roles to fill
    ok(plain, "init")
    assert ok(plain, "status")["vacant"] == []


def test_finishing_a_task_moves_its_milestone(world: World) -> None:
    a = world.clone("a")
    ok(a, "init", "--template", "dev-12")
    ok(a, "register", "--role", "Deployment", "--goal", "g", session="dev")
    tasks = ok(a, "task", "list")["tasks"]
    first = next(t for t in tasks if t["milestone"] == "church-guidance-launch")
    ok(a, "claim", "task", first["id"], session="dev")
    done = ok(a, "task", "done", first["id"], session="dev")
    # 3 steps and 2 tasks: one of five done
    assert done["milestone"] == {
        "name": "church-guidance-launch",
        "progress": 20.0,
        "steps_done": 0,
        "steps_total": 3,
        "tasks_done": 1,
        "tasks_total": 2,
    }
    [listed] = ok(a, "milestone", "list")["milestones"]
    [shown] = ok(a, "status")["milestones"]
    assert listed["progress"] == shown["progress"] == 20.0
    assert "1/2 tasks done" in ok(a, "state")["markdown"]
    second = next(t for t in tasks if t["milestone"] == "church-guidance-launch" and t != first)
    ok(a, "claim", "task", second["id"], session="dev")
    text = run(a, "task", "done", second["id"], session="dev").out
    assert "(milestone church-guidance-launch: 40.0%)" in text, text


def test_a_human_step_is_the_humans_and_a_tick_can_be_undone(world: World) -> None:
    a = world.clone("a")
    ok(a, "init", "--template", "marketing-12", "--approver", HUMAN)
    ok(a, "register", session="marketing-orchestrator")
    ok(a, "register", session="marketing-research-1")
    [m] = ok(a, "milestone", "list")["milestones"]
    step = m["steps"][2]
    assert (step["name"], step["by"]) == ("Human approves final registry", "human")
    before = commits(world)
    err = fails(a, 4, "milestone", "done", "activation", "3", session="marketing-orchestrator")
    assert "ticked by a human" in err["message"], err
    assert commits(world) == before
    # the approver ticks it, as a person (no session)
    got = ok(a, "milestone", "done", "activation", "3")["milestone"]
    assert got["steps"][2]["done_by"] == HUMAN
    # any session ticks a step that names no one; only whoever ticked it unticks it
    ok(a, "milestone", "done", "activation", "2", session="marketing-orchestrator")
    err = fails(a, 4, "milestone", "undo", "activation", "2", session="marketing-research-1")
    assert "marketing-orchestrator" in err["message"], err
    fails(a, 4, "milestone", "undo", "activation", "3", session="marketing-orchestrator")
    undone = ok(a, "milestone", "undo", "activation", "2", session="marketing-orchestrator")
    assert undone["milestone"]["steps"][1].get("done_at") is None
    assert undone["milestone"]["progress"] == 25.0  # the human's step is still done
    ok(a, "milestone", "undo", "activation", "3")  # the approver, too
    # a session's own milestone, with a step for one session only
    ok(
        a,
        "milestone",
        "add",
        "launch",
        "--step",
        "Build",
        "--step",
        "Sign off",
        "--by",
        "2=marketing-orchestrator",
        session="marketing-research-1",
    )
    fails(a, 4, "milestone", "done", "launch", "Sign off", session="marketing-research-1")
    ok(a, "milestone", "done", "launch", "Sign off", session="marketing-orchestrator")
    bad = ("--step", "a", "--by", "2=bob")  # step 2 of one step
    fails(a, 2, "milestone", "add", "x", *bad, session="marketing-research-1")
    assert ok(a, "log", "--op", "milestone-undo")["entries"]


def test_the_hook_refuses_a_session_ticking_a_human_step(world: World) -> None:
    a = world.clone("a")
    ok(a, "init", "--template", "marketing-12", "--approver", HUMAN)
    ok(a, "register", session="marketing-orchestrator")
    ok(a, "milestone", "done", "activation", "1", session="marketing-orchestrator")
    assert run(a, "hooks", "install", "--server", str(world.remote)).code == 0
    git(a, "fetch", "-q", "origin")
    now = tip(world.remote)
    assert now is not None
    path = kinds.milestone_path("activation")
    m = Milestone.model_validate(yamlio.load(show(a, now, path)))
    at = datetime.now(timezone.utc).replace(microsecond=0)

    def forged(steps: list[Any], who: str) -> str:
        doc = m.model_copy(update={"steps": steps})
        os.environ["GIT_AUTHOR_EMAIL"] = os.environ["GIT_COMMITTER_EMAIL"] = f"{who}@x.example"
        try:
            return commit_files(
                a,
                {path: yamlio.dump(doc)},
                parent=now,
                message=f"tick\n\nGitcoord-Op: milestone-done\nGitcoord-Session: {who}",
            )
        finally:
            os.environ["GIT_AUTHOR_EMAIL"] = os.environ["GIT_COMMITTER_EMAIL"] = HUMAN

    human = list(m.steps)
    human[2] = human[2].model_copy(update={"done_by": "marketing-orchestrator", "done_at": at})
    undo = list(m.steps)
    undo[0] = undo[0].model_copy(update={"done_by": None, "done_at": None})
    for steps, who in ((human, "marketing-orchestrator"), (undo, "marketing-research-1")):
        new = forged(steps, who)
        r = run(a, "validate", "--range", f"{now}..{new}")
        assert r.code == 5 and "[milestone]" in r.err, r.err
        git(a, "push", "origin", f"{new}:refs/heads/gitcoord", check=False)
        assert tip(world.remote) == now
    # the one who ticked it unticks it: that passes
    new = forged(undo, "marketing-orchestrator")
    assert run(a, "validate", "--range", f"{now}..{new}").code == 0


def test_log_refuses_an_unknown_operation(world: World) -> None:
    a = world.clone("a")
    ok(a, "init")
    err = fails(a, 2, "log", "--op", "clam")
    assert "did you mean claim?" in err["message"] and "handoff" in err["message"], err
    assert ok(a, "log", "--op", "claim")["entries"] == []


def test_a_heartbeat_takes_a_percent_sign(world: World) -> None:
    a = world.clone("a")
    ok(a, "init")
    ok(a, "register", "--role", "r", "--goal", "g", session="alice")
    beat = ok(a, "heartbeat", "implementing", "i-match", "tests", "40%", session="alice")
    assert beat["heartbeat"]["progress"] == 40
    r = run(a, "heartbeat", "implementing", "i-match", "tests", "4o%", session="alice")
    assert r.code == 2 and "give a whole number from 0 to 100, e.g. 40 or 40%" in r.err, r.err
    assert run(a, "heartbeat", "x", "y", "z", "101%", session="alice").code == 2


def test_approval_request_pr_says_when_gh_is_missing(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = world.clone("a")
    ok(a, "init")
    ok(a, "register", "--role", "r", "--goal", "g", session="alice")
    bare = tmp_path / "bin"
    bare.mkdir()
    git_path = shutil.which("git")
    assert git_path is not None
    (bare / "git").symlink_to(git_path)
    monkeypatch.setenv("PATH", str(bare))  # git, and no gh
    doc = ok(a, "approval", "request", "Ship it", "--pr", session="alice")
    assert doc["pull_request_opened"] is False
    [warning] = doc["warnings"]
    assert "`gh` (the GitHub CLI) is not installed" in warning
    assert f"approval grant {doc['approval']['id']}" in warning
    r = run(a, "approval", "request", "Again", "--pr", session="alice")
    assert r.code == 0 and "not installed" in r.err, r.err
    assert "warnings" not in ok(a, "approval", "request", "No PR asked", session="alice")


def test_next_prefers_the_work_the_role_speaks_of(world: World) -> None:
    a = world.clone("a")
    ok(a, "init", "--template", "dev-12")
    ok(a, "register", session="service-i-match")  # Services - I-MATCH Development
    got = ok(a, "next", session="service-i-match")
    assert got["task"]["title"] == "Complete i-match service", got
    assert "i-match" in got["role_words"]
    # the domain session is offered the SSL/domain task before the other P0s
    ok(a, "register", session="deploy-domains")  # Deployment - Domain Configuration
    assert ok(a, "next", session="deploy-domains")["task"]["title"] == "Complete SSL/domain setup"
    # --any: the most urgent task, whatever the role
    first = ok(a, "next", "--any", session="service-i-match")
    assert first["task"]["title"] == "Deploy church-guidance-ministry"
    assert first["role_words"] == []
    # a role that matches nothing gets the most urgent
    ok(a, "register", "--role", "Generalist", "--goal", "g", session="gen")
    assert ok(a, "next", session="gen")["task"]["title"] == "Deploy church-guidance-ministry"
    # claimed through next: the matching one
    taken = ok(a, "next", "--claim", session="service-i-match")
    assert taken["claimed"] is True and taken["task"]["title"] == "Complete i-match service"


def test_every_operation_gitcoord_writes_is_one_log_knows() -> None:
    """`log --op` refuses what is not in KNOWN_OPS: every operation a commit of gitcoord's
    may name must be there (read from the source: `Change("op", ...)`, `op = "..."`, and
    the `*_OP` constants)."""
    import ast

    from conftest import REPO_ROOT

    from gitcoord.audit.history import KNOWN_OPS

    found: set[str] = set()
    for path in (REPO_ROOT / "gitcoord").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and getattr(node.func, "id", None) == "Change"
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                found.add(node.args[0].value)
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
                for target in node.targets:
                    name = getattr(target, "id", "")
                    if name == "op" or name.endswith("_OP"):
                        found.add(node.value.value)
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Tuple):
                for target in node.targets:  # op, generation, acquired = "claim", 1, now
                    if isinstance(target, ast.Tuple) and target.elts:
                        first = target.elts[0]
                        value = node.value.elts[0]
                        if getattr(first, "id", "") == "op" and isinstance(value, ast.Constant):
                            found.add(value.value)
    found.discard("next")  # `next` without --claim writes nothing: no commit says it
    assert {"claim", "renew", "takeover", "handoff", "quarantine", "restore"} <= found
    assert found <= set(KNOWN_OPS), found - set(KNOWN_OPS)
