"""gitcoord/gitio.py is the one door to git: its rules (argument lists, LC_ALL=C, no
prompts, a hook's location variables dropped) hold for callers that name a directory
(`Git.at`) as for those that name a repository.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import World, git, run

from gitcoord.gitio import Git


def ok(cwd: Path, *args: str, session: str | None = None) -> Any:
    r = run(cwd, "--json", *args, session=session)
    assert r.code == 0, (args, r.code, r.out, r.err)
    return r.json()


def test_the_pre_commit_hook_judges_the_index_commit_a_commits(world: World) -> None:
    """The door drops a hook's GIT_INDEX_FILE, except where the pre-commit hook asks for
    the tree being committed: `commit -a` stages into a temporary index (the real one
    stays locked), so reading any other index would judge the wrong tree, or fail."""
    a = world.clone("a")
    ok(a, "init", "--slots", "4")
    ok(a, "register", "--role", "one", "--goal", "g", session="s1")
    c = world.clone("c")
    ok(c, "hooks", "install")
    git(c, "checkout", "-q", "gitcoord")
    head = git(c, "rev-parse", "HEAD").strip()
    path = c / "coordination" / "sessions" / "s1.yaml"
    text = path.read_text()
    env = {**os.environ, "GITCOORD_SESSION": "s1"}

    def commit(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["git", "commit", "-q", *args], cwd=c, env=env, capture_output=True, text=True
        )

    path.write_text(text.replace("number: 1", "number: banana"))
    p = commit("-a", "-m", "hand edit")
    assert p.returncode != 0 and "s1.yaml" in p.stderr and "[schema]" in p.stderr, p.stderr
    p = commit("-m", "hand edit", "coordination/sessions/s1.yaml")
    assert p.returncode != 0 and "[schema]" in p.stderr, p.stderr
    assert git(c, "rev-parse", "HEAD").strip() == head

    path.write_text(text.replace("goal: g", "goal: changed by hand"))
    p = commit("-a", "-m", "hand edit")
    assert p.returncode == 0, p.stderr
    assert git(c, "rev-parse", "HEAD").strip() != head


def test_git_at_keeps_the_doors_rules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = tmp_path / "r"
    git(tmp_path, "init", "-q", str(repo))
    (repo / "sub").mkdir()
    # what a hook of another repository would leave set
    monkeypatch.setenv("GIT_DIR", str(tmp_path / "elsewhere.git"))
    monkeypatch.setenv("GIT_WORK_TREE", str(tmp_path))
    monkeypatch.setenv("GIT_INDEX_FILE", str(tmp_path / "other-index"))
    g = Git.at(repo / "sub")
    top = g.run(["rev-parse", "--show-toplevel"]).stdout.decode().strip()
    assert Path(top).resolve() == repo.resolve()
    assert g.env["LC_ALL"] == "C" and g.env["GIT_TERMINAL_PROMPT"] == "0"
    assert not {"GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"} & set(g.env)
    assert Git.at(repo, keep_index=True).env["GIT_INDEX_FILE"] == str(tmp_path / "other-index")
    assert "GIT_DIR" not in Git.at(repo, keep_index=True).env
    # and `init`/`clone` run anywhere
    Git.at(tmp_path).run(["init", "-q", "--bare", str(tmp_path / "new.git")])
    assert (tmp_path / "new.git" / "HEAD").exists()
