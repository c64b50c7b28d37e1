"""The `gitcoord` command's entry point: hand the command to a warm agent, or run it here.

A cold Python process that imports click, pydantic, ruamel.yaml and builds
its models spends ~250 ms before any git work, several times the cost of the
git work itself. So the command line first tries a per-user agent
(`gitcoord.agent`) that has all of that imported already and forks a fresh
child for each command: this module imports only the standard library and
forwards argv, the working directory, the environment, the umask, (for `send ...
-`) stdin, and its own stdout and stderr: the file descriptors themselves
(SCM_RIGHTS), so the child writes to the caller's terminal, file or pipe directly
and the order of stdout and stderr, isatty and the terminal's size are those of a
plain process. Then it exits with the child's exit code.

The agent is an accelerator, never a requirement and never a coordinator:
every command still reads and writes the remote itself, exactly as in
process. When there is no agent, this process runs the command itself and
starts one in the background for the next call. `GITCOORD_AGENT=0` turns it
off; commands that stream (mcp, hook, hooks run) or last long (demo, web) always
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

_IN_PROCESS = {"mcp", "hook", "hooks", "demo", "integrate", "agent", "web"}
_VALUED = {"-C", "--ref", "--remote", "--timeout", "--session"}
_STDIN_LIMIT = 64 * 1024 + 1
STREAMS = ("stdout", "stderr")  # passed to the agent's child as its descriptors 1 and 2


def _command_at(argv: list[str]) -> int | None:
    """Where the command's name is in `argv` (after the root options)."""
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in _VALUED:
            i += 2
            continue
        if arg.startswith("-"):
            i += 1
            continue
        return i
    return None


def _command(argv: list[str]) -> str | None:
    at = _command_at(argv)
    return argv[at] if at is not None else None


def _pre_receive(argv: list[str]) -> bool:
    """`hooks run pre-receive`: the server's hook, run for every push to the branch. It
    goes through the agent like any command (the verifier's code is the same, forked
    warm instead of started cold: ~0.4 s less a push), with the pushed refs as stdin."""
    at = _command_at(argv)
    return at is not None and argv[at : at + 3] == ["hooks", "run", "pre-receive"]


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


# Each end of the agent's socket checks that the other is the same user, whatever the
# folder and the socket's mode say (a folder swapped between the check and the connect,
# a socket made reachable by mistake): only where the system tells a peer's user.
PEER_CHECK = sys.platform.startswith(("linux", "darwin", "freebsd"))


def peer_uid(sock: socket.socket) -> int | None:
    """The (effective) user id of the process at the other end of a connected Unix
    socket: SO_PEERCRED on Linux, LOCAL_PEERCRED (getpeereid) on macOS and FreeBSD."""
    try:
        if sys.platform.startswith("linux"):
            # struct ucred {pid_t pid; uid_t uid; gid_t gid;}
            data = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
            return int(struct.unpack("iII", data)[1])
        if PEER_CHECK:
            # struct xucred {u_int cr_version; uid_t cr_uid; ...} at level SOL_LOCAL (0)
            data = sock.getsockopt(0, getattr(socket, "LOCAL_PEERCRED", 1), 128)
            return int(struct.unpack_from("II", data)[1])
    except (OSError, struct.error):
        pass
    return None


def socket_path(fp: str | None = None) -> str:
    name = f"gitcoord-{os.getuid()}/agent-{fp or fingerprint()}.sock"
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    path = os.path.join(runtime, name) if runtime else ""
    if not runtime or len(path.encode()) > 90:  # AF_UNIX paths: ~107 bytes (plus ".<pid>")
        import tempfile

        path = os.path.join(tempfile.gettempdir(), name)
    return path


def send_frame(sock: socket.socket, payload: bytes, fds: list[int] | None = None) -> None:
    head = struct.pack("!I", len(payload))
    if fds:
        # The descriptors travel with the frame's first bytes (a read of those bytes
        # receives them), the rest of the frame after them.
        socket.send_fds(sock, [head], fds)
        sock.sendall(payload)
    else:
        sock.sendall(head + payload)


def recv_frame(sock: socket.socket) -> bytes:
    head = _recv_exact(sock, 4)
    return _recv_exact(sock, struct.unpack("!I", head)[0])


def recv_frame_fds(sock: socket.socket, maxfds: int) -> tuple[bytes, list[int], bool]:
    """A frame, the descriptors sent with it, and whether some could not be received
    (MSG_CTRUNC: this process was out of descriptors, or more came than expected)."""
    head, fds, flags, _ = socket.recv_fds(sock, 4, maxfds)
    if not head:
        raise ConnectionError("the client closed the connection")
    head += _recv_exact(sock, 4 - len(head))
    truncated = bool(flags & getattr(socket, "MSG_CTRUNC", 0))
    return _recv_exact(sock, struct.unpack("!I", head)[0]), fds, truncated


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

        # Not git's variables of the command that starts it (a server hook's GIT_DIR and
        # quarantine): each child takes its caller's environment, the agent none of them.
        env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
        subprocess.Popen(
            [sys.executable, "-m", "gitcoord.faces.agent", path],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            close_fds=True,
            cwd="/",
            env=env,
        )
    except OSError:
        pass  # no agent then; this and later commands run in process


def _stdio() -> tuple[list[dict[str, object]], list[int]]:
    """How stdout and stderr reach the agent's child, and the descriptors to pass.

    "fd": the stream's own file descriptor is passed, with what the child needs to
    build the stream Python would build over it here (encoding, errors, buffering:
    this process was started by the caller, with the caller's environment).
    "none": the descriptor was closed when this process started (sys.stdout is None):
    the child's stream is None too. "capture": a stream that is no file descriptor
    (replaced by whoever called `main`): what the child writes comes back in the reply.

    Standard input is not passed: the child is in another session, outside the
    caller's job control and Ctrl-C, and must not read the caller's terminal; what a
    command reads (`send ... -`) is read here and sent.
    """
    import io  # already imported: the standard streams are made of it

    described: list[dict[str, object]] = []
    fds: list[int] = []
    for name in STREAMS:
        stream = getattr(sys, name)
        if stream is None:
            described.append({"kind": "none"})
            continue
        try:
            stream.flush()
            fd = stream.fileno()
            os.fstat(fd)  # open (a descriptor closed since would fail the whole send)
            desc: dict[str, object] = {
                "kind": "fd",
                "encoding": stream.encoding,
                "errors": stream.errors,
                "line_buffering": stream.line_buffering,
                "write_through": stream.write_through,
                "buffered": not isinstance(stream.buffer, io.FileIO),  # -u: unbuffered
            }
        except (AttributeError, OSError, ValueError):
            described.append({"kind": "capture"})
            continue
        described.append(desc)
        fds.append(fd)
    return described, fds


def _via_agent(argv: list[str], path: str, cwd: str) -> int | None:
    """Exit code of the command run by the agent, or None if no agent answered."""
    stdin = None
    if _pre_receive(argv):
        stdin = sys.stdin.buffer.read()  # a line per pushed ref, all of them
    elif _command(argv) == "send" and "-" in argv:
        try:
            stdin = sys.stdin.buffer.read(_STDIN_LIMIT)
        except KeyboardInterrupt:
            # Ctrl-C while the body is typed: nothing started; what click says in process
            sys.stderr.write("\ngitcoord: aborted\n")
            return 1
    stdio, fds = _stdio()
    umask = os.umask(0o077)  # read it (there is no other way) and put it back
    os.umask(umask)
    request = {
        "argv": argv,
        "cwd": cwd,
        "env": dict(os.environ),
        "stdin": (stdin or b"").decode("latin-1"),
        "stdio": stdio,
        "umask": umask,
    }
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(path)
        except OSError:
            # No agent here: run in process (with the stdin already read, if any).
            return _in_process(argv, stdin) if stdin is not None else None
        if peer_uid(sock) != os.geteuid():
            # Not this user's agent (the folder was swapped since it was checked, or
            # its socket is another user's): not a word of the request reaches it.
            return _in_process(argv, stdin)
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
            send_frame(sock, json.dumps(request).encode(), fds)
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
    if reply.get("declined"):
        # The child could not take the streams and ran nothing: run it here instead.
        return _in_process(argv, stdin)
    # What the child wrote to a stream it could not be given (only those: it wrote
    # to the others itself, in order, as it went).
    for stream, text in ((sys.stdout, reply.get("out")), (sys.stderr, reply.get("err"))):
        if text and stream is not None:
            stream.write(text)
            stream.flush()
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
    if (
        os.environ.get("GITCOORD_AGENT", "1") == "0"
        or (_command(argv) in _IN_PROCESS and not _pre_receive(argv))
        or not PEER_CHECK  # no agent where its peers' users cannot be checked
    ):
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
