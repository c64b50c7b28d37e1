"""Carrying (#16): one clone's push lands another clone's request, and nothing else.

The server hook is the authority: a carried commit speaks for a session only through
the request it carries, signed by that session's key (`audit.carried`). Each rule is
attacked with commits made by plain git plumbing (`commit-tree -S` with the machines'
real keys) and pushed to a remote whose hook judges every push; an honest carried
commit passes the hook and the clients' own verification. Clones that carry for each
other for real, with real processes racing through a remote, are at the end.
"""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from conftest import World, clone_url, git, git_daemon, run, shared_world, spawn
from reliability import REF, commit_files
from test_signatures import (  # noqa: F401 - the fixture is used by name
    Machine,
    Signed,
    _fetch_tip,
    _push,
    _setup,
    hooked,
)

from gitcoord import clock
from gitcoord.audit.tickets import MAX_WAITING
from gitcoord.domain import kinds
from gitcoord.domain.models import FORMAT
from gitcoord.store.requests import REQUEST, VALID_UNTIL
from gitcoord.store.tickets import TICKETS_FULL, key
from testing.netdelay import DelayProxy

STAMP = "%Y-%m-%dT%H:%M:%SZ"
BRANCH = "gitcoord"
REQUESTS = f"refs/gitcoord/tickets/{key(REF)}/requests/"  # every clone's request ref


def _message_to_alice(subject: str) -> dict[str, bytes | None]:
    """A message from bob to alice, as `send` writes it."""
    sent = datetime.now(timezone.utc)
    mid = clock.message_id(sent, secrets.token_hex(3))
    body = (
        f"id: {mid}\nsender: bob\nto: alice\nsubject: {subject}\nbody: hello\n"
        f"sent_at: '{sent.strftime(STAMP)}'\n"
    )
    return {kinds.message_path("alice", mid, fmt=FORMAT): body.encode()}


def _request_message(
    session: str = "bob", rid: str | None = None, until: timedelta = timedelta(minutes=1)
) -> str:
    end = (datetime.now(timezone.utc) + until).strftime(STAMP)
    rid = rid or secrets.token_hex(8)
    return (
        f"send 1 message\n\nGitcoord-Op: send\nGitcoord-Session: {session}\n"
        f"{REQUEST}: {rid}\n{VALID_UNTIL}: {end}"
    )


def _commit(m: Machine, tree: str, parents: list[str], message: str, key: Path | None) -> str:
    argv = ["commit-tree", tree]
    if key is not None:
        argv = ["-c", "gpg.format=ssh", "-c", f"user.signingKey={key}", *argv, "-S"]
    for p in parents:
        argv += ["-p", p]
    return m.git(*argv, "-m", message)


def _request(
    m: Machine, base: str, files: dict[str, bytes | None], message: str, key: Path | None
) -> str:
    """A request as a clone publishes it: one commit on `base`, signed by `key`."""
    tree = m.git("rev-parse", f"{commit_files(m.repo, files, parent=base)}^{{tree}}")
    return _commit(m, tree, [base], message, key)


def _carry(m: Machine, tip: str, request: str, files: dict[str, bytes | None], message: str) -> str:
    """A carried commit on `tip`: `files` written over it, `request` its second parent,
    unsigned (the carrier's key would prove nothing)."""
    tree = m.git("rev-parse", f"{commit_files(m.repo, files, parent=tip)}^{{tree}}")
    m.git("fetch", "-q", "origin", "+refs/gitcoord/tickets/*:refs/test/tickets/*")
    return _commit(m, tree, [tip, request], message, None)


def _refused(m: Machine, commit: str, *words: str) -> None:
    proc = _push(m, commit)
    assert proc.returncode != 0, f"accepted: {commit}"
    for word in words:
        assert word in proc.stderr, proc.stderr


@pytest.fixture(scope="module")
def refused_only(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Signed, str]]:
    """bob's and alice's machines on a hooked, signed branch; alice has a claim landed
    since the tip that bob's requests are decided on (returned). Built once for the
    module (~6 s: a signed init and two registrations through the hook): the tests that
    take it only push what the hook refuses, and request refs, so none changes the branch."""
    with shared_world(tmp_path_factory, "carrying") as shared:
        w = _setup(shared.root, hooked=True)
        base = _fetch_tip(w.b)
        w.a.ok("claim", "task", "t1", session="alice")
        yield w, base


@pytest.fixture
def carrying(hooked: Signed) -> tuple[Signed, str]:  # noqa: F811 - the imported fixture
    """As `refused_only`, for a test of its own: one that lands a carried commit."""
    w = hooked
    base = _fetch_tip(w.b)
    w.a.ok("claim", "task", "t1", session="alice")
    return w, base


def _share(w: Signed, commit: str) -> None:
    """Put bob's request where alice's machine can fetch it (as publishing does)."""
    refs = f"refs/gitcoord/tickets/{key(REF)}/requests/{'b' * 16}"
    w.b.git("push", "-q", "origin", f"+{commit}:{refs}")


def _bobs_request(
    w: Signed, base: str, subject: str
) -> tuple[dict[str, bytes | None], str, str, str]:
    """bob's request (a message to alice) decided on `base`, signed by his key and
    published; its files, message and commit, and the tip alice's machine fetched."""
    files = _message_to_alice(subject)
    message = _request_message()
    request = _request(w.b, base, files, message, w.b.machine_key)
    _share(w, request)
    return files, message, request, _fetch_tip(w.a)


def test_an_honest_carried_commit_passes_the_hook_and_every_client(
    carrying: tuple[Signed, str],
) -> None:
    w, base = carrying
    files, message, request, tip = _bobs_request(w, base, "carried")
    carried = _carry(w.a, tip, request, files, message)
    proc = _push(w.a, carried)
    assert proc.returncode == 0, proc.stderr
    w.b.ok("status")  # bob's client verifies the tip, carried commit included
    got = w.a.ok("inbox", session="alice")
    assert [m["subject"] for m in got["messages"]] == ["carried"]  # type: ignore[index]
    # the same request again, carried or pushed by bob himself: an id lands once
    tip = _fetch_tip(w.a)
    _refused(w.a, _carry(w.a, tip, request, files, message), "landed already")
    again = _request(w.b, tip, _message_to_alice("twice"), message, w.b.machine_key)
    _refused(w.b, again, "landed already")


def test_a_carried_commit_that_changes_more_or_other_than_its_request_is_refused(
    refused_only: tuple[Signed, str],
) -> None:
    w, base = refused_only
    files, message, request, tip = _bobs_request(w, base, "one")
    more = {**files, **_message_to_alice("smuggled")}
    _refused(w.a, _carry(w.a, tip, request, more, message), "does not change what")
    other = _message_to_alice("other")
    _refused(w.a, _carry(w.a, tip, request, other, message), "does not change what")


def test_a_carried_commit_speaks_only_as_its_request_does(
    refused_only: tuple[Signed, str],
) -> None:
    w, base = refused_only
    files, message, request, tip = _bobs_request(w, base, "one")
    as_alice = message.replace("Session: bob", "Session: alice")
    _refused(w.a, _carry(w.a, tip, request, files, as_alice), "message differs")


def test_a_request_is_signed_by_its_sessions_key(refused_only: tuple[Signed, str]) -> None:
    w, base = refused_only
    files = _message_to_alice("one")
    tip = _fetch_tip(w.a)
    for signer, words in ((w.a.machine_key, "not by its key"), (None, "is not signed")):
        message = _request_message()
        request = _request(w.a, base, files, message, signer)  # alice forges bob's request
        _refused(w.a, _carry(w.a, tip, request, files, message), words)


def test_a_request_past_its_time_or_off_the_branch_is_not_carried(
    refused_only: tuple[Signed, str],
) -> None:
    w, base = refused_only
    files = _message_to_alice("one")
    tip = _fetch_tip(w.a)
    old = _request_message(until=timedelta(minutes=-5))
    expired = _request(w.b, base, files, old, w.b.machine_key)
    _share(w, expired)
    _refused(w.a, _carry(w.a, tip, expired, files, old), "ended at")
    aside = commit_files(w.b.repo, _message_to_alice("aside"), parent=base)  # never pushed
    message = _request_message()
    off = _request(w.b, aside, files, message, w.b.machine_key)
    _share(w, off)
    _refused(w.a, _carry(w.a, tip, off, files, message), "not one of the branch's last")
    # a request of two parents (the hook keeps it off the queue: made where it is carried)
    two = _request_message()
    other = commit_files(w.a.repo, files, parent=base)
    both = _commit(
        w.a, w.a.git("rev-parse", f"{other}^{{tree}}"), [base, other], two, w.b.machine_key
    )
    _refused(w.a, _carry(w.a, tip, both, files, two), "not one commit on a tip")
    malformed = _request_message().replace(VALID_UNTIL, "Gitcoord-Valid")
    bad = _request(w.b, base, files, malformed, w.b.machine_key)
    _share(w, bad)
    _refused(w.a, _carry(w.a, tip, bad, files, malformed), "well-formed")


def test_the_hook_judges_request_refs(refused_only: tuple[Signed, str]) -> None:
    """What the queue holds as a request is a request commit: not a blob, not a commit
    that names no request id, one per push; anyone may delete one."""
    w, base = refused_only
    prefix = REQUESTS
    m = w.a

    def push(*specs: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["git", "push", "origin", *specs],
            cwd=m.repo,
            env=m.env(),
            capture_output=True,
            text=True,
        )

    blob = m.git("hash-object", "-w", "--stdin", input=b"not a commit\n")
    plain = commit_files(m.repo, {"coordination/x.yaml": b"x: 1\n"}, parent=base)
    request = _request(m, base, _message_to_alice("r"), _request_message(), m.machine_key)
    for value, words in ((blob, "is a commit"), (plain, "names its id")):
        proc = push(f"{value}:{prefix}{'c' * 16}")
        assert proc.returncode != 0 and words in proc.stderr, proc.stderr
    proc = push(f"{request}:{prefix}{'c' * 16}", f"{request}:{prefix}{'d' * 16}")
    assert proc.returncode != 0 and "one request per push" in proc.stderr, proc.stderr
    merge = _commit(
        m, m.git("rev-parse", f"{request}^{{tree}}"), [base, plain], _request_message(), None
    )
    proc = push(f"{merge}:{prefix}{'c' * 16}")
    assert proc.returncode != 0 and "one commit on a tip" in proc.stderr, proc.stderr
    proc = push(f"{request}:{prefix}{'c' * 16}")
    assert proc.returncode == 0, proc.stderr
    proc = push(f":{prefix}{'c' * 16}")
    assert proc.returncode == 0, proc.stderr
    # a queue at its bound takes no request more (the refs made on the server directly)
    many = "".join(f"create {prefix}{i:016x} {request}\n" for i in range(MAX_WAITING))
    subprocess.run(
        ["git", "update-ref", "--stdin"], cwd=w.remote, input=many, text=True, check=True
    )
    try:
        proc = push(f"{request}:{prefix}{'c' * 16}")
        assert proc.returncode != 0 and TICKETS_FULL in proc.stderr, proc.stderr
    finally:
        gone = "".join(f"delete {prefix}{i:016x}\n" for i in range(MAX_WAITING))
        subprocess.run(
            ["git", "update-ref", "--stdin"], cwd=w.remote, input=gone, text=True, check=True
        )


# --- clones carrying for each other, for real ---------------------------------------------


def _carried_on_branch(remote: Path) -> list[str]:
    """The carried commits of the branch: a second parent, and a request id."""
    out = subprocess.run(
        [
            "git",
            "-C",
            str(remote),
            "log",
            "--first-parent",
            "--merges",
            f"--format=%H %(trailers:key={REQUEST},valueonly,separator=)",
            BRANCH,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [line.split()[0] for line in out.splitlines() if len(line.split()) == 2]


@pytest.mark.slow
def test_clones_that_carry_for_each_other_lose_nothing_and_grant_each_claim_once(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Eight clones as eight machines, with 50 ms of round trip to a git daemon, every
    session claiming and releasing a task of its own at once (each clone one process at a
    time, so that each loser publishes its request), then all racing for one task: every
    outcome is the session's own (one winner of the shared task, the others told who won),
    carried commits land, nothing is lost, the branch verifies."""
    from test_races import Job, assert_valid, describe, race

    with git_daemon(world.root) as base, DelayProxy(int(base.rsplit(":", 1)[1]), 0.05) as proxy:
        url = f"git://127.0.0.1:{proxy.port}/{world.remote.name}"
        clones = [clone_url(world, url, f"m{i}") for i in range(8)]
        sessions = [f"s{i}" for i in range(1, 9)]
        assert run(clones[0], "init", "--slots", "12").code == 0
        for clone, sid in zip(clones, sessions, strict=True):
            assert run(clone, "register", "--role", "r", "--goal", "g", session=sid).code == 0
        pairs = list(zip(clones, sessions, strict=True))
        start = git(world.remote, "rev-parse", BRANCH).strip()
        for rnd in range(4):
            for verb in ("claim", "release"):
                jobs = [Job(c, (verb, "task", f"{s}-{rnd}"), s) for c, s in pairs]
                results = race(jobs)
                assert all(r.code == 0 for r in results), describe(results, jobs)
            if _carried_on_branch(world.remote):
                break
        assert _carried_on_branch(world.remote), "no push carried another clone's request"
        jobs = [Job(c, ("claim", "task", "hot"), s) for c, s in pairs]
        results = race(jobs)
        codes = sorted(r.code for r in results)
        assert codes == [0] + [3] * 7, describe(results, jobs)
        winner = sessions[[r.code for r in results].index(0)]
        assert all(f"held by {winner}" in r.err for r in results if r.code == 3)
        assert_valid(clones[-1])
        end = git(world.remote, "rev-parse", BRANCH).strip()
        judged = run(clones[-1], "validate", "--range", f"{start}..{end}")
        assert judged.code == 0, judged.out + judged.err  # every commit, as a server judges
    held = {}
    for subject in git(
        world.remote, "log", "--first-parent", "--reverse", "--format=%s", BRANCH
    ).splitlines():
        verb, _, rest = subject.partition(" ")
        resource, sep, who = rest.rpartition(" by ")
        if sep and verb == "claim":
            assert held.get(resource, who) == who, f"{resource} granted twice"
            held[resource] = who
        elif sep and verb == "release":
            assert held.pop(resource, None) == who
    assert held == {"task/hot": winner}


# --- what a clone carries, and what it leaves to the request's own clone -------------------


def _publish(
    clone: Path,
    base: str,
    subject: str,
    name: str = "b" * 16,
    until: timedelta = timedelta(minutes=1),
) -> tuple[str, str]:
    """A request of bob's, as his clone would publish it (at requests/`name`): a message to
    alice decided on `base` (the branch requires no signatures here), valid for `until`.
    Its commit and the message's subject."""
    files = _message_to_alice(subject)
    message = _request_message(until=until)
    git(clone, "fetch", "-q", "origin", f"+refs/heads/{BRANCH}:refs/test/base")  # has `base`
    request = commit_files(clone, files, parent=base, message=message)
    ref = f"refs/gitcoord/tickets/{key(REF)}/requests/{name}"
    git(clone, "push", "-q", "origin", f"+{request}:{ref}")
    return request, subject


def _alice_wins(monkeypatch: pytest.MonkeyPatch, a: Path, times: int | None = None) -> list[str]:
    """Make an in-process writer lose: in each of its first `times` rounds (all: None),
    alice's clone `a` lands a claim between the writer's read and its push. The claims'
    names, as they land."""
    from gitcoord.domain.branch import Store

    real_decide = Store._decide
    rounds: list[str] = []

    def alice_first(self: Store, *args: object, **kwargs: object) -> object:
        if times is None or len(rounds) < times:
            rounds.append(f"a{len(rounds)}")
            proc = spawn(a, "claim", "task", rounds[-1], session="alice")
            assert proc.wait(timeout=120) == 0
        return real_decide(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Store, "_decide", alice_first)
    return rounds


def _bob_claims_losing(monkeypatch: pytest.MonkeyPatch, a: Path, b: Path, times: int) -> list[str]:
    """bob claims task/mine in process from clone `b`, losing his first `times` rounds to
    alice (`_alice_wins`); the claims alice landed."""
    from gitcoord.api.coordinator import Coordinator
    from gitcoord.domain.branch import Store

    real_decide = Store._decide
    rounds = _alice_wins(monkeypatch, a, times)
    try:
        with Coordinator(str(b), session="bob") as bob:
            bob.claim("task", "mine")
    finally:
        monkeypatch.setattr(Store, "_decide", real_decide)
    return rounds


def _loses_without_a_request(
    monkeypatch: pytest.MonkeyPatch, world: World, a: Path, b: Path
) -> None:
    """bob loses two rounds to alice, on tips he fetched for them, then lands: he
    published no request, and no commit since names one."""
    old = git(world.remote, "rev-parse", BRANCH).strip()
    assert _bob_claims_losing(monkeypatch, a, b, 2) == ["a0", "a1"]
    assert git(world.remote, "for-each-ref", REQUESTS).strip() == ""
    named = git(
        world.remote,
        "log",
        "--format=%(trailers:key=Gitcoord-Request,valueonly)",
        f"{old}..{BRANCH}",
    )
    assert named.strip() == "", named


def _alice_and_bob(world: World) -> tuple[Path, Path]:
    """Clones a and b of one branch, alice registered in a and bob in b."""
    a, b = world.clone("a"), world.clone("b")
    assert run(a, "init").code == 0
    for clone, sid in ((a, "alice"), (b, "bob")):
        assert run(clone, "register", "--role", "r", "--goal", "g", session=sid).code == 0
    return a, b


def _published_and_left(world: World, a: Path, b: Path, subject: str) -> str:
    """bob publishes a request by hand on the tip before alice's claim; alice then claims
    twice more (after a look at the branch) and carries nothing. The request."""
    base = git(world.remote, "rev-parse", BRANCH).strip()
    assert run(a, "claim", "task", "one", session="alice").code == 0
    request, _ = _publish(b, base, subject)
    assert run(a, "status").code == 0
    assert run(a, "claim", "task", "two", session="alice").code == 0
    assert _second_parents(world) == []
    return request


def _second_parents(world: World) -> list[str]:
    out = git(world.remote, "log", "--first-parent", "--format=%P", BRANCH)
    return [line.split()[1] for line in out.splitlines() if len(line.split()) == 2]


def test_a_clone_carries_a_request_when_nothing_it_depends_on_moved(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """alice's claim carries bob's published message in the same push (nothing but a
    claim landed since bob decided it); a request decided before a registration is left
    to its own clone, which decides it again."""
    a, b = _alice_and_bob(world)
    base = git(world.remote, "rev-parse", BRANCH).strip()
    assert run(a, "claim", "task", "one", session="alice").code == 0
    request, subject = _publish(b, base, "carried to you")
    assert run(a, "status").code == 0  # alice's clone fetches the request with the branch
    assert run(a, "claim", "task", "two", session="alice").code == 0
    assert _second_parents(world) == [request]
    top = git(world.remote, "log", "-2", "--first-parent", "--format=%s", BRANCH).splitlines()
    assert top == ["send 1 message", "claim task/two by alice"]
    got = run(a, "inbox", "--json", session="alice")
    assert got.code == 0 and subject in got.out
    assert run(b, "validate").code == 0

    # decided before carol registered: the registry moved since, so it is not carried
    base = git(world.remote, "rev-parse", BRANCH).strip()
    assert run(a, "register", "--role", "r", "--goal", "g", session="carol").code == 0
    _publish(b, base, "left to bob")
    assert run(a, "status").code == 0
    assert run(a, "claim", "task", "three", session="alice").code == 0
    assert _second_parents(world) == [request]  # only the first one, still
    assert git(world.remote, "log", "-1", "--format=%s", BRANCH).strip() == (
        "claim task/three by alice"
    )


@pytest.mark.slow
def test_stopped_with_its_request_out_a_write_says_it_may_still_land(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """bob's claim loses its push to alice's, publishes its request, and is stopped (as by
    Ctrl-C): it does not say that nothing was written, since another clone may still carry
    the request, and alice's next push does."""
    from gitcoord.api.coordinator import Coordinator
    from gitcoord.domain.branch import Store
    from gitcoord.errors import RemoteError
    from gitcoord.store import cancel, requests

    a, b = _alice_and_bob(world)
    real_decide, real_publish = Store._decide, requests.Requests.publish

    def publish_then_stop(self: requests.Requests, *args: object) -> None:
        real_publish(self, *args)  # type: ignore[arg-type]
        self.wait()
        cancel.CANCELLED.set()  # the user stops the command right after

    _alice_wins(monkeypatch, a)  # every round of bob's
    monkeypatch.setattr(requests.Requests, "publish", publish_then_stop)
    try:
        with Coordinator(str(b), session="bob") as bob, pytest.raises(RemoteError) as got:
            bob.claim("task", "mine")
    finally:
        cancel.CANCELLED.clear()
        monkeypatch.setattr(Store, "_decide", real_decide)
    assert got.value.details.get("uncertain") is True
    assert "may still land" in got.value.message
    assert "claim task/mine" not in git(
        world.remote, "log", "--first-parent", "--format=%s", BRANCH
    )

    assert run(a, "status").code == 0  # alice's clone fetches bob's request with the branch
    assert run(a, "claim", "task", "later", session="alice").code == 0
    log = git(world.remote, "log", "--first-parent", "--format=%s", BRANCH).splitlines()
    assert log[:2] == ["claim task/mine by bob", "claim task/later by alice"]


def test_a_push_refused_with_requests_in_it_goes_again_without_them(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server that will not take what alice carries (here a hook refusing every merge
    on the branch, as a gitcoord from before carrying does) does not sink alice's own
    write: her claim goes again without bob's request, and lands alone."""
    a, b = _alice_and_bob(world)
    hook = world.remote / "hooks" / "pre-receive"
    hook.write_text(
        "#!/bin/sh\n"
        "while read old new ref; do\n"
        f'  [ "$ref" = refs/heads/{BRANCH} ] || continue\n'
        '  if [ -n "$(git rev-list --merges "$old..$new")" ]; then\n'
        '    echo "no merges here" >&2; exit 1\n'
        "  fi\n"
        "done\n"
    )
    hook.chmod(0o755)
    base = git(world.remote, "rev-parse", BRANCH).strip()
    assert run(a, "claim", "task", "one", session="alice").code == 0
    _publish(b, base, "never carried")
    assert run(a, "status").code == 0
    got = run(a, "claim", "task", "two", session="alice")
    assert got.code == 0, got.err
    assert _second_parents(world) == []
    top = git(world.remote, "log", "-2", "--first-parent", "--format=%s", BRANCH).splitlines()
    assert top == ["claim task/two by alice", "claim task/one by alice"]


def test_a_branch_before_format_5_carries_nothing_until_it_is_upgraded(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Format 5 is the gate (`models.CARRIED`): on a format-4 branch, whose clones may run a
    gitcoord that takes a commit of two parents for a merge, a losing write publishes no
    request and names none, a published request is not carried, and the server hook
    refuses a carried commit made by hand. `upgrade` to 5 turns carrying on, through the
    same hook."""
    from test_upgrade import with_format

    a, b = _alice_and_bob(world)
    with_format(a, world, 4)
    assert run(a, "hooks", "install", "--server", str(world.remote)).code == 0

    # bob loses two rounds to alice, on tips he fetched for them: no request on format 4
    _loses_without_a_request(monkeypatch, world, a, b)

    # a request published by hand is not carried; one carried by hand is refused
    request = _published_and_left(world, a, b, "not on format 4")
    now = git(world.remote, "rev-parse", BRANCH).strip()
    git(a, "fetch", "-q", "origin", f"+refs/heads/{BRANCH}:refs/test/now")
    files = {
        path: git(b, "cat-file", "blob", f"{request}:{path}").encode()
        for path in git(
            b, "diff-tree", "-r", "--name-only", "--no-commit-id", f"{request}^", request
        ).split()
    }
    tree = git(a, "rev-parse", f"{commit_files(a, files, parent=now)}^{{tree}}").strip()
    message = git(b, "log", "-1", "--format=%B", request).strip()
    git(a, "fetch", "-q", "origin", f"+{REQUESTS}*:refs/test/requests/*")
    carried = git(a, "commit-tree", tree, "-p", now, "-p", request, "-m", message).strip()
    proc = subprocess.run(
        ["git", "push", "origin", f"{carried}:refs/heads/{BRANCH}"],
        cwd=a,
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0 and "carried commits need format 5" in proc.stderr, proc.stderr

    # upgraded, through the hook: the next request is carried
    got = run(a, "upgrade", session="alice")
    assert got.code == 0 and "from format 4 to 5" in got.out, got.out + got.err
    base = git(world.remote, "rev-parse", BRANCH).strip()
    assert run(a, "claim", "task", "three", session="alice").code == 0
    request, subject = _publish(b, base, "carried on format 5")
    assert run(a, "status").code == 0
    assert run(a, "claim", "task", "four", session="alice").code == 0
    assert _second_parents(world) == [request]
    got = run(a, "inbox", "--json", session="alice")
    assert got.code == 0 and subject in got.out


def test_a_clone_that_publishes_deletes_the_requests_that_ended(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A clone's request ref stays after it lands, so the queue's bound of 256 would fill
    with clones long gone: a clone publishing its own request deletes, in the same push,
    others' that ended more than two minutes ago or are no request at all, and leaves a
    live one alone."""

    a, b = _alice_and_bob(world)
    base = git(world.remote, "rev-parse", BRANCH).strip()
    prefix = REQUESTS
    _publish(b, base, "long gone", "e" * 16, until=timedelta(minutes=-5))
    aside = commit_files(b, _message_to_alice("aside"), parent=base)  # never carried
    live, _ = _publish(b, aside, "still in time", "c" * 16)
    junk = commit_files(b, {"coordination/x.yaml": b"x: 1\n"}, parent=base)  # names no id
    git(b, "push", "-q", "origin", f"{junk}:{prefix}{'f' * 16}")

    # the second round, on a tip fetched for it, publishes
    assert _bob_claims_losing(monkeypatch, a, b, 2) == ["a0", "a1"]
    left = dict(
        line.split()[::-1]
        for line in git(world.remote, "for-each-ref", "--format=%(objectname) %(refname)", prefix)
        .strip()
        .splitlines()
    )
    assert prefix + "e" * 16 not in left and prefix + "f" * 16 not in left, left
    assert left.pop(prefix + "c" * 16) == live
    assert len(left) == 1, left  # bob's own request, published when he lost


def test_a_write_whose_push_may_land_naming_no_request_publishes_none(world: World) -> None:
    """bob's first push (on the tip his clone knew, so naming no request) is cut off while
    a slow hook still judges it, and lands 3 s later. His next round, on a tip fetched
    before that, is refused. Publishing that round's commit as a request could land the
    claim a second time (a carrier knows a landed write only by its id): none is
    published, and bob reports the one commit that landed."""
    from reliability import daemon_port, proxy

    from gitcoord.api.coordinator import Coordinator

    hook = world.remote / "hooks" / "pre-receive"
    count = world.root / "bobs-pushes"
    hook.write_text(
        "#!/bin/sh\n"
        "while read old new ref; do\n"
        f'  [ "$ref" = refs/heads/{BRANCH} ] || continue\n'
        '  git log -1 --format=%s "$new" | grep -q "^claim task/mine by bob" || continue\n'
        f'  echo x >> "{count}"\n'
        f'  n=$(wc -l < "{count}")\n'
        '  [ "$n" = 1 ] && sleep 3\n'
        '  [ "$n" = 2 ] && sleep 6\n'
        "done\n"
        "exit 0\n"
    )
    hook.chmod(0o755)
    with git_daemon(world.root) as base, proxy(daemon_port(base)) as p:
        b = clone_url(world, f"{p.url_base}/{world.remote.name}", "b")
        assert run(b, "init").code == 0
        assert run(b, "register", "--role", "r", "--goal", "g", session="bob").code == 0
        p.break_pushes("orphan", 1)
        with Coordinator(str(b), session="bob") as bob:
            got = bob.claim("task", "mine")
        assert p.broken == 1, "the proxy never cut a push"
    assert count.read_text().count("x") >= 2, "bob never pushed a second round"
    log = git(world.remote, "log", "--format=%H %s", BRANCH).splitlines()
    mine = [line.split()[0] for line in log if line.endswith("claim task/mine by bob")]
    assert len(mine) == 1, log
    assert got.commit == mine[0]
    named = git(world.remote, "log", "-1", "--format=%(trailers:key=Gitcoord-Request)", mine[0])
    assert named.strip() == ""  # the round that landed named no request
    assert git(world.remote, "for-each-ref", REQUESTS).strip() == ""


def test_a_process_with_carrying_off_neither_carries_nor_names_a_request(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GITCOORD_CARRY=0 (README, *Carrying*): on a format-5 branch, alice's claims leave
    bob's published request alone; bob's write that loses two rounds publishes no request
    and names none. With carrying on again, alice's next claim carries bob's request."""
    a, b = _alice_and_bob(world)
    monkeypatch.setenv("GITCOORD_CARRY", "0")
    _loses_without_a_request(monkeypatch, world, a, b)

    request = _published_and_left(world, a, b, "carried once it is on")
    monkeypatch.delenv("GITCOORD_CARRY")
    assert run(a, "claim", "task", "three", session="alice").code == 0
    assert _second_parents(world) == [request]
