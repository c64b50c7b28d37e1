"""Judging pushed ticket refs (`store.tickets`) on the server, as pre-receive sees them.

Tickets live beside the coordination branch, under `refs/gitcoord/tickets/<key>/`, and
every clone reads them to decide who tries next. Clients pass over tickets that look
fake, but only after waiting for them; a server that knows the rules refuses them
before anyone waits. What an honest client pushes, and nothing else:

- `bell`: never deleted; moved by exactly one new commit of the empty tree whose only
  parent is the bell's old value (a root commit when the bell is new);
- `waiting/<clone>` (`<clone>`: 16 hexadecimal digits): deleted by anyone (the push
  that lands the holder's write, or one that passes it over); created or moved only
  to a commit of the branch's first-parent line within `AGE` commits of its tip after
  this push, at most one per push, and only with the bell rung in the same push (a
  wait others do not hear of is one they cannot make way for);
- at most MAX_WAITING of them at once: a ticket past it is refused with TICKETS_FULL,
  which a client takes as a round lost, not as a server that takes no tickets;
- `requests/<clone>` (`store.requests`): deleted by anyone; created or moved only to a
  commit of one parent that names a request id (`Gitcoord-Request`), one per push, at
  most MAX_WAITING of them. What a carried request may do on the branch is judged where
  it lands (`audit.carried`); here only that the ref holds what carrying reads.

Refs under other keys (another branch's queue) pass untouched, as other refs do.
"""

from __future__ import annotations

import re

from ..domain.branch import Store
from ..gitio import commit_parents, first_parent
from ..store.requests import REQUEST, is_id, message_of, trailers_of
from ..store.tickets import DEPTH, MAX_TICKETS, TICKETS_FULL, key

# Tickets judged along this many commits: more than a client looks through (DEPTH), so
# that a wait that began just before a burst of writes is still taken.
AGE = 4 * DEPTH
MAX_WAITING = 4 * MAX_TICKETS
_CLONE = re.compile(r"[0-9a-f]{16}")


def prefix(branch_ref: str) -> str:
    return f"refs/gitcoord/tickets/{key(branch_ref)}/"


def judge(store: Store, updates: list[tuple[str, str, str]], tip: str | None) -> list[str]:
    """Rejection lines for the updates (old, new, ref) of this branch's ticket refs, the
    branch at `tip` once the push lands (None: no branch)."""
    zero = store.info.zero_oid
    pre = prefix(store.ref)
    waits = [ref for _, new, ref in updates if "/waiting/" in ref and new != zero]
    if len(waits) > 1:  # before any is looked up: each is a walk along the branch
        return [f"{waits[1]}: one ticket per push, and this push has {len(waits)}"]
    asks = [ref for _, new, ref in updates if "/requests/" in ref and new != zero]
    if len(asks) > 1:
        return [f"{asks[1]}: one request per push, and this push has {len(asks)}"]
    problems: list[str] = []
    bell_rung = False
    moved: list[str] = []  # tickets created or moved
    for old, new, ref in updates:
        name = ref[len(pre) :]
        if name == "bell":
            why = _bell(store, old, new, zero)
            bell_rung = why is None
        elif name.startswith("waiting/") and _CLONE.fullmatch(name[len("waiting/") :]):
            if new == zero:
                continue  # served, or passed over: anyone may end a wait
            moved.append(ref)
            why = _ticket(store, new, tip)
        elif name.startswith("requests/") and _CLONE.fullmatch(name[len("requests/") :]):
            if new == zero:
                continue  # carried, or passed over: anyone may end a request
            why = _request(store, new)
            if why is None and _count_after(store, pre, updates, zero, "requests/") > MAX_WAITING:
                why = f"{TICKETS_FULL} ({MAX_WAITING} requests)"
        else:
            why = (
                "not a ticket ref: only bell, waiting/<16 hex digits> and requests/<16 hex "
                "digits> live here"
            )
        if why is not None:
            problems.append(f"{ref}: {why}")
    if moved and not problems:
        if not bell_rung:
            problems.append(f"{moved[0]}: a ticket comes with a ring of {pre}bell in its push")
        elif _count_after(store, pre, updates, zero, "waiting/") > MAX_WAITING:
            problems.append(f"{moved[0]}: {TICKETS_FULL} ({MAX_WAITING} waits)")
    return problems


def _bell(store: Store, old: str, new: str, zero: str) -> str | None:
    if new == zero:
        return "the bell is never deleted"
    got = store.reader.read(new)
    if got is None or got[1] != "commit":
        return "the bell is a commit"
    header = got[2].split(b"\n\n", 1)[0].split(b"\n")
    parents = [line[7:].decode() for line in header if line.startswith(b"parent ")]
    if parents != ([] if old == zero else [old]):
        return "a ring is one commit on the bell's old value"
    tree = next((line[5:].decode() for line in header if line.startswith(b"tree ")), "")
    empty = store.reader.read(tree)
    if empty is None or empty[1] != "tree" or empty[2]:
        return "a ring commits the empty tree"
    return None


def _ticket(store: Store, new: str, tip: str | None) -> str | None:
    at, depth = tip, 0
    while at is not None and depth < AGE:
        if at == new:
            return None
        got = store.reader.read(at)
        if got is None or got[1] != "commit":
            break
        at, depth = first_parent(got[2]), depth + 1
    return f"a ticket names a commit of {store.ref} within {AGE} of its tip"


def _request(store: Store, new: str) -> str | None:
    got = store.reader.read(new)
    if got is None or got[1] != "commit":
        return "a request is a commit"
    if len(commit_parents(got[2])) != 1:
        return "a request is one commit on a tip of the branch"
    if not is_id(trailers_of(message_of(got[2])).get(REQUEST)):
        return f"a request names its id ({REQUEST}: <16 hex digits>)"
    return None


def _count_after(
    store: Store, pre: str, updates: list[tuple[str, str, str]], zero: str, kind: str
) -> int:
    proc = store.git.run(["for-each-ref", "--format=%(refname)", pre + kind], check=False)
    refs = set(proc.stdout.decode("utf-8", "replace").split())
    for _, new, ref in updates:
        if ref.startswith(pre + kind) and new == zero:
            refs.discard(ref)
        elif ref.startswith(pre + kind):
            refs.add(ref)
    return len(refs)
