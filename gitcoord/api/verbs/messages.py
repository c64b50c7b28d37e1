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
    c: Coordinator,
    action: str,
    target: str,
    phase: str,
    progress: int | str,
    force: bool = False,
) -> dict[str, Any]:
    from ... import clock
    from ...errors import UsageError
    from ...ops import heartbeats
    from ..verb import percent

    try:
        progress = percent(progress)  # 40 or "40%"
    except ValueError as exc:
        raise UsageError(str(exc), field="progress") from None
    session = c.need_session()
    beat = heartbeats.make_heartbeat(session, action, target, phase, progress, clock.now())
    hold = c.holds
    outcome = c.transact(lambda s: heartbeats.heartbeat(s, beat, force=force, hold=hold))
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
        "it rides along with this clone's next push",
        "held": "heartbeat held to ride this clone's next push (pushed within "
        f"{data.get('ride_within')}s either way; --force pushes now)",
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
            "Percent done, 0-100 (40 or 40%).",
            REQUIRED,
            positional=True,
            metavar="PROGRESS",
            low=0,
            high=100,
            percent=True,
        ),
        Param("force", bool, "Push now even if unchanged or too soon.", False),
    ),
    details="Example: gitcoord heartbeat implementing i-match tests 60\n\n"
    "Call it every few minutes. To spare the remote, an unchanged heartbeat is pushed only "
    "when the last one is heartbeat_quiet_seconds old (default 600), and a changed one "
    "sooner than heartbeat_min_seconds (default 120) after the last is kept locally and "
    "carried by this clone's next push. From the command line, the Claude Code hooks and "
    "the MCP server, a beat that is due is held up to heartbeat_min_seconds to ride a "
    "push of any session of this clone, and pushed by a background `gitcoord flush "
    "--wait` if none comes (not a change of ACTION, nor --force; GITCOORD_RIDE=0 turns "
    "riding off). `action` in the result: pushed, skipped, deferred, held.",
    idempotent=True,
)


def _flush(c: Coordinator, wait: bool = False) -> dict[str, Any]:
    from .. import carry

    if wait:
        return carry.flusher(c)
    commits = c.flush_held()
    return {"pushed": len(commits), "commits": commits}


def _flush_text(data: dict[str, Any]) -> str:
    if "waited" in data:
        if data.get("running"):
            return "a flusher already runs for this clone; it pushes what is held"
        return f"flushed {data['pushed']} held heartbeat(s) in {data['pushes']} push(es)"
    if not data["pushed"]:
        return "nothing held for a ride; nothing to push"
    return f"pushed {data['pushed']} held heartbeat(s) in one push"


FLUSH = Verb(
    "flush",
    "Push the heartbeats this clone's sessions hold for a ride, now, in one push.",
    _flush,
    _flush_text,
    (
        Param(
            "wait",
            bool,
            "Stay until nothing is held: push each held beat when its time comes (what "
            "gitcoord starts in the background when it holds one; one per clone).",
            False,
            mcp=False,
        ),
    ),
    details="Example: gitcoord flush\n\n"
    "A due heartbeat may be held up to heartbeat_min_seconds so that it rides a push of "
    "another session of this clone instead of a push of its own (see `heartbeat`). "
    "`flush` pushes every held one at once (e.g. before a machine shuts down); with "
    "nothing held it pushes nothing.",
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
    if to not in (names.BROADCAST, names.HUMAN) and not names.is_number(to):
        names.check_session_id(to)
    # With no session, a person writes: an approver, by their git e-mail and own key.
    person = c.store.identity.email if c.session is None else None

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
            person=person,
        )

    return c.transact(plan)


SEND = Verb(
    "send",
    "Send a message TO a session id, a session number, `broadcast`, or `human`.",
    _send,
    lambda doc: (
        f"sent {doc['message']['id']} to {doc['message']['to']} (commit {str(doc['commit'])[:10]})"
    ),
    (
        Param(
            "to",
            str,
            "A session id, a session number, broadcast, or human (every approver).",
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
    '  git diff | gitcoord send 4 "Review please" -\n'
    '  gitcoord send human "Escalation" "Outreach is blocked on legal review"\n'
    "A session escalates to the humans with `send human`: every approver sees it, and it "
    "counts as handled once one of them answers (--reply-to). Without --session a listed "
    "approver writes as a person, by their git e-mail (and own key): to a session, to "
    "broadcast, or answering an escalation.",
)


def _inbox(
    c: Coordinator, include_read: bool = False, peek: bool = False, for_session: str | None = None
) -> dict[str, Any]:
    from ... import clock
    from ...domain import mailbox, names
    from ...domain.state import State
    from ...ops import kernel, messages
    from .. import scanned

    if for_session is not None:
        names.check_session_id(for_session)
        peek = True  # reading someone else's inbox never moves their read mark
    if c.session is None and for_session is None:
        return _human_inbox(c, include_read)
    session = for_session or c.need_session()
    tip, state = c.store.snapshot()
    kernel.require_registered(state, session)
    seen = state.reads.get(session)
    branch_seen = seen
    if for_session is None:
        seen = c.kept_read_mark(seen)  # a mark held for a ride counts here already
    old = c.store.view(seen.through) if seen is not None else None
    if old is not None and old.entries("") is None:
        old = None  # the marked commit is gone (branch recreated): all unread
    view = c.store.view_of(state)
    read_by = seen.through if seen is not None else None
    # Messages from where this clone last found none unread, while the mark is the one
    # it read by then (`api.scanned`: a session's own broadcasts are opened once).
    last = scanned.read(c.store, session) if for_session is None else None
    items = mailbox.inbox(
        view, _scanned_view(c, last, read_by) or old, session, include_read=include_read
    )
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
    decisions = _decisions(c, state, old, seen.at if seen else None, session, include_read)
    notices = claim_notices(state, old, session, include_read)
    unread = (
        sum(1 for i in items if not i.read)
        + sum(1 for d in decisions if not d["read"])
        + sum(1 for n in notices if not n["read"])
    )
    now_scanned = scanned.Scanned(tip, read_by) if tip is not None else None
    if (
        for_session is None
        and now_scanned is not None
        and now_scanned != last
        and not any(not i.read for i in items)
    ):
        scanned.write(c.store, session, now_scanned)
    marked = None
    held = False
    if unread and not peek and tip is not None:
        through = tip
        if c.holds and state.config is not None:  # it rides the clone's next push (`carry`)
            moved = messages.make_mark(session, through, clock.now())
            c.hold_read_mark(moved, state.config.heartbeat_min_seconds)
            held = True
        else:

            def mark(s: State) -> Any:
                return messages.mark_read(
                    s, clock.now(), session=session, through=through, seen=branch_seen
                )

            # Just fetched: the first round plans on it (no second fetch) unless it moved.
            marked = c.transact(mark, known=(tip, state)).commit
    return {
        "session": session,
        "decisions": decisions,
        "notices": notices,
        "messages": shown,
        "unread": unread,
        "marked_read": marked is not None or held,
        "mark_held": held,
        "commit": marked,
    }


def _scanned_view(c: Coordinator, last: Any, mark: str | None) -> Any:
    """The tree at `last` (an `api.scanned.Scanned`), if it was read by the read mark
    `mark` and its commit is here; else None."""
    if last is None or last.mark != mark:
        return None
    view = c.store.view(last.tip)
    return view if view.entries("") is not None else None


INBOX = Verb(
    "inbox",
    "Show unread direct and broadcast messages, oldest first, then mark them read.",
    _inbox,
    render.inbox,
    (
        Param("include_read", bool, "Show read messages too.", False, flag="--all"),
        Param("peek", bool, "Leave unread messages unread.", False),
        Param(
            "for_session",
            str,
            "Read SESSION's inbox without marking anything read (a person's review).",
            flag="--for",
            metavar="SESSION",
        ),
    ),
    details="The read mark is committed (coordination/reads/<session>.yaml), so it follows the "
    "session to other machines; nothing is pushed when there is nothing new. Decisions on this "
    "session's approval requests (approved, rejected with the reason, lapsed) come first, "
    "like messages, then claims handed to this session (`handoff`) or taken over from it "
    "after its lease expired. Without a session, a listed approver reads the humans' mailbox: what "
    "sessions sent to `human` and broadcast, each open until an approver answers it.",
    idempotent=True,
)


def _read_either(old: Any, kind: Any, key: str) -> bytes:
    """A document of the tree at a read mark, which may predate the branch's upgrade to
    the sharded layout: where format 4 puts it, else where the flat layout did."""
    from ...domain.kinds import SHARDED

    try:
        return bytes(old.read(kind.path(key, fmt=SHARDED)))
    except OSError:
        return bytes(old.read(kind.path(key, fmt=1)))


def _decisions(
    c: Coordinator, state: Any, old: Any, seen_at: Any, session: str, include_read: bool
) -> list[dict[str, Any]]:
    """What became of this session's approval requests since its read mark: approved,
    rejected (with the reason), or lapsed — read like messages, from the requests
    themselves, so a decision reaches the requester however it was made."""
    from ... import clock
    from ...domain import kinds, yamlio
    from ...domain.models import Approval
    from .approvals import queue_row

    now = clock.now()
    found = []
    for request in sorted(state.approvals.values(), key=lambda a: a.requested_at):
        if request.requested_by != session:
            continue
        row = queue_row(state, request, now)
        if row["status"] == "pending":
            continue
        before = None
        if old is not None:
            try:
                raw = _read_either(old, kinds.APPROVAL, request.id)
                before = Approval.model_validate(yamlio.load(raw))
            except Exception:  # not there yet at the mark, or unreadable: not seen
                before = None
        read = before is not None and before.status == request.status and row["status"] != "lapsed"
        if row["status"] == "lapsed":
            read = seen_at is not None and (row["lapses_at"] or "") <= _iso(seen_at)
        if read and not include_read:
            continue
        found.append({**row, "read": read})
    return found


def claim_notices(state: Any, old: Any, session: str, include_read: bool) -> list[dict[str, Any]]:
    """Claims that changed hands towards or away from this session without a release:
    handed to it (`handoff`), or taken over from it after its lease expired — read like
    messages, from the claims themselves (`handed_by`, `taken_from`): unread when the
    claim's generation at the read mark was lower (or the claim was not there)."""
    from ... import clock
    from ...domain import kinds, yamlio
    from ...domain.models import Claim

    found = []
    for claim in sorted(state.claims.values(), key=lambda c: c.key):
        if claim.holder == session and claim.handed_by is not None:
            notice = {"kind": "handoff", "from": claim.handed_by}
        elif claim.taken_from == session and claim.holder != session:
            notice = {"kind": "takeover", "by": claim.holder}
        else:
            continue
        before = None
        if old is not None:
            try:
                raw = _read_either(old, kinds.CLAIM, claim.key)
                before = Claim.model_validate(yamlio.load(raw))
            except Exception:  # not there yet at the mark, or unreadable: not seen
                before = None
        read = before is not None and before.generation >= claim.generation
        if read and not include_read:
            continue
        found.append(
            {
                **notice,
                "resource": claim.key,
                "holder": claim.holder,
                "generation": claim.generation,
                "at": clock.iso(claim.acquired_at),
                "expires_at": clock.iso(claim.expires_at),
                "note": claim.note,
                "read": read,
            }
        )
    return found


def _iso(value: Any) -> str:
    return value.isoformat().replace("+00:00", "Z") if value is not None else ""


def _human_inbox(c: Coordinator, include_read: bool) -> dict[str, Any]:
    """A person's inbox: what sessions sent to `human` (every approver sees it) and
    broadcasts, each marked handled once an approver answered it. Nothing is marked
    read: the humans share one mailbox, and an escalation stays open until answered."""
    from ...domain import mailbox, names
    from ...errors import RefusedError

    person = c.store.identity.email
    _, state = c.store.snapshot()
    if state.config is None or person not in state.config.approvers:
        raise RefusedError(
            "no session: pass --session ID or set GITCOORD_SESSION (a listed approver reads "
            f"the humans' mailbox without one, and {person} is not one)",
            hint="export GITCOORD_SESSION=<id>",
        )
    view = c.store.view_of(state)
    items = mailbox.inbox(view, None, names.HUMAN, include_read=True)
    answered = mailbox.answered_by(view, set(state.config.approvers))
    shown = []
    for item in items:
        if item.message.to != names.HUMAN and item.message.sender in state.config.approvers:
            continue
        handled = answered.get(item.message.id)
        if handled is not None and not include_read:
            continue
        shown.append({**item.message.model_dump(mode="json"), "handled_by": handled})
    return {
        "session": None,
        "person": person,
        "decisions": [],
        "notices": [],
        "messages": shown,
        "unread": sum(1 for m in shown if m["handled_by"] is None),
        "marked_read": False,
        "commit": None,
    }


def _board(c: Coordinator, limit: int = 50, session_filter: str | None = None) -> dict[str, Any]:
    """Every mailbox at once, newest first, and who has read each message: a person's
    view of all the talk (the seeds' MESSAGES.md). Reading it marks nothing read."""
    from ...domain import mailbox, names

    _, state = c.store.snapshot()
    view = c.store.view_of(state)
    marks = {
        sid: c.store.view(mark.through) for sid, mark in state.reads.items() if sid in state.present
    }
    answered = mailbox.answered_by(view, set(state.config.approvers) if state.config else set())
    rows = []
    for m in mailbox.recent(view, max(1, min(limit, 1000)) * 4):
        if session_filter and session_filter not in (m.sender, m.to):
            continue
        if m.to == names.BROADCAST:
            readers = [sid for sid in state.present if sid != m.sender]
        elif m.to == names.HUMAN:
            readers = []
        else:
            readers = [m.to]
        read_by = sorted(sid for sid in readers if sid in marks and mailbox.holds(marks[sid], m))
        rows.append(
            {
                **m.model_dump(mode="json"),
                "read_by": read_by,
                "unread_by": sorted(set(readers) - set(read_by)),
                "handled_by": answered.get(m.id) if m.to == names.HUMAN else None,
            }
        )
        if len(rows) >= limit:
            break
    return {"messages": rows}


def _board_text(doc: dict[str, Any]) -> str:
    if not doc["messages"]:
        return "(no messages)"
    out = []
    for m in doc["messages"]:
        text = render.message({**m, "read": True})
        who = []
        if m["read_by"]:
            who.append("read by " + ", ".join(m["read_by"]))
        if m["unread_by"]:
            who.append("unread by " + ", ".join(m["unread_by"]))
        if m["to"] == "human":
            who.append(f"handled by {m['handled_by']}" if m["handled_by"] else "open")
        out.append(text + ("\n  (" + "; ".join(who) + ")" if who else ""))
    return "\n\n".join(out)


BOARD = Verb(
    "messages",
    "Every message on the branch, newest first, with who has read it (marks nothing read).",
    _board,
    _board_text,
    (
        Param("limit", int, "How many.", 50, low=1, high=1000, show_default=True),
        Param(
            "session_filter",
            str,
            "Only messages from or to this session.",
            flag="--involving",
            metavar="SESSION",
        ),
    ),
    details="The review of all mailboxes at once, as the founding plan's MESSAGES.md: direct "
    "messages, broadcasts (read by whom, unread by whom, from each session's read mark) and "
    "escalations to `human` (open or handled by which approver).",
    writes=False,
    session=False,
)

VERBS = (HEARTBEAT, FLUSH, SEND, INBOX, BOARD)
