"""The verbs, as pure functions of a State: no git, no I/O, no clock of their own.

Each takes the state read from the tip and returns a `Change` (the files to
write, the audit subject and trailers, the result to report) or raises a
`GitcoordError`. The store calls them again on a fresh state whenever a push
loses a race, so every decision is re-made on what is true now: first push
wins, and the loser re-decides; nothing is ever merged.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from ..domain.models import Config, Session
from ..domain.state import State
from ..errors import InvalidError, RefusedError


def build(model: type[BaseModel], **fields: Any) -> Any:
    """Construct a document, turning a validation failure of user input into exit 5."""
    try:
        return model(**fields)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise InvalidError(f"invalid {where}: {err['msg']}", field=where) from None


def require_initialised(state: State) -> Config:
    if state.config is None:
        raise RefusedError(
            "the coordination branch is not initialised: run `gitcoord init` first",
            hint="gitcoord init",
        )
    return state.config


def require_registered(state: State, session: str | None) -> Session:
    require_initialised(state)
    if not session:
        raise RefusedError(
            "no session: pass --session ID or set GITCOORD_SESSION",
            hint="export GITCOORD_SESSION=<id>",
        )
    found = state.sessions.get(session)
    if found is not None and found.left_at is not None:
        how = (
            f"was reclaimed by {found.reclaimed_by} at {found.left_at:%Y-%m-%dT%H:%M:%SZ} "
            "(not seen for reclaim_after_hours; its claims were released)"
            if found.reclaimed_by
            else f"left at {found.left_at:%Y-%m-%dT%H:%M:%SZ}"
        )
        raise RefusedError(
            f"session {session!r} {how}: run `gitcoord --session {session} register` to come back",
            session=session,
            reclaimed_by=found.reclaimed_by,
        )
    if found is None:
        raise RefusedError(
            f"session {session!r} is not registered: run "
            f"`gitcoord --session {session} register --role ROLE --goal GOAL` first",
            session=session,
        )
    return found


# --- init -----------------------------------------------------------------------


# --- register ---------------------------------------------------------------------


# --- claims -------------------------------------------------------------------------


# --- heartbeats ---------------------------------------------------------------------


# --- messages -----------------------------------------------------------------------


# --- approvals and activation ------------------------------------------------------------


def require_speaker(state: State, session: str | None, person: str | None) -> str:
    """Who writes: a registered session, or with no session `person` — a listed
    approver's e-mail (a person takes part without a session slot; format 3)."""
    if session is not None or person is None:
        return require_registered(state, session).id
    config = require_initialised(state)
    if person not in config.approvers:
        raise RefusedError(
            "no session: pass --session ID or set GITCOORD_SESSION (only a listed approver "
            f"writes as a person, and {person} is not one)",
            hint="export GITCOORD_SESSION=<id>",
        )
    if config.format < 3:
        raise RefusedError(
            "people write without a session only on a branch at format 3 (`gitcoord upgrade`)",
            format=config.format,
        )
    return person
