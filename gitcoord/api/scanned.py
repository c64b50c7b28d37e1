"""How far this clone has looked through a session's mailboxes, beyond its read mark.

The read mark (`coordination/reads/<session>.yaml`) moves only when an inbox finds
something unread: nothing is pushed when there is nothing new. A session's own
broadcasts are in a folder it reads (`broadcast`) but are never unread to it, so a
session that broadcasts much and hears little kept opening every one of them again at
each inbox, since its mark never moved past them (3,001 broadcasts: 3.7 s an inbox).

This clone keeps, per session, the last tip at which an inbox found no unread message
at all, and the read mark it read by then: `<git-common-dir>/gitcoord/scanned/<branch
mirror>/<session>`, one line, "<tip> <mark>". While the branch's mark is still that one,
every message at that tip is read or the session's own, so the next inbox reads messages
from that tip instead of from the mark. It is this clone's knowledge only (never pushed,
so it costs the remote nothing); a mark moved since, a file that is not what this
module writes, or a tip that is not here are all ignored: the inbox then reads from the
mark, as it did before.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

from ..domain import names
from ..domain.branch import Store
from ..gitio import is_object_id

NO_MARK = "-"


@dataclass(frozen=True)
class Scanned:
    tip: str  # where an inbox found nothing unread
    mark: str | None  # the read mark's commit it read by (None: the session had none)


def _path(store: Store, session: str) -> str:
    safe = store.mirror.replace("/", "%")
    return os.path.join(store.info.common_dir, "gitcoord", "scanned", safe, session)


def read(store: Store, session: str) -> Scanned | None:
    names.check_session_id(session)
    try:
        with open(_path(store, session), encoding="ascii") as fh:
            fields = fh.read(256).split()
    except (OSError, UnicodeDecodeError):
        return None
    if len(fields) != 2 or not is_object_id(fields[0]):
        return None
    tip, mark = fields
    if mark != NO_MARK and not is_object_id(mark):
        return None
    return Scanned(tip, None if mark == NO_MARK else mark)


def write(store: Store, session: str, found: Scanned) -> None:
    """Record `found` (atomically: a reader sees the old line or the new one). Best
    effort: a clone whose folder cannot be written reads from the mark, as before."""
    names.check_session_id(session)
    path = _path(store, session)
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(tmp, "w", encoding="ascii") as fh:
            fh.write(f"{found.tip} {found.mark or NO_MARK}\n")
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
