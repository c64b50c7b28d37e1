"""The audit trail: the branch's history, read back from commit subjects and trailers.

Every transaction is one commit whose trailers say what happened
(`Gitcoord-Op`, `Gitcoord-Session`, `Gitcoord-Resource`, ...). `log` filters
them; `metrics` computes the founding plan's figures from them alone, so the
numbers are as auditable as the history itself. The verifier (`verify.py`:
pre-receive, `validate --range`) reads pushed commits through the same
`read_commits`, so what it judges a commit by is what the audit trail shows.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from ..clock import iso
from ..errors import UsageError
from ..gitio import Git

# One record per commit, NUL-terminated (`-z`): git cannot print a NUL from a commit
# (it reads messages as C strings), while a pusher can put any other control character
# in a message. Inside a record the fields are one line each (an ident, a subject,
# an id list never span lines), and the trailers, one per line, come last.
# %ae is the raw author email (no mailmap), as git reads the ident.
_FORMAT = "%H%n%P%n%ct%n%ae%n%s%n%(trailers:only,unfold)"


@dataclass(frozen=True)
class Entry:
    """One commit of the branch as `log`, `metrics` and the verifier read it."""

    commit: str
    time: datetime  # committer time
    subject: str
    # Every value of each trailer, in message order.
    trailers: dict[str, list[str]] = field(default_factory=dict)
    parents: tuple[str, ...] = ()
    author_email: str = ""

    def get(self, key: str) -> str | None:
        """The trailer's last value: the one the verifier has always judged a commit by
        (it read `git interpret-trailers` through GitPython, last value wins), now also
        what `log` and `metrics` show, so they can never tell a commit's story
        differently. All values stay in `trailers`. A later trust issue will refuse
        commits that repeat Gitcoord-Session outright."""
        values = self.trailers.get(key)
        return values[-1] if values else None

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


def parse_trailers(text: str) -> dict[str, list[str]]:
    """`%(trailers:only,unfold)` output ("Key: value" per line) as every value of each
    key, in order. The one trailer parser: `log`, `metrics` and the verifier all read
    commits through `read_commits`."""
    trailers: dict[str, list[str]] = defaultdict(list)
    # "\n" only: str.splitlines() also breaks at \x1c-\x1e, \x85, \u2028..., which a
    # pusher may put inside a value to smuggle in a line such as "Gitcoord-Session: x".
    for line in text.split("\n"):
        key, sep, value = line.partition(":")
        if sep:
            trailers[key.strip()].append(value.strip())
    return dict(trailers)


def read_commits(
    git: Git,
    revs: Sequence[str],
    *,
    reverse: bool = False,
    since: datetime | None = None,
    limit: int | None = None,
) -> Iterator[Entry]:
    """The commits `revs` name on the first-parent line (the branch's own), newest first
    (oldest first with `reverse`), with their trailers: one git process for any range,
    where reading each commit's trailers apart would start one per commit."""
    argv = [
        "log",
        "-z",
        "--first-parent",
        f"--format={_FORMAT}",
        "--encoding=UTF-8",  # whatever i18n.logOutputEncoding says: we decode UTF-8
        "--no-show-signature",  # log.showSignature would print gpg's words into records
    ]
    if reverse:
        argv.append("--reverse")
    if since is not None:
        argv.append(f"--since={int(since.timestamp())}")
    if limit is not None:
        argv.append(f"--max-count={limit}")
    argv += [*revs, "--"]
    out = git.run(argv).stdout.decode("utf-8", "replace")
    for record in out.split("\0"):
        if not record:
            continue
        commit, parents, ct, email, subject, trailer_text = [*record.split("\n", 5), "", ""][:6]
        # git prints no %ct for a committer line without a readable date; GitPython,
        # which the verifier read commits through, took such a date as 0, and so do we.
        yield Entry(
            commit,
            datetime.fromtimestamp(int(ct) if ct.isdigit() else 0, timezone.utc),
            subject,
            parse_trailers(trailer_text),
            tuple(parents.split()),
            email,
        )


def entries(
    git: Git, tip: str, since: datetime | None = None, limit: int | None = None
) -> Iterator[Entry]:
    """Commits from `tip` back, newest first (first parent only: the branch's own line);
    at most `limit` (git stops walking there: `log --limit` costs the same on any history)."""
    return read_commits(git, [tip], since=since, limit=limit)


# Every operation a commit's `Gitcoord-Op` trailer names (`log --op` refuses others,
# listing these: a typo would otherwise match nothing, silently). A test checks that
# every operation gitcoord writes is here.
KNOWN_OPS = (
    "init",
    "upgrade",
    "register",
    "leave",
    "reclaim",
    "claim",
    "renew",
    "takeover",
    "handoff",
    "release",
    "heartbeat",
    "send",
    "read",
    "task-add",
    "task-done",
    "task-priority",
    "milestone-add",
    "milestone-done",
    "milestone-undo",
    "approval-request",
    "approval-grant",
    "approval-reject",
    "activate",
    "approver-add",
    "approver-remove",
    "signatures",
    "key-rotate",
    "key-revoke",
    "hooks",
    "state",
    "quarantine",
    "restore",
)


def check_op(op: str) -> str:
    """`op` if gitcoord writes such an operation, else a usage error listing them."""
    if op not in KNOWN_OPS:
        close = [k for k in KNOWN_OPS if k.startswith(op[:3])] if len(op) >= 3 else []
        hint = f" (did you mean {' or '.join(close)}?)" if close else ""
        raise UsageError(
            f"unknown operation {op!r}{hint}; operations: {', '.join(KNOWN_OPS)}",
            field="op",
            known=list(KNOWN_OPS),
        )
    return op


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


