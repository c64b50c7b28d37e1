"""The warm agent: commands through it behave exactly as in process, concurrently, and
its absence or death never loses or repeats a command."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import World, git, run

from gitcoord.faces import client


@pytest.fixture
def agent_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    # A short private runtime dir: AF_UNIX socket paths are limited to ~107 bytes.
    runtime = Path(tempfile.mkdtemp(prefix="gcr", dir="/tmp"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    monkeypatch.setenv("GITCOORD_AGENT", "1")
    yield runtime
    for sock in runtime.rglob("*.sock"):
        sock.unlink()  # a removed socket makes its agent exit
    shutil.rmtree(runtime, ignore_errors=True)


def cli(cwd: Path, *args: str, stdin: str | None = None, session: str | None = None):
    env = dict(os.environ)
    if session:
        env["GITCOORD_SESSION"] = session
    return subprocess.run(
        [sys.executable, "-m", "gitcoord", *args],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def wait_for(path: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path):
            with socket.socket(socket.AF_UNIX) as s:
                try:
                    s.connect(path)
                    return
                except OSError:
                    pass
        time.sleep(0.05)
    raise AssertionError(f"no agent at {path}")


def agent_pid(path: str) -> int:
    for proc in Path("/proc").iterdir():
        try:
            args = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"gitcoord.faces.agent" in args and path.encode() in args:
            return int(proc.name)
    raise AssertionError("agent process not found")


def test_commands_through_the_agent_match_in_process(world: World, agent_env: Path) -> None:
    a = world.clone("a")
    path = client.socket_path()
    first = cli(a, "init")  # no agent yet: runs here and starts one
    assert first.returncode == 0, first.stderr
    wait_for(path)
    pid = agent_pid(path)

    # env (session), cwd and -C, stdin and exit codes all travel to the agent's child
    assert cli(a, "register", "--role", "R", "--goal", "G", session="s1").returncode == 0
    assert cli(a, "--session", "s2", "register", "--role", "R", "--goal", "G").returncode == 0
    sub = a / "deep" / "dir"
    sub.mkdir(parents=True)
    r = cli(sub, "claim", "task", "x", session="s1")
    assert r.returncode == 0, r.stderr
    lost = cli(a, "claim", "task", "x", "--json", session="s2")
    assert lost.returncode == 3
    assert json.loads(lost.stdout)["error"]["holder"] == "s1"
    body = "line one\nline two\n"
    sent = cli(a, "send", "s2", "hello", "-", stdin=body, session="s1")
    assert sent.returncode == 0, sent.stderr
    inbox = run(a, "inbox", "--json", session="s2").json()
    assert [m["body"] for m in inbox["messages"]] == [body]
    bad = cli(a, "claim", "task", "-x", session="s1")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr

    assert agent_pid(path) == pid, "the same agent served every command"
    os.kill(pid, signal.SIGTERM)


def test_concurrent_claims_through_the_agent_have_one_winner(world: World, agent_env: Path) -> None:
    a = world.clone("a")
    assert cli(a, "init").returncode == 0
    path = client.socket_path()
    wait_for(path)
    pid = agent_pid(path)
    for i in range(8):
        assert cli(a, "register", "--role", "R", "--goal", "G", session=f"s{i}").returncode == 0
    for round_ in range(3):
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "gitcoord", "claim", "task", f"hot-{round_}"],
                cwd=a,
                env={**os.environ, "GITCOORD_SESSION": f"s{i}"},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for i in range(8)
        ]
        codes = [p.wait(timeout=120) for p in procs]
        assert sorted(codes) == [0] + [3] * 7, codes
    log = git(world.remote, "log", "--format=%s", "gitcoord")
    assert sum(1 for line in log.splitlines() if line.startswith("claim task/hot-")) == 3
    os.kill(pid, signal.SIGTERM)


def test_a_dead_agent_or_stale_socket_falls_back_to_in_process(
    world: World, agent_env: Path
) -> None:
    a = world.clone("a")
    path = client.socket_path()
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)  # a socket file nobody listens on
    stale.close()
    r = cli(a, "init")
    assert r.returncode == 0, r.stderr
    r = cli(a, "status", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["initialised"]
    wait_for(path)  # the stale socket was replaced by a live agent
    os.kill(agent_pid(path), signal.SIGKILL)
    time.sleep(0.2)
    r = cli(a, "status", "--json")  # the dead agent's socket: run here instead
    assert r.returncode == 0 and json.loads(r.stdout)["initialised"]


def test_command_detection_skips_global_options() -> None:
    assert client.socket_path("abc").endswith("agent-abc.sock")
    assert client._command(["-C", "x", "--json", "claim", "task", "y"]) == "claim"
    assert client._command(["--session", "s", "mcp"]) == "mcp"


class Impostor:
    """A listener on the agent's socket path that records whatever reaches it."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.bind(path)
        self.sock.listen(8)
        self.sock.settimeout(0.2)

    def heard(self) -> bool:
        try:
            conn, _ = self.sock.accept()
        except TimeoutError:
            return False
        conn.close()
        return True

    def close(self) -> None:
        self.sock.close()


@pytest.mark.parametrize("how", ["open-to-others", "symlink", "someone-elses"])
def test_no_command_talks_to_an_agent_folder_that_is_not_the_users_own(
    world: World, agent_env: Path, how: str
) -> None:
    """The socket's folder could be another local user's (the shared temporary folder is
    everyone's): argv, cwd and the whole environment would reach whoever listens."""
    a = world.clone("a")
    path = client.socket_path()
    folder = os.path.dirname(path)
    if how == "symlink":
        elsewhere = agent_env / "elsewhere"
        elsewhere.mkdir(mode=0o700)
        os.symlink(elsewhere, folder)
    else:
        os.makedirs(folder, mode=0o700)
        if how == "open-to-others":
            os.chmod(folder, 0o777)
        else:
            if os.getuid() != 0:
                pytest.skip("needs root to give the folder to another user")
            os.chown(folder, 65534, 65534)  # nobody
    impostor = Impostor(path)
    try:
        r = cli(a, "init", session="s1")
        assert r.returncode == 0, r.stderr
        r = cli(a, "status", "--json")
        assert r.returncode == 0 and json.loads(r.stdout)["initialised"], r.stderr
        assert not impostor.heard(), "a command talked to a socket in a folder not ours"
    finally:
        impostor.close()
    assert not any(Path(folder).glob("agent-*.sock.*")), "an agent was started there"


def test_the_agent_runs_with_the_callers_umask(world: World, agent_env: Path) -> None:
    first = world.clone("first")
    assert cli(first, "init").returncode == 0  # starts the agent (under the usual umask)
    wait_for(client.socket_path())
    late = world.clone("late")
    old = os.umask(0o077)
    try:
        # through the agent: a write takes the clone's turn, a file the command creates
        r = cli(late, "register", "--role", "r", "--goal", "g", session="s2")
    finally:
        os.umask(old)
    assert r.returncode == 0, r.stderr
    made = late / ".git" / "gitcoord"
    files = [p for p in made.rglob("*") if p.is_file()]
    assert any(p.name.startswith("turn-") for p in files), files
    assert all(p.stat().st_mode & 0o077 == 0 for p in files), [
        (str(p), oct(p.stat().st_mode)) for p in files
    ]


def test_a_deleted_working_directory_is_one_line(tmp_path: Path, agent_env: Path) -> None:
    gone = tmp_path / "gone"
    gone.mkdir()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import os, sys, time; time.sleep(0.5); "
            "from gitcoord.faces.client import main; sys.exit(main())",
            "status",
        ],
        cwd=gone,
        stderr=subprocess.PIPE,
        text=True,
    )
    gone.rmdir()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, err
    assert (
        err.strip() == "gitcoord: the current directory no longer exists: cd to a repository first"
    )


def test_the_fingerprint_covers_the_dependencies() -> None:
    names = [entry.split(":", 1)[0] for entry in client._dependencies()]
    assert {"click", "pydantic", "ruamel/yaml", "mcp"} <= set(names), names


def _hold_turn(clone: Path) -> object:
    """Take the clone's turn (its flock), as a long command would: others wait for it."""
    import fcntl

    folder = clone / ".git" / "gitcoord"
    folder.mkdir(parents=True, exist_ok=True)
    names = sorted(folder.glob("turn-*.flock"))
    assert names, "no turn file yet"
    fh = open(names[0], "a")  # noqa: SIM115
    fcntl.flock(fh, fcntl.LOCK_EX)
    return fh


@pytest.mark.parametrize("how", ["agent-ctrl-c", "in-process-sigterm"])
def test_a_stopped_command_writes_nothing_afterwards(
    world: World, agent_env: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """Ctrl-C on the client (through the agent) or `timeout`'s SIGTERM (in process) while
    the command waits: it stops before it writes, says so (130), and nothing lands later."""
    a = world.clone("a")
    assert cli(a, "init").returncode == 0
    assert cli(a, "register", "--role", "r", "--goal", "g", session="s1").returncode == 0
    if how == "agent-ctrl-c":
        wait_for(client.socket_path())
        sig = signal.SIGINT
    else:
        monkeypatch.setenv("GITCOORD_AGENT", "0")
        sig = signal.SIGTERM
    held = _hold_turn(a)
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gitcoord", "--session", "s1", "claim", "task", "x"],
            cwd=a,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(1.5)  # it waits for the turn
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)
    finally:
        held.close()  # type: ignore[attr-defined]
    assert proc.returncode == 130, err
    assert "interrupted before anything was written" in err, err
    time.sleep(1.0)  # had it gone on, its claim would land now
    status = json.loads(cli(a, "status", "--json").stdout)
    assert status["claims"] == []
