"""Every verb gitcoord has, declared once: the registry the faces are built from.

In the spirit of pre-commit's `all_languages.py`: one module per domain declares
its verbs (`Verb`, see `gitcoord.api.verb`), and this tuple lists them in the
order `gitcoord --help` shows them. The CLI's commands, the `Coordinator`'s
methods and the MCP server's tools are derived from `ALL`; a test checks that the
click application and the MCP tools the SDK's client lists agree with it.

Adding a verb: its pure operation in `gitcoord/ops/<domain>.py`, its declaration
in the `VERBS` of `gitcoord/api/verbs/<domain>.py`, its rule in the verifier
(`gitcoord/domain/transition.py`) if it changes who may write what, its tests,
the README and the CHANGELOG. No face changes.
"""

from __future__ import annotations

from ..verb import Verb
from . import approvals, board, claims, keys, messages, reads, repair, sessions

ALL: tuple[Verb, ...] = (
    *sessions.VERBS,
    *claims.VERBS,
    *messages.VERBS,
    *board.VERBS,
    *approvals.VERBS,
    *keys.VERBS,
    *reads.VERBS,
    *repair.VERBS,
)

# Command-line groups: `gitcoord task add`, ... (their verbs are named "task add", ...).
GROUPS: dict[str, str] = {
    "task": "The work board: prioritised tasks (P0-P3) with dependencies.\n\n"
    'gitcoord task add "Deploy church-guidance-ministry" --priority P0\n'
    'gitcoord task add "CI/CD pipeline" --priority P2 --depends-on t7\n'
    "gitcoord next --claim        # the most urgent ready task, claimed\n"
    "gitcoord task done t1        # by its holder; releases the claim",
    "milestone": "Multi-step progress, as the founding plan's MILESTONES/.",
    "approval": "Ask a human, and approve: requests, grants, and the list.\n\n"
    "A request is a pending file on the branch plus a branch gitcoord-approval/<id> whose "
    "commit marks it approved: a listed approver merging its pull request approves it. "
    "`approval grant ID` approves without a forge, as the git author identity running it "
    "(listed in init --approver).",
}

GROUPS["key"] = (
    "Signing keys: this machine's (it signs for the sessions it runs), rotation, and an "
    "approver's revocation of a lost one.\n\n"
    "gitcoord key show            # keys here, the approvers' and each session's\n"
    "gitcoord key rotate          # a new machine key, rebound to its sessions\n"
    "gitcoord key revoke alice --key 'ssh-ed25519 AAAA...'   # as an approver"
)
GROUPS["approver"] = (
    "The humans who approve, each proved by their own SSH key (format 3).\n\n"
    "gitcoord approver add lead@example.com --key ~/lead.pub\n"
    "gitcoord approver remove old@example.com"
)

BY_NAME: dict[str, Verb] = {v.name: v for v in ALL}
