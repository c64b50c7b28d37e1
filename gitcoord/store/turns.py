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
import math
import os
import random
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

from ..errors import RemoteError
from .cancel import CANCELLED, check


def turn_file(
    common_dir: str, remote: str | None, ref: str, remote_url: str | None
) -> tuple[str, str] | None:
    """The file whose flock is this clone's turn (or this machine's) to write `ref` of
    `remote`, and whose turn it is ("clone" or "machine"); None: no turns at all."""
    # One turn per clone (and remote branch) by default: sessions sharing a clone
    # would only race each other for its mirror ref and burn pushes. Separate clones
    # race through the remote, as separate machines do: with each transaction now
    # parsing only what changed, racing (compare-and-swap, backoff) overlaps their
    # fetches and beat a machine-wide turn by 1.2-1.8x at 8 and 16 clones
    # (benchmarks, 2 cores). `machine` keeps the machine-wide turn, keyed by URL.
    scope = os.environ.get("GITCOORD_TURN", "clone")
    if scope == "none":  # no turns at all: every transaction races (tests use this)
        return None
    if remote_url and scope == "machine":  # else "clone"
        base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
        folder = os.path.join(base, f"gitcoord-{os.getuid()}")
        scope, who = f"{remote_url}\0{ref}", "machine"
    else:
        folder = os.path.join(common_dir, "gitcoord")
        scope, who = f"{remote}\0{ref}", "clone"
    os.makedirs(folder, mode=0o700, exist_ok=True)
    key = hashlib.sha1(scope.encode()).hexdigest()[:12]
    return os.path.join(folder, f"turn-{key}.flock"), who


def turn_timeout(who: str, timeout: float) -> RemoteError:
    return RemoteError(
        f"timed out after {timeout:g}s waiting for this {who}'s other "
        "gitcoord commands; nothing was written"
    )


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
    found = turn_file(common_dir, remote, ref, remote_url)
    if found is None:
        yield
        return
    path, who = found
    fh = _turn(path, deadline)
    if fh is None:
        raise turn_timeout(who, timeout)
    try:
        yield
    finally:
        fh.close()  # releases the flock: the kernel wakes a waiter at once


class TurnWaiter:
    """A place in the queue for the turn file's flock: taken at once if free, else
    waited for in a thread (the kernel wakes it the moment the holder lets go), so the
    caller can do other things meanwhile — look for a leader to join (`group`) —
    without losing its place.

    A waiter given up on (`abandon`) closes its file (and so the lock) itself whenever
    it gets it; its file is never the caller's.
    """

    def __init__(self, path: str) -> None:
        self.fh: IO[str] | None = open(path, "a")  # noqa: SIM115 (closed by release/abandon)
        self._guard = threading.Lock()
        self._got = threading.Event()
        self._abandoned = False
        try:
            fcntl.flock(self.fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            self._got.set()
            return
        except BlockingIOError:
            pass
        except BaseException:
            self.fh.close()
            raise
        threading.Thread(target=self._wait, name="gitcoord-turn", daemon=True).start()

    def _wait(self) -> None:
        fh = self.fh
        assert fh is not None
        try:
            fcntl.flock(fh, fcntl.LOCK_EX)
        except OSError:
            fh.close()
            return
        with self._guard:  # decided under the guard: taken, or given up on, never both
            if self._abandoned:
                fh.close()
            else:
                self._got.set()

    def wait(self, seconds: float) -> bool:
        """Whether the turn is ours, waiting `seconds` at most."""
        return self._got.wait(max(0.0, seconds))

    def abandon(self) -> bool:
        """Give up the place (or the turn, if it came meanwhile: then True)."""
        with self._guard:
            if self._got.is_set():
                return True
            self._abandoned = True
            return False

    def release(self) -> None:
        """Let go of the turn (held) or of the place in the queue (not yet)."""
        if self.abandon() and self.fh is not None:
            self.fh.close()  # releases the flock: the kernel wakes a waiter at once
        self.fh = None


def _turn(path: str, deadline: float) -> IO[str] | None:
    """The turn file, flocked, or None at the deadline.

    A waiter blocks in flock() (in a thread, so the deadline holds): the kernel
    wakes it the moment the holder lets go. Polling with sleeps left gaps between
    turns that, once a transaction took ~85 ms, cost a third of the throughput of
    8 sessions taking turns.
    """
    waiter = TurnWaiter(path)
    while not CANCELLED.is_set():  # woken every 0.1 s to see whether the user gave up
        if waiter.wait(min(0.1, max(0.0, deadline - time.monotonic()))):
            return waiter.fh
        if time.monotonic() >= deadline:
            break
    if waiter.abandon():
        return waiter.fh
    check()  # the user stopped it: say so rather than "timed out"
    return None


# The server's side: pushes to the coordination branch are judged one at a time.
JUDGE_WAIT = 10.0  # seconds a push waits for those judged before it (then judged anyway)
LANDING_WAIT = 1.0  # seconds a push accepted before this one has to land on the ref


@dataclass(frozen=True)
class Judging:
    """This push's turn to be judged, and what the push judged before it left:
    `accepted` (old, new) if that one passed the hook (it may not have landed yet:
    git updates the ref after the hook exits)."""

    held: bool
    accepted: tuple[str, str] | None
    record: str

    def accept(self, old: str, new: str) -> None:
        """This push passed: the next one judged knows it is about to land."""
        if not self.held:
            return
        _write_line(self.record, f"{old} {new}\n")


def _write_line(path: str, line: str) -> None:
    """`path` holding `line`, replaced whole (a reader sees the old file or the new);
    a read-only repository goes without: these files only save work."""
    tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(tmp, "w", encoding="ascii") as fh:
            fh.write(line)
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def judge_files(common_dir: str, ref: str) -> tuple[str, str]:
    """The judging turn's lock file for `ref`, and the file naming the push it last
    accepted ("old new")."""
    folder = os.path.join(common_dir, "gitcoord")
    key = hashlib.sha1(ref.encode()).hexdigest()[:12]
    return os.path.join(folder, f"judge-{key}.flock"), os.path.join(folder, f"judged-{key}")


@contextlib.contextmanager
def judging(common_dir: str, ref: str, wait: float = JUDGE_WAIT) -> Iterator[Judging]:
    """The turn to judge a push to `ref` of this (server's) repository.

    Pushes that race from one tip all reach the hook before any of them moves the ref
    (git updates it after the hook); judged side by side, each costs the server a whole
    verification and all but one are then refused under the ref's lock. In turns, the
    first is judged and the others, when their turn comes, find the ref moved and are
    refused at once. The turn is an optimisation only: what lands is still decided by
    the ref's own compare-and-swap, so one not had in `wait` seconds (or a repository
    where the lock file cannot be made) is judged without it."""
    lock, record = judge_files(common_dir, ref)
    try:
        os.makedirs(os.path.dirname(lock), exist_ok=True)
        fh = _turn(lock, time.monotonic() + wait)
    except OSError:
        fh = None
    try:
        accepted = None
        if fh is not None:
            try:
                with open(record, encoding="ascii") as rf:
                    words = rf.read().split()
                if len(words) == 2:
                    accepted = (words[0], words[1])
            except (OSError, UnicodeDecodeError):
                pass
        yield Judging(fh is not None, accepted, record)
    finally:
        if fh is not None:
            fh.close()


# The backoff's bounds, in rounds (a round: fetch, decide, push, as measured here).
WINDOW_ROUNDS = 4.0  # the widest window a loser waits in, however often it lost
AGED_ROUNDS = 8.0  # past a wait of AGED_ROUNDS / WINDOW_ROUNDS rounds, the window shrinks
MIN_WINDOW_ROUNDS = 0.1  # ...down to this: the longest waiters go round almost at once


class Backoff:
    """How long to wait before going again, after a lost round (or a busy ref lock).

    Bounded and fair rather than merely spread out: a loser waits a random while in a
    window of 1, 2, then at most WINDOW_ROUNDS round-lengths, and the longer it has
    waited in all the narrower its window gets again, so sessions that have waited
    longest go round most often, and fetch again right after the commit that beat
    them: they are the ones ready when a winner gives way (`Pace`), and so served
    roughly in the order they began.
    (Before: full jitter doubling per attempt up to a third of the time left, which
    let an unlucky session sit out seconds while others kept winning.)
    """

    def __init__(self) -> None:
        self.round = 0.0  # how long a round takes here (the backoff's unit)

    def window(self, attempt: int, waited: float) -> float:
        unit = max(0.015, self.round)
        rounds = min(2.0 ** max(0, attempt - 1), WINDOW_ROUNDS)
        if waited > 0:
            rounds = min(rounds, max(MIN_WINDOW_ROUNDS, AGED_ROUNDS * unit / waited))
        return unit * rounds

    def sleep(self, attempt: int, deadline: float, waited: float = 0.0) -> None:
        left = deadline - time.monotonic()
        delay = random.uniform(0, min(left / 3, self.window(attempt, waited)))
        CANCELLED.wait(max(0.0, min(delay, left)))  # a user's Ctrl-C ends the wait at once


# How long contention, once seen, keeps a clone polite (in rounds): a winner gives way
# after each win until it has seen no other writer for this long.
CONTENDED_ROUNDS = 8.0
MIN_ROUND = 0.05  # a round's length before one was measured (seconds)
MAX_ROUND = 60.0  # longer is no round: a clock or a file gone wrong
# After this many back-to-back writes in one push each, or such a run this long (in
# seconds), a clone gives way for a round: the only way a writer that keeps winning lets
# in (and so learns of) others who lose. The time bound is for pushes that carry a whole
# group (group commit): measured at 200 sessions on 10 machines, one machine won every
# push for 25 s in 8 pushes, never reaching the count, and 180 sessions landed nothing.
STREAK = 8
STREAK_SECONDS = 4.0
# The most rounds a winner under contention gives way for (one per round its win took).
GIVE_WAY_ROUNDS = 4
# Deciding on the mirror without a fetch is worth it while the tip most likely still
# stands: a push refused on a stale tip costs a round trip and counts against a host's
# push budget, a fetch costs a round trip only. Above this chance that it moved, fetch.
RISK = 0.2
TICKETS_OFF = 86400.0  # seconds: tickets stay off this long after a remote refused them
WATCH_DECAY = 0.5  # per look: the last few looks at the branch say how busy it is
WATCH_CAP = 600.0  # seconds: the most one look counts for


@dataclass
class Pace:
    """What this clone learnt about its branch's traffic, kept between commands: one
    small file per clone and branch in `.git/gitcoord/pace/`, read and written by each
    transaction in its turn. A cache: a missing or unreadable file is the default.

    - `speculate`: decide first on the last tip this clone knows (its mirror ref, as
      its own last push or fetch left it) and push without fetching: one round trip
      when nothing raced. Turned off when such a push is refused (the mirror is stale
      more often than not while others write, and each refused push is a round trip
      wasted), on again when a fetch finds the branch where this clone left it. Not
      used while contended.
    - `round`: how long a fetching round (fetch, decide, push) takes here, averaged:
      the backoff's unit and the length of a give-way.
    - `known_at` (wall clock): when this clone last learnt the tip (a fetch, or its
      own accepted push): a tip found moved soon after means others write right now.
    - `contended_until` (wall clock): contention seen — a round lost to another writer,
      or the tip found moved within a few rounds of learning it — keeps the clone
      polite for CONTENDED_ROUNDS rounds: each win is followed by a give-way.
    - `give_way_until` (wall clock): the next transaction waits until then, after a win
      under contention for as many rounds as the win took (up to GIVE_WAY_ROUNDS: those
      it beat are as far into their wait), so that they get a turn; and after every
      STREAK-th of a run of back-to-back writes that each took one push (`streak`
      counts them), or once such a run has lasted STREAK_SECONDS (`streak_since`:
      when it began). A writer whose own pushes keep its mirror current writes in one
      push where the others need a fetch and a push: it would win every time and,
      seeing nothing of those who lose, never give way. Its pause lets them in, and
      their commit on its tip is then the contention it sees.
    - `watched`, `others`: how long this clone has watched the branch (the time from
      knowing a tip to finding out whether it moved) and how many commits of others
      landed meanwhile, both decayed per look (`observe`): the rate at which others
      write, which says how likely the mirror is stale by now (`risk`). A clone whose
      sessions write every few minutes on a branch that others write to every few
      seconds fetches first: else each of its writes would cost a refused push, which
      a host counts as much as one that lands (measured in the 50-session workday:
      29 of 33 refused pushes were pushes on a stale mirror).
    - `tickets_off` (wall clock): until then no tickets (`store.tickets`): the remote
      refused them. `look`: the next transaction fetches before it speculates unless
      it knows the branch's bell (set at the end of a streak). `served_until` (wall
      clock): this clone's ticket was just served; a transaction of its that begins
      before then goes at once, as its turn's second write.
    """

    speculate: bool = True
    round: float = 0.0
    known_at: float = 0.0
    contended_until: float = 0.0
    give_way_until: float = 0.0
    streak: int = 0
    streak_since: float = 0.0
    watched: float = 0.0
    others: float = 0.0
    tickets_off: float = 0.0
    look: bool = False
    served_until: float = 0.0

    @classmethod
    def path(cls, common_dir: str, remote: str | None, ref: str) -> str:
        key = hashlib.sha1(f"{remote}\0{ref}".encode()).hexdigest()[:12]
        return os.path.join(common_dir, "gitcoord", "pace", key)

    @classmethod
    def load(cls, path: str) -> Pace:
        try:
            with open(path, encoding="ascii") as fh:
                speculate, *numbers = fh.read().split()
            round_, known, contended, give_way = (float(x) for x in numbers[:4])
            streak = max(0, int(numbers[4]))
            since = float(numbers[5]) if len(numbers) > 5 else 0.0  # (older files: none)
            watched, others = (float(x) for x in (numbers[6:8] if len(numbers) > 7 else (0, 0)))
            off = float(numbers[8]) if len(numbers) > 8 else 0.0
            look = len(numbers) > 9 and numbers[9] == "1"
            served = float(numbers[10]) if len(numbers) > 10 else 0.0
        except (OSError, ValueError, UnicodeDecodeError):
            return cls()
        if not all(map(math.isfinite, (round_, known, contended, give_way, since))):
            return cls()
        if not (math.isfinite(watched) and math.isfinite(others)):
            watched = others = 0.0
        watched, others = min(max(0.0, watched), 2 * WATCH_CAP), max(0.0, others)
        # Times further ahead than they can be set are from a clock set back since:
        # forgotten, so that nothing waits on them.
        round_ = min(max(0.0, round_), MAX_ROUND)
        now = time.time()
        if known > now + MAX_ROUND:
            known = 0.0
        if give_way > now + MAX_ROUND:
            give_way = 0.0
        if contended > now + (CONTENDED_ROUNDS + 1) * MAX_ROUND:
            contended = 0.0
        if since > now + MAX_ROUND:
            since = 0.0
        if not math.isfinite(off) or off > now + TICKETS_OFF:
            off = 0.0
        if not math.isfinite(served) or served > now + MAX_ROUND:
            served = 0.0
        return cls(
            speculate == "1",
            round_,
            known,
            contended,
            give_way,
            streak,
            since,
            watched,
            others,
            off,
            look,
            served,
        )

    def save(self, path: str) -> None:
        line = (
            f"{int(self.speculate)} {self.round:.4f} {self.known_at:.3f} "
            f"{self.contended_until:.3f} {self.give_way_until:.3f} {self.streak} "
            f"{self.streak_since:.3f} {self.watched:.3f} {self.others:.3f} "
            f"{self.tickets_off:.3f} {int(self.look)} {self.served_until:.3f}\n"
        )
        _write_line(path, line)

    @property
    def unit(self) -> float:
        return max(MIN_ROUND, self.round)

    def learn(self, seconds: float) -> None:
        """A fetching round took `seconds`: fold it into the average."""
        self.round = seconds if self.round <= 0 else 0.7 * self.round + 0.3 * seconds

    def may_speculate(self, now: float) -> bool:
        """Whether this transaction decides first on the mirror, without fetching."""
        if now - self.known_at >= CONTENDED_ROUNDS * self.unit:
            self.streak = 0  # not back-to-back: a new run
        return self.speculate and now >= self.contended_until and self.risk(now) <= RISK

    def observe(self, now: float, commits: int) -> None:
        """A look at the branch at `now` found `commits` commits of others on the tip
        this clone knew (at `known_at`). A long absence counts as WATCH_CAP seconds, so
        that a night away does not make a busy branch look quiet."""
        if self.known_at <= 0 or now < self.known_at:
            return
        self.watched = WATCH_DECAY * self.watched + min(now - self.known_at, WATCH_CAP)
        self.others = WATCH_DECAY * self.others + max(0, commits)

    def risk(self, now: float) -> float:
        """The chance that others moved the tip since this clone knew it, at the rate
        seen (as if their commits came at random)."""
        if self.others <= 0:
            return 0.0
        if self.watched <= 0:
            return 1.0
        return 1.0 - math.exp(-self.others / self.watched * max(0.0, now - self.known_at))

    def knew(self, now: float) -> None:
        """This clone learnt the tip at `now` (fetched it, or its push was accepted)."""
        self.known_at = now

    def moved(self, now: float) -> None:
        """The tip was found moved by another writer: contention if this clone knew
        it only a few rounds ago (not when it had been away)."""
        if now - self.known_at < CONTENDED_ROUNDS * self.unit:
            self.contend(now)

    def contend(self, now: float) -> None:
        self.contended_until = now + CONTENDED_ROUNDS * self.unit

    def won(
        self,
        now: float,
        speculated: bool,
        took: float,
        rounds: int = 1,
        pushed: float | None = None,
    ) -> None:
        """A win, in one push if `speculated`, after `took` seconds (`pushed` of them in
        the push) and `rounds` rounds: under contention the next transaction gives way
        for as many rounds as this win took (up to GIVE_WAY_ROUNDS: the others are as
        many rounds into their wait), at the end of a streak for a round."""
        self.knew(now)
        if now < self.contended_until:
            self.give_way_until = now + self.unit * min(max(1, rounds), GIVE_WAY_ROUNDS)
        if speculated:
            if self.streak == 0:
                self.streak_since = now - took  # the run began with this write
            self.streak += 1
            if self.streak >= STREAK or now - self.streak_since >= STREAK_SECONDS:
                self.streak = 0
                # A round the others can use: a fetch and a push, ~2 pushes (a fetching
                # round here, at least). Pushes, not this win's whole time: a group's
                # took its members' decisions too, which the others need not wait out.
                push = took if pushed is None else min(took, max(0.0, pushed))
                self.give_way_until = now + max(self.unit, 2 * push)
                # ...and then fetch: a clone that knows no bell (`store.tickets`) learns
                # of those waiting only so.
                self.look = True
