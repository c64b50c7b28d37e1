"""Section 5: growth — does a command cost what is new, or what is on the branch?

Three pairs of branches, each read by session `alice` in a clone of its own, in process
(`Coordinator`), after an untimed first fetch and first inbox read:
  - history: 10 vs 10,000 commits, the same final state (3 sessions, 3 heartbeats): the
    extra commits are heartbeats, built with `git fast-import` from the same pure
    `gitcoord.ops` a transaction runs (common.FastHistory);
  - messages: 100 vs 10,000 messages on the branch (20 sessions, 30 days, one in 50
    broadcast), built as benchmarks/inbox.py and tests/test_communication.py do
    (pre-rendered YAML, one commit per sender), written with fast-import;
    (every branch built with fast-import is then repacked, as `git gc` leaves a remote);
  - claims (not a target, but what a long-lived branch accumulates): 10 vs many claim
    files, released tombstones that stay on the branch to carry the fencing token.
Both sizes of a pair are set up first and then measured in alternating rounds. Per
round: `status`; `inbox` with nothing unread; `bob` sends one message (untimed) and
`inbox --peek` then `inbox` (read + mark) are timed; a claim of a fresh resource (released
untimed). `log --limit 20` and `metrics` are timed too: they read history by design.
Besides time, the objects read through cat-file and the git processes started are
counted: the same counts at both sizes show independence whatever the noise.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from gitcoord.domain.models import FORMAT

from . import common

FIVE = ["alice", "bob", "carol", "dave", "erin"]
THREE = FIVE[:3]  # history: init, 3 registrations, then heartbeats (all 3 in both sizes)
ROWS = [
    "status",
    "inbox, nothing unread",
    "inbox --peek, 1 new message",
    "inbox, 1 new message (read + mark)",
    "claim (a fresh resource)",
    "log --limit 20",
    "metrics (walks the whole history)",
]
TARGET_ROWS = ROWS[:4]  # the rows the target speaks of: status and inbox


def _history(
    remote: Path,
    env: dict[str, str],
    commits: int,
    claims: int = 0,
    sessions: list[str] = FIVE,
) -> None:
    from gitcoord.ops import claims as claim_ops
    from gitcoord.ops import heartbeats

    hist = common.FastHistory()
    t0 = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(days=20)
    common.setup_sessions(hist, sessions, t0)
    for k in range(claims):
        sid = FIVE[2 + k % 3]
        when = t0 + timedelta(seconds=10 + k)
        for fn in (claim_ops.claim, claim_ops.release):
            hist.apply(fn(hist.state, when, session=sid, type_="task", name=f"old-{k}"), when)
    made = 1 + len(sessions) + 2 * claims
    for k in range(commits - made):
        sid = sessions[k % len(sessions)]
        when = t0 + timedelta(seconds=10 + 2 * claims + k)
        beat = heartbeats.make_heartbeat(sid, "working", f"item-{k}", "loop", k % 101, when)
        hist.apply(heartbeats.heartbeat(hist.state, beat, force=True), when, render=_beat_yaml)
    hist.write(remote, env, repack=True)


def _beat_yaml(beat: Any) -> bytes:
    """`yamlio.dump(beat)` for these plain one-word fields (FastHistory checks samples)."""
    from gitcoord import clock

    return (
        f"session: {beat.session}\naction: {beat.action}\ntarget: {beat.target}\n"
        f"phase: {beat.phase}\nprogress: {beat.progress}\nat: '{clock.iso(beat.at)}'\n"
    ).encode()


def _messages(root: Path, remote: Path, env: dict[str, str], total: int) -> None:
    """benchmarks/inbox.py's bulk messages (pre-rendered YAML, checked there against
    `yamlio.dump`), one commit per sender, as inbox.populate writes them through the
    store — here with fast-import, after the sessions are set up."""
    from gitcoord import clock
    from gitcoord.domain import kinds, yamlio
    from gitcoord.domain.change import Change

    from .inbox import SESSIONS, bulk_messages, message_yaml

    hist = common.FastHistory()
    when = clock.now() - timedelta(days=31)
    common.setup_sessions(hist, SESSIONS, when, slots=32)
    messages = bulk_messages(total, clock.now())
    for msg in messages[:: max(1, total // 50)]:
        assert message_yaml(msg) == yamlio.dump(msg)
    by_sender: dict[str, list[Any]] = {}
    for msg in messages:
        by_sender.setdefault(msg.sender, []).append(msg)
    for sender, mine in sorted(by_sender.items()):
        change = Change(
            "send",
            f"send {len(mine)} messages from {sender}",
            session=sender,
            writes={kinds.message_path(m.to, m.id, fmt=FORMAT): message_yaml(m) for m in mine},
        )
        hist.apply(change, clock.now() - timedelta(minutes=10))
    hist.write(remote, env, repack=True)


class Reader:
    """Session alice reading one branch (and bob writing to it), with counters of the
    objects alice reads through cat-file and the git processes it starts: work that,
    unlike time, does not depend on what else the machine is doing."""

    def __init__(self, root: Path, remote: Path, env: dict[str, str]) -> None:
        from gitcoord import Coordinator

        url = f"file://{remote}"
        reader = common.clone(url, root / "reader", env)
        writer = root / "writer"
        if not writer.exists():
            common.clone(url, writer, env)
        self.alice = Coordinator(str(reader), session="alice")
        self.bob = Coordinator(str(writer), session="bob")
        self.objects = self.procs = 0
        store = self.alice.store
        read, run = store.reader.read, store.git.run

        def counted_read(*a: Any, **kw: Any) -> Any:
            self.objects += 1
            return read(*a, **kw)

        def counted_run(*a: Any, **kw: Any) -> Any:
            self.procs += 1
            return run(*a, **kw)

        store.reader.read = counted_read  # type: ignore[method-assign]
        store.git.run = counted_run  # type: ignore[method-assign]
        self.loading = 0.0  # seconds spent loading the state (Store.load) in the op
        load = store.load

        def timed_load(*a: Any, **kw: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return load(*a, **kw)
            finally:
                self.loading += time.perf_counter() - t0

        store.load = timed_load  # type: ignore[method-assign]
        self.load_secs: dict[str, list[float]] = {r: [] for r in ROWS}
        self.alice.inbox()  # the first read of everything: untimed
        self.out: dict[str, list[float]] = {r: [] for r in ROWS}
        self.work: dict[str, tuple[int, int]] = {}

    def _timed(self, row: str, fn: Any, keep: bool) -> Any:
        self.objects = self.procs = 0
        self.loading = 0.0
        secs, got = common.timed(fn)
        if keep:
            self.out[row].append(secs)
            self.load_secs[row].append(self.loading)
            self.work[row] = (self.objects, self.procs)
        return got

    def round(self, i: int) -> None:
        keep = i >= 0  # -1: warm-up round, not kept
        alice = self.alice
        self._timed(ROWS[0], alice.status, keep)
        doc = self._timed(ROWS[1], alice.inbox, keep)
        assert doc["unread"] == 0, doc
        self.bob.send("alice", f"new {i}", "body")
        doc = self._timed(ROWS[2], lambda: alice.inbox(peek=True), keep)
        assert doc["unread"] == 1, doc
        doc = self._timed(ROWS[3], alice.inbox, keep)
        assert doc["marked_read"], doc
        name = f"fresh-{i + 1}"
        self._timed(ROWS[4], lambda: alice.claim("task", name), keep)
        alice.release("task", name)
        self._timed(ROWS[5], lambda: alice.log(limit=20), keep)
        self._timed(ROWS[6], alice.metrics, keep)

    def close(self) -> None:
        self.alice.close()
        self.bob.close()


def run(
    tmp: Path,
    env: dict[str, str],
    runs: int,
    commits: int,
    messages: int,
    claims: int,
    claim_runs: int | None = None,
) -> dict[str, Any]:
    """`runs` rounds for the history and message pairs (the targets); `claim_runs` for
    the claim files, whose large side is slow and far from the target anyway."""
    base = tmp / "growth"
    base.mkdir()
    pairs: dict[str, dict[str, Any]] = {}

    def fresh(name: str) -> tuple[Path, Path]:
        root = base / name
        root.mkdir()
        return root, common.bare_remote(root / "remote.git", env)

    dims = {
        "history": [(f"{n:,} commits", n) for n in (10, commits)],
        "messages": [(f"{n:,} messages", n) for n in (100, messages)],
        "claims": [(f"{n:,} claim files", n) for n in (10, claims)],
    }
    for dim, sizes in dims.items():
        pair: dict[str, Any] = {"sizes": [label for label, _ in sizes], "rows": {}}
        pair["build_seconds"], pair["work"] = {}, {}
        readers = {}
        for label, n in sizes:
            root, remote = fresh(f"{dim}-{n}")
            t, _ = common.timed(
                lambda dim=dim, n=n, root=root, remote=remote: (
                    _history(remote, env, n, sessions=THREE)
                    if dim == "history"
                    else _messages(root, remote, env, n)
                    if dim == "messages"
                    else _history(remote, env, 1 + len(FIVE) + 2 * n, claims=n)
                )
            )
            pair["build_seconds"][label] = t
            readers[label] = Reader(root, remote, env)
        # Rounds interleave the two sizes (in alternating order), so that load drifting
        # on a shared machine hits both alike.
        labels = list(readers)
        rounds = claim_runs if dim == "claims" and claim_runs else runs
        pair["runs"] = rounds
        for i in range(-1, rounds):
            for label in labels if i % 2 else labels[::-1]:
                readers[label].round(i)
        for label, r in readers.items():
            pair["rows"][label] = r.out
            pair["work"][label] = r.work
            pair.setdefault("load", {})[label] = r.load_secs
            r.close()
        pairs[dim] = pair
    return {"runs": runs, "pairs": pairs}
