"""The verifier reads what a range of commits changed in one git process (`diff-tree
--stdin`): it must read exactly what `diff-tree` per commit reads, for every shape a
pushed commit can take — added, changed, deleted, executable, a symlink, a submodule
entry, a file that becomes a folder, names with spaces and non-ASCII, an empty commit,
a root commit, and a pair that is not parent and child — or give up and let each
commit be read alone."""

from __future__ import annotations

import subprocess
from pathlib import Path

from conftest import git

from gitcoord import Coordinator
from gitcoord.audit.verify import changed_files, changed_files_of


def _tree(repo: Path, entries: list[tuple[str, str, str]]) -> str:
    """A tree from (mode, name, object id) entries, sub-trees made by the caller."""
    text = "".join(
        f"{mode} {'tree' if mode == '040000' else 'commit' if mode == '160000' else 'blob'} "
        f"{oid}\t{name}\n"
        for mode, name, oid in entries
    )
    return subprocess.run(
        ["git", "mktree"], cwd=repo, input=text, capture_output=True, text=True, check=True
    ).stdout.strip()


def _blob(repo: Path, data: str) -> str:
    return subprocess.run(
        ["git", "hash-object", "-w", "--stdin"],
        cwd=repo,
        input=data,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def _commit(repo: Path, tree: str, *parents: str) -> str:
    args = ["commit-tree", tree, "-m", "c"]
    for p in parents:
        args += ["-p", p]
    return git(repo, *args).strip()


def test_one_process_for_a_range_reads_what_one_per_commit_reads(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    git(tmp_path, "init", "-q", str(repo))
    a, b, c = (_blob(repo, text) for text in ("a\n", "b\n", "c\n"))
    sub = _tree(repo, [("100644", "inner.yaml", a)])
    root = _commit(repo, _tree(repo, [("100644", "x.yaml", a)]))
    shapes = [
        [("100644", "x.yaml", b), ("100755", "run me.sh", c)],  # changed, executable
        [("100644", "x.yaml", b), ("120000", "link", a), ("160000", "mod", root)],
        [("100644", "x.yaml", b), ("040000", "run me.sh", sub)],  # a file becomes a folder
        [("100644", "x.yaml", b), ("040000", "run me.sh", sub)],  # nothing changes
        [("100644", "ünï cødé.yaml", c)],  # everything else deleted
    ]
    line = [root]
    for entries in shapes:
        line.append(_commit(repo, _tree(repo, entries), line[-1]))
    pairs: list[tuple[str | None, str]] = [(None, root)]
    pairs += [(line[k - 1], line[k]) for k in range(1, len(line))]
    pairs.append((root, line[-1]))  # not parent and child: judged as given
    with Coordinator(str(repo)) as coord:
        store = coord.store
        batch = changed_files_of(store, pairs)
        assert batch is not None
        alone = []
        for parent, commit in pairs:
            modes: dict[str, str] = {}
            alone.append((changed_files(store, parent, commit, modes), modes))
        assert batch == alone
        assert batch[4] == ([], {})  # the empty commit
        kinds = {path: mode for _, modes in batch for path, mode in modes.items()}
        assert kinds["link"] == "120000" and kinds["mod"] == "160000"
        assert kinds["run me.sh/inner.yaml"] == "100644" and "ünï cødé.yaml" in kinds
        # what git cannot read: no answer, and each commit is read alone
        assert changed_files_of(store, [(root, "0" * 40)]) is None
        assert changed_files_of(store, []) == []
