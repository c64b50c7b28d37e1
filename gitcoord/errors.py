"""The one error type every user-facing failure is raised as, and its exit codes.

Everything a user can cause ends as a `GitcoordError` subclass; the CLI maps it
to one line (or one JSON document) and the documented exit code in one place
(`gitcoord.cli.main`). Anything else escaping is a bug and exits 1.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any


class ExitCode(IntEnum):
    OK = 0
    UNEXPECTED = 1
    USAGE = 2
    CONFLICT = 3
    REFUSED = 4
    INVALID = 5
    REMOTE = 6
    INTERRUPTED = 130  # as a shell reports a process stopped by Ctrl-C


class GitcoordError(Exception):
    """A failure the user can act on. `details` travel into `--json` output."""

    code: ExitCode = ExitCode.UNEXPECTED
    kind: str = "error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_json(self) -> dict[str, Any]:
        return {"code": int(self.code), "kind": self.kind, "message": self.message, **self.details}


class UsageError(GitcoordError):
    """Bad arguments or names: refused before git is ever called."""

    code = ExitCode.USAGE
    kind = "usage"


class ConflictError(GitcoordError):
    """Someone else was first: the number, the claim or the range is taken."""

    code = ExitCode.CONFLICT
    kind = "conflict"


class RefusedError(GitcoordError):
    """Not yours, not registered, unknown target, not initialised."""

    code = ExitCode.REFUSED
    kind = "refused"


class InvalidError(GitcoordError):
    """The data is invalid: a bad file on the branch, an oversized input, a rejected push."""

    code = ExitCode.INVALID
    kind = "invalid"


class UnverifiedError(InvalidError):
    """The branch's tip holds a commit that its signatures or rules refuse (a forged
    commit on a forge that runs no hooks): nothing is built on it or read from it."""

    kind = "unverified"


class RemoteError(GitcoordError):
    """The remote could not be reached, or kept rejecting us past the retry bound.

    Nothing changed on the branch when this is raised.
    """

    code = ExitCode.REMOTE
    kind = "remote"


class Cancelled(GitcoordError):
    """The user stopped the command (Ctrl-C, SIGTERM, `timeout`) before it wrote anything."""

    code = ExitCode.INTERRUPTED
    kind = "interrupted"
