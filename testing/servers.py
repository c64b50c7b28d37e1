"""Real git servers on loopback for the tests and the benchmarks: `git daemon`, and smart
HTTP (`git http-backend` as CGI behind lighttpd).

Each starts on a free port, is yielded only once it accepts connections, and is stopped
(killed if it will not stop) when the block ends. They run under the caller's environment
(the hermetic one of tests/conftest.py or benchmarks/common.py) and write only to temp dirs.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

LIGHTTPD = "/usr/sbin/lighttpd"  # Debian's; not on a non-root user's PATH
HTTP_BACKEND_CANDIDATES = (
    "/usr/lib/git-core/git-http-backend",
    "/usr/libexec/git-core/git-http-backend",
)
START_TIMEOUT = 15.0  # seconds for a server to start listening
STOP_TIMEOUT = 10.0  # seconds for it to exit on SIGTERM before SIGKILL


def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def lighttpd() -> str | None:
    """The lighttpd binary, or None when it is not installed."""
    return shutil.which("lighttpd") or (LIGHTTPD if os.access(LIGHTTPD, os.X_OK) else None)


def http_backend() -> str | None:
    """This git's `git-http-backend` program, or None when it ships none."""
    exec_path = subprocess.run(
        ["git", "--exec-path"], capture_output=True, text=True, check=False
    ).stdout.strip()
    for path in (os.path.join(exec_path, "git-http-backend"), *HTTP_BACKEND_CANDIDATES):
        if os.access(path, os.X_OK):
            return path
    return None


@contextlib.contextmanager
def git_daemon(base: Path) -> Iterator[str]:
    """A real `git daemon` on loopback serving (and accepting pushes to) `base`; yields
    its base URL, `git://127.0.0.1:PORT`."""
    port = free_port()
    argv = [
        "git",
        "daemon",
        "--reuseaddr",
        "--export-all",
        "--enable=receive-pack",
        f"--base-path={base}",
        "--listen=127.0.0.1",
        f"--port={port}",
        "--max-connections=64",
        str(base),
    ]
    with _serving(argv, port, "git daemon"):
        yield f"git://127.0.0.1:{port}"


@contextlib.contextmanager
def http_server(
    base: Path,
    server: str,
    backend: str,
    conf_dir: Path | None = None,
    users: dict[str, str] | None = None,
) -> Iterator[str]:
    """`git http-backend` (`backend`) as CGI behind lighttpd (`server`) on loopback,
    serving and accepting pushes to the bare repositories in `base` (each one also needs
    `http.receivepack` set to accept pushes); yields its base URL,
    `http://127.0.0.1:PORT/git`.

    Its config and error log go in `conf_dir`, or else in a temp dir removed afterwards.
    With `users` (name -> password), every request needs HTTP basic authentication, and
    git http-backend hands the authenticated name to the hooks as REMOTE_USER.
    """
    conf = Path(tempfile.mkdtemp(prefix="gitcoord-http-")) if conf_dir is None else conf_dir
    try:
        (conf / "www").mkdir(parents=True, exist_ok=True)
        port = free_port()
        (conf / "lighttpd.conf").write_text(
            f'server.document-root = "{conf / "www"}"\n'
            'server.bind = "127.0.0.1"\n'
            f"server.port = {port}\n"
            f'server.errorlog = "{conf / "error.log"}"\n'
            "server.max-connections = 256\n"
            'server.modules += ("mod_alias", "mod_setenv", "mod_cgi")\n'
            f'alias.url = ("/git" => "{backend}")\n'
            '$HTTP["url"] =~ "^/git" {\n'
            '  cgi.assign = ("" => "")\n'
            f'  setenv.add-environment = ("GIT_PROJECT_ROOT" => "{base}", '
            '"GIT_HTTP_EXPORT_ALL" => "", "GIT_CONFIG_NOSYSTEM" => "1")\n'
            "}\n"
            + (_auth(conf, users) if users else "")
        )
        with _serving([server, "-D", "-f", str(conf / "lighttpd.conf")], port, "lighttpd"):
            yield f"http://127.0.0.1:{port}/git"
    finally:
        if conf_dir is None:
            shutil.rmtree(conf, ignore_errors=True)


def _auth(conf: Path, users: dict[str, str]) -> str:
    """lighttpd's basic authentication over a plain user file, for /git."""
    (conf / "users").write_text("".join(f"{u}:{p}\n" for u, p in users.items()))
    return (
        'server.modules += ("mod_auth", "mod_authn_file")\n'
        'auth.backend = "plain"\n'
        f'auth.backend.plain.userfile = "{conf / "users"}"\n'
        'auth.require = ("/git" => ("method" => "basic", "realm" => "git", '
        '"require" => "valid-user"))\n'
    )


@contextlib.contextmanager
def _serving(argv: list[str], port: int, what: str) -> Iterator[None]:
    """Run `argv` for the block, entered once it listens on `port`. Its stderr goes to an
    anonymous temp file (a pipe nobody reads could fill and stall it) and is quoted when
    it fails to start."""
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log)
        try:
            _wait_port(port, proc, log, what)
            yield
        finally:
            _stop(proc)


def _wait_port(port: int, proc: subprocess.Popen[bytes], log: IO[bytes], what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        if proc.poll() is not None:
            log.seek(0)
            err = log.read().decode(errors="replace").strip()
            raise RuntimeError(f"{what} did not start: {err}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start listening")
        time.sleep(0.05)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
