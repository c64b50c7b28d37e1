"""Carrying another clone's request on this clone's chain (`store.requests`).

A request is carried as it was decided or not at all, and only where carrying it is as
good as its session deciding it again: what changed on the branch since the tip it was
decided on (this clone's own chain included) must touch none of its files, and only
files whose kinds no operation reads to decide another's (claims, heartbeats, messages,
read marks: each operation's own files, and claims that the state's rules compare). A
change to sessions, tasks, approvals or the config meanwhile leaves the request to its
clone, which decides it again on the new tip. Then the carried commit is judged as the
server will judge it (`audit.verify.verify_carried`) before it goes in a push.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from .. import clock
from ..domain import kinds
from ..domain.branch import Store
from ..store.requests import Request, message_of
from ..store.trees import build_tree, diff_trees

# Kinds whose files an operation writes for itself and no other operation reads to decide
# (a claim's neighbours are compared by the state's rules, judged on the carried state).
INDEPENDENT = {kinds.CLAIM.name, kinds.HEARTBEAT.name, kinds.MESSAGE.name, kinds.READ.name}


def _independent(path: str) -> bool:
    kind = kinds.kind_at(path)
    return kind is not None and kind.name in INDEPENDENT


def carrier(store: Store) -> Callable[[str | None, Request], str | None]:
    """The store's `carrier`: `request` carried on `chain` as a commit (its id), or None."""

    def carry(chain: str | None, request: Request) -> str | None:
        from ..audit.verify import verify_carried
        from ..sshsig import split_commit

        if chain is None:
            return None
        reader = store.reader
        base_tree, asked_tree = store.tree_of(request.base), store.tree_of(request.commit)
        chain_tree = store.tree_of(chain)
        if base_tree is None or asked_tree is None or chain_tree is None:
            return None
        asked = diff_trees(reader, base_tree, asked_tree)
        if not asked or not all(_independent(path) for path, _, _ in asked):
            return None
        theirs = {path for path, _, _ in asked}
        since = diff_trees(reader, base_tree, chain_tree)
        if any(path in theirs or not _independent(path) for path, _, _ in since):
            return None  # what it decided on moved: its clone decides it again
        got = reader.read(request.commit)
        if got is None or got[1] != "commit":
            return None
        payload, _ = split_commit(got[2], store.info.object_format)
        head = payload.split(b"\n\n", 1)[0].split(b"\n")
        author = next((line for line in head if line.startswith(b"author ")), None)
        writer = store.trees.writer
        tree = build_tree(reader, writer, chain_tree, "", {p: new for p, _, new in asked})
        if author is None or tree is None:
            return None
        committer = f"committer {store.identity.signature()} {int(time.time())} +0000"
        data = b"\n".join(
            [
                f"tree {tree}".encode(),
                f"parent {chain}".encode(),
                f"parent {request.commit}".encode(),
                author,
                committer.encode(),
            ]
        )
        commit = writer.write("commit", data + b"\n\n" + message_of(payload))
        if verify_carried(store, chain, commit, request.commit, asked, clock.now()):
            return None
        return commit

    return carry
