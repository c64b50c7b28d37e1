"""The kinds of file on the coordination branch: one table, and everything else derived from it.

Each row (`Kind`) says, for one kind of file:

- `name`: what the kind is called (the name of its JSON Schema, the key in `DOCUMENTS`);
- `model`: the pydantic model its YAML follows;
- `where`: where it lives below `coordination/`: one file at the top level (`File`),
  a folder of files named by their key (`Folder`), claims' `claims/<type>/<name>.yaml`
  with the name percent-encoded (`ClaimFolder`), or messages'
  `messages/<to>/<YYYY-MM-DD>/<id>.yaml` (`MessageFolder`). The location builds
  paths from keys, reads keys back from paths, lists the files to load, and says
  when a document sits in a file its key does not name;
- `key`: the fields whose values, joined with "/", name the file (`id`; claims
  `type`+`name` -> "type/name"; messages `to`+`id`); none for a single file;
- `owner`: the field naming the session that owns the document, where that alone
  decides who may write it (`Session.id`, `Heartbeat.session`, `ReadMark.session`,
  `Message.sender`); None where a dedicated rule in `transition` decides;
- `held`: the `State` field that holds the kind: the document itself for a single
  file, else a mapping by key. None for messages: a state never holds them all,
  `mailbox` reads them on demand.

Derived from the table: `DOCUMENTS` (kind name -> model, which the JSON Schemas are
generated from), `state.TOP_LEVEL`, `state.load_state`'s loading, `State.apply`,
`transition.model_for`, `transition.doc_at` and the own-files rule's owner, and the
path functions at the end of this module (`session_path`, `claim_path`, ...), the
spelling callers use: one line over a row each, so every location is spelled here
alone. (`names`, below the models, only says what a valid name is: it may not reach
up here, or the import graph would have a cycle.)

Adding a kind of file therefore means: its model (`models.py`); one row here; its
rules: `validate.check_state` for what a state must obey, and `transition._check_doc`
for who may write it (a row with an `owner` gets the own-files rule without more).
If `State` holds the kind, the row's `held` also names a typed field of `State`:
mypy must know that `state.tasks` is a `Mapping[str, Task]`, which a table cannot
tell it; `tests/test_kinds.py` fails until the two agree.

The order of the rows is the order `load_state` loads them in, and so the order in
which the problems of a broken branch are reported.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Protocol

from pydantic import BaseModel

from .models import (
    Activation,
    Approval,
    Claim,
    Config,
    Heartbeat,
    Message,
    Milestone,
    ReadMark,
    Roster,
    Session,
    Task,
)
from .names import ROOT, claim_file_stem, claim_name_from_stem, message_day, resource_key

if TYPE_CHECKING:
    from .state import Source

Report = Callable[[str, str, str], None]
"""(path, rule, message): a problem found while listing. `state` makes it a `Problem`
(this module sits below `state`, so it cannot build one itself)."""


def _stem(path: str) -> str:
    return path.rsplit("/", 1)[-1].removesuffix(".yaml")


def yaml_files(src: Source, folder: str, report: Report) -> Iterator[str]:
    """The .yaml files in `folder`, sorted; anything else in it is reported."""
    for name, is_dir in sorted(src.listdir(folder) or []):
        full = f"{folder}/{name}"
        if is_dir or not name.endswith(".yaml"):
            report(full, "layout", "unexpected entry: only .yaml files belong here")
            continue
        yield full


class Location(Protocol):
    """Where the files of one kind live below `coordination/`."""

    depth: ClassVar[int]  # how many parts a file's path has below coordination/

    @property
    def top(self) -> str:
        """The entry directly below coordination/ ("config.yaml", "sessions")."""

    def path(self, key: str) -> str:
        """The file that holds the document with this key."""

    def key_at(self, path: str) -> str:
        """The key a path of this shape names (the reverse of `path`)."""

    def files(self, src: Source, report: Report) -> Iterator[str]:
        """The files of this kind in a tree, sorted; misplaced entries are reported."""

    def misplaced(self, path: str, key: str, fields: tuple[str, ...]) -> str | None:
        """Why a document with this key does not belong at `path` (None: it does)."""


@dataclass(frozen=True)
class File:
    """`coordination/<top>`: the one document of its kind."""

    top: str
    required: bool = False  # missing from a branch that has other files is a problem
    depth: ClassVar[int] = 1

    def path(self, key: str = "") -> str:
        return f"{ROOT}/{self.top}"

    def key_at(self, path: str) -> str:
        return ""

    def files(self, src: Source, report: Report) -> Iterator[str]:
        if any(name == self.top for name, _ in src.listdir(ROOT) or []):
            yield self.path()
        elif self.required:
            report(
                self.path(),
                "layout",
                "missing, though the branch has other files: restore it with a commit",
            )

    def misplaced(self, path: str, key: str, fields: tuple[str, ...]) -> str | None:
        return None


@dataclass(frozen=True)
class Folder:
    """`coordination/<top>/<key>.yaml`: one file per document, named by its key."""

    top: str
    depth: ClassVar[int] = 2

    @property
    def root(self) -> str:
        return f"{ROOT}/{self.top}"

    def path(self, key: str) -> str:
        return f"{self.root}/{key}.yaml"

    def key_at(self, path: str) -> str:
        return _stem(path)

    def files(self, src: Source, report: Report) -> Iterator[str]:
        return yaml_files(src, self.root, report)

    def misplaced(self, path: str, key: str, fields: tuple[str, ...]) -> str | None:
        stem = _stem(path)
        if stem == key:
            return None
        return f"file name says {stem!r} but {fields[0]} is {key!r}"


@dataclass(frozen=True)
class ClaimFolder:
    """`coordination/<top>/<type>/<name, percent-encoded>.yaml`, keyed "type/name".

    The path is a function of the key, so two claims of one resource are always one
    file; percent-encoding is injective and keeps '/', '*' and ':' out of file names.
    """

    top: str
    depth: ClassVar[int] = 3

    @property
    def root(self) -> str:
        return f"{ROOT}/{self.top}"

    def file(self, type_: str, name: str) -> str:
        return f"{self.root}/{type_}/{claim_file_stem(name)}.yaml"

    def path(self, key: str) -> str:
        type_, _, name = key.partition("/")  # a claim type never holds a '/'
        return self.file(type_, name)

    def key_at(self, path: str) -> str:
        return resource_key(path.split("/")[2], claim_name_from_stem(_stem(path)))

    def files(self, src: Source, report: Report) -> Iterator[str]:
        for type_dir, is_dir in sorted(src.listdir(self.root) or []):
            dir_path = f"{self.root}/{type_dir}"
            if not is_dir:
                report(dir_path, "layout", "expected a folder per claim type")
                continue
            yield from yaml_files(src, dir_path, report)

    def misplaced(self, path: str, key: str, fields: tuple[str, ...]) -> str | None:
        expected = self.path(key)
        return None if expected == path else f"claim {key!r} belongs in {expected}"


@dataclass(frozen=True)
class MessageFolder:
    """`coordination/<top>/<to>/<YYYY-MM-DD>/<id>.yaml`, keyed "to/id".

    Sharded by recipient and UTC day so that an inbox read opens only the day folders
    that changed since the reader's mark (`mailbox`).
    """

    top: str
    depth: ClassVar[int] = 4

    @property
    def root(self) -> str:
        return f"{ROOT}/{self.top}"

    def inbox(self, recipient: str) -> str:
        return f"{self.root}/{recipient}"

    def file(self, recipient: str, message_id: str) -> str:
        return f"{self.inbox(recipient)}/{message_day(message_id)}/{message_id}.yaml"

    def path(self, key: str) -> str:
        recipient, _, message_id = key.partition("/")  # a session id never holds a '/'
        return self.file(recipient, message_id)

    def key_at(self, path: str) -> str:
        return f"{path.split('/')[2]}/{_stem(path)}"

    def files(self, src: Source, report: Report) -> Iterator[str]:
        for recipient, is_dir in sorted(src.listdir(self.root) or []):
            if not is_dir:
                report(self.inbox(recipient), "layout", "expected a folder")
                continue
            for day, day_is_dir in sorted(src.listdir(self.inbox(recipient)) or []):
                folder = f"{self.inbox(recipient)}/{day}"
                if not day_is_dir:
                    report(folder, "layout", "expected a day folder")
                    continue
                for name, f_is_dir in sorted(src.listdir(folder) or []):
                    path = f"{folder}/{name}"
                    if f_is_dir or not name.endswith(".yaml"):
                        report(path, "layout", "only .yaml files belong here")
                    else:
                        yield path

    def misplaced(self, path: str, key: str, fields: tuple[str, ...]) -> str | None:
        expected = self.path(key)
        return None if expected == path else f"belongs in {expected}"


@dataclass(frozen=True)
class Kind:
    """One kind of file on the branch (see the module docstring for each field)."""

    name: str
    model: type[BaseModel]
    where: Location
    key: tuple[str, ...] = ()
    owner: str | None = None
    held: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.where, File) == bool(self.key):
            raise ValueError(f"{self.name}: a single file has no key, a folder's files do")

    @property
    def single(self) -> bool:
        """One document of this kind (State holds it, not a mapping of them)."""
        return not self.key

    def path(self, key: str = "") -> str:
        return self.where.path(key)

    def key_of(self, doc: BaseModel) -> str:
        return "/".join(str(getattr(doc, f)) for f in self.key)

    def key_at(self, path: str) -> str:
        return self.where.key_at(path)

    def owner_of(self, doc: BaseModel) -> str | None:
        value = getattr(doc, self.owner) if self.owner is not None else None
        return value if isinstance(value, str) else None


# The locations that callers need by their shape (claim_path, message_path below).
CLAIMS = ClaimFolder("claims")
MESSAGES = MessageFolder("messages")

CONFIG = Kind("config", Config, File("config.yaml", required=True), held="config")
SESSION = Kind("session", Session, Folder("sessions"), key=("id",), owner="id", held="sessions")
HEARTBEAT = Kind(
    "heartbeat",
    Heartbeat,
    Folder("heartbeats"),
    key=("session",),
    owner="session",
    held="heartbeats",
)
READ = Kind("read", ReadMark, Folder("reads"), key=("session",), owner="session", held="reads")
APPROVAL = Kind("approval", Approval, Folder("approvals"), key=("id",), held="approvals")
ACTIVATION = Kind("activation", Activation, File("activation.yaml"), held="activation")
TASK = Kind("task", Task, Folder("tasks"), key=("id",), held="tasks")
MILESTONE = Kind("milestone", Milestone, Folder("milestones"), key=("name",), held="milestones")
ROSTER = Kind("roster", Roster, File("roster.yaml"), held="roster")
CLAIM = Kind("claim", Claim, CLAIMS, key=("type", "name"), held="claims")
# Not held: a state never holds every message ever sent; `mailbox` reads them on demand.
MESSAGE = Kind("message", Message, MESSAGES, key=("to", "id"), owner="sender")

KINDS: tuple[Kind, ...] = (
    CONFIG,
    SESSION,
    HEARTBEAT,
    READ,
    APPROVAL,
    ACTIVATION,
    TASK,
    MILESTONE,
    ROSTER,
    CLAIM,
    MESSAGE,
)

DOCUMENTS: dict[str, type[BaseModel]] = {kind.name: kind.model for kind in KINDS}
"""Kind name -> model: what the JSON Schemas are generated from (`schema.py`)."""

_BY_MODEL: dict[type[BaseModel], Kind] = {kind.model: kind for kind in KINDS}
_BY_SHAPE: dict[tuple[str, int], Kind] = {
    (kind.where.top, kind.where.depth): kind for kind in KINDS
}


def kind_at(path: str) -> Kind | None:
    """The kind of file at `path` on the branch (None: a raw file, or not ours).

    Decided by the top-level entry and the depth alone, as a reader of the tree
    would: a file there that is not valid YAML of the model is still of this kind,
    and is reported as broken rather than as unknown.
    """
    root = ROOT + "/"
    if not path.startswith(root):
        return None
    parts = path[len(root) :].split("/")
    return _BY_SHAPE.get((parts[0], len(parts)))


def kind_of(doc: object) -> Kind | None:
    """The kind a document is of (None: raw bytes, or no document of the branch)."""
    for cls in type(doc).__mro__:
        kind = _BY_MODEL.get(cls)
        if kind is not None:
            return kind
    return None


# --- paths, the spelling callers use: one line over the table each ------------------


def config_path() -> str:
    return CONFIG.path()


def session_path(session_id: str) -> str:
    return SESSION.path(session_id)


def claim_path(type_: str, name: str) -> str:
    return CLAIMS.file(type_, name)


def heartbeat_path(session_id: str) -> str:
    return HEARTBEAT.path(session_id)


def read_path(session_id: str) -> str:
    return READ.path(session_id)


def approval_path(approval_id: str) -> str:
    return APPROVAL.path(approval_id)


def activation_path() -> str:
    return ACTIVATION.path()


def task_path(task_id: str) -> str:
    return TASK.path(task_id)


def milestone_path(name: str) -> str:
    return MILESTONE.path(name)


def roster_path() -> str:
    return ROSTER.path()


def message_dir(recipient: str) -> str:
    return MESSAGES.inbox(recipient)


def message_path(recipient: str, message_id: str) -> str:
    return MESSAGES.file(recipient, message_id)
