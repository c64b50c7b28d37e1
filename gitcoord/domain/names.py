"""What a session id, a claim type and a claim name may be, and the paths built from them.

The paths come from the table of kinds (`kinds.py`), which spells each location once.

Every check here runs before git is called, so a hostile or mistyped name is a
usage error (exit 2) and can never become a path outside `coordination/` or an
argument that git would read as an option. The pydantic models reuse the same
patterns, so a hand-edited file with a bad name is caught by the validator.
"""

from __future__ import annotations

import re
from urllib.parse import quote, unquote

from ..errors import UsageError

SESSION_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
CLAIM_TYPE_PATTERN = r"^[a-z][a-z0-9_-]{0,31}$"
# Names may be globs (`claim path src/api/**`) and ranges (`prospects:1-25`),
# so they allow more punctuation; whitespace, quotes and backslashes never.
CLAIM_NAME_PATTERN = r"^[A-Za-z0-9_*?\[{][A-Za-z0-9._:@+=,~/*?\[\]!{}^#%-]{0,127}$"

MESSAGE_ID_PATTERN = r"^[0-9]{8}T[0-9]{9}Z-[0-9a-f]{6}$"
TASK_ID_PATTERN = r"^t[1-9][0-9]{0,8}$"
APPROVAL_ID_PATTERN = r"^[0-9]{8}-[0-9a-f]{6}$"
BROADCAST = "broadcast"
HUMAN = "human"  # the approvers' shared mailbox: escalations reach every one of them
APPROVAL_BRANCH_PREFIX = "gitcoord-approval/"

SESSION_RE = re.compile(SESSION_ID_PATTERN)
_MESSAGE_RE = re.compile(MESSAGE_ID_PATTERN)
_TYPE_RE = re.compile(CLAIM_TYPE_PATTERN)
_NAME_RE = re.compile(CLAIM_NAME_PATTERN)

ROOT = "coordination"
# Entries of coordination/ that are not kinds of document (those are in kinds.py):
STATE_PAGE = "CURRENT_STATE.md"  # raw Markdown written by `gitcoord state --write`
QUARANTINE = "quarantine"  # bad files set aside by `doctor --fix`, never parsed
# The state page is a summary for people browsing the forge, not data: 1 MiB holds the
# page of a full registry (1000 sessions) with room for its live claims, and is
# GitHub's recommended largest object. The verifier refuses a bigger page; `state
# --write` cuts an honest page that would be bigger.
STATE_PAGE_MAX_BYTES = 1024 * 1024
# The one mode a file under coordination/ may have: a regular, non-executable file.
# No symlinks (120000: they point readers elsewhere), executables (100755: nothing
# here is run) or submodules (160000: a commit no reader of the branch can open).
REGULAR_FILE = "100644"


def is_number(value: str) -> bool:
    """ASCII digits only: str.isdigit() also accepts '²' and Arabic-Indic digits."""
    return value.isascii() and value.isdigit() and len(value) <= 9


def _shown(value: str) -> str:
    return repr(value if len(value) <= 40 else value[:40] + "...")


def _check(pattern: re.Pattern[str], value: str, what: str, field: str, hint: str) -> str:
    """`value` if it matches whole (and has no '..'), else a usage error naming `what`."""
    if not pattern.fullmatch(value) or ".." in value:
        raise UsageError(f"invalid {what} {_shown(value)}: {hint}", field=field)
    return value


_ID_HINT = "use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"


def check_session_id(value: str) -> str:
    if value == BROADCAST:
        raise UsageError(f"{BROADCAST!r} is reserved for messages to everyone", field="session")
    if value == HUMAN:
        raise UsageError(f"{HUMAN!r} is reserved for messages to the approvers", field="session")
    return _check(SESSION_RE, value, "session id", "session", _ID_HINT)


def check_claim_type(value: str) -> str:
    return _check(
        _TYPE_RE,
        value,
        "claim type",
        "type",
        "use 1-32 lowercase letters, digits, '_' or '-', starting with a letter "
        "(e.g. task, service, path)",
    )


# Claim types people use without having to say they mean a new one (`claim --new-type`
# starts any other): a TYPE that is neither one of these nor in use on the branch is
# more often a name typed first (`claim i-match task`) than a new kind of resource.
COMMON_TYPES = (
    "task",
    "path",
    "batch",
    "service",
    "deploy",
    "file",
    "review",
    "feature",
    "bug",
    "issue",
    "doc",
    "docs",
    "test",
    "release",
    "branch",
    "pr",
    "module",
    "component",
    "env",
    "infra",
    "db",
    "domain",
)


def name_problem(value: str) -> str | None:
    """Why `value` is not a valid claim name, or None."""
    if not _NAME_RE.fullmatch(value):
        return (
            "use 1-128 characters: letters, digits and . _ : @ + = , ~ / * ? [ ] ! { } ^ # % -, "
            "not starting with '-' or '.'"
        )
    segments = value.split("/")
    if any(seg in ("", ".", "..") for seg in segments):
        return "no empty, '.' or '..' path segments"
    return None


def check_claim_name(value: str) -> str:
    problem = name_problem(value)
    if problem:
        raise UsageError(f"invalid claim name {_shown(value)}: {problem}", field="name")
    return value


def resource_key(type_: str, name: str) -> str:
    return f"{type_}/{name}"


# --- paths on the branch ----------------------------------------------------
# Where each kind of file lives is spelled once, in the table of kinds
# (`kinds.py`, with its `session_path`, `claim_path`, ...); here only what the
# table itself is built from: how a claim name becomes a file name, a message's day.


def claim_file_stem(name: str) -> str:
    # Percent-encoding is injective and keeps '/', '*' and ':' out of file names,
    # so one resource is always exactly one file (see kinds.ClaimFolder).
    return quote(name, safe="")


def claim_name_from_stem(stem: str) -> str:
    return unquote(stem)


_APPROVAL_RE = re.compile(APPROVAL_ID_PATTERN)


def check_approval_id(value: str) -> str:
    return _check(_APPROVAL_RE, value, "approval id", "approval", "expected e.g. 20261121-a1b2c3")


_TASK_RE = re.compile(TASK_ID_PATTERN)


def check_task_id(value: str) -> str:
    return _check(_TASK_RE, value, "task id", "task", "expected t1, t2, ...")


def check_milestone(value: str) -> str:
    return _check(SESSION_RE, value, "milestone name", "milestone", _ID_HINT)


def state_page_path() -> str:
    return f"{ROOT}/{STATE_PAGE}"


def check_message_id(value: str) -> str:
    return _check(
        _MESSAGE_RE, value, "message id", "message", "expected e.g. 20261121T093000123Z-a1b2c3"
    )


def message_day(message_id: str) -> str:
    """'20261121T...' -> '2026-11-21': messages are sharded by recipient and UTC day."""
    return f"{message_id[0:4]}-{message_id[4:6]}-{message_id[6:8]}"
