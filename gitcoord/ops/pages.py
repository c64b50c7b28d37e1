"""The state page: CURRENT_STATE.md committed to the branch."""

from __future__ import annotations

from datetime import datetime

from ..domain import names
from ..domain.change import Change
from ..domain.state import State
from .kernel import require_registered


def state_page(state: State, now: datetime, *, session: str | None, page: bytes) -> Change:
    me = require_registered(state, session)
    return Change(
        "state",
        f"update CURRENT_STATE.md by {me.id}",
        session=me.id,
        writes={names.state_page_path(): page},
        result={"path": names.state_page_path()},
    )
