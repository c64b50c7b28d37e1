"""Hermetic fixtures: real git, real bare remotes, nothing outside temp dirs.

Every test runs with a temporary HOME, GIT_CONFIG_NOSYSTEM=1, a global config
of our own and fixed identities, so the machine's git configuration can
neither help nor break a test (the approach of git-revise's and pre-commit's
test suites).
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gitcoord.faces.cli import main as cli_main
from testing import servers
from testing.servers import git_daemon

REPO_ROOT = Path(__file__).resolve().parent.parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The `slow` tests first (each keeps its order): under `-n 2` the longest ones, left
    to start near the end, kept one worker busy for up to a minute with the other idle."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(autouse=True)
def hermetic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return hermetic_env(tmp_path, monkeypatch)


def hermetic_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The hermetic environment in `tmp_path`, set through `monkeypatch` (also for
    module-scoped fixtures, with a `pytest.MonkeyPatch.context()` of their own)."""
    home = tmp_path / "home"
    home.mkdir()
    for name in list(os.environ):
        if name.startswith(("GIT_", "GITCOORD_")):
            monkeypatch.delenv(name)
    gitconfig = home / ".gitconfig"
    gitconfig.write_text(
        "[user]\n\tname = Test User\n\temail = test@example.com\n"
        "[init]\n\tdefaultBranch = main\n"
        '[protocol "file"]\n\tallow = always\n'
        "[advice]\n\tdetachedHead = false\n"
    )
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(gitconfig))
    monkeypatch.setenv("GIT_AUTHOR_NAME", "Test User")
    monkeypatch.setenv("GIT_AUTHOR_EMAIL", "test@example.com")
    monkeypatch.setenv("GIT_COMMITTER_NAME", "Test User")
    monkeypatch.setenv("GIT_COMMITTER_EMAIL", "test@example.com")
    monkeypatch.setenv("GIT_TERMINAL_PROMPT", "0")
    # Spawned CLIs do their own work, so a kill -9 kills the work itself; the agent
    # path is exercised on purpose in test_agent.py (GITCOORD_AGENT=1 there).
    monkeypatch.setenv("GITCOORD_AGENT", "0")
    # gitcoord's per-user runtime files (turn locks, agent sockets) stay in the test's dir.
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    monkeypatch.setenv("GITCOORD_AGENT_IDLE", "20")
    # A due heartbeat pushes at once, as the tests of pacing expect, and no background
    # flusher outlives a test; riding is exercised on purpose in test_riders.py.
    monkeypatch.setenv("GITCOORD_RIDE", "0")
    return home


def at(path: str, fmt: int | None = None) -> str:
    """Where the file that the flat layout (formats up to 3) spells `path` lives at `fmt`
    (default: this gitcoord's format, whose folders are sharded): tests name files the
    way people read them, "coordination/claims/task/x.yaml"."""
    from gitcoord.domain.kinds import kind_at
    from gitcoord.domain.models import FORMAT

    kind = kind_at(path)
    if kind is None or kind.single or not path.endswith(".yaml"):
        return path
    return kind.path(kind.key_at(path), fmt=FORMAT if fmt is None else fmt)


def git(cwd: Path | str, *args: str, check: bool = True) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {proc.stderr}")
    return proc.stdout


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> object:
        import json

        return json.loads(self.out)


def run(cwd: Path | str, *args: str, session: str | None = None) -> Result:
    """Run the CLI in this process (fast): the same `main` the console script calls."""
    argv = ["-C", str(cwd)]
    if session:
        argv += ["--session", session]
    argv += list(args)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli_main(argv)
    return Result(code, out.getvalue(), err.getvalue())


def spawn(
    cwd: Path | str, *args: str, session: str | None = None, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    """Start the CLI as a real separate process (for races)."""
    argv = [sys.executable, "-m", "gitcoord", "-C", str(cwd)]
    if session:
        argv += ["--session", session]
    argv += list(args)
    return subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def wait_all(procs: list[subprocess.Popen[str]], timeout: float) -> list[Result]:
    """Wait for every process (each within `timeout`), in order; any left is killed."""
    results = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=timeout)
            results.append(Result(p.returncode, out, err))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    return results


def run_proc(cwd: Path | str, *args: str, session: str | None = None) -> Result:
    p = spawn(cwd, *args, session=session)
    out, err = p.communicate(timeout=120)
    return Result(p.returncode, out, err)


@dataclass
class World:
    """A bare remote and a factory of clones of it."""

    root: Path
    remote: Path

    def clone(self, name: str) -> Path:
        dest = self.root / name
        git(self.root, "clone", "-q", str(self.remote), str(dest))
        return dest

    def local_repo(self, name: str) -> Path:
        dest = self.root / name
        git(self.root, "init", "-q", str(dest))
        return dest

    @classmethod
    def made_in(cls, root: Path) -> World:
        """A new empty bare remote, `root/remote.git`."""
        remote = root / "remote.git"
        git(root, "init", "-q", "--bare", str(remote))
        return cls(root, remote)


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World.made_in(tmp_path)


@contextlib.contextmanager
def shared_world(factory: pytest.TempPathFactory, name: str) -> Iterator[World]:
    """A `world` for a module-scoped fixture: in a temp dir of its own, with the hermetic
    environment set there while the fixture lasts (each test still sets its own)."""
    root = factory.mktemp(name)
    with pytest.MonkeyPatch.context() as mp:
        hermetic_env(root, mp)
        yield World.made_in(root)


@pytest.fixture
def daemon_world(world: World) -> Iterator[tuple[World, str]]:
    """`world` whose remote is reached over git:// instead of the file system."""
    with git_daemon(world.root) as base_url:
        url = f"{base_url}/{world.remote.name}"
        yield world, url


def clone_url(world: World, url: str, name: str) -> Path:
    dest = world.root / name
    git(world.root, "clone", "-q", url, str(dest))
    return dest


def snapshot_worktree(path: Path) -> tuple[str, str, str, str]:
    """Everything a gitcoord command must leave alone in a user's clone."""
    return (
        git(path, "status", "--porcelain=v1", "-uall", "--ignored"),
        git(path, "rev-parse", "--symbolic-full-name", "HEAD", check=False),
        (path / ".git" / "index").read_bytes().hex() if (path / ".git" / "index").exists() else "",
        git(path, "diff"),
    )


def lock_files(git_dir: Path) -> list[str]:
    return [str(p) for p in git_dir.rglob("*.lock")]


# --- smart HTTP through a real web server -------------------------------------------------


@contextlib.contextmanager
def http_server(base: Path, users: dict[str, str] | None = None) -> Iterator[str]:
    """`git http-backend` behind lighttpd (Debian's `lighttpd` package) on a free loopback
    port, serving and accepting pushes to the bare repositories in `base`.

    .ci/run installs the package when it is missing and CI runs as root. Skips (with the
    reason) only when the server binary or git's http-backend is absent.
    """
    server, backend = servers.lighttpd(), servers.http_backend()
    if server is None:
        pytest.skip("smart HTTP needs lighttpd (apt-get install lighttpd; .ci/run does it as root)")
    if backend is None:
        pytest.skip("smart HTTP needs git-http-backend, which this git does not ship")
    with servers.http_server(base, server, backend, users=users) as base_url:
        yield base_url


# --- gitolite over sshd --------------------------------------------------------------------


@contextlib.contextmanager
def gitolite_server(
    base: Path, users: list[str], repos: tuple[str, ...] = ("coord",)
) -> Iterator[servers.Gitolite]:
    """gitolite (Debian's gitolite3) behind a private sshd on a free loopback port, with
    gitcoord's server hook as every repository's repo-specific pre-receive hook: the very
    shim `gitcoord hooks install --server` writes, running this interpreter's gitcoord.

    .ci/run installs the packages when they are missing and CI runs as root. Skips (with
    the reason) when gitolite3, sshd or the ssh client is absent.
    """
    missing = servers.gitolite_missing()
    if missing:
        pytest.skip(missing)
    scratch = base / "hook-scratch.git"
    git(base, "init", "-q", "--bare", str(scratch))
    r = run(base, "hooks", "install", "--server", str(scratch))
    assert r.code == 0, r.err
    with servers.gitolite_server(
        base / "gitolite", users, repos, pre_receive=scratch / "hooks" / "pre-receive"
    ) as server:
        yield server


def clone_as(server: servers.Gitolite, repo: str, user: str, dest: Path) -> Path:
    """A clone of gitolite's `repo` by gitolite user `user`: its ssh command is kept in the
    clone's config (core.sshCommand), so gitcoord's own fetches and pushes there are
    `user`'s too."""
    ssh = f"core.sshCommand={server.ssh_command(user)}"
    git(dest.parent, "clone", "-q", "-c", ssh, server.url(repo), str(dest))
    return dest


@pytest.fixture
def http_world(world: World) -> Iterator[tuple[World, str]]:
    """`world` whose remote is reached over smart HTTP (lighttpd + git http-backend)."""
    git(world.remote, "config", "http.receivepack", "true")
    with http_server(world.root) as base_url:
        yield world, f"{base_url}/{world.remote.name}"


@contextlib.contextmanager
def flusher_lock(clone: Path) -> Iterator[None]:
    """The test is the clone's flusher (`gitcoord flush --wait`): commands that hold a
    heartbeat or read mark for a ride see one running, and start none."""
    import fcntl

    from gitcoord.api.carry import FLUSHER_LOCK

    folder = clone / ".git" / "gitcoord" / "pending"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / FLUSHER_LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
