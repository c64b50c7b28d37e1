"""Text for people: the dashboard and one-line results. JSON output never comes from here."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from .clock import human_delta


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def table(rows: list[list[str]], headers: list[str]) -> str:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    out = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join("  " + line for line in out)


def status(data: dict[str, Any], now: datetime) -> str:
    if not data["initialised"]:
        return f"gitcoord · {data['where']} · not initialised: run `gitcoord init`"
    lines = [
        f"gitcoord · {data['where']} · tip {str(data['tip'])[:10]} · "
        f"{data['registered']}/{data['slots']} sessions registered",
    ]
    free = data["free_numbers"]
    if free:
        lines.append(f"free numbers: {_ranges(free)}")
    lines.append("")
    lines.append("SESSIONS")
    if data["sessions"]:
        rows = [
            [
                str(s["number"]),
                s["id"],
                _short(s["role"], 40),
                _short(s["goal"], 40),
                human_delta(now - _ts(s["registered_at"])) + " ago",
            ]
            for s in data["sessions"]
        ]
        lines.append(table(rows, ["#", "SESSION", "ROLE", "GOAL", "REGISTERED"]))
    else:
        lines.append("  (none registered yet: `gitcoord register --role ROLE --goal GOAL`)")
    lines.append("")
    lines.append("CLAIMS")
    active = [c for c in data["claims"] if c["status"] != "released"]
    if active:
        rows = []
        for c in active:
            expires = _ts(c["expires_at"])
            if c["status"] == "live":
                when = "in " + human_delta(expires - now)
            else:
                when = "EXPIRED " + human_delta(now - expires) + " ago"
            rows.append(
                [
                    c["resource"],
                    c["holder"],
                    str(c["generation"]),
                    when,
                    _short(c.get("note", ""), 30),
                ]
            )
        lines.append(table(rows, ["RESOURCE", "HOLDER", "GEN", "EXPIRES", "NOTE"]))
    else:
        lines.append("  (no live claims)")
    released = len(data["claims"]) - len(active)
    if released:
        lines.append(f"  ({released} released)")
    if data["problems"]:
        lines.append("")
        lines.append(f"PROBLEMS ({len(data['problems'])}): run `gitcoord validate`")
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
