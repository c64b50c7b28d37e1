"""Tickets: clones that keep losing the race for the branch are served in the order
they began.

Compare-and-swap decides who was first at the remote, not who has waited longest:
measured at 50 ms of round trip, a clone lost 15 rounds in a row while 15 others landed
30 writes, and of two clones at 100 ms one landed nothing for the whole window (the
other wrote in one push each on the tip it knew, never fetching, so it never saw anyone
lose). Rules each clone applies alone, on what it saw, only trade one such case for
another (docs/scaling.md). Tickets let the clones agree on an order, through the remote.

On the remote, beside the branch and never on it, under `refs/gitcoord/tickets/<key>/`
(`<key>`: a hash of the branch's ref, so no two branch names collide):

    waiting/<clone>  a clone's wait: the branch commit it had when the wait began
    bell             a new commit (of the empty tree) on it with every new wait

A ticket points at a commit of the branch, which every clone has or fetches anyway: a
fetch that brings tickets along (one refspec more, into `refs/gitcoord/seen/...`) costs
no object more, and no round of negotiation more (measured: tickets that were commits
of their own made each fetch at 50 ms a round trip longer). Its place in the queue is
how far back along the branch that commit is (ties: by a hash of clone and commit), so
no clock is compared. The bell's commits chain (a fast-forward each time).

The rules, applied by each clone to what it last fetched:
- A transaction that went TICKET_AFTER rounds without landing (lost, or stood back for
  others) takes a ticket: one push of its ticket and the bell, all or nothing.
- The WINDOW oldest waits go (they race each other: the next is ready as soon as one
  lands); a clone with more live tickets older than its own ahead (any, holding none)
  does not push on the branch: it fetches again, half a round later when next in line,
  up to two rounds further back. The push that lands a holder's write deletes its ticket.
- Every other push on the branch carries the bell unchanged, with a lease on the value
  last seen: git sends nothing for a ref already at that value, and refuses the whole
  (atomic) push before sending it when the bell has rung since. A writer that keeps
  winning in one push on the tip it knows learns of a new wait at its next push, for no
  round trip more.
- A holder just served may write once more at once (`Pace.served_until`): a turn can
  carry two writes in a row, as a session's claim and the release that follows.
- A group's leader (`store.group`: the sessions of one clone in one push) decides for
  every member each round, so each round it loses costs them all a decision. It takes a
  ticket after its first lost round and goes only as the oldest wait (`Wait.grouped`);
  next in line, it looks again at once rather than half a round later; it does not give
  way after a win (the line does that); and it gives the wait ahead GROUP_HEAD_FLOOR
  before passing it over, since that may be a group whose turn takes seconds. While it
  stands back, each new tip it fetches is verified then (`TreeStore.waited_on`), so its
  turn verifies only the push before it. When its own ticket makes it the oldest, it
  fetches before deciding (the tickets it looked at came before that push, and the wait
  ahead may have landed meanwhile); first in line and beaten to the branch, it looks
  again as soon as it would next in line, not after a quarter of a round. Measured at
  200 sessions on 10 machines (50 ms, hook and signatures): every machine decided every
  round, ~11 decisions per operation that landed; in line, one machine decides at a time.
- A ticket is live while its commit is within DEPTH commits of the tip. One that stays
  in the window longer than `head_wait` (its holder may be gone: a killed process) is
  passed over, and so are all of them when nothing moved for that long (no write landed,
  no wait ahead ended): fake tickets cost a clone `head_wait` per transaction, however
  many. The next push of a clone that passed tickets over deletes them (MAX_EXPIRE).

Nothing here decides an outcome: compare-and-swap on the branch still does, and every
push states its leases. A ticket only says who should try. A client that ignores tickets
goes first; a broken or hostile one that fakes them holds the others back for
`head_wait`, never makes a write land twice or get lost. A remote that refuses these
refs (no atomic pushes, a rule or hook on refs outside the branches, no deletions) turns
them off in the clone for a day (`Pace.tickets_off`).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import GitcoordError
from ..gitio import Git, GitError, ObjectReader, ObjectWriter, first_parent, format_commit
from .remote import Also, AlsoRefused, RemoteBranch

WINDOW = 2  # the oldest this many waits go (race) at once: the next is ready when one lands
TICKET_AFTER = 3  # rounds without landing before a transaction takes a ticket
# A group's leader (`store.group`) decides for all its members each round: a round it
# loses costs each of them a decision. It takes a ticket at its first lost round and goes
# only when its ticket is the oldest (`Wait.grouped`).
GROUP_WINDOW = 1
GROUP_TICKET_AFTER = 1
# ...and gives the wait ahead of it at least this long before passing it over: the head
# of the line may be a group too, whose turn (verify what landed, every member decides,
# push) takes seconds, and passing it over sends two groups to decide on one tip.
GROUP_HEAD_FLOOR = 5.0
# Branch commits looked through for tickets' tips: older ones count for nothing. Groups
# land a commit per member in one push: at 10 machines of 20 sessions a queue's turn is
# ~200 commits, and a wait must stay live for a whole turn.
DEPTH = 1024
MAX_TICKETS = 64  # the oldest this many live tickets are looked at, the rest not
HEAD_ROUNDS = 4.0  # how long, in rounds, a clone waits for a ticket that may go...
HEAD_FLOOR = 1.0  # ...but at least this many seconds
MAX_EXPIRE = 16  # tickets passed over, deleted by one push at most
# What a server that judges tickets (`audit.tickets`) says of one past its limit: a
# round lost for the clone, not a remote that takes no tickets.
TICKETS_FULL = "the ticket queue is full"


@dataclass(frozen=True)
class Ticket:
    clone: str
    ref: str  # its ref on the remote
    oid: str  # the branch tip its holder knew when its wait began


def key(ref: str) -> str:
    return hashlib.sha1(ref.encode()).hexdigest()[:12]


def clone_id(common_dir: str) -> str:
    """This clone's name in the queue: random, made once, kept in .git/gitcoord/clone."""
    path = os.path.join(common_dir, "gitcoord", "clone")
    try:
        with open(path, encoding="ascii") as fh:
            got = fh.read().strip()
        if len(got) == 16 and all(c in "0123456789abcdef" for c in got):
            return got
    except (OSError, UnicodeDecodeError):
        pass
    made = secrets.token_hex(8)
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(tmp, "w", encoding="ascii") as fh:
            fh.write(made + "\n")
        try:
            os.link(tmp, path)  # the first one made wins: every process agrees on the name
        except FileExistsError:
            with open(path, encoding="ascii") as fh:
                made = fh.read().strip() or made
        except OSError:
            os.replace(tmp, path)
    except OSError:
        pass  # a .git this user cannot write: a name for this process alone will do
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return made


class Tickets:
    """The queue of one branch on one remote, as this clone sees and writes it."""

    def __init__(
        self,
        git: Git,
        reader: ObjectReader,
        writer: ObjectWriter,
        upstream: RemoteBranch,
        common_dir: str,
        signature: Callable[[], str],
    ) -> None:
        assert upstream.remote is not None
        self.git, self.reader, self.writer, self.upstream = git, reader, writer, upstream
        self.signature = signature
        k = key(upstream.ref)
        self.prefix = f"refs/gitcoord/tickets/{k}/"
        self.seen = f"refs/gitcoord/seen/{upstream.remote}/{k}/"
        self.bell_ref = self.prefix + "bell"
        self.clone = clone_id(common_dir)
        self.mine_ref = f"{self.prefix}waiting/{self.clone}"
        upstream.along = (self.prefix + "*", self.seen + "*")

    def read(self) -> tuple[str | None, list[Ticket]]:
        """The bell and the tickets as last fetched (no git process talks to the remote)."""
        got = self.reader.read(self.seen + "bell")
        if got is None:
            return None, []  # nobody ever waited on this branch (that this clone saw)
        proc = self.git.run(
            ["for-each-ref", "--format=%(objectname) %(refname)", self.seen + "waiting/"],
            check=False,
        )
        tickets = []
        for line in proc.stdout.decode("utf-8", "replace").splitlines():
            oid, _, local = line.partition(" ")
            clone = local[len(self.seen + "waiting/") :]
            tickets.append(Ticket(clone, f"{self.prefix}waiting/{clone}", oid))
        return got[0], tickets

    def depths(self, tip: str | None, wanted: set[str]) -> dict[str, int]:
        """How many commits back along the branch's first parents each of `wanted` is
        from `tip` (those found within DEPTH)."""
        found: dict[str, int] = {}
        at, depth = tip, 0
        while at is not None and depth < DEPTH and len(found) < len(wanted):
            if at in wanted:
                found[at] = depth
            got = self.reader.read(at)
            if got is None or got[1] != "commit":
                break
            at = first_parent(got[2])
            depth += 1
        return found

    def ring(self, bell: str | None) -> str:
        """A new commit on the bell: its value changes, and fetching it costs one object.
        It names this clone: two clones ringing the bell they both saw, in the same
        second, would otherwise make the same commit, and the later push would find the
        bell "up to date" (git says so before it checks the lease) and send its ticket
        without a ring, which the server refuses."""
        tree = self.writer.write("tree", b"")
        data = format_commit(
            tree,
            [bell] if bell else [],
            self.signature(),
            self.signature(),
            int(time.time()),
            f"gitcoord: someone waits on {self.upstream.branch}\n\nclone {self.clone}\n",
        )
        return self.writer.write("commit", data)

    def saw(self, updates: list[Also]) -> None:
        """Pushed: the seen copies say so (a cache: the next fetch rewrites them)."""
        lines = "".join(
            f"update {self.seen}{ref[len(self.prefix) :]} {new}\n"
            if new
            else f"delete {self.seen}{ref[len(self.prefix) :]}\n"
            for ref, old, new in updates
            if new != old
        )
        if lines:
            self.git.run(["update-ref", "--stdin"], input=lines.encode(), check=False)


class Wait:
    """One transaction's place in the queue: what it saw, the ticket it holds."""

    def __init__(self, tickets: Tickets, began: str | None) -> None:
        self.tickets = tickets
        self.began = began  # the branch tip this clone knew when the wait began
        self.bell: str | None = None
        self.mine: str | None = None  # our ticket ref's value on the remote (None: none)
        self.holding = False  # a ticket of this wait's is on the remote
        self.served = False  # the second write of a turn: it goes at once
        self.window = WINDOW  # how many of the oldest waits go at once, ours among them
        self.after = TICKET_AFTER  # rounds without landing before we take a ticket
        self.floor = HEAD_FLOOR  # the least we wait for a wait ahead before passing it
        self.rounds = 0  # rounds gone without landing
        self.back = 0  # what the last look said: rounds to stand back (0: go now)
        self._first: dict[str, float] = {}  # ticket ref -> when first waited for
        self.passed: dict[str, str] = {}  # tickets passed over: ref -> value
        # When the queue last moved (a write landed, a wait ahead ended), as last seen.
        self._moved = time.monotonic()
        self._tip: str | None = None
        self._waiting: set[str] = set()

    def look(self, unit: float, tip: str | None, fetched: bool = True) -> int:
        """After a fetch of `tip` (or on the mirror's, not `fetched`): how many rounds to
        stand back for before looking again, for tickets older than ours (0: go now).
        The further back, the longer: the queue moves by one write at a time."""
        if self.began is None and fetched:
            self.began = tip  # the wait began with the first fetch that had it wait
        self.bell, tickets = self.tickets.read()
        me = self.tickets.clone
        self.mine = next((t.oid for t in tickets if t.clone == me), None)
        if self.mine is None:
            self.holding = False  # deleted by another, who passed it over: go on without
        # Passed over as it was: once it changed (its holder is there) or is gone, no more.
        still = {t.ref: t.oid for t in tickets}
        self.passed = {r: o for r, o in self.passed.items() if still.get(r) == o}
        others = [t for t in tickets if t.clone != me]
        if not others:
            self.back = 0
            return 0
        wanted = {t.oid for t in others} | ({self.began} if self.began else set())
        depth = self.tickets.depths(tip, wanted)
        # Further back, or not on the branch: no wait, only a ref every fetch brings; the
        # next push deletes it. (A live one is always found: its holder fetched the commit
        # before pushing the ticket, so the branch fetched with the ticket is as new.)
        for t in others:
            if t.oid not in depth:
                self.passed.setdefault(t.ref, t.oid)

        # Oldest first: the furthest back along the branch, then by a hash of the name
        # and the tip (not the name alone: ties would always favour the same clones).
        def order(t: Ticket) -> tuple[int, str]:
            return -depth[t.oid], hashlib.sha1(f"{t.clone} {t.oid}".encode()).hexdigest()

        live = sorted((t for t in others if t.oid in depth), key=order)[:MAX_TICKETS]
        ours = None
        if self.holding and self.began in depth:
            ours = order(Ticket(me, self.tickets.mine_ref, self.began))
        now = time.monotonic()
        before = [t for t in live if ours is None or order(t) < ours]
        waiting = {t.ref for t in before}
        if tip != self._tip or not waiting >= self._waiting:
            self._moved = now  # a write landed, or a wait ahead of ours ended (not one
            # that we passed over: that is no sign of life)
        self._tip, self._waiting = tip, waiting
        patience = head_wait(unit, self.floor)
        stuck = now - self._moved > patience
        ahead = 0
        for t in before:
            if t.ref in self.passed:
                continue
            if stuck:  # nothing moved for a while: all of them are gone, or fake
                self.passed[t.ref] = t.oid
                continue
            if ahead < self.window:  # one of those who go now: timed
                first = self._first.setdefault(f"{t.ref} {t.oid}", now)
                if now - first > patience:
                    self.passed[t.ref] = t.oid  # its holder is gone, or too slow
                    continue
            ahead += 1
        self.back = max(0, ahead - self.window + 1)
        return self.back

    def grouped(self) -> None:
        """This transaction leads a group: a lost round costs every member a decision,
        so it waits in line at the first one, and goes only as the oldest wait."""
        self.window, self.after, self.floor = GROUP_WINDOW, GROUP_TICKET_AFTER, GROUP_HEAD_FLOOR

    def take(self, deadline: float) -> bool:
        """Push our ticket (and ring the bell): True when it is on the remote now."""
        if self.began is None:
            return False  # no branch yet: nothing to wait on
        t = self.tickets
        updates: list[Also] = [
            (t.mine_ref, self.mine, self.began),
            (t.bell_ref, self.bell, t.ring(self.bell)),
        ]
        try:
            landed = t.upstream.push_refs(updates, deadline)
        except AlsoRefused as exc:
            if TICKETS_FULL in str(exc):
                return False  # passed-over tickets are deleted by pushes: later, maybe
            raise
        if not landed:
            return False  # another rang first: the next fetch shows it, and we try again
        t.saw(updates)
        self.mine, self.bell, self.holding = self.began, updates[1][2], True
        return True

    def also(self) -> list[Also]:
        """What a push on the branch carries: our ticket deleted (served), else the bell
        as seen (its lease); tickets passed over, deleted."""
        t = self.tickets
        out: list[Also] = []
        if self.holding and self.mine is not None:
            out.append((t.mine_ref, self.mine, None))
        else:
            if self.bell is not None:
                out.append((t.bell_ref, self.bell, self.bell))
            if self.mine is not None:  # left by a wait of ours that was cut short
                out.append((t.mine_ref, self.mine, None))
        for ref, oid in list(self.passed.items())[:MAX_EXPIRE]:
            out.append((ref, oid, None))
        return out

    def landed(self, pushed: list[Also]) -> None:
        self.tickets.saw(pushed)
        self.holding = False
        for ref, _, new in pushed:
            if ref == self.tickets.mine_ref:
                self.mine = new
            self.passed.pop(ref, None)

    def leave(self, deadline: float) -> None:
        """The transaction ends without landing: our ticket, if any, deleted (best
        effort: else it holds the others back until passed over)."""
        if not self.holding or self.mine is None:
            return
        t = self.tickets
        served: list[Also] = [(t.mine_ref, self.mine, None)]
        try:
            if t.upstream.push_refs(served, deadline):
                t.saw(served)
        except (GitcoordError, GitError, OSError):
            pass  # a cleanup: the transaction's answer stands whatever happens here
        self.holding = False


def head_wait(unit: float, floor: float = HEAD_FLOOR) -> float:
    """How long a clone waits for one ticket's holder to land before passing it over."""
    return max(floor, HEAD_ROUNDS * unit)
