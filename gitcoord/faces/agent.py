"""The per-user agent: gitcoord with its imports already paid for, forking a child per command.

    python -m gitcoord.agent SOCKET_PATH      (started by `gitcoord.client`)

It imports the CLI, builds the pydantic models and the YAML machinery once,
then waits on a Unix socket in a 0700 directory, and serves only its own user
(the peer's uid, checked on every connection). For each connection it forks: the
child takes the caller's working directory, environment, umask, stdin (as text)
and stdout and stderr (their file descriptors, passed over the socket: it writes
to the caller's terminal, file or pipe itself, in the order it writes), runs
exactly the command line the caller would have run (`gitcoord.cli.main`), and
sends back its exit code. Children share nothing but the warm imports, so
concurrent commands run in parallel and a crash touches only its own command.
The agent holds no coordination state at all: the git remote remains the only
truth.

It exits after `GITCOORD_AGENT_IDLE` seconds (default 600) without a command,
or as soon as its socket is removed or replaced.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import socket
import sys
import threading
from typing import Any

import click

from .client import (
    PEER_CHECK,
    STREAMS,
    peer_uid,
    private_folder,
    recv_frame,
    recv_frame_fds,
    send_frame,
)


def _warm() -> None:
    """Import and build everything a command needs, so children start warm."""
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    from .. import api, audit, domain, ops, store  # noqa: F401
    from ..api import (  # noqa: F401
        carrier,
        coordinator,
        render,
        trust,
        verbs,
    )
    from ..audit import carried, history, tickets, verify  # noqa: F401
    from ..domain import branch, kinds, mailbox, transition, validate, yamlio  # noqa: F401
    from ..ops import board, kernel  # noqa: F401
    from ..store import turns  # noqa: F401
    from . import flusher, githooks  # noqa: F401  (githooks: the server's pre-receive)
    from .cli import cli

    # What signs a machine key's commits in process (`sshsig`): ~40 ms of imports that
    # every child paid again at its first write, a claim through the agent 1.5x as long.
    with contextlib.suppress(ImportError):
        from cryptography.hazmat.primitives import serialization  # noqa: F401
        from cryptography.hazmat.primitives.asymmetric import ed25519  # noqa: F401
    import difflib  # noqa: F401  (click's parse of options it leaves to a verb imports it)

    cli.list_commands(click.Context(cli))  # every verb's command, made once here

    for model in kinds.DOCUMENTS.values():
        model.model_rebuild()  # make sure every schema is built here, not in each child
    yamlio.load(b"a: 1\n")


def _watch(conn: socket.socket) -> None:
    """The client says "cancel" (its user pressed Ctrl-C, or `timeout` sent SIGTERM), or
    goes away: ask the command to stop before it writes (`store.cancel`)."""
    from ..store.cancel import CANCELLED

    with contextlib.suppress(OSError, ConnectionError):
        recv_frame(conn)
    CANCELLED.set()


def _stream(fd: int, desc: dict[str, Any]) -> io.TextIOWrapper:
    """The stream Python makes over descriptor 1 or 2 at start-up, as the client
    described its own (encoding, errors, line buffering, -u)."""
    raw = io.FileIO(fd, "wb", closefd=False)
    buffer: Any = io.BufferedWriter(raw) if desc.get("buffered", True) else raw
    return io.TextIOWrapper(
        buffer,
        encoding=desc.get("encoding") or "utf-8",
        errors=desc.get("errors") or "strict",
        newline="\n",
        line_buffering=bool(desc.get("line_buffering")),
        write_through=bool(desc.get("write_through")),
    )


def _take_stdio(request: dict[str, Any], fds: list[int]) -> dict[str, io.StringIO]:
    """Make the caller's stdout and stderr this process's own: each passed descriptor
    becomes descriptor 1 or 2 (anything writing there reaches the caller too) and
    sys.stdout/stderr are made over it as in a plain process, so what the command
    writes reaches the caller in the order it writes it, on the caller's terminal if
    that is where it goes. Returns the streams captured instead (not passed), whose
    text goes back in the reply; stdin is the text the client sent."""
    sys.stdin = io.TextIOWrapper(io.BytesIO(request["stdin"].encode("latin-1")))
    captured: dict[str, io.StringIO] = {}
    passed = iter(fds)  # in the order of the streams described as "fd"
    described = request.get("stdio") or [{"kind": "capture"}] * len(STREAMS)
    for fd, (name, desc) in enumerate(zip(STREAMS, described, strict=True), start=1):
        stream: Any
        if desc.get("kind") == "fd":
            theirs = next(passed)
            os.dup2(theirs, fd)  # the agent keeps 0-2 open: theirs is never one of them
            os.close(theirs)
            stream = _stream(fd, desc)
        elif desc.get("kind") == "none":
            stream = None  # closed in the caller: Python has no such stream there either
        else:
            stream = captured[name] = io.StringIO()
        setattr(sys, name, stream)
        setattr(sys, f"__{name}__", stream)  # shutil.get_terminal_size() asks this one
    return captured


def _handle(conn: socket.socket) -> None:
    from .cli import main as cli_main

    payload, fds, truncated = recv_frame_fds(conn, len(STREAMS))
    request: dict[str, Any] = json.loads(payload)
    wanted = sum(1 for desc in request.get("stdio") or () if desc.get("kind") == "fd")
    if truncated or len(fds) != wanted:
        # Not the caller's streams (this process ran out of descriptors): run nothing,
        # and the client runs the command itself.
        for fd in fds:
            os.close(fd)
        send_frame(conn, json.dumps({"declined": True}).encode())
        return
    threading.Thread(target=_watch, args=(conn,), daemon=True).start()
    os.chdir(request["cwd"])
    os.umask(int(request.get("umask", 0o022)))  # the caller's, not the agent's
    os.environ.clear()
    os.environ.update(request["env"])
    captured = _take_stdio(request, fds)
    try:
        code = cli_main(list(request["argv"]))
    finally:
        # What a plain process flushes as it exits, before the client may exit.
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError, AttributeError):
                stream.flush()
    reply = {
        "code": code,
        "out": captured["stdout"].getvalue() if "stdout" in captured else "",
        "err": captured["stderr"].getvalue() if "stderr" in captured else "",
    }
    send_frame(conn, json.dumps(reply).encode())


def _ours(path: str, inode: int) -> bool:
    try:
        return os.stat(path).st_ino == inode
    except FileNotFoundError:
        return False


def serve(path: str) -> None:
    if not PEER_CHECK:
        return  # a system that cannot tell who connects: no agent at all
    folder = os.path.dirname(path)
    os.makedirs(folder, mode=0o700, exist_ok=True)
    if not private_folder(folder):
        return  # a folder someone else could enter: no agent at all
    for fd in range(3):
        # 0-2 open (on /dev/null): a caller's descriptor received by a child is never
        # one of them, so making it the child's 0, 1 or 2 overwrites nothing.
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
    _warm()
    idle = float(os.environ.get("GITCOORD_AGENT_IDLE") or 600)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    tmp = f"{path}.{os.getpid()}"
    sock.bind(tmp)
    os.chmod(tmp, 0o600)
    try:
        # link() fails if another agent got there first: then this one just leaves.
        os.link(tmp, path)
    except FileExistsError:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                probe.connect(path)
            os.unlink(tmp)
            return  # a live agent answers
        except OSError:
            os.replace(tmp, path)  # a dead agent's socket: take its place
    else:
        os.unlink(tmp)
    inode = os.stat(path).st_ino
    sock.listen(64)
    sock.settimeout(min(idle, 5.0))
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped automatically
    quiet = 0.0
    try:
        while _ours(path, inode):
            try:
                conn, _ = sock.accept()
            except TimeoutError:
                quiet += sock.gettimeout() or 5.0
                if quiet >= idle:
                    break
                continue
            if peer_uid(conn) != os.geteuid():
                # Another user (the socket's folder and mode keep them out; this holds
                # even if those were opened): not a byte read, nothing run for them.
                conn.close()
                continue
            quiet = 0.0
            if os.fork() == 0:  # the child runs one command and exits
                code = 0
                try:
                    # SIG_IGN for SIGCHLD is inherited: the kernel would reap every git
                    # process the command starts, and subprocess would read each exit
                    # code as 0 (a failed push or compare-and-swap taken for success).
                    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                    sock.close()
                    conn.settimeout(None)
                    _handle(conn)
                except BaseException:  # a child must never return into the accept loop
                    code = 1
                finally:
                    with contextlib.suppress(OSError):
                        conn.close()
                    os._exit(code)
            conn.close()
    finally:
        if _ours(path, inode):
            with contextlib.suppress(OSError):
                os.unlink(path)
        sock.close()


if __name__ == "__main__":
    os.chdir("/")
    serve(sys.argv[1])
