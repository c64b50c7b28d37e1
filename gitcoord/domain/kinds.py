"""The kinds of file on the coordination branch: one table, and everything else derived from it.

Each row (`Kind`) says, for one kind of file:

- `name`: what the kind is called (the name of its JSON Schema, the key in `DOCUMENTS`);
- `model`: the pydantic model its YAML follows;
- `where`: where it lives below `coordination/`: one file at the top level (`File`),
  or a folder of files named by their key (`Folder`): a claim type's or a recipient's
  folder first for claims and messages, then (from format 4, `SHARDED`) the shard
  folders that keep every folder under 3,000 entries (`Shards`: by hash, by time, by
  number), e.g. `claims/<type>/<xx>/<name>.yaml` with the name percent-encoded, or
  `messages/<to>/<YYYY-MM>/<DD>/<HH>/<id>.yaml`. The location builds paths from keys
  at a branch's format, reads keys back from paths of either layout, lists the files
  to load, and says when a document sits in a file its key does not name;
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
from typing import TYPE_CHECKING, Protocol

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
from .names import ROOT, claim_file_stem, claim_name_from_stem, message_day

if TYPE_CHECKING:
    from .state import Source

Report = Callable[[str, str, str], None]
"""(path, rule, message): a problem found while listing. `state` makes it a `Problem`
(this module sits below `state`, so it cannot build one itself)."""


def _stem(path: str) -> str:
    return path.rsplit("/", 1)[-1].removesuffix(".yaml")


SHARDED = 4
"""The first format whose folders are sharded (see `Folder`): below it, each kind's files
sit flat in their folder (a claim type's, a recipient's day), as they did up to format 3."""

SHARD_LIMIT = 3000
"""The most entries a folder of the branch may hold: GitHub's guidance for one directory.
Sharding keeps honest use far below it; the verifier refuses a commit that grows a
folder past it (`transition`), whatever the folder."""


def yaml_files(src: Source, folder: str, report: Report) -> Iterator[str]:
    """The .yaml files in `folder`, sorted; anything else in it is reported."""
    for name, is_dir in sorted(src.listdir(folder) or []):
        full = f"{folder}/{name}"
        if is_dir or not name.endswith(".yaml"):
            report(full, "layout", "unexpected entry: only .yaml files belong here")
            continue
        yield full


@dataclass(frozen=True)
class Shards:
    """The folders a key is filed under, between its group's folder and its file."""

    levels: int  # how many: the same for every key, so a path's depth tells its kind
    of: Callable[[str], tuple[str, ...]]


def _hashed(value: str) -> tuple[str, ...]:
    import hashlib

    return (hashlib.sha256(value.encode("utf-8")).hexdigest()[:2],)


FLAT = Shards(0, lambda key: ())
# One of 256 folders by the first byte of the key's SHA-256 ("3f"), for keys with no
# order of their own (names, session ids): 256 x 3,000 is room for three quarters of
# a million documents of one kind (or of one claim type).
HASHED = Shards(1, _hashed)


def _by_thousand(task_id: str) -> tuple[str, ...]:
    number = task_id[1:]
    # A file name that is no task id (a stray file pushed by hand) still maps somewhere,
    # and is then reported as misplaced: never an exception on what a tree holds.
    return (str(int(number) // 1000) if number.isascii() and number.isdigit() else "0",)


# t1..t999 -> "0", t1000..t1999 -> "1": tasks in the order they were added.
BY_THOUSAND = Shards(1, _by_thousand)
# '20261201-ab12cd' -> ("2026-12", "01"): a month's folder holds at most 31 days.
BY_DAY = Shards(2, lambda aid: (f"{aid[0:4]}-{aid[4:6]}", aid[6:8]))
# '20261201T134501123Z-...' -> ("2026-12", "01", "13"): a recipient's month, day and UTC
# hour, so that even a busy broadcast folder stays small, and an inbox read opens only
# the folders that changed since its mark.
BY_HOUR = Shards(3, lambda mid: (f"{mid[0:4]}-{mid[4:6]}", mid[6:8], mid[9:11]))
# Up to format 3: a message's UTC day ("2026-12-01").
BY_LEGACY_DAY = Shards(1, lambda mid: (message_day(mid),))


class Location(Protocol):
    """Where the files of one kind live below `coordination/`, at a branch's format."""

    @property
    def top(self) -> str:
        """The entry directly below coordination/ ("config.yaml", "sessions")."""

    def depth(self, fmt: int) -> int:
        """How many parts a file's path has below coordination/ at this format."""

    def path(self, key: str, fmt: int) -> str:
        """The file that holds the document with this key."""

    def key_at(self, path: str) -> str:
        """The key a path of this shape names (the reverse of `path`, at any format)."""

    def files(self, src: Source, report: Report, fmt: int) -> Iterator[str]:
        """The files of this kind in a tree, sorted; misplaced entries are reported."""

    def misplaced(self, path: str, key: str, fields: tuple[str, ...], fmt: int) -> str | None:
        """Why a document with this key does not belong at `path` (None: it does)."""


@dataclass(frozen=True)
class File:
    """`coordination/<top>`: the one document of its kind."""

    top: str
    required: bool = False  # missing from a branch that has other files is a problem

    def depth(self, fmt: int) -> int:
        return 1

    def path(self, key: str = "", fmt: int = 0) -> str:
        return f"{ROOT}/{self.top}"

    def key_at(self, path: str) -> str:
        return ""

    def files(self, src: Source, report: Report, fmt: int) -> Iterator[str]:
        if any(name == self.top for name, _ in src.listdir(ROOT) or []):
            yield self.path()
        elif self.required:
            report(
                self.path(),
                "layout",
                "missing, though the branch has other files: restore it with a commit",
            )

    def misplaced(self, path: str, key: str, fields: tuple[str, ...], fmt: int) -> str | None:
        return None


@dataclass(frozen=True)
class Folder:
    """`coordination/<top>/<group>/<shard...>/<stem>.yaml`: one file per document.

    - `group`: how many leading parts of the key are folders of their own: a claim's
      type ("type/name"), a message's recipient ("to/id"); none for the others;
    - the rest of the key names the file: as it is, or percent-encoded for claim names
      (`encode`: injective, and keeps '/', '*' and ':' out of file names), so the path
      is a function of the key and two documents of one key are always one file;
    - `shard` (from format 4, `SHARDED`): the folders between the group and the file,
      a function of the rest of the key, so that no folder grows without bound: claim
      tombstones and messages are never deleted, tasks and approvals keep coming.
      `legacy`: the folders before format 4 (a message's day; none for the others).
    """

    top: str
    shard: Shards = FLAT
    legacy: Shards = FLAT
    group: int = 0
    encode: Callable[[str], str] = str
    decode: Callable[[str], str] = str

    @property
    def root(self) -> str:
        return f"{ROOT}/{self.top}"

    def _shards(self, fmt: int) -> Shards:
        return self.shard if fmt >= SHARDED else self.legacy

    def levels(self, fmt: int) -> int:
        """How many shard folders stand between the group's folder and a file."""
        return self._shards(fmt).levels

    def depth(self, fmt: int) -> int:
        return 1 + self.group + self.levels(fmt) + 1

    def path(self, key: str, fmt: int) -> str:
        parts = key.split("/", self.group)  # neither a claim type nor a session id has '/'
        rest = parts[-1]
        folders = (*parts[:-1], *self._shards(fmt).of(rest))
        return "/".join((self.root, *folders, self.encode(rest) + ".yaml"))

    def key_at(self, path: str) -> str:
        parts = path.split("/")
        return "/".join((*parts[2 : 2 + self.group], self.decode(_stem(path))))

    def files(self, src: Source, report: Report, fmt: int) -> Iterator[str]:
        for leaf in self.leaves(src, report, fmt):
            yield from yaml_files(src, leaf, report)

    def leaves(self, src: Source, report: Report, fmt: int) -> Iterator[str]:
        """The folders that hold this kind's files (a group's, a shard's), sorted; what
        stands where a folder belongs is reported. `files` lists what is in them."""

        def walk(folder: str, levels: int) -> Iterator[str]:
            if levels == 0:
                yield folder
                return
            for name, is_dir in sorted(src.listdir(folder) or []):
                if not is_dir:
                    report(f"{folder}/{name}", "layout", "expected a folder here")
                    continue
                yield from walk(f"{folder}/{name}", levels - 1)

        return walk(self.root, self.group + self.levels(fmt))

    def misplaced(self, path: str, key: str, fields: tuple[str, ...], fmt: int) -> str | None:
        expected = self.path(key, fmt)
        if expected == path:
            return None
        stem, want = _stem(path), _stem(expected)
        if not self.group and stem != want:
            return f"file name says {stem!r} but {fields[0]} is {key!r}"
        return f"{'/'.join(fields)} {key!r}: belongs in {expected}"

    # --- the spellings of a grouped folder (claims by type, messages by recipient) ---

    def folder(self, group: str) -> str:
        """A group's folder: a claim type's, or a recipient's mailbox."""
        return f"{self.root}/{group}"

    def file(self, group: str, rest: str, fmt: int) -> str:
        return self.path(f"{group}/{rest}", fmt)


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

    def path(self, key: str = "", *, fmt: int) -> str:
        return self.where.path(key, fmt)

    def key_of(self, doc: BaseModel) -> str:
        return "/".join(str(getattr(doc, f)) for f in self.key)

    def key_at(self, path: str) -> str:
        return self.where.key_at(path)

    def owner_of(self, doc: BaseModel) -> str | None:
        value = getattr(doc, self.owner) if self.owner is not None else None
        return value if isinstance(value, str) else None


# The locations that callers need by their shape (claim_path, message_path below).
CLAIMS = Folder("claims", HASHED, group=1, encode=claim_file_stem, decode=claim_name_from_stem)
MESSAGES = Folder("messages", BY_HOUR, BY_LEGACY_DAY, group=1)

CONFIG = Kind("config", Config, File("config.yaml", required=True), held="config")
SESSION = Kind(
    "session", Session, Folder("sessions", HASHED), key=("id",), owner="id", held="sessions"
)
HEARTBEAT = Kind(
    "heartbeat",
    Heartbeat,
    Folder("heartbeats", HASHED),
    key=("session",),
    owner="session",
    held="heartbeats",
)
READ = Kind(
    "read", ReadMark, Folder("reads", HASHED), key=("session",), owner="session", held="reads"
)
APPROVAL = Kind("approval", Approval, Folder("approvals", BY_DAY), key=("id",), held="approvals")
ACTIVATION = Kind("activation", Activation, File("activation.yaml"), held="activation")
TASK = Kind("task", Task, Folder("tasks", BY_THOUSAND), key=("id",), held="tasks")
MILESTONE = Kind(
    "milestone", Milestone, Folder("milestones", HASHED), key=("name",), held="milestones"
)
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
# Both the flat layout (up to format 3) and the sharded one (from format 4): which kind
# a file is of does not depend on which of the two its branch is at.
_BY_SHAPE: dict[tuple[str, int], Kind] = {
    (kind.where.top, kind.where.depth(fmt)): kind for kind in KINDS for fmt in (1, SHARDED)
}


def kind_at(path: str) -> Kind | None:
    """The kind of file at `path` on the branch (None: a raw file, or not ours).

    Decided by the top-level entry and the depth alone, as a reader of the tree
    would: a file there that is not valid YAML of the model is still of this kind,
    and is reported as broken rather than as unknown. Either layout's depth counts:
    a file in the other one is reported as misplaced, not ignored.
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
# `fmt`: the format of the branch the path is on (`State.format`): the folders are
# sharded from format 4 (`SHARDED`), flat before it.


def config_path() -> str:
    return CONFIG.path(fmt=SHARDED)


def session_path(session_id: str, *, fmt: int) -> str:
    return SESSION.path(session_id, fmt=fmt)


def claim_path(type_: str, name: str, *, fmt: int) -> str:
    return CLAIMS.file(type_, name, fmt)


def claim_paths(type_: str, name: str) -> tuple[str, str]:
    """A claim's file in either layout (its history may run across an upgrade)."""
    return (CLAIMS.file(type_, name, 1), CLAIMS.file(type_, name, SHARDED))


def heartbeat_path(session_id: str, *, fmt: int) -> str:
    return HEARTBEAT.path(session_id, fmt=fmt)


def read_path(session_id: str, *, fmt: int) -> str:
    return READ.path(session_id, fmt=fmt)


def approval_path(approval_id: str, *, fmt: int) -> str:
    return APPROVAL.path(approval_id, fmt=fmt)


def activation_path() -> str:
    return ACTIVATION.path(fmt=SHARDED)


def task_path(task_id: str, *, fmt: int) -> str:
    return TASK.path(task_id, fmt=fmt)


def milestone_path(name: str, *, fmt: int) -> str:
    return MILESTONE.path(name, fmt=fmt)


def roster_path() -> str:
    return ROSTER.path(fmt=SHARDED)


def message_dir(recipient: str) -> str:
    return MESSAGES.folder(recipient)


def message_path(recipient: str, message_id: str, *, fmt: int) -> str:
    return MESSAGES.file(recipient, message_id, fmt)


def relayout(src: Source, old: int, new: int) -> dict[str, str]:
    """Every document file whose path changes when the branch goes from format `old` to
    `new` (from the flat folders to the sharded ones): old path -> new path. Messages
    included; files that are in no kind's shape at `old` are left to `validate`."""
    moves: dict[str, str] = {}

    def ignore(path: str, rule: str, message: str) -> None:
        return None

    for kind in KINDS:
        if not isinstance(kind.where, Folder):
            continue
        for path in kind.where.files(src, ignore, old):
            target = kind.where.path(kind.key_at(path), new)
            if target != path:
                moves[path] = target
    return moves


def folder_sizes(
    old: Source | None, new: Source | None, added: list[str]
) -> Iterator[tuple[str, int]]:
    """(folder, entries) of each folder under coordination/ that a commit writing the
    files `added` (new files, or new versions) grows past `SHARD_LIMIT`: a commit that
    does is refused on every side, whatever wrote it. `old`: the parent's tree; `new`:
    the commit's tree when it is written already (None: the parent's entries and the
    ones `added` makes, a file or a folder on the way to one). A folder already past it
    (a flat branch from before format 4) may still have its files changed, never a new
    entry added."""

    def names_in(src: Source | None, folder: str) -> set[str]:
        return {name for name, _ in (src.listdir(folder) if src is not None else None) or []}

    grown: dict[str, set[str]] = {}
    for path in added:
        parts = path.split("/")
        for depth in range(1, len(parts)):
            grown.setdefault("/".join(parts[:depth]), set()).add(parts[depth])
    for folder, adds in sorted(grown.items()):
        if not folder.startswith(ROOT):
            continue
        before = names_in(old, folder)
        if new is None and len(before) + len(adds) <= SHARD_LIMIT:
            continue  # the common case: no set union needed
        after = names_in(new, folder) if new is not None else before | adds
        if len(after) > SHARD_LIMIT and after - before:
            yield folder, len(after)
