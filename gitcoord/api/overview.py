"""The overview: everything a person's daily review shows, read at one tip.

`gitcoord web` and `gitcoord state --html` show the same picture: sessions,
claims, the board, milestones, message threads, the approval queue, the health
line, the day's metrics and the audit log. It is gathered here through the
same verbs the command line runs (`status`, `task list`, `milestone list`,
`approval list`, `metrics`, `log`, `messages`: the Coordinator's methods, made from the verb
registry), all reading one tip: one fetch, then every read pinned to it
(`Store.pinned`), so the sections agree with each other.

The document is JSON (what `--json` of each verb prints, side by side); the
HTML is `gitcoord.api.htmlpage`'s.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from .. import clock
from ..domain import names

if TYPE_CHECKING:
    from .coordinator import Coordinator

LOG_LIMIT = 40  # audit-log lines the page shows
MESSAGE_LIMIT = 60  # newest messages, grouped into threads
DAY_LIMIT = 5000  # commits read for the day's charts, at most


def fetch(c: Coordinator) -> str | None:
    """The branch tip as it is now (one fetch): what `overview` is then read at."""
    return c.store.fetch_tip(time.monotonic() + c.store.timeout)


def overview(
    c: Coordinator,
    tip: str | None = None,
    *,
    fetched: bool = False,
    now: datetime | None = None,
    log_limit: int = LOG_LIMIT,
    message_limit: int = MESSAGE_LIMIT,
) -> dict[str, Any]:
    """Everything the review shows, read at `tip` when `fetched` (else fetched now)."""
    from ..audit import timeline

    if not fetched:
        tip = fetch(c)
    now = now or clock.now()
    with c.store.pinned(tip):
        status: dict[str, Any] = c.status()
        doc: dict[str, Any] = {
            "generated_at": clock.iso(now),
            "where": status["where"],
            "tip": tip,
            "status": status,
            "tasks": [],
            "milestones": [],
            "approvals": [],
            "messages": [],
            "metrics": None,
            "day": None,
            "log": [],
            "approvers": [],
        }
        if not status["initialised"]:
            return doc
        doc["tasks"] = c.task_list(status="all")
        doc["milestones"] = c.milestone_list()
        doc["approvals"] = c.approval_list(include_decided=True)
        doc["metrics"] = c.metrics()
        doc["log"] = [e.to_json() for e in c.log(limit=log_limit)]
        entries = c.log(since=now - timedelta(hours=24), limit=DAY_LIMIT)
        doc["day"] = timeline.day(entries, now)
        _, state = c.store.snapshot()
        doc["approvers"] = list(state.config.approvers) if state.config else []
        # the people's messages board: every mailbox, who read what, what was handled
        board = c.messages(limit=message_limit)["messages"]
        doc["messages"] = threads(board, set(doc["approvers"]))
    return doc


def threads(
    messages: list[dict[str, Any]], approvers: set[str] | frozenset[str] = frozenset()
) -> list[dict[str, Any]]:
    """Messages (any order) as threads: each root with its replies, newest thread first.

    A reply whose original is not among `messages` starts a thread of its own. A
    direct message that is not itself a reply, and that no reply by its recipient
    answers, is `unanswered` (every reply is newer than what it answers, so among the
    newest messages a message's replies are all there; a reply closes a loop rather
    than opening one). A message to `human` is answered by any approver's reply (or
    when the messages board says it was handled)."""
    by_id = {m["id"]: m for m in messages}
    root_of: dict[str, str] = {}

    def root(mid: str) -> str:
        seen: set[str] = set()
        while True:
            parent = by_id[mid].get("reply_to")
            if not parent or parent not in by_id or parent in seen:
                return mid
            seen.add(mid)
            mid = parent

    answered: set[str] = set()
    for m in messages:
        root_of[m["id"]] = root(m["id"])
        if m.get("handled_by"):  # the messages board says an approver answered it
            answered.add(m["id"])
        parent = by_id.get(m.get("reply_to") or "")
        if parent is None:
            continue
        to_human = parent["to"] == names.HUMAN and m["sender"] in approvers
        if parent["to"] == m["sender"] or to_human:
            answered.add(parent["id"])
    grouped: dict[str, list[dict[str, Any]]] = {}
    for m in sorted(messages, key=lambda m: m["id"]):
        shown = {
            **m,
            "unanswered": m["to"] != "broadcast"
            and not m.get("reply_to")
            and m["id"] not in answered,
        }
        grouped.setdefault(root_of[m["id"]], []).append(shown)
    ordered = sorted(grouped.values(), key=lambda ms: ms[-1]["id"], reverse=True)
    return [{"id": ms[0]["id"], "subject": ms[0]["subject"], "messages": ms} for ms in ordered]
