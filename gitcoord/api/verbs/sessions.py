"""Sessions: creating the coordination branch and registering a number, a role and a goal."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from ..verb import REQUIRED, Param, Verb, wrote

if TYPE_CHECKING:
    from ..coordinator import Coordinator


def _init(
    c: Coordinator,
    slots: int = 12,
    lease_hours: float = 2.0,
    stale_after_minutes: int = 20,
    clock_skew_seconds: int = 60,
    approvers: list[str] | tuple[str, ...] = (),
    require_approval: list[str] | tuple[str, ...] = (),
    template: str | None = None,
    require_signatures: bool = False,
) -> Any:
    from ... import clock
    from ...domain import templates
    from ...errors import UsageError
    from ...ops import sessions

    me = c.store.identity.email
    key = c.public_key("person")
    if require_signatures and key is None:
        raise UsageError(
            "--require-signatures: the first approver is whoever runs init, by their own SSH "
            "key; set it with: git config user.signingKey ~/.ssh/id_ed25519"
        )
    # The first approver is whoever runs init, by their key (when they have one).
    keys = {me: key} if key is not None and (require_signatures or me in approvers) else {}

    tpl = None
    if template is not None:
        if template.endswith((".yaml", ".yml")) or os.sep in template:
            template = os.path.join(c.path, template)  # like every path: relative to -C
        tpl = templates.load(template, c.toplevel())
    outcome = c.transact(
        lambda s: sessions.init(
            s,
            clock.now(),
            template=tpl,
            session=c.session,
            slots=slots,
            lease_hours=lease_hours,
            stale_after_minutes=stale_after_minutes,
            clock_skew_seconds=clock_skew_seconds,
            approvers=tuple(approvers),
            require_approval=tuple(require_approval),
            approver_keys=keys,
            require_signatures=require_signatures,
        )
    )
    outcome.change.result["where"] = c.store.where  # for the text: "initialised gitcoord on ..."
    return outcome


INIT = Verb(
    "init",
    "Create the coordination branch (idempotent: exit 0 if it exists).",
    _init,
    lambda doc: wrote(
        doc,
        f"initialised {doc['where']} with {doc['config']['slots']} slots",
        f"{doc['where']} is already initialised ({doc['config']['slots']} slots"
        + (f", template {doc['template']}" if doc.get("template") else "")
        + ")"
        + ("; --template was NOT applied (see the warning)" if doc.get("warnings") else ""),
    ),
    (
        Param("slots", int, "How many session numbers.", 12, low=1, high=1000, show_default=True),
        Param(
            "lease_hours",
            float,
            "Default claim lease.",
            2.0,
            low=0,
            low_open=True,
            high=720,
            show_default=True,
        ),
        Param(
            "stale_after_minutes",
            int,
            "Heartbeat age that marks a session stale.",
            20,
            flag="--stale-after",
            metavar="MINUTES",
            low=1,
            high=10080,
            show_default=True,
        ),
        Param(
            "clock_skew_seconds",
            int,
            "Grace after expiry before a claim may be taken over.",
            60,
            flag="--clock-skew",
            metavar="SECONDS",
            low=0,
            high=3600,
            show_default=True,
        ),
        Param(
            "approvers",
            list,
            "A human who approves requests (git author email); repeatable.",
            (),
            flag="--approver",
            metavar="EMAIL",
        ),
        Param(
            "require_approval",
            list,
            "A claim type that starts pending until approved (e.g. deploy); repeatable.",
            (),
            metavar="TYPE",
        ),
        Param(
            "template",
            str,
            "Start from a roster (marketing-12, dev-12, yours): slots, roles, goals, tasks.",
            metavar="NAME|PATH",
        ),
        Param(
            "require_signatures",
            bool,
            "Require every commit to be signed (sessions by their machine key, approvers by "
            "their own); you become the first approver, by your user.signingKey.",
            False,
        ),
    ),
    details="With --approver EMAIL for your own git e-mail, or with --require-signatures, "
    "your SSH key (git's user.signingKey) is recorded as that approver's key: the commit "
    "is signed with it, and from then on only that key approves as you.",
    idempotent=True,
    session=False,
    human=True,
)


def _register(
    c: Coordinator, role: str | None = None, goal: str | None = None, number: int | None = None
) -> Any:
    from ... import clock
    from ...ops import sessions

    session = c.need_session()
    key = c.public_key("session")
    return c.transact(
        lambda s: sessions.register(
            s, clock.now(), session=session, role=role, goal=goal, number=number, key=key
        )
    )


def _register_text(doc: dict[str, Any]) -> str:
    text = wrote(
        doc,
        f"registered {doc['session']['id']} as #{doc['session']['number']}: "
        f"{doc['session']['role']}",
        f"{doc['session']['id']} is registered as #{doc['session']['number']} (unchanged)",
    )
    if doc.get("reclaimed"):
        text += f"\n(number {doc['session']['number']} was reclaimed from {doc['reclaimed']}, "
        text += "not seen for reclaim_after_hours)"
    if doc.get("was_reclaimed_by"):
        text += (
            f"\nwhile you were away, {doc['was_reclaimed_by']} reclaimed this session at "
            f"{doc['was_reclaimed_at']} (not seen for reclaim_after_hours): its claims were "
            "released"
        )
    return text


REGISTER = Verb(
    "register",
    "Register this session: a unique number, a role and a goal.",
    _register,
    _register_text,
    (
        Param(
            "role",
            str,
            "What this session is responsible for (needed the first time).",
            metavar="TEXT",
        ),
        Param("goal", str, "Its measurable objective (needed the first time).", metavar="TEXT"),
        Param("number", int, "Session number in 1..slots (default: lowest free).", metavar="N"),
    ),
    details="First registration of a number wins; the loser gets exit 3 (a conflict) and the "
    "free numbers. Registering again updates role and goal and keeps the number, unless "
    "--number moves it. On a template's branch a number is a role: moving to slot N takes "
    "its role and goal unless you give your own (or had your own), and a new session without "
    "--role/--goal takes a slot's role only by asking for it (--number N) or being its "
    "suggested session (exit 2 lists the vacant ones; `status` shows them too). On a branch "
    "at format 3 the session is bound to this machine's signing key (`gitcoord key show`): "
    "first registration wins, as numbers do, and only that key signs for it.",
    idempotent=True,
)


def _reclaim(c: Coordinator, target: str) -> Any:
    from ... import clock
    from ...domain import names
    from ...ops import sessions

    names.check_session_id(target)
    session = c.need_session()
    return c.transact(lambda s: sessions.reclaim(s, clock.now(), session=session, target=target))


RECLAIM = Verb(
    "reclaim",
    "Reclaim SESSION, not seen for reclaim_after_hours: free its number, release its claims.",
    _reclaim,
    lambda doc: wrote(
        doc,
        f"reclaimed {doc['session']} (#{doc['number']})"
        + (f"; released {', '.join(doc['released'])}" if doc["released"] else ""),
        f"{doc['session']} had already left",
    ),
    (
        Param(
            "target", str, "The session to reclaim.", REQUIRED, positional=True, metavar="SESSION"
        ),
    ),
    details="A session that has not sent a heartbeat nor registered for reclaim_after_hours "
    "(config, default 24) plus the clock-skew grace may be reclaimed by any registered "
    "session, in one commit that the log shows (op reclaim) and the verifier judges at its "
    "own clock: the number is free again and each claim is released as a tombstone, so its "
    "generation carries on. The reclaimed session reads who reclaimed it when it comes back. "
    "`register` does this by itself when every number is taken, taking the longest-unseen "
    "session's number.",
    idempotent=True,
    destructive=True,
)


def _leave(c: Coordinator) -> Any:
    from ... import clock
    from ...ops import sessions

    session = c.need_session()
    return c.transact(lambda s: sessions.leave(s, clock.now(), session=session))


def _leave_text(doc: dict[str, Any]) -> str:
    s = doc["session"]
    released = doc["released"]
    return wrote(
        doc,
        f"{s['id']} left; number {s['number']} is free again"
        + (f"; released {', '.join(released)}" if released else ""),
        f"{s['id']} had already left",
    )


LEAVE = Verb(
    "leave",
    "Leave: release every claim this session holds and free its number, in one commit.",
    _leave,
    _leave_text,
    details="The session's file, messages and heartbeats stay on the branch, so the history "
    "still says who did what. Until it registers again the session writes nothing, and no "
    "message is sent to it. Leaving twice is not an error.",
    idempotent=True,
    destructive=True,
)


UPGRADE_TIMEOUT = 600.0  # seconds: judging a commit that moves every file of a big branch


def _upgrade(c: Coordinator) -> Any:
    from ... import clock
    from ...ops import sessions

    c.allow(UPGRADE_TIMEOUT)
    return c.transact(lambda s: sessions.upgrade(s, clock.now(), session=c.session))


UPGRADE = Verb(
    "upgrade",
    "Move the coordination branch to this gitcoord's format, in one commit.",
    _upgrade,
    lambda doc: wrote(
        doc,
        f"upgraded the branch from format {doc['from']} to {doc['format']}"
        + (f", moving {doc['moved']} file(s) into sharded folders" if doc.get("moved") else ""),
        f"the branch is at format {doc['format']} already",
    ),
    details="A branch's format (config.yaml) says which gitcoord can read it: an older one "
    "refuses a newer format with a message naming it. What a format adds (format 2: `leave`, "
    "max_lease_hours) is written only once the branch is upgraded, so upgrade when every "
    "session runs a gitcoord that reads the new format. Format 4 shards the folders that grow "
    "(claims, messages, tasks, approvals, sessions) so that none passes 3,000 entries: the "
    "upgrade to it moves every file, bytes unchanged, in the same one commit, and a folder "
    "already past 3,000 takes no new file until then. Format 5 lets a clone's push carry the "
    "write of another clone that lost a race (carried commits: a gitcoord before 5 refuses "
    "them, so they wait for the upgrade). The upgrade allows itself 10 minutes "
    "unless --timeout says otherwise (judging thousands of moves takes a while). Changing "
    "config.yaml takes an approver "
    "when the branch lists approvers (run it as one, by your git identity); otherwise any "
    "registered session may (--session).",
    idempotent=True,
    human=True,
)

VERBS = (INIT, REGISTER, LEAVE, RECLAIM, UPGRADE)
