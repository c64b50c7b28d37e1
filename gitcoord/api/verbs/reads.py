"""Reading the branch: status, the audit log, metrics, the state page, validation, templates."""

from __future__ import annotations

import contextlib
import os
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ...errors import GitcoordError, InvalidError, UsageError
from .. import render
from ..verb import Param, Verb

if TYPE_CHECKING:
    from ...domain.change import Change
    from ...domain.health import MessageLog
    from ...domain.state import State
    from ..coordinator import Coordinator


def recent_messages(c: Coordinator, tip: str | None, now: datetime) -> MessageLog:
    """The direct messages of the last day and their replies, from the history's trailers
    (one `git log --since`: the cost of a day's commits, whatever the history's length)."""
    from ...audit import history, replies
    from ...domain import health

    if tip is None:
        return health.MessageLog()
    since = now - health.MESSAGE_WINDOW
    return replies.message_log(history.entries(c.store.git, tip, since))


def health(c: Coordinator) -> dict[str, Any]:
    """The health document as `status` shows it now (its one-line text under "line"): for
    the state page, the web page and any other face."""
    from ... import clock
    from ..views import health_json

    now = clock.now()
    snap = c.snapshot()
    return health_json(snap, now, recent_messages(c, snap.tip, now))


def _status(c: Coordinator) -> dict[str, Any]:
    from ... import clock
    from ..views import status_json

    now = clock.now()
    snap = c.snapshot()
    return status_json(snap, now, recent_messages(c, snap.tip, now))


def _status_text(doc: dict[str, Any]) -> str:
    from ... import clock

    return render.status(doc, clock.now())


STATUS = Verb(
    "status",
    "Sessions (with their last heartbeat) and claims, as the branch is now, under a "
    "health line: stale sessions and the claims they hold, unanswered messages, blocked P0 "
    "tasks, pending approvals.",
    _status,
    _status_text,
    writes=False,
    idempotent=True,
    session=False,
)


def _log(
    c: Coordinator,
    by_session: str | None = None,
    resource: str | None = None,
    op: str | None = None,
    since: str | datetime | None = None,
    limit: int = 50,
) -> list[Any]:
    import time

    from ... import clock
    from ...audit import history

    if op is not None:
        history.check_op(op)  # a typo would match nothing, silently
    when = clock.parse_since(since) if isinstance(since, str) else since
    tip = c.store.fetch_tip(time.monotonic() + c.store.timeout)  # no state needed
    if tip is None:
        return []
    unfiltered = by_session is None and resource is None and op is None
    walk = limit if unfiltered else None  # a filter may skip any number of commits
    found = []
    for entry in history.entries(c.store.git, tip, when, walk):
        if history.matches(entry, session=by_session, resource=resource, op=op):
            found.append(entry)
            if limit is not None and len(found) >= limit:
                break
    return found


LOG = Verb(
    "log",
    "The audit trail, newest first: one line per operation from the branch history.",
    _log,
    lambda doc: render.log(doc["entries"]),
    (
        Param("by_session", str, "Only this session's operations.", flag="--session", metavar="ID"),
        Param("resource", str, "Only this resource (task/x), or a type (task).", metavar="R"),
        Param(
            "op",
            str,
            "Only this operation (claim, takeover, handoff, release, send, ...; an unknown "
            "one is exit 2 listing them).",
            metavar="OP",
        ),
        Param("since", str, "Only newer: a duration back (2h, 1d) or an ISO date.", metavar="WHEN"),
        Param("limit", int, "At most this many entries.", 50, low=1, show_default=True),
    ),
    details="Here --session filters the log; reading it needs no session of your own.",
    writes=False,
    idempotent=True,
    session=False,
    to_json=lambda entries: {"entries": [e.to_json() for e in entries]},
)


def _metrics(
    c: Coordinator, today: bool = False, day: str | None = None, since: str | None = None
) -> dict[str, Any]:
    from datetime import timedelta, timezone

    from ... import clock
    from ...audit import history, metrics

    if sum((today, day is not None, since is not None)) > 1:
        raise UsageError("give one of --today, --day or --since")
    now = clock.now()
    start = end = None
    label = None
    if today:
        start = now.replace(hour=0, minute=0, second=0)
        label = f"today {start:%Y-%m-%d}"
    elif day is not None:
        try:
            start = datetime.strptime(day.strip(), "%Y-%m-%d").replace(tzinfo=timezone.utc)
        except ValueError:
            raise UsageError(f"invalid --day {day!r}: use a UTC date, YYYY-MM-DD") from None
        end = start + timedelta(days=1)
        label = f"{start:%Y-%m-%d}" + (" (today)" if start <= now < end else "")
    elif since is not None:
        start = clock.parse_since(since)
        label = f"since {clock.iso(start)}"
    if start is not None and start > now:
        raise UsageError(f"{label} has not begun yet (now is {clock.iso(now)})")
    tip, state = c.store.snapshot()
    entries = list(history.entries(c.store.git, tip)) if tip else []
    result: dict[str, Any] = metrics.metrics(entries, state, now, start, end, label)
    return result


METRICS = Verb(
    "metrics",
    "The founding plan's success metrics, computed from the branch history: all time, "
    "now, and for a day or since a time.",
    _metrics,
    render.metrics,
    (
        Param("today", bool, "Also the figures of today (UTC), one row per day.", False),
        Param("day", str, "Also the figures of this UTC day.", metavar="YYYY-MM-DD"),
        Param(
            "since",
            str,
            "Also the figures since then, one row per UTC day: a duration back (2h, 7d) "
            "or an ISO date.",
            metavar="WHEN",
        ),
    ),
    details="Reply time counts every direct message: one unanswered for longer than 5 "
    "minutes counts against the target (90% answered within 5 minutes), as one answered "
    "later does. Heartbeat uptime is shown over the span and now (the share of present "
    "sessions that are not stale).",
    writes=False,
    idempotent=True,
    session=False,
)


def _state(
    c: Coordinator, write: bool = False, html: bool = False, output: str | None = None
) -> dict[str, Any]:
    from ... import clock
    from ...domain import statepage
    from ...ops import pages
    from ..verb import outcome_json

    if output is not None and not html:
        raise UsageError("--output writes the HTML page: give --html too")
    tip, state = c.store.snapshot()
    at = clock.now()
    data: dict[str, Any] = {}
    if html:
        # the overview of `gitcoord web`, from its renderer, read at this same tip
        from .. import htmlpage, overview

        page_html = htmlpage.page(overview.overview(c, tip, fetched=True, now=at), at)
        if output is None:
            data["html"] = page_html
        else:
            raw = page_html.encode("utf-8")
            data["output"] = _write_file(os.path.join(c.path, output), raw)
            data["bytes"] = len(raw)
        if not write:
            return data
    page = statepage.render(state, c.store.view_of(state), at)
    data["markdown"] = page.decode("utf-8")
    if write:
        rendered: list[bytes] = []

        def plan(s: State) -> Change:
            # rendered from the very state it is written into, as the verifier renders it
            # (so nothing is carried along: a carried heartbeat would change that state)
            body = statepage.render(s, c.store.view_of(s), clock.now())
            rendered[:] = [body]
            return pages.state_page(s, clock.now(), session=c.session, page=body)

        outcome = c.store.transact(plan, clock.now, known=(tip, state))
        data.update(outcome_json(outcome))
        data["markdown"] = rendered[0].decode("utf-8")
    return data


def _write_file(path: str, data: bytes) -> str:
    """`data` as the file at `path`, whole or not at all (a temporary file renamed over it)."""
    import tempfile

    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UsageError(f"no such directory: {folder}")
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".gitcoord-state-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return os.path.abspath(path)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _state_text(doc: dict[str, Any]) -> str:
    if "output" in doc:
        text = f"wrote {doc['output']} ({doc['bytes']} bytes)"
    elif "html" in doc:
        text = str(doc["html"])
    else:
        text = doc["markdown"].rstrip("\n")
    if "op" in doc:
        text += f"\n\n(written to coordination/CURRENT_STATE.md, commit {str(doc['commit'])[:10]})"
    return text


STATE = Verb(
    "state",
    "A Markdown page of the current state: sessions, claims, tasks, approvals, milestones, "
    "messages; or with --html the whole overview of `gitcoord web` as one self-contained HTML "
    "file.",
    _state,
    _state_text,
    (
        Param("write", bool, "Commit it as coordination/CURRENT_STATE.md.", False),
        Param(
            "html",
            bool,
            "The overview as HTML (sessions, claims, board, milestones, messages, approvals, "
            "metrics, audit log): inline CSS and charts, no script, nothing to load.",
            False,
        ),
        Param(
            "output",
            str,
            "With --html: write the page to FILE (relative to -C) instead of printing it.",
            metavar="FILE",
            mcp=False,
        ),
    ),
    details="The page is a function of the state it describes and the time it names: the "
    "server hook and the clients accept coordination/CURRENT_STATE.md only as the exact "
    "rendering of the state in the commit that writes it, so no session can publish a page "
    "that says what the branch does not. The HTML page is never committed: publish it where "
    "people read (it runs no script and loads nothing).",
    idempotent=True,
)


def _validate(
    c: Coordinator,
    path: str | None = None,
    at_ref: str | None = None,
    span: str | None = None,
    proposal: bool = False,
) -> dict[str, Any]:
    if sum(x is not None for x in (at_ref, span, path)) > 1:
        raise UsageError("give one of --ref, --range or PATH")
    if proposal and span is None:
        raise UsageError("--proposal judges a range: give --range BASE..MERGE")
    if path is not None:
        path = os.path.join(c.path, path)  # relative to -C, as every path
        if not os.path.isdir(path):
            raise UsageError(f"no such directory: {path}")
    notes: list[Any] = []
    problems = (
        c.verify_range(span, proposal=proposal)
        if span
        else c.problems(ref=at_ref, path=path, notes=notes)
    )
    if problems:
        raise InvalidError(
            f"{len(problems)} problem(s):\n" + "\n".join(f"  {p}" for p in problems),
            problems=[p.to_json() for p in problems],
        )
    found: dict[str, Any] = {"valid": True, "problems": []}
    if notes:
        found["warnings"] = [str(n) for n in notes]
    return found


VALIDATE = Verb(
    "validate",
    "Check schema and invariants of the branch, a REF, or a directory PATH (exit 5 listing "
    "each problem with its file).",
    _validate,
    lambda doc: "valid",
    (
        Param(
            "path",
            str,
            "A directory that contains a coordination/ folder (e.g. a worktree of the branch).",
            positional=True,
            metavar="PATH",
        ),
        Param(
            "at_ref",
            str,
            "Validate this ref or commit instead of the current tip.",
            flag="--ref",
            metavar="REF",
        ),
        Param(
            "span",
            str,
            "Validate moving the branch from OLD to NEW: every commit, and who changed what.",
            flag="--range",
            metavar="OLD..NEW",
        ),
        Param(
            "proposal",
            bool,
            "With --range BASE..MERGE: NEW is a merge not made yet (a pull request's test "
            "merge): judge it as if an approver made it.",
            False,
        ),
    ),
    details="A pull request into the branch is judged with --proposal: the merge GitHub "
    "prepares (refs/pull/N/merge, its first parent the base tip) must have the one shape an "
    "approval merge has — approving one pending request, nothing else — and everything it "
    "brings is judged as pushed. Only whether its author may approve, and its signature, "
    "are left to the approver who merges it.",
    writes=False,
    idempotent=True,
    session=False,
)


def _templates(c: Coordinator) -> list[dict[str, Any]]:
    from ...domain import templates as tpl

    rows: list[dict[str, Any]] = []
    for name, where in sorted(tpl.available(c.toplevel()).items()):
        try:
            t = tpl.load(name if where == "shipped" else where)
        except GitcoordError as exc:
            rows.append({"name": name, "source": where, "error": exc.message})
            continue
        rows.append(
            {
                "name": name,
                "source": where,
                "slots": len(t.slots),
                "tasks": len(t.tasks),
                "description": t.description,
            }
        )
    return rows


def _templates_text(doc: dict[str, Any]) -> str:
    return "\n".join(
        f"{r['name']:<16} {r['slots']:>3} slots {r['tasks']:>3} tasks  "
        f"{r['description']}  ({r['source']})"
        if "error" not in r
        else f"{r['name']:<16} UNUSABLE: {r['error']}  ({r['source']})"
        for r in doc["templates"]
    )


TEMPLATES = Verb(
    "templates",
    "The rosters `init --template` can start from (shipped and your own).",
    _templates,
    _templates_text,
    writes=False,
    idempotent=True,
    session=False,
    to_json=lambda rows: {"templates": rows},
)

VERBS = (STATUS, LOG, METRICS, STATE, VALIDATE, TEMPLATES)
