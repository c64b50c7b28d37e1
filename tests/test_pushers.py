"""Authenticated pushers: where the server knows who pushed, no session can act as another.

On two real servers: smart HTTP behind lighttpd's basic authentication (git
http-backend hands the authenticated name to the pre-receive hook as REMOTE_USER), and
gitolite over sshd (one ssh key per account; gitolite runs gitcoord's hook as a
repo-specific pre-receive hook with GL_USER set). `config.yaml`'s `pushers` maps each
account to the sessions it may speak for and says whether it is an approver's. Bob's
account then cannot release alice's claim with `--session alice`, cannot approve with a
forged author email, and an unmapped account cannot push at all; each account's honest
work still lands. (Gitea's GITEA_PUSHER_NAME and GitLab's GL_USERNAME are read the same
way.)
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import World, clone_as, clone_url, git, gitolite_server, http_server, run
from reliability import REF, commit_files, hand_push, show, tip

from gitcoord.domain import kinds

BOSS = "boss@example.com"
USERS = {"alice": "a-secret", "bob": "b-secret", "boss": "x-secret", "eve": "e-secret"}
PUSHERS = (
    b"pushers:\n"
    b"  alice: {sessions: [alice, alice-*]}\n"
    b"  bob: {sessions: [bob]}\n"
    b"  boss: {approver: true}\n"
)


@dataclass
class Site:
    """A server that knows who pushed, with gitcoord's hook on its repository."""

    repo: Path  # the served bare repository, on disk
    clone: Callable[[str], Path]  # a clone by the named account


@pytest.fixture(params=["http", "gitolite"])
def site(request: pytest.FixtureRequest, world: World) -> Iterator[Site]:
    if request.param == "http":
        git(world.remote, "config", "http.receivepack", "true")
        assert run(world.root, "hooks", "install", "--server", str(world.remote)).code == 0
        with http_server(world.root, users=USERS) as base_url:
            host = base_url.removeprefix("http://")

            def by_http(user: str) -> Path:
                url = f"http://{user}:{USERS[user]}@{host}/{world.remote.name}"
                return clone_url(world, url, user)

            yield Site(world.remote, by_http)
    else:
        with gitolite_server(world.root, list(USERS)) as server:
            yield Site(
                server.repository("coord"),
                lambda user: clone_as(server, "coord", user, world.root / user),
            )


def as_boss(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_AUTHOR_EMAIL", BOSS)
    monkeypatch.setenv("GIT_COMMITTER_EMAIL", BOSS)


@pytest.mark.slow
def test_accounts_speak_only_for_their_sessions(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = site.clone("alice")
    assert run(alice, "init", "--approver", BOSS).code == 0
    # the mapping is the approvers' to write: boss's account pushes it, authored by boss
    boss = site.clone("boss")
    config = show(boss, tip(site.repo) or "", kinds.config_path())
    assert b"pushers:" not in config  # a newer format's field, written only when set
    with monkeypatch.context() as m:
        as_boss(m)
        hand_push(boss, {kinds.config_path(): config + PUSHERS})

    # honest work of each account lands
    assert run(alice, "register", "--role", "r", "--goal", "g", session="alice").code == 0
    assert run(alice, "claim", "task", "x", session="alice").code == 0
    bob = site.clone("bob")
    assert run(bob, "register", "--role", "r", "--goal", "g", session="bob").code == 0

    # a carried commit speaks for its request's session: alice's account may not carry
    # bob's request (README, *Carrying*), bob's may carry his own
    _carrying_speaks_for_the_request(site, alice, bob)

    # bob's account cannot speak for alice: her claim stays hers
    r = run(bob, "release", "task", "x", session="alice")
    assert r.code == 5 and "[pusher]" in r.err and "bob may not" in r.err, r.err
    status = run(alice, "--json", "status").json()
    assert {c["resource"]: c["status"] for c in status["claims"]} == {"task/x": "live"}  # type: ignore[index]

    # a pattern: alice's account may register alice-2
    assert run(alice, "register", "--role", "r", "--goal", "g", session="alice-2").code == 0

    # an approval needs an approver's account, whatever author email the commit says
    req = run(alice, "--json", "approval", "request", "Ship", session="alice")
    aid = req.json()["approval"]["id"]  # type: ignore[index]
    with monkeypatch.context() as m:
        as_boss(m)  # forged in bob's shell
        r = run(bob, "approval", "grant", aid)
    assert r.code == 5 and "[pusher]" in r.err, r.err
    with monkeypatch.context() as m:
        as_boss(m)
        r = run(boss, "approval", "grant", aid)
    assert r.code == 0 and f"approved {aid}" in r.out, r.err

    # an account that is not mapped pushes nothing
    eve = site.clone("eve")
    r = run(eve, "register", "--role", "r", "--goal", "g", session="eve")
    assert r.code == 5 and "[pusher]" in r.err and "eve is not in" in r.err, r.err
    assert re.search(r"only mapped accounts push here", r.err)
    # away from the server, a range is judged by what its commits say (no pusher known)
    git(alice, "fetch", "-q", "origin")
    last = tip(site.repo)
    assert last is not None
    r = run(alice, "validate", "--range", f"{last}~1..{last}")
    assert r.code == 0 and "[pusher]" not in r.err, r.err


def _carrying_speaks_for_the_request(site: Site, alice: Path, bob: Path) -> None:
    """bob's request (a message to alice, decided on the tip, published by his account),
    carried by hand with plain git: refused from alice's account as speaking for bob, taken
    from bob's."""
    from test_carry import _message_to_alice, _request_message

    from gitcoord.store.tickets import key

    base = tip(site.repo)
    assert base is not None
    files = _message_to_alice("carried")
    message = _request_message()
    git(bob, "fetch", "-q", "origin")
    request = commit_files(bob, files, parent=base, message=message)
    ref = f"refs/gitcoord/tickets/{key(REF)}/requests/{'b' * 16}"
    git(bob, "push", "-q", "origin", f"{request}:{ref}")

    def carried_by(clone: Path) -> subprocess.CompletedProcess[str]:
        git(clone, "fetch", "-q", "origin", f"+{ref}:refs/test/request", f"+{REF}:refs/test/tip")
        tree = git(clone, "rev-parse", f"{commit_files(clone, files, parent=base)}^{{tree}}")
        commit = git(clone, "commit-tree", tree.strip(), "-p", base, "-p", request, "-m", message)
        return subprocess.run(
            ["git", "push", "origin", f"{commit.strip()}:{REF}"],
            cwd=clone,
            capture_output=True,
            text=True,
        )

    proc = carried_by(alice)
    assert proc.returncode != 0 and "[pusher]" in proc.stderr, proc.stderr
    assert "alice may not" in proc.stderr, proc.stderr
    proc = carried_by(bob)
    assert proc.returncode == 0, proc.stderr
    parents = git(site.repo, "log", "-1", "--format=%P", "refs/heads/gitcoord").split()
    assert parents == [base, request]
