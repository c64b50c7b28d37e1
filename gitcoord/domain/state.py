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
from typing import Protocol, TypeVar

from pydantic import BaseModel, ValidationError

from . import names, yamlio
from .models import (
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

TOP_LEVEL = {
    "config.yaml",
    "sessions",
    "claims",
    "heartbeats",
    "messages",
    "reads",
    "approvals",
    "activation.yaml",
    "tasks",
    "milestones",
    "roster.yaml",
    "CURRENT_STATE.md",
    # Bad files moved aside by `gitcoord doctor --fix`, raw bytes kept: never parsed,
    # so one broken file can be set aside without losing it (see gitcoord.quarantine).
    "quarantine",
}

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
    """The eagerly loaded part of the branch. Messages are read on demand (`mailbox`)."""

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

    def session_by_number(self, number: int) -> Session | None:
        return next((s for s in self.sessions.values() if s.number == number), None)

    def free_numbers(self) -> list[int]:
        if self.config is None:
            return []
        taken = {s.number for s in self.sessions.values()}
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
        """The state after `writes` (path -> new document). Messages are not held here."""
        config = self.config
        sessions, claims = dict(self.sessions), dict(self.claims)
        heartbeats, reads = dict(self.heartbeats), dict(self.reads)
        approvals, activation = dict(self.approvals), self.activation
        tasks, milestones, roster = dict(self.tasks), dict(self.milestones), self.roster
        for path, doc in writes.items():
            if isinstance(doc, Config):
                config = doc
            elif isinstance(doc, Session):
                sessions[doc.id] = doc
            elif isinstance(doc, Claim):
                claims[doc.key] = doc
            elif isinstance(doc, Heartbeat):
                heartbeats[doc.session] = doc
            elif isinstance(doc, ReadMark):
                reads[doc.session] = doc
            elif isinstance(doc, Approval):
                approvals[doc.id] = doc
            elif isinstance(doc, Activation):
                activation = doc
            elif isinstance(doc, Task):
                tasks[doc.id] = doc
            elif isinstance(doc, Milestone):
                milestones[doc.name] = doc
            elif isinstance(doc, Roster):
                roster = doc
            elif doc is None:
                raise ValueError(f"deleting {path} is not an operation gitcoord performs")
        return replace(
            self,
            config=config,
            sessions=sessions,
            claims=claims,
            heartbeats=heartbeats,
            reads=reads,
            approvals=approvals,
            activation=activation,
            tasks=tasks,
            milestones=milestones,
            roster=roster,
        )


def parse(
    src: Source, path: str, model: type[M], problems: list[Problem], *, cached: bool = False
) -> M | None:
    """The model in the file at `path`, or None with its problems recorded. `cached`:
    the source may answer from its parse cache (see gitcoord.parsecache); `load_state`
    asks for it, message readers do not (each message is read about once)."""
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
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "(file)"
            problems.append(Problem(path, "schema", f"{where}: {err['msg']}"))
        return None


def _files(src: Source, path: str, problems: list[Problem]) -> Iterator[tuple[str, str]]:
    """(stem, path) of the .yaml files in a directory; anything else is a problem."""
    for name, is_dir in sorted(src.listdir(path) or []):
        full = f"{path}/{name}"
        if is_dir or not name.endswith(".yaml"):
            problems.append(
                Problem(full, "layout", "unexpected entry: only .yaml files belong here")
            )
            continue
        yield name[: -len(".yaml")], full


def _per_session(
    src: Source, folder: str, model: type[M], key: str, problems: list[Problem]
) -> dict[str, M]:
    """Load `coordination/<folder>/<session>.yaml` files whose `key` field names the file."""
    found: dict[str, M] = {}
    for stem, path in _files(src, f"{names.ROOT}/{folder}", problems):
        doc = parse(src, path, model, problems, cached=True)
        if isinstance(doc, model):
            value = getattr(doc, key)
            if value != stem:
                problems.append(
                    Problem(path, "path", f"file name says {stem!r} but {key} is {value!r}")
                )
                continue
            found[value] = doc
    return found


def load_state(src: Source) -> State:
    root = names.ROOT
    top = src.listdir(root)
    if top is None:
        return State(source=src)
    problems: list[Problem] = []
    for name, is_dir in top:
        if name not in TOP_LEVEL:
            problems.append(
                Problem(f"{root}/{name}", "layout", "unexpected entry in coordination/")
            )
        elif name == "quarantine" and not is_dir:
            problems.append(Problem(f"{root}/{name}", "layout", "expected a folder"))

    config = None
    if any(name == "config.yaml" for name, _ in top):
        parsed = parse(src, names.config_path(), Config, problems, cached=True)
        config = parsed if isinstance(parsed, Config) else None
    else:
        problems.append(
            Problem(
                names.config_path(),
                "layout",
                "missing, though the branch has other files: restore it with a commit",
            )
        )

    sessions = _per_session(src, "sessions", Session, "id", problems)
    heartbeats = _per_session(src, "heartbeats", Heartbeat, "session", problems)
    reads = _per_session(src, "reads", ReadMark, "session", problems)
    approvals = _per_session(src, "approvals", Approval, "id", problems)
    activation = None
    if any(name == "activation.yaml" for name, _ in top):
        activation = parse(src, names.activation_path(), Activation, problems, cached=True)
    tasks = _per_session(src, "tasks", Task, "id", problems)
    milestones = _per_session(src, "milestones", Milestone, "name", problems)
    roster = None
    if any(name == "roster.yaml" for name, _ in top):
        roster = parse(src, names.roster_path(), Roster, problems, cached=True)

    claims: dict[str, Claim] = {}
    for type_dir, is_dir in sorted(src.listdir(f"{root}/claims") or []):
        dir_path = f"{root}/claims/{type_dir}"
        if not is_dir:
            problems.append(Problem(dir_path, "layout", "expected a folder per claim type"))
            continue
        for _stem, path in _files(src, dir_path, problems):
            doc = parse(src, path, Claim, problems, cached=True)
            if not isinstance(doc, Claim):
                continue
            expected = names.claim_path(doc.type, doc.name)
            if expected != path:
                problems.append(Problem(path, "path", f"claim {doc.key!r} belongs in {expected}"))
                continue
            claims[doc.key] = doc
    return State(
        config,
        sessions,
        claims,
        heartbeats,
        reads,
        approvals,
        activation,
        tasks,
        milestones,
        roster,
        tuple(problems),
        src,
    )


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
