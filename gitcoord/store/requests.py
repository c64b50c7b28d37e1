"""Carrying: the push that lands takes along the writes of clones that wait.

Under contention a branch lands one push per fetch + push round, and a turn handed from
machine to machine costs that round (docs/scaling.md). With carrying (on a branch at
format 5 or later, unless GITCOORD_CARRY=0) a push need not hand over: a clone whose push
was refused publishes the commit it had decided, its *request*, and whichever clone pushes
next carries it in the same push.

- A transaction of a clone that carries writes its own commits with two trailers more,
  `Gitcoord-Request: <16 hex>` (the same in every round of the transaction) and
  `Gitcoord-Valid-Until: <time>` (VALID_FOR after it was decided). After a push refused
  on a fetched tip, the commit it pushed is published, in a push of its own run beside
  the next round (it races nobody), at `refs/gitcoord/tickets/<key>/requests/<clone>`:
  the tickets' prefix, so every fetch brings requests along and the server's ticket
  judge is the one that judges the ref.
- A clone about to push carries the requests of others that are still valid and whose
  id has not landed since the commit they were decided on: each as a commit of its own
  on its chain, whose tree is the chain's with the request's files, whose message is the
  request's, and whose second parent is the request commit (the request, signed by its
  session's key, is what speaks for the session: `audit.verify` judges a carried commit
  by it). The domain says whether a request may be carried on the chain (`carrier`).
- A requester keeps every commit it published among those that may land
  (`TreeStore._pending`): a carried commit has the request as its second parent, so the
  ancestry test that finds a push whose reply was lost finds it too.

A request is decided once and carried as it was decided, or not at all: who carries it
never decides it again. An id lands once: a clone never carries one that landed, and the
server refuses a second landing.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from ..gitio import Git, ObjectReader, first_parent
from .remote import RemoteBranch

ENV = "GITCOORD_CARRY"
REQUEST = "Gitcoord-Request"
VALID_UNTIL = "Gitcoord-Valid-Until"
VALID_FOR = timedelta(seconds=10)  # from its decision: the time in which it may be carried
MARGIN = timedelta(seconds=1)  # a carrier leaves a request this close to its end alone
MAX_CARRIED = 16  # requests one push carries at most
ENDED = timedelta(minutes=2)  # past its end (and any clock skew): a request only in the way
MAX_ENDED = 16  # ended requests of others deleted by one publication at most
LOOK_BACK = 256  # branch commits a carrier looks through for a request's base and its id
_ID = re.compile(r"[0-9a-f]{16}")
_TIME = "%Y-%m-%dT%H:%M:%SZ"


def enabled() -> bool:
    """Whether this process carries others' writes and publishes its own: on unless
    GITCOORD_CARRY=0. It does so only on a branch at format 5 or later (`models.CARRIED`,
    `Write.carriable`), one that every clone able to read it knows how to verify."""
    return os.environ.get(ENV, "").strip() != "0"


def new_id() -> str:
    return secrets.token_hex(8)


def is_id(value: str | None) -> bool:
    return value is not None and _ID.fullmatch(value) is not None


def until_of(value: str | None) -> datetime | None:
    """A `Gitcoord-Valid-Until` value as a time (None: not one)."""
    if value is None:
        return None
    try:
        return datetime.strptime(value, _TIME).replace(tzinfo=timezone.utc)
    except ValueError:
        return None


def with_request(message: str, rid: str, until: datetime) -> str:
    """`message` (which ends with its trailers) with the request's two trailers added."""
    stamp = until.astimezone(timezone.utc).strftime(_TIME)
    return message.rstrip("\n") + f"\n{REQUEST}: {rid}\n{VALID_UNTIL}: {stamp}\n"


def message_of(raw: bytes) -> bytes:
    """A commit object's message: what follows its headers (a signature among them)."""
    return raw.split(b"\n\n", 1)[1] if b"\n\n" in raw else b""


def trailers_of(message: bytes) -> dict[str, str]:
    """The `Key: value` lines of a message's last paragraph, the last value of each
    (the client's reading; the server judges by git's own, `audit.history`)."""
    text = message.decode("utf-8", "replace").rstrip("\n")
    last = text.rsplit("\n\n", 1)[-1]
    found: dict[str, str] = {}
    for line in last.split("\n"):
        key, sep, value = line.partition(":")
        if sep:
            found[key.strip()] = value.strip()
    return found


@dataclass(frozen=True)
class Request:
    """A request as fetched: whose it is, the commit, its id and end, the tip it was
    decided on."""

    clone: str
    ref: str
    commit: str
    rid: str
    until: datetime
    base: str


class Requests:
    """The requests of one branch's clones on one remote, as this clone sees them."""

    def __init__(
        self, git: Git, reader: ObjectReader, upstream: RemoteBranch, prefix: str, seen: str
    ) -> None:
        self.git, self.reader, self.upstream = git, reader, upstream
        self.prefix = prefix + "requests/"
        self.seen = seen + "requests/"
        self._thread: threading.Thread | None = None

    def ref_of(self, clone: str) -> str:
        return self.prefix + clone

    def _listed(self, me: str) -> Iterator[tuple[str, str, bytes | None]]:
        """Other clones' request refs as last fetched: (clone, object, the commit's raw
        bytes, or None when it is no commit here)."""
        proc = self.git.run(
            ["for-each-ref", "--format=%(objectname) %(refname)", self.seen], check=False
        )
        for line in proc.stdout.decode("utf-8", "replace").splitlines():
            oid, _, local = line.partition(" ")
            clone = local[len(self.seen) :]
            if clone == me or not _ID.fullmatch(clone):
                continue
            got = self.reader.read(oid)
            yield clone, oid, (got[2] if got is not None and got[1] == "commit" else None)

    def fetched(self, me: str) -> list[Request]:
        """Other clones' requests as last fetched, soonest to end first."""
        found = []
        for clone, oid, raw in self._listed(me):
            if raw is None:
                continue
            base = first_parent(raw)
            said = trailers_of(message_of(raw))
            rid, until = said.get(REQUEST), until_of(said.get(VALID_UNTIL))
            if base is None or not is_id(rid) or until is None:
                continue
            assert rid is not None
            found.append(Request(clone, self.ref_of(clone), oid, rid, until, base))
        found.sort(key=lambda r: r.until)
        return found

    def ended(self, me: str, now: datetime) -> list[tuple[str, str]]:
        """Other clones' request refs (remote name, object as last fetched) that can never
        be carried: ended more than ENDED ago, or not a request at all. Each clone's ref
        stays after its request lands, so without this the queue's bound (`MAX_WAITING`)
        would fill with clones long gone and refuse every new one."""
        out: list[tuple[str, str]] = []
        for clone, oid, raw in self._listed(me):
            until = until_of(trailers_of(message_of(raw)).get(VALID_UNTIL)) if raw else None
            if until is None or until + ENDED < now:
                out.append((self.ref_of(clone), oid))
        return out[:MAX_ENDED]

    def landed_since(self, tip: str | None, bases: set[str]) -> dict[str, set[str]]:
        """For each of `bases` found among the LOOK_BACK last commits along `tip`'s first
        parents: the request ids of the commits from `tip` back to it (included). One
        walk, however many requests."""
        found: dict[str, set[str]] = {}
        ids: set[str] = set()
        at, depth = tip, 0
        while at is not None and depth <= LOOK_BACK and len(found) < len(bases):
            got = self.reader.read(at)
            if got is None or got[1] != "commit":
                break
            rid = trailers_of(message_of(got[2])).get(REQUEST)
            if rid:
                ids.add(rid)
            if at in bases:
                found[at] = set(ids)
            at, depth = first_parent(got[2]), depth + 1
        return found

    def publish(self, clone: str, commit: str, deadline: float) -> None:
        """Push `commit` as this clone's request, in a thread: it races nobody (the ref
        is this clone's), so the round goes on meanwhile. Best effort: unpublished, the
        write is only not carried, and goes on as before."""
        self.wait()
        assert self.upstream.remote is not None
        argv = ["push", "--porcelain", "--no-verify", self.upstream.remote]
        # Ended requests of others go in the same push, each only if it is still what we
        # fetched (a lease: a clone that published anew keeps its new request). Not
        # atomic: a lease that fails leaves our own request to land.
        gone = self.ended(clone, datetime.now(timezone.utc))
        argv += [f"--force-with-lease={ref}:{oid}" for ref, oid in gone]
        argv.append(f"+{commit}:{self.ref_of(clone)}")
        argv += [f":{ref}" for ref, _ in gone]

        def push() -> None:
            # Whatever goes wrong, a request not published is only not carried.
            with contextlib.suppress(Exception):
                self.upstream.run(argv, deadline, "push to")

        self._thread = threading.Thread(target=push, name="gitcoord-request", daemon=True)
        self._thread.start()

    def wait(self) -> None:
        """Let the last publication finish (before the next, and before the end)."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
