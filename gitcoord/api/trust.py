"""Clients verify what they build on: each tip this clone has not verified before.

On a forge that runs no hooks (GitHub), nothing stops a pusher from writing a commit
that no server hook would have let in: a forged claim, release or approval. So, when
the branch requires signatures, every client verifies a new tip before it acts on it
or shows it — the same verifier the server hook runs (`audit.verify`, signatures
included) — and refuses a tip it cannot verify, saying which commit and how to repair
it (`gitcoord doctor`). Verification is incremental: the last tip verified is kept
per clone and branch, and only the commits after it are judged, once. A commit this
clone wrote itself on a verified tip (signed by its key, judged by the same rules
before it was pushed) counts as verified.

Cheap when signatures are not required: one small file read per command; the history
is searched (one git process) only the first time a clone sees the branch, for a
past requirement that a forged commit might have turned off.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from ..audit import signatures
from ..domain import names
from ..domain.branch import Store
from ..domain.state import Problem, State
from ..errors import UnverifiedError

CONFIG_PATH = f"{names.ROOT}/config.yaml"


@dataclass(frozen=True)
class Verified:
    tip: str
    required: bool  # whether that tip's config requires signatures
    config: str  # the blob id of its config.yaml ("" when none)


def _path(store: Store) -> str:
    safe = store.mirror.replace("/", "%")
    return os.path.join(store.info.common_dir, "gitcoord", "verified", safe)


def read(store: Store) -> Verified | None:
    try:
        with open(_path(store), encoding="ascii") as fh:
            tip, required, config = [*fh.read().split(), "", "", ""][:3]
    except (OSError, UnicodeDecodeError):
        return None
    if not tip:
        return None
    return Verified(tip, required == "1", config if config != "-" else "")


def _write(store: Store, done: Verified) -> None:
    path = _path(store)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="ascii") as fh:
        fh.write(f"{done.tip} {int(done.required)} {done.config or '-'}\n")
    os.replace(tmp, path)


def _config_blob(store: Store, tip: str) -> str:
    return store.view(tip).oid(CONFIG_PATH) or ""


def _ever_required(store: Store, tip: str, since: str | None) -> bool:
    """Whether any commit up to `tip` (after `since`) wrote or removed a config.yaml
    requiring signatures."""
    revs = [tip] if since is None else [tip, f"^{since}"]
    proc = store.git.run(
        ["log", "-1", "--format=%H", "-S", "require_signatures: true", *revs, "--", CONFIG_PATH],
        check=False,
    )
    return bool(proc.stdout.strip())


def problems_since(store: Store, old: str | None, tip: str) -> list[Problem]:
    from ..audit.verify import verify_update

    return verify_update(store, old, tip)


def check_tip(store: Store, tip: str | None, state: Callable[[], State]) -> None:
    """Verify `tip` (whose state `state()` gives) unless this clone verified it before;
    raise UnverifiedError naming the first refused commit."""
    if tip is None:
        return
    last = read(store)
    if last is not None and last.tip == tip:
        return
    required = signatures.required(state().config)
    config = _config_blob(store, tip)
    if required or (last is not None and last.required):
        need = True
    elif last is None or last.config != config:
        # A requirement switched on and off again since: judge what came in between.
        need = _ever_required(store, tip, last.tip if last is not None else None)
    else:
        need = False
    if need:
        found = problems_since(store, last.tip if last is not None else None, tip)
        if (
            found
            and last is not None
            and found[0].rule == "history"
            and _ancestor(store, tip, last.tip)
        ):
            return  # an older tip than one verified here (a stale read): verified with it
        if found:
            raise UnverifiedError(
                f"the coordination branch's tip {tip[:10]} cannot be verified: {found[0]}"
                + (f" (and {len(found) - 1} more)" if len(found) > 1 else "")
                + "; nothing was done. `gitcoord doctor` names the commit and the repair "
                "(`gitcoord doctor --fix` restores the last verified state in a new signed "
                "commit; history is never rewritten)",
                tip=tip,
                verified=last.tip if last is not None else None,
                problems=[p.to_json() for p in found],
            )
    _write(store, Verified(tip, required, config))


def mark_verified(store: Store, tip: str | None, commit: str) -> None:
    """`commit`, which this clone wrote on `tip` after verifying it, counts as verified
    (only worth recording where signatures are required: elsewhere nothing is judged).
    So does a chain of commits this clone's sessions wrote on `tip` and pushed in one
    push (group commit, riders): `commit` is then the chain's last. Each was judged by
    its writer's gate as it was written, and signed by this machine's key: the boundary
    the key already draws (sessions of one user on one machine can read its file)."""
    last = read(store)
    if last is None or last.tip != tip or not last.required:
        return
    config = _config_blob(store, commit)
    # The same config.yaml as the verified tip's requires what it required: no state to
    # load for it (a whole state, in every process of a group, for one field).
    required = True if config == last.config else signatures.required(store.load(commit).config)
    _write(store, Verified(commit, required, config))


@dataclass(frozen=True)
class Forgery:
    """The first commit after the last verified one that the verifier refuses."""

    good: str | None  # the last commit before it that verifies: what a restore goes back to
    commit: str
    session: str | None
    op: str | None
    problems: list[Problem]


def first_refused(store: Store, tip: str) -> Forgery | None:
    """Walk from the last tip verified here (or the branch's start) to `tip`, commit by
    commit, and stop at the first one refused."""
    from .. import clock
    from ..audit.history import read_commits
    from ..audit.verify import judged

    last = read(store)
    old = last.tip if last is not None else None
    if old is not None and not _ancestor(store, old, tip):
        old = None  # history rewritten since: judge it all
    revs = [tip] if old is None else [tip, f"^{old}"]
    entries = list(read_commits(store.git, revs, reverse=True))
    good = old
    for entry, found in judged(store, old, entries, clock.now()):
        if found:
            return Forgery(good, entry.commit, entry.session, entry.op, found)
        good = entry.commit
    return None


def _ancestor(store: Store, old: str, new: str) -> bool:
    return store.git.run(["merge-base", "--is-ancestor", old, new], check=False).returncode == 0
