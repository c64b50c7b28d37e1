"""What a session owes the branch, carried by its next write.

Heartbeats are the most frequent write, and a remote like GitHub asks for at most
6 pushes a minute per repository; so a changed heartbeat that is not due yet is
kept in this clone (`gitcoord.store.pending`) and rides along with the session's
next write of any kind, as do the collisions it was refused for (counted by
`metrics` once they reach the branch). This module is that policy: wrap a plan
so its change carries what is owed, and settle what landed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import clock
from ..domain import kinds
from ..domain.change import Change
from ..domain.models import Heartbeat
from ..domain.state import State
from ..store.pending import Pending


def carrying(
    plan: Callable[[State], Change], session: str, owed: dict[str, Any], carried: dict[str, Any]
) -> Callable[[State], Change]:
    """`plan`, whose change also writes what `session` owes; `carried` says what it took."""

    def with_owed(state: State) -> Change:
        change = plan(state)
        carried.clear()
        if change.noop or change.session != session:
            return change
        beat = owed.get("heartbeat")
        if beat and "Gitcoord-Heartbeat" not in change.trailers:
            try:
                doc = Heartbeat.model_validate(beat)
            except ValueError:
                doc = None
            last = state.heartbeats.get(doc.session) if doc else None
            if doc is not None and (last is None or last.at < doc.at):
                change.writes[kinds.heartbeat_path(doc.session, fmt=state.format)] = doc
                change.trailers["Gitcoord-Heartbeat"] = clock.iso(doc.at)
            carried["heartbeat"] = beat
        if owed.get("collisions"):
            change.trailers["Gitcoord-Collisions"] = str(owed["collisions"])
            carried["collisions"] = owed["collisions"]
        return change

    return with_owed


def settle_heartbeat(pending: Pending, result: dict[str, Any]) -> None:
    """After `heartbeat`: keep a deferred beat for the next write, or forget older owed ones."""
    if result["action"] == "deferred":
        pending.defer_heartbeat(result["heartbeat"])
        return
    # pushed, or skipped as the branch already says so: older owed beats are moot
    owed = pending.read().get("heartbeat")
    if owed and owed.get("at", "") <= result["heartbeat"]["at"]:
        pending.settle({"heartbeat": owed})
