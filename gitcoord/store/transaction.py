"""The store: a branch as a compare-and-swap register of trees.

One transaction, whatever the trees mean (the domain's gate, `gitcoord.domain.branch`,
decides that):

    take the tip: the last one this clone knows (its mirror ref, as its own last push
        or fetch left it), or one read a moment ago, or else fetch it
    decision = decide(tip)            # nothing to write, or files + message + time
    write blobs, trees and a commit whose parent is the tip (no work tree, no index)
    compare-and-swap the branch from tip to the commit (`remote.RemoteBranch.swap`)
    on losing the race: fetch, back off with jitter, and go round again on the new tip

When nothing raced, a write is one round trip: the push, whose lease is the tip this
clone last saw. A push refused because that tip was stale costs no backoff: the round
fetches and decides again. A decision that writes nothing (Unchanged, or an error
such as a conflict) is never reported from a tip that was not fetched for it: the
tip is fetched and, if it moved, decided again; only that answer is reported.

The loser never merges: it re-reads and `decide` decides afresh, so a claim that
someone else won becomes exit 3 naming the winner. A push whose reply was lost is
not repeated blindly: the next round sees whether the commit is already on the
branch and reports success instead of writing a duplicate.

Transactions of one clone take turns, and go in groups (`group`): the turn holder
leads whoever waits for the turn meanwhile — each decides in its own process on the
commit the one before left, and the chain goes in the holder's one push.

Riders (`Rider`, offered by `riders`) are writes kept in this clone that wait for a
push to ride: after the group's commits, the holder decides each on the chain so far
and adds its commit to the same push. They never cause a push of their own unless
one of them is `due`. One the remote's hook refuses never sinks the push it rides:
the writes go again without the riders, which turn `suspect` and from then on go
only alone, where a refusal drops the one that caused it.
"""

from __future__ import annotations

import dataclasses
import itertools
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Generic, Protocol, TypeVar

from ..errors import Cancelled, GitcoordError, InvalidError, RemoteError
from ..gitio import Git, ObjectReader, ObjectWriter, RepoInfo, commit_parents, first_parent
from . import cancel, group, parsecache, requests, trees
from .parsecache import ParseCache
from .remote import AlsoRefused, RemoteBranch
from .requests import Request, Requests
from .tickets import Tickets, Wait
from .trees import Files, TreeSource
from .turns import (
    TICKETS_OFF,
    Backoff,
    Pace,
    TurnWaiter,
    local_turn,
    turn_file,
    turn_timeout,
)

DEFAULT_TIMEOUT = 30.0
MAX_ATTEMPTS = 100  # a bound on rounds; the timeout is the one that matters
MAX_GIVE_WAY = 5.0  # seconds
NEXT_IN_LINE = 0.05  # seconds a group next in the remote's queue waits between looks
LEAVE_TIMEOUT = 2.0  # seconds: for a ticket's last push, when its transaction did not land
MAX_RIDERS = 32  # per push: a bound on what one push carries besides its own writes
MAX_ROOTS = 4096  # commits whose root tree `tree_of` keeps
HEX = "0123456789abcdef"

R = TypeVar("R")


class Signer(Protocol):
    """A key that signs commits: its public half, and the armored signature of bytes."""

    @property
    def public(self) -> str: ...

    def sign(self, payload: bytes) -> bytes: ...


@dataclass(frozen=True)
class Identity:
    name: str
    email: str

    def signature(self) -> str:
        return f"{self.name} <{self.email}>"


@dataclass(frozen=True)
class Unchanged(Generic[R]):
    """`decide`'s answer when there is nothing to write."""

    result: R


@dataclass(frozen=True)
class Write(Generic[R]):
    """`decide`'s answer: write `files` over the tip's tree as one commit."""

    files: Files
    message: str
    when: datetime
    result: R
    commit: str | None = None  # that commit, when `decide` wrote it already (to judge it)
    # Who signs it: a role the store's `signers` maps to a key (the domain's choice:
    # "session" for what a session does, "person" for what only a person may).
    signer: str | None = None
    signature_required: bool = False
    # The branch takes carried commits (its format): a refused push of this write may be
    # published as a request for another clone to carry (`store.requests`).
    carriable: bool = False


Decision = Unchanged[R] | Write[R]


class Rider(Protocol):
    """A write kept in this clone until a push carries it (`TreeStore.riders`)."""

    @property
    def due(self) -> bool:
        """It must go now: a push is made for it even if nothing else writes."""
        ...

    def decide(self, tip: str | None) -> Decision[Any]:
        """Its commit's content on `tip` (Unchanged: the branch already says so)."""
        ...

    @property
    def suspect(self) -> bool:
        """A push it rode in was refused by the remote: it now goes only alone."""
        ...

    def settled(self, commit: str | None) -> None:
        """It is on the branch (`commit`, or None: it was already), or it never can be
        (decide refused it, or the remote refused it alone): no longer kept."""
        ...

    def refused(self) -> None:
        """The remote refused a push it rode in with others: it becomes `suspect`."""
        ...


@dataclass(frozen=True)
class Known:
    """A tip read a moment ago (`None`: no branch), for the first round to decide on."""

    tip: str | None


@dataclass
class Done(Generic[R]):
    """What a transaction did."""

    result: R
    commit: str | None  # None when nothing was written
    tip: str | None  # the tip it was decided on
    attempts: int
    # What this transaction's push put on the branch over `tip`, when it pushed: the
    # last commit of its chain (its own, the group's, riders), all of this clone's.
    landed: str | None = None
    # Another clone's push carried this write (`store.requests`): `commit` is the carried
    # commit, which this clone did not write (its verifier judges it like any other).
    carried: bool = False


@dataclass(frozen=True)
class _Own(Generic[R]):
    """What a round decided for the leader's own operation: a commit, an answer, or an
    error — each reported only once the round's verdict stands."""

    commit: str | None
    result: R | None
    error: GitcoordError | None

    def done(self, tip: str | None, attempt: int, landed: str | None = None) -> Done[R]:
        if self.error is not None:
            raise self.error
        return Done(self.result, self.commit, tip, attempt, landed)  # type: ignore[arg-type]


class TreeStore:
    """One branch (of a remote, or local) of one repository, as a register of trees."""

    def __init__(
        self,
        info: RepoInfo,
        git: Git,
        *,
        branch: str,
        remote: str | None,
        identity: Identity,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.info = info
        self.git = git
        self.identity = identity
        self.timeout = timeout
        self.reader = ObjectReader(git)
        self._roots: dict[str, str] = {}  # commit id -> its root tree (`tree_of`)
        self.writer = ObjectWriter(info)
        self.backoff = Backoff()
        self.upstream = RemoteBranch(
            info, git, self.reader, self.backoff, branch=branch, remote=remote, timeout=timeout
        )
        self.branch = branch
        self.remote = remote
        self.ref = self.upstream.ref
        self.mirror = self.upstream.mirror
        self.remote_url: str | None = None  # the machine-wide turn's key, when known
        # role, required -> the key that signs such a commit (None: unsigned); by the API
        self.signers: Callable[[str, bool], Signer | None] | None = None
        # Told of each file a commit writes (path, blob id, bytes): the domain keeps what
        # its files parse to for the loads to come. `parsed`: the domain's parse cache,
        # whose new entries a group hands on from member to member (`store.group`).
        self.wrote: Callable[[str, str, bytes], None] | None = None
        self.parsed: ParseCache | None = None
        self._parsed_in: dict[str, Any] | None = None  # what the last round's deciders parsed
        # Called with each tip fetched while this transaction stands back for older
        # tickets (`_stand_back`): the domain verifies it then, off the turn's own path.
        self.waited_on: Callable[[str | None], None] | None = None
        self._pending: list[tuple[str, Any]] = []  # (commit, result) maybe landed
        # While a member decides: the tip under the local chain it decides on (the
        # domain verifies that tip; the chain's commits are this clone's own, judged as
        # each was written).
        self.chained_on: tuple[str | None] | None = None
        self.pace_path = Pace.path(info.common_dir, remote, self.ref)
        self.pace = Pace()  # as the last transaction left it (read again by each one)
        # What this clone keeps for a ride (by the API: held heartbeats); asked each round.
        self.riders: Callable[[], list[Rider]] | None = None
        self.rode: list[str] = []  # the riders' commits the last transaction landed
        # Nobody waits on this transaction (a flush of what is kept): fetch first rather
        # than risk a push refused on a stale mirror — a fetch costs no push budget.
        self.patient = False
        # The order in which clones that keep losing go (None: local, nobody races).
        self.tickets = (
            Tickets(
                git, self.reader, self.writer, self.upstream, info.common_dir, identity.signature
            )
            if remote is not None
            else None
        )
        self.waiting: Wait | None = None  # this transaction's place among them
        # Carrying (`store.requests`): the requests of clones that wait, as fetched with
        # the tickets, and the domain's word on carrying one on a chain (set by the API:
        # the carried commit, or None when it may not go there).
        self.requests = (
            Requests(git, self.reader, self.upstream, self.tickets.prefix, self.tickets.seen)
            if self.tickets is not None
            else None
        )
        self.carrier: Callable[[str | None, Request], str | None] | None = None
        self._rid: str | None = None  # this transaction's request id, when it carries

    def close(self) -> None:
        self.reader.close()

    def __enter__(self) -> TreeStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def where(self) -> str:
        return self.upstream.where

    # --- reading -------------------------------------------------------------

    def fetch_tip(self, deadline: float) -> str | None:
        """The branch tip as it is now: fetched from the remote, or read locally."""
        return self.upstream.fetch_tip(deadline)

    def mirror_tip(self) -> str | None:
        """The tip as last fetched, without asking the remote."""
        return self.upstream.mirror_tip()

    def tree_of(self, commit: str) -> str | None:
        if (hit := self._roots.get(commit)) is not None:
            return hit
        tree = trees.tree_of(self.reader, commit)
        # Kept by commit id (never by a ref's name, which moves): a verified range loads
        # each commit's state as the new state of one and the old state of the next.
        if tree is not None and len(commit) == len(tree) and not commit.strip(HEX):
            if len(self._roots) >= MAX_ROOTS:
                self._roots.clear()
            self._roots[commit] = tree
        return tree

    def view(self, commit: str | None, parsed: ParseCache | None = None) -> TreeSource:
        """The tree of `commit` (empty when None or unknown), read on demand."""
        return TreeSource(self.reader, self.tree_of(commit) if commit else None, parsed, commit)

    def last_commit(self, tip: str, path: str) -> str | None:
        """The last commit in the history of `tip` that changed `path`."""
        proc = self.git.run(["log", "-1", "--format=%H", tip, "--", path], check=False)
        return proc.stdout.decode().strip() or None

    # --- writing -------------------------------------------------------------

    def write_commit(
        self,
        tip: str | None,
        files: Files,
        message: str,
        when: datetime,
        signer: str | None = None,
        required: bool = False,
    ) -> str:
        """A commit of `files` over `tip`'s tree, written but not on any branch; signed
        by the key `signers` gives for `signer` (a role), if any."""
        sig = self.identity.signature()
        sign = self._sign(signer, required)
        return trees.write_commit(
            self.reader, self.writer, tip, files, message, when, sig, sign, self.wrote
        )

    def _written(self, tip: str | None, decision: Write[Any]) -> str:
        """The commit of `decision` on `tip` (written now, unless `decide` wrote it)."""
        return decision.commit or self.write_commit(
            tip,
            decision.files,
            decision.message,
            decision.when,
            decision.signer,
            decision.signature_required,
        )

    def signer(self, role: str | None, required: bool) -> Signer | None:
        return self.signers(role, required) if role and self.signers else None

    def _sign(self, role: str | None, required: bool) -> Callable[[bytes], bytes] | None:
        key = self.signer(role, required)
        return key.sign if key is not None else None

    def write_tree_commit(
        self,
        tip: str | None,
        tree: str,
        message: str,
        when: datetime,
        signer: str | None = None,
        required: bool = False,
    ) -> str:
        """A commit of an existing `tree` over `tip` (a restoring commit's), signed as
        `write_commit` signs."""
        sig = self.identity.signature()
        return trees.commit_tree(
            self.writer, tree, tip, message, when, sig, self._sign(signer, required)
        )

    def publish_branch(self, branch: str, commit: str) -> None:
        """Create `refs/heads/<branch>` at `commit` (on the remote when there is one)."""
        self.upstream.publish_branch(branch, commit)

    def remove_branch(self, branch: str) -> bool:
        """Delete `refs/heads/<branch>` (on the remote when there is one), best effort."""
        return self.upstream.remove_branch(branch)

    def transact(
        self, decide: Callable[[str | None], Decision[R]], *, known: Known | None = None
    ) -> Done[R]:
        """Write what `decide(tip)` decides on the tip, as one commit swapped in for
        it; on a lost race, again on the new tip. `decide` raising ends the transaction
        with nothing written.

        The first round decides on a tip it does not fetch: `known`, a tip fetched a
        moment ago (e.g. by the read that led to this write), else the last tip this
        clone knows (the mirror ref: its own last push or fetch; `Pace.speculate`).
        Nothing is assumed: if the branch moved since, compare-and-swap refuses and
        the next round fetches. An answer that writes nothing — Unchanged, or `decide`
        raising — on the mirror's tip is confirmed by a fetch: reported if the tip
        still stands, else decided again on the fetched one (`known` was fetched for
        it: its answers stand as they are).

        Transactions from one clone take turns (an flock, released by the kernel
        even on kill -9): racing each other through the remote would only burn
        pushes, since all but one would lose. Across clones, compare-and-swap decides.
        One that finds the turn taken joins its holder's batch instead of waiting
        (group commit, `store.group`): `decide` then runs when the holder asks, on the
        commit the one before it left, and the holder's push carries its commit; if
        the holder goes without a verdict, it waits for the turn again.
        """
        deadline = time.monotonic() + self.timeout
        found = None
        if group.enabled(self.remote):
            found = turn_file(self.info.common_dir, self.remote, self.ref, self.remote_url)
        if found is None:  # no turns, or no grouping: this transaction pushes alone
            with local_turn(
                self.info.common_dir, self.remote, self.ref, self.remote_url, deadline, self.timeout
            ):
                return self._lead(decide, deadline, known, None, [])
        path, who = found
        meet = group.rendezvous(self.info.common_dir, self.remote, self.ref)
        pendings: list[tuple[str, Any]] = []  # commits of ours a leader had, maybe landed
        waiter = TurnWaiter(path)
        try:
            while True:
                try:
                    chan = self._queue(waiter, meet, deadline, who, pendings)
                except (RemoteError, Cancelled) as exc:
                    return self._give_up(exc, pendings)
                if chan is None:  # the turn is ours: lead whoever joins
                    leader = group.Leader.open(meet)
                    try:
                        return self._lead(decide, deadline, known, leader, pendings)
                    finally:
                        if leader is not None:
                            leader.close()  # before the turn is let go
                try:
                    done = self._follow(chan, decide, deadline, pendings)
                except (RemoteError, Cancelled) as exc:
                    return self._give_up(exc, pendings)
                finally:
                    chan.close()
                if done is not None:
                    return done
                known = None  # the leader went without a verdict: wait for the turn again
        finally:
            waiter.release()

    def _lead(
        self,
        decide: Callable[[str | None], Decision[R]],
        deadline: float,
        known: Known | None,
        leader: group.Leader | None,
        pendings: list[tuple[str, Any]],
    ) -> Done[R]:
        """This transaction's rounds, holding the turn (and those of `leader`'s members)."""
        # Read in the turn: what this clone's last transaction learnt is current.
        self.pace = pace = Pace.load(self.pace_path)
        before = dataclasses.replace(pace)
        self._give_way(pace, deadline, leader)
        try:
            return self._attempts(decide, deadline, known, leader, pendings)
        except RemoteError as exc:
            if not self._pending:
                raise
            return self._settle_pending(exc)
        finally:
            if pace != before:  # in the turn: the clone's next writer reads it
                pace.save(self.pace_path)

    def _queue(
        self,
        waiter: TurnWaiter,
        meet: str | None,
        deadline: float,
        who: str,
        pendings: list[tuple[str, Any]],
    ) -> group.Channel | None:
        """Wait for the turn (None: ours) or for a leader to join (its channel)."""
        while True:
            if waiter.wait(0.0):
                return None
            if meet is not None and (chan := group.join(meet)) is not None:
                return chan
            if not pendings:
                cancel.check()  # (with a commit that may land, waiting is the only answer)
            if time.monotonic() >= deadline:
                if waiter.abandon():
                    return None
                raise turn_timeout(who, self.timeout)
            waiter.wait(min(group.POLL, max(0.0, deadline - time.monotonic())))

    def _follow(
        self,
        chan: group.Channel,
        decide: Callable[[str | None], Decision[R]],
        deadline: float,
        pendings: list[tuple[str, Any]],
    ) -> Done[R] | None:
        """A member's side of group commit: decide when the leader asks, on the commit
        it names, and report what the leader's verdict says. None: the leader went
        without one (`pendings` then holds what we handed it, which may yet land)."""
        decided: dict[int, tuple[str | None, Any, GitcoordError | None, str | None]] = {}
        handed = False  # a commit handed over whose push may be under way
        while True:
            # Past the deadline a member waits only for the verdict on a handed commit.
            until = deadline + (self.timeout if handed else 0.0)
            try:
                msg = group.wait_message(chan, until, cancellable=not handed)
            except group.Gone:
                return None
            if msg is None:
                cancel.check()
                raise RemoteError(
                    f"timed out after {self.timeout:g}s waiting for this clone's other "
                    "gitcoord commands" + ("" if handed else "; nothing was written")
                )
            kind = next((k for k in ("decide", "stand", "lost") if k in msg), None)
            round_ = msg.get("round") if kind == "decide" else msg.get(kind or "")
            if kind is None or not isinstance(round_, int):
                return None  # not a message of ours: as if the leader went
            if kind == "decide":
                tip, base = msg.get("decide"), msg.get("base")
                if isinstance(base, str):
                    for sent, answer in pendings:
                        if self.upstream.contains(base, sent):
                            return Done(answer, sent, base, round_)
                if not pendings:
                    cancel.check()
                if self.parsed is not None:
                    self.parsed.absorb(msg.get("parsed"), msg.get("format"))
                self.chained_on = (base,) if tip != base else None
                commit: str | None = None
                try:
                    decision = decide(tip)
                except (RemoteError, Cancelled):
                    raise
                except GitcoordError as exc:
                    decided[round_] = (None, None, exc, tip)
                    commit = None
                else:
                    if isinstance(decision, Unchanged):
                        decided[round_] = (None, decision.result, None, tip)
                        commit = None
                    else:
                        commit = self._written(tip, decision)
                        decided[round_] = (commit, decision.result, None, tip)
                        pendings.append((commit, decision.result))
                        handed = True
                finally:
                    self.chained_on = None
                if not chan.send({"commit": commit, **self._handed_on()}):
                    return None
            elif kind == "stand" and round_ in decided:
                if self.parsed is not None:  # what the members after us parsed too
                    self.parsed.absorb(msg.get("parsed"), msg.get("format"))
                commit, result, error, parent = decided[round_]
                if error is not None:
                    raise error
                return Done(result, commit, parent, round_)
            elif kind == "lost" and round_ in decided:
                refused = decided[round_][0]
                pendings[:] = [p for p in pendings if p[0] != refused]
                handed = False

    def _give_up(self, exc: GitcoordError, pendings: list[tuple[str, Any]]) -> Done[Any]:
        """A member stopped (timed out, interrupted, the remote unreachable): with no
        commit of its own in a leader's hands, say so; else look whether one landed."""
        if not pendings or exc.details.get("uncertain"):
            raise exc
        self._pending = list(pendings)
        why = exc if isinstance(exc, RemoteError) else RemoteError(exc.message)
        return self._settle_pending(why)

    def _give_way(self, pace: Pace, deadline: float, leader: group.Leader | None) -> None:
        """This clone won under contention, or wrote a streak in one push each: let
        the others have a round before going again (`Pace`; holding the turn, so this
        clone's other sessions wait with it). Not a group's leader where the remote
        takes tickets: it waits in line as the oldest wait goes (`Wait.grouped`), so
        the others get their turn without its members waiting out a pause besides."""
        wait = pace.give_way_until - time.time()
        if wait > 0 and leader is not None and self._queued(pace) and self._members(leader, 3):
            return
        if wait > 0:  # (at most a few seconds, whatever the wall clock did meanwhile)
            left = deadline - time.monotonic()
            cancel.CANCELLED.wait(min(wait, MAX_GIVE_WAY, left / 3))

    def _settle_pending(self, exc: RemoteError) -> Done[Any]:
        """A push was sent but its outcome never came back (cut off, or the deadline hit
        while the server was still at it). Look once more, briefly; never claim that
        nothing was written when the commit may yet land."""
        assert self._pending
        try:
            tip = self.fetch_tip(time.monotonic() + min(10.0, self.timeout))
            for commit, result in self._pending:
                if tip is not None and self.upstream.contains(tip, commit):
                    return Done(result, commit, tip, 0)
        except RemoteError:
            pass
        pending = self._pending[-1][0]
        error = self.upstream.push_error
        why = f" (last push: {error})" if error else ""
        raise RemoteError(
            f"{exc.message.removesuffix('; nothing was written')}{why}; commit {pending[:10]} "
            "was sent and may still land: check `gitcoord log` before retrying",
            commit=pending,
            uncertain=True,
            remote=self.remote,
        ) from None

    def _attempts(
        self,
        decide: Callable[[str | None], Decision[R]],
        deadline: float,
        known: Known | None,
        leader: group.Leader | None,
        pendings: list[tuple[str, Any]],
    ) -> Done[R]:
        pace = self.pace
        self.rode = []
        # Commits of ours whose push may have landed (reply lost, or a leader gone).
        self._pending = list(pendings)
        self.upstream.push_error = None
        began = time.monotonic()
        self.waiting = wait = self._wait(pace)
        # (not with commits of ours that may land already: they name no request)
        carries = (
            wait is not None and self.requests is not None and requests.enabled() and not pendings
        )
        self._rid = requests.new_id() if carries else None
        try:
            return self._rounds(decide, deadline, known, leader, pace, began)
        finally:
            if wait is not None:
                wait.leave(time.monotonic() + min(LEAVE_TIMEOUT, self.timeout))
            self.waiting = None
            if self.requests is not None:
                self.requests.wait()

    def _rounds(
        self,
        decide: Callable[[str | None], Decision[R]],
        deadline: float,
        known: Known | None,
        leader: group.Leader | None,
        pace: Pace,
        began: float,
    ) -> Done[R]:
        self._parsed_in = None
        landing: tuple[str, int, _Own[R], list[group.Peer]] | None = None  # a chain, ditto
        fetched: list[str | None] = []  # the next round's tip, when already fetched
        spurned = False  # the remote's hook refused a push with riders: none this time
        shunned = False  # ... or one that carried others' requests: none this time
        stale = False  # a push on the mirror was refused: it was behind
        suspect = False  # a hook declined a push with tickets: this one goes without
        if self.waiting is not None and leader is not None and self._members(leader):
            self.waiting.grouped()
        # Others hold tickets older than any we have (as last fetched): fetch, and wait.
        behind = (
            self.waiting is not None
            and self.waiting.look(pace.unit, self.upstream.mirror_tip(), fetched=False) > 0
        )
        if self.waiting is not None and time.time() < pace.served_until:
            # Served a moment ago: this clone's turn has room for one write more (in one
            # push, on the tip it left): the others wait one push longer, not a round.
            behind, self.waiting.served = False, True
            pace.served_until = 0.0
        for attempt in range(1, MAX_ATTEMPTS + 1):
            if not self._pending:
                cancel.check()  # stopped by the user: nothing was written
            elif self._rid is not None and cancel.CANCELLED.is_set():
                # Stopped with a request out, which another clone may yet carry: look
                # once more, and say that it may still land if it has not.
                return self._settle_pending(RemoteError("interrupted", remote=self.remote))
            started = time.monotonic()
            fresh = True  # this round's tip was fetched for it (or just before it)
            fetching = False
            if attempt == 1 and known is not None and not behind:
                tip = known.tip
            elif (
                attempt == 1
                and not self._pending
                and not behind
                and (cached := self._cached_tip(pace))
            ):
                tip, fresh = cached, False
            elif fetched:
                tip = fetched.pop()
            else:
                tip = self._fetch(pace, attempt == 1, deadline, looked=stale)
                fetching, stale = True, False
            if tip is not None and landing is not None:
                sent, landed, theirs, told = landing
                if self.upstream.contains(tip, sent):  # the whole chain is on the branch
                    if leader is not None:
                        leader.tell(told, self._stand(landed))
                    return theirs.done(tip, attempt)
            if tip is not None:
                for sent, answer in self._pending:
                    if self.upstream.contains(tip, sent):
                        return self._found(tip, sent, answer, attempt)
            asks: str | None = None  # this round's commit, when it is a request
            try:
                decision = decide(tip)
            except (RemoteError, Cancelled):
                raise  # (the members see their leader go, and go on without it)
            except GitcoordError as exc:
                own: _Own[R] = _Own(None, None, exc)
            else:
                if isinstance(decision, Unchanged):
                    own = _Own(None, decision.result, None)
                else:
                    request = self._asked(decision, fresh)
                    own = _Own(self._written(tip, request), decision.result, None)
                    asks = own.commit if request is not decision else None
            chain: str | None = own.commit or tip
            asked: list[group.Peer] = []
            if leader is not None:
                chain, asked = self._round(leader, attempt, tip, chain, deadline)
                if asked and self.waiting is not None:
                    self.waiting.grouped()
            riding: list[tuple[Rider, str]] = []
            if not spurned:
                chain, riding = self._ride(tip, chain)
            carried: list[str] = []
            if not shunned and chain != tip:
                chain, carried = self._carry(tip, chain)
            if chain == tip:  # nobody writes anything
                if not fresh and (now := self._confirm(tip, deadline)) != tip:
                    # An answer from the cached tip: reported only if the tip still stands.
                    fetched.append(now)
                    continue
                if leader is not None:
                    leader.tell(asked, self._stand(attempt))
                return own.done(tip, attempt)
            assert chain is not None
            if not self._pending:
                cancel.check()  # the last moment at which stopping writes nothing
            pushing = time.monotonic()
            wait = self.waiting
            also = wait.also() if wait is not None else []
            try:
                result = self.upstream.swap(tip, chain, deadline, also)
            except AlsoRefused as exc:
                # The remote takes no tickets: off in this clone, and the push again
                # without them (nothing was written). A hook that declined the whole
                # push may have judged the branch's commits: then the push alone tells,
                # and tickets are off only if it lands.
                if exc.sure:
                    self._no_tickets(pace)
                else:
                    self.waiting, suspect = None, True
                if leader is not None:
                    self._refused(leader, asked, attempt)
                continue
            except RemoteError:
                if leader is not None:  # nothing was sent: theirs cannot land either
                    self._refused(leader, asked, attempt)
                if fresh:
                    raise
                # The push on the cached tip did not get through (nothing was sent): go
                # the usual way, whose fetch says what is wrong if it still is.
                continue
            except InvalidError:
                if carried:
                    # Refused with others' requests in it: again without them (they are
                    # theirs to push), so that carrying never sinks this clone's writes.
                    if leader is not None:
                        self._refused(leader, asked, attempt)
                    shunned = True
                    continue
                if not any(commit for _, commit in riding):
                    raise
                # The remote's hook refused a push that carried riders: go again without
                # them, so that a rider can never sink the writes it rode with. One that
                # rode alone was the cause: dropped. Others go alone from now on.
                if leader is not None:
                    self._refused(leader, asked, attempt)
                wrote = [(r, c) for r, c in riding if c]
                if len(wrote) == 1 and self._parent(wrote[0][1]) == tip:
                    wrote[0][0].settled(None)
                else:
                    for rider, _ in wrote:
                        rider.refused()
                spurned = True
                continue
            if fetching:
                pace.learn(time.monotonic() - started)
            if result == "ok":
                if suspect:
                    self._no_tickets(pace)  # it landed alone: the tickets were refused
                if wait is not None:
                    if wait.holding:
                        pace.served_until = time.time() + pace.unit
                    wait.landed(also)
                end = time.monotonic()
                pace.won(time.time(), not fresh, end - started, attempt, end - pushing)
                for rider, commit in riding:
                    rider.settled(commit or None)
                    if commit:
                        self.rode.append(commit)
                if leader is not None:
                    leader.tell(asked, self._stand(attempt))
                return own.done(tip, attempt, chain)
            if result == "unknown":
                landing = (chain, attempt, own, asked)
                if own.commit is not None:
                    self._pending.append((own.commit, own.result))
                    if asks is None:
                        # It may land naming no request: a request published later
                        # could then land the same write again (a carrier knows a
                        # landed write only by its id). No requests from here on.
                        self._rid = None
            elif leader is not None:  # refused: the members decide again next round
                self._refused(leader, asked, attempt)
            if not fresh:
                if result == "lost":
                    # Refused on the cached tip: this clone was behind. Fetch and go
                    # again at once (nobody raced this round); fetch first next time.
                    pace.speculate = False
                    pace.moved(time.time())
                    stale = True  # the next fetch says by how many commits
                continue
            pace.contend(time.time())  # lost to a writer who pushed while we decided
            self._request(own, asks, asked, deadline)
            if wait is not None:
                wait.rounds += 1
                wait.served = False  # a turn's second write that lost: in the queue now
                self._take_ticket(wait, pace, deadline)
            self.backoff.round = pace.unit
            if wait is not None and wait.holding:
                cancel.CANCELLED.wait(_after_lost(wait, pace))
                continue
            self.backoff.sleep(attempt, deadline, time.monotonic() - began)
        raise RemoteError(
            f"gave up after {MAX_ATTEMPTS} attempts: {self.where} kept moving; nothing was written",
            attempts=MAX_ATTEMPTS,
        )

    def _asked(self, decision: Write[R], fresh: bool) -> Write[R]:
        """`decision`, as a request when this transaction carries (`store.requests`): the
        same in every round but for the time it may be carried until. Only a round on a
        fetched tip publishes its commit when refused, so only such a round names the
        request (a push on a cached tip that lands, the common case, says nothing more);
        never a commit `decide` wrote itself, nor one on a branch that takes no carried
        commits (`Write.carriable`)."""
        if self._rid is None or not fresh or decision.commit is not None or not decision.carriable:
            return decision
        until = decision.when + requests.VALID_FOR
        return dataclasses.replace(
            decision, message=requests.with_request(decision.message, self._rid, until)
        )

    def _request(
        self, own: _Own[Any], asks: str | None, asked: list[group.Peer], deadline: float
    ) -> None:
        """A push refused on a fetched tip: publish its own commit as this clone's request,
        for another clone's push to carry, and count it among the commits that may land.
        Not with members in the round (their commits went on ours: they decide again) nor
        without a request id on it."""
        if self._rid is None or asks is None or asked or self.requests is None:
            return
        assert self.tickets is not None
        self.requests.publish(self.tickets.clone, asks, deadline)
        self._pending.append((asks, own.result))

    def _carry(self, tip: str | None, chain: str | None) -> tuple[str | None, list[str]]:
        """The chain with the requests of others that it may carry, each as a commit the
        domain made and judged (`carrier`), and those commits."""
        if self._rid is None or self.carrier is None or self.requests is None or tip is None:
            return chain, []
        assert self.tickets is not None
        now = datetime.now(timezone.utc)
        fresh = [
            r for r in self.requests.fetched(self.tickets.clone) if r.until - requests.MARGIN > now
        ]
        if not fresh:
            return chain, []
        landed = self.requests.landed_since(tip, {r.base for r in fresh})
        carried: list[str] = []
        taken: set[str] = set()
        for req in fresh:
            if len(carried) >= requests.MAX_CARRIED:
                break
            ids = landed.get(req.base)
            if ids is None or req.rid in ids or req.rid in taken or req.rid == self._rid:
                continue  # decided on a tip too old or off the branch, or it landed
            try:
                made = self.carrier(chain, req)
            except (RemoteError, Cancelled):
                raise
            except GitcoordError:
                made = None
            if made is not None:
                chain = made
                carried.append(made)
                taken.add(req.rid)
        return chain, carried

    def _found(self, tip: str, sent: str, answer: Any, attempt: int) -> Done[Any]:
        """What a transaction did whose commit `sent` is in `tip`'s history: landed by a
        push of ours, or carried by another clone's (the commit whose second parent it is)."""
        at: str | None = tip
        depth = 0
        while at is not None and at != sent and depth <= 2 * requests.LOOK_BACK:
            got = self.reader.read(at)
            if got is None or got[1] != "commit":
                break
            parents = commit_parents(got[2])
            if len(parents) > 1 and parents[1] == sent:
                return Done(answer, at, tip, attempt, carried=True)
            at, depth = (parents[0] if parents else None), depth + 1
        return Done(answer, sent, tip, attempt)

    def _ride(
        self, tip: str | None, chain: str | None
    ) -> tuple[str | None, list[tuple[Rider, str]]]:
        """The chain with this clone's riders on it, each decided on the chain so far;
        none when nothing else writes and none of them is due. Each rider comes with
        its commit, or "" when the chain already says what it would (settled once the
        push lands, not before: the chain may never land)."""
        try:
            riders = self.riders() if self.riders is not None else []
        except OSError:
            riders = []  # what is kept cannot be read now: it rides another push
        if not riders or (chain == tip and not any(r.due for r in riders)):
            return chain, []
        trusted = [r for r in riders if not r.suspect]
        if trusted:
            riders = trusted[:MAX_RIDERS]
        elif chain == tip:  # only suspects, one of them due (see above): it goes alone
            riders = [r for r in riders if r.due][:1]
        else:
            return chain, []
        riding: list[tuple[Rider, str]] = []
        for rider in riders:
            self.chained_on = (tip,) if chain != tip else None
            try:
                decision = rider.decide(chain)
            except (RemoteError, Cancelled):
                raise
            except GitcoordError:
                rider.settled(None)  # it can never go (its session left, ...): not kept
                continue
            finally:
                self.chained_on = None
            if isinstance(decision, Unchanged):
                if chain == tip:
                    rider.settled(None)  # the branch itself says so already
                else:  # the chain of this push says so: once it lands
                    riding.append((rider, ""))
                continue
            chain = self._written(chain, decision)
            riding.append((rider, chain))
        return chain, riding

    def _refused(self, leader: group.Leader, asked: list[group.Peer], round_: int) -> None:
        """Tell the members whose commits a round's push did not land that it never
        will (they no longer count them as maybe landed, and decide again if asked)."""
        leader.tell([p for p in asked if p.handed.get(round_)], {"lost": round_})

    def _round(
        self,
        leader: group.Leader,
        round_: int,
        tip: str | None,
        chain: str | None,
        deadline: float,
    ) -> tuple[str | None, list[group.Peer]]:
        """Ask each member, in the order they joined, to decide on the chain so far (the
        tip, then each commit the one before wrote on it); the chain's last commit, and
        the members that answered."""
        asked: list[group.Peer] = []
        seen: set[int] = set()
        handed: dict[str, Any] | None = None  # what this round's deciders parsed
        while True:
            leader.admit()  # whoever joined by now goes in this round, in order
            peer = next((p for p in leader.live if id(p) not in seen), None)
            if peer is None:
                break
            seen.add(id(peer))
            if handed is None:  # (only with a member: a lone writer's push waits for none)
                handed = self._handed_on()
            wait = min(group.DECIDE_TIMEOUT, deadline - time.monotonic())
            reply = leader.ask(peer, round_, chain, tip, wait, handed)
            if reply is None:
                continue
            commit = reply.get("commit")
            if commit is not None and (
                not isinstance(commit, str) or self._parent(commit) != chain
            ):
                peer.drop()  # not a commit on the chain it was given
                continue
            self._take_on(reply, handed)
            peer.handed[round_] = commit
            asked.append(peer)
            chain = commit or chain
        self._parsed_in = handed
        return chain, asked

    def _stand(self, round_: int) -> dict[str, Any]:
        """The verdict that a round's push landed (or wrote nothing), with what its
        deciders parsed: each member saw the files of those before it, and now sees
        those of the members after it as well, so that whichever of them decides first
        on the new tip (the next round's leader, say) parses none of them again."""
        return {"stand": round_, **(self._parsed_in or {})}

    def _handed_on(self) -> dict[str, Any]:
        """What this process parsed since it last handed anything on, for the group."""
        if self.parsed is None:
            return {}
        return {"parsed": self.parsed.fresh(), "format": self.parsed.format}

    def _take_on(self, reply: dict[str, Any], handed: dict[str, Any]) -> None:
        """A member's parses: for this process (its riders decide on the chain too) and
        for the members after it."""
        got = reply.get("parsed")
        if self.parsed is None or not self.parsed.absorb(got, reply.get("format")):
            return
        assert isinstance(got, dict) and isinstance(handed.get("parsed"), dict)
        room = parsecache.MAX_HANDED - len(handed["parsed"])
        handed["parsed"].update(itertools.islice(got.items(), max(0, room)))

    def _parent(self, commit: str) -> str | None:
        got = self.reader.read(commit)
        if got is None or got[1] != "commit":
            return ""
        return first_parent(got[2])

    def _cached_tip(self, pace: Pace) -> str | None:
        """The tip to decide the first round on without fetching: the mirror, when
        there is a remote, a mirror, and no reason to expect it is stale."""
        if self.remote is None or self.patient or not pace.may_speculate(time.time()):
            return None
        if pace.look and self.waiting is not None and self.waiting.bell is None:
            return None  # the end of a streak, and no bell to learn of waits from: look
        return self.upstream.mirror_tip()

    def _fetch(self, pace: Pace, first: bool, deadline: float, looked: bool = False) -> str | None:
        """The tip, fetched. A transaction's first fetch that finds the branch where
        this clone last left it turns speculation back on: nobody else is writing.
        Each such look (and the fetch after a push refused on the mirror, `looked`)
        tells the pace how many commits of others came since this clone knew the tip."""
        if (not first and not looked) or self.remote is None:
            tip = self.fetch_tip(deadline)
            pace.knew(time.time())
            return self._stand_back(tip, pace, deadline)
        before = self.upstream.mirror_tip()
        tip = self.fetch_tip(deadline)
        if before is not None:
            pace.observe(time.time(), self._since(before, tip))
        if first and before is not None and tip == before:
            pace.speculate = True
        elif before is not None and tip != before:
            pace.moved(time.time())
        pace.knew(time.time())
        return self._stand_back(tip, pace, deadline)

    def _stand_back(self, tip: str | None, pace: Pace, deadline: float) -> str | None:
        """The fetched `tip`, or a later one: while the tickets fetched with it say that
        another clone goes first, wait half a round and fetch again (`store.tickets`)."""
        wait = self.waiting
        if wait is None:
            return tip
        pace.look = False
        took = False  # a ticket taken since `tip` was fetched
        while True:
            back = wait.look(pace.unit, tip)
            if (not back or wait.served) and took and wait.window == 1:
                # Ours is the oldest, as of tickets fetched before our own went out (a
                # push's round trip, and a verification, ago): a group decides all its
                # members on the tip, so it fetches that first rather than decide them
                # on one the push it waited for may have left behind.
                took = False
                tip = self._fetch_again(tip, pace, deadline)
                if self._ours_on(tip):
                    break  # a write of ours landed meanwhile (carried, or a reply lost)
                continue
            if not back or wait.served:
                break
            wait.rounds += 1
            if not wait.holding:
                self._take_ticket(wait, pace, deadline)
                if self.waiting is None:
                    break  # the remote takes no tickets
                if wait.holding:
                    took = True
                    continue  # look again: ours may be the oldest now
            # Half a round next in line, longer further back (a fetch each time is
            # work for the server and this machine), at most two rounds. A group next
            # in line looks again at once: its turn comes with the push of the one
            # ahead, and every moment it waits, all its members wait with it.
            pause = pace.unit * min(2.0, back / 2)
            if back == 1 and wait.window == 1:
                pause = min(pause, NEXT_IN_LINE)
            if time.monotonic() + pause >= deadline:
                break  # go anyway: the deadline says when this transaction ends
            if not self._pending:
                cancel.check()
            cancel.CANCELLED.wait(pause)
            tip = self._fetch_again(tip, pace, deadline)
            if self._ours_on(tip):
                break  # a write of ours landed meanwhile (carried, or a reply lost)
        return tip

    def _fetch_again(self, tip: str | None, pace: Pace, deadline: float) -> str | None:
        """The tip fetched again while standing back; a new one is verified now
        (`waited_on`), so that the turn verifies only the push before it."""
        before, tip = tip, self.fetch_tip(deadline)
        pace.knew(time.time())
        if tip != before and self.waited_on is not None:
            self.waited_on(tip)
        return tip

    def _ours_on(self, tip: str | None) -> bool:
        """Whether a write of ours that may have landed is on `tip`."""
        return tip is not None and any(self.upstream.contains(tip, s) for s, _ in self._pending)

    def _members(self, leader: group.Leader, polls: int = 0) -> bool:
        """Whether sessions of this clone wait to go in this transaction's push (those
        that joined by now are admitted: they go in its first round). With `polls`, as
        many of the waiters' polls for a leader to join are given to them."""
        leader.admit()
        for _ in range(polls):
            if leader.live:
                break
            time.sleep(group.POLL)
            leader.admit()
        return bool(leader.live)

    def _queued(self, pace: Pace) -> bool:
        """Whether this transaction will wait in the remote's queue (`_wait`)."""
        return self.tickets is not None and time.time() >= pace.tickets_off

    def _wait(self, pace: Pace) -> Wait | None:
        """A place among the tickets, for this transaction. None without a remote, where
        the remote refused tickets, and without turns (GITCOORD_TURN=none: a ticket is a
        clone's, and the clone's transactions would then write it at once)."""
        if self.tickets is None or time.time() < pace.tickets_off:
            return None
        if turn_file(self.info.common_dir, self.remote, self.ref, self.remote_url) is None:
            return None
        return Wait(self.tickets, None)

    def _take_ticket(self, wait: Wait, pace: Pace, deadline: float) -> None:
        """Take a ticket once this transaction has gone `wait.after` rounds without
        landing (and holds none)."""
        if wait.holding or wait.rounds < wait.after:
            return
        try:
            wait.take(deadline)
        except AlsoRefused:
            self._no_tickets(pace)
        except RemoteError:
            pass  # the round's own fetch and push say what is wrong, if it still is

    def _no_tickets(self, pace: Pace) -> None:
        pace.tickets_off = time.time() + TICKETS_OFF
        self.waiting = None

    def _confirm(self, tip: str | None, deadline: float) -> str | None:
        """The tip fetched now, to confirm an answer decided on the cached `tip`."""
        now = self.fetch_tip(deadline)
        if tip is not None:
            self.pace.observe(time.time(), self._since(tip, now))
        if now != tip:
            self.pace.moved(time.time())
        self.pace.knew(time.time())
        return now

    def _since(self, old: str, new: str | None, most: int = 64) -> int:
        """How many commits `new` is ahead of `old` along first parents (at most
        `most`; `most` too when `old` is not among them: the branch was rewritten)."""
        count, at = 0, new
        while at is not None and at != old and count < most:
            parent = self._parent(at)
            if parent == "":
                break
            count, at = count + 1, parent
        return count if at == old else most


def _after_lost(wait: Wait, pace: Pace) -> float:
    """How long a ticket's holder pauses after a lost round: the tickets say when it
    goes, not a backoff, so only a short pause, lest it spin through rounds lost to those
    who do not know of its ticket. A group the line said was first lost to the push just
    before its turn (the one it waited for, landing as it decided): it looks again as
    soon as it would next in line (a quarter of a round, seconds under load, was a wait
    for every one of its members)."""
    if wait.window == 1 and wait.back == 0:
        return NEXT_IN_LINE
    return random.uniform(0, pace.unit / 4)
