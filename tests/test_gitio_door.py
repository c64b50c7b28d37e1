"""gitcoord/gitio.py is the one door to git (its docstring says why): no other module of
the package starts a git process or imports GitPython.

Read from the source with `ast`, so a new `subprocess.run(["git", ...])` fails here
before it can skip the door's rules (argument lists, LC_ALL=C, no prompts, a hook's
location variables dropped).
"""

from __future__ import annotations

import ast
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import World, at, git, run

from gitcoord.gitio import Git

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "gitcoord"
DOOR = PACKAGE / "gitio.py"

# Functions that start a program named by their first argument.
_SPAWNERS = {
    "run",
    "Popen",
    "call",
    "check_call",
    "check_output",
    "getoutput",
    "getstatusoutput",
    "system",
    "popen",
    "execv",
    "execve",
    "execvp",
    "execvpe",
    "execl",
    "execle",
    "execlp",
    "execlpe",
    "spawnv",
    "spawnve",
    "spawnvp",
    "spawnvpe",
    "spawnl",
    "spawnle",
    "spawnlp",
    "spawnlpe",
    "create_subprocess_exec",
    "create_subprocess_shell",
}

# Not yet through the door, and why. Each entry must still be found (a stale one fails
# `test_pending_exceptions_are_still_needed`, so it is deleted once its reason is gone).
PENDING: dict[str, str] = {}


def _names_git(node: ast.expr) -> bool:
    """A string that names git as the program: "git", "/usr/bin/git", "git log ..." (shell)."""
    if not isinstance(node, ast.Constant) or not isinstance(node.value, str):
        return False
    program = node.value.strip().split(" ", 1)[0]
    return os.path.basename(program) == "git"


def _is_git_argv(node: ast.expr) -> bool:
    """A literal argument list or tuple whose program is git: ["git", ...]."""
    return isinstance(node, (ast.List, ast.Tuple)) and bool(node.elts) and _names_git(node.elts[0])


def _callee(node: ast.Call) -> str:
    func = node.func
    if isinstance(func, ast.Attribute):
        return func.attr
    if isinstance(func, ast.Name):
        return func.id
    return ""


def violations(source: str, filename: str = "<source>") -> list[tuple[int, str, str]]:
    """(line, enclosing function, what) for each way `source` reaches git around the door."""
    tree = ast.parse(source, filename)
    found: list[tuple[int, str, str]] = []

    def visit(node: ast.AST, scope: str) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            scope = node.name if scope == "<module>" else f"{scope}.{node.name}"
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "git" or alias.name.startswith("git."):
                    found.append((node.lineno, scope, f"import {alias.name} (GitPython)"))
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level == 0 and (module == "git" or module.startswith("git.")):
                found.append((node.lineno, scope, f"from {module} import (GitPython)"))
        elif isinstance(node, (ast.List, ast.Tuple)) and _is_git_argv(node):
            # Passed anywhere: to subprocess directly, or built up to be passed later.
            found.append((node.lineno, scope, "a git argv list"))
        elif isinstance(node, ast.Call) and _callee(node) in _SPAWNERS:
            first = node.args[0] if node.args else None
            for kw in node.keywords:
                if kw.arg in ("args", "cmd", "file", "path", "program"):
                    first = kw.value
            if first is not None and _names_git(first):
                found.append((node.lineno, scope, f"{_callee(node)}() of git"))
        for child in ast.iter_child_nodes(node):
            visit(child, scope)

    visit(tree, "<module>")
    return found


def scan(package: Path) -> dict[str, list[tuple[int, str, str]]]:
    """Violations in each module of `package` but its gitio.py, by path from its parent."""
    out = {}
    for path in sorted(package.rglob("*.py")):
        if path == package / "gitio.py":
            continue
        found = violations(path.read_text(encoding="utf-8"), str(path))
        if found:
            out[path.relative_to(package.parent).as_posix()] = found
    return out


def unexpected(found: dict[str, list[tuple[int, str, str]]]) -> list[str]:
    return [
        f"{name}:{line} in {scope}: {what}"
        for name, items in found.items()
        for line, scope, what in items
        if PENDING.get(name) != scope
    ]


def test_only_gitio_starts_git() -> None:
    bad = unexpected(scan(PACKAGE))
    assert not bad, (
        "git is run only through gitcoord.gitio (Git(git_dir).run, Git.at(path).run):\n  "
        + "\n  ".join(bad)
    )


def test_pending_exceptions_are_still_needed() -> None:
    found = scan(PACKAGE)
    stale = [
        f"{name} ({scope})"
        for name, scope in PENDING.items()
        if not any(s == scope for _, s, _ in found.get(name, []))
    ]
    assert not stale, f"goes through gitio now: delete from PENDING: {stale}"


def test_gitpython_is_imported_nowhere() -> None:
    """Not a dependency any more: the tests, benchmarks and helpers do without it too."""
    found = [
        f"{path.relative_to(ROOT)}:{line}: {what}"
        for folder in ("tests", "benchmarks", "testing")
        for path in sorted((ROOT / folder).rglob("*.py"))
        for line, _, what in violations(path.read_text(encoding="utf-8"), str(path))
        if "GitPython" in what
    ]
    assert not found, found


# Each line marked "# <-" must be flagged, and no other.
BAD = """
import subprocess, os
import git  # <-
import git.repo as r  # <-
from git import Repo  # <-
from git.objects import Commit  # <-

def direct(path):
    subprocess.run(["git", "rev-parse", "HEAD"], cwd=path)  # <-

def popen():
    return subprocess.Popen(("git", "cat-file", "--batch"), stdin=subprocess.PIPE)  # <-

def built(args):
    argv = ["git", *args]  # <-
    return subprocess.check_output(argv)

def shell():
    os.system("git gc --auto")  # <-
    subprocess.call("git fetch", shell=True)  # <-
    subprocess.run(args=["/usr/bin/git", "status"])  # <-
    os.execvp("git", ["git", "log"])  # <-
"""

GOOD = """
import subprocess, sys
from .gitio import Git
from ..gitio import Git as G, clean_env
from . import gitio

def fine(path, args):
    Git.at(path).run(["rev-parse", "HEAD"])
    subprocess.run(["gh", "pr", "list"])
    subprocess.Popen([sys.executable, "-m", "gitcoord", "status"])
    subprocess.run(["gitcoord", "status"])
    names = ("github", "git-lfs")
    return "git" in args
"""


def test_the_check_flags_each_way_around_the_door() -> None:
    marked = {i for i, text in enumerate(BAD.splitlines(), 1) if text.endswith("# <-")}
    found = violations(BAD)
    assert {line for line, _, _ in found} == marked
    assert (9, "direct", "a git argv list") in found
    assert violations(GOOD) == []


def test_the_package_check_fails_on_a_module_around_the_door(tmp_path: Path) -> None:
    pkg = tmp_path / "gitcoord"
    (pkg / "faces").mkdir(parents=True)
    (pkg / "gitio.py").write_text('import subprocess\nsubprocess.run(["git", "version"])\n')
    (pkg / "faces" / "good.py").write_text(GOOD)
    (pkg / "faces" / "bad.py").write_text(BAD)
    found = scan(pkg)
    assert set(found) == {"gitcoord/faces/bad.py"}  # the door itself may
    assert len(unexpected(found)) == len(found["gitcoord/faces/bad.py"]) > 0


# --- the door's rules, kept for callers that name a directory (Git.at) ----------------------


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
    path = c / at("coordination/sessions/s1.yaml")
    text = path.read_text()
    env = {**os.environ, "GITCOORD_SESSION": "s1"}

    def commit(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["git", "commit", "-q", *args], cwd=c, env=env, capture_output=True, text=True
        )

    path.write_text(text.replace("number: 1", "number: banana"))
    p = commit("-a", "-m", "hand edit")
    assert p.returncode != 0 and "s1.yaml" in p.stderr and "[schema]" in p.stderr, p.stderr
    p = commit("-m", "hand edit", at("coordination/sessions/s1.yaml"))
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
