"""The per-user agent: gitcoord with its imports already paid for, forking a child per command.

    python -m gitcoord.agent SOCKET_PATH      (started by `gitcoord.client`)

It imports the CLI, builds the pydantic models and the YAML machinery once,
then waits on a Unix socket in a 0700 directory. For each connection it forks:
the child takes the caller's working directory, environment and stdin, runs
exactly the command line the caller would have run (`gitcoord.cli.main`), and
sends back its exit code, stdout and stderr. Children share nothing but the
warm imports, so concurrent commands run in parallel and a crash touches only
its own command. The agent holds no coordination state at all: the git remote
remains the only truth.

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

from .client import private_folder, recv_frame, send_frame


def _warm() -> None:
    """Import and build everything a command needs, so children start warm."""
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    from .. import api, audit, domain, ops, store  # noqa: F401
    from ..api import (  # noqa: F401
        coordinator,
        render,
        verbs,
    )
    from ..audit import history, verify  # noqa: F401
    from ..domain import branch, kinds, mailbox, transition, validate, yamlio  # noqa: F401
    from ..ops import board, kernel  # noqa: F401
    from .cli import cli

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


def _handle(conn: socket.socket) -> None:
    from .cli import main as cli_main

    request: dict[str, Any] = json.loads(recv_frame(conn))
    threading.Thread(target=_watch, args=(conn,), daemon=True).start()
    os.chdir(request["cwd"])
    os.umask(int(request.get("umask", 0o022)))  # the caller's, not the agent's
    os.environ.clear()
    os.environ.update(request["env"])
    sys.stdin = io.TextIOWrapper(io.BytesIO(request["stdin"].encode("latin-1")))
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli_main(list(request["argv"]))
    reply = {"code": code, "out": out.getvalue(), "err": err.getvalue()}
    send_frame(conn, json.dumps(reply).encode())


def _ours(path: str, inode: int) -> bool:
    try:
        return os.stat(path).st_ino == inode
    except FileNotFoundError:
        return False


def serve(path: str) -> None:
    folder = os.path.dirname(path)
    os.makedirs(folder, mode=0o700, exist_ok=True)
    if not private_folder(folder):
        return  # a folder someone else could enter: no agent at all
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
