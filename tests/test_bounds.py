"""Bounds on what a session may write about itself (the trust issue: the server has the
last word).

Attackers found that `expires_at: 9999-12-31` held a resource forever, a heartbeat
dated 9999 never went stale, and CURRENT_STATE.md took 50 MB, a symlink or a folder of
executables. Each rule is tried here with a commit crafted with plain git plumbing —
judged by `validate --range` and by the server's pre-receive hook — next to the honest
work of the CLI, which passes the same hook.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from conftest import World, git, run, shared_world
from reliability import REF, commit_files, show, tip
from test_commands import fails, ok, register, ts
from test_ops import SEC, T0, make_state, session

from gitcoord.domain import kinds, names, yamlio
from gitcoord.domain.models import FORMAT, Claim, Config, Heartbeat, Milestone, Step
from gitcoord.domain.transition import Changed, CommitMeta, check_transition
from gitcoord.ops import claims

FAR = "9999-12-31T00:00:00Z"


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def trailers(op: str, who: str) -> str:
    return f"{op} by hand\n\nGitcoord-Op: {op}\nGitcoord-Session: {who}"


def push(clone: Path, commit: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "push", "origin", f"{commit}:{REF}"], cwd=clone, capture_output=True, text=True
    )


@pytest.fixture(scope="module")
def honest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """A remote where alice and bob, registered behind the server hook, did honest work
    that passed it; and its tip. Built once for the module (a dozen pushes through the
    hook took 7 s, and every test here starts from it): each test takes a copy."""
    with shared_world(tmp_path_factory, "bounds") as shared:
        remote = shared.remote
        a = shared.clone("a")
        assert run(a, "init").code == 0
        assert run(a, "hooks", "install", "--server", str(remote)).code == 0
        for who in ("alice", "bob"):
            assert run(a, "register", "--role", "r", "--goal", "g", session=who).code == 0
        # the CLI's own writes are stamped with the clock that dates their commit: they pass
        honest_work = [
            ("claim", "task", "x", "--ttl", "2h"),
            ("renew", "task", "x", "--hours", "3"),
            ("claim", "task", "w", "--ttl", "7d"),  # exactly the default maximum
            ("heartbeat", "implementing", "x", "tests", "40", "--force"),
            ("send", "bob", "hello", "a body"),
            ("state", "--write"),
            ("release", "task", "w"),
        ]
        for args in honest_work:
            r = run(a, *args, session="alice")
            assert r.code == 0, (args, r.err)
        base = tip(remote)
        assert base is not None
        assert run(a, "validate", "--range", f"..{base}").code == 0
        yield remote, base


@pytest.fixture
def guarded(world: World, honest: tuple[Path, str]) -> tuple[Path, str]:
    """A copy of `honest`'s remote, its server hook installed, and a clone of it."""
    template, base = honest
    shutil.rmtree(world.remote)
    git(world.root, "clone", "-q", "--mirror", str(template), str(world.remote))
    git(world.remote, "remote", "remove", "origin")
    a = world.clone("a")
    assert run(a, "hooks", "install", "--server", str(world.remote)).code == 0
    git(a, "fetch", "-q", "origin")
    return a, base


def refused(world: World, a: Path, base: str, forged: str, rule: str) -> str:
    """`forged` on `base` is refused by `validate --range` and the server, naming `rule`."""
    r = run(a, "validate", "--range", f"{base}..{forged}")
    assert r.code == 5 and f"[{rule}]" in r.err, r.err
    proc = push(a, forged)
    assert proc.returncode != 0 and f"[{rule}]" in proc.stderr, proc.stderr
    assert tip(world.remote) == base
    return r.err


# --- 1. the maximum lease ----------------------------------------------------------


def test_a_lease_over_the_maximum_is_a_usage_error(world: World) -> None:
    a = world.clone("a")
    ok(a, "init")
    register(a, "alice")
    before = tip(world.remote)
    for args in (["--ttl", "8d"], ["--hours", "168.5"], ["--ttl", "30d"]):
        err = fails(a, 2, "claim", "task", "x", *args, session="alice")
        assert "maximum" in err["message"] and "max_lease_hours" in err["message"], err
    assert tip(world.remote) == before
    c = ok(a, "claim", "task", "x", "--ttl", "7d", session="alice")["claim"]
    assert ts(c["expires_at"]) - ts(c["acquired_at"]) == timedelta(days=7)
    fails(a, 2, "renew", "task", "x", "--hours", "200", session="alice")


def test_a_default_lease_over_the_maximum_is_cut_to_it(world: World) -> None:
    a = world.clone("a")
    ok(a, "init", "--lease-hours", "500")
    register(a, "alice")
    c = ok(a, "claim", "task", "x", session="alice")["claim"]
    assert ts(c["expires_at"]) - ts(c["acquired_at"]) == timedelta(hours=168)


def claim_yaml(name: str, holder: str, acquired: str, expires: str, **more: str) -> bytes:
    extra = "".join(f"{k}: '{v}'\n" for k, v in more.items())
    return (
        f"type: task\nname: {name}\nholder: {holder}\ngeneration: 1\n"
        f"acquired_at: '{acquired}'\nexpires_at: '{expires}'\n{extra}"
    ).encode()


def test_the_verifier_refuses_a_claim_held_forever(world: World, guarded: tuple[Path, str]) -> None:
    a, base = guarded
    forever = claim_yaml("y", "alice", _iso(_now()), FAR)
    forged = commit_files(
        a,
        {kinds.claim_path("task", "y", fmt=FORMAT): forever},
        parent=base,
        message=trailers("claim", "alice"),
    )
    err = refused(world, a, base, forged, "lease")
    assert "maximum lease" in err and "168h" in err
    # a renewal of a held claim is bounded from its renewal time the same way
    held = Claim.model_validate(
        yamlio.load(show(a, base, kinds.claim_path("task", "x", fmt=FORMAT)))
    )
    longer = held.model_copy(
        update={"renewed_at": _now(), "expires_at": _now() + timedelta(days=8)}
    )
    forged = commit_files(
        a,
        {kinds.claim_path("task", "x", fmt=FORMAT): yamlio.dump(longer)},
        parent=base,
        message=trailers("renew", "alice"),
    )
    refused(world, a, base, forged, "lease")
    # a backdated grant cannot stretch it either: the bound is the earlier of the two
    early = claim_yaml("z", "alice", "2020-01-01T00:00:00Z", _iso(_now() + timedelta(days=8)))
    forged = commit_files(
        a,
        {kinds.claim_path("task", "z", fmt=FORMAT): early},
        parent=base,
        message=trailers("claim", "alice"),
    )
    refused(world, a, base, forged, "lease")


# --- 2. no time later than the commit's plus the grace -----------------------------


def _heartbeat(base: str, a: Path) -> tuple[str, bytes]:
    beat = (f"session: alice\naction: a\ntarget: t\nphase: p\nprogress: 1\nat: '{FAR}'\n").encode()
    return kinds.heartbeat_path("alice", fmt=FORMAT), beat


def _session(base: str, a: Path) -> tuple[str, bytes]:
    path = kinds.session_path("alice", fmt=FORMAT)
    text = show(a, base, path).decode()
    lines = [ln for ln in text.splitlines() if not ln.startswith("updated_at")]
    return path, ("\n".join(lines) + f"\nupdated_at: '{FAR}'\n").encode()


def _message(base: str, a: Path) -> tuple[str, bytes]:
    mid = "20261201T000000000Z-abcdef"
    msg = f"id: {mid}\nsender: alice\nto: bob\nsubject: hi\nbody: b\nsent_at: '{FAR}'\n"
    return kinds.message_path("bob", mid, fmt=FORMAT), msg.encode()


def _task(base: str, a: Path) -> tuple[str, bytes]:
    task = f"id: t9\ntitle: later\ncreated_by: alice\ncreated_at: '{FAR}'\n"
    return kinds.task_path("t9", fmt=FORMAT), task.encode()


def _read(base: str, a: Path) -> tuple[str, bytes]:
    return kinds.read_path(
        "alice", fmt=FORMAT
    ), f"session: alice\nthrough: {base}\nat: '{FAR}'\n".encode()


def _claim_grant(base: str, a: Path) -> tuple[str, bytes]:
    return kinds.claim_path("task", "v", fmt=FORMAT), claim_yaml(
        "v", "alice", "9999-01-01T00:00:00Z", FAR
    )


@pytest.mark.parametrize(
    ("forge", "field"),
    [
        (_heartbeat, "at"),
        (_session, "updated_at"),
        (_message, "sent_at"),
        (_task, "created_at"),
        (_read, "at"),
        (_claim_grant, "acquired_at"),
    ],
    ids=["heartbeat", "session", "message", "task", "read", "claim"],
)
def test_the_verifier_refuses_a_time_in_the_future(
    world: World,
    guarded: tuple[Path, str],
    forge: Callable[[str, Path], tuple[str, bytes]],
    field: str,
) -> None:
    a, base = guarded
    path, data = forge(base, a)
    op = path.split("/")[1]
    forged = commit_files(a, {path: data}, parent=base, message=trailers(op, "alice"))
    err = refused(world, a, base, forged, "future-time")
    assert f"{field} 9999-" in err and "clock-skew grace" in err, err


def test_a_time_within_the_grace_passes_and_one_beyond_it_does_not() -> None:
    """Judged against the commit's time (which the verifier clamps to its own clock)."""
    state = make_state(session("alice", 1))
    meta = CommitMeta("c" * 40, "a@example.org", "alice", "heartbeat", T0)
    path = kinds.heartbeat_path("alice", fmt=FORMAT)

    def beat(at: datetime) -> list[str]:
        doc = Heartbeat(session="alice", action="a", target="t", phase="p", progress=1, at=at)
        after = state.apply({path: doc})
        return [p.rule for p in check_transition(state, after, [Changed(path, None, doc)], meta)]

    assert beat(T0 + timedelta(seconds=60)) == []  # the grace (60 s) allows a skewed clock
    assert beat(T0 + timedelta(seconds=62)) == ["future-time"]


def test_a_milestone_step_marked_done_in_the_future_is_refused() -> None:
    state = make_state(session("alice", 1))
    path = kinds.milestone_path("m", fmt=FORMAT)
    old = Milestone(name="m", steps=[Step(name="a")], created_by="alice", created_at=T0)
    state = state.apply({path: old})
    new = old.model_copy(
        update={"steps": [Step(name="a", done_by="alice", done_at=T0 + timedelta(days=9))]}
    )
    meta = CommitMeta("c" * 40, "a@example.org", "alice", "milestone", T0)
    got = check_transition(state, state.apply({path: new}), [Changed(path, old, new)], meta)
    assert [(p.rule, "steps[0].done_at" in p.message) for p in got] == [("future-time", True)]


def test_values_carried_over_are_not_judged_again() -> None:
    """A claim granted for 30 days before the maximum was lowered can still be released."""
    cfg = Config(max_lease_hours=24, created_at=T0)
    granted = Claim(
        type="task",
        name="x",
        holder="alice",
        generation=1,
        acquired_at=T0,
        expires_at=T0 + timedelta(days=30),
    )
    state = make_state(session("alice", 1), claims=(granted,), cfg=cfg)
    change = claims.release(state, T0 + SEC, session="alice", type_="task", name="x")
    path = kinds.claim_path("task", "x", fmt=FORMAT)
    meta = CommitMeta("c" * 40, "a@example.org", "alice", "release", T0 + SEC)
    after = state.apply(change.writes)
    changes = [Changed(path, granted, change.writes[path])]
    assert check_transition(state, after, changes, meta) == []
    # while a new grant that long is refused
    longer = granted.model_copy(update={"name": "y"})
    other = kinds.claim_path("task", "y", fmt=FORMAT)
    after = state.apply({other: longer})
    got = check_transition(state, after, [Changed(other, None, longer)], meta)
    assert [p.rule for p in got] == ["lease"]


# --- 3. the state page and file modes ----------------------------------------------

PAGE = names.state_page_path()


@pytest.mark.parametrize(
    ("path", "mode", "what"),
    [
        (PAGE, "120000", "a symlink"),
        (PAGE, "100755", "an executable"),
        (PAGE, "160000", "a submodule"),
        (kinds.session_path("alice", fmt=FORMAT), "120000", "a symlink"),
        (kinds.heartbeat_path("alice", fmt=FORMAT), "100755", "an executable"),
    ],
)
def test_the_verifier_refuses_anything_but_a_regular_file(
    world: World, guarded: tuple[Path, str], path: str, mode: str, what: str
) -> None:
    a, base = guarded
    if mode == "160000":
        data = base.encode()  # a submodule entry names a commit
    elif mode == "120000":
        data = b"../../../etc/passwd"
    else:
        data = show(a, base, path)  # the same bytes, made executable
    forged = commit_files(
        a, {path: data}, parent=base, message=trailers("state", "alice"), mode=mode
    )
    err = refused(world, a, base, forged, "file-mode")
    assert what in err and "100644" in err, err


def test_the_verifier_refuses_a_state_page_that_is_a_folder_or_too_big(
    world: World, guarded: tuple[Path, str]
) -> None:
    a, base = guarded
    folder = commit_files(
        a,
        {PAGE: None, f"{PAGE}/run.sh": b"#!/bin/sh\necho owned\n"},
        parent=base,
        message=trailers("state", "alice"),
    )
    err = refused(world, a, base, folder, "state-page")
    assert "not a folder" in err
    big = b"# Current state\n" + b"x" * names.STATE_PAGE_MAX_BYTES
    forged = commit_files(a, {PAGE: big}, parent=base, message=trailers("state", "alice"))
    err = refused(world, a, base, forged, "size")
    assert f"{names.STATE_PAGE_MAX_BYTES}-byte" in err
    # a page within the limit but written by hand is not the state's rendering
    fits = b"# Current state\n" + b"y" * (names.STATE_PAGE_MAX_BYTES - 16)
    forged = commit_files(a, {PAGE: fits}, parent=base, message=trailers("state", "alice"))
    err = refused(world, a, base, forged, "state-page")
    # gitcoord's own page passes the hook
    assert run(a, "state", "--write", session="alice").code == 0


def test_state_write_cuts_an_honest_page_over_the_limit() -> None:
    from gitcoord.domain import statepage

    line = b"| 1 | alice | " + b"r" * 200 + b" |\n"
    page = line * (2 * names.STATE_PAGE_MAX_BYTES // len(line))
    written = statepage._cut(page.decode())
    assert len(written) <= names.STATE_PAGE_MAX_BYTES
    assert written.endswith(b"limited to 1048576 bytes)\n")
    assert written.startswith(line) and b"\n| 1 |" in written  # cut at a line's end


def test_a_state_page_must_be_the_rendering_of_its_state(
    world: World, guarded: tuple[Path, str]
) -> None:
    """A page with one fact changed (a claim's holder), or rendered from another time
    than it names, is refused by the hook; gitcoord's own page, re-rendered by the
    verifier from the commit that carries it, passes."""
    from gitcoord.domain import statepage

    a, _ = guarded
    assert run(a, "state", "--write", session="alice").code == 0
    git(a, "fetch", "-q", "origin")
    head = tip(world.remote)
    assert head is not None
    honest = show(a, head, PAGE)
    at = statepage.generated_at(honest)
    assert at is not None
    lied = honest.replace(b"| alice |", b"| mallory |", 1)
    assert lied != honest
    forged = commit_files(a, {PAGE: lied}, parent=head, message=trailers("state", "alice"))
    assert "rendering of the state" in refused(world, a, head, forged, "state-page")
    old = honest.replace(at.strftime("%Y-%m-%dT%H:%M:%SZ").encode(), b"2020-01-01T00:00:00Z")
    forged = commit_files(a, {PAGE: old}, parent=head, message=trailers("state", "alice"))
    assert "generated at 2020" in refused(world, a, head, forged, "state-page")
