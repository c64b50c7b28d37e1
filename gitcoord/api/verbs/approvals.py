"""Approvals: asking a human, the human's grant, the list, and the registry activation.

`approval request` is two writes: the pending request on the branch, then a
`gitcoord-approval/<id>` branch whose one commit marks it approved, so that a
listed approver merging that pull request approves it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .. import render
from ..verb import REQUIRED, Param, Verb, wrote

if TYPE_CHECKING:
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
    created = forge.gh_pr_create(c.store.branch, branch, subject, note) if pr else None
    return {
        "approval": request.model_dump(mode="json"),
        "commit": outcome.commit,
        "branch": branch,
        "proposal": proposal,
        "pull_request_url": created or url,
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


def _grant(c: Coordinator, approval_id: str) -> Any:
    from ... import clock
    from ...domain import names
    from ...ops import approvals

    names.check_approval_id(approval_id)
    approver = c.store.identity.email
    return c.transact(
        lambda s: approvals.grant_approval(
            # a person's act: it speaks for no session, and is signed by the person's key
            s,
            clock.now(),
            approval_id=approval_id,
            approver=approver,
            session=None,
        )
    )


GRANT = Verb(
    "approval grant",
    "Approve request ID as your git identity (exit 4 unless you are a listed approver).",
    _grant,
    lambda doc: wrote(
        doc,
        f"approved {doc['approval']['id']} as {doc['approval']['approved_by']}",
        f"{doc['approval']['id']} was already approved",
    ),
    (APPROVAL_ID,),
    idempotent=True,
    session=False,
    human=True,
)


def _list(c: Coordinator) -> list[dict[str, Any]]:
    _, state = c.store.snapshot()
    return [a.model_dump(mode="json") for a in sorted(state.approvals.values(), key=lambda a: a.id)]


LIST = Verb(
    "approval list",
    "Pending and approved requests.",
    _list,
    lambda doc: render.approvals(doc["approvals"]),
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

VERBS = (REQUEST, GRANT, LIST, ACTIVATE)
