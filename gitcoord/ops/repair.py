"""Repair: the one commit of `doctor --fix`, which sets the bad files aside.

Which files are bad is the pure plan of `gitcoord.domain.quarantine`; what their
claim files leave behind (tombstones) is `gitcoord.audit.tombstones`, computed by
the caller from the history and passed in, so this stays a function of its inputs.
"""

from __future__ import annotations

from typing import Any

from ..domain.change import Change
from ..domain.quarantine import Plan, Tombstones, raw
from ..domain.state import State


def quarantine(todo: Plan, state: State, session: str | None, tombs: Tombstones) -> Change:
    result = {"plan": todo, "tombstones": tombs}
    if not todo.moves:
        return Change("quarantine", "quarantine", session=session, result=result)
    src = state.source
    assert src is not None
    writes: dict[str, Any] = {}
    for original, copy in todo.moves.items():
        writes[original] = tombs.made.get(original)  # None: the file goes
        writes[copy] = raw(src, original)
    first = next(iter(todo.moves))
    more = f" and {len(todo.moves) - 1} more" if len(todo.moves) > 1 else ""
    return Change(
        "quarantine",
        f"quarantine {first}{more}",
        session=session,
        writes=writes,
        trailers={"Gitcoord-Quarantined": str(len(todo.moves))},
        result=result,
    )
