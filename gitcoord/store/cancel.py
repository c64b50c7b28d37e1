"""Stopping a command the user gave up on, before it writes anything.

Ctrl-C, SIGTERM and `timeout` must not leave a command that goes on to push after the
user was told it stopped. The faces set `CANCELLED` (a signal handler in process; the
agent's child when its client says so); the transaction checks it where stopping is
free — waiting for the turn, between rounds, and right before the push — and says so
with exit 130. A push already under way is let finish, so what the command reports
is what happened.
"""

from __future__ import annotations

import threading

from ..errors import Cancelled

CANCELLED = threading.Event()


def check() -> None:
    """Raise `Cancelled` if the user stopped the command."""
    if CANCELLED.is_set():
        raise Cancelled("interrupted before anything was written")
