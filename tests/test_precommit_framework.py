"""The published `.pre-commit-hooks.yaml`, run by the real pre-commit framework.

Two releases: 3.0.4 (Debian 12's, older than the stage names of 3.2) and the newest
4.x. Each is installed once into its own venv, cached under pytest's cache folder
(`.pytest_cache/d/gitcoord-precommit/`) by version, as is pre-commit's own home, where
it installs gitcoord from the manifest's repository (`language: python`): the
repository is a snapshot of this checkout's package files, committed with fixed dates,
so an unchanged checkout reuses the installed hook environment.

On a repository where another session holds a path claim, the guard refuses a commit
that adds, modifies, deletes (`git rm`) or renames away (`git mv`) a claimed file,
`git commit -a` included; the holder passes. gitcoord-validate judges the staged
coordination state, not the working tree. PyPI must be reachable (it is from this
machine and CI): without it these tests skip, except under CI, where they fail.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REPO_ROOT, World, at, git, run

VERSIONS = {"3.0.4": "pre-commit==3.0.4", "4.x": "pre-commit>=4,<5"}
CLAIM = "src/api/**"
BRANCH = "gitcoord"
FIXED_DATE = "2026-01-01T00:00:00+00:00"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One xdist worker at a time builds what the others then reuse."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _unavailable(why: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(why)
    pytest.skip(why)


@pytest.fixture(scope="session")
def cache_dir(request: pytest.FixtureRequest) -> Path:
    return Path(request.config.cache.mkdir("gitcoord-precommit"))


def _venv(cache: Path, name: str, spec: str) -> Path:
    """A venv with `spec` installed, made once and kept in the cache."""
    home = cache / f"venv-{name}"
    exe = home / "bin" / "pre-commit"
    with _locked(cache / f"venv-{name}.lock"):
        if not (home / "ok").exists():
            shutil.rmtree(home, ignore_errors=True)
            subprocess.run([sys.executable, "-m", "venv", str(home)], check=True)
            proc = subprocess.run(
                [str(home / "bin" / "python"), "-m", "pip", "install", "-q", spec],
                capture_output=True,
                text=True,
                check=False,
            )
            if proc.returncode != 0:
                _unavailable(f"cannot install {spec}: {proc.stderr.strip()[-500:]}")
            (home / "ok").write_text(spec)
    return exe


def _manifest_repo(cache: Path) -> tuple[Path, str]:
    """A git repository of this checkout's package (as it is on disk, uncommitted
    changes included) and its one commit, whose sha depends only on the content."""
    top = [REPO_ROOT / n for n in (".pre-commit-hooks.yaml", "pyproject.toml", "README.md")]
    files = sorted(
        p
        for p in [*top, *(REPO_ROOT / "gitcoord").rglob("*")]
        if p.is_file() and "__pycache__" not in p.parts
    )
    digest = hashlib.sha256()
    for p in files:
        digest.update(str(p.relative_to(REPO_ROOT)).encode() + b"\0" + p.read_bytes() + b"\0")
    dest = cache / f"src-{digest.hexdigest()[:16]}"
    with _locked(cache / "src.lock"):
        if not (dest / ".git" / "ok").exists():
            shutil.rmtree(dest, ignore_errors=True)
            for p in files:
                target = dest / p.relative_to(REPO_ROOT)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(p, target)
            git(dest, "init", "-q")
            git(dest, "add", "-A")
            env = {**os.environ, "GIT_AUTHOR_DATE": FIXED_DATE, "GIT_COMMITTER_DATE": FIXED_DATE}
            subprocess.run(["git", "commit", "-q", "-m", "snapshot"], cwd=dest, env=env, check=True)
            (dest / ".git" / "ok").write_text("")
    return dest, git(dest, "rev-parse", "HEAD").strip()


class Framework:
    """One pre-commit release, its own home, and gitcoord's manifest repository."""

    def __init__(self, exe: Path, home: Path, repo: Path, rev: str) -> None:
        self.exe, self.home, self.repo, self.rev = exe, home, repo, rev

    def env(self, session: str | None = None) -> dict[str, str]:
        env = {**os.environ, "PRE_COMMIT_HOME": str(self.home)}
        env.pop("GITCOORD_SESSION", None)
        if session:
            env["GITCOORD_SESSION"] = session
        return env

    def config(self, *hooks: str) -> str:
        ids = "".join(f"      - id: {h}\n" for h in hooks)
        return f"repos:\n  - repo: {self.repo}\n    rev: {self.rev}\n    hooks:\n{ids}"

    def run(
        self, cwd: Path, *args: str, session: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.exe), *args],
            cwd=cwd,
            env=self.env(session),
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
        )


@pytest.fixture(scope="session", params=sorted(VERSIONS))
def framework(request: pytest.FixtureRequest, cache_dir: Path) -> Framework:
    name = request.param
    exe = _venv(cache_dir, name, VERSIONS[name])
    repo, rev = _manifest_repo(cache_dir)
    return Framework(exe, cache_dir / f"home-{name}", repo, rev)


def sh(
    cwd: Path, *args: str, session: str | None = None, fw: Framework | None = None
) -> subprocess.CompletedProcess[str]:
    env = fw.env(session) if fw else {**os.environ}
    if session and not fw:
        env["GITCOORD_SESSION"] = session
    return subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )


def ok(cwd: Path, *args: str, session: str | None = None) -> None:
    r = run(cwd, *args, session=session)
    assert r.code == 0, (args, r.out, r.err)


def write(root: Path, path: str, text: str) -> None:
    target = root / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)


def claimed_clone(world: World) -> Path:
    """s1 holds path 'src/api/**'; a clone with src/api/{a,b}.py and docs/x.md."""
    a = world.clone("a")
    ok(a, "init", "--slots", "4")
    ok(a, "register", "--role", "one", "--goal", "g", session="s1")
    ok(a, "register", "--role", "two", "--goal", "g", session="s2")
    ok(a, "claim", "path", CLAIM, session="s1")
    c = world.clone("c")
    for path in ("src/api/a.py", "src/api/b.py", "docs/x.md"):
        write(c, path, f"{path}\n")
    git(c, "add", "-A")
    git(c, "commit", "-q", "-m", "files")
    return c


@pytest.mark.slow
def test_the_guard_judges_everything_staged(world: World, framework: Framework) -> None:
    c = claimed_clone(world)
    write(c, ".pre-commit-config.yaml", framework.config("gitcoord-guard", "gitcoord-validate"))
    git(c, "add", ".pre-commit-config.yaml")
    git(c, "commit", "-q", "-m", "pre-commit config")
    installed = framework.run(c, "install")
    assert installed.returncode == 0, installed.stdout + installed.stderr
    head = git(c, "rev-parse", "HEAD")

    def refused(*commit_args: str, word: str = "src/api/a.py") -> None:
        p = sh(c, "commit", "-q", "-m", "try", *commit_args, session="s2", fw=framework)
        assert p.returncode != 0, (p.stdout, p.stderr)
        out = p.stdout + p.stderr
        assert word in out and "s1" in out and CLAIM in out, out
        assert git(c, "rev-parse", "HEAD") == head
        git(c, "reset", "-q", "--hard", "HEAD")
        git(c, "clean", "-qfd", "src", "docs")

    # add a new file inside the claim
    write(c, "src/api/new.py", "new\n")
    git(c, "add", "src/api/new.py")
    refused(word="src/api/new.py")
    # modify
    write(c, "src/api/a.py", "changed\n")
    git(c, "add", "src/api/a.py")
    refused()
    # delete: pre-commit passes no name for it
    git(c, "rm", "-q", "src/api/a.py")
    refused()
    # rename away: pre-commit passes only the new name, outside the claim
    git(c, "mv", "src/api/a.py", "docs/a.py")
    refused()
    # `git commit -a`: a temporary index, not the one on disk
    write(c, "src/api/a.py", "changed, not staged\n")
    refused("-a")

    # unclaimed files pass for s2; the holder passes inside the claim
    write(c, "docs/x.md", "more\n")
    git(c, "add", "docs/x.md")
    p = sh(c, "commit", "-q", "-m", "docs", session="s2", fw=framework)
    assert p.returncode == 0, p.stdout + p.stderr
    git(c, "mv", "src/api/a.py", "docs/a.py")
    git(c, "rm", "-q", "src/api/b.py")
    p = sh(c, "commit", "-q", "-m", "s1 moves its files", session="s1", fw=framework)
    assert p.returncode == 0, p.stdout + p.stderr
    assert git(c, "show", "--name-status", "--format=", "HEAD").split() == [
        "R100",
        "src/api/a.py",
        "docs/a.py",
        "D",
        "src/api/b.py",
    ]


def test_validate_judges_the_index_not_the_working_tree(
    world: World, framework: Framework, tmp_path: Path
) -> None:
    a = world.clone("a")
    ok(a, "init", "--slots", "4")
    ok(a, "register", "--role", "one", "--goal", "g", session="s1")
    c = world.clone("c")
    git(c, "checkout", "-q", BRANCH)
    # the coordination branch carries no pre-commit config: it lives outside the tree
    config = tmp_path / "pre-commit-config.yaml"
    config.write_text(framework.config("gitcoord-validate"))
    installed = framework.run(c, "install", "-c", str(config))
    assert installed.returncode == 0, installed.stdout + installed.stderr
    head = git(c, "rev-parse", "HEAD")
    sessions = c / "coordination" / "sessions"

    def own(sid: str) -> Path:  # a session's file in the clone's work tree (sharded folders)
        path = c / at(f"coordination/sessions/{sid}.yaml")
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    # an untracked broken file is not part of the commit: a valid staged change passes
    (sessions / "junk.yaml").write_text("{{{ not yaml\n")
    text = own("s1").read_text()
    s9 = text.replace("id: s1", "id: s9").replace("number: 1", "number: 2")
    own("s9").write_text(s9)
    git(c, "add", at("coordination/sessions/s9.yaml"))
    p = sh(c, "commit", "-q", "-m", "register s9 by hand", session="s9", fw=framework)
    assert p.returncode == 0, p.stdout + p.stderr
    assert git(c, "rev-parse", "HEAD") != head
    head = git(c, "rev-parse", "HEAD")

    # an invalid staged state is refused, whatever the working tree says
    own("s8").write_text(s9.replace("id: s9", "id: s8"))
    git(c, "add", at("coordination/sessions/s8.yaml"))
    s8 = s9.replace("id: s9", "id: s8")
    own("s8").write_text(s8.replace("number: 2", "number: 3"))
    p = sh(c, "commit", "-q", "-m", "register s8 by hand", session="s8", fw=framework)
    assert p.returncode != 0, p.stdout + p.stderr
    out = p.stdout + p.stderr
    assert "'s8'" in out and "[unique-number]" in out, out
    assert git(c, "rev-parse", "HEAD") == head
