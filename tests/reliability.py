"""Helpers for the reliability suites (crash, faults, hostile input, time, soak, transports).

Everything here drives real git: commits made by hand with plumbing (as a user
editing the branch would), a TCP proxy that cuts or swallows a real push, and
checks over the branch's history.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from conftest import git

BRANCH = "gitcoord"
REF = f"refs/heads/{BRANCH}"


def env_int(name: str, default: int) -> int:
    """A knob read at import time (the hermetic fixture clears GITCOORD_* per test)."""
    raw = os.environ.get(name)
    try:
        return max(1, int(raw)) if raw else default
    except ValueError:
        return default


def git_dir(repo: Path) -> Path:
    return repo if (repo / "HEAD").is_file() and not (repo / ".git").exists() else repo / ".git"


def tip(repo: Path, ref: str = REF) -> str | None:
    out = git(repo, "rev-parse", "--verify", "--quiet", ref + "^{commit}", check=False).strip()
    return out or None


def branch_files(repo: Path, ref: str = REF) -> list[str]:
    return git(repo, "ls-tree", "-r", "-z", "--name-only", ref).split("\0")[:-1]


def show(repo: Path, ref: str, path: str) -> bytes:
    return subprocess.run(
        ["git", "cat-file", "blob", f"{ref}:{path}"], cwd=repo, capture_output=True, check=True
    ).stdout


def commit_files(
    repo: Path,
    changes: Mapping[str, bytes | None],
    *,
    parent: str | None,
    message: str = "hand edit",
    mode: str = "100644",
) -> str:
    """A commit on top of `parent` with `changes` (path -> bytes, None deletes), made
    with a private index like a person's script would; returns its id (no ref moved)."""
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "GIT_INDEX_FILE": os.path.join(tmp, "index")}

        def g(*args: str, data: bytes | None = None) -> str:
            proc = subprocess.run(
                ["git", *args], cwd=repo, env=env, input=data, capture_output=True, check=False
            )
            assert proc.returncode == 0, f"git {args}: {proc.stderr.decode()}"
            return proc.stdout.decode().strip()

        if parent:
            g("read-tree", parent)
        # one process for every blob and one for the index, not two per file: the
        # history tests write thousands of files, and 12,000 git processes took 90 s
        blobs = [d for d in changes.values() if d is not None and mode != "160000"]
        for n, data in enumerate(blobs):
            Path(tmp, f"blob{n}").write_bytes(data)
        listed = "".join(f"{tmp}/blob{n}\n" for n in range(len(blobs)))
        oids = iter(g("hash-object", "-w", "--stdin-paths", data=listed.encode()).split())
        records = []
        for path, data in changes.items():
            if data is None:
                records.append(f"0 {'0' * 40}\t{path}")
            else:
                oid = data.decode() if mode == "160000" else next(oids)
                records.append(f"{mode} {oid}\t{path}")
        if records:
            g(
                "update-index",
                "-z",
                "--index-info",
                data="".join(r + "\0" for r in records).encode("utf-8", "surrogateescape"),
            )
        tree = g("write-tree")
        args = ["commit-tree", tree, "-m", message]
        if parent:
            args += ["-p", parent]
        return g(*args)


def hand_commit_local(
    repo: Path, changes: Mapping[str, bytes | None], message: str = "hand edit", **kw: str
) -> str:
    """Commit `changes` on the local coordination branch and move it (no remote)."""
    old = tip(repo)
    new = commit_files(repo, changes, parent=old, message=message, **kw)
    git(repo, "update-ref", REF, new, old or "")
    return new


def hand_push(
    clone: Path, changes: Mapping[str, bytes | None], message: str = "hand edit", **kw: str
) -> str:
    """Commit `changes` on origin's coordination branch from `clone` and push it."""
    git(clone, "fetch", "-q", "origin", f"+{REF}:refs/hand/base")
    old = tip(clone, "refs/hand/base")
    new = commit_files(clone, changes, parent=old, message=message, **kw)
    git(clone, "push", "-q", "origin", f"{new}:{REF}")
    git(clone, "update-ref", "-d", "refs/hand/base")
    return new


MIRROR = re.compile(r"^refs/gitcoord/remotes/[^/]+/.+$")  # gitcoord's fetched copy of a tip
# The queue's refs as last fetched (`store.tickets`: bell, tickets, requests): a cache that
# every fetch rewrites, there as soon as any clone under load took a ticket.
SEEN = re.compile(r"^refs/gitcoord/seen/[^/]+/[0-9a-f]{12}/(bell|waiting/.+|requests/.+)$")


def stray_refs(repo: Path) -> list[str]:
    """Refs other than branches, remote-tracking refs, tags, gitcoord's own mirror of the
    remote tip and the queue's fetched copies (a crash must leave no temporary ref behind)."""
    refs = git(repo, "for-each-ref", "--format=%(refname)").split()
    return [
        r
        for r in refs
        if not r.startswith(("refs/heads/", "refs/remotes/", "refs/tags/"))
        and not MIRROR.match(r)
        and not SEEN.match(r)
    ]


def lock_files(repo: Path) -> list[str]:
    """`*.lock` files under the repository's git dir (tolerates folders that vanish
    while it looks: a concurrent receive-pack's temporary object dir)."""
    found = []
    for dirpath, _, filenames in os.walk(git_dir(repo)):
        found += [os.path.join(dirpath, f) for f in filenames if f.endswith(".lock")]
    return sorted(found)


def trailers(repo: Path, ref: str = REF) -> list[dict[str, str]]:
    """Every commit of the branch, oldest first: subject and trailers (first value each)."""
    fmt = "%H%x1f%s%x1f%ct%x1f%(trailers:only,unfold)%x1e"
    out = git(repo, "log", "--first-parent", "--reverse", f"--format={fmt}", ref)
    found = []
    for record in out.split("\x1e"):
        record = record.strip("\n")
        if not record:
            continue
        commit, subject, ct, text = [*record.split("\x1f"), "", "", ""][:4]
        entry = {"commit": commit, "subject": subject, "time": ct}
        for line in text.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                entry.setdefault(key.strip(), value.strip())
        found.append(entry)
    return found


ONE_LINE = re.compile(r"^gitcoord: [^\n]+\n?$")


def assert_clean_failure(err: str, code: int) -> None:
    """Never a traceback; a failure is one line on stderr (validate/doctor list problems)."""
    assert "Traceback" not in err, err
    assert code != 1, f"exit 1 is a bug: {err}"
    if code != 0:
        assert err.startswith("gitcoord: "), err


# --- a TCP proxy that breaks a real connection ------------------------------------------


class Proxy:
    """Forwards 127.0.0.1:<port> to a real `git daemon`, and breaks pushes on request.

    Fetches always pass. The next `pushes_to_break` push connections (recognised by
    their `git-receive-pack` request line) misbehave as set by `mode`:
    - "cut": close both sides after `cut_after` bytes of the push's commands and
      pack went through (a connection dying mid-push);
    - "swallow": forward the whole push, but never relay the server's verdict,
      and close the client's side after `hold` seconds (the push was accepted;
      its report was lost).
    - "orphan": forward the whole push and close the client's side at once, while the
      server goes on with it (a client cut off while a slow hook still judges its push,
      which may yet land after the client has moved on).
    """

    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = int(self.sock.getsockname()[1])
        self.mode = "pass"
        self.cut_after = 0
        self.hold = 0.5
        self.pushes_to_break = 0
        self.pushes = 0
        self.broken = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def url_base(self) -> str:
        return f"git://127.0.0.1:{self.port}"

    def break_pushes(self, mode: str, count: int = 1_000_000, **kw: float) -> None:
        with self._lock:
            self.mode, self.pushes_to_break = mode, count
            for k, v in kw.items():
                setattr(self, k, v)

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                client, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._pipe, args=(client,), daemon=True).start()

    def _pipe(self, client: socket.socket) -> None:
        try:
            server = socket.create_connection(self.target, timeout=30)
            first = _first_packet(client)
        except (OSError, ValueError):
            _close(client)
            return
        mode = "pass"
        if b"git-receive-pack" in first:
            with self._lock:
                self.pushes += 1
                if self.pushes_to_break > 0 and self.mode != "pass":
                    self.pushes_to_break -= 1
                    self.broken += 1
                    mode = self.mode
        muted = threading.Event()

        def up() -> None:  # client -> server
            sent = 0
            try:
                server.sendall(first)
                while True:
                    data = client.recv(65536)
                    if not data:
                        break
                    if mode == "cut" and sent + len(data) >= self.cut_after:
                        server.sendall(data[: max(0, self.cut_after - sent)])
                        _close(client, server)
                        return
                    server.sendall(data)
                    sent += len(data)
                    if mode in ("swallow", "orphan"):
                        muted.set()  # commands and pack are on their way: mute the verdict
                    if mode == "orphan":
                        client.settimeout(0.3)  # the rest of the pack, then cut the client
                with contextlib.suppress(OSError):
                    server.shutdown(socket.SHUT_WR)
            except TimeoutError:
                _close(client)  # all sent: the server side stays open, it lands or not
            except OSError:
                pass

        t = threading.Thread(target=up, daemon=True)
        t.start()
        try:
            while True:
                data = server.recv(65536)
                if not data:
                    break
                if muted.is_set():
                    continue
                client.sendall(data)
        except OSError:
            pass
        if muted.is_set():
            time.sleep(self.hold)
        _close(client, server)
        t.join(timeout=5)

    def close(self) -> None:
        self._stop.set()
        self.sock.close()
        self._thread.join(timeout=5)


def _first_packet(client: socket.socket) -> bytes:
    """The request line: one pkt-line (4 hex digits of length, then the rest)."""
    data = b""
    while len(data) < 4 or len(data) < int(data[:4], 16):
        chunk = client.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def _close(*socks: socket.socket) -> None:
    for s in socks:
        with contextlib.suppress(OSError):
            s.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            s.close()


@contextlib.contextmanager
def proxy(target_port: int) -> Iterator[Proxy]:
    p = Proxy(target_port)
    try:
        yield p
    finally:
        p.close()


def daemon_port(url: str) -> int:
    return int(url.split(":")[2].split("/")[0])


def assert_fencing(history: list[dict[str, str]]) -> dict[str, int]:
    """Replay `Gitcoord-Generation` per resource, oldest first: every new grant (claim
    or takeover) is exactly one more than the last (1 for the first), renewals and
    releases keep it. Returns the number of grants per resource."""
    current: dict[str, int] = {}
    grants: dict[str, int] = {}
    for h in history:
        op, res = h.get("Gitcoord-Op"), h.get("Gitcoord-Resource")
        gen = h.get("Gitcoord-Generation")
        if op not in ("claim", "takeover", "renew", "release") or not res or gen is None:
            continue
        g = int(gen)
        if op in ("claim", "takeover"):
            want = current.get(res, 0) + 1
            assert g == want, f"{h['commit'][:10]} {h['subject']}: generation {g}, expected {want}"
            grants[res] = grants.get(res, 0) + 1
        else:
            assert g == current.get(res), f"{h['commit'][:10]} {h['subject']}: generation {g}"
        current[res] = g
    return grants


@contextlib.contextmanager
def private_agent(monkeypatch: Any) -> Iterator[Path]:
    """Commands go through a warm agent of their own (a short private runtime dir:
    AF_UNIX paths are limited to ~107 bytes); it exits when its socket is removed."""
    runtime = Path(tempfile.mkdtemp(prefix="gcr", dir="/tmp"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    monkeypatch.setenv("GITCOORD_AGENT", "1")
    try:
        yield runtime
    finally:
        for sock in runtime.rglob("*.sock"):
            sock.unlink()
        shutil.rmtree(runtime, ignore_errors=True)


def warm_agent(clone: Path, timeout: float = 90.0) -> bool:
    """Start the per-user agent (gitcoord.agent) and wait until it answers, so that a
    load test measures gitcoord rather than twelve cold Python start-ups racing to
    start it. False when no agent came up (e.g. GITCOORD_AGENT=0): commands then
    run in process, which is slower but the same code."""
    from conftest import run_proc

    from gitcoord.faces import client

    if os.environ.get("GITCOORD_AGENT", "1") == "0":
        return False
    sock = client.socket_path()
    deadline = time.monotonic() + timeout
    while not os.path.exists(sock):
        run_proc(clone, "status")
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True
