"""Claims: leases on resources (`claim`, `renew`, `release`) and the path guard.

The decisions are `gitcoord.ops.claims` (pure); these declarations say how each
face offers them. Claim names are checked here, before git is called: a hostile or
mistyped name is exit 2 and never reaches the branch.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from ...errors import ConflictError, UsageError
from ..verb import REQUIRED, Param, Verb, wrote

if TYPE_CHECKING:
    from ..coordinator import Coordinator

TYPE = Param(
    "type",
    str,
    "Kind of resource: lowercase, e.g. task, service, path.",
    REQUIRED,
    positional=True,
    metavar="TYPE",
)
NAME = Param(
    "name",
    str,
    "The resource, e.g. i-match; a glob for paths (src/api/**); a range for batches "
    "(prospects:1-25).",
    REQUIRED,
    positional=True,
    metavar="NAME",
)
TTL = Param(
    "ttl", str, "Lease length: 30s, 10m, 2h, 1d. Default: the branch's lease.", metavar="DURATION"
)
HOURS = Param(
    "hours", float, "Lease length in hours (instead of --ttl).", metavar="H", low=0, low_open=True
)


def check_resource(type_: str, name: str) -> str:
    """The name a new claim is made under (a folder of a path claim, `docs/`, is the glob
    `docs/**`), or a usage error: a `batch` name must be items of a set, and the message
    shows the accepted forms (`gitcoord.domain.overlap`)."""
    from ...domain import names, overlap

    names.check_claim_type(type_)
    name = given_name(type_, name)
    problem = overlap.items_problem(type_, name)
    if problem:
        raise UsageError(problem, field="name")
    names.check_claim_name(name)
    if type_ == overlap.PATH_TYPE:
        try:
            overlap.matcher(name)
        except ValueError as exc:
            raise UsageError(str(exc), field="name") from None
    return name


def given_name(type_: str, name: str) -> str:
    """A claim name as people write it, as the branch spells it: a path claim of a
    folder (`docs/`) is everything below it (`docs/**`)."""
    from ...domain import overlap

    return overlap.folder_glob(name) if type_ == overlap.PATH_TYPE else name


def check_held(type_: str, name: str) -> str:
    """The name of a claim that exists already (renew, release, handoff): any valid name,
    so that a claim made before the item grammar can still be renewed and released."""
    from ...domain import names

    names.check_claim_type(type_)
    return names.check_claim_name(given_name(type_, name))


def lease(ttl: str | timedelta | None, hours: float | None) -> timedelta | None:
    """The lease asked for (--ttl or --hours), or None for the branch's default."""
    from ... import clock

    if ttl is not None and hours is not None:
        raise UsageError("give either --hours or --ttl, not both")
    if isinstance(ttl, str):
        return clock.parse_ttl(ttl)
    if ttl is not None:
        return ttl
    if hours is not None:
        return clock.hours(hours)
    return None


def _claim(
    c: Coordinator,
    type: str,
    name: str,
    ttl: str | timedelta | None = None,
    hours: float | None = None,
    note: str | None = None,
    new_type: bool = False,
) -> Any:
    from ... import clock
    from ...ops import claims
    from .approvals import new_approval_id

    name = check_resource(type, name)
    length = lease(ttl, hours)
    try:
        return c.transact(
            lambda s: claims.claim(
                s,
                clock.now(),
                session=c.session,
                type_=type,
                name=name,
                ttl=length,
                note=note,
                approval_id=new_approval_id(),
                new_type=new_type,
            )
        )
    except ConflictError:
        c.count_collision()  # counted in `metrics` once carried to the branch
        raise


def _claim_text(doc: dict[str, Any]) -> str:
    c = doc["claim"]
    verb = {"claim": "claimed", "renew": "renewed", "takeover": "took over"}[doc["op"]]
    if c.get("status") == "pending":
        verb += f" (PENDING approval {c['approval']}: live once approved)"
    return wrote(
        doc,
        f"{verb} {c['resource']} until {c['expires_at']} (generation {c['generation']})",
        f"{c['resource']} unchanged",
    )


CLAIM = Verb(
    "claim",
    "Claim TYPE NAME (e.g. `task i-match`) for a lease, so no other session works on it.",
    _claim,
    _claim_text,
    (
        TYPE,
        NAME,
        TTL,
        HOURS,
        Param("note", str, "What you are doing with it.", metavar="TEXT"),
        Param(
            "new_type",
            bool,
            "TYPE is new on this branch, and meant: claim it without asking whether TYPE "
            "and NAME were swapped.",
            False,
        ),
    ),
    details="Held by another session and unexpired: exit 3 (a conflict) naming the holder, "
    "the expiry and the commit that won. Expired (past the clock-skew grace): taken over, "
    "generation + 1. Already yours: renewed. The result's claim.generation is a fencing token."
    "\n\nNames that cover items: `batch prospects:1-25` (also 1..25, 1,3,7, 1-5,9, or "
    "`prospects` / `prospects:*` for the whole set); any two claims that share an item "
    "conflict. `path 'src/api/**'` claims files by a glob, `path docs/` a folder. A TYPE "
    "neither in use on this branch nor a common one (task, path, batch, service, ...) is "
    "questioned (exit 2, e.g. `claim i-match task`: did you mean `claim task i-match`?); "
    "--new-type starts using it.",
)


def _renew(
    c: Coordinator,
    type: str,
    name: str,
    ttl: str | timedelta | None = None,
    hours: float | None = None,
) -> Any:
    from ... import clock
    from ...ops import claims

    name = check_held(type, name)
    length = lease(ttl, hours)
    return c.transact(
        lambda s: claims.renew(s, clock.now(), session=c.session, type_=type, name=name, ttl=length)
    )


RENEW = Verb(
    "renew",
    "Extend a claim you hold (exit 4 if it is not yours).",
    _renew,
    lambda doc: wrote(
        doc, f"renewed {doc['claim']['resource']} until {doc['claim']['expires_at']}", "unchanged"
    ),
    (TYPE, NAME, TTL, HOURS),
)


def _release(c: Coordinator, type: str, name: str) -> Any:
    from ... import clock
    from ...ops import claims

    name = check_held(type, name)
    return c.transact(
        lambda s: claims.release(s, clock.now(), session=c.session, type_=type, name=name)
    )


RELEASE = Verb(
    "release",
    "Release a claim you hold (exit 4 if someone else holds it).",
    _release,
    lambda doc: wrote(
        doc,
        f"released {doc['claim']['resource']}",
        f"{doc['claim']['resource']} was already released",
    ),
    (TYPE, NAME),
    details="Releasing twice is not an error. The claim stays on the branch as a tombstone, "
    "so the next grant continues its generation.",
    idempotent=True,
)


def _handoff(
    c: Coordinator,
    type: str,
    name: str,
    to: str,
    ttl: str | timedelta | None = None,
    hours: float | None = None,
    note: str | None = None,
) -> Any:
    from ... import clock
    from ...domain import names
    from ...ops import claims

    name = check_held(type, name)
    if not names.is_number(to):
        names.check_session_id(to)
    length = lease(ttl, hours)
    return c.transact(
        lambda s: claims.handoff(
            s,
            clock.now(),
            session=c.session,
            type_=type,
            name=name,
            to=to,
            ttl=length,
            note=note,
        )
    )


HANDOFF = Verb(
    "handoff",
    "Hand a claim you hold to another session TO (an id or a number), in one commit.",
    _handoff,
    lambda doc: wrote(
        doc,
        f"handed {doc['claim']['resource']} to {doc['to']} until {doc['claim']['expires_at']} "
        f"(generation {doc['claim']['generation']})",
        "unchanged",
    ),
    (
        TYPE,
        NAME,
        Param(
            "to",
            str,
            "The session that takes it over: an id or a number.",
            REQUIRED,
            positional=True,
            metavar="TO",
        ),
        TTL,
        HOURS,
        Param(
            "note",
            str,
            "What the receiver should know (default: the claim's note).",
            metavar="TEXT",
        ),
    ),
    details="Only the holder of a live claim hands it off, and only to a present session. "
    "The receiver holds it from now with a new lease (--ttl/--hours, else the branch's "
    "default) and the generation (fencing token) + 1; its inbox tells it who handed it what. "
    "The server hook accepts a holder change only as this (a `handoff` commit by the holder) "
    "or as a takeover after expiry. Needs a branch at format 3.",
    destructive=True,
)


def _guard(
    c: Coordinator,
    paths: list[str] | tuple[str, ...] = (),
    staged: bool = False,
    fresh_timeout: float = 3.0,
) -> dict[str, Any]:
    # PATHS are relative to where gitcoord runs (-C); staged files come from the top of
    # the work tree, so --staged is the same from any folder of the repository.
    todo = list(paths) + (c.staged_paths() if staged else [])
    data = c.check_paths(todo, timeout=fresh_timeout)
    if data["violations"]:
        lines = [
            f"  {v['path']}: claimed by {v['holder']} ('{v['claim']}') until {v['expires_at']}"
            for v in data["violations"]
        ]
        stale = "" if data["fresh"] else " (judged by the last fetched state)"
        raise ConflictError(
            f"{len(data['violations'])} path(s) are claimed by other sessions{stale}:\n"
            + "\n".join(lines),
            violations=data["violations"],
            fresh=data["fresh"],
        )
    if data.get("unchecked"):
        data["warnings"] = [
            f"nothing was checked: {data['unchecked']}; the paths pass unchecked "
            "(`git config gitcoord.pathClaims true` refuses them instead)"
        ]
    elif not data["fresh"]:
        data["warnings"] = [
            f"could not reach the remote ({data.get('reason') or 'no answer'}); "
            "checked against the last fetched state"
        ]
    return data


def _guard_text(doc: dict[str, Any]) -> str:
    if doc.get("unchecked") and doc["checked"]:
        return f"not checked: {doc['checked']} path(s) pass with no state to judge them by"
    return f"ok: {doc['checked']} path(s) free to change"


GUARD = Verb(
    "guard",
    "Refuse (exit 3) when a path is inside another session's live path claim.",
    _guard,
    _guard_text,
    (
        Param(
            "paths",
            list,
            "Files to check (relative to -C, or absolute).",
            (),
            positional=True,
            metavar="PATHS",
        ),
        Param(
            "staged",
            bool,
            "Check every file the commit being made changes (added, modified, deleted, "
            "renamed: both names), from any folder of the work tree.",
            False,
        ),
        Param(
            "fresh_timeout",
            float,
            "How long to try for the freshest state before using the last fetched one.",
            3.0,
            metavar="SECONDS",
            low=0,
            show_default=True,
        ),
    ),
    details="Path claims are gitignore-style globs: `gitcoord claim path 'src/api/**'`. The "
    "pre-commit hook runs `gitcoord guard --staged`; the holder of a claim and unclaimed paths "
    "pass. `git commit --no-verify` skips it, as any git hook. With no state to judge by "
    "(nothing fetched yet and the remote not answering, or no coordination branch) it "
    "refuses (exit 6) in a repository that uses path claims (`git config gitcoord.pathClaims "
    "true`, which `hooks install` sets), and elsewhere passes saying that it checked nothing.",
    writes=False,
    idempotent=True,
)

VERBS = (CLAIM, RENEW, RELEASE, HANDOFF, GUARD)
