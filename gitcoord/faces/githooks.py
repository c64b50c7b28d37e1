"""Hooks on both sides of a push: installing them, and what they run.

The scripts are thin shims in `gitcoord/hookscripts/` (linked from the repo's
top-level `hooks/`), installed with this interpreter's path filled in. An
existing hook is never overwritten: it is moved aside to
`<name>.gitcoord-chained`, the shim runs it first, and `hooks uninstall` puts
it back.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import sys
import time
from importlib import resources
from typing import TYPE_CHECKING, Any

from ..errors import GitcoordError, InvalidError, UsageError
from ..gitio import Git

if TYPE_CHECKING:
    from ..api.coordinator import Coordinator
    from ..domain.branch import Outcome, Store
    from ..domain.change import Change
    from ..domain.state import State

MARK = "gitcoord pre-"  # every shim says so in its header comment
CHAINED = ".gitcoord-chained"


def _script(name: str) -> str:
    """The shim, with this interpreter recorded as the first one it tries (the shims
    fall back to `gitcoord` on PATH: see gitcoord/hookscripts/)."""
    text = resources.files("gitcoord").joinpath("hookscripts").joinpath(name).read_text()
    return text.replace("@PYTHON@", shlex.quote(sys.executable))


def _hooks_dir(repo: str) -> str:
    proc = Git.at(repo).run(["rev-parse", "--git-path", "hooks"], check=False)
    if proc.returncode != 0:
        raise UsageError(f"not a git repository: {repo}")
    path = proc.stdout.decode("utf-8", "surrogateescape").strip()
    return os.path.abspath(path if os.path.isabs(path) else os.path.join(repo, path))


def _is_ours(path: str) -> bool:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return MARK in fh.read(400)
    except FileNotFoundError:
        return False


def install(repo: str, hook: str) -> dict[str, Any]:
    """Install the `hook` shim in `repo`, chaining to an existing hook. The client's
    pre-commit also records that the repository uses path claims
    (`gitcoord.pathClaims`, unless set already), so the guard fails closed when it
    has no state to judge by."""
    folder = _hooks_dir(repo)
    os.makedirs(folder, exist_ok=True)
    target = os.path.join(folder, hook)
    chained = target + CHAINED
    moved = False
    if os.path.lexists(target) and not _is_ours(target):
        if os.path.lexists(chained):
            raise GitcoordError(f"both {target} and {chained} exist; resolve by hand")
        os.rename(target, chained)
        moved = True
    tmp = target + ".gitcoord-tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(_script(hook))
    os.chmod(tmp, 0o755)
    os.replace(tmp, target)
    data: dict[str, Any] = {
        "hook": target,
        "chained": chained if os.path.lexists(chained) else None,
        "moved": moved,
    }
    if hook == "pre-commit":
        data["path_claims"] = record_path_claims(repo)
    return data


def record_path_claims(repo: str) -> bool:
    """Set `gitcoord.pathClaims true` in `repo` unless it says already; its value."""
    git = Git.at(repo)
    got = git.run(["config", "--type=bool", "--get", "gitcoord.pathClaims"], check=False)
    if got.returncode == 0:
        return got.stdout.strip() == b"true"
    git.run(["config", "gitcoord.pathClaims", "true"])
    return True


def uninstall(repo: str, hook: str) -> dict[str, Any]:
    folder = _hooks_dir(repo)
    target = os.path.join(folder, hook)
    chained = target + CHAINED
    if not _is_ours(target):
        return {"hook": target, "removed": False, "restored": None}
    os.unlink(target)
    restored = None
    if os.path.lexists(chained):
        os.rename(chained, target)
        restored = target
    return {"hook": target, "removed": True, "restored": restored}


def workflow(branch: str, requirement: str) -> bytes:
    text = resources.files("gitcoord").joinpath("hookscripts").joinpath("gitcoord.yml").read_text()
    text = text.replace("@BRANCH@", branch).replace("@REQUIREMENT@", requirement)
    return text.encode("utf-8")


_COMMIT = re.compile(r"@[0-9a-f]{40}$")


def pinned(spec: str) -> str:
    """`spec` if it names one exact gitcoord (==version, a commit, or a hashed archive)."""
    spec = spec.strip()
    exact = "==" in spec or _COMMIT.search(spec) or "#sha256=" in spec
    if not spec or not exact or any(c in spec for c in "\n\"'`$"):
        raise UsageError(
            f"--install {spec!r} is not pinned: give gitcoord==VERSION, "
            "gitcoord @ git+URL@<40-hex commit>, or gitcoord @ URL#sha256=<hash>"
        )
    return spec


def installed_requirement(direct_url: str | None, version: str) -> str:
    """What the workflow installs to run the gitcoord installed here (PEP 610's
    direct_url.json says where it came from): the same source, pinned; or, installed
    from an index (no direct_url.json), the same version from it."""
    if direct_url is None:
        return f"gitcoord=={version}"
    try:
        info = json.loads(direct_url)
        url = info["url"]
    except (ValueError, KeyError, TypeError):
        raise UsageError(
            "cannot read where this gitcoord was installed from (direct_url.json); "
            "pass --install SPEC"
        ) from None
    vcs = info.get("vcs_info") or {}
    if vcs.get("vcs") == "git" and vcs.get("commit_id"):
        return pinned(f"gitcoord @ git+{url}@{vcs['commit_id']}")
    archive = info.get("archive_info") or {}
    hashes = archive.get("hashes") or {}
    digest = hashes.get("sha256") or (archive.get("hash", "").removeprefix("sha256=") or None)
    if archive and digest:
        return pinned(f"gitcoord @ {url}#sha256={digest}")
    raise UsageError(
        f"this gitcoord was installed from {url}, which GitHub's runners cannot install from: "
        "pass --install SPEC (e.g. 'gitcoord @ git+https://github.com/OWNER/gitcoord@<commit>')"
    )


def _this_installation() -> str | None:
    """PEP 610's direct_url.json of this gitcoord, or None when it came from an index.
    Run from a source tree (an `.egg-info` beside it, no record of an index), it is a
    local directory, which `installed_requirement` refuses."""
    from importlib import metadata

    found = [d.read_text("direct_url.json") for d in metadata.distributions(name="gitcoord")]
    recorded = next((text for text in found if text), None)
    if recorded is not None:
        return recorded
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if os.path.basename(os.path.dirname(here)) not in ("site-packages", "dist-packages"):
        return json.dumps({"url": f"file://{os.path.dirname(here)}", "dir_info": {}})
    return None


def install_workflow(coord: Coordinator, install: str | None = None) -> Outcome:
    """Commit the workflow to the coordination branch (GitHub reads a push's workflows
    from the pushed commit), installing `install` or else this gitcoord's own source."""
    from ..ops import pages
    from ..version import __version__

    requirement = (
        pinned(install) if install else installed_requirement(_this_installation(), __version__)
    )
    data = workflow(coord.store.branch, requirement)

    def plan(state: State) -> Change:
        try:
            current: bytes | None = coord.store.view_of(state).read(pages.WORKFLOW_PATH)
        except FileNotFoundError:
            current = None
        return pages.workflow(state, session=coord.session, data=data, current=current)

    return coord.transact(plan)


# --- what the hooks run ------------------------------------------------------------------


# Who pushed, as the server tells its hooks: gitolite, Gitea/Forgejo, GitLab, and a web
# server's authentication in front of smart HTTP (git http-backend passes REMOTE_USER on).
PUSHER_VARIABLES = ("GL_USER", "GITEA_PUSHER_NAME", "GL_USERNAME", "REMOTE_USER")


def pusher() -> str | None:
    return next((os.environ[v] for v in PUSHER_VARIABLES if os.environ.get(v)), None)


def run_pre_receive(repo: str, lines: list[str]) -> list[str]:
    """Validate ref updates read from pre-receive's stdin; the rejection lines (if any).

    Pushes to the coordination branch are judged one at a time (`turns.judging`), and
    each first looks whether the branch is still at the tip it expected: if not, git
    would refuse the update anyway, under the ref's lock, but only after this hook;
    under contention the server then judged every commit of pushes that were lost
    before they arrived (measured at 200 sessions on 10 machines: most of its time). So
    such a push is refused at once, in one line the pusher knows as a lost race
    (`STALE_PUSH`), nothing judged — as is one whose tip the push judged just before
    it, and accepted, is about to move."""
    from ..api.coordinator import Coordinator
    from ..audit import tickets
    from ..store.turns import judging

    with Coordinator(repo, remote=None, objects_from_env=True) as coord:
        store = coord.store
        zero = store.info.zero_oid
        from ..audit.verify import verify_update

        updates = [(p[0], p[1], p[2]) for p in (line.split() for line in lines) if len(p) == 3]
        ours = [p for p in updates if p[2] == store.ref]
        queue = [p for p in updates if p[2].startswith(tickets.prefix(store.ref))]
        if not ours:
            # Other refs, approval proposals included, pass untouched; tickets are
            # judged against the branch as it is.
            now = store.reader.read(store.ref) if queue else None
            return tickets.judge(store, queue, now[0] if now else None) if queue else []
        with judging(store.info.common_dir, store.ref) as turn:
            for old, new, ref in ours:
                if (stale := _stale(store, old, new, ref, turn.accepted)) is not None:
                    return [stale]
            rejected: list[str] = []
            for old, new, ref in ours:
                problems = verify_update(
                    store,
                    None if old == zero else old,
                    None if new == zero else new,
                    pusher=pusher(),
                    server=True,
                )
                rejected += [f"{ref}: {p}" for p in problems]
            if not rejected and queue:
                tip = ours[-1][1]
                rejected += tickets.judge(store, queue, None if tip == zero else tip)
            if not rejected:
                turn.accept(ours[-1][0], ours[-1][1])
            # What the states judged parse to, for the next push's judge (in the turn:
            # it reads them next). Without it each push parsed every file of the branch.
            store.parsed.save()
            return rejected


def _stale(
    store: Store, old: str, new: str, ref: str, accepted: tuple[str, str] | None
) -> str | None:
    """Why this push can no longer land (`STALE_PUSH`), or None: the ref is not at
    `old`, or a push from `old` accepted just before this one is landing (git moves the
    ref a moment after the hook; given LANDING_WAIT to do it, and judged as usual if it
    did not)."""
    from ..store.remote import STALE_PUSH
    from ..store.turns import LANDING_WAIT

    def at() -> str:
        got = store.reader.read(ref)  # (the cat-file the judging reads through anyway)
        return got[0] if got is not None else store.info.zero_oid

    now = at()
    if now == old and accepted is not None and accepted[0] == old and accepted[1] != new:
        until = time.monotonic() + LANDING_WAIT
        while now == old and time.monotonic() < until:
            time.sleep(0.01)
            now = at()
    if now == old:
        return None
    return (
        f"{STALE_PUSH} {ref} is at {now[:10]}, not at {old[:10]} as this push "
        "expected: another push landed first; nothing was judged or written"
    )


def staged_tree(repo: str) -> str:
    """The tree of the index being committed (`git write-tree` on it): GIT_INDEX_FILE's
    temporary index under `commit -a` or `commit <paths>`, else the repository's."""
    staged = Git.at(repo, keep_index=True)
    index = staged.env.get("GIT_INDEX_FILE")
    if index and not os.path.isabs(index):
        staged.env["GIT_INDEX_FILE"] = os.path.abspath(index)
    tree = staged.run(["write-tree"], check=False)
    if tree.returncode != 0:
        err = tree.stderr.decode("utf-8", "replace").strip()
        raise InvalidError(f"cannot read the staged tree: {err}")
    return tree.stdout.decode().strip()


def validate_staged(coord: Coordinator, repo: str) -> str:
    """Refuse (exit 5) a staged coordination state that is invalid: what is staged, not
    the working tree (an untracked or unstaged file is not part of the commit)."""
    problems = coord.validate_tree(staged_tree(repo))
    if problems:
        raise InvalidError(
            "the staged coordination state is invalid:\n" + "\n".join(f"  {p}" for p in problems),
            problems=[p.to_json() for p in problems],
        )
    return "staged coordination state is valid"


def guard_staged(coord: Coordinator) -> str:
    """Refuse (exit 3) a commit that adds, changes, deletes or renames a file inside
    another session's live path claim."""
    data = coord.check_paths(coord.staged_paths())
    if data["violations"]:
        from ..errors import ConflictError

        lines = [
            f"  {v['path']}: claimed by {v['holder']} ('{v['claim']}') until {v['expires_at']}"
            for v in data["violations"]
        ]
        stale = "" if data["fresh"] else " (checked against the last fetched state)"
        raise ConflictError(
            f"commit refused{stale}: files inside other sessions' path claims:\n"
            + "\n".join(lines)
            + "\n  (ask the holder, wait for the claim to expire, or `git commit --no-verify`)",
            violations=data["violations"],
        )
    if data.get("unchecked") and data["checked"]:
        return f"not checked against path claims: {data['unchecked']}"
    return "ok"


def _current_branch(repo: str) -> str:
    return (
        Git.at(repo)
        .run(["symbolic-ref", "-q", "--short", "HEAD"], check=False)
        .stdout.decode("utf-8", "surrogateescape")
        .strip()
    )


def run_pre_commit(repo: str) -> str:
    """Validate a staged coordination tree, or guard the staged paths; raises on refusal."""
    from ..api.coordinator import Coordinator

    with Coordinator(repo) as coord:
        if _current_branch(repo) == coord.store.branch:
            return validate_staged(coord, repo)
        return guard_staged(coord)


def run_validate_index(repo: str) -> str:
    """The pre-commit framework's gitcoord-validate: the staged coordination state, on
    the coordination branch or whenever the commit changes anything under
    `coordination/` (deletions included); otherwise there is nothing to judge."""
    from ..api.coordinator import Coordinator

    with Coordinator(repo) as coord:
        if _current_branch(repo) != coord.store.branch:
            top = coord.toplevel() or repo
            touched = [
                p
                for p in coord.staged_paths()
                if os.path.relpath(p, top).startswith("coordination" + os.sep)
            ]
            if not touched:
                return "nothing staged under coordination/"
        return validate_staged(coord, repo)
