"""Signed commits: proven identity on every face of a push (issue #13).

Two "machines" are two HOMEs, each with its own machine key (made on first use) and
its own clone; the human approver has their own key (git's user.signingKey). Every
attack is made for real: with gitcoord itself run as someone else, or with plain git
plumbing (`git commit-tree -S` with `gpg.format=ssh`, unsigned `commit-tree`), and
pushed to a bare repository with the server hook (refused there), or to one without
hooks, a forge that runs none (then every client refuses to build on it, `doctor`
names the commit, and `doctor --fix` restores the last state that verifies).
Honest work — every write, approvals by grant and by signed merge, key rotation and
revocation, a restore — passes the hook, `validate --range` and the clients.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pytest
from conftest import World, at, git, run
from reliability import REF, commit_files

pytestmark = pytest.mark.skipif(
    subprocess.run(["which", "ssh-keygen"], capture_output=True).returncode != 0,
    reason="ssh-keygen (OpenSSH) is not installed",
)

BOSS = "boss@example.com"


@dataclass
class Machine:
    """One user on one machine: a HOME, a git identity, a clone of the remote."""

    name: str
    home: Path
    repo: Path
    email: str

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "GITCOORD_"))}
        env.update(
            HOME=str(self.home),
            XDG_CONFIG_HOME=str(self.home / ".config"),
            GIT_CONFIG_NOSYSTEM="1",
            GIT_CONFIG_GLOBAL=str(self.home / ".gitconfig"),
            GIT_AUTHOR_NAME=self.name,
            GIT_AUTHOR_EMAIL=self.email,
            GIT_COMMITTER_NAME=self.name,
            GIT_COMMITTER_EMAIL=self.email,
            GITCOORD_AGENT="0",
        )
        return env

    def run(self, *args: str, session: str | None = None) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "gitcoord", "-C", str(self.repo)]
        if session:
            argv += ["--session", session]
        return subprocess.run(
            [*argv, *args], capture_output=True, text=True, env=self.env(), timeout=120
        )

    def ok(self, *args: str, session: str | None = None) -> dict[str, object]:
        proc = self.run("--json", *args, session=session)
        assert proc.returncode == 0, proc.stderr + proc.stdout
        doc = json.loads(proc.stdout)
        assert isinstance(doc, dict)
        return doc

    def git(self, *args: str, input: bytes | None = None) -> str:
        proc = subprocess.run(
            ["git", *args], cwd=self.repo, env=self.env(), capture_output=True, input=input
        )
        assert proc.returncode == 0, f"git {args}: {proc.stderr.decode()}"
        return proc.stdout.decode().strip()

    @property
    def machine_key(self) -> Path:
        return self.home / ".config" / "gitcoord" / "signing_key"

    def public(self, key: Path | None = None) -> str:
        text = Path(str(key or self.machine_key) + ".pub").read_text()
        return " ".join(text.split()[:2])


def _machine(root: Path, remote: Path, name: str, email: str) -> Machine:
    home = root / f"home-{name}"
    home.mkdir()
    (home / ".gitconfig").write_text(
        f"[user]\n\tname = {name}\n\temail = {email}\n[init]\n\tdefaultBranch = main\n"
        '[protocol "file"]\n\tallow = always\n'
    )
    repo = root / f"clone-{name}"
    m = Machine(name, home, repo, email)
    subprocess.run(
        ["git", "clone", "-q", str(remote), str(repo)], env=m.env(), check=True, capture_output=True
    )
    return m


@dataclass
class Signed:
    root: Path
    remote: Path
    boss: Machine
    a: Machine  # alice's machine
    b: Machine  # bob's machine
    boss_key: Path


def _setup(tmp_path: Path, hooked: bool) -> Signed:
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    boss = _machine(tmp_path, remote, "boss", BOSS)
    key = boss.home / "id_boss"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    boss.git("config", "user.signingKey", str(key))
    boss.ok("init", "--require-signatures", "--approver", BOSS)
    if hooked:
        proc = boss.run("hooks", "install", "--server", str(remote))
        assert proc.returncode == 0, proc.stderr
    a = _machine(tmp_path, remote, "alice", "alice@example.com")
    b = _machine(tmp_path, remote, "bob", "bob@example.com")
    a.ok("register", "--role", "research", "--goal", "find", session="alice")
    b.ok("register", "--role", "writing", "--goal", "write", session="bob")
    return Signed(tmp_path, remote, boss, a, b, key)


@pytest.fixture
def hooked(tmp_path: Path) -> Signed:
    """A bare remote whose pre-receive hook judges every push."""
    return _setup(tmp_path, hooked=True)


@pytest.fixture
def hookless(tmp_path: Path) -> Signed:
    """A remote that runs no hooks (as GitHub): only the clients can refuse."""
    return _setup(tmp_path, hooked=False)


def _signed_commit(
    m: Machine, parent: str, changes: dict[str, bytes | None], message: str, key: Path | None
) -> str:
    """A commit made with plain git: `commit-tree -S` signs it in git's own SSH format
    with `key` (none: unsigned)."""
    unsigned = commit_files(m.repo, changes, parent=parent, message=message)
    if key is None:
        return unsigned
    tree = m.git("rev-parse", f"{unsigned}^{{tree}}")
    return m.git(
        "-c",
        "gpg.format=ssh",
        "-c",
        f"user.signingKey={key}",
        "commit-tree",
        "-S",
        tree,
        "-p",
        parent,
        "-m",
        message,
    )


def _push(m: Machine, commit: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "push", "origin", f"{commit}:{REF}"],
        cwd=m.repo,
        env=m.env(),
        capture_output=True,
        text=True,
    )


def _fetch_tip(m: Machine) -> str:
    m.git("fetch", "-q", "origin", f"+{REF}:refs/test/tip")
    return m.git("rev-parse", "refs/test/tip")


def _show(m: Machine, rev: str, path: str) -> bytes:
    return subprocess.run(
        ["git", "cat-file", "blob", f"{rev}:{path}"], cwd=m.repo, capture_output=True, check=True
    ).stdout


def _release_alices_claim(m: Machine, parent: str) -> dict[str, bytes | None]:
    """The bytes of alice's claim file, released: what a forger writes."""
    path = at("coordination/claims/task/t1.yaml")
    text = _show(m, parent, path).decode()
    when = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {path: (text + f"released_at: '{when}'\n").encode()}


def _release_as_alice(m: Machine, parent: str, key: Path) -> str:
    """A commit made on `m` that releases alice's claim, speaking for her, signed by `key`."""
    message = "release task/t1\n\nGitcoord-Op: release\nGitcoord-Session: alice\n"
    return _signed_commit(m, parent, _release_alices_claim(m, parent), message, key)


# --- honest work ---------------------------------------------------------------------


def test_every_commit_is_signed_in_gits_own_format(hookless: Signed) -> None:
    """git verify-commit, given the keys as allowed signers, accepts every commit that
    gitcoord wrote: the sessions' by their machine key, init by the approver's."""
    w = hookless
    w.a.ok("claim", "task", "t1", session="alice")
    allowed = w.root / "allowed_signers"
    allowed.write_text(
        f"alice {w.a.public()}\nbob {w.b.public()}\nboss {w.boss.public(w.boss_key)}\n"
    )
    head = _fetch_tip(w.a)
    signers = w.a.git(
        "-c", f"gpg.ssh.allowedSignersFile={allowed}", "log", "--format=%G? %GS", head
    ).splitlines()
    assert signers == ["G alice", "G bob", "G alice", "G boss"]
    w.a.git("-c", f"gpg.ssh.allowedSignersFile={allowed}", "verify-commit", head)
    keys = w.a.ok("key", "show")
    assert keys["require_signatures"] is True
    assert {s["session"]: s["this_machine"] for s in keys["sessions"]} == {  # type: ignore[index, union-attr]
        "alice": True,
        "bob": False,
    }


@pytest.mark.slow
def test_honest_history_passes_hook_range_and_clients(hooked: Signed) -> None:
    """Every kind of write, an approval granted and one merged (signed by the approver's
    key), a rotation and a revocation: the hook lets each in, `validate --range` of the
    whole history says valid, and a fresh clone verifies it all."""
    w = hooked
    a, b, boss = w.a, w.b, w.boss
    a.ok("claim", "task", "t1", session="alice")
    a.ok("heartbeat", "implementing", "t1", "tests", "50", session="alice")
    b.ok("send", "alice", "hello", "hi", session="bob")
    a.ok("task", "add", "write the report", session="alice")
    req = a.ok("approval", "request", "ship it", session="alice")
    boss.ok("approval", "grant", req["approval"]["id"])  # type: ignore[index]
    # an approval merged by the approver, signed with their key (git merge -S)
    req2 = b.ok("approval", "request", "second", session="bob")
    branch = str(req2["branch"])
    boss.git(
        "fetch", "-q", "origin", f"+{REF}:refs/heads/gc", f"+refs/heads/{branch}:refs/heads/ap"
    )
    boss.git("checkout", "-q", "gc")
    boss.git("-c", "gpg.format=ssh", "merge", "-q", "-S", "--no-ff", "-m", "approve second", "ap")
    merged = boss.git("rev-parse", "HEAD")
    assert _push(boss, merged).returncode == 0
    a.ok("release", "task", "t1", session="alice")
    a.ok("key", "rotate")
    a.ok("claim", "task", "t2", session="alice")
    # alice loses her machine: the approver binds her new machine's key
    c = _machine(w.root, w.remote, "alice2", "alice@example.com")
    proc = c.run("register", session="alice")  # makes c's machine key, then is refused
    assert proc.returncode == 4 and "bound to key" in proc.stderr, proc.stderr
    boss.ok("key", "revoke", "alice", "--key", c.public())
    c.ok("claim", "task", "t3", session="alice")
    assert a.run("claim", "task", "t4", session="alice").returncode == 4  # old key: refused
    fresh = _machine(w.root, w.remote, "fresh", "fresh@example.com")
    proc = fresh.run("validate", "--range", f"..{_fetch_tip(fresh)}")
    assert proc.returncode == 0 and "valid" in proc.stdout, proc.stdout + proc.stderr
    status = fresh.ok("status")  # verifies the whole history, once
    assert status["tip"] == _fetch_tip(fresh)


# --- attacks -------------------------------------------------------------------------


def test_another_machine_cannot_write_as_a_session(hooked: Signed) -> None:
    """bob's machine releasing alice's claim: refused by the client before it writes
    (bound to another key), and a commit bob signs by hand is refused by the hook."""
    w = hooked
    w.a.ok("claim", "task", "t1", session="alice")
    proc = w.b.run("release", "task", "t1", session="alice")
    assert proc.returncode == 4 and "bound to key" in proc.stderr, proc.stderr
    parent = _fetch_tip(w.b)
    forged = _release_as_alice(w.b, parent, w.b.machine_key)
    pushed = _push(w.b, forged)
    assert pushed.returncode != 0
    assert "speaks for alice but is signed by" in pushed.stderr
    proc = w.b.run("validate", "--range", f"{parent}..{forged}")
    assert proc.returncode == 5 and "signature" in proc.stdout + proc.stderr
    # the same content, signed by alice's own key, is honest work and passes
    honest = _release_as_alice(w.a, parent, w.a.machine_key)
    w.a.git("fetch", "-q", "origin")
    pushed = _push(w.a, honest)
    assert pushed.returncode == 0, pushed.stderr


@pytest.mark.parametrize("how", ["unsigned", "session-key", "forged-author"])
def test_a_session_cannot_approve(hooked: Signed, how: str) -> None:
    """An approval with the approver's e-mail but not their key: unsigned, signed by a
    session's machine key, or by gitcoord itself with GIT_AUTHOR_EMAIL forged."""
    w = hooked
    req = w.a.ok("approval", "request", "deploy", session="alice")
    aid = req["approval"]["id"]  # type: ignore[index]
    if how == "forged-author":
        env_email = w.a.email
        w.a.email = BOSS  # author and committer say boss
        w.a.git("config", "user.signingKey", str(w.a.machine_key))
        proc = w.a.run("approval", "grant", aid)
        w.a.email = env_email
        assert proc.returncode != 0
        assert "not signed by an approver" in proc.stderr or "approver" in proc.stderr
        return
    parent = _fetch_tip(w.a)
    path = at(f"coordination/approvals/{aid}.yaml")
    text = _show(w.a, parent, path).decode().replace("status: pending", "status: approved")
    text += f"approved_by: {BOSS}\napproved_at: '2026-12-01T00:00:00Z'\n"
    key = None if how == "unsigned" else w.a.machine_key
    forged = _signed_commit(
        w.a,
        parent,
        {path: text.encode()},
        f"approve {aid}\n\nGitcoord-Op: approval-grant\n",
        key,
    )
    # the author line says boss: that alone proves nothing
    pushed = _push(w.a, forged)
    assert pushed.returncode != 0
    assert "signature" in pushed.stderr or "signed" in pushed.stderr, pushed.stderr


def test_config_changes_need_an_approvers_key(hooked: Signed) -> None:
    """Turning signatures off, or adding oneself as an approver, by a session's key
    with the approver's e-mail as author: the key is what counts."""
    w = hooked
    w.a.email = BOSS  # the commits below say they are boss's
    parent = _fetch_tip(w.a)
    config = _show(w.a, parent, "coordination/config.yaml").decode()
    for new in (
        config.replace("require_signatures: true", "require_signatures: false"),
        config.replace(f"- {BOSS}", f"- {BOSS}\n- alice@example.com"),
    ):
        forged = _signed_commit(
            w.a,
            parent,
            {"coordination/config.yaml": new.encode()},
            "config\n\nGitcoord-Op: config\n",
            w.a.machine_key,
        )
        assert w.a.git("log", "-1", "--format=%ae", forged) == BOSS
        pushed = _push(w.a, forged)
        assert pushed.returncode != 0 and "no approver's key" in pushed.stderr, pushed.stderr
    # the approver may: by gitcoord, signed with their key
    w.boss.ok("approver", "add", "lead@example.com", "--key", w.a.public())
    w.boss.ok("signatures", "off")
    w.boss.ok("signatures", "on")


def test_clients_refuse_a_forged_tip_and_doctor_restores(hookless: Signed) -> None:
    """Where no hook judges pushes, a forged release lands; every client then refuses
    to act on the tip (exit 5, naming the commit), `doctor` says what to do, and
    `doctor --fix` restores the state before it in a new signed commit that the
    clients and `validate --range` accept; history is kept."""
    w = hookless
    w.a.ok("claim", "task", "t1", session="alice")
    w.b.ok("status")  # bob verifies the tip before the forgery
    parent = _fetch_tip(w.b)
    forged = _release_as_alice(w.b, parent, w.b.machine_key)
    assert _push(w.b, forged).returncode == 0  # nothing stops it here
    for m, session in ((w.a, "alice"), (w.b, "bob")):
        proc = m.run("claim", "task", "t1", session=session)
        assert proc.returncode == 5, proc.stderr
        assert forged[:10] in proc.stderr and "cannot be verified" in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
    proc = w.a.run("doctor", session="alice")
    assert proc.returncode == 5 and forged[:10] in proc.stderr and "--fix" in proc.stderr
    done = w.a.ok("doctor", "--fix", session="alice")
    assert done["restored"] == parent and done["undone"] == forged
    restored = _fetch_tip(w.a)
    assert w.a.git("rev-parse", f"{restored}^") == forged  # forward, not rewritten
    assert w.a.git("rev-parse", f"{restored}^{{tree}}") == w.a.git(
        "rev-parse", f"{parent}^{{tree}}"
    )
    status = w.b.ok("status")  # bob accepts the restored tip
    assert status["tip"] == restored
    w.b.ok("claim", "task", "t9", session="bob")
    proc = w.b.run("claim", "task", "t1", session="bob")
    assert proc.returncode == 3, proc.stderr  # alice's claim stands again
    fresh = _machine(w.root, w.remote, "fresh", "f@example.com")
    proc = fresh.run("validate", "--range", f"..{_fetch_tip(fresh)}")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_a_restore_cannot_roll_back_honest_work(hooked: Signed) -> None:
    """A "restoring" commit naming an earlier commit when nothing after it is refused
    is judged as the change it is: undoing others' writes, refused by the hook."""
    w = hooked
    before = _fetch_tip(w.a)
    w.b.ok("claim", "task", "t5", session="bob")
    now = _fetch_tip(w.a)
    tree = w.a.git("rev-parse", f"{before}^{{tree}}")
    message = (
        f"restore\n\nGitcoord-Op: restore\nGitcoord-Session: alice\nGitcoord-Restores: {before}\n"
    )
    rollback = w.a.git(
        "-c",
        "gpg.format=ssh",
        "-c",
        f"user.signingKey={w.a.machine_key}",
        "commit-tree",
        "-S",
        tree,
        "-p",
        now,
        "-m",
        message,
    )
    pushed = _push(w.a, rollback)
    assert pushed.returncode != 0, pushed.stderr


def test_clients_verify_each_commit_once(hookless: Signed) -> None:
    """The verified tip is kept per clone: a tip verified before is not judged again,
    and a clone's own commits on a verified tip count as verified."""
    w = hookless
    w.a.ok("claim", "task", "t1", session="alice")
    mark = w.a.repo / ".git" / "gitcoord" / "verified"
    (file,) = list(mark.iterdir())
    assert file.read_text().split()[0] == _fetch_tip(w.a)
    # a forged commit already judged and refused stays refused: nothing is cached for it
    parent = _fetch_tip(w.b)
    forged = _signed_commit(
        w.b, parent, {"coordination/x.yaml": b"a: 1\n"}, "x\n\nGitcoord-Session: bob\n", None
    )
    assert _push(w.b, forged).returncode == 0
    assert w.a.run("status").returncode == 5
    assert w.a.run("status").returncode == 5
    assert file.read_text().split()[0] == parent


def test_a_write_of_its_own_is_marked_verified_with_what_its_config_requires(
    hookless: Signed,
) -> None:
    """A clone's own write on a verified tip counts as verified, recorded with whether
    the config it leaves requires signatures: the verified tip's answer while the write
    leaves config.yaml as it was (no state is loaded for it), the new config's when the
    write changed it — turning signatures off is not remembered as still required."""
    w = hookless

    def recorded(m: Machine) -> tuple[str, str, str]:
        (file,) = list((m.repo / ".git" / "gitcoord" / "verified").iterdir())
        tip, required, config = file.read_text().split()
        return tip, required, config

    def now(m: Machine, required: str) -> tuple[str, str, str]:
        tip = _fetch_tip(m)
        return tip, required, m.git("rev-parse", f"{tip}:coordination/config.yaml")

    w.boss.ok("status")  # verified here: alice's and bob's registrations
    w.boss.ok("signatures", "off")
    assert recorded(w.boss) == now(w.boss, "0")
    w.boss.ok("signatures", "on")  # (not recorded: nothing was required when it wrote)
    w.boss.ok("status")  # verified now, against the config that requires them
    assert recorded(w.boss) == now(w.boss, "1")
    w.a.ok("claim", "task", "t1", session="alice")  # the config as it was
    assert recorded(w.a) == now(w.a, "1")


def test_signatures_need_format_3_and_an_approver_key(tmp_path: Path) -> None:
    remote = tmp_path / "r.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    m = _machine(tmp_path, remote, "solo", "solo@example.com")
    proc = m.run("init", "--require-signatures")
    assert proc.returncode == 2 and "user.signingKey" in proc.stderr
    m.ok("init")
    proc = m.run("signatures", "on")
    assert proc.returncode == 2 and "approver key" in proc.stderr


def test_a_lost_approver_key_is_replaced_by_another_approver(hooked: Signed) -> None:
    """Recovery: boss loses their key; lead, a second approver (the owner's offline
    break-glass key would do the same), binds boss's new key; boss approves again."""
    w = hooked
    lead = _machine(w.root, w.remote, "lead", "lead@example.com")
    lead_key = lead.home / "id_lead"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(lead_key)], check=True)
    lead.git("config", "user.signingKey", str(lead_key))
    w.boss.ok("approver", "add", "lead@example.com", "--key", f"{lead_key}.pub")
    new_key = w.boss.home / "id_boss_new"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(new_key)], check=True)
    w.boss.git("config", "user.signingKey", str(new_key))  # the old one is lost
    req = w.a.ok("approval", "request", "after the loss", session="alice")
    aid = str(req["approval"]["id"])  # type: ignore[index]
    proc = w.boss.run("approval", "grant", aid)
    assert proc.returncode != 0 and "no approver's key" in proc.stderr, proc.stderr
    lead.ok("approver", "add", BOSS, "--key", f"{new_key}.pub")
    granted = w.boss.ok("approval", "grant", aid)
    assert granted["approval"]["approved_by"] == BOSS  # type: ignore[index]
    # the last approver key of a signed branch cannot be removed
    w.boss.ok("approver", "remove", "lead@example.com")
    proc = w.boss.run("approver", "remove", BOSS)
    assert proc.returncode == 4 and "last approver key" in proc.stderr, proc.stderr


def test_an_approver_signs_through_ssh_agent(hooked: Signed, tmp_path: Path) -> None:
    """user.signingKey = key::<public key>: the private half is only in ssh-agent."""
    w = hooked
    agent = subprocess.run(["ssh-agent", "-s"], capture_output=True, text=True, check=True)
    env = dict(
        line.split(";")[0].split("=", 1) for line in agent.stdout.splitlines() if "=" in line
    )
    try:
        os.environ["SSH_AUTH_SOCK"] = env["SSH_AUTH_SOCK"]
        subprocess.run(["ssh-add", "-q", str(w.boss_key)], check=True, capture_output=True)
        public = w.boss.public(w.boss_key)
        w.boss.git("config", "user.signingKey", f"key::{public}")
        os.rename(w.boss_key, tmp_path / "elsewhere")  # no private key file to read
        req = w.a.ok("approval", "request", "via the agent", session="alice")
        granted = w.boss.ok("approval", "grant", str(req["approval"]["id"]))  # type: ignore[index]
        assert granted["changed"] is True
    finally:
        os.environ.pop("SSH_AUTH_SOCK", None)
        subprocess.run(["kill", env["SSH_AGENT_PID"]], check=False)


def _commit_tree(m: Machine, tree: str, parents: list[str], message: str, key: Path) -> str:
    argv = ["-c", "gpg.format=ssh", "-c", f"user.signingKey={key}", "commit-tree", "-S", tree]
    for p in parents:
        argv += ["-p", p]
    return m.git(*argv, "-m", message)


def test_signed_attacks_are_refused_by_every_client(hookless: Signed) -> None:
    """With signatures required and no hook, a registered session's own key does not
    make a rule-breaking commit acceptable: alice signs each attack with her real key,
    pushes it where nothing refuses it, and bob's client refuses the tip (exit 5,
    naming the rule); the remote is then put back for the next attack."""
    w = hookless
    a, b = w.a, w.b
    a.ok("claim", "task", "t1", session="alice")
    b.ok("claim", "task", "t2", session="bob")
    old = _fetch_tip(a)
    good = _fetch_tip(a)
    b.ok("status")  # bob has verified `good`
    key = a.machine_key
    msg = "x\n\nGitcoord-Op: heartbeat\nGitcoord-Session: alice\n"
    hb = at("coordination/heartbeats/alice.yaml")
    claim_path = at("coordination/claims/task/t1.yaml")
    claim = _show(a, good, claim_path).decode()
    bob_claim = at("coordination/claims/task/t2.yaml")
    first = a.git("rev-list", "--max-parents=0", good)
    attacks: dict[str, tuple[str, str]] = {}

    def plain(name: str, rule: str, files: dict[str, bytes | None], message: str = msg) -> None:
        attacks[name] = (_signed_commit(a, good, files, message, key), rule)

    plain(
        "lease-forever",
        "lease",
        {
            claim_path: claim.replace(
                "expires_at:", "expires_at: '9999-12-31T00:00:00Z'\nx:"
            ).encode()
        },
        "renew\n\nGitcoord-Op: renew\nGitcoord-Session: alice\n",
    )
    plain(
        "alias-bomb",
        "yaml",
        {hb: b"a: &a [x, x]\nb: &b [*a, *a]\nc: [*b, *b]\n"},
    )
    plain(
        "bobs-claim",
        "own-files",
        {bob_claim: _show(a, good, bob_claim).replace(b"holder: bob", b"holder: alice")},
        "take\n\nGitcoord-Op: claim\nGitcoord-Session: alice\n",
    )
    plain("delete", "no-delete", {bob_claim: None})
    tree = a.git("rev-parse", f"{good}^{{tree}}")
    attacks["rollback-merge"] = (
        _commit_tree(a, a.git("rev-parse", f"{first}^{{tree}}"), [first, good], msg, key),
        "history",
    )
    attacks["octopus"] = (_commit_tree(a, tree, [good, old, first], msg, key), "merge")
    attacks["root"] = (_commit_tree(a, tree, [], msg, key), "history")
    for name, (commit, rule) in attacks.items():
        pushed = subprocess.run(
            ["git", "push", "-f", "origin", f"{commit}:{REF}"],
            cwd=a.repo,
            env=a.env(),
            capture_output=True,
            text=True,
        )
        assert pushed.returncode == 0, (name, pushed.stderr)
        proc = b.run("status")
        assert proc.returncode == 5, (name, proc.stdout, proc.stderr)
        assert "cannot be verified" in proc.stderr, (name, proc.stderr)
        assert rule in proc.stderr or "history" in proc.stderr, (name, rule, proc.stderr)
        assert a.git("push", "-f", "origin", f"{good}:{REF}") == ""
    # and with the attacks gone, bob carries on from what he verified
    b.ok("claim", "task", "t3", session="bob")


def test_without_ssh_keygen_commits_are_unsigned_where_not_required(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A machine key already there but no ssh-keygen on PATH (a container with a mounted
    home): a branch that does not require signatures still takes the write, unsigned;
    one that does says what is missing."""
    remote = tmp_path / "r.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    m = _machine(tmp_path, remote, "solo", "solo@example.com")
    m.ok("init")
    m.ok("register", "--role", "r", "--goal", "g", session="s1")  # makes the machine key
    assert m.machine_key.exists()
    bare = tmp_path / "bin"
    bare.mkdir()
    for tool in ("git", "sh"):
        found = subprocess.run(["which", tool], capture_output=True, text=True).stdout.strip()
        (bare / tool).symlink_to(found)
    monkeypatch.setenv("PATH", str(bare))
    done = m.ok("claim", "task", "t1", session="s1")
    assert m.git("log", "-1", "--format=%G?", str(done["commit"])) == "N"


def test_a_tip_verified_before_is_not_loaded_again_to_be_checked(world: World) -> None:
    """The trust check takes the tip's state as a function: a member of a group checks
    the base tip on every decision, and a tip this clone verified already needs no
    state at all. A tip it has not verified is loaded, and judged."""
    from gitcoord import Coordinator
    from gitcoord.api import trust
    from gitcoord.domain.state import State

    a = world.clone("a")
    assert run(a, "init").code == 0
    with Coordinator(str(a), session="alice") as c:
        tip, _ = c.store.snapshot()  # this clone's verified tip is now `tip`
        assert tip is not None
        loaded: list[str] = []

        def state_of(commit: str) -> Callable[[], State]:
            def load() -> State:
                loaded.append(commit)
                return c.store.load(commit)

            return load

        trust.check_tip(c.store, tip, state_of(tip))
        assert loaded == []
        assert run(a, "register", "--role", "r", "--goal", "g", session="bob").code == 0
        new = git(world.remote, "rev-parse", REF).strip()
        git(a, "fetch", "-q", "origin")  # (its objects: the check reads them)
        assert new != tip
        trust.check_tip(c.store, new, state_of(new))
        assert loaded == [new]
        verified = trust.read(c.store)
        assert verified is not None and verified.tip == new
