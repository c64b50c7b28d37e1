"""Every kind of crafted push is refused by the server hook on each kind of server.

The attacks of test_history_shape, test_time, test_bounds, test_references and
test_guards — commits made with plain git plumbing, as an attacker would — pushed to
three real servers, each running gitcoord's pre-receive hook:

- a bare repository (`gitcoord hooks install --server`), pushed to over the file system;
- gitolite over sshd (the same shim as a repo-specific pre-receive hook, GL_USER set);
- smart HTTP (lighttpd + git http-backend behind basic authentication, the hook in the
  served bare repository, REMOTE_USER set).

Each push is refused with gitcoord's message naming the rule, and the branch does not
move; honest work through the same server (a session registers, claims, releases)
still lands. One seeded history and one server per transport serve the whole module
(each xdist worker builds its own).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from conftest import clone_as, git, gitolite_server, hermetic_env, http_server, run
from reliability import REF, commit_files, show, tip
from test_bounds import FAR, claim_yaml
from test_history_shape import merge_commit
from test_references import BOMB

from gitcoord import clock
from gitcoord.domain import kinds, names, yamlio
from gitcoord.domain.models import FORMAT, Claim, Task

BOSS = "boss@example.com"
MALLORY = "mallory@example.com"
PAGE = names.state_page_path()
ALICE_PATH = kinds.claim_path("path", "src/api/**", fmt=FORMAT)


@dataclass(frozen=True)
class Seed:
    """The history every server starts from: boss the approver, clock-skew grace 0;
    alice and bob registered (`early`), then bob holding task/x and alice path
    src/api/** (bob's overlapping src/** long expired), and alice's pending approval
    request `aid`, whose approval branch's commit is `proposal`."""

    repo: Path  # a bare repository holding it (no hook)
    early: str
    aid: str
    proposal: str


@pytest.fixture(scope="module")
def module_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The hermetic environment for the module's shared servers and clones."""
    base = tmp_path_factory.mktemp("attacks")
    with pytest.MonkeyPatch.context() as mp:
        hermetic_env(base, mp)
        yield base


@pytest.fixture(scope="module")
def seed(module_env: Path) -> Seed:
    bare = module_env / "seed.git"
    git(module_env, "init", "-q", "--bare", str(bare))
    s = module_env / "seeding"
    git(module_env, "clone", "-q", str(bare), str(s))
    assert run(s, "init", "--approver", BOSS, "--clock-skew", "0").code == 0
    for who in ("alice", "bob"):
        assert run(s, "register", "--role", "r", "--goal", "g", session=who).code == 0
    early = tip(bare)
    assert early is not None
    assert run(s, "claim", "task", "x", "--hours", "2", session="bob").code == 0
    assert run(s, "claim", "path", "src/**", "--ttl", "1s", session="bob").code == 0
    time.sleep(2)  # bob's path claim expires: alice's overlapping one is then fair
    assert run(s, "claim", "path", "src/api/**", session="alice").code == 0
    req = run(s, "--json", "approval", "request", "Ship it", session="alice")
    assert req.code == 0, req.err
    doc = req.json()
    assert isinstance(doc, dict)
    return Seed(bare, early, doc["approval"]["id"], doc["proposal"])


@dataclass(frozen=True)
class Served:
    """One server with gitcoord's hook, holding the seeded history, and a client's clone."""

    kind: str
    repo: Path  # the served bare repository, on disk (read only)
    clone: Path  # a clone through the server's own transport


def _load(repo: Path, seed: Seed) -> None:
    """The seeded branches, brought in on disk as an admin imports a repository."""
    git(repo, "fetch", "-q", str(seed.repo), "+refs/heads/*:refs/heads/*")


@pytest.fixture(scope="module", params=["bare", "gitolite", "http"])
def served(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    module_env: Path,
    seed: Seed,
) -> Iterator[Served]:
    kind = request.param
    base = tmp_path_factory.mktemp(kind)  # a fresh one should a worker set it up twice
    if kind == "gitolite":
        with gitolite_server(base, ["alice"]) as server:
            repo = server.repository("coord")
            _load(repo, seed)
            yield Served(kind, repo, clone_as(server, "coord", "alice", base / "client"))
        return
    repo = base / "coord.git"
    git(base, "init", "-q", "--bare", str(repo))
    _load(repo, seed)
    assert run(base, "hooks", "install", "--server", str(repo)).code == 0
    if kind == "bare":
        git(base, "clone", "-q", str(repo), str(base / "client"))
        yield Served(kind, repo, base / "client")
        return
    git(repo, "config", "http.receivepack", "true")
    with http_server(base, users={"alice": "a-secret"}) as url:
        host = url.removeprefix("http://")
        git(base, "clone", "-q", f"http://alice:a-secret@{host}/coord.git", str(base / "client"))
        yield Served(kind, repo, base / "client")


# --- the attacks ------------------------------------------------------------------------

Make = Callable[[Path, Seed, str, pytest.MonkeyPatch], str]


def _message(op: str, who: str) -> str:
    return f"{op} by hand\n\nGitcoord-Op: {op}\nGitcoord-Session: {who}"


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _rollback_merge(c: Path, seed: Seed, now: str, mp: pytest.MonkeyPatch) -> str:
    # first parent an older commit, second parent the tip: looks like a fast-forward
    return merge_commit(c, seed.early, seed.early, now, message="merge", email=BOSS)


def _root_first_parent(c: Path, seed: Seed, now: str, mp: pytest.MonkeyPatch) -> str:
    config = show(c, now, kinds.config_path()).replace(BOSS.encode(), MALLORY.encode())
    root = commit_files(c, {kinds.config_path(): config}, parent=None, message="init")
    return merge_commit(c, root, root, now, message="merge", email=MALLORY)


def _octopus(c: Path, seed: Seed, now: str, mp: pytest.MonkeyPatch) -> str:
    side = commit_files(c, {"coordination/notes.txt": b"x"}, parent=seed.early, message="side")
    return merge_commit(c, now, now, seed.early, side, message="octopus", email=BOSS)


def _merge_carrying_changes(c: Path, seed: Seed, now: str, mp: pytest.MonkeyPatch) -> str:
    # the tip as first parent, but the merge rewrites a session rather than approving
    alice = show(c, now, kinds.session_path("alice", fmt=FORMAT)).replace(
        b"role: r", b"role: hijacked"
    )
    edited = commit_files(
        c, {kinds.session_path("alice", fmt=FORMAT): alice}, parent=now, message="edit"
    )
    return merge_commit(c, edited, now, seed.early, message="merge", email=BOSS)


def _backdated_quarantine(c: Path, seed: Seed, now: str, mp: pytest.MonkeyPatch) -> str:
    # dated before alice claimed, her claim seems to overlap bob's expired one
    copy = "coordination/quarantine/claims__path__src%2Fapi%2F%2A%2A.yaml"
    with mp.context() as m:
        m.setenv("GIT_COMMITTER_DATE", "2020-01-01T00:00:00Z")
        m.setenv("GIT_AUTHOR_DATE", "2020-01-01T00:00:00Z")
        return commit_files(
            c,
            {ALICE_PATH: None, copy: show(c, now, ALICE_PATH)},
            parent=now,
            message=_message("quarantine", "bob"),
        )


def _future_dated(c: Path, seed: Seed, now: str, mp: pytest.MonkeyPatch) -> str:
    later = clock.now() + timedelta(hours=3)
    beat = (
        f"session: alice\naction: a\ntarget: t\nphase: p\nprogress: 1\nat: '{_iso(later)}'\n"
    ).encode()
    with mp.context() as m:
        m.setenv("GIT_COMMITTER_DATE", _iso(later))
        m.setenv("GIT_AUTHOR_DATE", _iso(later))
        return commit_files(
            c,
            {kinds.heartbeat_path("alice", fmt=FORMAT): beat},
            parent=now,
            message=_message("heartbeat", "alice"),
        )


def _forged_trailer(c: Path, seed: Seed, now: str, mp: pytest.MonkeyPatch) -> str:
    # bob's trailer on a commit that rewrites alice's claim
    held = Claim.model_validate(yamlio.load(show(c, now, ALICE_PATH)))
    mine = held.model_copy(update={"note": "mine now"})
    return commit_files(
        c, {ALICE_PATH: yamlio.dump(mine)}, parent=now, message=_message("claim", "bob")
    )


def _forged_approval(c: Path, seed: Seed, now: str, mp: pytest.MonkeyPatch) -> str:
    # the approval branch's approved file, committed by someone who is not an approver
    path = kinds.approval_path(seed.aid, fmt=FORMAT)
    approved = show(c, seed.proposal, path)
    return commit_files(c, {path: approved}, parent=now, message=_message("approval", "alice"))


def _lease_forever(c: Path, seed: Seed, now: str, mp: pytest.MonkeyPatch) -> str:
    forever = claim_yaml("y", "alice", _iso(clock.now()), FAR)
    return commit_files(
        c,
        {kinds.claim_path("task", "y", fmt=FORMAT): forever},
        parent=now,
        message=_message("claim", "alice"),
    )


def _alias_bomb(c: Path, seed: Seed, now: str, mp: pytest.MonkeyPatch) -> str:
    return commit_files(
        c,
        {kinds.task_path("t1", fmt=FORMAT): BOMB},
        parent=now,
        message=_message("task-add", "alice"),
    )


def _oversized_page(c: Path, seed: Seed, now: str, mp: pytest.MonkeyPatch) -> str:
    big = b"# Current state\n" + b"x" * names.STATE_PAGE_MAX_BYTES
    return commit_files(c, {PAGE: big}, parent=now, message=_message("state", "alice"))


def _oversized_yaml(c: Path, seed: Seed, now: str, mp: pytest.MonkeyPatch) -> str:
    task = f"id: t1\ntitle: big\ncreated_by: alice\ncreated_at: '{_iso(clock.now())}'\n"
    padding = b"#" + b"x" * yamlio.MAX_FILE_BYTES + b"\n"
    return commit_files(
        c,
        {kinds.task_path("t1", fmt=FORMAT): task.encode() + padding},
        parent=now,
        message=_message("task-add", "alice"),
    )


def _dangling_depends_on(c: Path, seed: Seed, now: str, mp: pytest.MonkeyPatch) -> str:
    task = Task(id="t1", title="x", depends_on=["t7"], created_by="alice", created_at=clock.now())
    return commit_files(
        c,
        {kinds.task_path("t1", fmt=FORMAT): yamlio.dump(task)},
        parent=now,
        message=_message("task-add", "alice"),
    )


def _uncompilable_glob(c: Path, seed: Seed, now: str, mp: pytest.MonkeyPatch) -> str:
    t = clock.now()
    glob = Claim(
        type="path",
        name="0/[z-a]",
        holder="alice",
        generation=1,
        acquired_at=t,
        expires_at=t + timedelta(hours=1),
    )
    return commit_files(
        c,
        {kinds.claim_path("path", glob.name, fmt=FORMAT): yamlio.dump(glob)},
        parent=now,
        message=_message("claim", "alice"),
    )


def _symlink_page(c: Path, seed: Seed, now: str, mp: pytest.MonkeyPatch) -> str:
    return commit_files(
        c,
        {PAGE: b"../../../etc/passwd"},
        parent=now,
        message=_message("state", "alice"),
        mode="120000",
    )


# (id, how it is made, the rule refusing it, words of the refusal)
ATTACKS: list[tuple[str, Make, str, str]] = [
    ("rollback-merge", _rollback_merge, "history", "not the branch's tip"),
    ("root-commit-first-parent", _root_first_parent, "history", "is a root commit"),
    ("octopus", _octopus, "merge", "merges 3 parents"),
    ("merge-carrying-changes", _merge_carrying_changes, "merge", "may only approve one request"),
    ("backdated-quarantine", _backdated_quarantine, "quarantine", "only files that break"),
    ("future-dated", _future_dated, "future-date", ""),
    ("forged-trailer", _forged_trailer, "own-files", ALICE_PATH),
    ("forged-approval", _forged_approval, "approver", ""),
    ("lease-forever", _lease_forever, "lease", "maximum lease"),
    ("alias-bomb", _alias_bomb, "yaml", yamlio.NO_ANCHORS),
    ("oversized-state-page", _oversized_page, "size", f"{names.STATE_PAGE_MAX_BYTES}-byte"),
    ("oversized-yaml", _oversized_yaml, "yaml", f"{yamlio.MAX_FILE_BYTES}-byte limit"),
    ("dangling-depends-on", _dangling_depends_on, "depends-on", "t7"),
    ("uncompilable-glob", _uncompilable_glob, "claim-name", "0/[z-a]"),
    ("symlink-state-page", _symlink_page, "file-mode", "a symlink"),
]


@pytest.mark.parametrize(
    ("make", "rule", "words"), [a[1:] for a in ATTACKS], ids=[a[0] for a in ATTACKS]
)
def test_a_crafted_push_is_refused_by_every_server(
    served: Served, seed: Seed, make: Make, rule: str, words: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = served.clone
    now = tip(served.repo)
    assert now is not None
    if not git(c, "cat-file", "-t", now, check=False).strip():  # honest work moved the tip
        git(c, "fetch", "-q", "origin")
    forged = make(c, seed, now, monkeypatch)
    proc = subprocess.run(
        ["git", "push", "origin", f"{forged}:{REF}"], cwd=c, capture_output=True, text=True
    )
    assert proc.returncode != 0, proc.stderr
    assert "push rejected by gitcoord" in proc.stderr, proc.stderr
    assert f"[{rule}]" in proc.stderr and words in proc.stderr, proc.stderr
    assert tip(served.repo) == now


def test_honest_work_passes_every_server(served: Served) -> None:
    """A session registers, claims and releases through the server and its hook."""
    c, who = served.clone, "carol"
    before = tip(served.repo)
    assert run(c, "register", "--role", "r", "--goal", "g", session=who).code == 0
    assert run(c, "claim", "task", "honest", "--ttl", "1h", session=who).code == 0
    assert run(c, "release", "task", "honest", session=who).code == 0
    after = tip(served.repo)
    assert after is not None and after != before
    subjects = git(served.repo, "log", "--format=%s", f"{before}..{after}", REF)
    assert len(subjects.splitlines()) == 3, subjects
    assert run(c, "validate").code == 0
