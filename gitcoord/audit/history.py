"""The audit trail: the branch's history, read back from commit subjects and trailers.

Every transaction is one commit whose trailers say what happened
(`Gitcoord-Op`, `Gitcoord-Session`, `Gitcoord-Resource`, ...). `log` filters
them; `metrics` computes the founding plan's figures from them alone, so the
numbers are as auditable as the history itself.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from ..clock import iso
from ..gitio import Git

_FORMAT = "%H%x1f%ct%x1f%s%x1f%(trailers:only,unfold)%x1e"


@dataclass(frozen=True)
class Entry:
    commit: str
    time: datetime
    subject: str
    trailers: dict[str, list[str]] = field(default_factory=dict)

    def get(self, key: str) -> str | None:
        values = self.trailers.get(key)
        return values[0] if values else None

    @property
    def op(self) -> str | None:
        return self.get("Gitcoord-Op")

    @property
    def session(self) -> str | None:
        return self.get("Gitcoord-Session")

    @property
    def resource(self) -> str | None:
        return self.get("Gitcoord-Resource")

    def to_json(self) -> dict[str, Any]:
        return {
            "time": iso(self.time),
            "session": self.session,
            "op": self.op,
            "resource": self.resource,
            "commit": self.commit,
            "subject": self.subject,
        }


def entries(
    git: Git, tip: str, since: datetime | None = None, limit: int | None = None
) -> Iterator[Entry]:
    """Commits from `tip` back, newest first (first parent only: the branch's own line);
    at most `limit` (git stops walking there: `log --limit` costs the same on any history)."""
    argv = ["log", "--first-parent", f"--format={_FORMAT}"]
    if since is not None:
        argv.append(f"--since={int(since.timestamp())}")
    if limit is not None:
        argv.append(f"--max-count={limit}")
    argv += [tip, "--"]
    out = git.run(argv).stdout.decode("utf-8", "replace")
    for record in out.split("\x1e"):
        record = record.strip("\n")
        if not record:
            continue
        commit, ct, subject, trailer_text = ([*record.split("\x1f"), "", "", ""])[:4]
        trailers: dict[str, list[str]] = defaultdict(list)
        for line in trailer_text.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                trailers[key.strip()].append(value.strip())
        yield Entry(
            commit,
            datetime.fromtimestamp(int(ct), timezone.utc),
            subject,
            dict(trailers),
        )


def matches(
    entry: Entry,
    *,
    session: str | None = None,
    resource: str | None = None,
    op: str | None = None,
) -> bool:
    if session is not None and entry.session != session:
        return False
    if resource is not None:
        res = entry.resource or ""
        # `task` matches every task/...; `task/x` matches itself (and anything below it,
        # which only path-like names have).
        if res != resource and not res.startswith(resource.rstrip("/") + "/"):
            return False
    return op is None or entry.op == op


# --- metrics -------------------------------------------------------------------------


