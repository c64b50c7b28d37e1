"""The `gitcoord` command's entry point: hand the command to a warm agent, or run it here.

A cold Python process that imports click, pydantic, ruamel.yaml and builds
its models spends ~250 ms before any git work, several times the cost of the
git work itself. So the command line first tries a per-user agent
(`gitcoord.agent`) that has all of that imported already and forks a fresh
child for each command: this module imports only the standard library,
forwards argv, the working directory, the environment and (for `send ... -`)
stdin, and prints what comes back.

The agent is an accelerator, never a requirement and never a coordinator:
every command still reads and writes the remote itself, exactly as in
process. When there is no agent, this process runs the command itself and
starts one in the background for the next call. `GITCOORD_AGENT=0` turns it
off; commands that stream (mcp, hook, hooks run) or last long (demo) always
run in process.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import struct
import sys
import zlib

# Not imported here: subprocess, tempfile, hashlib, typing (~30 ms together, a third
# of this process's start): the common path, an agent answering, needs none of them.

_IN_PROCESS = {"mcp", "hook", "hooks", "demo", "integrate", "agent"}
_VALUED = {"-C", "--ref", "--remote", "--timeout", "--session"}
_STDIN_LIMIT = 64 * 1024 + 1


def _command(argv: list[str]) -> str | None:
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in _VALUED:
            i += 2
            continue
        if arg.startswith("-"):
            i += 1
            continue
        return arg
    return None


def fingerprint() -> str:
    """Changes whenever the installed code or interpreter does: a stale agent is never used."""
    # The whole package, not only this folder: a change anywhere makes a new agent.
    # os.scandir reuses the directory entries' stat data: ~60 files cost well under 1 ms.
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    seen = [sys.executable]
    folders = [package]
    while folders:
        folder = folders.pop()
        with os.scandir(folder) as it:
            for entry in sorted(it, key=lambda e: e.name):
                if entry.is_dir(follow_symlinks=False) and not entry.name.startswith((".", "_")):
                    folders.append(entry.path)
                elif entry.name.endswith(".py"):
                    st = entry.stat()
                    seen.append(f"{entry.path}:{st.st_mtime_ns}:{st.st_size}")
    seen += _dependencies()
    data = ";".join(seen).encode()
    # Not a secret, only a version stamp: two checksums (64 bits) without hashlib's import.
    return f"{zlib.crc32(data):08x}{zlib.adler32(data):08x}"


# What a command imports besides gitcoord: an upgrade of any of them must not be
# served by an agent that imported the old one (importlib.metadata would tell the
# versions, at ~20 ms a start: the packages' own files tell the same for a few stats).
_DEPENDENCIES = ("click", "pydantic", "pydantic_core", "ruamel/yaml", "pathspec", "mcp")


def _dependencies() -> list[str]:
    found = []
    for name in _DEPENDENCIES:
        for entry in sys.path:
            try:
                st = os.stat(os.path.join(entry or ".", name, "__init__.py"))
            except OSError:
                continue
            found.append(f"{name}:{entry}:{st.st_mtime_ns}:{st.st_size}")
            break
    return found


def private_folder(folder: str) -> bool:
    """Whether `folder` is this user's own: a real directory (not a symlink), owned by
    us, that no one else may enter. Another local user who created it first (the
    shared temporary folder is everyone's) could answer as the agent and collect the
    command line, the working directory and the whole environment, tokens included."""
    try:
        st = os.lstat(folder)
    except OSError:
        return False
    return (
        stat.S_ISDIR(st.st_mode)
        and st.st_uid == os.getuid()
        and stat.S_IMODE(st.st_mode) & 0o077 == 0
    )


def socket_path(fp: str | None = None) -> str:
    name = f"gitcoord-{os.getuid()}/agent-{fp or fingerprint()}.sock"
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    path = os.path.join(runtime, name) if runtime else ""
    if not runtime or len(path.encode()) > 90:  # AF_UNIX paths: ~107 bytes (plus ".<pid>")
        import tempfile

        path = os.path.join(tempfile.gettempdir(), name)
    return path


def send_frame(sock: socket.socket, payload: bytes) -> None:
    sock.sendall(struct.pack("!I", len(payload)) + payload)


def recv_frame(sock: socket.socket) -> bytes:
    head = _recv_exact(sock, 4)
    return _recv_exact(sock, struct.unpack("!I", head)[0])


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(min(65536, n - len(buf)))
        if not chunk:
            raise ConnectionError("agent closed the connection")
        buf += chunk
    return bytes(buf)


def _start_agent(path: str) -> None:
    folder = os.path.dirname(path)
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
        if not private_folder(folder):
            return  # not ours alone: never talk to, or start, an agent there
        import subprocess

        subprocess.Popen(
            [sys.executable, "-m", "gitcoord.faces.agent", path],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            close_fds=True,
            cwd="/",
        )
    except OSError:
        pass  # no agent then; this and later commands run in process


def _via_agent(argv: list[str], path: str, cwd: str) -> int | None:
    """Exit code of the command run by the agent, or None if no agent answered."""
    stdin = b""
    if _command(argv) == "send" and "-" in argv:
        stdin = sys.stdin.buffer.read(_STDIN_LIMIT)
    umask = os.umask(0o077)  # read it (there is no other way) and put it back
    os.umask(umask)
    request = {
        "argv": argv,
        "cwd": cwd,
        "env": dict(os.environ),
        "stdin": stdin.decode("latin-1"),
        "umask": umask,
    }
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(path)
        except OSError:
            # No agent here: run in process (with the stdin already read, if any).
            return _in_process(argv, stdin) if stdin else None
        asked: list[bool] = []

        def cancel(signum: int, frame: object) -> None:
            # The first Ctrl-C (or `timeout`'s SIGTERM) asks the agent's child to stop
            # before it writes, and waits for what it says; a second one stops waiting.
            if asked:
                raise KeyboardInterrupt
            asked.append(True)
            try:  # noqa: SIM105 (contextlib.suppress: an import on every start)
                send_frame(sock, b"cancel")
            except OSError:
                pass  # the child is gone already: its reply (or its absence) tells

        old = [signal.signal(s, cancel) for s in (signal.SIGINT, signal.SIGTERM)]
        try:
            send_frame(sock, json.dumps(request).encode())
            reply = json.loads(recv_frame(sock))
        except KeyboardInterrupt:
            sys.stderr.write(
                "gitcoord: interrupted; the command may still complete: check `gitcoord log`\n"
            )
            return 130
        except (OSError, ConnectionError, ValueError) as exc:
            # Never re-run a command that may have happened: say so instead.
            sys.stderr.write(
                f"gitcoord: lost the agent mid-command ({exc}); the command may or may not "
                "have taken effect: check `gitcoord status` or `gitcoord log`\n"
            )
            return 1
        finally:
            signal.signal(signal.SIGINT, old[0])
            signal.signal(signal.SIGTERM, old[1])
    sys.stdout.write(reply["out"])
    sys.stderr.write(reply["err"])
    sys.stdout.flush()
    return int(reply["code"])


def _in_process(argv: list[str], stdin: bytes | None = None) -> int:
    if stdin is not None:
        import io

        sys.stdin = io.TextIOWrapper(io.BytesIO(stdin))
    from .cli import main as cli_main

    return cli_main(argv)


def main() -> int:
    argv = sys.argv[1:]
    try:
        cwd = os.getcwd()
    except FileNotFoundError:
        sys.stderr.write(
            "gitcoord: the current directory no longer exists: cd to a repository first\n"
        )
        return 2
    if os.environ.get("GITCOORD_AGENT", "1") == "0" or _command(argv) in _IN_PROCESS:
        return _in_process(argv)
    path = socket_path()
    if not private_folder(os.path.dirname(path)):
        _start_agent(path)  # makes the folder when it is missing, never trusts a foreign one
        return _in_process(argv)
    code = _via_agent(argv, path, cwd) if os.path.exists(path) else None
    if code is not None:
        return code
    _start_agent(path)
    return _in_process(argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
