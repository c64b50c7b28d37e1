"""The health line: what needs a person's attention now, computed in one place.

`status`, `metrics` (its "now"), the state page and the web page all show the same
document, built here from a State, the time and the direct messages of the last
day (read from the history's trailers, as `metrics` reads them):

- stale sessions (no heartbeat, nor registration, within `stale_after_minutes`) and
  the live claims they still hold, which nobody else can take until they expire;
- direct messages that ask (not replies) left unanswered for longer than the reply
  target (5 minutes);
- P0 tasks blocked on a dependency that is not done;
- approval requests still pending, and for how long;
- the share of present sessions fresh now (the founding plan's > 90% uptime, now).

Only identifiers (session ids, claim keys, task, message and approval ids, all
restricted to safe characters) go into the one-line text; the words sessions wrote
(titles, subjects) stay in the JSON, exactly, for faces that escape them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ..clock import human_delta, iso
from ..domain import names, rules
from ..domain.state import State
from .history import Entry

REPLY_TARGET = timedelta(minutes=5)  # the founding plan: "<5 min response time to messages"
REPLY_TARGET_SHARE = 0.9  # met when 90% of the decided direct messages were answered in time
UPTIME_TARGET = 0.9  # the founding plan: ">90% heartbeat uptime"
MESSAGE_WINDOW = timedelta(hours=24)  # how far back `status` looks for unanswered messages
_NAMED = 3  # identifiers named in the line before "+N more"


@dataclass(frozen=True)
class Sent:
    """A message as its commit's trailers tell it: who sent it to whom, and when."""

    id: str
    sender: str
    to: str
    time: datetime  # committer time of the commit that sent it
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


def message_log(history: Iterable[Entry]) -> MessageLog:
    """Every message and reply in `history` (newest first, as `history.entries` gives it).

    A reply counts when it is sent by the message's recipient (`--reply-to`); only the
    first one does, and a broadcast is never waiting for one."""
    log = MessageLog()
    ordered = list(history)
    for e in reversed(ordered):  # branch order, oldest first: commit times may be skewed
        mid = e.get("Gitcoord-Message")
        if mid and e.session and mid not in log.sent:
            to = e.get("Gitcoord-To") or ""
            log.sent[mid] = Sent(mid, e.session, to, e.time, e.get("Gitcoord-Reply-To"))
        orig = log.sent.get(e.get("Gitcoord-Reply-To") or "")
        if orig is None or orig.id in log.answered:
            continue
        if orig.to != names.BROADCAST and e.session == orig.to:
            log.answered[orig.id] = e.time
    return log


def recent(history: Iterable[Entry], now: datetime) -> list[Entry]:
    """The newest entries of `history` (newest first) down to the first one older than
    the message window: what `git log --since` returns, whichever way it was read."""
    out = []
    for e in history:
        if e.time < now - MESSAGE_WINDOW:
            break
        out.append(e)
    return out


def reply_figures(
    log: MessageLog, now: datetime, start: datetime | None = None, end: datetime | None = None
) -> dict[str, Any]:
    """The direct messages sent in [start, end) and how they were answered.

    Of the messages that ask (direct, not replies), one answered by its recipient within
    the target counts for it, one answered later against it, and so does one still
    unanswered once older than the target; one younger and unanswered is `waiting`, not
    decided yet. The target is met when the answered-in-time share of the decided
    messages reaches REPLY_TARGET_SHARE."""
    sent = [
        m
        for m in log.sent.values()
        if (start is None or m.time >= start) and (end is None or m.time < end)
    ]
    direct = [m for m in sent if m.to != names.BROADCAST]
    asked = [m for m in direct if m.asks]
    delays: list[float] = []
    within = late = unanswered = waiting = 0
    for m in asked:
        answer = log.answered.get(m.id)
        if answer is not None:
            delay = max(0.0, (answer - m.time).total_seconds())
            delays.append(delay)
            if delay <= REPLY_TARGET.total_seconds():
                within += 1
            else:
                late += 1
        elif now - m.time > REPLY_TARGET:
            unanswered += 1
        else:
            waiting += 1
    decided = within + late + unanswered
    share = None if not decided else within / decided
    return {
        "sent": len(sent),
        "direct": len(direct),
        "replies": len(direct) - len(asked),
        "asked": len(asked),
        "answered": len(delays),
        "answered_within_target": within,
        "answered_late": late,
        "unanswered": unanswered,
        "waiting": waiting,
        "within_target_share": None if share is None else round(share, 4),
        "target_seconds": int(REPLY_TARGET.total_seconds()),
        "target_share": REPLY_TARGET_SHARE,
        "delays": delays,
    }


def stale_after(state: State) -> timedelta:
    return timedelta(minutes=state.config.stale_after_minutes if state.config else 20)


def last_seen(state: State, sid: str) -> datetime:
    """A session's last sign of life: its latest heartbeat or its registration."""
    session = state.sessions[sid]
    beat = state.heartbeats.get(sid)
    return max(beat.at, session.registered_at) if beat else session.registered_at


def is_stale(state: State, sid: str, now: datetime) -> bool:
    return now - last_seen(state, sid) > stale_after(state)


def health(state: State, now: datetime, messages: MessageLog | None) -> dict[str, Any]:
    """The health document (JSON-able) with its one-line text under "line".

    `messages` is the history's last day of messages (`message_log(recent(...))`); None
    when the caller did not read it: then nothing is said about replies."""
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
        if a.status == "pending"
    ]
    doc: dict[str, Any] = {
        "at": iso(now),
        "ok": not stale and not (unanswered and unanswered["count"]) and not blocked
        and not pending,
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


def _count(n: int, what: str) -> str:
    return f"{n} {what}" if n == 1 else f"{n} {what}s"


def _named(ids: Iterable[str]) -> str:
    items = list(ids)
    shown = ", ".join(items[:_NAMED])
    return shown if len(items) <= _NAMED else f"{shown} +{len(items) - _NAMED} more"


def _natural(text: str) -> list[Any]:
    import re

    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", text)]
