"""Approvals: asking a human, the human's grant, the list, and the registry activation.

`approval request` is two writes: the pending request on the branch, then a
`gitcoord-approval/<id>` branch whose one commit marks it approved, so that a
listed approver merging that pull request approves it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .. import render
from ..verb import REQUIRED, Param, Verb, outcome_json, wrote

if TYPE_CHECKING:
    from ...domain.change import Change
    from ...domain.state import State
    from ..coordinator import Coordinator

APPROVAL_ID = Param(
    "approval_id",
    str,
    "The request, e.g. 20261121-a1b2c3.",
    REQUIRED,
    positional=True,
    metavar="ID",
)


def new_approval_id() -> str:
    import secrets

    from ... import clock

    return f"{clock.now():%Y%m%d}-{secrets.token_hex(3)}"


def _request(
    c: Coordinator, subject: str, note: str = "", kind: str = "general", pr: bool = False
) -> dict[str, Any]:
    from ... import clock
    from ...domain import kinds, names
    from ...domain.change import Change
    from ...ops import approvals
    from ...store import forge

    aid = new_approval_id()
    outcome = c.transact(
        lambda s: approvals.request_approval(
            s,
            clock.now(),
            session=c.session,
            approval_id=aid,
            subject=subject,
            note=note,
            kind=kind,
        )
    )
    assert outcome.commit is not None
    request = c.store.load(outcome.commit).approvals[aid]
    branch = names.APPROVAL_BRANCH_PREFIX + aid
    change = Change(
        "approval-grant",
        f"approve {aid}: {subject[:60]}",
        resource=f"approval/{aid}",
        writes={kinds.approval_path(aid): approvals.approved(request, clock.now(), None)},
        trailers={"Gitcoord-Approval": aid},
    )
    proposal = c.store.write_commit(outcome.commit, change, clock.now())
    c.store.publish_branch(branch, proposal)
    url = forge.pull_request(c.remote_url, c.store.branch, branch)
    created, failed = (
        forge.gh_pr_create(c.store.branch, branch, subject, note) if pr else (None, None)
    )
    warnings = []
    if failed is not None:
        # --pr asked for a pull request: say why there is none, and how to open one
        warnings.append(
            f"--pr: no pull request was opened: {failed}; open it yourself"
            + (f": {url}" if url else f" (from {branch} into {c.store.branch})")
            + f", or approve with `gitcoord approval grant {aid}`"
        )
    return {
        "approval": request.model_dump(mode="json"),
        "commit": outcome.commit,
        "branch": branch,
        "proposal": proposal,
        "pull_request_url": created or url,
        "pull_request_opened": created is not None,
        **({"warnings": warnings} if warnings else {}),
        "how": (
            f"open a pull request from {branch} into {c.store.branch}"
            + (f": {url}" if url else "")
            + f"; a listed approver merging it approves. Or: gitcoord approval grant {aid}"
        ),
    }


REQUEST = Verb(
    "approval request",
    "Request a human's approval of SUBJECT and say how to open its pull request.",
    _request,
    lambda doc: (
        f"requested approval {doc['approval']['id']} ({doc['approval']['kind']}): "
        f"{doc['approval']['subject']}\n{doc['how']}"
    ),
    (
        Param(
            "subject",
            str,
            "What needs approving, one line.",
            REQUIRED,
            positional=True,
            metavar="SUBJECT",
        ),
        Param("note", str, "Details for the approver.", "", metavar="TEXT"),
        Param(
            "kind",
            str,
            "registry: the approval `gitcoord activate` needs.",
            "general",
            choices=("general", "registry"),
            show_default=True,
        ),
        Param("pr", bool, "Open the pull request with `gh` if it is installed.", False),
    ),
    details="A request is a pending file on the branch plus a branch gitcoord-approval/<id> "
    "whose commit marks it approved: a listed approver merging its pull request approves it. "
    "`approval grant ID` approves without a forge.",
)


APPROVAL_IDS = Param(
    "approval_ids",
    list,
    "The requests, e.g. 20261121-a1b2c3 (one or several).",
    REQUIRED,
    positional=True,
    metavar="ID...",
)


def _decide(c: Coordinator, approval_ids: list[str], decide: Any) -> dict[str, Any]:
    """Each request decided in its own commit (each a signed decision of its own), in
    the order given; the first refusal stops the rest and says what was done. A decided
    request's approval branch is deleted: nothing is left to merge."""
    from ...domain import names
    from ...errors import GitcoordError

    ids = [names.check_approval_id(a) for a in approval_ids]
    done: list[dict[str, Any]] = []
    for aid in ids:

        def plan(s: State, aid: str = aid) -> Change:
            return decide(s, aid)  # type: ignore[no-any-return]

        try:
            outcome = c.transact(plan)
        except GitcoordError as exc:
            if done:
                before = ", ".join(d["approval"]["id"] for d in done)
                exc.message += f" (decided before it: {before})"
                exc.args = (exc.message,)
                exc.details["decided"] = done
            raise
        doc = outcome_json(outcome)
        doc["branch_removed"] = c.store.remove_branch(names.APPROVAL_BRANCH_PREFIX + aid)
        done.append(doc)
    return {
        "decisions": done,
        "approval": done[-1]["approval"],  # the last one (the only one, for one ID)
        "changed": any(d["changed"] for d in done),
        "commit": next((d["commit"] for d in reversed(done) if d["commit"]), None),
    }


def _grant(c: Coordinator, approval_ids: list[str]) -> Any:
    from ... import clock
    from ...ops import approvals

    approver = c.store.identity.email
    return _decide(
        c,
        approval_ids,
        # a person's act: it speaks for no session, and is signed by the person's key
        lambda s, aid: approvals.grant_approval(
            s, clock.now(), approval_id=aid, approver=approver, session=None
        ),
    )


def _decisions_text(doc: dict[str, Any]) -> str:
    lines = []
    for d in doc["decisions"]:
        a = d["approval"]
        if a["status"] == "approved":
            done = f"approved {a['id']} as {a['approved_by']}"
        else:
            done = f"rejected {a['id']} as {a['rejected_by']}: {a['reason']}"
        lines.append(wrote(d, done, f"{a['id']} was already {a['status']}"))
    return "\n".join(lines)


GRANT = Verb(
    "approval grant",
    "Approve requests ID... as your git identity (exit 4 unless you are a listed approver).",
    _grant,
    _decisions_text,
    (APPROVAL_IDS,),
    details="Each request is approved in a commit of its own, signed by your key where "
    "signatures are required. A claim waiting for the approval starts its lease now. A "
    "request that no longer means anything — lapsed, its claim released or taken over, the "
    "registry already active — is refused and says why. The request's approval branch is "
    "deleted once decided.",
    idempotent=True,
    session=False,
    human=True,
    to_json=lambda doc: doc,
)


def _reject(c: Coordinator, approval_ids: list[str], reason: str) -> Any:
    from ... import clock
    from ...errors import UsageError
    from ...ops import approvals

    if not reason.strip():
        raise UsageError("--reason is required: the requester reads it")
    approver = c.store.identity.email
    return _decide(
        c,
        approval_ids,
        lambda s, aid: approvals.reject_approval(
            s, clock.now(), approval_id=aid, approver=approver, reason=reason
        ),
    )


REJECT = Verb(
    "approval reject",
    "Reject requests ID... with a reason the requester reads (exit 4 unless an approver).",
    _reject,
    _decisions_text,
    (
        APPROVAL_IDS,
        Param("reason", str, "Why: the requester reads it in their inbox.", REQUIRED),
    ),
    details="Each request is rejected in a commit of its own, signed by your key where "
    "signatures are required; a claim waiting for it is released. Needs format 3.",
    idempotent=True,
    destructive=True,
    session=False,
    human=True,
    to_json=lambda doc: doc,
)


def queue_row(state: Any, request: Any, now: Any) -> dict[str, Any]:
    """One request as the queue shows it: who asked, what it gates, how long it waited."""
    from ...ops import approvals

    status = request.status
    lapses = approvals.lapses_at(state, request)
    if status == "pending" and lapses is not None and lapses <= now:
        status = "lapsed"
    gates = None
    if request.kind == "registry":
        gates = "activation"
    elif request.kind == "claim":
        gates = f"claim {request.resource}"
    decided = request.approved_at or request.rejected_at
    return {
        **request.model_dump(mode="json"),
        "status": status,
        "gates": gates,
        "waited_seconds": int(((decided or now) - request.requested_at).total_seconds()),
        "lapses_at": lapses.isoformat().replace("+00:00", "Z") if lapses else None,
        "decided_by": request.approved_by or request.rejected_by,
        "meaning": approvals.meaning(state, request, now) if status == "pending" else None,
    }


def _list(c: Coordinator, include_decided: bool = False) -> list[dict[str, Any]]:
    from ... import clock

    _, state = c.store.snapshot()
    now = clock.now()
    rows = [queue_row(state, a, now) for a in state.approvals.values()]
    # the queue first, oldest waiting first; then what was decided, latest first
    waiting = sorted((r for r in rows if r["status"] == "pending"), key=lambda r: r["requested_at"])
    rest = sorted(
        (r for r in rows if r["status"] != "pending"),
        key=lambda r: r["requested_at"],
        reverse=True,
    )
    return waiting + (rest if include_decided else [r for r in rest if r["status"] == "lapsed"])


LIST = Verb(
    "approval list",
    "The approval queue: pending requests oldest first, with their notes and what they gate.",
    _list,
    lambda doc: render.approvals(doc["approvals"]),
    (
        Param(
            "include_decided",
            bool,
            "Also the requests already approved or rejected.",
            False,
            flag="--all",
        ),
    ),
    details="Each row says who asked, when, for how long it has waited, what it gates "
    "(activation, or a claim of a type that requires approval), and when a claim's request "
    "lapses (approval_wait_hours: it frees the resource if nobody decides). Approve or reject "
    "several at once: `approval grant ID ID`, `approval reject ID --reason TEXT`.",
    writes=False,
    session=False,
    to_json=lambda rows: {"approvals": rows},
)


def _activate(c: Coordinator) -> Any:
    from ... import clock
    from ...ops import approvals

    return c.transact(lambda s: approvals.activate(s, clock.now(), session=c.session))


def _activate_text(doc: dict[str, Any]) -> str:
    info = doc["activation"]
    return wrote(
        doc,
        f"activated: {info['registered']}/{info['slots']} sessions, approval {info['approval_id']}",
        "the registry is already active",
    )


ACTIVATE = Verb(
    "activate",
    "Activate the registry: every slot registered and a registry request approved.",
    _activate,
    _activate_text,
    idempotent=True,
)

VERBS = (REQUEST, GRANT, REJECT, LIST, ACTIVATE)
