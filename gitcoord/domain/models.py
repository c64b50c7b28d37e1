"""The YAML files of the coordination branch, one pydantic model per kind of file.

Where each kind of file lives, what names it and who owns it is the table of kinds
(`kinds.py`, whose `DOCUMENTS` lists these models by kind). The JSON Schemas in the
repository's `coordination/schema/` folder are generated from these classes
(`python -m gitcoord.domain.schema`) and a test keeps them in sync.
Models are strict (`extra="forbid"`) so a typo in a hand-edited file is reported
instead of silently ignored.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, ClassVar, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from ..sshsig import KEY_PATTERN
from .names import (
    APPROVAL_ID_PATTERN,
    CLAIM_NAME_PATTERN,
    CLAIM_TYPE_PATTERN,
    MESSAGE_ID_PATTERN,
    SESSION_ID_PATTERN,
    TASK_ID_PATTERN,
    name_problem,
)

# The branch's format, in config.yaml. A gitcoord reads every format up to its own and
# refuses a newer one with a message (state.parse); each new format says what it added:
#   1  the first layout
#   2  sessions may have left (Session.left_at), config.max_lease_hours, config.pushers
#   3  signatures: a session's key (Session.key), config.approver_keys and
#      config.require_signatures; decisions: a rejected request (Approval.status
#      "rejected", rejected_by/at, reason), config.approval_wait_hours, a claim waiting
#      for approval holding the lease it starts with (Claim.lease_seconds); messages
#      to and from people (to "human", an approver's e-mail as sender); a claim that
#      changed hands without a release names where it came from (Claim.handed_by,
#      Claim.taken_from); a milestone step may name who ticks it (Step.by), and a
#      person (an approver's e-mail) may tick it (Step.done_by)
#   4: sharded folders, so that no folder of the branch grows past 3,000 entries
#      (kinds.SHARDED): claims/<type>/<xx>/, messages/<to>/<YYYY-MM>/<DD>/<HH>/,
#      tasks/<thousand>/, approvals/<YYYY-MM>/<DD>/, and sessions/, heartbeats/,
#      reads/, milestones/ by <xx>, the first byte of the key's SHA-256
#   5: carried commits (`CARRIED`): a clone's push may land another clone's request as a
#      commit whose second parent is the request (store.requests, audit.carried); a
#      gitcoord before it refuses a commit of two parents, so no clone carries, and the
#      verifier takes no carried commit, on a branch before format 5
# A branch is moved forward by `gitcoord upgrade`; what a format adds is written only on
# a branch at that format, so every client the branch's format admits can read it.
FORMAT = 5
CARRIED = 5


def _single_line(value: str) -> str:
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError("must be a single line without control characters")
    if value != value.strip():
        raise ValueError("must not start or end with white space")
    return value


def _text(value: str) -> str:
    if any((ord(c) < 32 and c not in "\n\t\r") or ord(c) == 127 for c in value):
        raise ValueError("must not contain control characters")
    return value


def _claim_name(value: str) -> str:
    problem = name_problem(value)
    if problem:
        raise ValueError(problem)
    return value


SessionId = Annotated[str, StringConstraints(pattern=SESSION_ID_PATTERN)]
ClaimType = Annotated[str, StringConstraints(pattern=CLAIM_TYPE_PATTERN)]
ClaimName = Annotated[
    str, StringConstraints(pattern=CLAIM_NAME_PATTERN), AfterValidator(_claim_name)
]
Role = Annotated[str, StringConstraints(min_length=1, max_length=200), AfterValidator(_single_line)]
Goal = Annotated[str, StringConstraints(min_length=1, max_length=500), AfterValidator(_single_line)]
Note = Annotated[str, StringConstraints(max_length=2000), AfterValidator(_text)]
Timestamp = AwareDatetime
Email = Annotated[str, StringConstraints(pattern=r"^[^@\s<>]{1,64}@[^@\s<>]{1,255}$")]
ApprovalId = Annotated[str, StringConstraints(pattern=APPROVAL_ID_PATTERN)]
Sender = SessionId | Email  # who writes: a session, or a person (an approver's e-mail)
# An OpenSSH public key, "<type> <base64>" without a comment (sshsig.normalize_key).
SshKey = Annotated[str, StringConstraints(pattern=KEY_PATTERN)]

ROLE_MAX = 200
# A task waits for a handful of others; a 256 KiB list of valid ids made every write
# (each loads and validates the board) take 20 s. 100 is far beyond any real plan and
# keeps the board's checks cheap.
DEPENDS_MAX = 100
GOAL_MAX = 500
NOTE_MAX = 2000


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)


PusherName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,99}$")]
SessionPattern = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9*?][A-Za-z0-9._*?-]{0,63}$")]


class Pusher(_Model):
    """Who the server says pushed, and what that account may do on the branch."""

    sessions: list[SessionPattern] = Field(
        default_factory=list,
        max_length=100,
        description="The sessions it may speak for: ids or glob patterns (research-*).",
    )
    approver: bool = Field(
        False,
        description="Whether it may push what only approvers may (approvals, merges, config).",
    )


class Config(_Model):
    """`coordination/config.yaml`: settings every session obeys."""

    # Added by a newer format: written only when set (yamlio.dump), so an older branch
    # stays readable by the gitcoord its format admits.
    NEWER_FIELDS: ClassVar[tuple[str, ...]] = (
        "max_lease_hours",
        "pushers",
        "approver_keys",
        "require_signatures",
        "approval_wait_hours",
        "reclaim_after_hours",
    )

    format: int = Field(
        FORMAT,
        ge=1,
        le=FORMAT,
        description=(
            "Version of the branch layout: an older gitcoord refuses a newer one with a "
            "message; `gitcoord upgrade` moves a branch forward."
        ),
    )
    slots: int = Field(12, ge=1, le=1000, description="How many session numbers (1..slots).")
    lease_hours: float = Field(
        2.0, gt=0, le=720, description="Default claim lease when a claim gives no duration."
    )
    max_lease_hours: float = Field(
        168.0,
        gt=0,
        le=8760,
        description=(
            "The longest lease a claim may be granted or renewed for (a week by default): a "
            "claim's expires_at is at most its grant or renewal time plus this (plus the "
            "clock-skew grace), so no session can hold a resource forever by writing a far "
            "expiry. A longer --ttl/--hours is a usage error; a longer lease_hours is cut to it."
        ),
    )
    stale_after_minutes: int = Field(
        20, ge=1, le=10080, description="A session with no heartbeat for this long is stale."
    )
    clock_skew_seconds: int = Field(
        60,
        ge=0,
        le=3600,
        description=(
            "Grace allowed for clock differences between machines: an expired claim can be "
            "taken over only this long after its expiry."
        ),
    )
    heartbeat_min_seconds: int = Field(
        120,
        ge=0,
        le=86400,
        description=(
            "A changed heartbeat sooner than this after the last pushed one is not pushed on its "
            "own: it is kept locally and carried by the session's next write."
        ),
    )
    heartbeat_quiet_seconds: int = Field(
        600,
        ge=0,
        le=86400,
        description="An unchanged heartbeat is pushed only when the last one is this old.",
    )
    approvers: list[Email] = Field(
        default_factory=list,
        description="Git author emails of the humans who approve requests (init --approver).",
    )
    approver_keys: dict[Email, SshKey] = Field(
        default_factory=dict,
        max_length=100,
        description=(
            "Each approver's own SSH public key (format 3; init records whoever runs it, "
            "`approver add` the others). With require_signatures, an approver's act counts "
            "only when signed by this key: the e-mail is a name, the key is the proof."
        ),
    )
    require_signatures: bool = Field(
        False,
        description=(
            "Format 3: every commit must be signed — a session's by the key bound to it when "
            "it registered, a person's act (approvals, config) by an approver's key. The "
            "server hook, `validate --range` and every client loading a new tip check it."
        ),
    )
    pushers: dict[PusherName, Pusher] = Field(
        default_factory=dict,
        max_length=1000,
        description=(
            "Where the server knows who pushed (gitolite GL_USER, Gitea GITEA_PUSHER_NAME, "
            "GitLab GL_USERNAME, smart HTTP REMOTE_USER): each account and the sessions it may "
            "speak for. When set, the server hook refuses a push by anyone else, and any "
            "commit a pusher may not make."
        ),
    )
    approval_wait_hours: float = Field(
        24.0,
        gt=0,
        le=720,
        description=(
            "Format 3: how long a claim waits for its approval: its lease starts only when "
            "granted, and a request nobody decides lapses after this (the resource is free "
            "again), so nobody holds a resource forever by asking. At most max_lease_hours."
        ),
    )
    reclaim_after_hours: float = Field(
        24.0,
        gt=0,
        le=8760,
        description=(
            "Format 3: a session not seen (no heartbeat, no registration) for this long, plus "
            "the clock-skew grace, can be reclaimed by any session: its number is freed and "
            "its claims released, in one commit that names who reclaimed it."
        ),
    )
    require_approval: list[ClaimType] = Field(
        default_factory=list,
        description="Claim types that start pending and become live once approved (e.g. deploy).",
    )
    created_at: Timestamp = Field(description="When the branch was initialised.")

    @property
    def lease(self) -> timedelta:
        return timedelta(hours=self.lease_hours)

    @property
    def approval_wait(self) -> timedelta:
        return timedelta(hours=self.approval_wait_hours)

    @property
    def max_lease(self) -> timedelta:
        return timedelta(hours=self.max_lease_hours)

    @property
    def stale(self) -> timedelta:
        return timedelta(minutes=self.stale_after_minutes)

    @property
    def skew(self) -> timedelta:
        return timedelta(seconds=self.clock_skew_seconds)


class Session(_Model):
    """`coordination/sessions/<id>.yaml`: one registered session."""

    id: SessionId = Field(description="The session id; the file is named after it.")
    number: int = Field(ge=1, description="Unique session number, 1..slots.")
    role: Role = Field(description="What the session is responsible for.")
    goal: Goal = Field(description="Its measurable objective.")
    registered_at: Timestamp
    updated_at: Timestamp
    key: SshKey | None = Field(
        None,
        description=(
            "Format 3: the public key that signs for this session, bound when it registers "
            "(the machine key of the user who runs it). Only a commit signed by it may change "
            "it (`key rotate`), or an approver's (`key revoke`)."
        ),
    )
    reclaimed_by: Sender | None = Field(
        None,
        description="Format 3: who reclaimed it (it had not been seen for reclaim_after_hours).",
    )
    left_at: Timestamp | None = Field(
        None,
        description=(
            "When the session left (`gitcoord leave`): its number is free again and it "
            "holds no claim; the file stays, for the history. Registering again clears it."
        ),
    )

    @property
    def present(self) -> bool:
        return self.left_at is None


ClaimStatus = Literal["live", "expired", "released"]


class Claim(_Model):
    """`coordination/claims/<type>/<name>.yaml`: the lease on one resource.

    The file stays after a release (as a tombstone) so that `generation`, the
    fencing token, keeps growing across every change of holder.
    """

    type: ClaimType
    name: ClaimName
    holder: SessionId = Field(description="Current holder, or the last one once released.")
    generation: int = Field(
        ge=1, description="Fencing token: grows by one every time the claim is granted anew."
    )
    acquired_at: Timestamp = Field(description="When the current holder got it.")
    expires_at: Timestamp
    renewed_at: Timestamp | None = None
    released_at: Timestamp | None = None
    note: Note = ""
    approval: ApprovalId | None = Field(
        None, description="For types in require_approval: the request that must be approved."
    )
    lease_seconds: int | None = Field(
        None,
        ge=1,
        description=(
            "Format 3, while its approval is pending: the lease it starts with once granted "
            "(expires_at meanwhile is when the request lapses: approval_wait_hours)."
        ),
    )
    handed_by: SessionId | None = Field(
        None,
        description=(
            "Format 3: the session that handed this claim to its holder (`gitcoord "
            "handoff`), kept while the holder renews it; the holder's inbox tells it."
        ),
    )
    taken_from: SessionId | None = Field(
        None,
        description=(
            "Format 3: the holder this claim was taken over from after its lease expired, "
            "kept while the new holder renews it; that session's inbox tells it."
        ),
    )

    NEWER_FIELDS: ClassVar[tuple[str, ...]] = ("handed_by", "taken_from")

    @property
    def key(self) -> str:
        return f"{self.type}/{self.name}"

    def status(self, now: datetime) -> ClaimStatus:
        if self.released_at is not None:
            return "released"
        return "live" if self.expires_at > now else "expired"

    def takeable(self, now: datetime, skew: timedelta) -> bool:
        """True when a session other than the holder may take it now."""
        return self.released_at is not None or self.expires_at + skew <= now


Field200 = Annotated[str, StringConstraints(max_length=200), AfterValidator(_single_line)]
Subject = Annotated[
    str, StringConstraints(min_length=1, max_length=200), AfterValidator(_single_line)
]
MessageId = Annotated[str, StringConstraints(pattern=MESSAGE_ID_PATTERN)]
Recipient = Annotated[str, StringConstraints(pattern=SESSION_ID_PATTERN)]
BODY_MAX_BYTES = 64 * 1024


def _body(value: str) -> str:
    _text(value)
    if len(value.encode("utf-8")) > BODY_MAX_BYTES:
        raise ValueError(f"must be at most {BODY_MAX_BYTES} bytes")
    return value


Body = Annotated[str, AfterValidator(_body)]


class Heartbeat(_Model):
    """`coordination/heartbeats/<id>.yaml`: a session's latest heartbeat.

    The founding plan's four fields: ACTION TARGET PHASE PROGRESS.
    """

    session: SessionId
    action: Field200 = Field(description="What the session is doing, e.g. 'implementing'.")
    target: Field200 = Field(description="What it is doing it to, e.g. 'i-match'.")
    phase: Field200 = Field(description="Where it is, e.g. 'tests'.")
    progress: int = Field(ge=0, le=100, description="Percent done, 0-100.")
    at: Timestamp = Field(description="When the session sent it.")


class Message(_Model):
    """`coordination/messages/<to>/<YYYY-MM-DD>/<id>.yaml`: one message.

    `to` is a session id or `broadcast`. Messages are only ever added, never changed.
    """

    id: MessageId = Field(
        description="Unique and time-sortable: UTC time to the millisecond + random."
    )
    sender: Sender = Field(description="A session id, or an approver's e-mail (format 3).")
    to: Recipient
    subject: Subject
    body: Body
    sent_at: Timestamp
    reply_to: MessageId | None = Field(None, description="Id of the message this one answers.")


ApprovalKind = Literal["registry", "claim", "general"]


class Approval(_Model):
    """`coordination/approvals/<id>.yaml`: a request for a human's approval.

    Approved by `gitcoord approval grant` (approved_by = the approver's git email)
    or by a listed approver merging the `gitcoord-approval/<id>` branch.
    """

    id: ApprovalId
    kind: ApprovalKind = Field(
        "general", description="registry: activation; claim: a pending claim; general."
    )
    subject: Subject
    note: Note = ""
    resource: str | None = Field(None, description="For kind claim: the claim it gates.")
    requested_by: SessionId
    requested_at: Timestamp
    status: Literal["pending", "approved", "rejected"] = "pending"
    approved_by: Email | None = None
    approved_at: Timestamp | None = None
    rejected_by: Email | None = Field(None, description="Format 3: the approver who rejected it.")
    rejected_at: Timestamp | None = None
    reason: Note = Field("", description="Format 3: why it was rejected, told to the requester.")

    NEWER_FIELDS: ClassVar[tuple[str, ...]] = ("reason",)


class Activation(_Model):
    """`coordination/activation.yaml`: the registry was activated (all slots, approved)."""

    activated_at: Timestamp
    activated_by: SessionId
    approval: ApprovalId
    sessions: int = Field(ge=1)


Priority = Literal["P0", "P1", "P2", "P3"]
TaskId = Annotated[str, StringConstraints(pattern=TASK_ID_PATTERN)]
MilestoneName = Annotated[str, StringConstraints(pattern=SESSION_ID_PATTERN)]


class Task(_Model):
    """`coordination/tasks/<id>.yaml`: one item of the work board.

    Who is working on it is not stored here: that is the claim
    `claims/task/<id>.yaml`, so the task and its claim cannot drift apart.
    """

    id: TaskId = Field(description="Short and stable: t1, t2, ... (the next free number).")
    title: Subject
    priority: Priority = "P2"
    depends_on: list[TaskId] = Field(
        default_factory=list,
        max_length=DEPENDS_MAX,
        description=f"Tasks that must be done first (at most {DEPENDS_MAX}).",
    )
    milestone: MilestoneName | None = None
    note: Note = ""
    created_by: Sender = Field(description="A session, or an approver's e-mail (format 3).")
    created_at: Timestamp
    done_by: SessionId | None = None
    done_at: Timestamp | None = None

    @property
    def done(self) -> bool:
        return self.done_at is not None


class Step(_Model):
    name: Subject
    by: SessionId | None = Field(
        None,
        description=(
            "Format 3: who may tick this step: `human` (a listed approver, as a person "
            "without a session) or a session id. Unset: any session. Fixed once added."
        ),
    )
    done_by: Sender | None = Field(
        None, description="Who ticked it: a session, or an approver's e-mail (format 3)."
    )
    done_at: Timestamp | None = None

    NEWER_FIELDS: ClassVar[tuple[str, ...]] = ("by",)


class Milestone(_Model):
    """`coordination/milestones/<name>.yaml`: multi-step progress (the founding MILESTONES/)."""

    name: MilestoneName
    steps: list[Step] = Field(min_length=1, max_length=100)
    created_by: SessionId
    created_at: Timestamp

    @property
    def progress(self) -> float:
        return sum(1 for s in self.steps if s.done_at is not None) / len(self.steps)


class Slot(_Model):
    number: int = Field(ge=1)
    session: SessionId | None = Field(None, description="Suggested session id for this slot.")
    role: Role
    goal: Goal
    responsibilities: list[Field200] = Field(default_factory=list)


class Roster(_Model):
    """`coordination/roster.yaml`: the slots of a template (init --template)."""

    template: str = Field(max_length=100)
    description: Note = ""
    slots: list[Slot] = Field(min_length=1, max_length=1000)

    def slot(self, number: int) -> Slot | None:
        return next((s for s in self.slots if s.number == number), None)


class ReadMark(_Model):
    """`coordination/reads/<id>.yaml`: how far a session has read its inbox.

    Every message already on the branch at commit `through` counts as read;
    anything added after it is unread.
    """

    session: SessionId
    through: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{40}([0-9a-f]{24})?$")]
    at: Timestamp
