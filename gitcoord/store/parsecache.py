"""Parsed YAML by blob id, kept between commands in `<git-common-dir>/gitcoord/`.

Every read and every transaction loads the whole state, and the YAML parser is pure
Python (~2 ms a file): on a branch with hundreds of claim files (released claims stay
as tombstones carrying their fencing token) that was most of a command's time. A blob
id names its bytes, so what they parse to never changes: a command re-parses only the
files that changed since the last one, in this clone, and the model validation (in
pydantic-core, ~20x faster than the parse) still runs on every load, so a cached file
is judged exactly as a fresh one.

Only data that survives a JSON round trip unchanged is kept (YAML's timestamps, binary
and non-string keys are not): JSON is what the standard library reads fastest. The
file is rewritten (atomically) only when a load parsed something new, and holds only
what the last loads used, so it stays the size of one state. Processes sharing a clone
share it: a miss looks (a stat) whether another one has saved since, so a file changed
by one session is parsed by the first that loads it, not by each; the members of one
group commit hand their new entries on through the group instead (`fresh`, `absorb`).
It is a cache: a missing, unreadable or corrupt file is rebuilt, and a read-only
repository merely goes without.

The store knows no YAML: the parse function and a version of everything its answer
depends on besides the bytes are given by whoever makes the cache (the domain's
`gitcoord.domain.branch`), and the version is part of the file's format, so a cache
written by another parser is never read.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from typing import Any

from ..gitio import is_object_id

# The layout of the file; the parser's version follows it (see `ParseCache`).
FORMAT = "gitcoord-parsed-1"
MAX_ENTRIES = 50_000  # a state holds one file per session, claim, task...; not messages
MAX_HANDED = 4_096  # entries `fresh` hands on at most (a cold load parses a whole state)


class ParseCache:
    """What blobs parse to by `parse`, whose answer depends on the bytes and `version`
    alone; `parse` raises on a bad file (problems are not cached)."""

    def __init__(
        self, common_dir: str, key: str, *, parse: Callable[[bytes], Any], version: str
    ) -> None:
        # One file per branch mirror: two branches read from one clone would otherwise
        # keep pruning each other's entries.
        digest = hashlib.sha1(key.encode()).hexdigest()[:16]
        self.path = os.path.join(common_dir, "gitcoord", "parsed", f"{digest}.json")
        self.parser = parse
        self.format = f"{FORMAT}/{version}"
        self._entries: dict[str, Any] | None = None
        self._used: set[str] = set()
        self._dirty = False
        self._stamp: tuple[int, int, int] | None = None  # the file as last read or written
        self._used_by_load = False  # whether `_used` says what a load used (save prunes)
        self._learnt: dict[str, bytes] = {}  # blobs written here, parsed at the next save
        self._fresh: dict[str, Any] = {}  # entries parsed here since the last `fresh()`
        self.hits = 0
        self.misses = 0

    def _load(self) -> dict[str, Any]:
        if self._entries is None:
            self._entries = {}
            self._read_file()
        return self._entries

    def _read_file(self) -> None:
        """Merge in what the file holds (what other processes of this clone parsed)."""
        assert self._entries is not None
        try:
            with open(self.path, "rb") as fh:
                stamp = _stamp(os.fstat(fh.fileno()))
                doc = json.loads(fh.read())
        except (OSError, ValueError):
            return
        self._stamp = stamp
        if isinstance(doc, dict) and doc.get("format") == self.format:
            entries = doc.get("entries")
            if isinstance(entries, dict):
                for oid, data in entries.items():
                    self._entries.setdefault(oid, data)

    def _news(self) -> bool:
        """On a miss: has another process of this clone saved since? (Sessions sharing
        a clone take turns; whoever loads a changed file first parses it for all of
        them.) A stat per miss, not once per load: a member of a group deciding again
        on a new tip (its push refused) missed every file the new commits brought, which
        the first member to decide had parsed and saved meanwhile — measured at 200
        sessions on 10 machines, the re-parsing was half of what the machines spent."""
        try:
            stamp = _stamp(os.stat(self.path))
        except OSError:
            return False
        if stamp == self._stamp:
            return False
        self._read_file()
        return True

    def parse(self, oid: str, read: Callable[[], bytes]) -> Any:
        """What the blob `oid` parses to; `read()` gives its bytes when not cached.
        Raises what the parse function raises (problems are not cached)."""
        entries = self._load()
        self._used.add(oid)
        self._used_by_load = True
        if oid in entries or (self._news() and oid in entries):
            self.hits += 1
            return entries[oid]
        self.misses += 1
        data = self.parser(read())
        self._keep(oid, data)
        return data

    def _keep(self, oid: str, data: Any) -> None:
        entries = self._load()
        if len(entries) < MAX_ENTRIES and _json_exact(data):
            entries[oid] = data
            self._dirty = True
            if len(self._fresh) < MAX_HANDED:
                self._fresh[oid] = data

    def fresh(self) -> dict[str, Any]:
        """What this process parsed since it was last asked (its own writes included),
        for the next session of the clone that decides on them: group commit hands it
        on through the group's socket (`TreeStore._round`), rather than each member
        writing the whole file for the next to read (measured at 200 sessions on 10
        machines: encoding and decoding the file was ~15% of what the machines spent)."""
        self._digest()
        found, self._fresh = self._fresh, {}
        return found

    def absorb(self, entries: Any, fmt: Any) -> bool:
        """Entries another process of this clone parsed (`fresh`) with a parser of format
        `fmt`, as handed on by its group: taken only from this cache's own format, by
        object ids, never over an entry this process has, and kept in memory (the file
        is written by whoever parsed them). Anything else is ignored (False): this is a
        cache, and the documents it gives are still validated on every load."""
        if fmt != self.format or not isinstance(entries, dict):
            return False
        mine = self._load()
        for oid, data in entries.items():
            if len(mine) >= MAX_ENTRIES:
                break
            if isinstance(oid, str) and is_object_id(oid) and oid not in mine:
                mine[oid] = data
                # Kept through this transaction's save (which keeps only what was used
                # since the last one): absorbed for the next load, which is often the
                # next transaction's (measured: every such file was parsed again there).
                self._used.add(oid)
        return True

    def learn(self, oid: str, data: bytes) -> None:
        """A blob this process just wrote, parsed at the next `save` for the loads to
        come (not now: a lone writer's push does not wait for it). Sessions sharing a
        clone go in one push as a chain of commits (group commit), each deciding on the
        commit the one before it left: without this, the k-th parsed the k-1 files of
        the others before it (quadratic in the group); with it, each file is parsed once,
        by its writer, and handed on before the next one decides (`fresh`)."""
        self._used.add(oid)
        self._learnt[oid] = data

    def _digest(self) -> None:
        entries = self._load()
        for oid, data in self._learnt.items():
            if oid in entries:
                continue
            try:
                self._keep(oid, self.parser(data))
            except ValueError:  # a bad file: never cached, judged at each load
                continue
        self._learnt.clear()

    def save(self, prune: bool = True) -> None:
        """Write the entries used since the last save, if anything new was parsed.
        `prune=False` (mid-transaction, after a write): keep every entry, and go on
        counting what is used (a write may follow a load this process did not make)."""
        self._digest()
        if not prune or not self._used_by_load:  # (only writes since: nothing to judge by)
            if self._dirty and self._entries is not None:
                self._write(self._entries)
            return
        self._used_by_load = False
        if not self._dirty or self._entries is None:
            self._used.clear()
            return
        keep = {oid: self._entries[oid] for oid in self._used if oid in self._entries}
        self._entries = keep
        self._used.clear()
        self._write(keep)

    def _write(self, keep: dict[str, Any]) -> None:
        self._dirty = False
        folder = os.path.dirname(self.path)
        try:
            os.makedirs(folder, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=".parsed-", suffix=".tmp")
            try:
                # dumps, not dump: only the one-shot encoder is the C one (~10x faster)
                text = json.dumps({"format": self.format, "entries": keep}, separators=(",", ":"))
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    fh.write(text)
                stamp = _stamp(os.stat(tmp))  # kept by the rename: our own write is no news
                os.replace(tmp, self.path)  # readers see the old file or the new one
                self._stamp = stamp
            except BaseException:
                os.unlink(tmp)
                raise
        except OSError:
            pass  # e.g. a read-only clone: correct without the cache, only slower


def _stamp(st: os.stat_result) -> tuple[int, int, int]:
    return (st.st_ino, st.st_mtime_ns, st.st_size)  # a new file (os.replace) is a new inode


def _json_exact(data: Any) -> bool:
    try:
        return bool(json.loads(json.dumps(data)) == data)
    except (TypeError, ValueError):  # datetime, bytes, non-string keys, NaN...
        return False
