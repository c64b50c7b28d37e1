"""What a session owes the branch but has not pushed yet, kept in this clone.

Two things are deliberately not pushed on their own, to spare the remote
(GitHub asks for at most 6 pushes a minute per repository):
- a heartbeat sent sooner than `heartbeat_min_seconds` after the last pushed one
  ("deferred"), or one that is due but held for a ride ("held"), and a moved read
  mark, held likewise; `ride_by` is the time by which a flusher pushes what is held
  if nothing carried it first;
- the count of claims this session was refused because someone else held them.
The count rides along with the session's next write, as a `Gitcoord-Collisions:`
trailer. The heartbeat and the read mark ride along with the next push of any
session of this clone (`gitcoord.api.carry`): a heartbeat in the session's own
commit when it is the session's write, else each as a commit of its own.

The file is `<git-common-dir>/gitcoord/pending/<session>.json`, updated under
an exclusive `flock` and replaced atomically, so concurrent processes of one
session neither lose counts nor read half a file.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from typing import Any


def folder(common_dir: str) -> str:
    return os.path.join(common_dir, "gitcoord", "pending")


def owing(common_dir: str) -> list[str]:
    """The sessions of this clone that have a pending file (names as they are on disk;
    callers check them as session ids before use)."""
    try:
        names = os.listdir(folder(common_dir))
    except FileNotFoundError:
        return []
    return sorted(n[: -len(".json")] for n in names if n.endswith(".json") and n[0] != ".")


class Pending:
    def __init__(self, common_dir: str, session: str) -> None:
        self.session = session
        self._dir = folder(common_dir)
        self.path = os.path.join(self._dir, f"{session}.json")

    def read(self) -> dict[str, Any]:
        try:
            with open(self.path, encoding="utf-8") as fh:
                data = json.load(fh)
        except (FileNotFoundError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, Any]]:
        os.makedirs(self._dir, exist_ok=True)
        with open(self.path + ".flock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            data = self.read()
            yield data
            if data:
                fd, tmp = tempfile.mkstemp(dir=self._dir, prefix=".tmp-")
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    json.dump(data, fh)
                os.replace(tmp, self.path)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path)

    def defer_heartbeat(self, heartbeat: dict[str, Any], ride_by: str | None = None) -> None:
        """Keep `heartbeat` for a ride; `ride_by` (ISO time): a flusher pushes it then if
        nothing carried it first (None: it waits for a push that happens anyway)."""
        self._keep("heartbeat", heartbeat, ride_by)

    def keep_read_mark(self, mark: dict[str, Any], ride_by: str) -> None:
        """Keep the session's new read mark for a ride, to be pushed by `ride_by`."""
        self._keep("read_mark", mark, ride_by)

    def _keep(self, what: str, doc: dict[str, Any], ride_by: str | None) -> None:
        # A newer document replaces a held one but not its time: beats sent every
        # minute must not put their push off for ever.
        with self._locked() as data:
            data[what] = doc
            data.pop(f"{what}_suspect", None)
            held = data.get("ride_by")
            if ride_by is not None:
                data["ride_by"] = min(ride_by, held) if isinstance(held, str) else ride_by

    def suspect(self, what: str, doc: dict[str, Any]) -> None:
        """The remote refused a push `doc` (the kept `what`) rode in with others: from
        now on it goes only alone (`store.transaction`)."""
        with self._locked() as data:
            if data.get(what) == doc:
                data[f"{what}_suspect"] = True

    def add_collision(self) -> None:
        with self._locked() as data:
            data["collisions"] = int(data.get("collisions", 0)) + 1

    def settle(self, carried: dict[str, Any]) -> None:
        """Forget what a successful commit carried (but not what arrived since)."""
        with self._locked() as data:
            for what in ("heartbeat", "read_mark"):
                if what in carried and data.get(what) == carried[what]:
                    del data[what]
                    data.pop(f"{what}_suspect", None)
            if "heartbeat" not in data and "read_mark" not in data:
                data.pop("ride_by", None)  # nothing held: nothing for a flusher to push
            if carried.get("collisions"):
                left = int(data.get("collisions", 0)) - int(carried["collisions"])
                if left > 0:
                    data["collisions"] = left
                else:
                    data.pop("collisions", None)
