"""Authenticated pushers: where the server knows who pushed, no session can act as another.

Smart HTTP behind lighttpd's basic authentication: git http-backend hands the
authenticated name to the pre-receive hook as REMOTE_USER, and `config.yaml`'s
`pushers` maps each account to the sessions it may speak for and says whether it is an
approver's. Bob's account then cannot release alice's claim with `--session alice`,
cannot approve with a forged author email, and an unmapped account cannot push at all;
each account's honest work still lands. (gitolite's GL_USER, Gitea's GITEA_PUSHER_NAME and
GitLab's GL_USERNAME are read the same way.)
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import World, clone_url, git, http_server, run
from reliability import hand_push, show, tip

from gitcoord.domain import kinds

BOSS = "boss@example.com"
USERS = {"alice": "a-secret", "bob": "b-secret", "boss": "x-secret", "eve": "e-secret"}
PUSHERS = (
    b"pushers:\n"
    b"  alice: {sessions: [alice, alice-*]}\n"
    b"  bob: {sessions: [bob]}\n"
    b"  boss: {approver: true}\n"
)


@pytest.fixture
def site(world: World) -> Iterator[tuple[World, str]]:
    git(world.remote, "config", "http.receivepack", "true")
    with http_server(world.root, users=USERS) as base_url:
        yield world, base_url


def as_user(world: World, base_url: str, user: str) -> Path:
    host = base_url.removeprefix("http://")
    return clone_url(world, f"http://{user}:{USERS[user]}@{host}/{world.remote.name}", user)


def test_accounts_speak_only_for_their_sessions(site: tuple[World, str]) -> None:
    world, base_url = site
    alice = as_user(world, base_url, "alice")
    assert run(alice, "init", "--approver", BOSS).code == 0
    # the mapping is the approvers' to write (here before the hook, as at set-up)
    git(alice, "fetch", "-q", "origin")
    config = show(alice, tip(world.remote) or "", kinds.config_path())
    assert b"pushers: {}\n" in config
    hand_push(alice, {kinds.config_path(): config.replace(b"pushers: {}\n", PUSHERS)})
    assert run(alice, "hooks", "install", "--server", str(world.remote)).code == 0

    # honest work of each account lands
    assert run(alice, "register", "--role", "r", "--goal", "g", session="alice").code == 0
    assert run(alice, "claim", "task", "x", session="alice").code == 0
    bob = as_user(world, base_url, "bob")
    assert run(bob, "register", "--role", "r", "--goal", "g", session="bob").code == 0

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
    os.environ["GIT_AUTHOR_EMAIL"] = BOSS  # forged in bob's shell
    try:
        r = run(bob, "approval", "grant", aid)
    finally:
        os.environ["GIT_AUTHOR_EMAIL"] = "test@example.com"
    assert r.code == 5 and "[pusher]" in r.err, r.err
    boss = as_user(world, base_url, "boss")
    os.environ["GIT_AUTHOR_EMAIL"] = BOSS
    try:
        r = run(boss, "approval", "grant", aid)
    finally:
        os.environ["GIT_AUTHOR_EMAIL"] = "test@example.com"
    assert r.code == 0 and f"approved {aid}" in r.out, r.err

    # an account that is not mapped pushes nothing
    eve = as_user(world, base_url, "eve")
    r = run(eve, "register", "--role", "r", "--goal", "g", session="eve")
    assert r.code == 5 and "[pusher]" in r.err and "eve is not in" in r.err, r.err
    assert re.search(r"only mapped accounts push here", r.err)
    # away from the server, a range is judged by what its commits say (no pusher known)
    git(alice, "fetch", "-q", "origin")
    last = tip(world.remote)
    assert last is not None
    r = run(alice, "validate", "--range", f"{last}~1..{last}")
    assert r.code == 0 and "[pusher]" not in r.err, r.err
