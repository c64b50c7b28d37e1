"""Messages: one file per message, sharded by recipient and day; the inbox read mark."""

from __future__ import annotations

from datetime import datetime

from ..domain import kinds, names
from ..domain.change import Change
from ..domain.models import (
    Message,
    ReadMark,
)
from ..domain.state import State
from ..errors import RefusedError
from .kernel import build, require_registered, require_speaker


def resolve_recipient(state: State, to: str) -> str:
    """A session id, a session number, 'broadcast' or 'human' (every approver) -> the
    folder name; exit 4 if unknown."""
    if to == names.BROADCAST:
        return to
    if to == names.HUMAN:
        config = state.config
        if config is None or not config.approvers or config.format < 3:
            raise RefusedError(
                "'human' reaches the approvers: this branch lists none"
                if config is not None and not config.approvers
                else "messages to 'human' need a branch at format 3 (`gitcoord upgrade`)",
                recipient=to,
            )
        return to
    if names.is_number(to):
        found = state.session_by_number(int(to))
        if found is None:
            raise RefusedError(f"no session has number {to}", recipient=to)
        return found.id
    if to not in state.present:
        raise RefusedError(
            f"unknown recipient {to!r}: not a registered session id or number, nor "
            "'broadcast' or 'human'",
            recipient=to,
        )
    return to


def resolve_session(state: State, to: str) -> str:
    """A present session, by id or number (exit 4 if there is none)."""
    if names.is_number(to):
        found = state.session_by_number(int(to))
        if found is None:
            raise RefusedError(f"no session has number {to}", session=to)
        return found.id
    if to not in state.present:
        left = state.sessions.get(to)
        why = "has left" if left is not None else "is not registered"
        raise RefusedError(f"session {to!r} {why}", session=to)
    return to


def send(
    state: State,
    now: datetime,
    *,
    session: str | None,
    to: str,
    subject: str,
    body: str,
    message_id: str,
    original: Message | None = None,
    reply_to: str | None = None,
    person: str | None = None,
) -> Change:
    """From a session, or with no session from `person` — an approver's e-mail: people
    write to sessions, broadcast and answer escalations sent to 'human'."""
    sender = require_speaker(state, session, person)
    recipient = resolve_recipient(state, to)
    if recipient == sender:
        # An inbox never shows a session its own messages (nor its own broadcasts): a
        # message to itself would be "sent" and never read. Refused, and said why.
        raise RefusedError(
            f"{sender} cannot send a message to itself: its inbox never shows its own "
            "messages (send it to another session, to broadcast, or to human)",
            recipient=recipient,
        )
    mine = (sender, names.BROADCAST) if person is None else (names.HUMAN, names.BROADCAST, sender)
    if reply_to is not None and (
        original is None or not (original.to in mine or original.sender == sender)
    ):
        raise RefusedError(f"no message {reply_to} that {sender} could answer", reply_to=reply_to)
    msg: Message = build(
        Message,
        id=message_id,
        sender=sender,
        to=recipient,
        subject=subject,
        body=body,
        sent_at=now,
        reply_to=reply_to,
    )
    trailers = {"Gitcoord-Message": msg.id, "Gitcoord-To": recipient}
    if reply_to:
        trailers["Gitcoord-Reply-To"] = reply_to
    return Change(
        "send",
        f"send {msg.id} from {sender} to {recipient}: {subject[:60]}",
        session=None if person is not None else sender,
        resource=f"message/{msg.id}",
        writes={kinds.message_path(recipient, msg.id, fmt=state.format): msg},
        trailers=trailers,
        result={"message": msg.model_dump(mode="json")},
    )


def ride_mark(state: State, mark: ReadMark) -> Change:
    """A read mark kept in this clone, riding another's push: written when it is newer
    than the branch's (a no-op when the branch already says as much)."""
    me = require_registered(state, mark.session)
    current = state.reads.get(me.id)
    if current is not None and current.at >= mark.at:
        return Change("read", "read", session=me.id)
    return _mark(state, mark)


def mark_read(
    state: State, now: datetime, *, session: str, through: str, seen: ReadMark | None
) -> Change:
    """Move the read mark to `through`, unless another process of this session moved it."""
    me = require_registered(state, session)
    current = state.reads.get(me.id)
    if current != seen:
        return Change("read", "read", session=me.id)
    mark: ReadMark = build(ReadMark, session=me.id, through=through, at=now)
    return _mark(state, mark)


def make_mark(session: str, through: str, now: datetime) -> ReadMark:
    mark: ReadMark = build(ReadMark, session=session, through=through, at=now)
    return mark


def _mark(state: State, mark: ReadMark) -> Change:
    return Change(
        "read",
        f"read inbox of {mark.session} through {mark.through[:10]}",
        session=mark.session,
        writes={kinds.read_path(mark.session, fmt=state.format): mark},
        trailers={"Gitcoord-Read-Through": mark.through},
    )
