"""The coordination state: what the files under `coordination/` say, as typed objects.

`load_state` reads a tree (a commit on the branch, or a directory on disk) and
never raises on bad data: every unreadable, malformed or misplaced file becomes
a `Problem` naming the file, so `validate` can list them all and mutations can
refuse to build on a broken state with a precise message.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel, ValidationError

from ..version import __version__
from . import names, yamlio
from .kinds import KINDS, Kind, kind_of, yaml_files
from .models import (
    FORMAT,
    Activation,
    Approval,
    Claim,
    Config,
    Heartbeat,
    Milestone,
    ReadMark,
    Roster,
    Session,
    Task,
)

M = TypeVar("M", bound=BaseModel)

TOP_LEVEL = frozenset(
    [
        *(kind.where.top for kind in KINDS),
        names.STATE_PAGE,
        # Bad files moved aside by `gitcoord doctor --fix`, raw bytes kept: never parsed,
        # so one broken file can be set aside without losing it (see gitcoord.quarantine).
        names.QUARANTINE,
    ]
)
"""What may stand directly in coordination/: each kind's file or folder (kinds.py), and two
entries that hold no documents."""

HELD_TOPS = frozenset(kind.where.top for kind in KINDS if kind.held is not None)
"""The entries of coordination/ that a State's load lists (not messages: read on demand)."""

Doc = BaseModel | bytes | None  # what a write puts at a path (bytes: CURRENT_STATE.md)


@dataclass(frozen=True)
class Problem:
    path: str
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message} [{self.rule}]"

    def to_json(self) -> dict[str, str]:
        return {"path": self.path, "rule": self.rule, "message": self.message}


class Source(Protocol):
    """A read-only view of a tree: a commit's tree or a directory on disk."""

    def listdir(self, path: str) -> list[tuple[str, bool]] | None:
        """(name, is_dir) entries of a directory, or None when it does not exist."""

    def read(self, path: str) -> bytes: ...


@dataclass(frozen=True)
class State:
    """The eagerly loaded part of the branch. Messages are read on demand (`mailbox`).

    One field per kind that the table of kinds (kinds.py) says a State holds, named by
    the kind's `held`: the document of a single file, else a mapping by the kind's key.
    The fields are spelled out, not generated, so that type checkers know them.
    """

    config: Config | None = None
    sessions: Mapping[str, Session] = field(default_factory=dict)
    claims: Mapping[str, Claim] = field(default_factory=dict)  # keyed by "type/name"
    heartbeats: Mapping[str, Heartbeat] = field(default_factory=dict)
    reads: Mapping[str, ReadMark] = field(default_factory=dict)
    approvals: Mapping[str, Approval] = field(default_factory=dict)
    activation: Activation | None = None
    tasks: Mapping[str, Task] = field(default_factory=dict)
    milestones: Mapping[str, Milestone] = field(default_factory=dict)
    roster: Roster | None = None
    problems: tuple[Problem, ...] = ()
    source: Source | None = field(default=None, compare=False, repr=False)

    @property
    def initialised(self) -> bool:
        return self.config is not None

    @property
    def format(self) -> int:
        """The branch's format, which says where its files live (`kinds.SHARDED`): this
        gitcoord's own for a branch not yet initialised, which `init` creates at it."""
        return self.config.format if self.config is not None else FORMAT

    @property
    def present(self) -> dict[str, Session]:
        """The registered sessions that have not left (`sessions` also holds those that
        did, whose files stay for the history: their claims, messages and heartbeats)."""
        return {sid: s for sid, s in self.sessions.items() if s.left_at is None}

    def session_by_number(self, number: int) -> Session | None:
        return next((s for s in self.present.values() if s.number == number), None)

    def free_numbers(self) -> list[int]:
        if self.config is None:
            return []
        taken = {s.number for s in self.present.values()}
        return [n for n in range(1, self.config.slots + 1) if n not in taken]

    def claim_status(self, claim: Claim, now: datetime) -> str:
        """live / expired / released, or pending while its approval is not granted."""
        base = claim.status(now)
        if base != "released" and claim.approval is not None:
            request = self.approvals.get(claim.approval)
            if request is None or request.status != "approved":
                return "pending"
        return base

    def apply(self, writes: Mapping[str, Doc]) -> State:
        """The state after `writes` (path -> new document). Messages are not held here.

        Each document goes where `load_state` would put it: its kind's `held` field,
        under its key (the table in kinds.py says both)."""
        changed: dict[str, Any] = {}  # State field -> its new value
        for path, doc in writes.items():
            if doc is None:
                raise ValueError(f"deleting {path} is not an operation gitcoord performs")
            if isinstance(doc, bytes):
                continue  # CURRENT_STATE.md: raw, not held in a State
            kind = kind_of(doc)
            if kind is None or kind.held is None:
                continue  # messages (and any model that is no kind): not held in a State
            if kind.single:
                changed[kind.held] = doc
            else:
                if kind.held not in changed:
                    changed[kind.held] = dict(getattr(self, kind.held))
                changed[kind.held][kind.key_of(doc)] = doc
        return replace(self, **changed)


Loaded = tuple[dict[str, BaseModel], tuple[Problem, ...]]  # a kind's documents, problems
Leaf = tuple[tuple[tuple[str, BaseModel], ...], tuple[Problem, ...]]  # one folder's, in order


class Validated:
    """What a long-lived `Store` loaded before, for the life of that store.

    - Documents that validated, by model and blob id: a blob id names its bytes and a
      model's validation depends on nothing else, so each file is validated once, not
      once per state loaded. What failed is not kept (judged again: rare).
    - Each kind's documents and problems, by the id of the kind's folder (and the
      format, which decides where files belong): a folder whose tree id did not change
      holds the same files, so a state that changed one claim reuses the sessions and
      heartbeats as they were. At 200 sessions that was most of every load.
    - Likewise each folder that holds a kind's files (a shard of 256), by its tree id:
      a state that changed one claim lists the claims' shards, and reads only the one
      whose id changed.

    A session's Coordinator, an MCP server's, and the hook judging each commit of a
    push load state after state of one branch. Documents are frozen and states never
    change the mappings they hold (`State.apply` copies), so states may share them.
    """

    # Documents kept: a state holds one per session, claim, task... (~1,000 at 200
    # sessions); past this the memo starts again, so a long-lived MCP server's memory stays
    # bounded (tens of MB at most) however many heartbeats it has seen.
    LIMIT = 10_000
    FOLDERS = 64  # kinds' folders: a few states' worth
    LEAVES = 20_000  # the folders that hold files (a shard's): a few states' worth

    def __init__(self) -> None:
        self._docs: dict[tuple[type[BaseModel], str], BaseModel] = {}
        self._folders: dict[tuple[str, str, int], Loaded] = {}
        self._leaves: dict[tuple[str, str, str, int], Leaf] = {}

    def get(self, model: type[BaseModel], blob: str) -> BaseModel | None:
        return self._docs.get((model, blob))

    def put(self, model: type[BaseModel], blob: str, doc: BaseModel) -> None:
        if len(self._docs) >= self.LIMIT:
            self._docs.clear()
        self._docs[(model, blob)] = doc

    def leaf(self, kind: str, path: str, tree: str, fmt: int) -> Leaf | None:
        return self._leaves.get((kind, path, tree, fmt))

    def put_leaf(self, kind: str, path: str, tree: str, fmt: int, leaf: Leaf) -> None:
        if len(self._leaves) >= self.LEAVES:
            self._leaves.clear()
        self._leaves[(kind, path, tree, fmt)] = leaf

    def folder(self, kind: str, tree: str, fmt: int) -> Loaded | None:
        return self._folders.get((kind, tree, fmt))

    def put_folder(self, kind: str, tree: str, fmt: int, loaded: Loaded) -> None:
        if len(self._folders) >= self.FOLDERS:
            self._folders.clear()
        self._folders[(kind, tree, fmt)] = loaded


def parse(
    src: Source, path: str, model: type[M], problems: list[Problem], *, cached: bool = False
) -> M | None:
    """The model in the file at `path`, or None with its problems recorded. `cached`:
    the source may answer from its parse cache (see gitcoord.parsecache) and from the
    documents it validated before (`validated`: see `domain.branch.Validated`);
    `load_state` asks for it, message readers do not (each message is read about once)."""
    memo = getattr(src, "validated", None) if cached else None
    blob = src.oid(path) if memo is not None else None  # type: ignore[attr-defined]
    if memo is not None and blob is not None and (hit := memo.get(model, blob)) is not None:
        return hit  # type: ignore[no-any-return]
    doc = _parse(src, path, model, problems, cached=cached)
    if memo is not None and blob is not None and doc is not None:
        memo.put(model, blob, doc)
    return doc


def _parse(
    src: Source, path: str, model: type[M], problems: list[Problem], *, cached: bool
) -> M | None:
    load_yaml = getattr(src, "load_yaml", None) if cached else None
    try:
        data = load_yaml(path) if load_yaml is not None else yamlio.load(src.read(path))
    except yamlio.YamlProblem as exc:
        problems.append(Problem(path, "yaml", str(exc)))
        return None
    except OSError:  # e.g. a submodule entry or a folder pushed where a file belongs
        problems.append(Problem(path, "layout", "unreadable: not a regular file"))
        return None
    if not isinstance(data, dict):
        problems.append(Problem(path, "schema", "expected a mapping of fields"))
        return None
    newer = data.get("format") if model is Config else None
    if isinstance(newer, int) and not isinstance(newer, bool) and newer > FORMAT:
        # Before the schema: a newer format may hold fields this version has never heard of.
        problems.append(
            Problem(
                path,
                "format",
                f"this branch uses format {newer}; this gitcoord ({__version__}) reads formats "
                f"up to {FORMAT}: install a newer gitcoord",
            )
        )
        return None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "(file)"
            problems.append(Problem(path, "schema", f"{where}: {err['msg']}"))
        return None


def load_state(src: Source) -> State:
    """The state in a tree: every kind the table (kinds.py) says a State holds, loaded from
    where the table says it lives; whatever cannot be loaded becomes a `Problem`."""
    root = names.ROOT
    prefetch = getattr(src, "prefetch", None)  # a view of git trees reads them in bulk
    if prefetch is not None:
        prefetch(root, HELD_TOPS)
    top = src.listdir(root)
    if top is None:
        return State(source=src)
    problems: list[Problem] = []
    for name, is_dir in top:
        if name not in TOP_LEVEL:
            problems.append(
                Problem(f"{root}/{name}", "layout", "unexpected entry in coordination/")
            )
        elif name == names.QUARANTINE and not is_dir:
            problems.append(Problem(f"{root}/{name}", "layout", "expected a folder"))

    memo: Validated | None = getattr(src, "validated", None)
    held: dict[str, Any] = {}  # State field -> a document or a mapping key -> document
    fmt = FORMAT  # until config.yaml, the first kind, says which layout the branch has
    for kind in KINDS:
        if kind.held is None:
            continue  # messages: read on demand (mailbox), never all at once
        tree = None  # the id of the kind's folder (a memo comes with a view of git trees)
        if memo is not None and not kind.single:
            tree = src.oid(f"{root}/{kind.where.top}")  # type: ignore[attr-defined]
        loaded = memo.folder(kind.name, tree, fmt) if memo is not None and tree else None
        if loaded is None:
            found: list[Problem] = []
            loaded = (_load_kind(src, kind, fmt, found, memo), tuple(found))
            if memo is not None and tree:
                memo.put_folder(kind.name, tree, fmt, loaded)
        docs, found_here = loaded
        problems.extend(found_here)
        held[kind.held] = docs.get("") if kind.single else docs
        if isinstance(held.get("config"), Config):
            fmt = held["config"].format
    return State(**held, problems=tuple(problems), source=src)


def _load_kind(
    src: Source, kind: Kind, fmt: int, problems: list[Problem], memo: Validated | None = None
) -> dict[str, BaseModel]:
    """The documents of `kind` in `src`, by key; what cannot be loaded goes to `problems`.
    With a memo, folder by folder: one whose tree id it knows is taken as it was."""

    def report(path: str, rule: str, message: str) -> None:
        problems.append(Problem(path, rule, message))

    leaves = getattr(kind.where, "leaves", None)
    docs: dict[str, BaseModel] = {}
    if memo is None or leaves is None:
        for key, doc in _load_files(src, kind, fmt, kind.where.files(src, report, fmt), problems):
            docs[key] = doc
        return docs
    for folder in leaves(src, report, fmt):
        tree = src.oid(folder)  # type: ignore[attr-defined]  # (a memo: a view of git trees)
        got = memo.leaf(kind.name, folder, tree, fmt) if tree else None
        if got is None:
            found: list[Problem] = []

            def here(path: str, rule: str, message: str, found: list[Problem] = found) -> None:
                found.append(Problem(path, rule, message))

            paths = yaml_files(src, folder, here)
            got = (tuple(_load_files(src, kind, fmt, paths, found)), tuple(found))
            if tree:
                memo.put_leaf(kind.name, folder, tree, fmt, got)
        pairs, found_here = got
        problems.extend(found_here)
        docs.update(pairs)
    return docs


def _load_files(
    src: Source, kind: Kind, fmt: int, paths: Iterator[str], problems: list[Problem]
) -> Iterator[tuple[str, BaseModel]]:
    """(key, document) of each file in `paths` that loads and is where its key belongs."""
    for path in paths:
        doc = parse(src, path, kind.model, problems, cached=True)
        if doc is None:
            continue
        key = kind.key_of(doc)
        wrong = kind.where.misplaced(path, key, kind.key, fmt)
        if wrong is not None:
            problems.append(Problem(path, "path", wrong))
            continue
        yield key, doc


class DirSource:
    """`Source` over a directory on disk that contains a `coordination/` folder."""

    def __init__(self, root: str) -> None:
        self._root = root

    def listdir(self, path: str) -> list[tuple[str, bool]] | None:
        full = os.path.join(self._root, path)
        if not os.path.isdir(full):
            return None
        return [(e.name, e.is_dir()) for e in os.scandir(full)]

    def read(self, path: str) -> bytes:
        with open(os.path.join(self._root, path), "rb") as fh:
            return fh.read(yamlio.MAX_FILE_BYTES + 1)
