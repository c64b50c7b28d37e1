"""Section 8: what signed commits cost (issue #13): signing, verifying, requiring them.

Every commit gitcoord writes is signed by one `ssh-keygen -Y sign` process (the machine
key); where the branch requires signatures, every client verifies each new tip it has
not verified, one `ssh-keygen -Y check-novalidate` per commit plus the transition rules
(incremental: the last verified tip is kept per clone), and so do the server hook and
`validate --range`. Measured in one run, round-robin (round i runs every row once, in
an order rotated by i, so load drifting on a shared machine hits every row alike), each
row on a `file://` bare remote of its own:

  claims, in process through a long-lived `gitcoord.Coordinator` (single.py's INPROC):
  - unsigned: ssh-keygen hidden from PATH (a folder holding a symlink to git only; gitcoord
    finds ssh-keygen with `shutil.which` at each use) and no machine key, a branch not
    requiring signatures — what a machine without OpenSSH does; the baseline;
  - signed, not required (the default where ssh-keygen is installed);
  - signed and required, one clone: every new tip is this clone's own commit, already
    counted as verified — signing plus the bookkeeping of requiring, no check;
  - unsigned, two clones alternating: the baseline of the next row (each claim fetches
    and parses what the other clone wrote);
  - signed and required, two clones alternating: each claim's client first verifies the
    other clone's claim and release (the realistic case);
  cold CLI claims (`python -m gitcoord`, GITCOORD_AGENT=0), two clones alternating,
  unsigned and signed+required, in every third round (every round with --quick); and
  probes: one `ssh-keygen -Y sign` process, one `-Y check-novalidate` process, the
  process floor (`/bin/true`), and the same signature and check as gitcoord makes them
  in process for an ssh-ed25519 key (`Signer.sign`, `signed_by`).

  the verifier, over a history of N commits made by gitcoord (two sessions, signed):
  - `validate --range ..TIP` (a new `Coordinator` each time, as the hook and CI run it),
    signatures required and not;
  - a new clone's first `status` (required: it verifies the whole history first).

Each timed claim grants a released resource again and is released, untimed, right after,
so every row's state stays the same size. Each in-process operation's ssh-keygen and git
processes are counted and its signing and verifying steps timed (`counting`: wrappers
around gitcoord's functions in this process; nothing in gitcoord/ is changed), and so is
how many commits of each row's remote carry a signature: the rows did what their names say.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import common

UNSIGNED = "unsigned (no ssh-keygen on PATH), one clone"
SIGNED = "signed, not required (the default), one clone"
REQUIRED = "signed and required, one clone (nothing new to verify)"
UNSIGNED2 = "unsigned, two clones alternating"
REQUIRED2 = "signed and required, two clones alternating (verifies the other's commits)"
CLI_UNSIGNED = "cold CLI claim, unsigned, two clones alternating"
CLI_REQUIRED = "cold CLI claim, signed and required, two clones alternating"
CLAIM_ROWS = (UNSIGNED, SIGNED, REQUIRED, UNSIGNED2, REQUIRED2, CLI_UNSIGNED, CLI_REQUIRED)
# Each row's own baseline: the unsigned row of the same shape.
BASELINE = {
    UNSIGNED: UNSIGNED,
    SIGNED: UNSIGNED,
    REQUIRED: UNSIGNED,
    UNSIGNED2: UNSIGNED2,
    REQUIRED2: UNSIGNED2,
    CLI_UNSIGNED: CLI_UNSIGNED,
    CLI_REQUIRED: CLI_UNSIGNED,
}
SIGN = "one `ssh-keygen -Y sign` process (a commit's bytes)"
CHECK = "one `ssh-keygen -Y check-novalidate` process"
SPAWN = "the process floor: start and wait for `/bin/true`"
INPROC_SIGN = "the same signature made in process (`Signer.sign`, Ed25519 by `cryptography`)"
INPROC_CHECK = "the same check in process (`signed_by`, Ed25519 by `cryptography`)"
PROBES = (SIGN, CHECK, SPAWN, INPROC_SIGN, INPROC_CHECK)

RANGE_OFF = "validate --range ..TIP, not required"
RANGE_ON = "validate --range ..TIP, required"
FIRST_OFF = "a new clone's first status, not required"
FIRST_ON = "a new clone's first status, required"
VERIFIER_ROWS = (RANGE_OFF, RANGE_ON, FIRST_OFF, FIRST_ON)


# --- a machine without ssh-keygen -----------------------------------------------------


class NoKeygen:
    """PATH without ssh-keygen (a folder holding a symlink to git, nothing else) and a
    machine key path where no key is: a machine without OpenSSH, in this process (for the
    duration of `active()`) or in a child (`env`). gitcoord looks ssh-keygen up with
    `shutil.which` at each use, and git finds its own helpers by its exec path."""

    def __init__(self, root: Path) -> None:
        self.bin = root / "bin-without-ssh-keygen"
        self.bin.mkdir(parents=True)
        git = shutil.which("git")
        if git is None:
            raise RuntimeError("git is not on PATH")
        (self.bin / "git").symlink_to(os.path.realpath(git))
        self.key = root / "no-machine-key" / "signing_key"
        self.vars = {"PATH": str(self.bin), "GITCOORD_SIGNING_KEY": str(self.key)}
        if shutil.which("ssh-keygen", path=self.vars["PATH"]) is not None:
            raise RuntimeError("ssh-keygen is still found on the reduced PATH")

    def env(self, env: dict[str, str]) -> dict[str, str]:
        return {**env, **self.vars}

    def active(self) -> contextlib.AbstractContextManager[None]:
        return common.setenv(self.vars)


def _plain() -> contextlib.AbstractContextManager[None]:
    return contextlib.nullcontext()


# --- counting and timing the steps ----------------------------------------------------


@dataclass
class Counts:
    """What one operation did: ssh-keygen processes (sign, check), short git processes
    (`Git.run`), and seconds spent signing, in the verifier's checks, verifying the tip
    (`trust.check_tip`, the checks included) and recording a verified tip."""

    sign: int = 0
    check: int = 0
    git: int = 0
    sign_s: float = 0.0
    check_s: float = 0.0
    verify_s: float = 0.0
    record_s: float = 0.0

    def row(self) -> dict[str, float]:
        return dict(vars(self))


@contextlib.contextmanager
def counting() -> Iterator[Counts]:
    """Count and time, while inside, `Signer.sign` and the verifier's `signed_by` (one
    ssh-keygen process each), `Git.run`, and `trust.check_tip` / `trust.mark_verified`
    (which the Coordinator imports at each call); restored on exit. Nothing in gitcoord/
    is changed: these are wrappers around its functions, in this process only."""
    from gitcoord import gitio, sshsig
    from gitcoord.api import trust
    from gitcoord.audit import signatures

    counts = Counts()
    sign, check, run = sshsig.Signer.sign, signatures.signed_by, gitio.Git.run
    check_tip, mark_verified = trust.check_tip, trust.mark_verified

    def counted_sign(self: Any, payload: bytes) -> bytes:
        counts.sign += 1
        t = time.perf_counter()
        try:
            return sign(self, payload)
        finally:
            counts.sign_s += time.perf_counter() - t

    def counted_check(payload: bytes, signature: bytes) -> str | None:
        counts.check += 1
        t = time.perf_counter()
        try:
            return check(payload, signature)
        finally:
            counts.check_s += time.perf_counter() - t

    def counted_run(self: Any, *a: Any, **kw: Any) -> Any:
        counts.git += 1
        return run(self, *a, **kw)

    def timed_check_tip(*a: Any, **kw: Any) -> Any:
        t = time.perf_counter()
        try:
            return check_tip(*a, **kw)
        finally:
            counts.verify_s += time.perf_counter() - t

    def timed_mark(*a: Any, **kw: Any) -> Any:
        t = time.perf_counter()
        try:
            return mark_verified(*a, **kw)
        finally:
            counts.record_s += time.perf_counter() - t

    sshsig.Signer.sign = counted_sign  # type: ignore[method-assign]
    signatures.signed_by = counted_check
    gitio.Git.run = counted_run  # type: ignore[method-assign]
    trust.check_tip = timed_check_tip
    trust.mark_verified = timed_mark
    try:
        yield counts
    finally:
        sshsig.Signer.sign = sign  # type: ignore[method-assign]
        signatures.signed_by = check
        gitio.Git.run = run  # type: ignore[method-assign]
        trust.check_tip = check_tip
        trust.mark_verified = mark_verified


def _medians(rows: list[dict[str, float]]) -> dict[str, float]:
    """The median of each field of `rows` (one per operation)."""
    return {k: common.median([r[k] for r in rows]) for k in rows[0]}


# --- remotes ------------------------------------------------------------------------------


@dataclass
class Remote:
    root: Path
    remote: Path
    url: str
    required: bool


def make_remote(
    root: Path, env: dict[str, str], required: bool, approver_key: Path | None
) -> Remote:
    """A bare remote with an initialised branch; `required`: init --require-signatures by
    an approver whose user.signingKey is `approver_key` (in a clone of their own)."""
    from gitcoord import Coordinator

    root.mkdir()
    remote = common.bare_remote(root / "remote.git", env)
    url = f"file://{remote}"
    admin = common.clone(url, root / "admin", env)
    if required:
        assert approver_key is not None
        common.git(admin, "config", "user.signingKey", str(approver_key), env=env)
    coord = Coordinator(str(admin))
    try:
        coord.init(require_signatures=required)
    finally:
        coord.close()
    return Remote(root, remote, url, required)


def session(rem: Remote, name: str, env: dict[str, str]) -> Any:
    """A clone of `rem` with session `name` registered in it; its Coordinator."""
    from gitcoord import Coordinator

    work = common.clone(rem.url, rem.root / f"clone-{name}", env)
    coord = Coordinator(str(work), session=name)
    coord.register(role=f"bench {name}", goal="measure signatures")
    return coord


def signed_share(repo: Path, env: dict[str, str]) -> tuple[int, int]:
    """(commits carrying a signature, commits) on the branch of bare `repo`."""
    commits = common.git(repo, "rev-list", "refs/heads/gitcoord", env=env).split()
    proc = subprocess.run(
        ["git", "cat-file", "--batch"],
        cwd=repo,
        env=env,
        input=("\n".join(commits) + "\n").encode(),
        capture_output=True,
        check=True,
    )
    signed = 0
    out = proc.stdout
    at = 0
    for _ in commits:
        eol = out.index(b"\n", at)
        size = int(out[at:eol].split()[2])
        body = out[eol + 1 : eol + 1 + size]
        header = body.split(b"\n\n", 1)[0]
        signed += b"\ngpgsig " in header or b"\ngpgsig-sha256 " in header
        at = eol + 1 + size + 1
    return signed, len(commits)


# --- claims ---------------------------------------------------------------------------------


def claims(
    tmp: Path,
    env: dict[str, str],
    runs: int,
    cli_every: int,
    hidden: NoKeygen,
    approver_key: Path,
) -> dict[str, Any]:
    """`runs` rounds of the in-process rows and probes; the cold CLI rows (~10× slower)
    in every `cli_every`-th of them, both in the same rounds."""
    from gitcoord import sshsig

    root = tmp / "signing-claims"
    root.mkdir()
    remotes: dict[str, Remote] = {}
    # row -> its Coordinators (one per session, each in its own clone)
    coords: dict[str, list[Any]] = {}
    context: dict[str, Callable[[], contextlib.AbstractContextManager[None]]] = {}
    unsigned_rows: set[str] = set()
    for i, (row, required, sessions, unsigned) in enumerate(
        (
            (UNSIGNED, False, ("solo",), True),
            (SIGNED, False, ("solo",), False),
            (REQUIRED, True, ("solo",), False),
            (UNSIGNED2, False, ("alice", "bob"), True),
            (REQUIRED2, True, ("alice", "bob"), False),
            (CLI_UNSIGNED, False, ("alice", "bob"), True),
            (CLI_REQUIRED, True, ("alice", "bob"), False),
        )
    ):
        ctx = hidden.active if unsigned else _plain
        context[row] = ctx
        if unsigned:
            unsigned_rows.add(row)
        with ctx():
            rem = make_remote(root / f"row{i}", env, required, approver_key)
            remotes[row] = rem
            coords[row] = [session(rem, s, env) for s in sessions]

    turn = dict.fromkeys(CLAIM_ROWS, 0)
    work: dict[str, list[dict[str, float]]] = {r: [] for r in CLAIM_ROWS}

    def inproc(row: str) -> Callable[[], None]:
        def op() -> None:
            c = coords[row][turn[row] % len(coords[row])]
            with context[row](), counting() as n:
                secs, _ = common.timed(lambda: c.claim("task", c.session))
            last_op[row] = (secs, n.row())

        return op

    def cli(row: str) -> Callable[[], None]:
        child_env = hidden.env(env) if row in unsigned_rows else env

        def op() -> None:
            c = coords[row][turn[row] % len(coords[row])]
            argv = [sys.executable, "-m", "gitcoord", "-C", c.path, "--session", c.session]
            secs, proc = common.timed(
                lambda: subprocess.run(
                    [*argv, "claim", "task", c.session],
                    env=child_env,
                    capture_output=True,
                    check=False,
                )
            )
            if proc.returncode != 0:
                raise RuntimeError(f"gitcoord claim failed: {proc.stderr.decode().strip()}")
            last_op[row] = (secs, None)

        return op

    last_op: dict[str, tuple[float, dict[str, float] | None]] = {}
    ops: dict[str, Callable[[], None]] = {
        row: (cli(row) if row in (CLI_UNSIGNED, CLI_REQUIRED) else inproc(row))
        for row in CLAIM_ROWS
    }

    # The probes: a commit's bytes signed by this machine's key, and that signature.
    signer = sshsig.machine_signer()
    assert signer is not None
    payload = common.git(remotes[SIGNED].remote, "cat-file", "commit", "gitcoord", env=env)
    body, _ = sshsig.split_commit(payload.encode())
    signature = signer._sign(body, signer.key_file)  # ssh-keygen's own
    if signer.sign(body) != signature or not sshsig._keygen_valid(body, signature):
        raise RuntimeError("the signature made in process is not ssh-keygen's")
    if sshsig.signed_by(body, signature) != signer.public:
        raise RuntimeError("the signature does not verify in process")
    probes: dict[str, Callable[[], Any]] = {
        SIGN: lambda: signer._sign(body, signer.key_file),
        CHECK: lambda: sshsig._keygen_valid(body, signature),
        SPAWN: lambda: subprocess.run(["/bin/true"], check=True),
        INPROC_SIGN: lambda: signer.sign(body),
        INPROC_CHECK: lambda: sshsig.signed_by(body, signature),
    }

    rows = [*CLAIM_ROWS, *probes]
    out: dict[str, list[float]] = {r: [] for r in rows}
    try:
        for i in range(-2, runs):  # two warm-up rounds: each clone of a pair claims once
            order = rows[i % len(rows) :] + rows[: i % len(rows)]
            for row in order:
                if row in (CLI_UNSIGNED, CLI_REQUIRED) and i >= 0 and i % cli_every:
                    continue
                if row in probes:
                    secs, _ = common.timed(probes[row])
                else:
                    ops[row]()
                    secs, counted = last_op[row]
                    c = coords[row][turn[row] % len(coords[row])]
                    with context[row]():
                        c.release("task", c.session)  # untimed: the next claim grants anew
                    turn[row] += 1
                    if i >= 0 and counted is not None:
                        work[row].append(counted)
                if i >= 0:
                    out[row].append(secs)
    finally:
        for cs in coords.values():
            for c in cs:
                c.close()
    signed = {row: signed_share(rem.remote, env) for row, rem in remotes.items()}
    per_op = {row: _medians(w) for row, w in work.items() if w}
    return {
        "series": out,  # the rows present in the same rounds are aligned by round
        "cli_runs": len(out[CLI_UNSIGNED]),
        "work": per_op,
        "signed": signed,
        "in_process_check": True,
    }


# --- the verifier -------------------------------------------------------------------------


def build_history(rem: Remote, env: dict[str, str], commits: int) -> str:
    """Two sessions in one clone alternate claims and releases until the branch has
    `commits` commits (init and registrations included); returns the tip."""
    alice = session(rem, "alice", env)
    from gitcoord import Coordinator

    bob = Coordinator(alice.path, session="bob")
    try:
        bob.register(role="bench bob", goal="measure signatures")
        remote = rem.remote
        k = 0
        while True:
            have = int(common.git(remote, "rev-list", "--count", "gitcoord", env=env))
            if have >= commits:
                break
            c = (alice, bob)[k % 2]
            if have + 1 == commits:
                c.claim("task", f"{c.session}-last")
            else:
                c.claim("task", c.session)
                c.release("task", c.session)
            k += 1
    finally:
        alice.close()
        bob.close()
    return common.git(rem.remote, "rev-parse", "gitcoord", env=env).strip()


def verifier(
    tmp: Path, env: dict[str, str], runs: int, commits: int, approver_key: Path
) -> dict[str, Any]:
    from gitcoord import Coordinator

    root = tmp / "signing-verifier"
    root.mkdir()
    tips: dict[bool, str] = {}
    remotes: dict[bool, Remote] = {}
    checkers: dict[bool, Path] = {}
    for required in (False, True):
        rem = make_remote(
            root / ("required" if required else "not-required"), env, required, approver_key
        )
        tips[required] = build_history(rem, env, commits)
        remotes[required] = rem
        checkers[required] = common.clone(rem.url, rem.root / "verifier", env)

    fresh = iter(range(10**9))
    work: dict[str, list[dict[str, float]]] = {r: [] for r in VERIFIER_ROWS}

    def validate(required: bool) -> Callable[[], dict[str, float]]:
        def op() -> dict[str, float]:
            with counting() as n:
                c = Coordinator(str(checkers[required]))
                try:
                    c.validate(span=f"..{tips[required]}")
                finally:
                    c.close()
            return n.row()

        return op

    def first_status(required: bool) -> Callable[[], dict[str, float]]:
        def op() -> dict[str, float]:
            rem = remotes[required]  # untimed: a new clone, never used before
            work = common.clone(rem.url, rem.root / f"fresh-{next(fresh)}", env)
            try:
                with counting() as n:
                    secs, _ = common.timed(lambda: _status(work))
            finally:
                shutil.rmtree(work, ignore_errors=True)
            timed_first[0] = secs
            return n.row()

        return op

    def _status(work: Path) -> None:
        c = Coordinator(str(work))
        try:
            c.status()
        finally:
            c.close()

    timed_first = [0.0]
    ops = {
        RANGE_OFF: validate(False),
        RANGE_ON: validate(True),
        FIRST_OFF: first_status(False),
        FIRST_ON: first_status(True),
    }
    rows = list(VERIFIER_ROWS)
    out: dict[str, list[float]] = {r: [] for r in rows}
    for i in range(-1, runs):  # -1: warm-up round, not kept
        order = rows[i % len(rows) :] + rows[: i % len(rows)]
        for row in order:
            secs, checks = common.timed(ops[row])
            if row in (FIRST_OFF, FIRST_ON):
                secs = timed_first[0]  # without the untimed clone
            if i >= 0:
                out[row].append(secs)
                work[row].append(checks)
    length = {
        req: int(common.git(remotes[req].remote, "rev-list", "--count", "gitcoord", env=env))
        for req in (False, True)
    }
    return {
        "series": out,
        # per operation, medians: processes started and seconds in each step (`Counts`)
        "work": {r: _medians(w) for r, w in work.items() if w},
        "commits": length[True],
        "commits_not_required": length[False],
        "signed": {req: signed_share(remotes[req].remote, env) for req in (False, True)},
    }


def run(
    tmp: Path,
    env: dict[str, str],
    runs: int,
    cli_every: int,
    verify_runs: int,
    commits: int,
) -> dict[str, Any]:
    keygen = shutil.which("ssh-keygen")
    if keygen is None:
        return {"skipped": "ssh-keygen (OpenSSH) is not installed here: nothing to measure"}
    hidden = NoKeygen(tmp / "signing-nokeygen")
    approver_key = tmp / "home" / "id_approver"
    subprocess.run(
        [keygen, "-q", "-t", "ed25519", "-N", "", "-C", "approver", "-f", str(approver_key)],
        check=True,
        capture_output=True,
    )
    ssh = shutil.which("ssh")
    version = (
        subprocess.run([ssh, "-V"], capture_output=True, text=True, check=False).stderr.strip()
        if ssh
        else ""
    )
    out: dict[str, Any] = {
        "runs": runs,
        "verify_runs": verify_runs,
        "commits": commits,
        "ssh": version or keygen,
    }
    out["claims"] = claims(tmp, env, runs, cli_every, hidden, approver_key)
    out["verifier"] = verifier(tmp, env, verify_runs, commits, approver_key)
    return out
