"""A versioned branch format: a newer branch is refused with a message, an older one upgraded.

`config.yaml`'s `format` says which gitcoord can read the branch. What format 2 adds
(`leave`, `max_lease_hours`) is written only on a branch at format 2, so a branch left at
format 1 stays readable by every client that reads format 1; `gitcoord upgrade` moves it
forward in one commit, which the verifier holds to the config rules like any other.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import World, git, run
from reliability import REF, hand_push, show, tip

from gitcoord.domain import kinds
from gitcoord.domain.models import FORMAT
from gitcoord.version import __version__

CONFIG = kinds.config_path()


def with_format(
    clone: Path, world: World, value: int, extra: bytes = b"", sessions: tuple[str, ...] = ()
) -> None:
    """Set the branch's format by hand, its files moved to that format's folders (flat
    below 4); below 3, also take `sessions`' keys off (a branch that old never held any)."""
    git(clone, "fetch", "-q", "origin")
    now = tip(world.remote)
    assert now is not None
    text = show(clone, now, CONFIG)
    lines = [ln for ln in text.splitlines(keepends=True) if not ln.startswith(b"format:")]
    files: dict[str, bytes | None] = {CONFIG: b"format: %d\n" % value + b"".join(lines) + extra}
    for path in git(clone, "ls-tree", "-r", "--name-only", now).split():
        kind = kinds.kind_at(path)
        target = kind.path(kind.key_at(path), fmt=value) if kind and not kind.single else path
        if target != path:
            files[path], files[target] = None, show(clone, now, path)
    for sid in sessions if value < 3 else ():
        at = kinds.session_path(sid, fmt=value)
        doc = (files.get(at) or show(clone, now, at)).splitlines(keepends=True)
        files[at] = b"".join(ln for ln in doc if not ln.startswith(b"key:"))
    hand_push(clone, files)


def test_a_newer_format_is_refused_with_the_version_to_install(world: World) -> None:
    a = world.clone("a")
    assert run(a, "init").code == 0
    assert run(a, "register", "--role", "r", "--goal", "g", session="s1").code == 0
    with_format(a, world, FORMAT + 1, b"a_field_from_the_future: true\n")
    want = f"this branch uses format {FORMAT + 1}; this gitcoord ({__version__}) reads formats"
    r = run(a, "claim", "task", "x", session="s1")
    assert r.code == 5 and want in r.err and "install a newer gitcoord" in r.err, r.err
    r = run(a, "status")
    assert want in r.out, r.out
    r = run(a, "validate")
    assert r.code == 5 and "[format]" in r.err, r.err


def test_an_old_branch_is_upgraded_before_what_the_new_format_adds(world: World) -> None:
    a = world.clone("a")
    assert run(a, "init").code == 0
    assert b"format: %d\n" % FORMAT in show(world.remote, REF, CONFIG)  # new branches: newest
    assert run(a, "register", "--role", "r", "--goal", "g", session="s1").code == 0
    with_format(a, world, 1, sessions=("s1",))  # a hand edit, as an old branch would be
    old = tip(world.remote)
    assert run(a, "claim", "task", "x", session="s1").code == 0  # format 1 works as ever
    r = run(a, "leave", session="s1")
    assert r.code == 4 and "format 1" in r.err and "gitcoord upgrade" in r.err, r.err
    r = run(a, "upgrade")  # speaking for no session, by no approver: the config rules say no
    assert r.code == 5 and "[session-trailer]" in r.err, r.err
    r = run(a, "upgrade", session="s1")  # no approvers listed: any registered session may
    assert r.code == 0 and f"from format 1 to {FORMAT}" in r.out, r.out
    again = run(a, "upgrade", session="s1").out.strip()
    assert again == f"the branch is at format {FORMAT} already"
    assert run(a, "leave", session="s1").code == 0
    # gitcoord's own commits from the old branch on, upgrade included, pass the verifier
    assert run(a, "validate", "--range", f"{old}..{tip(world.remote)}").code == 0


def test_what_a_new_format_adds_is_refused_on_an_old_branch(world: World) -> None:
    a = world.clone("a")
    assert run(a, "init").code == 0
    assert run(a, "register", "--role", "r", "--goal", "g", session="s1").code == 0
    with_format(a, world, 1, sessions=("s1",))
    assert run(a, "hooks", "install", "--server", str(world.remote)).code == 0
    git(a, "fetch", "-q", "origin")
    now = tip(world.remote)
    assert now is not None
    left = show(a, now, kinds.session_path("s1", fmt=1)) + b"left_at: '2020-01-01T00:00:00Z'\n"
    r = run(a, "validate", "--range", f"{now}..{_commit(a, now, left)}")
    assert r.code == 5 and "[format]" in r.err and "gitcoord upgrade" in r.err, r.err


def _commit(clone: Path, parent: str, session_yaml: bytes) -> str:
    from reliability import commit_files

    return commit_files(
        clone,
        {kinds.session_path("s1", fmt=1): session_yaml},
        parent=parent,
        message="leave by hand\n\nGitcoord-Op: leave\nGitcoord-Session: s1",
    )


def test_upgrade_moves_a_flat_branch_into_sharded_folders(world: World) -> None:
    """Format 3 -> 4: one commit moves every document (messages included) from its flat
    folder to its sharded one, bytes unchanged; the server hook and `validate --range`
    accept it, and everything reads as before: claims, tasks, inbox (nothing read turns
    unread), replies to messages sent before."""
    a = world.clone("a")
    assert run(a, "init").code == 0
    for sid in ("s1", "s2"):
        assert run(a, "register", "--role", "r", "--goal", "g", session=sid).code == 0
    with_format(a, world, 3)
    assert run(a, "hooks", "install", "--server", str(world.remote)).code == 0
    old = tip(world.remote)
    # an old branch is written as it is: flat, and the hook holds it to its format
    assert run(a, "claim", "task", "x", session="s1").code == 0
    assert run(a, "task", "add", "write the docs", session="s1").code == 0
    first = run(a, "--json", "send", "s2", "hello", "before the upgrade", session="s1")
    assert first.code == 0, first.err
    assert run(a, "inbox", session="s2").code == 0  # read: the mark is on the flat branch
    flat = git(a, "ls-tree", "-r", "--name-only", tip(world.remote) or "").split()
    assert kinds.claim_path("task", "x", fmt=3) in flat
    assert kinds.task_path("t1", fmt=3) in flat
    r = run(a, "upgrade", session="s1")
    assert r.code == 0 and f"from format 3 to {FORMAT}" in r.out and "moving" in r.out, r.out
    after = tip(world.remote)
    assert after is not None
    names_after = git(a, "ls-tree", "-r", "--name-only", after).split()
    assert kinds.claim_path("task", "x", fmt=4) in names_after
    assert kinds.task_path("t1", fmt=4) in names_after
    assert not set(flat) - {CONFIG} & set(names_after)  # every document moved
    assert len(names_after) == len(flat)  # ... and none lost or added
    # one commit, by the rules: the hook took it, and the range validates
    assert run(a, "validate", "--range", f"{old}..{after}").code == 0
    assert run(a, "validate").code == 0
    # the branch reads as before
    r = run(a, "--json", "inbox", session="s2")
    assert r.code == 0 and '"messages": []' in r.out.replace("\n", ""), r.out
    r = run(a, "release", "task", "x", session="s1")
    assert r.code == 0, r.err
    mid = __import__("json").loads(first.out)["message"]["id"]
    r = run(a, "send", "s1", "re", "after", "--reply-to", mid, session="s2")
    assert r.code == 0, r.err
    r = run(a, "--json", "inbox", session="s1")
    assert r.code == 0 and mid in r.out, r.out
    assert run(a, "validate", "--range", f"{old}..{tip(world.remote)}").code == 0


def test_an_upgrade_that_does_more_than_move_is_refused(world: World) -> None:
    """Crafted with plain git: an "upgrade" commit that drops a file, edits one on the
    way, or leaves one behind is refused by the server hook."""
    from reliability import commit_files

    a = world.clone("a")
    assert run(a, "init").code == 0
    assert run(a, "register", "--role", "r", "--goal", "g", session="s1").code == 0
    assert run(a, "claim", "task", "x", session="s1").code == 0
    assert run(a, "claim", "task", "y", session="s1").code == 0
    with_format(a, world, 3)
    assert run(a, "hooks", "install", "--server", str(world.remote)).code == 0
    git(a, "fetch", "-q", "origin")
    now = tip(world.remote)
    assert now is not None
    cfg = show(a, now, CONFIG).replace(b"format: 3\n", b"format: 4\n")
    moves = {
        p: kinds.kind_at(p).path(kinds.kind_at(p).key_at(p), fmt=4)  # type: ignore[union-attr]
        for p in git(a, "ls-tree", "-r", "--name-only", now).split()
        if kinds.kind_at(p) is not None and p != CONFIG
    }
    honest: dict[str, bytes | None] = {CONFIG: cfg}
    for src, dst in moves.items():
        honest[src], honest[dst] = None, show(a, now, src)
    x, y = kinds.claim_path("task", "x", fmt=3), kinds.claim_path("task", "y", fmt=3)
    dropped = {**honest, kinds.claim_path("task", "y", fmt=4): None}
    edited = {**honest, kinds.claim_path("task", "x", fmt=4): show(a, now, y)}
    behind = {k: v for k, v in honest.items() if k not in (x, kinds.claim_path("task", "x", fmt=4))}
    msg = "upgrade by hand\n\nGitcoord-Op: upgrade\nGitcoord-Session: s1"
    for files in (dropped, edited, behind):
        bad = commit_files(a, files, parent=now, message=msg)
        r = git_push(a, bad)
        assert r.returncode != 0 and "[upgrade]" in r.stderr + r.stdout, r.stderr
    good = commit_files(a, honest, parent=now, message=msg)
    r = git_push(a, good)
    assert r.returncode == 0, r.stderr


def git_push(clone: Path, commit: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "push", "origin", f"{commit}:{REF}"],
        cwd=clone,
        capture_output=True,
        text=True,
    )


def test_upgrade_gives_itself_time_unless_the_user_chose_a_timeout(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gitcoord import Coordinator

    a = world.clone("a")
    assert run(a, "init").code == 0
    with Coordinator(str(a)) as c:
        c.allow(600)
        assert c.store.timeout == c.store.trees.timeout == 600
    with Coordinator(str(a), timeout=5) as c:
        c.allow(600)
        assert c.store.timeout == c.store.trees.timeout == 5
    monkeypatch.setenv("GITCOORD_TIMEOUT", "7")
    with Coordinator(str(a)) as c:
        c.allow(600)
        assert c.store.timeout == 7


def test_where_approvers_are_listed_a_session_cannot_upgrade_the_layout(world: World) -> None:
    """The move to format 4 changes config.yaml: on a branch that lists approvers, a
    session's upgrade is refused (by the client here, and by the same rule in the hook)."""
    a = world.clone("a")
    assert run(a, "init", "--approver", "someone.else@example.com").code == 0
    assert run(a, "register", "--role", "r", "--goal", "g", session="s1").code == 0
    with_format(a, world, 3)
    r = run(a, "upgrade", session="s1")
    assert r.code == 5 and "[config]" in r.err, (r.code, r.err)
    assert b"format: 3\n" in show(a, tip(world.remote) or "", CONFIG)
