"""Tombstones: a claim file that `doctor --fix` sets aside keeps its fencing token.

Where a claim file is quarantined, the same commit leaves a released tombstone of
that claim whose generation is the highest the file's history holds, so the next
grant continues from there instead of starting again at 1. Only the history can
tell that generation, so this reads the store (`claim_versions`); which files are
set aside is the pure plan of `gitcoord.domain.quarantine`. The verifier
(`gitcoord.audit.verify`) recomputes the same generation.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import ValidationError

from ..domain import kinds
from ..domain.branch import Store
from ..domain.models import Claim
from ..domain.quarantine import Hiding, Plan, Tombstones, is_claim_file
from ..domain.state import Source, load_state


def claim_versions(store: Store, tip: str, path: str) -> list[Claim]:
    """The valid claims the file at `path` held in the first-parent history of `tip`,
    newest first: the file as it is at `tip` if it is one, and for each stretch of
    history in which the file existed, its newest version that is one.

    Within a stretch the transition rules let a claim's generation only stay or grow,
    so that version holds the stretch's highest; a stretch ends where the file was
    deleted (a quarantine from before tombstones) or was no regular file. The file as
    it is now — the one being set aside, perhaps for breaking those rules — counts
    if it is a valid claim, but does not stand for the versions before it. So the
    history is read once (`git log --raw`, blob ids included) and only a few versions
    are parsed, however often the claim was renewed.
    """
    from ..domain.transition import parse_doc

    if not is_claim_file(path):
        return []
    argv = ["log", "-m", "--first-parent", "--no-renames", "--raw", "--no-abbrev"]
    argv += ["--format=%H", tip, "--", f":(literal){path}"]
    out = store.git.run(argv).stdout.decode("utf-8", "surrogateescape")
    found: list[Claim] = []
    current = True  # the newest entry: the file as it is at `tip`
    settled = False  # this stretch's newest valid version (before `tip`'s) is found
    for line in out.splitlines():
        head, tab, where = line.partition("\t")
        if not head.startswith(":") or not tab or where != path:
            continue  # a commit id, or a file below a folder of that name
        _, new_mode, _, new_oid, _ = head[1:].split(" ", 4)
        if new_mode not in ("100644", "100755"):
            current = settled = False  # deleted (or no file) here: an older stretch follows
            continue
        if settled:
            continue
        got = store.reader.read(new_oid)
        doc = parse_doc(path, got[2]) if got is not None and got[1] == "blob" else None
        if isinstance(doc, Claim) and path in kinds.claim_paths(doc.type, doc.name):
            found.append(doc)
            settled = not current
        current = False
    return found


def tombstones(
    store: Store, tip: str, src: Source, todo: Plan, now: datetime, session: str | None = None
) -> Tombstones:
    """The released claim to leave at each claim file that `todo` (the plan for `src`, the
    tree of commit `tip`) moves: the newest valid version of the file, carrying the
    highest generation of its history (`claim_versions`), so that the next grant of the
    resource continues the fencing token instead of starting again at 1.

    A tombstone must pass `check_state` in the tree after the quarantine, so its holder
    must be a registered session there. Least surprising first: the most recent holder
    of those claims who is still registered — normally the last one, as for any
    released claim — and the tombstone is that holder's claim, released; else the
    session running doctor, whose commit this is. A session that neither held the
    resource nor asked is never named. Without either, or when a tombstone would not
    validate (say, its approval was quarantined too), the file is only moved and
    `not_carried` says why. The note says what happened, and who held it last if
    that is not the holder named.
    """
    from ..domain.validate import check_state

    found = Tombstones()
    paths = [p for p in todo.moves if is_claim_file(p)]
    if not paths:
        return found
    after = load_state(Hiding(src, set(todo.condemned)))
    for path in paths:
        versions = claim_versions(store, tip, path)
        if not versions:
            found.not_carried[path] = "no version in its history is a valid claim of this file"
            continue
        last, top = versions[0], max(v.generation for v in versions)
        base = next((v for v in versions if v.holder in after.sessions), None)
        if base is None and session is not None and session in after.sessions:
            base = last.model_copy(update={"holder": session})
        if base is None:
            found.not_carried[path] = (
                f"last holder {last.holder} is not registered (`doctor --fix --session ID` "
                f"leaves ID a tombstone of generation {top})"
            )
            continue
        note = f"tombstone: doctor --fix moved this claim to {todo.moves[path]}"
        if base.holder != last.holder:
            note += f"; last held by {last.holder}"
        released = base.released_at if base.released_at is not None else now
        fields: dict[str, Any] = {"generation": top, "note": note}
        fields["released_at"] = max(released, base.acquired_at)
        try:
            found.made[path] = Claim.model_validate({**base.model_dump(), **fields})
        except ValidationError as exc:
            found.not_carried[path] = f"a tombstone would not validate: {exc.errors()[0]['msg']}"
    if found.made:
        for problem in check_state(after.apply(found.made), now):
            if found.made.pop(problem.path, None) is not None:
                found.not_carried[problem.path] = (
                    f"a tombstone would not validate: {problem.message}"
                )
    return found
