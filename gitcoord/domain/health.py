"""The health line: what needs a person's attention now, computed in one place.

`status`, `metrics` (its "now"), the state page and the web page all show the same
document, built here from a State, the time and the messages of the last day —
which `status` and `metrics` read from the history's trailers (`audit.replies`: one
`git log`), and the state page from its own tree (`from_tree`), since the verifier
renders that page again from the commit alone:

- stale sessions (no heartbeat, nor registration, within `stale_after_minutes`) and
  the live claims they still hold, which nobody else can take until they expire;
- direct messages that ask (not replies) left unanswered for longer than the reply
  target (5 minutes), those to the approvers (`human`) included;
- P0 tasks blocked on a dependency that is not done;
- approval requests still pending (not lapsed), and for how long;
- the share of present sessions fresh now (the founding plan's > 90% uptime, now).

Only identifiers (session ids, claim keys, task, message and approval ids, all
restricted to safe characters) go into the one-line text; the words sessions wrote
(titles, subjects) stay in the JSON, exactly, for faces that escape them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ..clock import human_delta, iso
from . import mailbox, names, rules
from .models import Approval
from .state import State

REPLY_TARGET = timedelta(minutes=5)  # the founding plan: "<5 min response time to messages"
REPLY_TARGET_SHARE = 0.9  # met when 90% of the decided direct messages were answered in time
UPTIME_TARGET = 0.9  # the founding plan: ">90% heartbeat uptime"
MESSAGE_WINDOW = timedelta(hours=24)  # how far back `status` looks for unanswered messages
_NAMED = 3  # identifiers named in the line before "+N more"
_LISTED = 10  # unanswered messages listed one a line by `details`


@dataclass(frozen=True)
class Sent:
    """A message: who sent it (a session id, or a person's e-mail) to whom, when, and
    what it answers."""

    id: str
    sender: str
    to: str
    time: datetime  # its commit's time (from history) or its sent_at (from a tree)
    reply_to: str | None = None

    @property
    def asks(self) -> bool:
        """A direct message that starts a conversation, so waits for an answer: not a
        broadcast, and not itself a reply (an answer is not owed one, or every
        conversation would end unanswered)."""
        return self.to != names.BROADCAST and self.reply_to is None


@dataclass
class MessageLog:
    """Messages sent and the first reply to each by its recipient (`answered`)."""

    sent: dict[str, Sent] = field(default_factory=dict)
    answered: dict[str, datetime] = field(default_factory=dict)  # id -> first reply's time


def answers(original: Sent, replier: str) -> bool:
    """Whether a reply from `replier` answers `original`: its recipient's, or for a
    message to the approvers (`human`) a person's (an e-mail: session ids have no @)."""
    if original.to == names.BROADCAST:
        return False
    if original.to == names.HUMAN:
        return "@" in replier
    return replier == original.to


def record(log: MessageLog, sent: Sent) -> None:
    """Add `sent` to `log`, in branch order: the first answer to a message counts."""
    if sent.id in log.sent:
        return
    log.sent[sent.id] = sent
    original = log.sent.get(sent.reply_to or "")
    if original is not None and original.id not in log.answered and answers(original, sent.sender):
        log.answered[original.id] = sent.time


def from_tree(view: mailbox.TreeView, now: datetime) -> MessageLog:
    """The messages of the last MESSAGE_WINDOW as the tree holds them (the day folders it
    spans, in every mailbox): the state page's source, which the verifier can read again."""
    log = MessageLog()
    first = f"{now - MESSAGE_WINDOW:%Y-%m-%d}"
    for m in sorted(mailbox.since(view, first), key=lambda m: (m.sent_at, m.id)):
        sent = m.sent_at.replace(microsecond=0)  # whole seconds, as commit times
        record(log, Sent(m.id, m.sender, m.to, sent, m.reply_to))
    return log


def stale_after(state: State) -> timedelta:
    return timedelta(minutes=state.config.stale_after_minutes if state.config else 20)


def last_seen(state: State, sid: str) -> datetime:
    """A session's last sign of life: its latest heartbeat or registration (`rules`)."""
    seen = rules.last_seen(state, sid)
    return seen if seen is not None else state.sessions[sid].registered_at


def is_stale(state: State, sid: str, now: datetime) -> bool:
    return now - last_seen(state, sid) > stale_after(state)


def health(state: State, now: datetime, messages: MessageLog | None) -> dict[str, Any]:
    """The health document (JSON-able) with its one-line text under "line".

    `messages`: at least the last MESSAGE_WINDOW of messages and their answers (from
    the history, `audit.replies.message_log`, or the tree, `from_tree`); only those
    sent in the window count. None when the caller did not read them: then nothing is
    said about replies."""
    present = sorted(state.present.values(), key=lambda s: s.number)
    stale_ids = {s.id for s in present if is_stale(state, s.id, now)}
    held = sorted(
        (
            c
            for c in state.claims.values()
            if c.holder in stale_ids and state.claim_status(c, now) in ("live", "pending")
        ),
        key=lambda c: c.key,
    )
    stale = [
        {
            "id": s.id,
            "number": s.number,
            "last_seen": iso(last_seen(state, s.id)),
            "silent_seconds": int((now - last_seen(state, s.id)).total_seconds()),
            "claims": [c.key for c in held if c.holder == s.id],
        }
        for s in present
        if s.id in stale_ids
    ]
    stale_claims = [
        {
            "resource": c.key,
            "holder": c.holder,
            "generation": c.generation,
            "expires_at": iso(c.expires_at),
            "status": state.claim_status(c, now),
        }
        for c in held
    ]
    fresh = len(present) - len(stale_ids)
    share = None if not present else fresh / len(present)

    unanswered: dict[str, Any] | None = None
    if messages is not None:
        late = [
            m
            for m in messages.sent.values()
            if m.asks
            and m.id not in messages.answered
            and now - MESSAGE_WINDOW <= m.time
            and now - m.time > REPLY_TARGET
        ]
        late.sort(key=lambda m: (m.time, m.id))
        unanswered = {
            "count": len(late),
            "after_seconds": int(REPLY_TARGET.total_seconds()),
            "window_hours": int(MESSAGE_WINDOW.total_seconds() // 3600),
            "messages": [
                {
                    "id": m.id,
                    "sender": m.sender,
                    "to": m.to,
                    "sent_at": iso(m.time),
                    "age_seconds": int((now - m.time).total_seconds()),
                }
                for m in late
            ],
        }

    blocked = [
        {"id": t.id, "title": t.title, "waiting_for": rules.waiting_for(state, t)}
        for t in sorted(state.tasks.values(), key=lambda t: _natural(t.id))
        if t.priority == "P0" and rules.task_status(state, t, now) == "blocked"
    ]
    pending = [
        {
            "id": a.id,
            "kind": a.kind,
            "subject": a.subject,
            "requested_by": a.requested_by,
            "requested_at": iso(a.requested_at),
            "age_seconds": int((now - a.requested_at).total_seconds()),
        }
        for a in sorted(state.approvals.values(), key=lambda a: (a.requested_at, a.id))
        if a.status == "pending" and not _lapsed(state, a, now)
    ]
    doc: dict[str, Any] = {
        "at": iso(now),
        "ok": not (stale or blocked or pending or (unanswered and unanswered["count"])),
        "sessions": {
            "present": len(present),
            "fresh": fresh,
            "stale": len(stale),
            "fresh_share": None if share is None else round(share, 4),
            "target_share": UPTIME_TARGET,
            "target_met": None if share is None else share > UPTIME_TARGET,
            "stale_after_minutes": int(stale_after(state).total_seconds() // 60),
        },
        "stale_sessions": stale,
        "stale_claims": stale_claims,
        "unanswered": unanswered,
        "blocked_p0": blocked,
        "approvals_pending": pending,
    }
    doc["line"] = line(doc)
    return doc


def line(doc: dict[str, Any]) -> str:
    """The health document as one line of text: problems first, then what is fine."""
    bad: list[str] = []
    good: list[str] = []
    sessions = doc["sessions"]
    if doc["stale_sessions"]:
        text = (
            f"{sessions['stale']} of {sessions['present']} sessions stale "
            f"({_named(s['id'] for s in doc['stale_sessions'])})"
        )
        claims = doc["stale_claims"]
        if claims:
            text += (
                f", holding {_count(len(claims), 'live claim')} "
                f"({_named(c['resource'] for c in claims)})"
            )
        bad.append(text)
    elif sessions["present"]:
        good.append(f"{sessions['fresh']}/{sessions['present']} sessions fresh")
    else:
        good.append("no sessions")
    unanswered = doc["unanswered"]
    after = human_delta(REPLY_TARGET)
    if unanswered is not None and unanswered["count"]:
        oldest = unanswered["messages"][0]
        bad.append(
            f"{_count(unanswered['count'], 'direct message')} unanswered over {after} "
            f"(oldest {human_delta(timedelta(seconds=oldest['age_seconds']))}, "
            f"to {_named(dict.fromkeys(m['to'] for m in unanswered['messages']))})"
        )
    elif unanswered is not None:
        good.append(f"no message unanswered over {after}")
    if doc["blocked_p0"]:
        bad.append(
            f"{_count(len(doc['blocked_p0']), 'blocked P0 task')} "
            f"({_named(t['id'] for t in doc['blocked_p0'])})"
        )
    else:
        good.append("no blocked P0 task")
    pending = doc["approvals_pending"]
    if pending:
        age = human_delta(timedelta(seconds=pending[0]["age_seconds"]))
        bad.append(
            f"{_count(len(pending), 'approval')} pending "
            f"({_named(a['id'] for a in pending)}; oldest {age})"
        )
    else:
        good.append("no approval pending")
    head = "health: ATTENTION · " if bad else "health: ok · "
    return head + " · ".join(bad + good)


def details(doc: dict[str, Any]) -> list[str]:
    """One line per thing the health line counts, naming who and what (ids only)."""
    out = []
    for s in doc["stale_sessions"]:
        silent = human_delta(timedelta(seconds=s["silent_seconds"]))
        held = f", holds {', '.join(s['claims'])}" if s["claims"] else ""
        out.append(f"stale: #{s['number']} {s['id']}, silent for {silent}{held}")
    for c in doc["stale_claims"]:
        out.append(
            f"live claim held by a stale session: {c['resource']} ({c['holder']}, "
            f"generation {c['generation']}, {c['status']} until {c['expires_at']})"
        )
    unanswered = (doc.get("unanswered") or {"messages": []})["messages"]
    for m in unanswered[:_LISTED]:
        age = human_delta(timedelta(seconds=m["age_seconds"]))
        out.append(f"unanswered for {age}: [{m['id']}] {m['sender']} -> {m['to']}")
    if len(unanswered) > _LISTED:
        out.append(f"... and {len(unanswered) - _LISTED} more unanswered")
    for t in doc["blocked_p0"]:
        out.append(f"blocked P0: {t['id']} waits for {', '.join(t['waiting_for'])}")
    for a in doc["approvals_pending"]:
        age = human_delta(timedelta(seconds=a["age_seconds"]))
        out.append(
            f"approval pending for {age}: {a['id']} ({a['kind']}, by {a['requested_by']})"
        )
    return out


def _count(n: int, what: str) -> str:
    return f"{n} {what}" if n == 1 else f"{n} {what}s"


def _named(ids: Iterable[str]) -> str:
    items = list(ids)
    shown = ", ".join(items[:_NAMED])
    return shown if len(items) <= _NAMED else f"{shown} +{len(items) - _NAMED} more"


def _lapsed(state: State, request: Approval, now: datetime) -> bool:
    """A claim's request nobody decided in time: its claim's wait is over, nothing to
    decide (as `gitcoord.ops.approvals.lapses_at` says)."""
    if request.kind != "claim" or request.resource is None:
        return False
    claim = state.claims.get(request.resource)
    return (
        claim is not None
        and claim.approval == request.id
        and claim.released_at is None
        and claim.expires_at <= now
    )


def _natural(text: str) -> list[Any]:
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", text)]
