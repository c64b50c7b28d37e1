"""Group commit: the writers of one clone that wait for its turn go in one push.

Transactions of one clone take turns (`turns.local_turn`). While one holds the turn,
the others wait; alone, each then pays a fetch-and-push round of its own. Grouped, a
waiter joins the holder instead (a Unix socket the holder listens on while it holds
the turn, in the per-user runtime folder): the holder decides its own operation on
the tip, then asks each member in the order they joined to decide theirs on the commit
the previous one left (a local chain, on no ref), and pushes the last commit of the
chain with the tip as the lease: one push, one commit per operation, each built and
signed by the process whose operation it is (operations are code, not data: they never
leave their process; only commit ids and verdicts cross the socket).

Each member gets its own verdict: `stand` (the push landed, or nothing was written and
the tip was confirmed fresh) and it reports what it decided — its commit, "unchanged",
or its own conflict; `lost` (the push was refused) and every member decides again on
the new tip. A member that sees its leader go (EOF: the leader finished without it,
failed, or was killed) goes back to waiting for the turn, with the commits it handed
over as maybe landed: whoever then decides for it first looks whether one of them is
on the branch (a killed leader's push may still land) and decides again only if not.
So no operation is lost silently: each waiter sees its own operation land, or gets an
error of its own.

`parsed`: what the files of the chain and of the tip parse to, as the leader and the
members before parsed them (`ParseCache.fresh`): each file is parsed once in the group,
by the first to read or write it, not by each member (a cache: the receiver takes only
entries of its own parser's format, and validates every document it loads as ever).
The verdict that the push landed hands on the whole round's, so that the members'
next transactions, which decide on the tip this push left, parse none of them again.

    member                           leader (holds the turn)
    connect ─────────────────────▶   accept (at the start of each round)
            ◀── decide(tip, base, round, parsed)
    decide(tip) ─ commit | none, ─▶  chain = commit
                  parsed             parsed += the member's
                                     push chain with lease base
            ◀── stand(round, parsed)         (parsed: the whole round's)
              | lost(round) | EOF
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import stat
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

from .cancel import CANCELLED

GROUP_ENV = "GITCOORD_GROUP"  # "0": every transaction pushes on its own
MAX_MEMBERS = 64  # joiners admitted into one leader's rounds
DECIDE_TIMEOUT = 10.0  # seconds a leader waits for one member's decision
POLL = 0.01  # how often a waiter looks for a leader to join (seconds)
MAX_PATH = 100  # bytes of a Unix socket's path (the system's limit is 104-108)


def enabled(remote: str | None) -> bool:
    """Group commit applies to a remote branch (a local one has no round trip to save),
    where the peer's uid can be checked, unless switched off."""
    if remote is None or os.environ.get(GROUP_ENV, "1") == "0":
        return False
    return hasattr(socket, "SO_PEERCRED") and hasattr(socket, "AF_UNIX")


def rendezvous(common_dir: str, remote: str | None, ref: str) -> str | None:
    """The socket a clone's turn holder listens on for `ref` of `remote`: in the per-user
    runtime folder (0700, owned by this user: out of others' reach), or in the temporary
    folder's when that path would be too long for a socket; None when neither will do."""
    scope = f"{os.path.realpath(common_dir)}\0{remote}\0{ref}"
    name = f"group-{hashlib.sha1(scope.encode()).hexdigest()[:16]}.sock"
    for base in (os.environ.get("XDG_RUNTIME_DIR"), tempfile.gettempdir()):
        if not base:
            continue
        folder = os.path.join(base, f"gitcoord-{os.getuid()}")
        path = os.path.join(folder, name)
        if len(os.fsencode(path)) <= MAX_PATH and _private(folder):
            return path
    return None


def _private(folder: str) -> bool:
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
        st = os.lstat(folder)
    except OSError:
        return False
    mode = stat.S_IMODE(st.st_mode)
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and not mode & 0o077


def _peer_uid(sock: socket.socket) -> int | None:
    import struct

    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return None
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


class Gone(Exception):
    """The other end closed the connection (or sent what is no message)."""


class Channel:
    """Newline-delimited JSON messages over a connected Unix socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buf = b""

    def send(self, msg: dict[str, Any]) -> bool:
        try:
            self.sock.settimeout(5.0)
            self.sock.sendall(json.dumps(msg).encode() + b"\n")
            return True
        except OSError:
            return False

    def recv(self, timeout: float) -> dict[str, Any] | None:
        """The next message; None when none came within `timeout`; Gone at EOF."""
        end = time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = end - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                return None
            except OSError:
                raise Gone() from None
            if not chunk:
                raise Gone()
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        try:
            msg = json.loads(line)
        except ValueError:
            raise Gone() from None
        if not isinstance(msg, dict):
            raise Gone()
        return msg

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def join(path: str) -> Channel | None:
    """A connection to the turn holder listening at `path`, or None (nobody listens)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(1.0)  # a full backlog blocks connect(): wait for the turn instead
    try:
        sock.connect(path)
    except OSError:
        sock.close()
        return None
    if _peer_uid(sock) != os.geteuid():
        sock.close()
        return None
    return Channel(sock)


@dataclass
class Peer:
    """A member, as its leader sees it: the commit it handed over in each round."""

    chan: Channel
    handed: dict[int, str | None] = field(default_factory=dict)
    gone: bool = False

    def drop(self) -> None:
        self.gone = True
        self.chan.close()


class Leader:
    """The turn holder's side: listens while it holds the turn, admits joiners at the
    start of each round, asks them in order, and tells each its verdict."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.peers: list[Peer] = []
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # holding the turn: a socket left there is a dead leader's
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.sock.bind(path)
            os.chmod(path, 0o600)
            self.inode = os.stat(path).st_ino
            self.sock.listen(MAX_MEMBERS)
            self.sock.setblocking(False)
        except OSError:
            self.sock.close()
            raise

    @classmethod
    def open(cls, path: str | None) -> Leader | None:
        if path is None:
            return None
        try:
            return cls(path)
        except OSError:
            return None  # no grouping this time: the turn still serializes

    @property
    def live(self) -> list[Peer]:
        return [p for p in self.peers if not p.gone]

    def admit(self) -> None:
        """Take in everyone waiting to join, in the order they connected."""
        while len(self.live) < MAX_MEMBERS:
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            if _peer_uid(conn) != os.geteuid():
                conn.close()
                continue
            conn.setblocking(True)
            self.peers.append(Peer(Channel(conn)))

    def ask(
        self,
        peer: Peer,
        round_: int,
        tip: str | None,
        base: str | None,
        wait: float,
        extra: dict[str, Any] | None = None,
    ) -> Any:
        """Ask `peer` to decide on `tip` (a chain over `base`), handing it `extra` (what
        the group parsed so far); its reply, or None when it is gone, silent past
        `wait`, or makes no sense (then it is dropped)."""
        if not peer.chan.send({"decide": tip, "base": base, "round": round_, **(extra or {})}):
            peer.drop()
            return None
        try:
            reply = peer.chan.recv(max(0.0, wait))
        except Gone:
            reply = None
        if reply is None or "commit" not in reply:
            peer.drop()
            return None
        return reply

    def tell(self, peers: list[Peer], msg: dict[str, Any]) -> None:
        for peer in peers:
            if not peer.gone and not peer.chan.send(msg):
                peer.drop()

    def close(self) -> None:
        """Stop listening (before the turn is let go), and let go of every member: one
        not told a verdict sees EOF and goes back to waiting for the turn."""
        try:
            if os.stat(self.path).st_ino == self.inode:
                os.unlink(self.path)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            self.sock.close()
        for peer in self.peers:
            peer.chan.close()


def wait_message(chan: Channel, until: float, *, cancellable: bool) -> dict[str, Any] | None:
    """The leader's next message, waiting until `until` (monotonic) at most, waking
    every 0.1 s to see whether the user stopped the command (if `cancellable`); None
    when none came."""
    while True:
        left = until - time.monotonic()
        if left <= 0 or (cancellable and CANCELLED.is_set()):
            return None
        msg = chan.recv(min(0.1, left))
        if msg is not None:
            return msg
