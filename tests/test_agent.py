"""The warm agent: commands through it behave exactly as in process, concurrently, and
its absence or death never loses or repeats a command; no other local user can talk to
it or answer in its place."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import pty
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from collections.abc import Callable, Iterator
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


WARM_THEN_CLAIM = """
import json, sys
from gitcoord.faces.agent import _warm
_warm()
before = set(sys.modules)
from gitcoord.faces.cli import main
code = main(["-C", sys.argv[1], "--session", "s1", "claim", "task", "first"])
print(json.dumps([code, sorted(set(sys.modules) - before)]), file=sys.stderr)
"""


def test_a_warm_agents_child_imports_nothing_more_for_a_signed_write(world: World) -> None:
    """What a command needs is imported once by the agent, not by each child: the
    claim after `_warm()` (the agent child's work: its first write, signed with the
    machine key) imports no module of gitcoord or of what it runs on."""
    a = world.clone("a")
    assert run(a, "init").code == 0
    assert run(a, "register", "--role", "r", "--goal", "g", session="s1").code == 0
    proc = subprocess.run(
        [sys.executable, "-c", WARM_THEN_CLAIM, str(a)], capture_output=True, text=True
    )
    code, imported = json.loads(proc.stderr.strip().splitlines()[-1])
    assert code == 0, proc.stdout
    heavy = ("gitcoord", "cryptography", "pydantic", "ruamel", "click", "difflib")
    assert not [m for m in imported if m.split(".")[0] in heavy], imported
    landed = git(world.remote, "cat-file", "commit", "refs/heads/gitcoord")
    assert "claim task/first" in landed and "gpgsig" in landed  # signed in that process


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
    assert client._pre_receive(["-C", "hooks", "hooks", "run", "pre-receive"])
    assert not client._pre_receive(["hooks", "install", "--server", "x"])
    assert not client._pre_receive(["-C", "hooks", "status"])


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs /proc")
def test_an_agent_started_from_a_hook_keeps_none_of_gits_variables(
    agent_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server hook that starts the agent runs with git's GIT_DIR and quarantine; the
    agent outlives that push, so it must not keep them (each child takes its caller's)."""
    monkeypatch.setenv("GIT_DIR", "/srv/some/repo.git")
    monkeypatch.setenv("GIT_QUARANTINE_PATH", "/srv/some/repo.git/objects/tmp_objdir")
    path = client.socket_path()
    client._start_agent(path)
    wait_for(path)
    environ = (Path("/proc") / str(agent_pid(path)) / "environ").read_bytes().split(b"\0")
    names = {entry.split(b"=", 1)[0] for entry in environ if entry}
    assert b"GIT_DIR" not in names and b"GIT_QUARANTINE_PATH" not in names
    assert b"HOME" in names  # the rest of the environment is kept


def test_the_server_hook_runs_warm_through_the_agent_and_still_judges_every_push(
    world: World, agent_env: Path, tmp_path: Path
) -> None:
    """The remote's pre-receive hook goes through the agent of the user running it, with
    the pushed refs as its stdin and the push's quarantined objects in its environment:
    an honest push lands and a crafted one is refused with the hook's message. It is the
    agent that ran them: the pushes are made with a `pydantic` on PYTHONPATH that cannot
    be imported, which only a process that imported everything before can get past."""
    a = world.clone("a")
    assert cli(a, "init").returncode == 0
    assert cli(a, "register", "--role", "r", "--goal", "g", session="s1").returncode == 0
    assert cli(world.root, "hooks", "install", "--server", str(world.remote)).returncode == 0
    wait_for(client.socket_path())  # the commands above started the agent

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "pydantic.py").write_text("raise ImportError('not this one')\n")
    env = {**os.environ, "PYTHONPATH": str(broken), "GITCOORD_AGENT": "0"}

    def push_heartbeat(progress: str) -> subprocess.CompletedProcess[str]:
        # The pushing command runs in process (GITCOORD_AGENT=0 is for it: the hook's
        # environment is its own, set below); only the hook goes through the agent.
        argv = [sys.executable, "-m", "gitcoord", "--session", "s1", "heartbeat"]
        return subprocess.run(
            [*argv, "x", "y", "z", progress, "--force"],
            cwd=a,
            capture_output=True,
            text=True,
            env={**env, "PYTHONPATH": ""},
            timeout=120,
        )

    hook = world.remote / "hooks" / "pre-receive"
    text = hook.read_text()
    # The hook's own environment: the broken pydantic first, the agent on.
    hook.write_text(
        text.replace(
            "input=$(cat)\n",
            f"input=$(cat)\nexport PYTHONPATH={broken} GITCOORD_AGENT=1\n",
            1,
        )
    )
    tip = git(world.remote, "rev-parse", "gitcoord")
    done = push_heartbeat("10")
    assert done.returncode == 0, done.stderr
    assert git(world.remote, "rev-parse", "gitcoord") != tip

    # A crafted push (the session file replaced by garbage) is judged and refused.
    h = world.clone("h")
    git(h, "checkout", "-q", "gitcoord")
    target = next(h.glob("coordination/sessions/**/s1.yaml"))
    target.write_text("{{{ not yaml\n")
    git(h, "commit", "-q", "-a", "-m", "break it")
    pushed = subprocess.run(
        ["git", "push", "origin", "gitcoord"], cwd=h, capture_output=True, text=True, env=env
    )
    assert pushed.returncode != 0 and "[yaml]" in pushed.stderr, pushed.stderr

    # Without the agent the same hook cannot run at all: proof the agent ran the above.
    hook.write_text(hook.read_text().replace("GITCOORD_AGENT=1", "GITCOORD_AGENT=0"))
    refused = push_heartbeat("20")
    assert refused.returncode != 0


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


# A client that can only go through the agent: its in-process path cannot import the
# command line, so a command it runs at all was run by the agent's child.
AGENT_ONLY = (
    "import sys\n"
    "sys.modules['gitcoord.faces.cli'] = None\n"
    "from gitcoord.faces.client import main\n"
    "sys.exit(main())\n"
)


def agent_only(*args: str) -> list[str]:
    return [sys.executable, "-c", AGENT_ONLY, *args]


def in_process(*args: str) -> list[str]:
    return [sys.executable, "-m", "gitcoord", *args]


def started_agent(cwd: Path) -> str:
    """Start this test's agent (any command does) and wait until it answers."""
    r = cli(cwd, "--version")
    assert r.returncode == 0, r.stderr
    path = client.socket_path()
    wait_for(path)
    return path


def into_one_file(cwd: Path, argv: list[str], out: Path, **env: str) -> tuple[int, bytes]:
    """Run with stdout and stderr on one open file, as `>out 2>&1` does."""
    with open(out, "wb") as fh:
        proc = subprocess.run(
            argv,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=fh,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
            timeout=120,
        )
    return proc.returncode, out.read_bytes()


def test_stdout_and_stderr_keep_their_order_through_the_agent(
    world: World, agent_env: Path, tmp_path: Path
) -> None:
    """`2>&1` into one file: the same bytes, in the same order, through the agent as in
    process. `guard` with its remote gone warns on stderr, then answers on stdout."""
    a = world.clone("a")
    assert cli(a, "init").returncode == 0
    started_agent(a)
    world.remote.rename(world.remote.with_name("moved.git"))  # guard: the last fetched state

    here = into_one_file(a, in_process("guard", "src/x.py"), tmp_path / "here", GITCOORD_AGENT="0")
    there = into_one_file(a, agent_only("guard", "src/x.py"), tmp_path / "there")
    assert here[0] == 0, here
    warning, result = here[1].index(b"gitcoord: warning: "), here[1].index(b"ok: 1 path(s)")
    assert warning < result, here  # what the plain process does: stderr first
    assert there == here


def under_terminal(cwd: Path, argv: list[str], columns: int, **env: str) -> tuple[int, bytes]:
    """Run with stdin, stdout and stderr on a terminal (a pty) `columns` wide."""
    parent, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    environ = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    try:
        proc = subprocess.Popen(
            argv, cwd=cwd, stdin=child, stdout=child, stderr=child, env={**environ, **env}
        )
    finally:
        os.close(child)
    out = b""
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            if not select.select([parent], [], [], 1.0)[0]:
                continue
            try:
                chunk = os.read(parent, 65536)
            except OSError:  # EIO: every process holding the terminal is gone
                break
            if not chunk:
                break
            out += chunk
        return proc.wait(timeout=60), out
    finally:
        os.close(parent)


def test_the_agent_writes_to_the_callers_terminal(tmp_path: Path, agent_env: Path) -> None:
    """Under a terminal the command sees that terminal, as in process: a 60-column one
    wraps `--help` to its width (the agent's own stdout is /dev/null)."""
    started_agent(tmp_path)
    here = under_terminal(tmp_path, in_process("--help"), 60, GITCOORD_AGENT="0")
    there = under_terminal(tmp_path, agent_only("--help"), 60)
    assert here[0] == 0, here
    assert there == here
    piped = cli(tmp_path, "--help").stdout.encode()  # no terminal: 80 columns
    assert here[1].replace(b"\r\n", b"\n") != piped, "the terminal's width made no difference"


def test_streams_that_cannot_be_passed_work_as_before(tmp_path: Path, agent_env: Path) -> None:
    """A stdout the caller closed, or one that is no file descriptor: as in process."""
    started_agent(tmp_path)
    version = subprocess.run(
        in_process("--version"),
        capture_output=True,
        text=True,
        env={**os.environ, "GITCOORD_AGENT": "0"},
        timeout=120,
    )
    # stdout closed (`>&-`): Python has no sys.stdout, in process as in the agent's child
    for argv, agent in ((in_process("--version"), "0"), (agent_only("--version"), "1")):
        closed = subprocess.run(
            ["sh", "-c", 'exec "$@" >&-', "sh", *argv],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            env={**os.environ, "GITCOORD_AGENT": agent},
            timeout=120,
        )
        assert (closed.returncode, closed.stderr) == (0, ""), (agent, closed.stderr)
    # a stream that is no descriptor (whoever called main replaced it): the child's output
    # comes back in the reply and is written to it
    script = AGENT_ONLY.replace(
        "sys.exit(main())",
        "import io\nsys.stdout = io.StringIO()\ncode = main()\n"
        "sys.__stdout__.write('captured: ' + sys.stdout.getvalue())\nsys.exit(code)",
    )
    captured = subprocess.run(
        [sys.executable, "-c", script, "--version"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert captured.returncode == 0, captured.stderr
    assert captured.stdout == "captured: " + version.stdout


DECLINE = r"""
import json, socket, sys
from gitcoord.faces import agent, client
mine, theirs = socket.socketpair()
request = {"argv": ["init"], "cwd": sys.argv[1], "env": {}, "stdin": "", "umask": 18,
           "stdio": [{"kind": "fd"}] * 2}
client.send_frame(mine, json.dumps(request).encode())  # without the descriptors it names
agent._handle(theirs)
print(client.recv_frame(mine).decode())
"""


def test_a_child_that_cannot_take_the_streams_runs_nothing(tmp_path: Path, agent_env: Path) -> None:
    """Descriptors that do not all arrive (the agent out of descriptors: MSG_CTRUNC):
    the child runs nothing and says so, and the client runs the command itself."""
    repo = tmp_path / "repo"
    repo.mkdir()
    child = subprocess.run(
        [sys.executable, "-c", DECLINE, str(repo)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert json.loads(child.stdout) == {"declined": True}, child.stderr
    assert list(repo.iterdir()) == [], "the child ran the command"

    path = client.socket_path()
    os.makedirs(os.path.dirname(path), mode=0o700)
    got: list[tuple[object, int, bool]] = []

    def decline(listener: socket.socket) -> None:
        conn, _ = listener.accept()
        with conn:
            payload, fds, truncated = client.recv_frame_fds(conn, 1)  # room for one of two
            for fd in fds:
                os.close(fd)
            got.append((json.loads(payload)["argv"], len(fds), truncated))
            client.send_frame(conn, b'{"declined": true}')

    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(path)
        listener.listen(1)
        thread = threading.Thread(target=decline, args=(listener,), daemon=True)
        thread.start()
        r = cli(tmp_path, "--version")
        thread.join(60)
    assert got == [(["--version"], 1, True)]
    assert r.returncode == 0 and r.stdout.startswith("gitcoord"), r.stderr


def reading_stdin(pid: int) -> bool:
    """Whether the process is blocked reading its descriptor 0 (Linux's /proc)."""
    read = {"x86_64": "0", "aarch64": "63"}.get(os.uname().machine)
    if read is None or not os.path.exists(f"/proc/{pid}/syscall"):
        pytest.skip("needs Linux's /proc/PID/syscall on x86_64 or aarch64")
    try:
        return Path(f"/proc/{pid}/syscall").read_text().split()[:2] == [read, "0x0"]
    except OSError:
        return False


def _sigint_default() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_while_a_body_is_typed(tmp_path: Path, agent_env: Path) -> None:
    """`send ... -` waiting for its body on stdin: Ctrl-C ends it as in process (click's
    "aborted", no traceback), through the agent's client too."""
    started_agent(tmp_path)
    ended = []
    for agent in ("0", "1"):
        proc = subprocess.Popen(
            in_process("send", "bob", "subject", "-"),
            cwd=tmp_path,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "GITCOORD_AGENT": agent},
            # As in a terminal: Ctrl-C not ignored. A suite started in the background
            # by a non-interactive shell (`.ci/run &`) passes SIGINT on ignored, and
            # Python then never raises KeyboardInterrupt for it.
            preexec_fn=_sigint_default,
        )
        try:
            deadline = time.monotonic() + 60
            while not reading_stdin(proc.pid):
                assert proc.poll() is None, proc.communicate(timeout=60)
                assert time.monotonic() < deadline, "it never waited for its body"
                time.sleep(0.05)
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
        ended.append((proc.returncode, out, err))
    assert ended[0] == (1, "", "\ngitcoord: aborted\n")
    assert ended[1] == ended[0]


# --- another local user ---------------------------------------------------------------
# The suite runs as root in CI's container: `nobody` plays the other local user.

AS_NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]

# Listens at a path (after making, as nobody, the folder or the symlink it is in) and
# prints, once its stdin is closed, what every connection to it said.
LISTEN = r"""
import json, os, select, socket, sys
path, how = sys.argv[1], sys.argv[2]
if how == "folder":
    os.mkdir(os.path.dirname(path), 0o700)
elif how == "symlink":
    os.mkdir(sys.argv[3], 0o700)
    os.symlink(sys.argv[3], os.path.dirname(path))
sock = socket.socket(socket.AF_UNIX)
sock.bind(path)
os.chmod(path, 0o777)
sock.listen(8)
print("ready", flush=True)
heard = []
while True:
    ready = select.select([sock, sys.stdin], [], [])[0]
    if sock in ready:
        conn = sock.accept()[0]
        conn.settimeout(10)
        try:
            heard.append(conn.recv(1 << 20).decode("latin-1"))
        except OSError:
            heard.append("")
        conn.close()
    elif sys.stdin in ready:
        break
print(json.dumps(heard), flush=True)
"""

# Connects to an agent's socket and asks it to run a command, as a gitcoord client would.
ASK = r"""
import json, socket, struct, sys
sock = socket.socket(socket.AF_UNIX)
try:
    sock.connect(sys.argv[1])
except OSError as exc:
    print(json.dumps({"errno": exc.errno}))
    sys.exit()
request = json.dumps({"argv": ["--version"], "cwd": "/", "env": {}, "stdin": "", "umask": 18})
reply = b""
try:
    sock.sendall(struct.pack("!I", len(request)) + request.encode())
    sock.settimeout(60)
    while chunk := sock.recv(65536):
        reply += chunk
except OSError:
    pass
print(json.dumps({"errno": 0, "reply": reply.decode("latin-1")}))
"""


@pytest.fixture
def nobody() -> Callable[..., subprocess.Popen[str]]:
    """Start a Python script as the user nobody."""
    if os.getuid() != 0:
        pytest.skip("another local user is played by nobody: needs root to become it")
    if shutil.which("setpriv") is None:
        pytest.skip("needs setpriv (util-linux) to become nobody")
    probe = subprocess.run(
        [*AS_NOBODY, sys.executable, "-I", "-c", "import os; print(os.getuid())"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if probe.returncode != 0 or probe.stdout.strip() in ("", "0"):
        pytest.skip(f"cannot run {sys.executable} as nobody: {probe.stderr.strip()}")

    def start(script: str, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [*AS_NOBODY, sys.executable, "-I", "-c", script, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd="/",
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        )

    return start


def listening(proc: subprocess.Popen[str]) -> None:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line == "ready\n", (line, proc.communicate(timeout=60))


def heard(proc: subprocess.Popen[str]) -> list[str]:
    out, err = proc.communicate(input="", timeout=60)  # closing its stdin ends it
    assert proc.returncode == 0, err
    result: list[str] = json.loads(out)
    return result


def ask(nobody: Callable[..., subprocess.Popen[str]], path: str) -> dict[str, object]:
    out, err = nobody(ASK, path).communicate(timeout=120)
    assert out, err
    result: dict[str, object] = json.loads(out)
    return result


def test_another_user_cannot_reach_the_agent(
    world: World, agent_env: Path, nobody: Callable[..., subprocess.Popen[str]]
) -> None:
    """The agent's folder is 0700 (and its socket 0600): another user is refused at the
    connect, before a word, even where the folder's parent lets them in."""
    os.chmod(agent_env, 0o711)  # down to the agent's own folder: that one keeps them out
    path = started_agent(world.root)
    assert ask(nobody, path) == {"errno": errno.EACCES}


def test_the_agent_serves_no_other_user_even_through_an_open_socket(
    world: World, agent_env: Path, nobody: Callable[..., subprocess.Popen[str]]
) -> None:
    """A socket opened to everyone by mistake: the agent checks who connects (the peer's
    uid) and answers another user nothing, and goes on serving its own."""
    path = started_agent(world.root)
    pid = agent_pid(path)
    os.chmod(agent_env, 0o711)
    os.chmod(os.path.dirname(path), 0o755)
    os.chmod(path, 0o777)
    answer = ask(nobody, path)
    assert answer == {"errno": 0, "reply": ""}, "the agent ran a command for another user"
    os.chmod(os.path.dirname(path), 0o700)
    r = subprocess.run(
        agent_only("--version"), cwd=world.root, capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0 and r.stdout.startswith("gitcoord"), r.stderr
    assert agent_pid(path) == pid


@pytest.mark.parametrize("how", ["folder", "symlink"])
def test_another_user_cannot_stand_in_for_the_agent(
    world: World,
    agent_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    nobody: Callable[..., subprocess.Popen[str]],
    how: str,
) -> None:
    """Without XDG_RUNTIME_DIR the agent's folder is in the shared temporary folder:
    another user who made it first (or a symlink there to a folder of theirs) and
    listens at the socket's path hears nothing; the command runs in process."""
    shared = Path(tempfile.mkdtemp(prefix="gcs", dir="/tmp"))
    try:
        os.chmod(shared, 0o1777)  # as /tmp is
        monkeypatch.delenv("XDG_RUNTIME_DIR")
        monkeypatch.setenv("TMPDIR", str(shared))
        folder = shared / f"gitcoord-{os.getuid()}"
        path = folder / f"agent-{client.fingerprint()}.sock"
        listener = nobody(LISTEN, str(path), how, str(shared / "nobodys"))
        listening(listener)
        a = world.clone("a")
        r = cli(a, "init", session="s1")
        assert r.returncode == 0, r.stderr
        r = cli(a, "status", "--json")
        assert r.returncode == 0 and json.loads(r.stdout)["initialised"], r.stderr
        assert heard(listener) == [], "a command talked to another user's socket"
        assert os.lstat(folder).st_uid != os.getuid()
        assert not list(folder.glob("agent-*.sock.*")), "an agent was started there"
    finally:
        shutil.rmtree(shared, ignore_errors=True)


def test_the_client_talks_only_to_its_own_users_agent(
    world: World, agent_env: Path, nobody: Callable[..., subprocess.Popen[str]]
) -> None:
    """Another user's socket at the agent's path, in the user's own folder (it got there
    after the folder was checked, or it was put there): the client checks who listens
    and sends it nothing; the command runs in process."""
    parking = Path(tempfile.mkdtemp(prefix="gcp", dir="/tmp"))
    try:
        os.chmod(parking, 0o777)
        listener = nobody(LISTEN, str(parking / "s.sock"), "here")
        listening(listener)
        path = client.socket_path()
        os.makedirs(os.path.dirname(path), mode=0o700)
        os.rename(parking / "s.sock", path)  # the socket stays nobody's
        a = world.clone("a")
        r = cli(a, "init", session="s1")
        assert r.returncode == 0, r.stderr
        words = heard(listener)
        assert not any(words), f"the request reached another user: {words}"
    finally:
        shutil.rmtree(parking, ignore_errors=True)
