"""The one door to git: every git process gitcoord starts goes through `Git`
(`Git.run`, or `Git.start` for the one long-lived `cat-file --batch`);
tests/test_gitio_door.py fails when another module spawns git or imports
GitPython. `Git(git_dir)` runs against a repository already found;
`Git.at(path)` runs as `git -C path` does, for a work tree or a repository
not opened yet (and for `init`/`clone`, which need none).

Rules kept here so no caller has to remember them:
- argument lists, never shell strings; bytes in and out; checked exit codes;
- `LC_ALL=C` so the few messages we must recognise are stable, no terminal
  prompts (an agent cannot answer one), stdin closed unless we feed it;
- the repository location is passed explicitly (`GIT_DIR`) and the variables a
  hook exports (`GIT_INDEX_FILE`, `GIT_WORK_TREE`, ...) are dropped, so running
  from inside a hook of another repository cannot write into the wrong place.

Objects are read through one long-lived `git cat-file --batch` per command and
written as loose objects directly (the format is git's stable on-disk format:
a zlib stream of "<type> <size>\\0<data>" named by its hash). Writing them in
process saves one git process per object, which matters on the hot path; see
the README's performance notes.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import subprocess
import tempfile
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

# Variables that point git at a repository, index or object store. A hook runs
# with these set for *its* repository; we always say which repository we mean.
_LOCATION_VARS = (
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_PREFIX",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_QUARANTINE_PATH",
)

ZERO_OIDS = {"sha1": "0" * 40, "sha256": "0" * 64}


class GitError(Exception):
    """A git process failed. Callers translate it into a `GitcoordError`."""

    def __init__(self, args: Sequence[str], returncode: int, stderr: bytes, stdout: bytes = b""):
        self.argv = list(args)
        self.returncode = returncode
        self.stderr = stderr.decode("utf-8", "replace")
        self.stdout = stdout.decode("utf-8", "replace")
        first = next((ln for ln in self.stderr.splitlines() if ln.strip()), "")
        super().__init__(f"git {' '.join(self.argv[:2])} failed ({returncode}): {first}")


class GitTimeout(GitError):
    pass


def clean_env(
    extra: Mapping[str, str] | None = None,
    keep_objects: bool = False,
    keep_index: bool = False,
) -> dict[str, str]:
    """The environment of a git process: os.environ without the location variables
    (but the object store a server hook is quarantined in, with `keep_objects`, and the
    index `git commit` is about to commit, with `keep_index`)."""
    env = dict(os.environ)
    for name in _LOCATION_VARS:
        if keep_objects and name in (
            "GIT_OBJECT_DIRECTORY",
            "GIT_ALTERNATE_OBJECT_DIRECTORIES",
            "GIT_QUARANTINE_PATH",
        ):
            continue
        if keep_index and name == "GIT_INDEX_FILE":
            continue
        env.pop(name, None)
    env["LC_ALL"] = "C"
    env.pop("LANGUAGE", None)
    env["GIT_TERMINAL_PROMPT"] = "0"
    if extra:
        env.update(extra)
    return env


class Git:
    """Runs git against one repository: `Git(git_dir)` names it (`GIT_DIR`);
    `Git.at(path)` lets git find it from a directory."""

    def __init__(
        self,
        git_dir: str | None,
        *,
        keep_objects: bool = False,
        keep_index: bool = False,
        cwd: str | None = None,
    ) -> None:
        self.git_dir = git_dir
        self.cwd = cwd
        env = {"GIT_DIR": git_dir} if git_dir is not None else None
        self.env = clean_env(env, keep_objects=keep_objects, keep_index=keep_index)

    @classmethod
    def at(
        cls,
        path: str | os.PathLike[str],
        *,
        keep_objects: bool = False,
        keep_index: bool = False,
    ) -> Git:
        """git as `git -C path` runs it: the repository is discovered from `path` (a work
        tree, a bare repository, or any directory for `init` and `clone`).

        `keep_index`: a pre-commit hook judges the index `git commit` is about to commit,
        which `commit -a` and `commit <paths>` name in GIT_INDEX_FILE (a temporary one)."""
        return cls(None, keep_objects=keep_objects, keep_index=keep_index, cwd=os.fspath(path))

    def _argv(self, args: Sequence[str], config: Sequence[str] = ()) -> list[str]:
        argv = ["git"]
        for item in config:
            argv += ["-c", item]
        return argv + list(args)

    def run(
        self,
        args: Sequence[str],
        *,
        input: bytes | None = None,
        check: bool = True,
        timeout: float | None = None,
        config: Sequence[str] = (),
        cwd: str | None = None,
    ) -> subprocess.CompletedProcess[bytes]:
        try:
            proc = subprocess.run(
                self._argv(args, config),
                input=input,
                stdin=None if input is not None else subprocess.DEVNULL,
                capture_output=True,
                env=self.env if cwd is None else self._worktree_env(cwd),
                timeout=timeout,
                check=False,
                cwd=cwd if cwd is not None else self.cwd,
            )
        except subprocess.TimeoutExpired as exc:
            raise GitTimeout(args, -1, b"timed out after %.1fs" % (timeout or 0)) from exc
        if check and proc.returncode != 0:
            raise GitError(args, proc.returncode, proc.stderr, proc.stdout)
        return proc

    def _worktree_env(self, cwd: str) -> dict[str, str]:
        # Commands about the work tree (rev-parse --show-toplevel, diff --cached) must
        # discover it from cwd, so they run without GIT_DIR.
        env = dict(self.env)
        env.pop("GIT_DIR", None)
        return env

    def start(self, args: Sequence[str]) -> subprocess.Popen[bytes]:
        """A long-lived git process spoken to over pipes (`cat-file --batch`); its
        stderr is dropped: a failure shows as the pipe closing."""
        return subprocess.Popen(
            self._argv(args),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=self.env,
            cwd=self.cwd,
        )


@dataclass(frozen=True)
class RepoInfo:
    git_dir: str
    common_dir: str
    object_format: str
    bare: bool

    @property
    def objects_dir(self) -> str:
        return os.path.join(self.common_dir, "objects")

    @property
    def zero_oid(self) -> str:
        return ZERO_OIDS[self.object_format]


def discover(path: str, *, keep_objects: bool = False) -> RepoInfo:
    """Find the repository containing `path` (like `git -C path`)."""
    git = Git.at(path, keep_objects=keep_objects)
    if keep_objects and "GIT_DIR" in os.environ:
        # Inside a server hook: GIT_DIR names the repository being pushed to.
        git.env["GIT_DIR"] = os.environ["GIT_DIR"]
    proc = git.run(
        [
            "rev-parse",
            "--absolute-git-dir",
            "--git-common-dir",
            "--is-bare-repository",
            "--show-object-format",
        ],
        check=False,
    )
    if proc.returncode != 0:
        raise GitError(["rev-parse", path], proc.returncode, proc.stderr)
    git_dir, common, bare, fmt = proc.stdout.decode().splitlines()[:4]
    if not os.path.isabs(common):
        common = os.path.normpath(os.path.join(path, common))
    return RepoInfo(git_dir, common, fmt or "sha1", bare == "true")


# --- objects ---------------------------------------------------------------


_OBJECT_ID = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")  # sha1 or sha256, in full


def is_object_id(name: str) -> bool:
    """Whether `name` is an object's full id (never a ref, an abbreviation or a
    `<rev>:<path>`, which can name something else tomorrow)."""
    return _OBJECT_ID.fullmatch(name) is not None


@dataclass(frozen=True)
class TreeEntry:
    mode: str  # "100644", "40000", ...
    name: str
    oid: str

    @property
    def is_tree(self) -> bool:
        return self.mode == "40000"


def parse_tree(data: bytes, hexlen: int) -> list[TreeEntry]:
    raw = hexlen // 2
    entries: list[TreeEntry] = []
    i = 0
    while i < len(data):
        sp = data.index(b" ", i)
        nul = data.index(b"\0", sp)
        mode = data[i:sp].decode()
        name = data[sp + 1 : nul].decode("utf-8", "surrogateescape")
        oid = data[nul + 1 : nul + 1 + raw].hex()
        entries.append(TreeEntry(mode, name, oid))
        i = nul + 1 + raw
    return entries


def format_tree(entries: Iterable[TreeEntry]) -> bytes:
    # git sorts tree entries as if directory names ended with "/".
    def key(e: TreeEntry) -> bytes:
        n = e.name.encode("utf-8", "surrogateescape")
        return n + b"/" if e.is_tree else n

    out = bytearray()
    for e in sorted(entries, key=key):
        out += e.mode.encode() + b" " + e.name.encode("utf-8", "surrogateescape") + b"\0"
        out += bytes.fromhex(e.oid)
    return bytes(out)


class ObjectReader:
    """One `git cat-file --batch` for the whole command, asked interactively."""

    # Trees read by object id, kept for the life of the reader: an id names its bytes, so
    # a tree never changes, and a long-lived reader (a session's Coordinator, the warm
    # agent's) walks the same unchanged folders state after state.
    MAX_TREES = 20_000
    PIPELINED = 8192  # bytes of requests written before their answers are read

    def __init__(self, git: Git) -> None:
        self._git = git
        self._proc: subprocess.Popen[bytes] | None = None
        self._trees: dict[str, list[TreeEntry]] = {}

    def _start(self) -> subprocess.Popen[bytes]:
        if self._proc is None:
            self._proc = self._git.start(["cat-file", "--batch"])
        return self._proc

    def read(self, name: str) -> tuple[str, str, bytes] | None:
        """Return (oid, type, data) for an object name, or None when it does not exist."""
        if "\n" in name or "\0" in name:
            return None  # no object is named so (and a newline would end the request)
        proc = self._start()
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(name.encode("utf-8", "surrogateescape") + b"\n")
        proc.stdin.flush()
        return self._answer(proc)

    def _answer(self, proc: subprocess.Popen[bytes]) -> tuple[str, str, bytes] | None:
        assert proc.stdout is not None
        header = proc.stdout.readline()
        if not header:
            raise GitError(["cat-file", "--batch"], proc.poll() or -1, b"cat-file exited early")
        parts = header.split()
        # "<name> missing" or "<name> ambiguous" (a name may itself contain spaces)
        if len(parts) != 3 or not parts[2].isdigit() or header.endswith(b" missing\n"):
            return None
        oid, kind, size = parts[0].decode(), parts[1].decode(), int(parts[2])
        data = proc.stdout.read(size)
        proc.stdout.read(1)  # the newline after the contents
        return oid, kind, data

    def read_many(self, names: Sequence[str]) -> list[tuple[str, str, bytes] | None]:
        """`read` of each name, pipelined: a batch of requests is written at once and
        the answers read in order, one exchange with cat-file instead of one per object
        (a state at 200 sessions spans ~300 trees: an exchange each, and under load each
        waits for cat-file to be scheduled, then for this process)."""
        found: dict[int, tuple[str, str, bytes] | None] = {}
        # (a path read from a tree may hold any bytes but these two: decoded with
        # surrogateescape, it is encoded back so)
        asked = [
            (i, n.encode("utf-8", "surrogateescape"))
            for i, n in enumerate(names)
            if "\n" not in n and "\0" not in n
        ]
        while asked:
            # A batch's requests fit in any pipe's buffer (macOS starts at 16 KB): all
            # written before an answer is read, and cat-file, which may block on its
            # own full output pipe meanwhile, never leaves this write blocked too.
            size, cut = 0, 0
            while cut < len(asked) and (cut == 0 or size + len(asked[cut][1]) < self.PIPELINED):
                size += len(asked[cut][1]) + 1
                cut += 1
            batch, asked = asked[:cut], asked[cut:]
            proc = self._start()
            assert proc.stdin is not None
            proc.stdin.write(b"".join(name + b"\n" for _, name in batch))
            proc.stdin.flush()
            for i, _ in batch:
                found[i] = self._answer(proc)
        return [found.get(i) for i in range(len(names))]

    def trees(self, names: Sequence[str]) -> None:
        """Read the trees `names` name (ids, or `<commit>:<path>`) in one exchange into
        the cache, by id, where `tree` finds them; what is no tree is left out."""
        for got in self.read_many([n for n in names if n not in self._trees]):
            if got is not None and got[1] == "tree":
                self._keep(got[0], parse_tree(got[2], len(got[0])))

    def _keep(self, oid: str, entries: list[TreeEntry]) -> None:
        if len(self._trees) >= self.MAX_TREES:
            self._trees.clear()
        self._trees[oid] = entries

    def has_tree(self, oid: str) -> bool:
        return oid in self._trees

    def tree(self, oid: str) -> list[TreeEntry]:
        """The entries of the tree `oid` (callers must not change the list)."""
        if (hit := self._trees.get(oid)) is not None:
            return hit
        got = self.read(oid)
        if got is None or got[1] != "tree":
            raise GitError(["cat-file", oid], -1, b"not a tree")
        entries = parse_tree(got[2], len(got[0]))
        if got[0] == oid:  # named by its id, not by a ref or a `<rev>:<path>` that moves
            self._keep(oid, entries)
        return entries

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            assert proc.stdin is not None
            with contextlib.suppress(BrokenPipeError):  # cat-file already gone
                proc.stdin.close()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:  # pragma: no cover
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()

    def __enter__(self) -> ObjectReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ObjectWriter:
    """Writes loose objects the way git does: temp file in the fan-out dir, then link."""

    def __init__(self, info: RepoInfo) -> None:
        self._dir = info.objects_dir
        self._algo = info.object_format

    @property
    def object_format(self) -> str:
        return self._algo

    def write(self, kind: str, data: bytes) -> str:
        raw = b"%s %d\0" % (kind.encode(), len(data)) + data
        oid = hashlib.new(self._algo, raw).hexdigest()
        fan = os.path.join(self._dir, oid[:2])
        path = os.path.join(fan, oid[2:])
        if os.path.exists(path):
            return oid
        os.makedirs(fan, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix="tmp_obj_", dir=fan)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(zlib.compress(raw, 1))
            os.chmod(tmp, 0o444)
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass  # another process wrote the same object: same bytes
            except OSError:
                os.replace(tmp, path)  # filesystems without hard links
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return oid


def commit_parents(commit: bytes) -> list[str]:
    """Every parent named in a commit object's header, in order."""
    found = []
    for line in commit.split(b"\n"):
        if not line:
            break
        if line.startswith(b"parent "):
            found.append(line[7:].decode())
    return found


def first_parent(commit: bytes) -> str | None:
    """The first parent named in a commit object's header (None: a root commit)."""
    return next(iter(commit_parents(commit)), None)


def format_commit(
    tree: str,
    parents: Sequence[str],
    author: str,
    committer: str,
    timestamp: int,
    message: str,
) -> bytes:
    lines = [f"tree {tree}"]
    lines += [f"parent {p}" for p in parents]
    lines.append(f"author {author} {timestamp} +0000")
    lines.append(f"committer {committer} {timestamp} +0000")
    body = "\n".join(lines) + "\n\n" + message
    if not body.endswith("\n"):
        body += "\n"
    return body.encode("utf-8")
