"""What a session owes the branch, carried by the next push of this clone.

Heartbeats are the most frequent write, and a remote like GitHub asks for at most
6 pushes a minute per repository; so a changed heartbeat that is not due yet is
kept in this clone (`gitcoord.store.pending`), and so are a due one and a moved
read mark when the face has a flusher for this clone ("held": pushed within
heartbeat_min_seconds, by whatever push of this clone comes first, or else by the
flusher, `flusher`). What is kept rides:
- a heartbeat in the session's own next write, as part of its commit (`carrying`),
  with the collisions it was refused for (counted by `metrics` once on the branch);
- in any push from this clone, each as a commit of its own, signed by this
  machine's key like every commit of its sessions (`riders`, `Kept`).
This module is that policy: what rides, and settling what landed.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from .. import clock
from ..domain import kinds
from ..domain.change import Change
from ..domain.models import Heartbeat, ReadMark
from ..domain.state import State
from ..store.pending import Pending, owing
from ..store.transaction import Decision

if TYPE_CHECKING:
    from ..domain.branch import Store
    from .coordinator import Coordinator


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


def settle_heartbeat(pending: Pending, result: dict[str, Any]) -> str | None:
    """After `heartbeat`: keep a deferred or held beat for a ride (the time a held one
    must be pushed by, for the flusher), or forget older owed ones."""
    if result["action"] == "deferred":
        pending.defer_heartbeat(result["heartbeat"])
        return None
    if result["action"] == "held":
        by = clock.now() + timedelta(seconds=int(result["ride_within"]))
        pending.defer_heartbeat(result["heartbeat"], ride_by=clock.iso(by))
        return clock.iso(by)
    # pushed, or skipped as the branch already says so: older owed beats are moot
    owed = pending.read().get("heartbeat")
    if owed and owed.get("at", "") <= result["heartbeat"]["at"]:
        pending.settle({"heartbeat": owed})
    return None


def hold_read_mark(pending: Pending, mark: ReadMark, window: int) -> str:
    """Keep a moved read mark for a ride, within the heartbeat's window (the time by
    which it goes: `window` seconds from now, or sooner if something is held)."""
    by = clock.iso(clock.now() + timedelta(seconds=window))
    pending.keep_read_mark(mark.model_dump(mode="json"), by)
    return by


def kept_read_mark(store: Store, pending: Pending, seen: ReadMark | None) -> ReadMark | None:
    """The later of the branch's read mark and one kept here, if its commit is here."""
    doc = pending.read().get("read_mark")
    if not isinstance(doc, dict):
        return seen
    try:
        mark = ReadMark.model_validate(doc)
    except ValueError:
        return seen
    if mark.session != pending.session or (seen is not None and seen.at >= mark.at):
        return seen
    if store.tree_of(mark.through) is None:
        return seen  # not a commit this clone has: not a mark to read by
    return mark


class Kept:
    """A session's kept heartbeat or read mark, as a rider of this clone's next push."""

    def __init__(
        self,
        store: Store,
        pending: Pending,
        what: str,
        doc: dict[str, Any],
        due: bool,
        suspect: bool,
    ) -> None:
        self.pending = pending
        self.what = what
        self.doc = doc
        self.due = due
        self.suspect = suspect
        self._decide: Callable[[str | None], Decision[Change]] | None = None
        from ..ops import heartbeats, messages

        plan: Callable[[State], Change]
        try:
            if what == "heartbeat":
                beat = Heartbeat.model_validate(doc)
                plan = lambda state: heartbeats.ride(state, beat)  # noqa: E731
            else:
                mark = ReadMark.model_validate(doc)
                plan = lambda state: messages.ride_mark(state, mark)  # noqa: E731
        except ValueError:
            return  # not what it says (a damaged file): decide drops it
        self._decide = store.decider(plan, clock.now)

    def decide(self, tip: str | None) -> Decision[Change]:
        if self._decide is None:
            from ..errors import InvalidError

            raise InvalidError(f"a kept {self.what} that is not one")
        return self._decide(tip)

    def settled(self, commit: str | None) -> None:
        self.pending.settle({self.what: self.doc})

    def refused(self) -> None:
        self.pending.suspect(self.what, self.doc)


RIDE_ENV = "GITCOORD_RIDE"  # "0": nothing is held, nothing rides another session's push
KINDS = ("heartbeat", "read_mark")  # what a session keeps for a ride


def riding() -> bool:
    return os.environ.get(RIDE_ENV, "1") != "0"


def riders(store: Store, session: str | None, *, flush: bool = False) -> list[Kept]:
    """What this clone's sessions keep for a ride, oldest first — but `session`'s own
    heartbeat, which rides in its own commit (`carrying`); `flush`: all of it is due."""
    from ..domain import names

    now = clock.iso(clock.now())
    found: list[tuple[str, Kept]] = []
    for sid in owing(store.info.common_dir):
        if not names.SESSION_RE.match(sid):
            continue
        pending = Pending(store.info.common_dir, sid)
        data = pending.read()
        ride_by = data.get("ride_by")
        due = flush or (isinstance(ride_by, str) and ride_by <= now)
        for what in KINDS:
            doc = data.get(what)
            if doc is None or (what == "heartbeat" and sid == session):
                continue
            if not isinstance(doc, dict) or doc.get("session") != sid:
                pending.settle({what: doc})  # not this session's: never sent
                continue
            rider = Kept(store, pending, what, doc, due, bool(data.get(f"{what}_suspect")))
            found.append((str(doc.get("at", "")), rider))
    return [rider for _, rider in sorted(found, key=lambda f: f[0])]


def kept(common_dir: str) -> int:
    """How many documents this clone's sessions keep for a ride (held or deferred)."""
    return sum(
        what in Pending(common_dir, sid).read() for sid in owing(common_dir) for what in KINDS
    )


def held(common_dir: str) -> list[str]:
    """When what each session of this clone holds must be pushed by (ISO times),
    soonest first."""
    from ..domain import names

    times = []
    for sid in owing(common_dir):
        if not names.SESSION_RE.match(sid):
            continue
        pending = Pending(common_dir, sid)
        data = pending.read()
        ride_by = data.get("ride_by")
        if not any(what in data for what in KINDS):
            if ride_by is not None:
                pending.settle({})  # a time for nothing held (a file edited by hand)
            continue
        if isinstance(ride_by, str):
            times.append(ride_by)
    return sorted(times)


FLUSHER_LOCK = ".flusher"
MAX_FLUSH_PUSHES = 8  # pushes of one `flush` (more than one only for suspect beats)
FLUSHER_TRIES = 5  # pushes that fail in a row before the flusher leaves them to the next write


def flusher(c: Coordinator) -> dict[str, Any]:
    """`flush --wait`: push each held beat of this clone by its time, until none is held.
    One per clone (an flock; a second one leaves at once). A beat held just as this one
    leaves is not stranded: after letting go, it looks again and takes over if needed."""
    import fcntl
    import time

    from ..errors import RemoteError
    from ..store.pending import folder

    common = c.store.info.common_dir
    os.makedirs(folder(common), exist_ok=True)
    pushed = pushes = 0
    waited = 0.0
    while True:
        with open(os.path.join(folder(common), FLUSHER_LOCK), "a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return {"waited": waited, "pushed": pushed, "pushes": pushes, "running": True}
            failures = 0
            while times := held(common):
                wait = (_parse(times[0]) - clock.now()).total_seconds()
                if wait > 0:
                    time.sleep(min(wait, 60.0))
                    waited += min(wait, 60.0)
                    continue
                try:
                    landed = c.flush_held()
                except RemoteError:
                    landed = []
                pushed += len(landed)
                pushes += 1 if landed else 0
                if (left := held(common)) and left[0] <= times[0]:
                    failures += 1  # still held: the remote is down, or refuses it
                    if failures >= FLUSHER_TRIES:
                        break  # they stay kept, and ride this clone's next push
                    time.sleep(min(30.0, 2.0**failures))
                else:
                    failures = 0
        if failures or not held(common):
            return {"waited": waited, "pushed": pushed, "pushes": pushes, "running": False}


def _parse(text: str) -> datetime:
    """An ISO time as `clock.iso` writes it (a damaged one: now, so it goes at once)."""
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return clock.now()
