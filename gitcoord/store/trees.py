"""Trees: read-only views of a commit's tree, and new trees and commits written from a
base tree and the files that change, straight into the object store (no work tree, no
index).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from datetime import datetime
from typing import Any

from ..gitio import ObjectReader, ObjectWriter, TreeEntry, format_commit, format_tree
from ..sshsig import embed_signature
from .parsecache import ParseCache

Files = Mapping[str, bytes | None]  # path -> new bytes, None: delete the file


class TreeSource:
    """A read-only view of a tree (e.g. a commit's), read on demand through one
    cat-file process: the domain's `state.Source`, and more."""

    PREFETCH = 4096  # folders `prefetch` reads at most (a crafted branch may hold more)

    def __init__(
        self,
        reader: ObjectReader,
        root_tree: str | None,
        parsed: ParseCache | None = None,
        commit: str | None = None,
    ) -> None:
        self._reader = reader
        self._root = root_tree
        self.commit = commit  # the commit whose tree this is, when it is one
        self._cache: dict[str, list[TreeEntry] | None] = {}
        self._named: dict[str, dict[str, TreeEntry]] = {}  # a folder's entries by name
        self.parsed = parsed

    def entries(self, path: str) -> list[TreeEntry] | None:
        if path in self._cache:
            return self._cache[path]
        found: list[TreeEntry] | None
        if self._root is None:
            found = None
        elif path == "":
            found = self._reader.tree(self._root)
        else:
            entry = self._entry(path)
            found = self._reader.tree(entry.oid) if entry is not None and entry.is_tree else None
        self._cache[path] = found
        return found

    def prefetch(self, path: str, only: Collection[str] | None = None) -> None:
        """Read the folders under `path` into the reader's cache, a level at a time in
        one exchange each (`ObjectReader.trees`), before a walk that lists them one by
        one: a state's ~300 folders at 200 sessions cost 4 exchanges with cat-file, not
        300. `only`: the folders directly under `path` to go into (a state's kinds, not
        the messages it never lists). Below the first two levels (the root, a kind's
        folder), a folder already cached is not gone into: along a branch an unchanged
        one keeps its id, and was walked (or prefetched) with the state that had it."""
        level = [path]
        budget = self.PREFETCH
        depth = 0
        while level and budget > 0:
            found: list[tuple[str, str, bool]] = []  # folder, id, read now
            for folder in level:
                if folder:
                    entry = self._entry(folder)
                    oid = entry.oid if entry is not None and entry.is_tree else None
                else:
                    oid = self._root
                if oid is not None:
                    found.append((folder, oid, not self._reader.has_tree(oid)))
            wanted = [oid for _, oid, new in found if new][:budget]
            budget -= len(wanted)
            self._reader.trees(wanted)
            level = [
                f"{folder}/{e.name}" if folder else e.name
                for folder, oid, new in found
                if (new or depth < 2) and self._reader.has_tree(oid)
                for e in self._reader.tree(oid)
                if e.is_tree and (depth or only is None or e.name in only)
            ]
            depth += 1

    def listdir(self, path: str) -> list[tuple[str, bool]] | None:
        found = self.entries(path)
        return None if found is None else [(e.name, e.is_tree) for e in found]

    def blob(self, oid: str) -> bytes:
        got = self._reader.read(oid)
        if got is None:
            raise FileNotFoundError(oid)
        return got[2]

    def oid(self, path: str) -> str | None:
        """The object id at `path`, or None."""
        entry = self._entry(path)
        return entry.oid if entry is not None else None

    def _entry(self, path: str) -> TreeEntry | None:
        parent, _, leaf = path.rpartition("/")
        named = self._named.get(parent)
        if named is None:  # once per folder: a state's load looks up each of its files
            named = self._named[parent] = {}
            for e in self.entries(parent) or []:
                named.setdefault(e.name, e)  # a crafted tree may repeat a name: the first
        return named.get(leaf)

    def read(self, path: str) -> bytes:
        entry = self._entry(path)
        got = self._reader.read(entry.oid) if entry is not None else None
        if got is None:
            raise FileNotFoundError(path)
        return got[2]

    def parse(self, path: str) -> Any:
        """The parse cache's parse of `self.read(path)`, from the cache when the blob is
        in it (then the blob is not even read). Only for a view made with a cache."""
        assert self.parsed is not None
        entry = self._entry(path)
        if entry is None or entry.is_tree:
            return self.parsed.parser(self.read(path))
        return self.parsed.parse(entry.oid, lambda: self.read(path))


def tree_of(reader: ObjectReader, commit: str) -> str | None:
    """The root tree of `commit`, or None when it is no commit here."""
    got = reader.read(commit)
    if got is None or got[1] != "commit":
        return None
    return got[2].split(b"\n", 1)[0].split(b" ")[1].decode()


def diff_trees(
    reader: ObjectReader, old: str | None, new: str | None, prefix: str = ""
) -> list[tuple[str, str | None, str | None]]:
    """(path, old blob, new blob) of every file that differs between two trees, in
    process: a subtree whose id is the same on both sides is not opened (what
    `diff-tree -r` says, without a git process, for the few files a commit changes)."""
    if old == new:
        return []
    before = {e.name: e for e in reader.tree(old)} if old else {}
    after = {e.name: e for e in reader.tree(new)} if new else {}
    found: list[tuple[str, str | None, str | None]] = []
    for name in sorted(before.keys() | after.keys()):
        a, b = before.get(name), after.get(name)
        if a is not None and b is not None and a.oid == b.oid and a.mode == b.mode:
            continue
        path = f"{prefix}{name}"
        a_tree = a.oid if a is not None and a.is_tree else None
        b_tree = b.oid if b is not None and b.is_tree else None
        if a_tree or b_tree:
            found += diff_trees(reader, a_tree, b_tree, path + "/")
        a_blob = a.oid if a is not None and not a.is_tree else None
        b_blob = b.oid if b is not None and not b.is_tree else None
        if a_blob != b_blob:
            found.append((path, a_blob, b_blob))
    return found


def write_commit(
    reader: ObjectReader,
    writer: ObjectWriter,
    tip: str | None,
    files: Files,
    message: str,
    when: datetime,
    signature: str,
    sign: Callable[[bytes], bytes] | None = None,
    wrote: Callable[[str, str, bytes], None] | None = None,
) -> str:
    """A commit whose parent is `tip` (none when None) and whose tree is `tip`'s with
    `files` written; its id. `sign` turns the commit's bytes into an armored SSH
    signature, which the commit then carries in its `gpgsig` header. `wrote` is told
    each file written: its path, blob id and bytes."""
    blobs = {
        path: (None if data is None else writer.write("blob", data)) for path, data in files.items()
    }
    if wrote is not None:
        for path, data in files.items():
            oid = blobs[path]
            if data is not None and oid is not None:
                wrote(path, oid, data)
    base_tree = tree_of(reader, tip) if tip is not None else None
    tree = build_tree(reader, writer, base_tree, "", blobs)
    return commit_tree(
        writer, tree or writer.write("tree", b""), tip, message, when, signature, sign
    )


def commit_tree(
    writer: ObjectWriter,
    tree: str,
    tip: str | None,
    message: str,
    when: datetime,
    signature: str,
    sign: Callable[[bytes], bytes] | None = None,
) -> str:
    """A commit of `tree` whose parent is `tip`, signed by `sign` when given; its id."""
    data = format_commit(
        tree, [tip] if tip else [], signature, signature, int(when.timestamp()), message
    )
    if sign is not None:
        data = embed_signature(data, sign(data), writer.object_format)
    return writer.write("commit", data)


def build_tree(
    reader: ObjectReader,
    writer: ObjectWriter,
    base: str | None,
    prefix: str,
    blobs: Mapping[str, str | None],
) -> str | None:
    """A new tree: `base` with the files in `blobs` (relative to `prefix`) replaced.

    Subtrees with no change keep their object id, so a write costs objects
    proportional to its depth, not to the size of the state.
    """
    entries = {e.name: e for e in (reader.tree(base) if base else [])}
    children: dict[str, dict[str, str | None]] = {}
    for path, oid in blobs.items():
        head, sep, rest = path.partition("/")
        if sep:
            children.setdefault(head, {})[rest] = oid
        elif oid is None:
            entries.pop(head, None)
        else:
            entries[head] = TreeEntry("100644", head, oid)
    for name, sub in children.items():
        old = entries.get(name)
        new = build_tree(
            reader, writer, old.oid if old and old.is_tree else None, prefix + name + "/", sub
        )
        if new is None:
            entries.pop(name, None)
        else:
            entries[name] = TreeEntry("40000", name, new)
    if not entries:
        return None
    return writer.write("tree", format_tree(entries.values()))
