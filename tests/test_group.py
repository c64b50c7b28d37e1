"""Group commit (store.group): writers of one clone that wait for its turn go in one
push, one commit per operation, each decided on the state the previous one left.

Real processes, a real bare remote (with gitcoord's server hook and signatures
required where said). Batches are made certain, not likely: a stand-in turn holder
keeps the turn until every process of the burst is queued for it (each has knocked
at the holder's socket), then lets go; whichever gets the turn leads the rest.
Pushes are counted in the remote's reflog — counts, never times.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from conftest import Result, World, git, run, spawn, wait_all
from reliability import REF, private_agent, trailers, warm_agent

from gitcoord.store import group
from gitcoord.store.turns import Pace, turn_file

TIMEOUT = ("--timeout", "90")


@contextlib.contextmanager
def queued(clone: Path, expected: int) -> Iterator[None]:
    """Hold `clone`'s turn while the block starts its processes, and let go only once
    `expected` of them wait for it (each knocks at the holder's socket once queued):
    then they meet whoever gets the turn next, all at once."""
    common = str(clone / ".git")
    found = turn_file(common, "origin", REF, None)
    meet = group.rendezvous(common, "origin", REF)
    assert found is not None and meet is not None
    with open(found[0], "a") as turn:
        fcntl.flock(turn, fcntl.LOCK_EX)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(meet)
        listener.bind(meet)
        listener.listen(64)
        listener.settimeout(120)
        yield
        knocked = []
        try:
            while len(knocked) < expected:
                knocked.append(listener.accept()[0])
        finally:
            os.unlink(meet)
            listener.close()
            for conn in knocked:  # EOF, nothing asked: each goes back to wait for the turn
                conn.close()
    # the turn is let go here: one of them takes it and leads the others


def finish(procs: Sequence[subprocess.Popen[str]]) -> list[Result]:
    return wait_all(list(procs), 180)


def describe(results: Sequence[Result], who: Sequence[str]) -> str:
    return "\n".join(
        f"  {s}: exit {r.code}: {(r.err or r.out).strip()[:300]}"
        for s, r in zip(who, results, strict=True)
    )


def pushes(remote: Path) -> int:
    """Updates of the coordination branch the remote logged (one per landed push)."""
    out = git(remote, "reflog", "show", "--format=%H", REF, check=False)
    return len(out.splitlines())


def claims(clone: Path) -> dict[str, str]:
    r = run(clone, "status", "--json")
    assert r.code == 0, r.err
    data = r.json()
    assert isinstance(data, dict)
    return {c["resource"]: c["holder"] for c in data["claims"] if c["status"] == "live"}


def signed_world(world: World) -> Path:
    """A clone of a remote that requires signatures and runs gitcoord's server hook."""
    clone = world.clone("a")
    key = world.root / "id_boss"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    git(clone, "config", "user.signingKey", str(key))
    approver = "test@example.com"
    r = run(clone, "init", "--slots", "20", "--require-signatures", "--approver", approver)
    assert r.code == 0, r.err
    r = run(clone, "hooks", "install", "--server", str(world.remote))
    assert r.code == 0, r.err
    return clone


SESSIONS = [f"s{i:02d}" for i in range(1, 13)]


def burst(clone: Path) -> list[tuple[str, tuple[str, ...]]]:
    """Twelve sessions' writes of every kind, two of them on the same claim."""
    ops: list[tuple[str, tuple[str, ...]]] = [
        (s, ("claim", "task", f"x{i}")) for i, s in enumerate(SESSIONS[:6], start=1)
    ]
    ops += [
        ("s07", ("claim", "task", "hot")),
        ("s08", ("claim", "task", "hot")),
        ("s09", ("heartbeat", "--force", "implementing", "x1", "tests", "50")),
        ("s10", ("send", "s01", "hello", "from s10")),
        ("s11", ("inbox",)),  # a read mark: s01 wrote to s11 in the setup
        ("s12", ("release", "task", "pre")),
    ]
    return ops


@pytest.mark.slow
@pytest.mark.skipif(
    subprocess.run(["which", "ssh-keygen"], capture_output=True).returncode != 0,
    reason="ssh-keygen (OpenSSH) is not installed",
)
@pytest.mark.parametrize("grouping", ["on", "agent", "off"])
def test_a_burst_of_one_clone_goes_in_few_pushes_each_session_its_own_outcome(
    world: World, grouping: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Mixed writes of twelve sessions of one clone at once, on a remote with the server
    hook and signatures required: each session gets exactly its own outcome (one of two
    claiming the same task wins, the other is exit 3 naming the winner), `git log` has
    one signed commit per operation, the hook let each in, the history replays valid —
    and grouped, it took fewer pushes than operations (off: one push each). `agent`: the
    commands are served by the warm agent's children."""
    if grouping == "off":
        monkeypatch.setenv("GITCOORD_GROUP", "0")
    with contextlib.ExitStack() as stack:
        if grouping == "agent":
            stack.enter_context(private_agent(monkeypatch))
        _burst_test(world, grouping)


def _burst_test(world: World, grouping: str) -> None:
    clone = signed_world(world)
    if grouping == "agent":
        assert warm_agent(clone)
    for s in SESSIONS:
        assert run(clone, "register", "--role", "r", "--goal", "g", session=s).code == 0
    assert run(clone, "claim", "task", "pre", session="s12").code == 0
    assert run(clone, "send", "s11", "note", "for s11", session="s01").code == 0
    root = git(world.remote, "rev-list", "--max-parents=0", REF).strip()
    before = git(world.remote, "rev-parse", REF).strip()
    git(world.remote, "config", "core.logAllRefUpdates", "always")
    base = pushes(world.remote)

    ops = burst(clone)
    with queued(clone, len(ops) if grouping != "off" else 0):
        procs = [spawn(clone, *TIMEOUT, "--json", *args, session=s) for s, args in ops]
    results = finish(procs)
    who = [s for s, _ in ops]

    codes = {s: r.code for s, r in zip(who, results, strict=True)}
    hot = [s for s in ("s07", "s08") if codes[s] == 0]
    assert len(hot) == 1, describe(results, who)
    winner, loser = hot[0], ({"s07", "s08"} - set(hot)).pop()
    assert codes == {**dict.fromkeys(who, 0), loser: 3}, describe(results, who)
    lost = results[who.index(loser)]
    assert winner in lost.err or winner in lost.out, lost.err + lost.out
    for (s, args), r in zip(ops, results, strict=True):
        if r.code != 0:
            continue
        doc = r.json()
        assert isinstance(doc, dict), r.out
        if args[0] == "claim":
            assert doc["claim"]["holder"] == s, doc
            assert doc["claim"]["resource"] == f"task/{args[2]}", doc

    # One commit per operation that wrote (11), each this session's, signed.
    new = [t for t in trailers(world.remote) if t["commit"] not in _upto(world.remote, before)]
    assert Counter(t.get("Gitcoord-Session") for t in new) == Counter(
        s for s in who if s != loser
    ), [(t["subject"], t.get("Gitcoord-Session")) for t in new]
    for t in new:
        sig = git(world.remote, "cat-file", "commit", t["commit"])
        assert "-----BEGIN SSH SIGNATURE-----" in sig, t
    held = claims(clone)
    assert held["task/hot"] == winner
    assert all(held[f"task/x{i}"] == f"s{i:02d}" for i in range(1, 7)), held
    assert "task/pre" not in held

    # The branch replays: the whole history judged commit by commit, as the hook did.
    tip = git(world.remote, "rev-parse", REF).strip()
    r = run(clone, "validate", "--range", f"{root}..{tip}")
    assert r.code == 0, r.out + r.err

    landed = pushes(world.remote) - base
    print(f"\ngrouping {grouping}: {len(new)} operations in {landed} pushes")
    if grouping != "off":
        assert landed < len(new), (landed, len(new))
    else:
        assert landed == len(new), (landed, len(new))


def _upto(remote: Path, commit: str) -> set[str]:
    return set(git(remote, "rev-list", commit).split())


# --- a leader killed while it holds the turn ----------------------------------------

# The remote's pre-receive hook: logs each push (the pids above it, the commits it
# brings), and holds the first push while `hold1` exists (then refuses it if `refuse`
# exists), every later one while `hold2` exists.
HOOK = textwrap.dedent(
    """\
    #!{python}
    import os, subprocess, sys, time
    here = {here!r}
    old, new, ref = sys.stdin.read().split()[:3]
    count = subprocess.run(["git", "rev-list", "--count", new, "^" + old],
                           capture_output=True, text=True).stdout.strip()
    pids, pid = [], os.getpid()
    for _ in range(8):
        with open(f"/proc/{{pid}}/stat") as fh:
            pid = int(fh.read().rsplit(")", 1)[1].split()[1])
        if pid <= 1:
            break
        pids.append(str(pid))
    with open(os.path.join(here, "log"), "a+") as fh:
        fh.seek(0)
        n = len(fh.read().splitlines()) + 1
        fh.write(f"{{n}} {{count}} {{' '.join(pids)}}\\n")
    hold = os.path.join(here, "hold1" if n == 1 else "hold2")
    while os.path.exists(hold):
        time.sleep(0.02)
    if n == 1 and os.path.exists(os.path.join(here, "refuse")):
        print("refused by the test", file=sys.stderr)
        sys.exit(1)
    """
)


def hook_log(here: Path) -> list[list[int]]:
    path = here / "log"
    if not path.exists():
        return []
    return [[int(x) for x in line.split()] for line in path.read_text().splitlines()]


def wait_for(what: str, check: object, timeout: float = 120.0) -> None:
    end = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < end, f"gave up waiting for {what}"
        time.sleep(0.05)


@pytest.mark.parametrize("then", ["lands", "refused"])
def test_a_leader_killed_mid_push_loses_no_one_elses_operation(world: World, then: str) -> None:
    """Six sessions of one clone claim at once; the one leading the batch is killed
    (kill -9) while its push of everyone's commits is held at the remote. Its push then
    lands after the others took over (`lands`), or is refused (`refused`): either way
    every other session sees its own claim land, exactly once, or gets an error — none
    is lost silently, none is written twice."""
    clone = world.clone("a")
    assert run(clone, "init").code == 0
    who = SESSIONS[:6]
    for s in who:
        assert run(clone, "register", "--role", "r", "--goal", "g", session=s).code == 0
    here = world.root / "hook"
    here.mkdir()
    hook = world.remote / "hooks" / "pre-receive"
    hook.write_text(HOOK.format(python=sys.executable, here=str(here)))
    hook.chmod(0o755)
    (here / "hold1").touch()
    (here / "hold2").touch()
    before = git(world.remote, "rev-parse", REF).strip()

    with queued(clone, len(who)):
        procs = [spawn(clone, *TIMEOUT, "claim", "task", f"k-{s}", session=s) for s in who]
    try:
        wait_for("the leader's push", lambda: len(hook_log(here)) >= 1)
        _, chained, *above = hook_log(here)[0]
        leader = next(p for p in procs if p.pid in above)
        assert chained >= 2, f"the leader pushed {chained} commit(s): no batch to lose"
        os.kill(leader.pid, signal.SIGKILL)
        leader.wait()
        if then == "lands":
            # The others take over: the first of them pushes again and is held too...
            wait_for("a takeover push", lambda: len(hook_log(here)) >= 2)
            (here / "hold1").unlink()  # ...while the dead leader's push lands first,
            wait_for("the dead leader's push", lambda: _tip(world) != before)
            (here / "hold2").unlink()  # and theirs is refused: they find theirs landed.
        else:
            (here / "refuse").touch()
            (here / "hold1").unlink()  # the dead leader's push is refused
            (here / "hold2").unlink()  # the others push theirs again
        others = [p for p in procs if p is not leader]
        results = finish(others)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    names = {p.pid: s for p, s in zip(procs, who, strict=True)}
    dead = names[leader.pid]
    alive = [names[p.pid] for p in others]
    report = describe(results, alive)
    # Every waiter got an answer of its own: here, each saw its claim land.
    assert [r.code for r in results] == [0] * len(alive), report
    held = claims(clone)
    for s in alive:
        assert held.get(f"task/k-{s}") == s, (s, held, report)
    # Exactly once each: one commit per surviving session; the dead one's at most once.
    new = [t for t in trailers(world.remote) if t["commit"] not in _upto(world.remote, before)]
    count = Counter(t.get("Gitcoord-Session") for t in new)
    assert all(count[s] == 1 for s in alive), count
    assert count[dead] == (1 if then == "lands" else 0), count
    assert run(clone, "validate").code == 0


def _tip(world: World) -> str:
    return git(world.remote, "rev-parse", REF).strip()


def test_a_batch_refused_on_a_stale_tip_is_replanned_whole_on_the_new_one(
    world: World,
) -> None:
    """Another clone writes while this clone's batch is decided on the tip it last knew:
    the push is refused, and every member decides again on the new tip — the one
    whose claim the other clone took now gets exit 3 naming that clone's session."""
    a, b = world.clone("a"), world.clone("b")
    assert run(a, "init").code == 0
    who = SESSIONS[:4]
    for s in who:
        assert run(a, "register", "--role", "r", "--goal", "g", session=s).code == 0
    assert run(b, "register", "--role", "r", "--goal", "g", session="bee").code == 0
    assert run(a, "status").code == 0  # a knows the tip: it will decide on it unfetched
    assert run(b, "claim", "task", "hot", session="bee").code == 0  # ...now stale
    before = _tip(world)
    git(world.remote, "config", "core.logAllRefUpdates", "always")
    base = pushes(world.remote)

    ops = [
        ("s01", ("claim", "task", "hot")),
        ("s02", ("claim", "task", "x")),
        ("s03", ("send", "bee", "hi", "there")),
        ("s04", ("heartbeat", "--force", "implementing", "x", "tests", "10")),
    ]
    with queued(a, len(ops)):
        procs = [spawn(a, *TIMEOUT, "--json", *args, session=s) for s, args in ops]
    results = finish(procs)
    names = [s for s, _ in ops]
    report = describe(results, names)
    assert [r.code for r in results] == [3, 0, 0, 0], report
    assert "bee" in results[0].out, results[0].out
    new = [t for t in trailers(world.remote) if t["commit"] not in _upto(world.remote, before)]
    assert sorted(t.get("Gitcoord-Session", "") for t in new) == ["s02", "s03", "s04"], new
    assert claims(a) == {"task/hot": "bee", "task/x": "s02"}
    landed = pushes(world.remote) - base
    assert landed < len(new), (landed, len(new))
    # The first push, on the tip `a` knew, was refused: `a` fetches first next time.
    pace = Pace.load(Pace.path(str(a / ".git"), "origin", REF))
    assert pace.speculate is False
    assert run(a, "validate").code == 0


@pytest.mark.parametrize("delay", [0.0, 0.15, 0.4])
def test_any_one_process_of_a_batch_killed_loses_no_one_elses_operation(
    world: World, delay: float
) -> None:
    """kill -9 of one process of a batch (leader or member, before, while or after it
    decides or pushes, as `delay` falls): every other session's claim lands exactly
    once and each says so; the killed one's lands at most once; the history is valid."""
    clone = world.clone("a")
    assert run(clone, "init").code == 0
    who = SESSIONS[:6]
    for s in who:
        assert run(clone, "register", "--role", "r", "--goal", "g", session=s).code == 0
    before = _tip(world)
    with queued(clone, len(who)):
        procs = [spawn(clone, *TIMEOUT, "claim", "task", f"k-{s}", session=s) for s in who]
    victim = procs[2]
    time.sleep(delay)  # where the kill falls; nothing asserted depends on it
    victim.kill()
    others = [p for p in procs if p is not victim]
    results = finish(others)
    victim.wait()
    alive = [s for p, s in zip(procs, who, strict=True) if p is not victim]
    assert [r.code for r in results] == [0] * len(alive), describe(results, alive)
    held = claims(clone)
    assert all(held.get(f"task/k-{s}") == s for s in alive), held
    new = [t for t in trailers(world.remote) if t["commit"] not in _upto(world.remote, before)]
    count = Counter(t.get("Gitcoord-Session") for t in new)
    assert all(count[s] == 1 for s in alive) and count[who[2]] <= 1, count
    assert run(clone, "validate").code == 0


# --- what the group parses ------------------------------------------------------------


def test_the_members_of_a_batch_parse_each_new_file_once_between_them(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each member decides on the chain the ones before it left, whose files it has not
    read: the group hands on what each parsed (`ParseCache.fresh`), so each new file is
    parsed once in the batch — by its writer — not by every member after it. Long-lived
    sessions (a Coordinator each, as MCP servers run), here threads of one process; the
    leader admits no one before all the others have joined (one batch, for certain)."""
    import threading

    from gitcoord import Coordinator

    clone = world.clone("a")
    assert run(clone, "init").code == 0
    who = [f"m{k}" for k in range(6)]
    for s in who:
        assert run(clone, "register", "--role", "r", "--goal", "g", session=s).code == 0
    git(world.remote, "config", "core.logAllRefUpdates", "always")
    coords = [Coordinator(str(clone), session=s, timeout=90) for s in who]
    parsed: list[bytes] = []
    lock = threading.Lock()
    for c in coords:
        c.snapshot()  # warm: every file on the branch is in its cache already
        own = c.store.parsed.parser

        def counted(raw: bytes, own: object = own) -> object:
            with lock:
                parsed.append(raw)
            return own(raw)  # type: ignore[operator]

        c.store.parsed.parser = counted
    base = pushes(world.remote)
    errors: list[BaseException] = []
    admit = group.Leader.admit

    def admit_everyone(self: group.Leader) -> None:
        end = time.monotonic() + 60
        while len(self.live) < len(coords) - 1 and time.monotonic() < end:
            admit(self)
            time.sleep(0.01)

    monkeypatch.setattr(group.Leader, "admit", admit_everyone)

    def claim(c: Coordinator, name: str) -> None:
        try:
            c.claim("task", name)
        except BaseException as exc:  # reported below, with the rest
            errors.append(exc)

    threads = [threading.Thread(target=claim, args=(c, f"t{k}")) for k, c in enumerate(coords)]
    try:
        with queued(clone, len(coords)):
            for t in threads:
                t.start()
        for t in threads:
            t.join(120)
    finally:
        for c in coords:
            c.close()
    assert not errors, errors
    landed = pushes(world.remote) - base
    print(f"\n{len(coords)} claims in {landed} pushes; parsed: {len(parsed)}")
    assert landed == 1
    # Each claim file parsed once, by its writer (for the loads to come), and by nobody
    # else: each member after it takes it from the group.
    claimed = [raw for raw in parsed if b"holder: m" in raw]
    assert len(set(claimed)) == len(claimed) == len(coords), claimed
    # ...and each member knows the files of the members after it too (the verdict hands
    # them on): its next transaction, deciding on the tip that push left, parses none.
    before = len(parsed)
    # (From memory: not from the file the others saved, which a member deciding at once
    # may find not yet written.)
    Path(coords[0].store.parsed.path).unlink(missing_ok=True)
    for c in coords:
        c.store.load(git(world.remote, "rev-parse", REF).strip())
    assert len(parsed) == before, parsed[before:]
