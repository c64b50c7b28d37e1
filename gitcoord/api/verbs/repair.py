"""`doctor [--fix]`: explain what is wrong with the coordination branch, and repair it.

Mutations refuse to build on a branch that does not validate, so one bad file
pushed by hand would stall every session. `doctor` lists every problem (what
`validate` reports, plus claims of different holders binding the same items
now) and what `--fix` would do about it; `--fix` repairs the branch with ONE
commit through the normal transaction (compare-and-swap, re-planned when
someone else was first) that moves each bad file into
`coordination/quarantine/`, bytes unchanged, and leaves a released tombstone
where it moves a claim file, so the resource's generation (fencing token)
carries on. Which files are bad: `gitcoord.domain.quarantine`; the commit:
`gitcoord.ops.repair`; the tombstones' generations: `gitcoord.audit.tombstones`.

Exit codes: 0 healthy (or repaired), 5 problems found (without --fix), or
problems that no quarantine can repair (config.yaml missing or unreadable),
6 remote unreachable.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from ...errors import InvalidError, UnverifiedError
from ..verb import Param, Verb

if TYPE_CHECKING:
    from ...domain.change import Change
    from ...domain.quarantine import Plan, Tombstones
    from ...domain.state import State
    from ..coordinator import Coordinator

MAX_LISTED = 50


def _doctor(c: Coordinator, fix: bool = False) -> dict[str, Any]:
    from ... import clock
    from ...audit.tombstones import tombstones
    from ...domain.quarantine import Tombstones, plan
    from ...ops import repair

    store = c.store
    try:
        tip, state = store.snapshot()
    except UnverifiedError as exc:
        return _restore(c, exc, fix)
    now = clock.now()
    src = store.view_of(state)
    found = plan(src, now)
    if found.healthy:
        return {**_json(found, tip, None), "where": store.where, "fix": fix}
    if not fix:
        tombs = tombstones(store, tip, src, found, now, c.session) if tip else Tombstones()
        raise InvalidError(
            _report(found, tip, store.where) + "\n" + _advice(found, tombs),
            **_json(found, tip, None, tombs),
        )

    stamp: list[datetime] = []

    def quarantine(state: State) -> Change:
        when = clock.now()
        stamp[:] = [when]
        src = store.view_of(state)
        todo = plan(src, when)
        if todo.remaining:
            raise InvalidError(
                _report(todo, None, store.where) + "\n" + _advice(todo, Tombstones()),
                **_json(todo, None, None),
            )
        tombs = Tombstones()
        tip = src.commit  # the commit this round planned on
        if tip is not None and todo.moves:
            tombs = tombstones(store, tip, src, todo, when, c.session)
        return repair.quarantine(todo, state, c.session, tombs)

    outcome = store.transact(quarantine, lambda: stamp[0], repair=True)
    done: Plan = outcome.change.result["plan"]
    tombs = outcome.change.result["tombstones"]
    data = _json(done, outcome.tip, outcome.commit, tombs)
    data["where"], data["fix"] = store.where, fix
    data["fates"] = {a: _fate(tombs, a) for a in done.moves}
    return data


def _restore(c: Coordinator, refused: UnverifiedError, fix: bool) -> dict[str, Any]:
    """A tip that cannot be verified (a forged commit pushed where no hook judged it):
    name the first refused commit; with `fix`, restore the last state that verifies in
    one new commit, signed as this session (or by your own key, with no session) —
    history is never rewritten, and the verifier accepts the restoring commit only
    because the first commit it undoes is refused (`audit.verify.judged`)."""
    from ... import clock
    from ...audit.verify import RESTORE_OP, RESTORES
    from ...store.transaction import Unchanged, Write
    from ..trust import first_refused

    store = c.store
    tip = refused.details.get("tip")
    assert isinstance(tip, str)
    bad = first_refused(store, tip)
    if bad is None:  # verified meanwhile (someone restored it): nothing to do
        return {**_healthy(store, tip), "fix": fix}
    who = f" (speaks for {bad.session}, {bad.op or 'no op'})" if bad.session else ""
    report = (
        f"the tip {tip[:10]} of {store.where} cannot be verified: commit {bad.commit[:10]}"
        f"{who} is refused: {bad.problems[0]}"
    )
    good = bad.good
    if not fix or good is None:
        how = (
            f"`gitcoord doctor --fix` writes one new commit on top whose tree is that of "
            f"{good[:10]}, the last commit that verifies (history is kept; signed by "
            "this session's key, or with no --session by your own)"
            if good is not None
            else "no earlier commit verifies: restore the branch from a backup"
        )
        raise UnverifiedError(
            f"{report}\n{how}",
            tip=tip,
            commit=bad.commit,
            restores=good,
            problems=[p.to_json() for p in bad.problems],
        )
    session = c.session

    def decide(current: str | None) -> Unchanged[dict[str, Any]] | Write[dict[str, Any]]:
        assert current is not None and good is not None
        again = first_refused(store, current)
        if again is None:
            return Unchanged({"restored": None})
        target = again.good or good
        tree = store.tree_of(target)
        assert tree is not None
        lines = [f"restore {target[:10]}: undo {again.commit[:10]} and what follows", ""]
        lines.append(f"Gitcoord-Op: {RESTORE_OP}")
        if session:
            lines.append(f"Gitcoord-Session: {session}")
        lines.append(f"{RESTORES}: {target}")
        message = "\n".join(lines) + "\n"
        when = clock.now()
        state = store.load(target)
        required = bool(state.config and state.config.require_signatures)
        role = "session" if session else "person"
        made = store.trees.write_tree_commit(current, tree, message, when, role, required)
        result = {"restored": target, "undone": again.commit}
        return Write({}, message, when, result, commit=made)

    done = store.trees.transact(decide)
    restored = done.result["restored"]
    return {
        "healthy": True,
        "tip": done.tip,
        "problems": [p.to_json() for p in bad.problems],
        "quarantine": [],
        "remaining": [],
        "commit": done.commit,
        "changed": done.commit is not None,
        "restored": restored,
        "undone": done.result.get("undone"),
        "where": store.where,
        "fix": fix,
        "fates": {},
    }


def _healthy(store: Any, tip: str) -> dict[str, Any]:
    return {
        "healthy": True,
        "tip": tip,
        "problems": [],
        "quarantine": [],
        "remaining": [],
        "commit": None,
        "changed": False,
        "where": store.where,
    }


def _text(doc: dict[str, Any]) -> str:
    if doc.get("restored"):
        return (
            f"restored {doc['restored'][:10]} in commit {doc['commit'][:10]} (undoing "
            f"{doc['undone'][:10]} and what followed it); {doc['where']} verifies again"
        )
    if doc["commit"] is None:
        if doc["fix"] and doc["quarantine"]:
            return "healthy: nothing to fix (someone repaired it first)"
        return f"healthy: {doc['where']} at {(doc['tip'] or '')[:10]} validates"
    lines = [
        f"quarantined {len(doc['quarantine'])} file(s) in commit {doc['commit'][:10]}; "
        f"{doc['where']} validates again:"
    ]
    for item in doc["quarantine"][:MAX_LISTED]:
        fate = doc["fates"].get(item["path"], "")
        lines.append(f"  {item['path']} -> {item['to']}" + (f"  ({fate})" if fate else ""))
    return "\n".join(lines)


DOCTOR = Verb(
    "doctor",
    "Explain every problem of the coordination branch; --fix repairs it.",
    _doctor,
    _text,
    (Param("fix", bool, "Quarantine every bad file in one commit.", False),),
    details="--fix moves each bad file (malformed, schema-violating, misplaced, or breaking a "
    "rule such as a second session with the same number, plus what only that file made valid) "
    "to coordination/quarantine/, bytes kept, in one commit; a claim file moved leaves a "
    "released tombstone that keeps the resource's generation. Afterwards `validate` passes and "
    "mutations work again. Exit 0 healthy or repaired, 5 problems found (or not repairable).",
    idempotent=True,
)

VERBS = (DOCTOR,)


def _fate(tombs: Tombstones, path: str) -> str:
    """What becomes of a moved claim file's generation (empty for other files)."""
    if path in tombs.made:
        return f"a released tombstone keeps generation {tombs.made[path].generation}"
    if path in tombs.not_carried:
        return f"generation not carried: {tombs.not_carried[path]}"
    return ""


def _why(todo: Plan, original: str) -> str:
    for path, problems in todo.condemned.items():
        if original == path or original.startswith(path + "/"):
            return problems[0].message
    return ""


def _report(todo: Plan, tip: str | None, where: str) -> str:
    at = f" at {tip[:10]}" if tip else ""
    lines = [f"{len(todo.problems)} problem(s) on {where}{at}:"]
    lines += [f"  {p}" for p in todo.problems[:MAX_LISTED]]
    if len(todo.problems) > MAX_LISTED:
        lines.append(f"  ... and {len(todo.problems) - MAX_LISTED} more")
    return "\n".join(lines)


def _advice(todo: Plan, tombs: Tombstones) -> str:
    from ...domain import kinds, names

    lines = []
    if todo.moves:
        lines.append(
            f"`gitcoord doctor --fix` quarantines {len(todo.moves)} file(s) in one commit "
            f"(bytes kept under {names.ROOT}/quarantine/):"
        )
        for original, copy in list(todo.moves.items())[:MAX_LISTED]:
            fate = _fate(tombs, original)
            why = _why(todo, original) + (f"; {fate}" if fate else "")
            lines.append(f"  {original} -> {copy}  ({why})")
    if todo.remaining:
        lines.append("not repairable by quarantine (fix by hand with a commit on the branch):")
        lines += [f"  {p}" for p in todo.remaining]
        if any(p.path == kinds.config_path() for p in todo.remaining):
            lines.append(
                f"  restore {kinds.config_path()} from an earlier commit: "
                f"git log -- {kinds.config_path()}, then git show <commit>:{kinds.config_path()}"
            )
    return "\n".join(lines)


def _json(
    todo: Plan, tip: str | None, commit: str | None, tombs: Tombstones | None = None
) -> dict[str, Any]:
    made, not_carried = (tombs.made, tombs.not_carried) if tombs else ({}, {})
    return {
        "healthy": todo.healthy or commit is not None,
        "tip": tip,
        "problems": [p.to_json() for p in todo.problems],
        "quarantine": [
            {
                "path": a,
                "to": b,
                "why": _why(todo, a),
                "tombstone": made[a].model_dump(mode="json") if a in made else None,
                "not_carried": not_carried.get(a),
            }
            for a, b in todo.moves.items()
        ],
        "remaining": [p.to_json() for p in todo.remaining],
        "commit": commit,
        "changed": commit is not None,
    }
