"""Talking: heartbeats, messages and the inbox.

`heartbeat` and `inbox` are more than one plan each (the heartbeat's pacing and
carry-over, the inbox's read then mark), so their runs are written out here; the
decisions themselves are `gitcoord.ops.heartbeats` and `gitcoord.ops.messages`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...errors import InvalidError
from .. import render
from ..verb import REQUIRED, Param, Verb

if TYPE_CHECKING:
    from ..coordinator import Coordinator

BODY_MAX_BYTES = 64 * 1024  # gitcoord.domain.models.BODY_MAX_BYTES, without importing pydantic


def _heartbeat(
    c: Coordinator, action: str, target: str, phase: str, progress: int, force: bool = False
) -> dict[str, Any]:
    from ... import clock
    from ...ops import heartbeats

    session = c.need_session()
    beat = heartbeats.make_heartbeat(session, action, target, phase, progress, clock.now())
    outcome = c.transact(lambda s: heartbeats.heartbeat(s, beat, force=force))
    result: dict[str, Any] = outcome.change.result
    c.settle_heartbeat(result)
    return {**result, "changed": outcome.commit is not None, "commit": outcome.commit}


def _heartbeat_text(data: dict[str, Any]) -> str:
    hb = data["heartbeat"]
    return {
        "pushed": f"heartbeat pushed: {hb['action']} {hb['target']} ({hb['phase']}) "
        f"{hb['progress']}% (commit {str(data['commit'])[:10]})",
        "skipped": f"heartbeat unchanged; last pushed at {data['last_pushed_at']}, nothing to push",
        "deferred": f"heartbeat kept locally (last pushed at {data['last_pushed_at']}); "
        "it rides along with your next write",
    }[data["action"]]


HEARTBEAT = Verb(
    "heartbeat",
    "Say what this session is doing: ACTION TARGET PHASE PROGRESS (0-100).",
    _heartbeat,
    _heartbeat_text,
    (
        Param(
            "action",
            str,
            "What you are doing, e.g. implementing.",
            REQUIRED,
            positional=True,
            metavar="ACTION",
        ),
        Param(
            "target",
            str,
            "What you are doing it to, e.g. i-match.",
            REQUIRED,
            positional=True,
            metavar="TARGET",
        ),
        Param(
            "phase", str, "Where you are, e.g. tests.", REQUIRED, positional=True, metavar="PHASE"
        ),
        Param(
            "progress",
            int,
            "Percent done, 0-100.",
            REQUIRED,
            positional=True,
            metavar="PROGRESS",
            low=0,
            high=100,
        ),
        Param("force", bool, "Push now even if unchanged or too soon.", False),
    ),
    details="Example: gitcoord heartbeat implementing i-match tests 60\n\n"
    "Call it every few minutes. To spare the remote, an unchanged heartbeat is pushed only "
    "when the last one is heartbeat_quiet_seconds old (default 600), and a changed one "
    "sooner than heartbeat_min_seconds (default 120) after the last is kept locally and "
    "carried by this session's next write (`action` in the result: pushed, skipped, deferred).",
    idempotent=True,
)


def _send(c: Coordinator, to: str, subject: str, body: str, reply_to: str | None = None) -> Any:
    import secrets

    from ... import clock
    from ...domain import mailbox, names
    from ...domain.state import State
    from ...ops import messages

    size = len(body.encode("utf-8"))
    if size > BODY_MAX_BYTES:
        raise InvalidError(
            f"message body is {size} bytes; the limit is {BODY_MAX_BYTES} bytes (64 KiB): put "
            "large content in the repository and send its path",
            limit=BODY_MAX_BYTES,
        )
    if reply_to is not None:
        names.check_message_id(reply_to)
    if to != names.BROADCAST and not names.is_number(to):
        names.check_session_id(to)

    def plan(state: State) -> Any:
        view = c.store.view_of(state)
        original = mailbox.find(view, reply_to) if reply_to else None
        while True:
            mid = clock.message_id(clock.precise_now(), secrets.token_hex(3))
            if mailbox.find(view, mid) is None:
                break
        return messages.send(
            state,
            clock.now(),
            session=c.session,
            to=to,
            subject=subject,
            body=body,
            message_id=mid,
            original=original,
            reply_to=reply_to,
        )

    return c.transact(plan)


SEND = Verb(
    "send",
    "Send a message TO a session id, a session number, or `broadcast`.",
    _send,
    lambda doc: (
        f"sent {doc['message']['id']} to {doc['message']['to']} (commit {str(doc['commit'])[:10]})"
    ),
    (
        Param(
            "to",
            str,
            "A session id, a session number, or broadcast.",
            REQUIRED,
            positional=True,
            metavar="TO",
        ),
        Param("subject", str, "One line.", REQUIRED, positional=True, metavar="SUBJECT"),
        Param(
            "body",
            str,
            "The message, at most 64 KiB (on the command line, - reads it from stdin).",
            REQUIRED,
            positional=True,
            metavar="BODY",
            stdin=True,
        ),
        Param("reply_to", str, "Id of the message this answers.", metavar="ID"),
    ),
    details="Examples:\n"
    '  gitcoord send marketing-orchestrator "Blocked" "Need API keys for outreach"\n'
    '  gitcoord send 12 "Question" "Who owns nginx?"\n'
    '  gitcoord send broadcast "Completed" "i-match deployed"\n'
    '  git diff | gitcoord send 4 "Review please" -',
)


def _inbox(c: Coordinator, include_read: bool = False, peek: bool = False) -> dict[str, Any]:
    from ... import clock
    from ...domain import mailbox
    from ...domain.state import State
    from ...ops import kernel, messages

    session = c.need_session()
    tip, state = c.store.snapshot()
    kernel.require_registered(state, session)
    seen = state.reads.get(session)
    old = c.store.view(seen.through) if seen is not None else None
    if old is not None and old.entries("") is None:
        old = None  # the marked commit is gone (branch recreated): all unread
    view = c.store.view_of(state)
    items = mailbox.inbox(view, old, session, include_read=include_read)
    shown = []
    for item in items:
        entry = {**item.message.model_dump(mode="json"), "read": item.read}
        if item.message.reply_to:
            orig = mailbox.find(view, item.message.reply_to)
            entry["in_reply_to"] = (
                {"id": orig.id, "sender": orig.sender, "subject": orig.subject}
                if orig
                else {"id": item.message.reply_to}
            )
        shown.append(entry)
    unread = sum(1 for i in items if not i.read)
    marked = None
    if unread and not peek and tip is not None:
        through = tip

        def mark(s: State) -> Any:
            return messages.mark_read(s, clock.now(), session=session, through=through, seen=seen)

        # Just fetched: the first round plans on it (no second fetch) unless it moved.
        marked = c.transact(mark, known=(tip, state)).commit
    return {
        "session": session,
        "messages": shown,
        "unread": unread,
        "marked_read": marked is not None,
        "commit": marked,
    }


INBOX = Verb(
    "inbox",
    "Show unread direct and broadcast messages, oldest first, then mark them read.",
    _inbox,
    render.inbox,
    (
        Param("include_read", bool, "Show read messages too.", False, flag="--all"),
        Param("peek", bool, "Leave unread messages unread.", False),
    ),
    details="The read mark is committed (coordination/reads/<session>.yaml), so it follows the "
    "session to other machines; nothing is pushed when there is nothing new.",
    idempotent=True,
)

VERBS = (HEARTBEAT, SEND, INBOX)
