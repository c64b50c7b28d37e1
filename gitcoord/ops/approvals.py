"""Approvals: requests for a human, their grant, and the registry activation they gate."""

from __future__ import annotations

from datetime import datetime, timedelta

from ..domain import kinds, rules
from ..domain.change import Change
from ..domain.models import (
    Activation,
    Approval,
    Claim,
)
from ..domain.state import Doc, State
from ..errors import ConflictError, RefusedError
from .kernel import build, require_initialised, require_registered


def request_approval(
    state: State,
    now: datetime,
    *,
    session: str | None,
    approval_id: str,
    subject: str,
    note: str = "",
    kind: str = "general",
    resource: str | None = None,
) -> Change:
    me = require_registered(state, session)
    if approval_id in state.approvals:
        raise ConflictError(f"approval {approval_id} already exists", approval=approval_id)
    doc: Approval = build(
        Approval,
        id=approval_id,
        kind=kind,
        subject=subject,
        note=note,
        resource=resource,
        requested_by=me.id,
        requested_at=now,
    )
    return Change(
        "approval-request",
        f"request approval {approval_id} by {me.id}: {subject[:60]}",
        session=me.id,
        resource=f"approval/{approval_id}",
        writes={kinds.approval_path(approval_id, fmt=state.format): doc},
        trailers={"Gitcoord-Approval": approval_id},
        result={"approval": doc.model_dump(mode="json")},
    )


def approved(request: Approval, now: datetime, approver: str | None) -> Approval:
    return request.model_copy(
        update={"status": "approved", "approved_by": approver, "approved_at": now}
    )


def grant_approval(
    state: State, now: datetime, *, approval_id: str, approver: str, session: str | None
) -> Change:
    """Approve a pending request. A claim it gates starts its lease now (it did not run
    while the request waited); a request that no longer means anything (lapsed, its
    claim released or taken over, the registry already active) is refused, saying why."""
    config = require_initialised(state)
    request = _request(state, approval_id)
    _require_approver(config.approvers, approver)
    if request.status == "approved":
        return Change(
            "approval-grant",
            "grant",
            session=session,
            result={"approval": request.model_dump(mode="json"), "action": "already-approved"},
        )
    if request.status == "rejected":
        raise RefusedError(
            f"{approval_id} was rejected by {request.rejected_by}: it cannot be approved now; "
            "the requester asks again",
            approval=approval_id,
        )
    _require_meaning(state, request, now)
    doc = approved(request, now, approver)
    writes: dict[str, Doc] = {kinds.approval_path(approval_id, fmt=state.format): doc}
    claim = gated_claim(state, request)
    if claim is not None and claim.lease_seconds is not None:
        # its lease starts now: it did not run while the request waited
        started = claim.model_copy(
            update={
                "expires_at": now + timedelta(seconds=claim.lease_seconds),
                "renewed_at": now,
                "lease_seconds": None,
            }
        )
        writes[kinds.claim_path(claim.type, claim.name, fmt=state.format)] = started
    return Change(
        "approval-grant",
        f"approve {approval_id} ({request.subject[:50]}) by {approver}",
        session=session,
        resource=f"approval/{approval_id}",
        writes=writes,
        trailers={"Gitcoord-Approval": approval_id, "Gitcoord-Approver": approver},
        result={"approval": doc.model_dump(mode="json"), "action": "approved"},
    )


def reject_approval(
    state: State, now: datetime, *, approval_id: str, approver: str, reason: str
) -> Change:
    """Reject a pending request with a reason (the requester reads it in their inbox);
    a claim it gates is released, so the resource is free again."""
    config = require_initialised(state)
    if config.format < 3:
        raise RefusedError(
            f"rejecting needs format 3 (this branch is at {config.format}): `gitcoord upgrade`",
            format=config.format,
        )
    request = _request(state, approval_id)
    _require_approver(config.approvers, approver)
    if request.status == "rejected":
        return Change(
            "approval-reject",
            "reject",
            result={"approval": request.model_dump(mode="json"), "action": "already-rejected"},
        )
    if request.status == "approved":
        raise RefusedError(
            f"{approval_id} was approved by {request.approved_by}: a decision stands",
            approval=approval_id,
        )
    doc = request.model_copy(
        update={"status": "rejected", "rejected_by": approver, "rejected_at": now, "reason": reason}
    )
    writes: dict[str, Doc] = {kinds.approval_path(approval_id, fmt=state.format): doc}
    claim = gated_claim(state, request)
    if claim is not None and claim.released_at is None:
        released = claim.model_copy(
            update={"released_at": max(now, claim.acquired_at), "lease_seconds": None}
        )
        writes[kinds.claim_path(claim.type, claim.name, fmt=state.format)] = released
    return Change(
        "approval-reject",
        f"reject {approval_id} ({request.subject[:50]}) by {approver}",
        resource=f"approval/{approval_id}",
        writes=writes,
        trailers={"Gitcoord-Approval": approval_id, "Gitcoord-Approver": approver},
        result={"approval": doc.model_dump(mode="json"), "action": "rejected"},
    )


def _request(state: State, approval_id: str) -> Approval:
    request = state.approvals.get(approval_id)
    if request is None:
        raise RefusedError(f"no approval request {approval_id}", approval=approval_id)
    return request


def _require_approver(approvers: list[str], approver: str) -> None:
    if approver not in approvers:
        raise RefusedError(
            f"{approver or 'your git identity'} is not a listed approver "
            f"({', '.join(approvers) or 'none are listed: init --approver EMAIL'})",
            approver=approver,
        )


def gated_claim(state: State, request: Approval) -> Claim | None:
    """The claim a kind-claim request gates, if it is still that request's."""
    if request.kind != "claim" or request.resource is None:
        return None
    claim = state.claims.get(request.resource)
    return claim if claim is not None and claim.approval == request.id else None


def lapses_at(state: State, request: Approval) -> datetime | None:
    """When a pending claim request lapses: its claim's wait ends (`expires_at` while it
    waits). Other requests do not lapse."""
    claim = gated_claim(state, request)
    if request.status != "pending" or claim is None or claim.released_at is not None:
        return None
    return claim.expires_at


def meaning(state: State, request: Approval, now: datetime) -> str | None:
    """Why approving `request` would mean nothing now, or None when it still matters."""
    if request.kind == "registry" and state.activation is not None:
        return f"the registry is already active (approval {state.activation.approval})"
    if request.kind == "claim":
        claim = gated_claim(state, request)
        if claim is None or claim.holder != request.requested_by:
            return f"the claim {request.resource} is no longer {request.requested_by}'s"
        if claim.released_at is not None:
            return f"{request.requested_by} released {request.resource}"
        if claim.expires_at <= now:
            return (
                f"it lapsed at {claim.expires_at:%Y-%m-%dT%H:%M:%SZ}, waiting longer than "
                "approval_wait_hours; the requester claims again"
            )
    return None


def _require_meaning(state: State, request: Approval, now: datetime) -> None:
    why = meaning(state, request, now)
    if why is not None:
        raise RefusedError(
            f"{request.id} no longer means anything: {why}", approval=request.id, why=why
        )


def activate(state: State, now: datetime, *, session: str | None) -> Change:
    me = require_registered(state, session)
    info = rules.activation_status(state)
    if state.activation is not None:
        return Change("activate", "activate", session=me.id, result={"activation": info})
    if info["registered"] < info["slots"] or info["approval"] != "approved":
        raise RefusedError(
            f"pending activation: {info['registered']}/{info['slots']} registered, "
            f"registry approval {info['approval']}",
            **info,
        )
    doc: Activation = build(
        Activation,
        activated_at=now,
        activated_by=me.id,
        approval=info["approval_id"],
        sessions=info["registered"],
    )
    return Change(
        "activate",
        f"activate the registry ({info['registered']} sessions) by {me.id}",
        session=me.id,
        writes={kinds.activation_path(): doc},
        result={"activation": {**info, "active": True}},
    )
