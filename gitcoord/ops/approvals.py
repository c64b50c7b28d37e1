"""Approvals: requests for a human, their grant, and the registry activation they gate."""

from __future__ import annotations

from datetime import datetime

from ..domain import kinds, rules
from ..domain.change import Change
from ..domain.models import (
    Activation,
    Approval,
)
from ..domain.state import State
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
        writes={kinds.approval_path(approval_id): doc},
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
    config = require_initialised(state)
    request = state.approvals.get(approval_id)
    if request is None:
        raise RefusedError(f"no approval request {approval_id}", approval=approval_id)
    if approver not in config.approvers:
        raise RefusedError(
            f"{approver or 'your git identity'} is not a listed approver "
            f"({', '.join(config.approvers) or 'none are listed: init --approver EMAIL'})",
            approver=approver,
        )
    if request.status == "approved":
        return Change(
            "approval-grant",
            "grant",
            session=session,
            result={"approval": request.model_dump(mode="json"), "action": "already-approved"},
        )
    doc = approved(request, now, approver)
    return Change(
        "approval-grant",
        f"approve {approval_id} ({request.subject[:50]}) by {approver}",
        session=session,
        resource=f"approval/{approval_id}",
        writes={kinds.approval_path(approval_id): doc},
        trailers={"Gitcoord-Approval": approval_id, "Gitcoord-Approver": approver},
        result={"approval": doc.model_dump(mode="json"), "action": "approved"},
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
