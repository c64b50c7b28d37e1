"""Reading messages without reading every message ever sent.

Messages live at `coordination/messages/<to>/<YYYY-MM>/<DD>/<HH>/<id>.yaml` (from
format 4; `<to>/<YYYY-MM-DD>/<id>.yaml` before it), `<to>` being a session id,
`broadcast` or `human`. A session's inbox is two folders: its own and `broadcast`.
"Unread" is everything added after the commit recorded in the session's read mark:
folders whose tree id is unchanged since that commit are skipped without being
opened, so an inbox read costs work proportional to what is new, not to the
history. The readers walk folders to any depth, so both layouts read alike.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from ..gitio import TreeEntry
from . import names, yamlio
from .kinds import MESSAGES, SHARDED
from .models import Message


class TreeView(Protocol):
    """What the mailbox needs of a tree: entries with object ids, and blobs."""

    def entries(self, path: str) -> list[TreeEntry] | None: ...

    def blob(self, oid: str) -> bytes: ...


@dataclass(frozen=True)
class Item:
    message: Message
    path: str
    read: bool


def _walk(
    view: TreeView, path: str, old: TreeView | None, include_read: bool, read: bool = False
) -> Iterator[tuple[str, TreeEntry, bool]]:
    """(path, entry, read) of every file below `path`, in name order (oldest first, as
    the folders and ids are by time). `old`: the tree at the read mark. A folder whose
    tree id is the one it had there holds nothing new: it is skipped without being
    opened, unless `include_read` asks for what was read too."""
    before = {e.name: e for e in old.entries(path) or []} if old is not None and not read else {}
    for entry in sorted(view.entries(path) or [], key=lambda e: e.name):
        sub = f"{path}/{entry.name}"
        was = before.get(entry.name)
        same = read or (was is not None and was.oid == entry.oid)
        if entry.is_tree:
            if same and not include_read:
                continue
            deeper = old if was is not None and was.is_tree else None
            yield from _walk(view, sub, deeper, include_read, same)
        else:
            yield sub, entry, same or was is not None  # a message never changes once sent


def _flat(view: TreeView, folder: str) -> bool:
    """Whether a mailbox is in the flat layout of format 3 and before (a folder per day,
    "2026-12-01") rather than the sharded one (a folder per month, "2026-12")."""
    return any(len(e.name) == len("YYYY-MM-DD") for e in view.entries(folder) or [])


def _files(view: TreeView, folder: str) -> Iterator[tuple[str, TreeEntry]]:
    for path, entry, _ in _walk(view, folder, None, True):
        yield path, entry


def _load(view: TreeView, entry: TreeEntry) -> Message | None:
    try:
        data = yamlio.load(view.blob(entry.oid))
        return Message.model_validate(data)
    except Exception:  # a bad file is reported by `validate`; the inbox skips it
        return None


def _id(path: str) -> str:
    return path.rsplit("/", 1)[-1].removesuffix(".yaml")


def inbox(view: TreeView, old: TreeView | None, me: str, *, include_read: bool) -> list[Item]:
    """Messages to `me` and broadcasts (not its own), oldest first.

    `old` is the tree at the session's read mark (None: nothing read yet). Read
    messages are opened only when `include_read` asks for them.
    """
    items: list[Item] = []
    for recipient in (me, names.BROADCAST):
        folder = MESSAGES.folder(recipient)
        found: Iterator[tuple[str, TreeEntry, bool]]
        if old is not None and _flat(old, folder) and not _flat(view, folder):
            # The mark predates the branch's upgrade to the sharded layout: the same
            # messages at other paths. Read is then by id (once: the next mark is newer).
            seen = {_id(path) for path, _ in _files(old, folder)}
            found = ((p, e, _id(p) in seen) for p, e in _files(view, folder))
        else:
            found = _walk(view, folder, old, include_read)
        for path, entry, read in found:
            if read and not include_read:
                continue
            msg = _load(view, entry)
            if msg is None or msg.sender == me:
                continue
            items.append(Item(msg, path, read))
    items.sort(key=lambda i: i.message.id)
    return items


def _at(view: TreeView, recipient: str, message_id: str) -> TreeEntry | None:
    """The file of a message to `recipient`, in either layout (a reply may name a
    message sent before the branch was sharded)."""
    for fmt in (SHARDED, 1):
        folder, _, leaf = MESSAGES.file(recipient, message_id, fmt).rpartition("/")
        entry = next((e for e in view.entries(folder) or [] if e.name == leaf), None)
        if entry is not None and not entry.is_tree:
            return entry
    return None


def _recipients(view: TreeView) -> list[str]:
    return [e.name for e in view.entries(MESSAGES.root) or [] if e.is_tree]


def find(view: TreeView, message_id: str) -> Message | None:
    """The message with this id, wherever it was sent (one folder per recipient)."""
    for recipient in _recipients(view):
        entry = _at(view, recipient, message_id)
        if entry is not None:
            return _load(view, entry)
    return None


def _newest(view: TreeView, path: str) -> Iterator[TreeEntry]:
    """The files below `path`, newest first, opening folders only as far as needed."""
    for entry in sorted(view.entries(path) or [], key=lambda e: e.name, reverse=True):
        if entry.is_tree:
            yield from _newest(view, f"{path}/{entry.name}")
        else:
            yield entry


def recent(view: TreeView, limit: int) -> list[Message]:
    """The newest `limit` messages on the branch (for the state page): last folders only."""
    found: list[Message] = []
    for recipient in _recipients(view):
        taken = 0
        for entry in _newest(view, MESSAGES.folder(recipient)):
            if taken >= limit:
                break
            msg = _load(view, entry)
            if msg is not None:
                found.append(msg)
                taken += 1
    found.sort(key=lambda m: m.id, reverse=True)
    return found[:limit]


def _from(view: TreeView, path: str, first: str, prefix: str) -> Iterator[TreeEntry]:
    """The files below `path` sent on or after the day `first` ("2026-12-01"): a folder
    is opened only when the time its names spell so far ("2026-11", "2026-12-01")
    may reach it."""
    for entry in sorted(view.entries(path) or [], key=lambda e: e.name):
        if not entry.is_tree:
            yield entry
            continue
        when = f"{prefix}-{entry.name}" if prefix else entry.name
        if when < first[: len(when)]:
            continue
        yield from _from(view, f"{path}/{entry.name}", first, when)


def since(view: TreeView, first_day: str) -> list[Message]:
    """Every message sent from the day `first_day` (YYYY-MM-DD) on, in every mailbox:
    the cost of those days' messages, not of the history."""
    found = []
    for recipient in _recipients(view):
        for entry in _from(view, MESSAGES.folder(recipient), first_day, ""):
            msg = _load(view, entry)
            if msg is not None and names.message_day(msg.id) >= first_day:
                found.append(msg)
    return found


def all_files(view: TreeView) -> Iterator[tuple[str, TreeEntry]]:
    """Every file under messages/, in every mailbox (for the review of all the talk)."""
    for recipient in _recipients(view):
        yield from _files(view, MESSAGES.folder(recipient))


def answered_by(view: TreeView, senders: set[str]) -> dict[str, str]:
    """message id -> the first of `senders` who answered it (`reply_to`), over every
    mailbox: whether an escalation to the humans was handled."""
    found: dict[str, tuple[str, str]] = {}  # answered id -> (reply id, sender)
    for _, entry in all_files(view):
        msg = _load(view, entry)
        if msg is None or msg.reply_to is None or msg.sender not in senders:
            continue
        if msg.reply_to not in found or msg.id < found[msg.reply_to][0]:
            found[msg.reply_to] = (msg.id, msg.sender)
    return {answered: sender for answered, (_, sender) in found.items()}


def holds(view: TreeView, message: Message) -> bool:
    """Whether `view` (a tree, e.g. at a session's read mark) has `message` in it."""
    return _at(view, message.to, message.id) is not None
