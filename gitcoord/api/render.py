"""Text for people: the dashboard and one-line results. JSON output never comes from here."""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta
from typing import Any

from ..clock import human_delta
from ..domain import health
from ..domain.untrusted import cell


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _short(text: str, width: int) -> str:
    width = max(1, width)
    return text if len(text) <= width else text[: width - 1] + "…"


def fit(rows: list[list[str]], headers: list[str], flexible: dict[int, int], width: int) -> None:
    """Cut the `flexible` columns of `rows` (index -> its least width) in place so that
    `table(rows, headers)` fits in `width` characters: the others keep their words, and
    the room left is shared out, a narrow column keeping all it needs and the wide ones
    the same width each."""
    if not rows:
        return
    rows[:] = [[cell(c) for c in r] for r in rows]
    natural = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    fixed = sum(w for i, w in enumerate(natural) if i not in flexible)
    room = width - 2 - 2 * (len(headers) - 1) - fixed  # the indent, the gaps
    wanted = {i: natural[i] for i in flexible}
    if sum(wanted.values()) <= room:
        return
    given: dict[int, int] = {}
    left = dict(wanted)
    while left:  # water-filling: whoever needs less than an equal share gets it all
        share = max(0, room - sum(given.values())) // len(left)
        small = {i: w for i, w in left.items() if w <= share}
        if not small:
            for i in left:
                given[i] = max(flexible[i], share)
            break
        given.update(small)
        for i in small:
            del left[i]
    for r in rows:
        for i, w in given.items():
            r[i] = _short(r[i], max(w, len(headers[i])))


def terminal_width() -> int:
    """The terminal's width ($COLUMNS first; 80 when the output is not a terminal)."""
    return shutil.get_terminal_size().columns


def table(rows: list[list[str]], headers: list[str]) -> str:
    rows = [[cell(c) for c in r] for r in rows]  # a newline in a note would forge a row
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    out = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join("  " + line for line in out)


def status(data: dict[str, Any], now: datetime, width: int | None = None) -> str:
    width = terminal_width() if width is None else width
    if not data["initialised"]:
        if data["problems"]:
            shown = "\n".join(
                f"  {p['path']}: {p['message']} [{p['rule']}]" for p in data["problems"]
            )
            return (
                f"gitcoord · {data['where']} · the branch exists but its config is missing or "
                f"unreadable\n\nPROBLEMS ({len(data['problems'])}): run `gitcoord validate`"
                f"\n{shown}"
            )
        return f"gitcoord · {data['where']} · not initialised: run `gitcoord init`"
    lines = [
        f"gitcoord · {data['where']} · tip {str(data['tip'])[:10]} · "
        f"{data['registered']}/{data['slots']} sessions registered",
    ]
    free = data["free_numbers"]
    if free:
        lines.append(f"free numbers: {_ranges(free)}")
    act = data.get("activation")
    if act and act["active"]:
        lines.append("registry: active")
    elif act and (act["approval"] != "not requested" or act["registered"] >= act["slots"]):
        lines.append(
            f"pending activation: {act['registered']}/{act['slots']} registered, "
            f"approval {act['approval']}"
        )
    if data.get("approvals_pending"):
        lines.append(f"approvals pending: {', '.join(data['approvals_pending'])}")
    doc = data.get("health")
    if doc:
        lines.append(cell(doc["line"]))
        detail = health.details(doc)
        if detail:
            lines += ["", "HEALTH", *("  " + cell(d) for d in detail)]
    lines.append("")
    lines.append("SESSIONS")
    if data["sessions"]:
        rows = [
            [str(s["number"]), s["id"], s["role"], s["goal"], _seen(s, now), _doing(s)]
            for s in data["sessions"]
        ]
        headers = ["#", "SESSION", "ROLE", "GOAL", "LAST SEEN", "DOING"]
        fit(rows, headers, {2: 12, 3: 12, 5: 12}, width)
        lines.append(table(rows, headers))
    else:
        lines.append("  (none registered yet: `gitcoord register --role ROLE --goal GOAL`)")
    if data.get("vacant"):
        lines.append("")
        lines.append(f"VACANT ({data.get('template')}: `gitcoord register --number N` takes one)")
        rows = [
            [str(v["number"]), _short(v["role"], 60), v.get("session") or ""]
            for v in data["vacant"]
        ]
        lines.append(table(rows, ["#", "ROLE", "SUGGESTED SESSION"]))
    lines.append("")
    lines.append("CLAIMS")
    active = [c for c in data["claims"] if c["status"] != "released"]
    if active:
        rows = []
        for c in active:
            expires = _ts(c["expires_at"])
            if c["status"] == "live":
                when = "in " + human_delta(expires - now)
            elif c["status"] == "pending":
                when = f"PENDING approval {c.get('approval')}"
            else:
                when = "EXPIRED " + human_delta(now - expires) + " ago"
            holder = c["holder"]
            if c.get("holder_stale") and c["status"] in ("live", "pending"):
                holder += " STALE"  # a live claim nobody is working on: see HEALTH
            rows.append([c["resource"], holder, str(c["generation"]), when, c.get("note", "")])
        headers = ["RESOURCE", "HOLDER", "GEN", "EXPIRES", "NOTE"]
        fit(rows, headers, {0: 16, 4: 8}, width)
        lines.append(table(rows, headers))
    else:
        lines.append("  (no live claims)")
    released = len(data["claims"]) - len(active)
    if released:
        lines.append(f"  ({released} released)")
    if data.get("tasks"):
        counts = data["tasks"]
        lines.append("")
        lines.append(
            "TASKS  "
            + ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
            + "  (`gitcoord task list`, `gitcoord next --claim`)"
        )
    if data.get("milestones"):
        lines.append("")
        lines.append("MILESTONES")
        for m in data["milestones"]:
            tasks = f" and {m['tasks_total']} task(s)" if m.get("tasks_total") else ""
            lines.append(f"  {m['name']}: {m['progress']}% of {m['steps']} steps{tasks}")
    if data["problems"]:
        lines.append("")
        lines.append(f"PROBLEMS ({len(data['problems'])}): run `gitcoord validate`")
    return "\n".join(lines)


def _seen(s: dict[str, Any], now: datetime) -> str:
    age = human_delta(now - _ts(s["last_seen"])) + " ago"
    return f"{age} STALE" if s["stale"] else age


def _doing(s: dict[str, Any]) -> str:
    hb = s.get("heartbeat")
    if not hb:
        return "-"
    return f"{hb['action']} {hb['target']} ({hb['phase']}) {hb['progress']}%"


def message(m: dict[str, Any]) -> str:
    head = f"[{m['id']}] {m['sender']} -> {m['to']}: {m['subject']}"
    if not m.get("read", False):
        head = "* " + head
    lines = [head, f"  sent {m['sent_at']}"]
    if m.get("in_reply_to"):
        orig = m["in_reply_to"]
        what = f"{orig.get('sender', '?')}: {orig.get('subject', '(not found)')}"
        lines.append(f"  re: [{orig['id']}] {what}")
    lines += ["  " + ln for ln in m["body"].splitlines()] or ["  (empty)"]
    return "\n".join(lines)


def inbox(data: dict[str, Any]) -> str:
    msgs = data["messages"]
    decisions = data.get("decisions") or []
    notices = data.get("notices") or []
    who = data["session"] or f"{data.get('person')} (the humans' mailbox)"
    if not msgs and not decisions and not notices:
        return f"no unread messages for {who}"
    out = [decision(d) for d in decisions] + [notice(n) for n in notices]
    for m in msgs:
        text = message(m)
        if data["session"] is None:
            handled = m.get("handled_by")
            text += "\n" + (f"handled: answered by {cell(handled)}" if handled else "open")
        out.append(text)
    tail = f"{data['unread']} unread" if data["session"] else f"{data['unread']} open"
    if data["marked_read"] and data.get("mark_held"):
        tail += ", now marked read (the mark rides this clone's next push)"
    elif data["marked_read"]:
        tail += f", now marked read (commit {str(data['commit'])[:10]})"
    return "\n\n".join(out) + "\n\n" + tail


def decision(d: dict[str, Any]) -> str:
    """What became of one of the session's approval requests."""
    status = d["status"]
    head = f"[{d['id']}] your request was {status.upper()}"
    if d.get("decided_by"):
        head += f" by {cell(d['decided_by'])}"
    lines = [head, "  " + cell(d["subject"])]
    if d.get("reason"):
        lines.append("  reason: " + cell(d["reason"]))
    if status == "lapsed":
        lines.append(f"  nobody decided before {d.get('lapses_at')}: the claim is free again")
    return "\n".join(lines)


def notice(n: dict[str, Any]) -> str:
    """A claim that changed hands towards or away from the session."""
    if n["kind"] == "handoff":
        head = f"[handoff] {cell(n['from'])} handed you {cell(n['resource'])}"
        tail = f"  yours until {n['expires_at']} (generation {n['generation']})"
    else:
        head = (
            f"[takeover] {cell(n['by'])} took over {cell(n['resource'])} after your lease expired"
        )
        tail = f"  its holder since {n['at']} (generation {n['generation']}): stop work on it"
    lines = [head, tail]
    if n.get("note"):
        lines.append("  note: " + cell(n["note"]))
    return "\n".join(lines)


def log(entries: list[dict[str, Any]]) -> str:
    if not entries:
        return "(no matching operations)"
    rows = [
        [e["time"], e["session"] or "-", e["op"] or "-", e["resource"] or "-", e["commit"][:10]]
        for e in entries
    ]
    return table(rows, ["TIME", "SESSION", "OP", "RESOURCE", "COMMIT"])


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _secs(value: float | None) -> str:
    return "-" if value is None else human_delta(timedelta(seconds=value))


def _target(value: bool | None) -> str:
    return "n/a" if value is None else ("met" if value else "MISSED")


def _figures(f: dict[str, Any]) -> list[str]:
    """The figures of one span (all time, a period, a day), one line each."""
    msg = f["messages"]
    up = f["heartbeat_uptime"]
    targets = f["targets"]
    share = msg["within_target_share"]
    within = "-" if share is None else f"{share * 100:.1f}%"
    after = human_delta(timedelta(seconds=msg["target_seconds"]))
    waiting = f", {msg['waiting']} waiting (under {after})" if msg["waiting"] else ""
    return [
        f"claims granted           {f['claims_granted']}",
        f"work collisions          {f['work_collisions']}  (target 0: "
        f"{_target(targets['zero_work_collisions'])})",
        f"collisions prevented     {f['collisions_prevented']}  (claims refused: held by another)",
        f"takeovers after expiry   {f['takeovers_after_expiry']}",
        f"handoffs                 {f.get('handoffs', 0)}",
        f"messages                 {msg['sent']} sent, {msg['direct']} direct "
        f"({msg['replies']} of them replies)",
        f"answers                  of {msg['asked']} asking: {msg['answered_within_target']} "
        f"answered within {after}, {msg['answered_late']} later, {msg['unanswered']} "
        f"unanswered{waiting}",
        f"reply time               {within} within {after}  (target "
        f"{msg['target_share'] * 100:.0f}% within {after}: "
        f"{_target(targets['response_under_5_min'])}); answered: median "
        f"{_secs(msg['response_seconds_median'])}, p95 {_secs(msg['response_seconds_p95'])}",
        f"heartbeat uptime         mean {_pct(up['mean'])}, lowest {_pct(up['lowest'])}  "
        f"(target > 90% each: {_target(targets['uptime_over_90'])}, "
        f"stale after {up['stale_after_minutes']}m)",
    ]


def metrics(m: dict[str, Any]) -> str:
    now = m["now"]
    fresh = now["sessions"]
    lines = [
        f"NOW  {now['at']}",
        "  " + cell(now["line"]),
        f"  heartbeat now            {fresh['fresh']}/{fresh['present']} sessions fresh "
        f"({_pct(fresh['fresh_share'])})  (target > 90%: {_target(fresh['target_met'])})",
        "",
        f"ALL TIME  since {m['since'] or '-'}",
        f"  sessions registered      {m['registered']}/{m['slots']}  (target all: "
        f"{_target(m['targets']['all_registered'])})",
        *("  " + line for line in _figures(m)),
    ]
    period = m.get("period")
    if period:
        lines += [
            "",
            f"{period['label'].upper()}  {period['from']} to {period['to']}",
            *("  " + line for line in _figures(period)),
        ]
    days = m.get("days") or []
    if len(days) > 1:
        rows = [
            [
                d["day"],
                str(d["claims_granted"]),
                str(d["work_collisions"]),
                str(d["messages"]["direct"]),
                str(d["messages"]["answered_within_target"]),
                str(d["messages"]["unanswered"]),
                _pct(d["messages"]["within_target_share"]),
                _pct(d["heartbeat_uptime"]["mean"]),
            ]
            for d in days
        ]
        headers = [
            "DAY",
            "CLAIMS",
            "COLLISIONS",
            "DIRECT",
            "IN TIME",
            "UNANSWERED",
            "REPLY",
            "UPTIME",
        ]
        lines += ["", "DAYS", table(rows, headers)]
    up = m["heartbeat_uptime"]["sessions"]
    if up:
        span = period["heartbeat_uptime"]["sessions"] if period else {}
        headers = ["#", "SESSION", "BEATS", "UPTIME"]
        if period:
            headers.append("PERIOD")
        headers.append("NOW")
        rows = []
        for sid, v in up.items():
            row = [str(v["number"]), sid, str(v["heartbeats"]), _pct(v["uptime"])]
            if period:
                row.append(_pct(span.get(sid, {}).get("uptime")))
            row.append("fresh" if v.get("fresh_now") else "STALE")
            rows.append(row)
        lines += ["", table(rows, headers)]
    return "\n".join(lines)


def tasks(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "(no tasks: `gitcoord task add TITLE --priority P1`)"
    out = []
    for t in rows:
        status = t["status"]
        if status == "claimed":
            status = f"claimed by {t['holder']}"
        elif status == "blocked":
            status = f"blocked on {', '.join(t['waiting_for'])}"
        out.append(
            [t["id"], t["priority"], _short(t["title"], 50), status, t.get("milestone") or ""]
        )
    return table(out, ["ID", "PRI", "TITLE", "STATUS", "MILESTONE"])


def task(t: dict[str, Any]) -> str:
    lines = [f"{t['id']} [{t['priority']}] {t['title']}", f"  status: {t['status']}"]
    if t.get("holder"):
        lines.append(f"  holder: {t['holder']}")
    if t["depends_on"]:
        lines.append(f"  depends on: {', '.join(t['depends_on'])}")
    if t.get("milestone"):
        lines.append(f"  milestone: {t['milestone']}")
    lines.append(f"  added by {t['created_by']} at {t['created_at']}")
    if t.get("done_at"):
        lines.append(f"  done by {t['done_by']} at {t['done_at']}")
    if t.get("note"):
        lines.append(f"  note: {t['note']}")
    return "\n".join(lines)


def milestones(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "(no milestones: `gitcoord milestone add NAME --step S ...`)"
    out = []
    for m in rows:
        tasks = (
            f" ({m['steps_done']}/{m['steps_total']} steps, "
            f"{m['tasks_done']}/{m['tasks_total']} tasks done)"
            if m.get("tasks_total")
            else ""
        )
        out.append(f"{m['name']}: {m['progress']}%{tasks}")
        for i, st in enumerate(m["steps"], 1):
            mark = "x" if st.get("done_at") else " "
            who = f" ({cell(st['done_by'])})" if st.get("done_by") else ""
            by = f"  [ticked by {cell(st['by'])}]" if st.get("by") else ""
            out.append(f"  [{mark}] {i}. {st['name']}{who}{by}")
    return "\n".join(out)


def approvals(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "(no approval requests waiting)"
    lines = []
    for r in rows:
        waited = human_delta(timedelta(seconds=r.get("waited_seconds", 0)))
        who = r.get("decided_by")
        head = f"{r['id']}  {r['status'].upper()}  {r['kind']}"
        if r.get("gates"):
            head += f" ({r['gates']})"
        head += f"  asked by {r['requested_by']}, waited {waited}"
        if who:
            head += f", decided by {who}"
        lines.append(cell(head))
        lines.append("    " + cell(r["subject"]))
        if r.get("note"):
            lines.append("    note: " + cell(r["note"]))
        if r.get("reason"):
            lines.append("    reason: " + cell(r["reason"]))
        if r.get("lapses_at") and r["status"] == "pending":
            lines.append(f"    lapses at {r['lapses_at']} unless decided")
        if r.get("meaning"):
            lines.append("    no longer means anything: " + cell(r["meaning"]))
    return "\n".join(lines)


def _ranges(numbers: list[int]) -> str:
    parts: list[str] = []
    start = prev = numbers[0]
    tail: list[int | None] = [*numbers[1:], None]
    for n in tail:
        if n is not None and n == prev + 1:
            prev = n
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if n is not None:
            start = prev = n
    return ", ".join(parts)
