"""The overview as HTML: the live page of `gitcoord web` and `gitcoord state --html`.

One renderer for both. Given the overview document (`gitcoord.api.overview`) it
writes a complete page — inline CSS, inline SVG charts drawn here, no external
resource — that reads without JavaScript. The live page adds, when asked (`Live`):
the approval queue's forms (approve, reject with a reason, approve several at
once where the grant verb takes several ids), each carrying the CSRF token, and a
small script that reloads the changed sections when the server says the tip moved.

Everything sessions write (roles, goals, notes, subjects, bodies, task titles,
even ids) is untrusted: every value goes through `_t` — control characters and
bidirectional overrides made visible (`untrusted.terminal`), then HTML-escaped
with quotes — whether it lands in text or in an attribute, and none of it ever
reaches the script. The page also carries a Content-Security-Policy: the static
file in a meta element (no script at all), the live page in its headers (only
its own script, by nonce).

Standard library only.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ..clock import human_delta
from ..domain.untrusted import terminal
from ..version import __version__

PRIORITIES = ("P0", "P1", "P2", "P3")
BODY_SHOWN = 1500  # characters of a message body shown before "… more"

# A static page runs nothing and loads nothing: only its own inline styles and SVG.
STATIC_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'"


@dataclass(frozen=True)
class Live:
    """What makes the page live: its forms' CSRF token, the script's nonce, and what
    the approval verbs of this gitcoord can do."""

    csrf: str
    nonce: str
    grant_many: bool = False
    reject: bool = False
    problem: str | None = None  # the last refresh failed: say so, show what we have
    actor: str = ""  # who approves from this page: the git identity running it
    version: int = 0  # which picture of the branch the page shows (the script's cursor)


@dataclass(frozen=True)
class Notice:
    """The outcome of the last action, shown above everything (`error`: refused)."""

    text: str
    error: bool = False


def _t(value: object) -> str:
    """Untrusted text, safe in HTML text and in quoted attributes."""
    return html.escape(terminal(str(value)), quote=True)


def _when(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _ago(value: str | None, now: datetime) -> str:
    if not value:
        return "-"
    delta = now - _when(value)
    if delta < timedelta(0):
        return "in " + human_delta(-delta)
    return human_delta(delta) + " ago"


def _time(value: str | None, now: datetime) -> str:
    """A time as people read it ("3m ago"), the exact one in its `datetime`."""
    if not value:
        return "-"
    return f'<time datetime="{_t(value)}" title="{_t(value)}">{_t(_ago(value, now))}</time>'


def _badge(text: str, kind: str) -> str:
    return f'<strong class="badge {kind}">{_t(text)}</strong>'


def _bar(percent: float, width: int = 64) -> str:
    """A small progress bar; the number beside it is what is read out."""
    filled = max(0.0, min(100.0, percent)) * width / 100
    return (
        f'<svg class="bar" width="{width}" height="10" viewBox="0 0 {width} 10" '
        f'aria-hidden="true" focusable="false"><rect width="{width}" height="10" rx="2" '
        f'fill="#dde3ea"/><rect width="{filled:.1f}" height="10" rx="2" fill="#1d4ed8"/></svg>'
    )


def _table(headers: list[str], rows: list[list[str]], caption: str, cls: str = "cards") -> str:
    """A table whose rows become cards on a narrow screen (each cell says its column).
    Cells are HTML already; headers and caption are ours."""
    head = "".join(f'<th scope="col">{h}</th>' for h in headers)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td data-label="{html.escape(h, quote=True)}">{c}</td>'
            for h, c in zip(headers, r, strict=True)
        )
        + "</tr>"
        for r in rows
    )
    return (
        f'<div class="scroll"><table class="{cls}"><caption class="sr-only">{caption}</caption>'
        f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"
    )


def _section(sid: str, title: str, body: str, live: bool = True) -> str:
    attr = " data-live" if live else ""
    return (
        f'<section id="{sid}"{attr} aria-labelledby="{sid}-h">'
        f'<h2 id="{sid}-h">{title}</h2>{body}</section>'
    )


# --- sections -------------------------------------------------------------------------


def health(doc: dict[str, Any], now: datetime) -> str:
    """The health line every face shows (`gitcoord.domain.health`, as `status` prints it),
    then each thing it counts, linked to its section."""
    status = doc["status"]
    h = status.get("health")
    if not status["initialised"] or not h:
        return _section(
            "health", "Health", '<p class="health warn">Not initialised: run gitcoord init.</p>'
        )
    items = []
    for st in h["stale_sessions"]:
        silent = human_delta(timedelta(seconds=st["silent_seconds"]))
        held = f", holds {', '.join(_t(c) for c in st['claims'])}" if st["claims"] else ""
        items.append(
            f'<li><a href="#sessions">stale</a>: #{_t(st["number"])} {_t(st["id"])}, silent '
            f"for {_t(silent)}{held}</li>"
        )
    for m in (h.get("unanswered") or {"messages": []})["messages"][:10]:
        age = human_delta(timedelta(seconds=m["age_seconds"]))
        items.append(
            f'<li><a href="#messages">unanswered</a> for {_t(age)}: {_t(m["sender"])} → '
            f"{_t(m['to'])} <code>{_t(m['id'])}</code></li>"
        )
    for t in h["blocked_p0"]:
        items.append(
            f'<li><a href="#board">blocked P0</a>: <code>{_t(t["id"])}</code> {_t(t["title"])}, '
            f"waits for {', '.join(_t(w) for w in t['waiting_for'])}</li>"
        )
    for a in h["approvals_pending"]:
        age = human_delta(timedelta(seconds=a["age_seconds"]))
        items.append(
            f'<li><a href="#approvals">approval pending</a> for {_t(age)}: '
            f"{_t(a['subject'])} <code>{_t(a['id'])}</code> (by {_t(a['requested_by'])})</li>"
        )
    if status.get("problems"):
        items.append(
            f"<li>{len(status['problems'])} problem(s) on the branch: run "
            "<code>gitcoord doctor</code></li>"
        )
    kind = "ok" if h["ok"] and not status.get("problems") else "warn"
    listed = f"<ul>{''.join(items)}</ul>" if items else ""
    body = f'<div class="health {kind}"><p><strong>{_t(h["line"])}</strong></p>{listed}</div>'
    return _section("health", "Health", body)


def approvals(doc: dict[str, Any], now: datetime, live: Live | None) -> str:
    rows = doc["approvals"]
    pending = [a for a in rows if a.get("status") == "pending"]
    decided = [a for a in rows if a.get("status") != "pending"]
    out = []
    if not pending:
        out.append("<p>No approval is waiting.</p>")
    else:
        batch = live is not None and live.grant_many and len(pending) > 1
        if batch and live is not None:
            out.append(
                '<form id="batch" method="post" action="approvals" class="batch">'
                f'<input type="hidden" name="csrf" value="{_t(live.csrf)}">'
                '<input type="hidden" name="action" value="approve">'
                '<button type="submit" class="approve">Approve selected</button></form>'
            )
        out.append('<ol class="queue">')
        for i, a in enumerate(pending, 1):
            out.append(_request(a, i, now, live, batch))
        out.append("</ol>")
    if decided:
        table = _table(
            ["ID", "Kind", "Status", "Subject", "Requested by", "Decided by", "When", "Reason"],
            [
                [
                    f"<code>{_t(a['id'])}</code>",
                    _t(a.get("kind", "")),
                    _t(a.get("status", "")),
                    _t(a.get("subject", "")),
                    _t(a.get("requested_by", "")),
                    _t(a.get("approved_by") or a.get("rejected_by") or a.get("decided_by") or "-"),
                    _time(a.get("approved_at") or a.get("rejected_at") or a.get("decided_at"), now),
                    _t(a.get("reason") or "-"),
                ]
                for a in reversed(decided)
            ],
            "Decided approval requests",
        )
        out.append(f"<details><summary>Decided ({len(decided)})</summary>{table}</details>")
    if live is not None and live.actor:
        listed = live.actor in doc.get("approvers", [])
        who = (
            f"You decide as <strong>{_t(live.actor)}</strong>"
            + (
                ", a listed approver."
                if listed
                else ", who is not a listed approver: gitcoord will refuse (as on the command "
                "line)."
            )
            + " Each decision is one commit, signed with your own key where you set one "
            "(git config user.signingKey)."
        )
        out.insert(0, f'<p class="meta">{who}</p>')
    title = f'Approvals <span class="count">{len(pending)} waiting</span>'
    return _section("approvals", title, "".join(out))


def _request(a: dict[str, Any], i: int, now: datetime, live: Live | None, batch: bool) -> str:
    facts = [
        f"<code>{_t(a['id'])}</code>",
        _t(a.get("kind", "")),
        f"requested by {_t(a.get('requested_by', ''))} {_time(a.get('requested_at'), now)}",
    ]
    if a.get("gates"):
        facts.append(f"gates {_t(a['gates'])}")
    elif a.get("resource"):
        facts.append(f"gates {_t(a['resource'])}")
    if a.get("lapses_at"):
        facts.append(f"lapses {_time(a['lapses_at'], now)} unless decided")
    note = f'<p class="note">{_t(a["note"])}</p>' if a.get("note") else ""
    if a.get("meaning"):
        note += (
            f"<p>{_badge('no longer means anything', 'warn')} {_t(a['meaning'])}: approving "
            "it would be refused.</p>"
        )
    form = ""
    if live is not None:
        pick = ""
        if batch:
            pick = (
                f'<input type="checkbox" id="pick-{i}" name="id" value="{_t(a["id"])}" '
                f'form="batch"> <label for="pick-{i}">Select</label>'
            )
        reject = ""
        if live.reject:
            reject = (
                f'<label for="reason-{i}">Reason for rejecting</label>'
                f'<input type="text" id="reason-{i}" name="reason" maxlength="500" required '
                'autocomplete="off">'
                '<button type="submit" class="reject" name="action" value="reject">'
                f'Reject<span class="sr-only"> {_t(a["id"])}</span></button>'
            )
        form = (
            f'<form method="post" action="approvals" class="decide">'
            f'<input type="hidden" name="csrf" value="{_t(live.csrf)}">'
            f'<input type="hidden" name="id" value="{_t(a["id"])}">'
            f'<button type="submit" class="approve" name="action" value="approve" '
            f'formnovalidate>Approve<span class="sr-only"> {_t(a["id"])}</span></button>'
            f"{reject}</form>{pick}"
        )
    return (
        f'<li class="request"><h3>{_t(a.get("subject", ""))}</h3>'
        f'<p class="meta">{" · ".join(facts)}</p>{note}{form}</li>'
    )


def sessions(doc: dict[str, Any], now: datetime) -> str:
    status = doc["status"]
    stale_after = timedelta(minutes=status.get("stale_after_minutes") or 20)
    rows = []
    for s in status.get("sessions", []):
        hb = s.get("heartbeat")
        stale = now - _when(s["last_seen"]) > stale_after
        doing = (
            f'{_t(hb["action"])} {_t(hb["target"])} <span class="muted">({_t(hb["phase"])})</span>'
            if hb
            else "-"
        )
        progress = f"{_bar(hb['progress'])} {int(hb['progress'])}%" if hb else "-"
        state = _badge("stale", "warn") if stale else _badge("ok", "ok")
        rows.append(
            [
                _t(s["number"]),
                f"<strong>{_t(s['id'])}</strong>",
                _t(s["role"]),
                _t(s["goal"]),
                _time(s["last_seen"], now),
                doing,
                progress,
                state,
            ]
        )
    free = status.get("free_numbers") or []
    lead = (
        f"<p>{status.get('registered', 0)} of {_t(status.get('slots') or 0)} numbers taken"
        + (f"; free: {_t(_ranges(free))}" if free else "")
        + f". Stale after {int(stale_after.total_seconds() // 60)} minutes without a heartbeat."
        "</p>"
    )
    body = lead + (
        _table(
            ["#", "Session", "Role", "Goal", "Last heartbeat", "Doing", "Progress", "State"],
            rows,
            "Registered sessions",
        )
        if rows
        else "<p>No session registered yet.</p>"
    )
    return _section("sessions", "Sessions", body)


def claims(doc: dict[str, Any], now: datetime) -> str:
    all_claims = doc["status"].get("claims", [])
    active = [c for c in all_claims if c["status"] != "released"]
    rows = []
    for c in active:
        expires = _when(c["expires_at"])
        if c["status"] == "pending":
            state = _badge("pending approval", "warn") + f" <code>{_t(c.get('approval'))}</code>"
        elif expires <= now:
            state = _badge("expired", "bad")
        else:
            state = _badge("live", "ok")
        rows.append(
            [
                f"<code>{_t(c['resource'])}</code>",
                _t(c["holder"]),
                _t(c["generation"]),
                _time(c["expires_at"], now),
                state,
                _t(c.get("note") or ""),
            ]
        )
    released = len(all_claims) - len(active)
    body = (
        _table(
            ["Resource", "Holder", "Generation", "Expires", "State", "Note"],
            rows,
            "Claims not released",
        )
        if rows
        else "<p>No claim is held.</p>"
    )
    if released:
        body += f'<p class="muted">{released} released (kept as tombstones).</p>'
    return _section("claims", "Claims", body)


def _task_state(t: dict[str, Any]) -> str:
    if t["status"] == "claimed":
        return _badge("claimed", "info") + f" by {_t(t.get('holder') or '?')}"
    if t["status"] == "blocked":
        return _badge("blocked", "warn") + " on " + ", ".join(_t(w) for w in t["waiting_for"])
    if t["status"] == "ready":
        return _badge("ready", "ok")
    return _badge(t["status"], "muted")


def board(doc: dict[str, Any], now: datetime) -> str:
    tasks = doc["tasks"]
    if not tasks:
        return _section("board", "Board", "<p>No task on the board.</p>")
    headers = ["ID", "Title", "State", "Depends on", "Milestone"]

    def row(t: dict[str, Any]) -> list[str]:
        return [
            f"<code>{_t(t['id'])}</code>",
            _t(t["title"]),
            _task_state(t),
            ", ".join(_t(d) for d in t.get("depends_on") or []) or "-",
            _t(t.get("milestone") or "-"),
        ]

    out = []
    counts: dict[str, int] = {}
    for t in tasks:
        counts[t["status"]] = counts.get(t["status"], 0) + 1
    summary = ", ".join(f"{n} {_t(k)}" for k, n in sorted(counts.items()))
    out.append(f"<p>{summary}.</p>")
    for p in PRIORITIES:
        open_ = [t for t in tasks if t["priority"] == p and t["status"] != "done"]
        if open_:
            out.append(
                f'<h3 class="prio prio-{p}">{p}</h3>'
                + _table(headers, [row(t) for t in open_], f"{p} tasks not done")
            )
    done = [t for t in tasks if t["status"] == "done"]
    if done:
        out.append(
            f"<details><summary>Done ({len(done)})</summary>"
            + _table(headers, [row(t) for t in done], "Tasks done")
            + "</details>"
        )
    return _section("board", "Board", "".join(out))


def milestones(doc: dict[str, Any]) -> str:
    rows = doc["milestones"]
    if not rows:
        return _section("milestones", "Milestones", "<p>No milestone.</p>")
    out = ['<ul class="milestones">']
    for m in rows:
        steps = "".join(
            f'<li class="{"done" if st.get("done_at") else "todo"}">'
            f'<span aria-hidden="true">{"✓" if st.get("done_at") else "○"}</span> '
            f"{_t(st['name'])}"
            + (
                f' <span class="muted">({_t(st["done_by"])})</span>'
                if st.get("done_by")
                else ' <span class="sr-only">(not done)</span>'
            )
            + "</li>"
            for st in m["steps"]
        )
        out.append(
            f"<li><h3>{_t(m['name'])}</h3><p>{_bar(m['progress'], 120)} "
            f"{_t(m['progress'])}% of {len(m['steps'])} steps</p><ol>{steps}</ol></li>"
        )
    out.append("</ul>")
    return _section("milestones", "Milestones", "".join(out))


def messages(doc: dict[str, Any], now: datetime, live: Live | None = None) -> str:
    threads = doc["messages"]
    if not threads:
        return _section("messages", "Messages", "<p>No message yet.</p>")
    out = ['<ul class="threads">']
    forms = 0
    for th in threads:
        items = []
        for m in th["messages"]:
            body = m["body"]
            more = ""
            if len(body) > BODY_SHOWN:
                more = f' <span class="muted">(… {len(body) - BODY_SHOWN} more characters)</span>'
                body = body[:BODY_SHOWN]
            flag = " " + _badge("unanswered", "warn") if m.get("unanswered") else ""
            readers = []
            if m.get("handled_by"):
                readers.append(f"answered by {_t(m['handled_by'])}")
            if m.get("read_by"):
                readers.append("read by " + ", ".join(_t(r) for r in m["read_by"]))
            if m.get("unread_by"):
                readers.append("unread by " + ", ".join(_t(r) for r in m["unread_by"]))
            if readers:
                flag += f' <span class="muted">({"; ".join(readers)})</span>'
            subject = f'<p class="subject">{_t(m["subject"])}</p>' if m["id"] != th["id"] else ""
            answer = ""
            if live is not None and m["to"] == "human" and m.get("unanswered"):
                forms += 1
                answer = (
                    '<form method="post" action="messages" class="answer">'
                    f'<input type="hidden" name="csrf" value="{_t(live.csrf)}">'
                    f'<input type="hidden" name="reply_to" value="{_t(m["id"])}">'
                    f'<label for="answer-{forms}">Answer {_t(m["sender"])} as you</label>'
                    f'<textarea id="answer-{forms}" name="body" rows="2" required '
                    'maxlength="4000"></textarea>'
                    '<button type="submit" class="send">Send answer</button></form>'
                )
            items.append(
                f'<li><p class="meta"><strong>{_t(m["sender"])}</strong> → {_t(m["to"])} · '
                f"{_time(m['sent_at'], now)}{flag}</p>{subject}"
                f'<div class="body">{_t(body)}{more}</div>{answer}</li>'
            )
        replies = len(th["messages"]) - 1
        count = f' <span class="count">{replies} repl{"y" if replies == 1 else "ies"}</span>'
        out.append(
            f'<li class="thread"><h3>{_t(th["subject"])}{count if replies else ""}</h3>'
            f"<ol>{''.join(items)}</ol></li>"
        )
    out.append("</ul>")
    return _section("messages", "Messages", "".join(out))


def metrics(doc: dict[str, Any], now: datetime) -> str:
    m = doc.get("metrics")
    day = doc.get("day")
    if not m or not day:
        return _section("metrics", "Metrics", "<p>No history yet.</p>")
    msg = m["messages"]
    up = m["heartbeat_uptime"]

    def secs(v: float | None) -> str:
        return "-" if v is None else human_delta(timedelta(seconds=v))

    figures = [
        ("Work collisions", f"{m['work_collisions']} (target 0)"),
        ("Collisions prevented", str(m["collisions_prevented"])),
        ("Claims granted", str(m["claims_granted"])),
        ("Takeovers after expiry", str(m["takeovers_after_expiry"])),
        (
            "Reply time",
            f"median {secs(msg['response_seconds_median'])}, "
            f"p95 {secs(msg['response_seconds_p95'])} (target under 5m)",
        ),
        (
            "Heartbeat uptime",
            "mean "
            + ("-" if up["mean"] is None else f"{up['mean'] * 100:.1f}%")
            + " (target over 90%)",
        ),
        ("Messages", f"{msg['sent']} sent, {msg['direct']} direct, {msg['answered']} answered"),
    ]
    dl = "".join(f"<div><dt>{k}</dt><dd>{_t(v)}</dd></div>" for k, v in figures)
    charts = [
        uptime_chart(up),
        reply_chart(day["replies"]),
        day_chart(day),
    ]
    body = f'<dl class="figures">{dl}</dl><div class="charts">{"".join(charts)}</div>'
    return _section("metrics", "Metrics", body)


def log(doc: dict[str, Any], now: datetime) -> str:
    entries = doc["log"]
    if not entries:
        return _section("log", "Audit log", "<p>No commit yet.</p>")
    rows = [
        [
            _time(e["time"], now),
            _t(e.get("session") or "-"),
            _t(e.get("op") or "-"),
            _t(e.get("resource") or "-"),
            _t(e.get("subject") or ""),
            f'<code class="commit" title="{_t(e["commit"])}">{_t(e["commit"][:10])}</code>',
        ]
        for e in entries
    ]
    body = (
        f"<p>The newest {len(entries)} commits of the branch (<code>gitcoord log</code>; "
        "every line is a commit).</p>"
        + _table(
            ["Time", "Session", "Operation", "Resource", "Subject", "Commit"], rows, "Audit log"
        )
    )
    return _section("log", "Audit log", body)


# --- charts: inline SVG, drawn here ------------------------------------------------------

INK = "#1a1a1a"
BLUE = "#1d4ed8"
ORANGE = "#b45309"
RED = "#b91c1c"
GRID = "#8a8a8a"


def _figure(
    fid: str, title: str, desc: str, svg_body: str, width: int, height: int, extra: str = ""
) -> str:
    return (
        f'<figure class="chart"><svg viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" role="img" aria-labelledby="{fid}-t {fid}-d">'
        f'<title id="{fid}-t">{_t(title)}</title><desc id="{fid}-d">{_t(desc)}</desc>'
        f"{svg_body}</svg>{extra}<figcaption>{_t(title)}</figcaption></figure>"
    )


def uptime_chart(up: dict[str, Any]) -> str:
    rows = list(up["sessions"].items())
    if not rows:
        return '<p class="muted">No session: no heartbeat uptime.</p>'
    label_w, bar_w, row_h = 130, 230, 24
    width, height = label_w + bar_w + 50, 26 + row_h * len(rows)
    parts = []
    for i, (sid, v) in enumerate(rows):
        y = 18 + i * row_h
        value = v["uptime"]
        w = 0.0 if value is None else value * bar_w
        shown = "-" if value is None else f"{value * 100:.0f}%"
        color = BLUE if value is None or value >= 0.9 else ORANGE
        name = sid if len(sid) <= 14 else sid[:13] + "…"
        parts.append(
            f'<text x="{label_w - 6}" y="{y + 13}" text-anchor="end" font-size="13" '
            f'fill="{INK}">#{_t(v["number"])} {_t(name)}</text>'
            f'<rect x="{label_w}" y="{y + 2}" width="{w:.1f}" height="14" fill="{color}"/>'
            f'<text x="{label_w + w + 4:.1f}" y="{y + 13}" font-size="13" fill="{INK}">'
            f"{shown}</text>"
        )
    target = label_w + 0.9 * bar_w
    parts.append(
        f'<line x1="{target:.1f}" y1="12" x2="{target:.1f}" y2="{height - 4}" '
        f'stroke="{RED}" stroke-dasharray="4 3"/>'
        f'<text x="{target:.1f}" y="10" font-size="12" text-anchor="middle" fill="{RED}">'
        "90%</text>"
    )
    desc = "; ".join(
        f"{sid}: " + ("no data" if v["uptime"] is None else f"{v['uptime'] * 100:.1f}%")
        for sid, v in rows
    )
    return _figure(
        "chart-uptime",
        "Heartbeat uptime per session since it registered (target over 90%)",
        desc,
        "".join(parts),
        width,
        height,
    )


def reply_chart(replies: list[dict[str, Any]]) -> str:
    if not replies:
        return '<p class="muted">No direct message was answered in the last 24 hours.</p>'
    shown = replies[-40:]
    width, height, left, bottom = 420, 190, 40, 24
    top = 14
    scale_max = max(6.0, max(r["seconds"] for r in shown) / 60 * 1.1)
    plot_h = height - top - bottom
    step = (width - left - 8) / len(shown)
    parts = [
        f'<line x1="{left}" y1="{height - bottom}" x2="{width - 4}" y2="{height - bottom}" '
        f'stroke="{GRID}"/>'
    ]
    for tick in _ticks(scale_max):
        y = height - bottom - tick / scale_max * plot_h
        parts.append(
            f'<text x="{left - 4}" y="{y + 4:.1f}" font-size="12" text-anchor="end" '
            f'fill="{INK}">{tick:g}m</text>'
        )
    for i, r in enumerate(shown):
        minutes = r["seconds"] / 60
        h = max(2.0, minutes / scale_max * plot_h)  # an instant reply still shows
        x = left + i * step + step * 0.15
        color = BLUE if minutes < 5 else ORANGE
        parts.append(
            f'<rect x="{x:.1f}" y="{height - bottom - h:.1f}" width="{max(1.0, step * 0.7):.1f}" '
            f'height="{h:.1f}" fill="{color}"/>'
        )
    y5 = height - bottom - 5 / scale_max * plot_h
    parts.append(
        f'<line x1="{left}" y1="{y5:.1f}" x2="{width - 4}" y2="{y5:.1f}" stroke="{RED}" '
        f'stroke-dasharray="4 3"/><text x="{width - 6}" y="{y5 - 3:.1f}" font-size="12" '
        f'text-anchor="end" fill="{RED}">5m target</text>'
        f'<text x="{left}" y="{height - 6}" font-size="12" fill="{INK}">oldest</text>'
        f'<text x="{width - 6}" y="{height - 6}" font-size="12" text-anchor="end" '
        f'fill="{INK}">newest</text>'
    )
    over = sum(1 for r in shown if r["seconds"] >= 300)
    desc = (
        f"{len(shown)} replies in the last 24 hours, {over} took 5 minutes or more; "
        + ", ".join(f"{r['by']} {human_delta(timedelta(seconds=r['seconds']))}" for r in shown)
    )
    return _figure(
        "chart-replies",
        "Reply time of each direct message answered today (target under 5 minutes)",
        desc,
        "".join(parts),
        width,
        height,
    )


def day_chart(day: dict[str, Any]) -> str:
    hours = day["hours"]
    claims, prevented, doubles = (
        day["claims_granted"],
        day["collisions_prevented"],
        day["work_collisions"],
    )
    width, height, left, bottom, top = 420, 190, 30, 28, 14
    plot_h = height - top - bottom
    peak = max([1, *claims, *prevented, *doubles])
    scale_max = max(4, peak)
    step = (width - left - 8) / len(hours)
    parts = [
        f'<line x1="{left}" y1="{height - bottom}" x2="{width - 4}" y2="{height - bottom}" '
        f'stroke="{GRID}"/>'
    ]
    for tick in _ticks(scale_max):
        y = height - bottom - tick / scale_max * plot_h
        parts.append(
            f'<text x="{left - 4}" y="{y + 4:.1f}" font-size="12" text-anchor="end" '
            f'fill="{INK}">{tick:g}</text>'
        )
    for i, hour in enumerate(hours):
        x = left + i * step
        for j, (values, color) in enumerate(((claims, BLUE), (prevented, ORANGE), (doubles, RED))):
            v = values[i]
            if not v:
                continue
            h = v / scale_max * plot_h
            parts.append(
                f'<rect x="{x + step * (0.1 + 0.27 * j):.1f}" y="{height - bottom - h:.1f}" '
                f'width="{step * 0.25:.1f}" height="{h:.1f}" fill="{color}"/>'
            )
        if i % 3 == 0:
            parts.append(
                f'<text x="{x + step / 2:.1f}" y="{height - bottom + 14}" font-size="12" '
                f'text-anchor="middle" fill="{INK}">{_t(hour[11:13])}h</text>'
            )
    desc = (
        f"Last 24 hours (UTC), per hour: {sum(claims)} claims granted, {sum(prevented)} "
        f"collisions prevented, {sum(doubles)} work collisions."
    )
    legend = (
        '<ul class="legend">'
        f'<li><svg width="12" height="12" aria-hidden="true"><rect width="12" height="12" '
        f'fill="{BLUE}"/></svg> claims granted ({sum(claims)})</li>'
        f'<li><svg width="12" height="12" aria-hidden="true"><rect width="12" height="12" '
        f'fill="{ORANGE}"/></svg> collisions prevented ({sum(prevented)})</li>'
        f'<li><svg width="12" height="12" aria-hidden="true"><rect width="12" height="12" '
        f'fill="{RED}"/></svg> work collisions ({sum(doubles)})</li></ul>'
    )
    return _figure(
        "chart-day",
        "Claims and collisions per hour over the last 24 hours (UTC)",
        desc,
        "".join(parts),
        width,
        height,
        legend,
    )


def _ticks(top: float) -> list[float]:
    for step in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000):
        if top / step <= 5:
            return [step * k for k in range(1, int(top // step) + 1)]
    return [top]


def _ranges(numbers: list[int]) -> str:
    parts: list[str] = []
    start = prev = numbers[0]
    for n in [*numbers[1:], None]:
        if n is not None and n == prev + 1:
            prev = n
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if n is not None:
            start = prev = n
    return ", ".join(parts)


# --- the page ------------------------------------------------------------------------------

CSS = """
:root{--fg:#1a1a1a;--muted:#4d4d4d;--bg:#fff;--line:#c9ced6;--accent:#1d4ed8;--card:#f5f7fa}
*{box-sizing:border-box}
html{-webkit-text-size-adjust:100%;text-size-adjust:100%}
body{margin:0;font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
color:var(--fg);background:var(--bg);overflow-wrap:break-word}
td code,.meta code,.body,.note{overflow-wrap:anywhere}
.scroll{overflow-x:auto}
a{color:var(--accent)}
:focus-visible{outline:3px solid #b45309;outline-offset:2px}
.wrap,main,footer{max-width:76rem;margin:0 auto;padding:0 1rem}
header{background:#0f172a;color:#f8fafc;padding:.75rem 0}
header a{color:#bfdbfe}
header h1{font-size:1.35rem;margin:.2rem 0}
header p{margin:.2rem 0}
header nav ul{list-style:none;margin:.4rem 0 0;padding:0;display:flex;flex-wrap:wrap;
gap:.25rem .9rem}
header nav a{display:inline-block;padding:.35rem 0}
.skip{position:absolute;left:-9999px;top:.5rem}
.skip:focus{left:.5rem;background:#fff;color:#000;padding:.5rem;z-index:10}
main{padding-top:.5rem;padding-bottom:2rem}
section{margin:1.5rem 0}
h2{font-size:1.25rem;border-bottom:2px solid var(--line);padding-bottom:.2rem;margin:0 0 .6rem}
h3{font-size:1.05rem;margin:.9rem 0 .3rem}
.count{font-size:.9rem;font-weight:400;color:var(--muted)}
.muted{color:var(--muted)}
code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.92em}
table{border-collapse:collapse;width:100%;margin:.3rem 0}
th,td{text-align:left;vertical-align:top;padding:.35rem .5rem;border-bottom:1px solid var(--line)}
th{background:var(--card);font-weight:600;overflow-wrap:normal}
code.commit{white-space:nowrap}
.badge{display:inline-block;padding:0 .4rem;border-radius:.3rem;font-size:.85rem;
font-weight:600;border:1px solid}
.badge.ok{color:#14532d;background:#ecfdf3;border-color:#14532d}
.badge.warn{color:#7a3300;background:#fff4e5;border-color:#7a3300}
.badge.bad{color:#fff;background:#b91c1c;border-color:#b91c1c}
.badge.info{color:#1e3a8a;background:#eff6ff;border-color:#1e3a8a}
.badge.muted{color:#333;background:#f1f1f1;border-color:#666}
.notice{padding:.6rem .8rem;border-radius:.4rem;margin:1rem 0;border:2px solid}
.notice.ok{background:#ecfdf3;color:#14532d;border-color:#14532d}
.notice.error{background:#fef2f2;color:#7f1d1d;border-color:#b91c1c}
.health{padding:.5rem 1rem;border-radius:.4rem;margin:0;border:1px solid}
.health p{margin:.2rem 0}
.health ul{margin:.2rem 0;padding-left:1.2rem}
.health.ok{background:#ecfdf3;color:#14532d}
.health.warn{background:#fff4e5;color:#5c2600}
.health.warn a{color:#5c2600;font-weight:600}
ol.queue,ul.threads,ul.milestones{list-style:none;padding:0;margin:0}
li.request,li.thread{background:var(--card);border:1px solid var(--line);border-radius:.5rem;
padding:.6rem .8rem;margin:.6rem 0}
li.request h3,li.thread h3{margin:0 0 .2rem}
.meta{margin:.1rem 0;color:var(--muted);font-size:.95rem}
.note{margin:.3rem 0;white-space:pre-wrap}
form.decide{display:flex;flex-wrap:wrap;align-items:center;gap:.5rem;margin:.5rem 0 .2rem}
form.decide label{font-size:.95rem}
form.batch{margin:.3rem 0 .6rem}
input[type=text]{font:inherit;padding:.45rem .5rem;border:1px solid #5a5a5a;border-radius:.3rem;
min-width:0;flex:1 1 12rem;max-width:100%}
input[type=checkbox]{width:1.25rem;height:1.25rem;vertical-align:middle}
button{font:inherit;font-weight:600;padding:.45rem 1rem;min-height:2.75rem;border-radius:.35rem;
border:2px solid;cursor:pointer}
button.approve{background:#14532d;border-color:#14532d;color:#fff}
button.reject{background:#fff;border-color:#b91c1c;color:#991b1b}
button.send{background:#1e3a8a;border-color:#1e3a8a;color:#fff}
form.answer{display:flex;flex-direction:column;gap:.3rem;margin:.5rem 0;max-width:40rem}
form.answer button{align-self:flex-start}
textarea{font:inherit;padding:.45rem .5rem;border:1px solid #5a5a5a;border-radius:.3rem;
width:100%}
ul.threads ol{list-style:none;margin:0;padding:0}
ul.threads ol li{border-left:3px solid var(--line);padding:.2rem 0 .2rem .7rem;margin:.4rem 0}
ul.threads ol li+li{margin-left:.8rem}
.subject{margin:.1rem 0;font-weight:600}
.body{white-space:pre-wrap;margin:.2rem 0}
ul.milestones ol{list-style:none;padding-left:.5rem;margin:.2rem 0}
ul.milestones li.done{color:#14532d}
.figures{display:grid;grid-template-columns:repeat(auto-fit,minmax(14rem,1fr));gap:.5rem;margin:0}
.figures div{background:var(--card);border:1px solid var(--line);border-radius:.4rem;
padding:.4rem .6rem}
.figures dt{font-size:.9rem;color:var(--muted)}
.figures dd{margin:0;font-weight:600}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(100%,22rem),1fr));gap:1.5rem;
margin-top:1rem}
figure.chart{margin:0}
figure.chart>svg{width:100%;height:auto;display:block}
figcaption{font-size:.9rem;color:var(--muted)}
ul.legend{list-style:none;padding:0;margin:.2rem 0;display:flex;flex-wrap:wrap;gap:.2rem 1rem;
font-size:.9rem}
svg.bar{vertical-align:middle}
details{margin:.5rem 0}
summary{cursor:pointer;padding:.3rem 0;font-weight:600}
footer{color:var(--muted);font-size:.9rem;padding-bottom:2rem}
.sr-only{position:absolute;width:1px;height:1px;padding:0;margin:-1px;overflow:hidden;
clip:rect(0,0,0,0);white-space:nowrap;border:0}
@media (max-width:48rem){
table.cards thead{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0,0,0,0)}
table.cards,table.cards tbody,table.cards tr,table.cards td{display:block;width:100%}
table.cards tr{border:1px solid var(--line);border-radius:.4rem;margin:.5rem 0;padding:.3rem .6rem;
background:var(--bg)}
table.cards td{border:0;padding:.1rem 0}
table.cards td::before{content:attr(data-label) ": ";font-weight:600;color:var(--muted)}
}
"""

SCRIPT = """
(function () {
  var say = document.getElementById('live-status');
  if (!window.EventSource || !window.fetch || !window.DOMParser) return;
  var running = false, again = false, held = false;
  function busy(el) {
    var a = document.activeElement;
    if (a && a !== document.body && el.contains(a)) return true;
    var fields = el.querySelectorAll('input[type=text], textarea');
    for (var i = 0; i < fields.length; i++) if (fields[i].value) return true;
    return el.querySelectorAll('input[type=checkbox]:checked').length > 0;
  }
  function reload() {
    if (running) { again = true; return; }
    running = true;
    fetch('sections', {credentials: 'same-origin', cache: 'no-store'})
      .then(function (r) { if (!r.ok) throw new Error(r.status); return r.text(); })
      .then(function (text) {
        var doc = new DOMParser().parseFromString(text, 'text/html');
        held = false;
        doc.querySelectorAll('[data-live]').forEach(function (fresh) {
          var old = document.getElementById(fresh.id);
          if (!old) return;
          if (busy(old)) { held = true; return; }
          old.replaceWith(document.importNode(fresh, true));
        });
        say.textContent = held ? 'Updates held while you use a form.' : '';
      })
      .catch(function () { say.textContent = 'Live update failed; use Refresh.'; })
      .then(function () {
        running = false;
        if (again) { again = false; reload(); }
      });
  }
  var events = new EventSource('events?v=' + encodeURIComponent(document.body.dataset.version));
  events.addEventListener('tip', reload);
  events.onerror = function () { say.textContent = 'Live updates reconnecting…'; };
  events.onopen = function () {
    if (say.textContent.indexOf('reconnecting') >= 0) say.textContent = '';
  };
  document.addEventListener('focusout', function () { if (held) setTimeout(reload, 300); });
  setInterval(reload, 60000);
})();
"""


def _tipline(doc: dict[str, Any], now: datetime, live: Live | None) -> str:
    tip = doc.get("tip")
    tip_html = f"<code>{_t(tip[:10])}</code>" if tip else "no commit yet"
    problem = ""
    if live is not None and live.problem:
        problem = f' · <strong class="badge warn">could not refresh: {_t(live.problem)}</strong>'
    refresh = ' · <a href="./">Refresh</a>' if live is not None else ""
    return (
        f'<p id="tipline" data-live>{_t(doc["where"])} · tip {tip_html} · read '
        f"{_time(doc['generated_at'], now)} ({_t(doc['generated_at'])}){problem}{refresh}</p>"
    )


def _nav(doc: dict[str, Any]) -> str:
    pending = sum(1 for a in doc["approvals"] if a.get("status") == "pending")
    status = doc["status"]
    links = [
        ("health", "Health"),
        ("approvals", f"Approvals ({pending})"),
        ("sessions", f"Sessions ({status.get('registered', 0)})"),
        ("claims", "Claims"),
        ("board", "Board"),
        ("milestones", "Milestones"),
        ("messages", "Messages"),
        ("metrics", "Metrics"),
        ("log", "Audit log"),
    ]
    items = "".join(f'<li><a href="#{k}">{v}</a></li>' for k, v in links)
    return f'<nav id="nav" data-live aria-label="Sections"><ul>{items}</ul></nav>'


def _main_sections(doc: dict[str, Any], now: datetime, live: Live | None) -> str:
    return "".join(
        [
            health(doc, now),
            approvals(doc, now, live),
            sessions(doc, now),
            claims(doc, now),
            board(doc, now),
            milestones(doc),
            messages(doc, now, live),
            metrics(doc, now),
            log(doc, now),
        ]
    )


def sections(doc: dict[str, Any], now: datetime, live: Live | None = None) -> str:
    """The parts of the page that change: what the live page's script swaps in."""
    return _tipline(doc, now, live) + _nav(doc) + _main_sections(doc, now, live)


def fragment(doc: dict[str, Any], now: datetime, live: Live) -> str:
    """The changing parts alone, as a document the script parses."""
    return f'<!doctype html><html lang="en"><body>{sections(doc, now, live)}</body></html>'


def page(
    doc: dict[str, Any],
    now: datetime,
    *,
    live: Live | None = None,
    notice: Notice | None = None,
) -> str:
    """The whole page: live (forms, the script; its CSP comes in the headers) or static
    (no forms, no script, a CSP meta element that forbids everything but its styles)."""
    nonce = f' nonce="{_t(live.nonce)}"' if live is not None else ""
    csp = (
        ""
        if live is not None
        else f'<meta http-equiv="Content-Security-Policy" content="{STATIC_CSP}">'
    )
    title = "gitcoord · daily review" if live is not None else "gitcoord · state"
    shown = ""
    if notice is not None:
        role = "alert" if notice.error else "status"
        kind = "error" if notice.error else "ok"
        shown = f'<div class="notice {kind}" role="{role}">{_t(notice.text)}</div>'
    status_line = (
        '<p id="live-status" class="live-status" role="status" aria-live="polite"></p>'
        if live is not None
        else ""
    )
    script = f"<script{nonce}>{SCRIPT}</script>" if live is not None else ""
    version = f' data-version="{live.version}"' if live is not None else ""
    how = (
        "Live: updates when the branch moves. Approvals here are yours, signed as you, "
        "exactly as <code>gitcoord approval</code> on the command line."
        if live is not None
        else "A snapshot written by <code>gitcoord state --html</code>."
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'{csp}<meta name="referrer" content="{"same-origin" if live else "no-referrer"}">'
        f"<title>{_t(title)} · {_t(doc['where'])}</title>"
        f"<style{nonce}>{CSS}</style></head><body{version}>"
        '<a class="skip" href="#main">Skip to content</a>'
        f'<header><div class="wrap"><h1>gitcoord — {"daily review" if live else "state"}</h1>'
        f"{_tipline(doc, now, live)}{_nav(doc)}</div></header>"
        f'<main id="main">{shown}{status_line}{_main_sections(doc, now, live)}</main>'
        f"<footer><p>{how} gitcoord {_t(__version__)}.</p></footer>"
        f"{script}</body></html>"
    )
