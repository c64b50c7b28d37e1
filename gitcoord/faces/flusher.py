"""The background flusher a face starts when it holds a heartbeat for a ride.

A due heartbeat held to ride another session's push (`gitcoord.api.carry`) must
still reach the branch within heartbeat_min_seconds if no push comes. The faces
that run one command and leave (the command line, the Claude Code hooks) or that
wait on their client (the MCP server) cannot stay for that, so they start
`gitcoord flush --wait` the way git starts `gc --auto --detach`: a process of its
own session, no terminal, standard streams closed, the same repository, branch
and remote. It pushes each held beat by its time and leaves when none is held; a
second one for the same clone leaves at once.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..api.coordinator import Coordinator


def install(coord: Coordinator) -> None:
    """Let `coord` hold due heartbeats: a flusher is started when it holds one."""
    coord.on_hold = lambda ride_by: spawn(coord)


def spawn(coord: Coordinator) -> None:
    store = coord.store
    if running(store.info.common_dir):
        return  # it pushes this beat too: it reads what is held on every round
    argv = [sys.executable, "-m", "gitcoord", "-C", coord.path, "--ref", store.branch]
    argv += ["--remote", store.remote] if store.remote else ["--local"]
    argv += ["flush", "--wait"]
    env = {**os.environ, "GITCOORD_AGENT": "0"}  # (it is the long-lived one itself)
    # No flusher (it cannot start): the held beat rides this clone's next push.
    with contextlib.suppress(OSError, subprocess.TimeoutExpired):
        # Through a shell that starts it in the background and exits at once: the
        # flusher is nobody's child to wait for (init reaps it), whoever started it.
        subprocess.run(
            ["/bin/sh", "-c", '"$@" &', "gitcoord-flush", *argv],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=coord.path,
            env=env,
            start_new_session=True,
            close_fds=True,
            timeout=10,
            check=False,
        )


def running(common_dir: str) -> bool:
    """A flusher holds this clone's flusher lock (one that is leaving looks again
    after letting go, so a beat held now is never left behind)."""
    import fcntl

    from ..api.carry import FLUSHER_LOCK
    from ..store.pending import folder

    try:
        with open(os.path.join(folder(common_dir), FLUSHER_LOCK), "a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return True
            return False
    except OSError:
        return False
