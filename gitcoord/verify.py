"""Validating commits that someone else made: pushes (pre-receive), staged trees, CI ranges.

For a ref update `old -> new` of the coordination branch:
- the branch may not be deleted and its history may not be rewritten (`old`
  must be an ancestor of `new`);
- every commit on the first-parent line from `old` to `new` must leave a valid
  state (only problems it introduces are reported) and be entitled to its
  changes (`transition.check_transition`), judged at that commit's own time.
A merge of an approval branch is judged as one change by the merge's author.
"""

from __future__ import annotations

from datetime import datetime, timezone

from . import names
from .gitio import parse_commit
from .state import Problem, State, load_state
from .store import Store
from .transition import Changed, CommitMeta, check_transition, parse_doc
from .validate import check_messages_at, check_state


def commit_meta(store: Store, commit: str) -> tuple[CommitMeta, list[str]]:
    got = store.reader.read(commit)
    if got is None or got[1] != "commit":
        raise ValueError(f"{commit} is not a commit")
    headers, message = parse_commit(got[2])
    author = headers.get("author", [""])[0]
    email = author[author.find("<") + 1 : author.find(">")] if "<" in author else ""
    committer = headers.get("committer", [""])[0].split()
    when = (
        datetime.fromtimestamp(int(committer[-2]), timezone.utc)
        if len(committer) >= 2
        else (datetime.now(timezone.utc))
    )
    trailers = _trailers(message)
    meta = CommitMeta(
        commit=commit,
        author_email=email,
        session=trailers.get("Gitcoord-Session"),
        op=trailers.get("Gitcoord-Op"),
        time=when,
    )
    return meta, headers.get("parent", [])


def _trailers(message: str) -> dict[str, str]:
    paragraphs = [p for p in message.strip().split("\n\n") if p.strip()]
    if len(paragraphs) < 2:
        return {}
    found = {}
    for line in paragraphs[-1].splitlines():
        key, sep, value = line.partition(": ")
        if sep and key.replace("-", "").isalnum():
            found[key] = value.strip()
    return found


def changed_files(
    store: Store, parent: str | None, commit: str
) -> list[tuple[str, str | None, str | None]]:
    """(path, old blob, new blob) of every file that differs (diff-tree -r -z)."""
    argv = ["diff-tree", "-r", "-z", "--no-renames", "--no-commit-id"]
    argv += [parent, commit] if parent else ["--root", commit]
    out = store.git.run(argv).stdout.split(b"\0")
    zero = store.info.zero_oid
    found = []
    i = 0
    while i + 1 < len(out):
        header = out[i].decode()
        path = out[i + 1].decode("utf-8", "surrogateescape")
        i += 2
        if not header.startswith(":"):
            continue
        _, _, old, new, _ = header[1:].split(" ", 4)
        found.append((path, None if old == zero else old, None if new == zero else new))
    return found


def verify_commit(store: Store, parent: str | None, commit: str) -> list[Problem]:
    meta, _ = commit_meta(store, commit)
    old_state = store.load(parent) if parent else State()
    new_view = store.view(commit)
    new_state = load_state(new_view)
    before = {(p.path, p.rule, p.message) for p in check_state(old_state, meta.time)}
    problems = [
        p for p in check_state(new_state, meta.time) if (p.path, p.rule, p.message) not in before
    ]
    changes = []
    message_paths = []
    for path, old_oid, new_oid in changed_files(store, parent, commit):
        old_doc = parse_doc(path, store.view(None).blob(old_oid) if old_oid else None)
        new_doc = parse_doc(path, store.view(None).blob(new_oid) if new_oid else None)
        changes.append(Changed(path, old_doc, new_doc))
        if path.startswith(f"{names.ROOT}/messages/") and new_oid:
            message_paths.append(path)
    problems += check_messages_at(new_view, new_state, message_paths)
    problems += check_transition(old_state, new_state, changes, meta)
    short = commit[:10]
    return [
        p
        if p.message.startswith("commit ")
        else Problem(p.path, p.rule, f"commit {short}: {p.message}")
        for p in problems
    ]


def verify_update(store: Store, old: str | None, new: str | None) -> list[Problem]:
    """Every problem with moving the coordination branch from `old` to `new`."""
    ref = store.ref
    if new is None:
        return [Problem(ref, "no-delete", "the coordination branch cannot be deleted")]
    if old is not None:
        proc = store.git.run(["merge-base", "--is-ancestor", old, new], check=False)
        if proc.returncode != 0:
            return [
                Problem(
                    ref,
                    "history",
                    f"{new[:10]} does not descend from {old[:10]}: the coordination branch's "
                    "history is never rewritten (no force-push, no rebase)",
                )
            ]
    argv = ["rev-list", "--first-parent", "--reverse", new]
    if old is not None:
        argv.append(f"^{old}")
    commits = store.git.run(argv).stdout.decode().split()
    problems: list[Problem] = []
    for commit in commits:
        _, parents = commit_meta(store, commit)
        problems += verify_commit(store, parents[0] if parents else None, commit)
    return problems
