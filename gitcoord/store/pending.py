"""What a session owes the branch but has not pushed yet, kept in this clone.

Two things are deliberately not pushed on their own, to spare the remote
(GitHub asks for at most 6 pushes a minute per repository):
- a heartbeat sent sooner than `heartbeat_min_seconds` after the last pushed one;
- the count of claims this session was refused because someone else held them.
Both ride along with the session's next write (or next due heartbeat), as the
heartbeat file and the `Gitcoord-Heartbeat:` / `Gitcoord-Collisions:` trailers.

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


class Pending:
    def __init__(self, common_dir: str, session: str) -> None:
        self._dir = os.path.join(common_dir, "gitcoord", "pending")
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

    def defer_heartbeat(self, heartbeat: dict[str, Any]) -> None:
        with self._locked() as data:
            data["heartbeat"] = heartbeat

    def add_collision(self) -> None:
        with self._locked() as data:
            data["collisions"] = int(data.get("collisions", 0)) + 1

    def settle(self, carried: dict[str, Any]) -> None:
        """Forget what a successful commit carried (but not what arrived since)."""
        with self._locked() as data:
            if "heartbeat" in carried and data.get("heartbeat") == carried["heartbeat"]:
                del data["heartbeat"]
            if carried.get("collisions"):
                left = int(data.get("collisions", 0)) - int(carried["collisions"])
                if left > 0:
                    data["collisions"] = left
                else:
                    data.pop("collisions", None)
