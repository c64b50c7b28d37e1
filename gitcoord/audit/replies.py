"""Messages and their answers read from the history's trailers, and the reply figures.

Every `send` commit carries `Gitcoord-Message`, `Gitcoord-To` and, for a reply,
`Gitcoord-Reply-To`: one `git log` gives who asked whom and when, and who answered,
without opening a message file. `status` reads the last day of it for the health line
(`git log --since`: the cost of a day's commits, whatever the history's length);
`metrics` reads all of it.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from ..domain import names
from ..domain.health import (
    REPLY_TARGET,
    REPLY_TARGET_SHARE,
    MessageLog,
    Sent,
    record,
)
from .history import Entry


def message_log(history: Iterable[Entry]) -> MessageLog:
    """Every message in `history` (newest first, as `history.entries` gives it) and the
    first answer to each: a reply from its recipient, or from a person for a message to
    the approvers (`human`). A person's commit speaks for no session: its sender is the
    commit's author, an approver's e-mail (only approvers may write such a commit)."""
    log = MessageLog()
    for e in reversed(list(history)):  # branch order, oldest first: commit times may be skewed
        mid = e.get("Gitcoord-Message")
        sender = e.session or e.author_email
        if mid and sender:
            to = e.get("Gitcoord-To") or ""
            record(log, Sent(mid, sender, to, e.time, e.get("Gitcoord-Reply-To")))
    return log


def reply_figures(
    log: MessageLog, now: datetime, start: datetime | None = None, end: datetime | None = None
) -> dict[str, Any]:
    """The direct messages sent in [start, end) and how they were answered.

    Of the messages sessions asked each other (direct, not replies; those to the
    approvers are counted apart, `to_human`: people's pace is not the sessions'), one
    answered by its recipient within the target counts for it, one answered later
    against it, and so does one still unanswered once older than the target; one younger
    and unanswered is `waiting`, not decided yet. The target is met when the
    answered-in-time share of the decided messages reaches REPLY_TARGET_SHARE. The
    `delays` (seconds) are the answered ones'."""
    sent = [
        m
        for m in log.sent.values()
        if (start is None or m.time >= start) and (end is None or m.time < end)
    ]
    direct = [m for m in sent if m.to != names.BROADCAST]
    asked = [m for m in direct if m.asks and m.to != names.HUMAN]
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
        "replies": sum(1 for m in direct if m.reply_to is not None),
        "to_human": sum(1 for m in direct if m.asks and m.to == names.HUMAN),
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
