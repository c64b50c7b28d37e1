"""Reading messages without reading every message ever sent.

Messages live at `coordination/messages/<to>/<YYYY-MM-DD>/<id>.yaml`, `<to>` being
a session id or `broadcast`. A session's inbox is two folders: its own and
`broadcast`. "Unread" is everything added after the commit recorded in the
session's read mark: day folders whose tree id is unchanged since that commit
are skipped without being opened, so an inbox read costs work proportional to
what is new, not to the history.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from ..gitio import TreeEntry
from . import names, yamlio
from .kinds import MESSAGES
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


def _day_dirs(view: TreeView, recipient: str) -> dict[str, TreeEntry]:
    return {e.name: e for e in view.entries(MESSAGES.inbox(recipient)) or [] if e.is_tree}


def _files(view: TreeView, recipient: str, day: str) -> dict[str, TreeEntry]:
    path = f"{MESSAGES.inbox(recipient)}/{day}"
    return {e.name: e for e in view.entries(path) or [] if not e.is_tree}


def _load(view: TreeView, entry: TreeEntry) -> Message | None:
    try:
        data = yamlio.load(view.blob(entry.oid))
        return Message.model_validate(data)
    except Exception:  # a bad file is reported by `validate`; the inbox skips it
        return None


def inbox(view: TreeView, old: TreeView | None, me: str, *, include_read: bool) -> list[Item]:
    """Messages to `me` and broadcasts (not its own), oldest first.

    `old` is the tree at the session's read mark (None: nothing read yet). Read
    messages are opened only when `include_read` asks for them.
    """
    items: list[Item] = []
    for recipient in (me, names.BROADCAST):
        old_days = _day_dirs(old, recipient) if old is not None else {}
        for day, entry in sorted(_day_dirs(view, recipient).items()):
            unchanged = old_days.get(day) is not None and old_days[day].oid == entry.oid
            if unchanged and not include_read:
                continue
            seen = (
                set(_files(old, recipient, day)) if old is not None and day in old_days else set()
            )
            for name, f in sorted(_files(view, recipient, day).items()):
                read = unchanged or name in seen
                if read and not include_read:
                    continue
                msg = _load(view, f)
                if msg is None or msg.sender == me:
                    continue
                items.append(Item(msg, f"{MESSAGES.inbox(recipient)}/{day}/{name}", read))
    items.sort(key=lambda i: i.message.id)
    return items


def find(view: TreeView, message_id: str) -> Message | None:
    """The message with this id, wherever it was sent (one day folder per recipient)."""
    day = names.message_day(message_id)
    for recipient in view.entries(MESSAGES.root) or []:
        if not recipient.is_tree:
            continue
        entry = _files(view, recipient.name, day).get(f"{message_id}.yaml")
        if entry is not None:
            return _load(view, entry)
    return None


def recent(view: TreeView, limit: int) -> list[Message]:
    """The newest `limit` messages on the branch (for the state page): last days only."""
    found: list[Message] = []
    for recipient in view.entries(MESSAGES.root) or []:
        if not recipient.is_tree:
            continue
        days = sorted(_day_dirs(view, recipient.name).items(), reverse=True)
        taken = 0
        for day, _ in days:
            files = sorted(_files(view, recipient.name, day).items(), reverse=True)
            for _, f in files[: limit - taken]:
                msg = _load(view, f)
                if msg is not None:
                    found.append(msg)
                    taken += 1
            if taken >= limit:
                break
    found.sort(key=lambda m: m.id, reverse=True)
    return found[:limit]


def since(view: TreeView, first_day: str) -> list[Message]:
    """Every message in a day folder from `first_day` (YYYY-MM-DD) on, in every mailbox:
    the cost of those days' messages, not of the history."""
    found = []
    for recipient in view.entries(MESSAGES.root) or []:
        if not recipient.is_tree:
            continue
        for day, _ in sorted(_day_dirs(view, recipient.name).items()):
            if day < first_day:
                continue
            for _, f in sorted(_files(view, recipient.name, day).items()):
                msg = _load(view, f)
                if msg is not None:
                    found.append(msg)
    return found


def all_files(view: TreeView) -> Iterator[tuple[str, TreeEntry | None]]:
    """Every entry under messages/ (for deep validation); None marks a misplaced entry."""
    root = MESSAGES.root
    for recipient in view.entries(root) or []:
        if not recipient.is_tree:
            yield f"{root}/{recipient.name}", None
            continue
        for day in view.entries(f"{root}/{recipient.name}") or []:
            if not day.is_tree:
                yield f"{root}/{recipient.name}/{day.name}", None
                continue
            for f in view.entries(f"{root}/{recipient.name}/{day.name}") or []:
                yield f"{root}/{recipient.name}/{day.name}/{f.name}", (None if f.is_tree else f)


def answered_by(view: TreeView, senders: set[str]) -> dict[str, str]:
    """message id -> the first of `senders` who answered it (`reply_to`), over every
    mailbox: whether an escalation to the humans was handled."""
    found: dict[str, tuple[str, str]] = {}  # answered id -> (reply id, sender)
    for _, entry in all_files(view):
        if entry is None:
            continue
        msg = _load(view, entry)
        if msg is None or msg.reply_to is None or msg.sender not in senders:
            continue
        if msg.reply_to not in found or msg.id < found[msg.reply_to][0]:
            found[msg.reply_to] = (msg.id, msg.sender)
    return {answered: sender for answered, (_, sender) in found.items()}


def holds(view: TreeView, message: Message) -> bool:
    """Whether `view` (a tree, e.g. at a session's read mark) has `message` in it."""
    day = names.message_day(message.id)
    return f"{message.id}.yaml" in _files(view, message.to, day)
