"""Who signed a pushed commit, and whether that key may speak as the commit does.

On a branch whose config requires signatures (the config of the state a commit
replaces; the branch's first commit, by its own), every commit on the first-parent
line carries an SSH signature (`sshsig`) and:
- a commit that speaks for a session (its `Gitcoord-Session` trailer) is signed by
  the key bound to that session — in the state it replaces, or, when it had none
  there, the one the commit binds (first registration wins, as numbers do);
- any other commit is a person's act (approvals, approval merges, the config, the
  approver list): it is signed by an approver's key (`config.approver_keys`), and it
  counts as that approver's act, whatever author e-mail it claims.
A key that is not the expected one, a signature that does not verify and an unsigned
commit are refused alike: what a commit's author line or trailer says is the pusher's
to write; only the key proves it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..domain.branch import Store
from ..domain.models import Config
from ..domain.state import Problem, State
from ..sshsig import fingerprint, signed_by, split_commit

# The author a commit is judged as when its key is no approver's: never an approver.
NOT_AN_APPROVER = "(not signed by an approver's key)"


@dataclass(frozen=True)
class Verdict:
    problems: list[Problem]
    # The approver whose key signed it (their e-mail), NOT_AN_APPROVER, or None when
    # the branch does not require signatures (the author line is judged as written).
    acting_as: str | None


def required(config: Config | None) -> bool:
    return bool(config is not None and config.require_signatures)


def judge(
    store: Store, commit: str, session: str | None, author: str, old: State, new: State
) -> Verdict:
    """The signature of `commit`, which moves the branch from state `old` to `new`."""
    creating = old.config is None
    config = new.config if creating else old.config
    if not required(config):
        return Verdict([], None)
    assert config is not None
    short = commit[:10]

    def refuse(message: str) -> Verdict:
        return Verdict(
            [Problem(store.ref, "signature", f"commit {short} {message}")], NOT_AN_APPROVER
        )

    got = store.reader.read(commit)
    if got is None:
        return refuse("cannot be read")
    payload, signature = split_commit(got[2], store.info.object_format)
    if signature is None:
        return refuse("is not signed, and this branch requires signatures")
    key = signed_by(payload, signature)
    if key is None:
        return refuse("carries a signature that does not verify")
    if session is not None and not creating:
        before = old.sessions.get(session)
        bound = before.key if before is not None and before.key else None
        if bound is None:
            after = new.sessions.get(session)
            bound = after.key if after is not None else None  # registering binds it
        if bound is None:
            return refuse(
                f"speaks for {session}, which has no key bound: a session binds its key "
                "by registering (again)"
            )
        if key != bound:
            return refuse(
                f"speaks for {session} but is signed by {fingerprint(key)}, not by its key "
                f"{fingerprint(bound)}"
            )
        return Verdict([], NOT_AN_APPROVER)  # a session's key never approves
    owners = [email for email, k in config.approver_keys.items() if k == key]
    if not owners:
        what = "creates the branch" if creating else "speaks for no session"
        return refuse(f"{what} and is signed by {fingerprint(key)}, which is no approver's key")
    return Verdict([], author if author in owners else owners[0])
