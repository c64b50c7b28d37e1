"""Files written whole: the state page (CURRENT_STATE.md) and the validating CI workflow."""

from __future__ import annotations

from datetime import datetime

from ..domain import names
from ..domain.change import Change
from ..domain.state import State
from .kernel import require_initialised, require_registered

WORKFLOW_PATH = ".github/workflows/gitcoord.yml"


def state_page(state: State, now: datetime, *, session: str | None, page: bytes) -> Change:
    """Write `page` (`statepage.render` of this very state: it cuts itself to size)."""
    me = require_registered(state, session)
    return Change(
        "state",
        f"update CURRENT_STATE.md by {me.id}",
        session=me.id,
        writes={names.state_page_path(): page},
        result={"path": names.state_page_path()},
    )


def workflow(state: State, *, session: str | None, data: bytes, current: bytes | None) -> Change:
    """Commit the GitHub workflow `data` (`hooks install --github-workflow`), unless the
    branch already has exactly it (`current`)."""
    require_initialised(state)
    if session is not None:
        require_registered(state, session)
    if current == data:
        return Change("hooks", "hooks", session=session)
    return Change(
        "hooks",
        "install the validating GitHub workflow",
        session=session,
        resource="workflow/gitcoord",
        writes={WORKFLOW_PATH: data},
    )
