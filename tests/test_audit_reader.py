"""One reader of commits for the audit trail and the verifier (`history.read_commits`):
one git process for a whole range, and one trailer parser, so `log`, `metrics` and
`validate --range` / pre-receive can never read a commit differently.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import World, git, run

from gitcoord.audit import history, verify
from gitcoord.gitio import Git

BRANCH = "gitcoord"


def ok(cwd: Path, *args: str, session: str | None = None) -> Any:
    r = run(cwd, "--json", *args, session=session)
    assert r.code == 0, (args, r.code, r.out, r.err)
    return r.json()


def commit_tree(
    repo: Path,
    parent: str,
    message: bytes,
    author: str = "A <a@x>",
    committer: str = "C <c@x> 1700000001 +0000",
) -> str:
    """A commit object written as is (any bytes in its message), on top of `parent`."""
    tree = git(repo, "rev-parse", f"{parent}^{{tree}}").strip()
    raw = (
        f"tree {tree}\nparent {parent}\nauthor {author} 1700000000 +0000\n"
        f"committer {committer}\n\n"
    ).encode() + message
    proc = subprocess.run(
        ["git", "hash-object", "-t", "commit", "-w", "--literally", "--stdin"],
        cwd=repo,
        input=raw,
        capture_output=True,
        check=True,
    )
    return proc.stdout.decode().strip()


@pytest.fixture
def repo(world: World) -> Path:
    a = world.clone("a")
    ok(a, "init", "--slots", "4")
    ok(a, "register", "--role", "one", "--goal", "g", session="s1")
    ok(a, "claim", "task", "t1", session="s1")
    return a


def test_reads_what_git_says_newest_first_or_oldest_first(repo: Path) -> None:
    tip = git(repo, "rev-parse", f"origin/{BRANCH}").strip()
    line = git(repo, "rev-list", "--first-parent", tip).split()
    got = list(history.read_commits(Git.at(repo), [tip]))
    assert [e.commit for e in got] == line
    assert [e.commit for e in history.read_commits(Git.at(repo), [tip], reverse=True)] == line[::-1]
    assert [e.op for e in got] == ["claim", "register", "init"]
    claim = got[0]
    assert claim.session == "s1" and claim.resource == "task/t1"
    assert claim.parents == (line[1],) and got[-1].parents == ()
    assert claim.author_email == git(repo, "log", "-1", "--format=%ae", tip).strip()
    assert claim.subject == git(repo, "log", "-1", "--format=%s", tip).strip()
    assert int(claim.time.timestamp()) == int(git(repo, "log", "-1", "--format=%ct", tip))
    assert set(claim.trailers) >= {"Gitcoord-Op", "Gitcoord-Generation", "Gitcoord-Expires"}
    # a range: what is on `tip` and not on its grandparent
    assert [e.commit for e in history.read_commits(Git.at(repo), [tip, f"^{line[2]}"])] == line[:2]


def test_log_and_the_verifier_read_a_hostile_message_alike(repo: Path) -> None:
    """A repeated trailer, a "---" line (a patch divider to `git interpret-trailers`,
    which the verifier used through GitPython), and control characters that split
    records (`log` once used \x1e/\x1f) or lines (str.splitlines) in a naive reader:
    every reader sees the same commits and the same values."""
    tip = git(repo, "rev-parse", f"origin/{BRANCH}").strip()
    message = (
        b"hand edit\n\nbody\n---\nmore\n\n"
        b"Gitcoord-Op: heartbeat\n"
        b"Gitcoord-Session: s1\n"
        b"Gitcoord-Resource: x\x1ey\x1fz\n"
        b"Gitcoord-Session: s2\n"
        b"Gitcoord-To: x\x1eGitcoord-Session: s9\n"
        b"Gitcoord-Note: folded\n  onto one line\n"
    )
    hostile = commit_tree(repo, tip, message, author="Mallory <m@x> <s1@x>")
    after = commit_tree(repo, hostile, b"next\n\nGitcoord-Op: send\nGitcoord-Session: s1\n")
    got = list(history.read_commits(Git.at(repo), [after, f"^{tip}"], reverse=True))
    assert [e.commit for e in got] == [hostile, after]  # no record split inside a value
    e = got[0]
    assert e.trailers["Gitcoord-Session"] == ["s1", "s2"]  # every value kept, in order
    assert e.session == "s2" and e.get("Gitcoord-Session") == "s2"  # the last one counts
    assert e.resource == "x\x1ey\x1fz"
    assert e.get("Gitcoord-To") == "x\x1eGitcoord-Session: s9"  # one line, one trailer
    assert e.get("Gitcoord-Note") == "folded onto one line"
    assert e.author_email == "m@x"  # as git reads an ident: the first <...>
    meta = verify.commit_meta(e)
    assert (meta.commit, meta.session, meta.op, meta.author_email, meta.time) == (
        hostile,
        "s2",
        "heartbeat",
        "m@x",
        e.time,
    )
    assert got[1].parents == (hostile,) and got[1].session == "s1"
    # a committer date git cannot read: time 0, as GitPython read it for the verifier
    undated = commit_tree(repo, tip, b"x\n", committer="C <c@x>")
    (u,) = history.read_commits(Git.at(repo), [undated, f"^{tip}"])
    assert u.time.timestamp() == 0 and u.author_email == "a@x"
    # `gitcoord log` shows the same reading
    git(repo, "push", "-q", "origin", f"{after}:refs/heads/{BRANCH}")
    shown = ok(repo, "log", "--limit", "2")["entries"]
    assert [(x["commit"], x["session"], x["op"]) for x in shown] == [
        (after, "s1", "send"),
        (hostile, "s2", "heartbeat"),
    ]


def test_validate_range_reads_the_whole_range_in_one_git_process(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(3):
        ok(repo, "send", "broadcast", f"note {i}", "body", session="s1")
    started: list[list[str]] = []
    real = Git.run

    def counting(self: Git, args: Any, **kw: Any) -> subprocess.CompletedProcess[bytes]:
        started.append(list(args))
        return real(self, args, **kw)

    monkeypatch.setattr(Git, "run", counting)
    assert run(repo, "validate", "--range", f"..origin/{BRANCH}").code == 0
    commits = len(git(repo, "rev-list", f"origin/{BRANCH}").split())
    assert commits >= 6
    assert [a[0] for a in started].count("log") == 1
    assert not any("interpret-trailers" in a for a in started)
