"""A versioned branch format: a newer branch is refused with a message, an older one upgraded.

`config.yaml`'s `format` says which gitcoord can read the branch. What format 2 adds
(`leave`, `max_lease_hours`) is written only on a branch at format 2, so a branch left at
format 1 stays readable by every client that reads format 1; `gitcoord upgrade` moves it
forward in one commit, which the verifier holds to the config rules like any other.
"""

from __future__ import annotations

from pathlib import Path

from conftest import World, git, run
from reliability import REF, hand_push, show, tip

from gitcoord.domain import kinds
from gitcoord.domain.models import FORMAT
from gitcoord.version import __version__

CONFIG = kinds.config_path()


def with_format(
    clone: Path, world: World, value: int, extra: bytes = b"", sessions: tuple[str, ...] = ()
) -> None:
    """Set the branch's format by hand; below 3, also take `sessions`' keys off (a
    branch that old never held any)."""
    git(clone, "fetch", "-q", "origin")
    now = tip(world.remote)
    assert now is not None
    text = show(clone, now, CONFIG)
    lines = [ln for ln in text.splitlines(keepends=True) if not ln.startswith(b"format:")]
    files: dict[str, bytes | None] = {CONFIG: b"format: %d\n" % value + b"".join(lines) + extra}
    for sid in sessions if value < 3 else ():
        doc = show(clone, now, kinds.session_path(sid)).splitlines(keepends=True)
        files[kinds.session_path(sid)] = b"".join(ln for ln in doc if not ln.startswith(b"key:"))
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
    left = show(a, now, kinds.session_path("s1")) + b"left_at: '2020-01-01T00:00:00Z'\n"
    r = run(a, "validate", "--range", f"{now}..{_commit(a, now, left)}")
    assert r.code == 5 and "[format]" in r.err and "gitcoord upgrade" in r.err, r.err


def _commit(clone: Path, parent: str, session_yaml: bytes) -> str:
    from reliability import commit_files

    return commit_files(
        clone,
        {kinds.session_path("s1"): session_yaml},
        parent=parent,
        message="leave by hand\n\nGitcoord-Op: leave\nGitcoord-Session: s1",
    )
