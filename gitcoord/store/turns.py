"""Taking turns: with this clone's other writers (an flock), and after a lost race
(backoff with jitter).

Transactions from one clone take turns: racing each other through the remote would
only burn pushes, since all but one would lose. Across clones, compare-and-swap
decides, and the loser of a round waits a random while before it goes again.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import random
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import IO

from ..errors import RemoteError
from .cancel import CANCELLED, check


@contextlib.contextmanager
def local_turn(
    common_dir: str,
    remote: str | None,
    ref: str,
    remote_url: str | None,
    deadline: float,
    timeout: float,
) -> Iterator[None]:
    """This clone's turn (or this machine's) to write `ref` of `remote`, until the block ends."""
    # One turn per clone (and remote branch) by default: sessions sharing a clone
    # would only race each other for its mirror ref and burn pushes. Separate clones
    # race through the remote, as separate machines do: with each transaction now
    # parsing only what changed, racing (compare-and-swap, backoff) overlaps their
    # fetches and beat a machine-wide turn by 1.2-1.8x at 8 and 16 clones
    # (benchmarks, 2 cores). `machine` keeps the machine-wide turn, keyed by URL.
    scope = os.environ.get("GITCOORD_TURN", "clone")
    if scope == "none":  # no turns at all: every transaction races (tests use this)
        yield
        return
    if remote_url and scope == "machine":  # else "clone"
        base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
        folder = os.path.join(base, f"gitcoord-{os.getuid()}")
        scope, who = f"{remote_url}\0{ref}", "machine"
    else:
        folder = os.path.join(common_dir, "gitcoord")
        scope, who = f"{remote}\0{ref}", "clone"
    os.makedirs(folder, mode=0o700, exist_ok=True)
    key = hashlib.sha1(scope.encode()).hexdigest()[:12]
    fh = _turn(os.path.join(folder, f"turn-{key}.flock"), deadline)
    if fh is None:
        raise RemoteError(
            f"timed out after {timeout:g}s waiting for this {who}'s other "
            "gitcoord commands; nothing was written"
        )
    try:
        yield
    finally:
        fh.close()  # releases the flock: the kernel wakes a waiter at once


def _turn(path: str, deadline: float) -> IO[str] | None:
    """The turn file, flocked, or None at the deadline.

    A waiter blocks in flock() (in a thread, so the deadline holds): the kernel
    wakes it the moment the holder lets go. Polling with sleeps left gaps between
    turns that, once a transaction took ~85 ms, cost a third of the throughput of
    8 sessions taking turns. A waiter given up on closes its file (and so the lock)
    itself whenever it gets it; its file is never the caller's.
    """
    fh = open(path, "a")  # noqa: SIM115 (handed to the caller, or closed here)
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return fh
    except BlockingIOError:
        pass
    except BaseException:
        fh.close()
        raise
    guard = threading.Lock()
    got = threading.Event()
    abandoned = False

    def wait() -> None:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX)
        except OSError:
            fh.close()
            return
        with guard:  # decided under the guard: taken, or given up on, never both
            if abandoned:
                fh.close()
            else:
                got.set()

    threading.Thread(target=wait, name="gitcoord-turn", daemon=True).start()
    while not CANCELLED.is_set():  # woken every 0.1 s to see whether the user gave up
        if got.wait(min(0.1, max(0.0, deadline - time.monotonic()))):
            return fh
        if time.monotonic() >= deadline:
            break
    with guard:
        if got.is_set():
            return fh
        abandoned = True
    check()  # the user stopped it: say so rather than "timed out"
    return None


class Backoff:
    """How long to wait before going again, after a lost round (or a busy ref lock)."""

    def __init__(self) -> None:
        self.round = 0.0  # how long the last lost round took (the backoff's unit)

    def sleep(self, attempt: int, deadline: float) -> None:
        # Full jitter over the length of the round just lost, doubling per attempt:
        # racers spread over as many round-lengths as there are of them, so the next
        # round has a winner instead of another pile-up (a fixed small base did not).
        # The window is capped by a third of the time left, not by a fixed span: 16
        # racers with 300 ms rounds need ~5 s to spread out, and a 2 s cap kept them
        # colliding (12 attempts per success where 5.5 was reachable, benchmarks).
        left = deadline - time.monotonic()
        base = max(0.015, self.round)
        delay = random.uniform(0, min(left / 3, base * 2 ** min(attempt - 1, 10)))
        CANCELLED.wait(max(0.0, min(delay, left)))  # a user's Ctrl-C ends the wait at once
