"""Real git servers on loopback for the tests and the benchmarks: `git daemon`, smart
HTTP (`git http-backend` as CGI behind lighttpd), and gitolite over sshd.

Each starts on a free port, is yielded only once it accepts connections, and is stopped
(killed if it will not stop) when the block ends. They run under the caller's environment
(the hermetic one of tests/conftest.py or benchmarks/common.py) and write only to temp dirs.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

LIGHTTPD = "/usr/sbin/lighttpd"  # Debian's; not on a non-root user's PATH
HTTP_BACKEND_CANDIDATES = (
    "/usr/lib/git-core/git-http-backend",
    "/usr/libexec/git-core/git-http-backend",
)
GITOLITE_CANDIDATES = ("/usr/bin/gitolite", "/usr/share/gitolite3/gitolite")  # Debian's gitolite3
SSHD = "/usr/sbin/sshd"  # Debian's openssh-server; sshd must be started by its absolute path
PRIVSEP_DIR = "/run/sshd"  # sshd run as root needs it; Debian's ssh.service creates it at boot
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
            '"GIT_HTTP_EXPORT_ALL" => "", "GIT_CONFIG_NOSYSTEM" => "1", '
            f'"XDG_RUNTIME_DIR" => "{_runtime(conf)}", "GITCOORD_AGENT_IDLE" => "20")\n'
            "}\n" + (_auth(conf, users) if users else "")
        )
        with (
            _agents_stopped(conf),
            _serving([server, "-D", "-f", str(conf / "lighttpd.conf")], port, "lighttpd"),
        ):
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


def gitolite() -> str | None:
    """The `gitolite` command (Debian's gitolite3), or None when it is not installed."""
    found = shutil.which("gitolite")
    return found or next((p for p in GITOLITE_CANDIDATES if os.access(p, os.X_OK)), None)


def sshd() -> str | None:
    """The sshd binary, by its absolute path (sshd refuses to start otherwise), or None."""
    found = shutil.which("sshd") or SSHD
    return os.path.abspath(found) if os.access(found, os.X_OK) else None


def gitolite_missing() -> str | None:
    """Why `gitolite_server` cannot run on this machine, or None when it can."""
    if gitolite() is None:
        return "gitolite needs Debian's gitolite3 (apt-get install gitolite3; .ci/run does it)"
    if sshd() is None:
        return "gitolite needs sshd (apt-get install openssh-server; .ci/run does it)"
    if shutil.which("ssh") is None or shutil.which("ssh-keygen") is None:
        return "gitolite needs ssh and ssh-keygen (apt-get install openssh-client)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("sshd")
        except KeyError:
            return "sshd run as root needs its privilege separation user, sshd (openssh-server)"
    elif os.path.basename(pwd.getpwuid(os.geteuid()).pw_shell) in ("nologin", "false"):
        return "gitolite's hosting account (the one running the tests) needs a login shell"
    return None


@dataclass(frozen=True)
class Gitolite:
    """A running gitolite: where it lives and how its users reach it."""

    home: Path  # the hosting user's HOME: .gitolite.rc, .gitolite/, repositories/
    port: int
    account: str  # the Unix account sshd logs every gitolite user in as (gitolite's "git")
    keys: dict[str, Path]  # each gitolite user's private key
    known_hosts: Path  # this server's host key, and nothing else

    def url(self, repo: str) -> str:
        return f"ssh://{self.account}@127.0.0.1:{self.port}/{repo}"

    def repository(self, repo: str) -> Path:
        """The bare repository on disk (for reading it, not for pushing to it)."""
        return self.home / "repositories" / f"{repo}.git"

    def ssh_command(self, user: str) -> str:
        """GIT_SSH_COMMAND (or core.sshCommand) that connects as gitolite user `user`: its
        key only, this server's host key only, and no ssh configuration of the machine's."""
        ssh = shutil.which("ssh") or "ssh"
        options = {
            "IdentitiesOnly": "yes",
            "IdentityFile": str(self.keys[user]),
            "UserKnownHostsFile": str(self.known_hosts),
            "GlobalKnownHostsFile": "/dev/null",
            "StrictHostKeyChecking": "yes",
            "BatchMode": "yes",
            "LogLevel": "ERROR",
            # the default post-quantum key exchange costs ~0.3 s a connection here
            "KexAlgorithms": "curve25519-sha256",
        }
        args = [ssh, "-F", "/dev/null"] + [f"-o{k}={v}" for k, v in options.items()]
        return shlex.join(args)


HOOK_NAME = "gitcoord"  # the repo-specific hook's name in LOCAL_CODE/hooks/repo-specific


@contextlib.contextmanager
def gitolite_server(
    base: Path,
    users: Iterable[str],
    repos: Iterable[str] = ("coord",),
    pre_receive: Path | None = None,
    gitolite_cmd: str | None = None,
    sshd_cmd: str | None = None,
) -> Iterator[Gitolite]:
    """gitolite (Debian's gitolite3) behind its own sshd on loopback; yields a `Gitolite`.

    Everything lives in `base`: the hosting user's HOME (gitolite's `.gitolite.rc`,
    `.gitolite/`, `repositories/` and the `authorized_keys` gitolite writes), an ssh
    key per user in `users` (each may read and write every repository in `repos`), the
    host key, known_hosts and sshd's own config. The hosting account is whoever runs
    this: sshd (started by us, stopped by its PID) logs every user in as that account
    with gitolite's forced command, HOME set to the temp one. As root, that is root,
    allowed nothing but forced commands (`PermitRootLogin forced-commands-only`), and
    sshd needs its privilege separation folder, /run/sshd (Debian's ssh.service makes it
    at boot), which is made when missing: the one thing outside `base`.

    With `pre_receive`, that script is every repository's pre-receive hook through
    gitolite's repo-specific hooks (`LOCAL_CODE`, `repo-specific-hooks`, `option
    hook.pre-receive` in gitolite.conf), so it runs with GL_USER set to who pushed.
    """
    gitolite_cmd = gitolite_cmd or gitolite()
    sshd_cmd = sshd_cmd or sshd()
    if gitolite_cmd is None or sshd_cmd is None:
        raise RuntimeError(gitolite_missing() or "gitolite or sshd is missing")
    users, repos = list(users), list(repos)
    account = pwd.getpwuid(os.geteuid()).pw_name
    home, keys = base / "home", base / "keys"
    admin = home / ".gitolite"
    for folder in (keys, admin / "logs", admin / "conf", admin / "keydir"):
        folder.mkdir(parents=True, exist_ok=True)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("GL_")},
        "HOME": str(home),
    }

    def keygen(path: Path, comment: str) -> None:
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
            check=True,
            capture_output=True,
        )

    host_key = base / "ssh_host_ed25519_key"
    keygen(host_key, "gitolite-test-host")
    paths: dict[str, Path] = {}
    for user in users:
        keygen(keys / user, user)
        shutil.copyfile(keys / f"{user}.pub", admin / "keydir" / f"{user}.pub")
        paths[user] = keys / user

    def gl(*args: str) -> str:
        proc = subprocess.run(
            [gitolite_cmd, *args], env=env, cwd=home, capture_output=True, text=True, check=False
        )
        if proc.returncode != 0:
            raise RuntimeError(f"gitolite {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc.stdout

    rc = gl("print-default-rc")
    hook_option = ""
    if pre_receive is not None:
        rc = _uncomment(rc, r'LOCAL_CODE\s*=>\s*"\$ENV\{HOME\}/local",')
        rc = _uncomment(rc, r"'repo-specific-hooks',")
        hooks = home / "local" / "hooks" / "repo-specific"
        hooks.mkdir(parents=True)
        shutil.copyfile(pre_receive, hooks / HOOK_NAME)
        (hooks / HOOK_NAME).chmod(0o755)
        hook_option = f"    option hook.pre-receive = {HOOK_NAME}\n"
    (home / ".gitolite.rc").write_text(rc)
    (admin / "conf" / "gitolite.conf").write_text(
        "repo gitolite-admin\n    RW+     =   admin\n\n"
        + "".join(f"repo {r}\n    RW+     =   {' '.join(users)}\n{hook_option}\n" for r in repos)
    )
    # Creates the repositories, writes authorized_keys from keydir/ (gitolite's forced
    # command per key) and links the repo-specific hooks.
    gl("setup", "-a", "admin")

    if os.geteuid() == 0:
        os.makedirs(PRIVSEP_DIR, mode=0o755, exist_ok=True)
    port = free_port()
    config = base / "sshd_config"
    # Not root, sshd cannot read /etc/shadow and takes the account for locked unless PAM
    # (its account check through a setgid helper) says otherwise.
    pam = "no" if os.geteuid() == 0 else "yes"
    config.write_text(
        f"Port {port}\n"
        "ListenAddress 127.0.0.1\n"
        f'HostKey "{host_key}"\n'
        f'PidFile "{base / "sshd.pid"}"\n'
        f'AuthorizedKeysFile "{home / ".ssh" / "authorized_keys"}"\n'
        f"AllowUsers {account}\n"
        "PermitRootLogin forced-commands-only\n"
        "PubkeyAuthentication yes\n"
        "PasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\n"
        f"UsePAM {pam}\n"
        "StrictModes no\n"
        "DisableForwarding yes\n"
        "PermitTTY no\n"
        "PrintMotd no\n"
        "UseDNS no\n"
        f'SetEnv "HOME={home}" GIT_CONFIG_NOSYSTEM=1 "XDG_RUNTIME_DIR={_runtime(base)}" '
        "GITCOORD_AGENT_IDLE=20\n"
    )
    known_hosts = base / "known_hosts"
    algo, key = host_key.with_suffix(".pub").read_text().split()[:2]
    known_hosts.write_text(f"[127.0.0.1]:{port} {algo} {key}\n")
    with _agents_stopped(base), _serving([sshd_cmd, "-D", "-e", "-f", str(config)], port, "sshd"):
        yield Gitolite(home, port, account, paths, known_hosts)


def _runtime(base: Path) -> Path:
    """The runtime folder of the server's hooks: the warm agent that gitcoord's
    pre-receive hook goes through lives there, not in the user's. A short temporary
    folder (0700), named in `base`/run-folder: a socket's path must stay under ~100
    bytes, or gitcoord falls back to the shared temporary folder's."""
    note = base / "run-folder"
    if note.exists():
        return Path(note.read_text())
    run = Path(tempfile.mkdtemp(prefix="gcs", dir="/tmp"))
    note.write_text(str(run))
    return run


@contextlib.contextmanager
def _agents_stopped(base: Path) -> Iterator[None]:
    """When the server stops, so do the agents its hooks started (an agent leaves as
    soon as its socket is removed), and their runtime folder goes."""
    try:
        yield
    finally:
        note = base / "run-folder"
        if note.exists():
            run = Path(note.read_text())
            for sock in run.rglob("*.sock"):
                with contextlib.suppress(OSError):
                    sock.unlink()
            shutil.rmtree(run, ignore_errors=True)
            note.unlink()


def _uncomment(text: str, line: str) -> str:
    """`text` with the commented-out rc line matching `line` enabled."""
    new, count = re.subn(r"#\s*(" + line + ")", r"\1", text, count=1)
    if count != 1:
        raise RuntimeError(f"gitolite's default rc has no commented line {line!r}")
    return new


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
