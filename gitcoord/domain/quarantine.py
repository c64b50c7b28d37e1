"""Quarantine: setting bad files of the coordination branch aside, bytes kept.

Mutations refuse to build on a branch that does not validate, so one malformed
or rule-breaking file pushed by hand would stall every session. `gitcoord
doctor --fix` repairs the branch with one commit that moves each bad file to

    coordination/quarantine/<its path below coordination/, '/' replaced by '__'>

(`sessions/b.yaml` -> `quarantine/sessions__b.yaml`; `.2`, `.3`, ... before the
extension when that name is taken). The quarantine folder is never parsed, so
nothing there can break the branch again, and nothing is lost: the bytes are
the original's.

Which files are bad is a pure function of the tree (and of a time, for claims
that overlap): `plan` finds them in rounds. Round one takes every file a
problem names — malformed or schema-violating files, misplaced ones, and files
that are individually valid but break an invariant (of two sessions holding one
number, the one registered later). Setting those aside can orphan others (the
claims and messages of a quarantined session), so the next round checks the
state without them, until a round finds nothing new. Problems no quarantine
can fix (config.yaml missing or unreadable) are reported as `remaining`.

Because the plan is recomputable from the parent tree, the transition rules
(`transition.py`) accept a `Gitcoord-Op: quarantine` commit exactly when it
moves such files, unchanged, and does nothing else: a quarantine cannot be used
to delete another session's valid claim.

One exception keeps the fencing token monotonic: where a claim file is set aside,
the same commit leaves a released tombstone of that claim (`tombstones`) whose
generation is the highest the file's history holds (`claim_versions`), so the next
grant of the resource continues from there instead of starting again at 1. The
verifier (`verify.py`) recomputes that generation from the history; a claim file
that never held a valid claim has none to carry and is only moved.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime

from . import names
from .kinds import CLAIM, SESSION, claim_paths, config_path, kind_at
from .models import Claim
from .state import Problem, Source, State, load_state

QUARANTINE_DIR = f"{names.ROOT}/{names.QUARANTINE}"
_MAX_ROUNDS = 64
_MAX_NAME = 200  # bytes: file systems take 255, keep room for ".N"


class Hiding:
    """A `Source` in which some files and folders are gone."""

    def __init__(self, src: Source, hidden: set[str]) -> None:
        self._src = src
        self._hidden = hidden

    def _gone(self, path: str) -> bool:
        parts = path.split("/")
        return any("/".join(parts[:i]) in self._hidden for i in range(1, len(parts) + 1))

    def listdir(self, path: str) -> list[tuple[str, bool]] | None:
        found = self._src.listdir(path)
        if found is None or self._gone(path):
            return None
        prefix = f"{path}/" if path else ""
        return [(n, d) for n, d in found if not self._gone(prefix + n)]

    def read(self, path: str) -> bytes:
        if self._gone(path):
            raise FileNotFoundError(path)
        return self._src.read(path)


@dataclass
class Plan:
    """What `doctor --fix` does: `moves` original -> quarantine path (files only)."""

    problems: list[Problem]  # every problem of the branch as it is (round one)
    condemned: dict[str, list[Problem]] = field(default_factory=dict)  # path -> why
    moves: dict[str, str] = field(default_factory=dict)
    remaining: list[Problem] = field(default_factory=list)  # not fixable by quarantine

    @property
    def healthy(self) -> bool:
        return not self.problems


def problems_of(src: Source, now: datetime | None = None) -> tuple[State, list[Problem]]:
    """The state of a tree and every problem `gitcoord validate` reports for it, plus,
    with `now`, claims of different holders binding the same items at that time."""
    from .validate import check_messages, check_state

    state = load_state(src)
    return state, check_state(state, now) + check_messages(src, state)


def plan(src: Source, now: datetime | None = None) -> Plan:
    """Every file to set aside so that the tree validates, and what would still be wrong."""
    state, problems = problems_of(src, now)
    result = Plan(problems=problems)
    hidden: set[str] = set()
    view: Source = src
    for _ in range(_MAX_ROUNDS):
        if not problems:
            break
        fresh: dict[str, list[Problem]] = {}
        stuck: list[Problem] = []
        for problem in problems:
            targets = [t for t in _targets(view, state, problem) if t not in hidden]
            if not targets and not _is_hidden(problem.path, hidden):
                stuck.append(problem)
            for target in targets:
                fresh.setdefault(target, []).append(problem)
        if not fresh:
            result.remaining = stuck
            break
        result.condemned.update(fresh)
        hidden |= set(fresh)
        view = Hiding(src, hidden)
        state, problems = problems_of(view, now)
    else:  # pragma: no cover - every round hides at least one more file
        result.remaining = problems
    files = sorted({f for path in result.condemned for f in _files_under(src, path)})
    result.moves = quarantine_paths(src, files)
    return result


def _is_hidden(path: str, hidden: set[str]) -> bool:
    return any(path == h or path.startswith(h + "/") for h in hidden)


def _targets(src: Source, state: State, problem: Problem) -> list[str]:
    """The files (or folders) that setting aside removes `problem`."""
    path = problem.path
    if path == config_path() or not path.startswith(names.ROOT + "/"):
        return []  # the branch cannot do without its config: restore it by hand
    if problem.rule == "unique-number":
        sid = path.rsplit("/", 1)[-1].removesuffix(".yaml")
        mine = state.sessions.get(sid)
        if mine is not None:
            same = sorted(
                (s for s in state.present.values() if s.number == mine.number),
                key=lambda s: (s.registered_at, s.id),
            )
            return [
                SESSION.path(s.id, fmt=state.format) for s in same[1:]
            ]  # keep the first registered
    if _exists(src, path):
        return [path]
    return []


def _exists(src: Source, path: str) -> bool:
    parent, _, leaf = path.rpartition("/")
    return any(name == leaf for name, _ in src.listdir(parent) or [])


def _files_under(src: Source, path: str) -> Iterator[str]:
    entries = src.listdir(path)
    parent, _, leaf = path.rpartition("/")
    is_dir = any(name == leaf and d for name, d in src.listdir(parent) or [])
    if entries is None or not is_dir:
        yield path
        return
    for name, _ in entries:
        yield from _files_under(src, f"{path}/{name}")


def raw(src: Source, path: str) -> bytes:
    """The bytes a quarantine copy of `path` holds."""
    try:
        return src.read(path)
    except OSError:  # a submodule entry: nothing to read, say what it was
        return f"(unreadable entry {path}: not a regular file)\n".encode()


def quarantine_paths(src: Source, files: list[str]) -> dict[str, str]:
    """original -> its quarantine path, for `files` in order, never reusing a name."""
    taken = {f"{QUARANTINE_DIR}/{n}" for n, _ in src.listdir(QUARANTINE_DIR) or []}
    moves: dict[str, str] = {}
    for original in files:
        rel = original[len(names.ROOT) + 1 :] if original.startswith(names.ROOT + "/") else original
        flat = rel.replace("/", "__")
        stem, dot, ext = flat.rpartition(".")
        if not dot or not stem or "__" in ext:
            stem, ext = flat, ""
        if len(flat.encode("utf-8", "surrogateescape")) > _MAX_NAME:
            digest = hashlib.sha256(rel.encode("utf-8", "surrogateescape")).hexdigest()[:12]
            stem = stem.encode("utf-8", "surrogateescape")[:120].decode("utf-8", "ignore")
            stem = f"{stem}~{digest}"
            ext = ext[:20]
        suffix = f".{ext}" if ext else ""
        candidate, n = f"{QUARANTINE_DIR}/{stem}{suffix}", 2
        while candidate in taken:
            candidate, n = f"{QUARANTINE_DIR}/{stem}.{n}{suffix}", n + 1
        taken.add(candidate)
        moves[original] = candidate
    return moves


# --- tombstones: a claim set aside keeps its generation ------------------------------


def is_claim_file(path: str) -> bool:
    """Whether `path` is where a claim lives (`claims/<type>/<name>.yaml`, a canonical name)."""
    if kind_at(path) is not CLAIM or not path.endswith(".yaml"):
        return False
    type_, _, name = CLAIM.key_at(path).partition("/")
    return path.isascii() and path in claim_paths(type_, name)


def is_file(src: Source, path: str) -> bool:
    parent, _, leaf = path.rpartition("/")
    return (leaf, False) in (src.listdir(parent) or [])


@dataclass
class Tombstones:
    """What `doctor --fix` leaves at the claim files it moves: path -> released claim,
    and path -> why it leaves none (the generation is then not carried)."""

    made: dict[str, Claim] = field(default_factory=dict)
    not_carried: dict[str, str] = field(default_factory=dict)
