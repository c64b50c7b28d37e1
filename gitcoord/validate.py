"""The one validator: every rule a coordination state must obey.

Used by the transaction (before anything is written), by `gitcoord validate`,
and by the hooks. Problems name the file and the rule they break.
"""

from __future__ import annotations

from collections import defaultdict

from . import names
from .state import Problem, State


def check_state(state: State) -> list[Problem]:
    problems = list(state.problems)
    if state.config is None:
        if state.sessions or state.claims:
            problems.append(Problem(names.config_path(), "layout", "missing or unreadable config"))
        return problems
    slots = state.config.slots

    by_number: dict[int, list[str]] = defaultdict(list)
    for sid, session in sorted(state.sessions.items()):
        by_number[session.number].append(sid)
        if session.number > slots:
            problems.append(
                Problem(
                    names.session_path(sid),
                    "number-range",
                    f"number {session.number} is outside 1..{slots}",
                )
            )
        if session.updated_at < session.registered_at:
            problems.append(
                Problem(names.session_path(sid), "time-order", "updated_at is before registered_at")
            )
    for number, ids in sorted(by_number.items()):
        for sid in ids[1:]:
            problems.append(
                Problem(
                    names.session_path(sid),
                    "unique-number",
                    f"number {number} is also held by session {ids[0]!r}",
                )
            )

    for _, claim in sorted(state.claims.items()):
        path = names.claim_path(claim.type, claim.name)
        if claim.holder not in state.sessions:
            problems.append(
                Problem(path, "holder-registered", f"holder {claim.holder!r} is not registered")
            )
        if claim.expires_at <= claim.acquired_at:
            problems.append(Problem(path, "time-order", "expires_at is not after acquired_at"))
        if claim.released_at is not None and claim.released_at < claim.acquired_at:
            problems.append(Problem(path, "time-order", "released_at is before acquired_at"))
    return problems
