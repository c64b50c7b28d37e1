"""The command line: parse, call the API, print text or one JSON document.

Exit codes (also in the README):
  0 ok · 1 unexpected · 2 usage · 3 conflict (someone else was first)
  4 refused (not yours, not registered, unknown target) · 5 invalid data
  6 remote unreachable, or still rejected after the retry bound (nothing changed)

All errors are mapped in one place, `main`.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

# Pydantic looks for plugins through importlib.metadata on import (~30 ms); the
# CLI uses none. Set before anything imports pydantic.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

import click

from .. import __version__
from ..errors import ExitCode, GitcoordError, UsageError

F = TypeVar("F", bound=Callable[..., Any])

EPILOG = """\b
Exit codes: 0 ok, 2 usage, 3 conflict (someone else was first),
4 refused (not yours / not registered / unknown target), 5 invalid data,
6 remote unreachable or still rejected after retries (nothing changed), 1 unexpected.
"""


class Ctx:
    """What the group options decided, shared by every command."""

    def __init__(self) -> None:
        self.path = "."
        self.ref: str | None = None
        self.remote: str | None = "auto"
        self.session: str | None = None
        self.timeout: float | None = None
        self.json = False
        self._coord: Any = None

    def coordinator(self) -> Any:
        if self._coord is None:
            from ..api.coordinator import Coordinator

            self._coord = Coordinator(
                self.path,
                session=self.session,
                ref=self.ref,
                remote=self.remote,
                timeout=self.timeout,
            )
        return self._coord

    def close(self) -> None:
        if self._coord is not None:
            self._coord.close()


def _common(f: F) -> F:
    """--json and --session are accepted after the subcommand too."""

    def set_json(ctx: click.Context, _: click.Parameter, value: bool) -> None:
        if value:
            ctx.ensure_object(Ctx).json = True

    def set_session(ctx: click.Context, _: click.Parameter, value: str | None) -> None:
        if value:
            ctx.ensure_object(Ctx).session = value

    f = click.option(
        "--session",
        metavar="ID",
        expose_value=False,
        callback=set_session,
        help="This session's id (default: $GITCOORD_SESSION).",
    )(f)
    f = click.option(
        "--json",
        "as_json",
        is_flag=True,
        expose_value=False,
        callback=set_json,
        help="Print exactly one JSON document on stdout.",
    )(f)
    return f


def emit(data: dict[str, Any], text: str) -> None:
    ctx = click.get_current_context().find_object(Ctx)
    if ctx is not None and ctx.json:
        click.echo(json.dumps(data, indent=2, sort_keys=False))
    else:
        click.echo(text)


class LazyGroup(click.Group):
    """Commands that live in their own modules, imported only when invoked.

    Keeps `gitcoord claim` from paying for the MCP SDK, the Claude Code
    integration or the doctor: each costs imports the hot path never needs.
    """

    lazy: ClassVar[dict[str, str]] = {
        "hook": "gitcoord.faces.claude.hooks:hook",
        "doctor": "gitcoord.faces.doctor:doctor",
    }

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy:
            import importlib

            module, _, attr = self.lazy[cmd_name].partition(":")
            try:
                found: click.Command = getattr(importlib.import_module(module), attr)
            except ModuleNotFoundError:
                return None
            return found
        return super().get_command(ctx, cmd_name)


@click.group(
    cls=LazyGroup,
    epilog=EPILOG,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(__version__, prog_name="gitcoord")
@click.option(
    "-C", "path", metavar="PATH", default=".", help="Run as if started in PATH (like git -C)."
)
@click.option(
    "--ref",
    metavar="BRANCH",
    help="Coordination branch (default: git config gitcoord.ref, else 'gitcoord').",
)
@click.option(
    "--remote",
    metavar="NAME",
    help="Remote that coordinates (default: gitcoord.remote, else origin if it exists).",
)
@click.option(
    "--local", is_flag=True, help="Ignore remotes: coordinate through this repository's own branch."
)
@click.option(
    "--timeout",
    type=float,
    metavar="SECONDS",
    help="Bound on talking to the remote (default 30, or gitcoord.timeout).",
)
@_common
@click.pass_context
def cli(
    ctx: click.Context,
    path: str,
    ref: str | None,
    remote: str | None,
    local: bool,
    timeout: float | None,
) -> None:
    """Coordinate many AI coding sessions through git.

    Registrations, claims and messages are YAML files on a coordination
    branch; every change is one commit pushed with compare-and-swap, so the
    first push wins and the loser re-reads and re-decides.

    \b
    Typical session:
      export GITCOORD_SESSION=research-1
      gitcoord init                       # once per repository
      gitcoord register --role "Prospect research" --goal "25 prospects/day"
      gitcoord claim task i-match --hours 2
      gitcoord status
      gitcoord release task i-match
    """
    obj = ctx.ensure_object(Ctx)
    obj.path = path
    obj.ref = ref
    if local and remote:
        raise UsageError("--local and --remote exclude each other")
    obj.remote = None if local else (remote or "auto")
    obj.timeout = timeout
    ctx.call_on_close(obj.close)


def _ctx() -> Ctx:
    return click.get_current_context().ensure_object(Ctx)


def _wrote(outcome: Any, done: str, unchanged: str) -> str:
    if outcome.commit:
        return f"{done} (commit {outcome.commit[:10]})"
    return unchanged


def _outcome_json(outcome: Any) -> dict[str, Any]:
    return {
        **outcome.change.result,
        "op": outcome.change.op,
        "changed": outcome.commit is not None,
        "commit": outcome.commit,
        "attempts": outcome.attempts,
    }


@cli.command()
@click.option(
    "--slots",
    type=click.IntRange(1, 1000),
    default=12,
    show_default=True,
    help="How many session numbers.",
)
@click.option(
    "--lease-hours",
    type=click.FloatRange(min=0, min_open=True, max=720),
    default=2.0,
    show_default=True,
    help="Default claim lease.",
)
@click.option(
    "--stale-after",
    "stale_after_minutes",
    type=click.IntRange(1, 10080),
    default=20,
    show_default=True,
    metavar="MINUTES",
    help="Heartbeat age that marks a session stale.",
)
@click.option(
    "--clock-skew",
    "clock_skew_seconds",
    type=click.IntRange(0, 3600),
    default=60,
    show_default=True,
    metavar="SECONDS",
    help="Grace after expiry before a claim may be taken over.",
)
@click.option(
    "--approver",
    "approvers",
    multiple=True,
    metavar="EMAIL",
    help="A human who approves requests (git author email); repeatable.",
)
@click.option(
    "--require-approval",
    "require_approval",
    multiple=True,
    metavar="TYPE",
    help="A claim type that starts pending until approved (e.g. deploy); repeatable.",
)
@click.option(
    "--template",
    metavar="NAME|PATH",
    help="Start from a roster (marketing-12, dev-12, yours): slots, roles, goals, tasks.",
)
@_common
def init(**settings: Any) -> None:
    """Create the coordination branch (idempotent: exit 0 if it exists)."""
    c = _ctx().coordinator()
    outcome = c.init(**settings)
    cfg = outcome.change.result["config"]
    text = _wrote(
        outcome,
        f"initialised {c.store.where} with {cfg['slots']} slots",
        f"{c.store.where} is already initialised ({cfg['slots']} slots)",
    )
    emit(_outcome_json(outcome), text)


@cli.command()
@click.option("--role", metavar="TEXT", help="What this session is responsible for.")
@click.option("--goal", metavar="TEXT", help="Its measurable objective.")
@click.option(
    "--number", type=int, metavar="N", help="Session number in 1..slots (default: lowest free)."
)
@_common
def register(role: str | None, goal: str | None, number: int | None) -> None:
    """Register this session: a unique number, a role and a goal.

    First registration of a number wins; the loser gets exit 3 and the free
    numbers. Registering again updates role and goal and keeps the number.
    """
    outcome = _ctx().coordinator().register(role=role, goal=goal, number=number)
    s = outcome.change.result["session"]
    emit(
        _outcome_json(outcome),
        _wrote(
            outcome,
            f"registered {s['id']} as #{s['number']}: {s['role']}",
            f"{s['id']} is registered as #{s['number']} (unchanged)",
        ),
    )


def _lease_options(f: F) -> F:
    f = click.option("--ttl", metavar="DURATION", help="Lease length: 30s, 10m, 2h, 1d.")(f)
    f = click.option("--hours", type=float, metavar="H", help="Lease length in hours.")(f)
    return f


@cli.command()
@click.argument("type_", metavar="TYPE")
@click.argument("name")
@_lease_options
@click.option("--note", metavar="TEXT", help="What you are doing with it.")
@_common
def claim(type_: str, name: str, hours: float | None, ttl: str | None, note: str | None) -> None:
    """Claim TYPE NAME (e.g. `task i-match`) for a lease.

    Held by another session and unexpired: exit 3 naming the holder. Expired
    (past the clock-skew grace): taken over, generation + 1. Yours already:
    renewed.
    """
    outcome = _ctx().coordinator().claim(type_, name, ttl=ttl, hours=hours, note=note)
    c = outcome.change.result["claim"]
    verb = {"claim": "claimed", "renew": "renewed", "takeover": "took over"}[outcome.change.op]
    if c.get("status") == "pending":
        verb += f" (PENDING approval {c['approval']}: live once approved)"
    emit(
        _outcome_json(outcome),
        _wrote(
            outcome,
            f"{verb} {c['resource']} until {c['expires_at']} (generation {c['generation']})",
            f"{c['resource']} unchanged",
        ),
    )


@cli.command()
@click.argument("type_", metavar="TYPE")
@click.argument("name")
@_lease_options
@_common
def renew(type_: str, name: str, hours: float | None, ttl: str | None) -> None:
    """Extend a claim you hold (exit 4 if it is not yours)."""
    outcome = _ctx().coordinator().renew(type_, name, ttl=ttl, hours=hours)
    c = outcome.change.result["claim"]
    emit(
        _outcome_json(outcome),
        _wrote(outcome, f"renewed {c['resource']} until {c['expires_at']}", "unchanged"),
    )


@cli.command()
@click.argument("type_", metavar="TYPE")
@click.argument("name")
@_common
def release(type_: str, name: str) -> None:
    """Release a claim you hold (exit 4 if someone else holds it)."""
    outcome = _ctx().coordinator().release(type_, name)
    c = outcome.change.result["claim"]
    emit(
        _outcome_json(outcome),
        _wrote(outcome, f"released {c['resource']}", f"{c['resource']} was already released"),
    )


@cli.command()
@_common
def status() -> None:
    """Show sessions and claims as they are on the branch now."""
    from .. import clock
    from ..api import render
    from ..api.views import status_json

    c = _ctx().coordinator()
    now = clock.now()
    data = status_json(c.snapshot(), now)
    emit(data, render.status(data, now))


@cli.command()
@click.option(
    "--ref", "at_ref", metavar="REF", help="Validate this ref or commit instead of the current tip."
)
@click.option(
    "--range",
    "span",
    metavar="OLD..NEW",
    help="Validate moving the branch from OLD to NEW: every commit, and who changed what.",
)
@click.argument("path", required=False)
@_common
def validate(at_ref: str | None, span: str | None, path: str | None) -> None:
    """Check schema and invariants of the branch, a REF, or a directory PATH.

    Exit 5 listing each problem with its file.
    """
    if sum(x is not None for x in (at_ref, span, path)) > 1:
        raise UsageError("give one of --ref, --range or PATH")
    c = _ctx().coordinator()
    if path is not None:
        path = os.path.join(_ctx().path, path)
        if not os.path.isdir(path):
            raise UsageError(f"no such directory: {path}")
    problems = c.verify_range(span) if span else c.validate(ref=at_ref, path=path)
    if problems:
        from ..errors import InvalidError

        raise InvalidError(
            f"{len(problems)} problem(s):\n" + "\n".join(f"  {p}" for p in problems),
            problems=[p.to_json() for p in problems],
        )
    emit({"valid": True, "problems": []}, "valid")


@cli.command()
@click.argument("action")
@click.argument("target")
@click.argument("phase")
@click.argument("progress", type=click.IntRange(0, 100))
@click.option("--force", is_flag=True, help="Push now even if unchanged or too soon.")
@_common
def heartbeat(action: str, target: str, phase: str, progress: int, force: bool) -> None:
    """Say what this session is doing: ACTION TARGET PHASE PROGRESS (0-100).

    \b
    Example: gitcoord heartbeat implementing i-match tests 60
    Call it every few minutes. To spare the remote, an unchanged heartbeat is
    pushed only when the last one is heartbeat_quiet_seconds old (default 600),
    and a changed one sooner than heartbeat_min_seconds (default 120) after the
    last is kept locally and carried by this session's next write.
    """
    data = _ctx().coordinator().heartbeat(action, target, phase, progress, force=force)
    hb = data["heartbeat"]
    text = {
        "pushed": f"heartbeat pushed: {hb['action']} {hb['target']} ({hb['phase']}) "
        f"{hb['progress']}% (commit {str(data['commit'])[:10]})",
        "skipped": f"heartbeat unchanged; last pushed at {data['last_pushed_at']}, nothing to push",
        "deferred": f"heartbeat kept locally (last pushed at {data['last_pushed_at']}); "
        "it rides along with your next write",
    }[data["action"]]
    emit(data, text)


@cli.command()
@click.argument("to")
@click.argument("subject")
@click.argument("body")
@click.option("--reply-to", metavar="ID", help="Id of the message this answers.")
@_common
def send(to: str, subject: str, body: str, reply_to: str | None) -> None:
    """Send a message TO a session id, a session number, or `broadcast`.

    BODY `-` reads the body from stdin (at most 64 KiB).

    \b
    Examples:
      gitcoord send marketing-orchestrator "Blocked" "Need API keys for outreach"
      gitcoord send 12 "Question" "Who owns nginx?"
      gitcoord send broadcast "Completed" "i-match deployed"
      git diff | gitcoord send 4 "Review please" -
    """
    if body == "-":
        from ..domain.models import BODY_MAX_BYTES

        raw = sys.stdin.buffer.read(BODY_MAX_BYTES + 1)
        body = raw.decode("utf-8", "replace")
    outcome = _ctx().coordinator().send(to, subject, body, reply_to=reply_to)
    m = outcome.change.result["message"]
    emit(
        _outcome_json(outcome),
        f"sent {m['id']} to {m['to']} (commit {str(outcome.commit)[:10]})",
    )


@cli.command()
@click.option("--all", "include_read", is_flag=True, help="Show read messages too.")
@click.option("--peek", is_flag=True, help="Leave unread messages unread.")
@_common
def inbox(include_read: bool, peek: bool) -> None:
    """Show unread direct and broadcast messages, oldest first, then mark them read.

    The read mark is committed (`coordination/reads/<session>.yaml`), so it
    follows the session to other machines; nothing is pushed when there is
    nothing new.
    """
    from ..api import render

    data = _ctx().coordinator().inbox(include_read=include_read, peek=peek)
    emit(data, render.inbox(data))


@cli.command()
@click.option("--session", "of_session", metavar="ID", help="Only this session's operations.")
@click.option("--resource", metavar="R", help="Only this resource (task/x), or a type (task).")
@click.option("--op", metavar="OP", help="Only this operation (claim, release, send, ...).")
@click.option(
    "--since", metavar="WHEN", help="Only newer: a duration back (2h, 1d) or an ISO date."
)
@click.option("--limit", type=click.IntRange(1), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print exactly one JSON document on stdout.")
def log(
    of_session: str | None,
    resource: str | None,
    op: str | None,
    since: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """The audit trail, newest first: one line per operation from the branch history.

    Here `--session` filters the log; reading it needs no session of your own.
    """
    from .. import clock
    from ..api import render

    if as_json:
        _ctx().json = True
    when = clock.parse_since(since) if since else None
    entries = (
        _ctx()
        .coordinator()
        .log(session=of_session, resource=resource, op=op, since=when, limit=limit)
    )
    rows = [e.to_json() for e in entries]
    emit({"entries": rows}, render.log(rows))


@cli.command()
@click.option("--write", is_flag=True, help="Commit it as coordination/CURRENT_STATE.md.")
@_common
def state(write: bool) -> None:
    """Print a Markdown page of the current state (sessions, claims, recent messages)."""
    page, outcome = _ctx().coordinator().state_page(write=write)
    data: dict[str, Any] = {"markdown": page}
    text = page.rstrip("\n")
    if outcome is not None:
        data.update(_outcome_json(outcome))
        text += f"\n\n(written to coordination/CURRENT_STATE.md, commit {str(outcome.commit)[:10]})"
    emit(data, text)


@cli.command()
@_common
def metrics() -> None:
    """The founding plan's success metrics, computed from the branch history."""
    from ..api import render

    data = _ctx().coordinator().metrics()
    emit(data, render.metrics(data))


@cli.command()
@click.argument("paths", nargs=-1)
@click.option("--staged", is_flag=True, help="Check the files staged for commit.")
@click.option(
    "--fresh-timeout",
    type=float,
    default=3.0,
    show_default=True,
    metavar="SECONDS",
    help="How long to try for the freshest state before using the last fetched one.",
)
@_common
def guard(paths: tuple[str, ...], staged: bool, fresh_timeout: float) -> None:
    """Refuse (exit 3) when a path is inside another session's live path claim.

    \b
    Path claims are gitignore-style globs: `gitcoord claim path 'src/api/**'`.
    The pre-commit hook runs `gitcoord guard --staged`; the holder of a claim and
    unclaimed paths pass. `git commit --no-verify` skips it, as any git hook.
    """
    from ..errors import ConflictError

    c = _ctx().coordinator()
    todo = list(paths) + (c.staged_paths() if staged else [])
    data = c.guard(todo, timeout=fresh_timeout)
    if not data["fresh"]:
        click.echo(
            "gitcoord: warning: the remote did not answer in time; "
            "checked against the last fetched state",
            err=True,
        )
    if data["violations"]:
        lines = [
            f"  {v['path']}: claimed by {v['holder']} ('{v['claim']}') until {v['expires_at']}"
            for v in data["violations"]
        ]
        raise ConflictError(
            f"{len(data['violations'])} path(s) are claimed by other sessions:\n"
            + "\n".join(lines),
            violations=data["violations"],
            fresh=data["fresh"],
        )
    emit(data, f"ok: {len(todo)} path(s) free to change")


@cli.group()
def task() -> None:
    """The work board: prioritised tasks (P0-P3) with dependencies.

    \b
    gitcoord task add "Deploy church-guidance-ministry" --priority P0
    gitcoord task add "CI/CD pipeline" --priority P2 --depends-on t7
    gitcoord next --claim        # the most urgent ready task, claimed
    gitcoord task done t1        # by its holder; releases the claim
    """


@task.command("add")
@click.argument("title")
@click.option(
    "--priority", type=click.Choice(["P0", "P1", "P2", "P3"]), default="P2", show_default=True
)
@click.option(
    "--depends-on",
    "depends_on",
    multiple=True,
    metavar="ID",
    help="A task that must be done first; repeatable.",
)
@click.option("--milestone", metavar="NAME", help="The milestone this task belongs to.")
@click.option("--note", default="", metavar="TEXT")
@_common
def task_add(
    title: str, priority: str, depends_on: tuple[str, ...], milestone: str | None, note: str
) -> None:
    """Add a task; it gets the next short id (t1, t2, ...)."""
    outcome = (
        _ctx()
        .coordinator()
        .task_add(title, priority=priority, depends_on=depends_on, milestone=milestone, note=note)
    )
    t = outcome.change.result["task"]
    emit(_outcome_json(outcome), f"added {t['id']} [{t['priority']}] {t['title']} ({t['status']})")


@task.command("list")
@click.option(
    "--status",
    type=click.Choice(["open", "ready", "claimed", "blocked", "done", "all"]),
    default="open",
    show_default=True,
)
@_common
def task_list(status: str) -> None:
    """Tasks by priority, oldest first within a priority."""
    from ..api import render

    rows = _ctx().coordinator().tasks(status)
    emit({"tasks": rows}, render.tasks(rows))


@task.command("show")
@click.argument("task_id", metavar="ID")
@_common
def task_show(task_id: str) -> None:
    """One task, with its status, holder and what it waits for."""
    from ..api import render

    t = _ctx().coordinator().task(task_id)
    emit({"task": t}, render.task(t))


@task.command("done")
@click.argument("task_id", metavar="ID")
@_common
def task_done(task_id: str) -> None:
    """Mark a task you hold done (and release its claim), in one commit."""
    outcome = _ctx().coordinator().task_done(task_id)
    t = outcome.change.result["task"]
    emit(
        _outcome_json(outcome),
        _wrote(outcome, f"done {t['id']}: {t['title']}", f"{t['id']} was already done"),
    )


@cli.command("next")
@click.option("--claim", "take", is_flag=True, help="Claim it in the same transaction.")
@_lease_options
@_common
def next_cmd(take: bool, hours: float | None, ttl: str | None) -> None:
    """The highest-priority ready task: not done, not claimed, dependencies done.

    With --claim, two sessions asking at once get two different tasks (or exit 3
    when nothing is left).
    """
    outcome = _ctx().coordinator().next(take=take, ttl=ttl, hours=hours)
    t = outcome.change.result["task"]
    text = f"{t['id']} [{t['priority']}] {t['title']}"
    if outcome.change.result.get("claimed"):
        c = outcome.change.result["claim"]
        text = f"claimed {text} until {c['expires_at']} (generation {c['generation']})"
    emit(_outcome_json(outcome), text)


@cli.group()
def milestone() -> None:
    """Multi-step progress, as the founding plan's MILESTONES/."""


@milestone.command("add")
@click.argument("name")
@click.option(
    "--step",
    "steps",
    multiple=True,
    required=True,
    metavar="TEXT",
    help="A step; repeatable, in order.",
)
@_common
def milestone_add(name: str, steps: tuple[str, ...]) -> None:
    """Add a milestone with its steps."""
    outcome = _ctx().coordinator().milestone_add(name, steps)
    m = outcome.change.result["milestone"]
    emit(_outcome_json(outcome), f"added milestone {m['name']} with {len(m['steps'])} steps")


@milestone.command("done")
@click.argument("name")
@click.argument("step")
@_common
def milestone_done(name: str, step: str) -> None:
    """Mark STEP (its text or its number, 1-based) of milestone NAME done."""
    outcome = _ctx().coordinator().milestone_done(name, step)
    m = outcome.change.result["milestone"]
    emit(_outcome_json(outcome), f"{m['name']}: {m['progress']}% done")


@milestone.command("list")
@_common
def milestone_list() -> None:
    """Milestones with their progress."""
    from ..api import render

    rows = _ctx().coordinator().milestones()
    emit({"milestones": rows}, render.milestones(rows))


@cli.command()
@_common
def templates() -> None:
    """The rosters `init --template` can start from (shipped and your own)."""
    from ..domain import templates as tpl

    found = tpl.available(_ctx().coordinator()._toplevel())
    rows: list[dict[str, Any]] = []
    for name, where in sorted(found.items()):
        try:
            t = tpl.load(name if where == "shipped" else where)
        except GitcoordError as exc:
            rows.append({"name": name, "source": where, "error": exc.message})
            continue
        rows.append(
            {
                "name": name,
                "source": where,
                "slots": len(t.slots),
                "tasks": len(t.tasks),
                "description": t.description,
            }
        )
    lines = [
        f"{r['name']:<16} {r['slots']:>3} slots {r['tasks']:>3} tasks  "
        f"{r['description']}  ({r['source']})"
        if "error" not in r
        else f"{r['name']:<16} UNUSABLE: {r['error']}  ({r['source']})"
        for r in rows
    ]
    emit({"templates": rows}, "\n".join(lines))


@cli.group()
def approval() -> None:
    """Ask a human, and approve: requests, grants, and the list.

    \b
    A request is a pending file on the branch plus a branch
    gitcoord-approval/<id> whose commit marks it approved: a listed approver
    merging its pull request approves it. `approval grant ID` approves without a
    forge, as the git author identity running it (listed in init --approver).
    """


@approval.command("request")
@click.argument("subject")
@click.option("--note", default="", metavar="TEXT", help="Details for the approver.")
@click.option(
    "--kind",
    type=click.Choice(["general", "registry"]),
    default="general",
    show_default=True,
    help="registry: the approval `gitcoord activate` needs.",
)
@click.option("--pr", "open_pr", is_flag=True, help="Open the pull request with `gh` if installed.")
@_common
def approval_request(subject: str, note: str, kind: str, open_pr: bool) -> None:
    """Request approval of SUBJECT and print how to open its pull request."""
    data = _ctx().coordinator().request_approval(subject, note=note, kind=kind, open_pr=open_pr)
    a = data["approval"]
    emit(data, f"requested approval {a['id']} ({a['kind']}): {a['subject']}\n{data['how']}")


@approval.command("grant")
@click.argument("approval_id", metavar="ID")
@_common
def approval_grant(approval_id: str) -> None:
    """Approve request ID as your git identity (exit 4 unless you are a listed approver)."""
    outcome = _ctx().coordinator().grant_approval(approval_id)
    a = outcome.change.result["approval"]
    emit(
        _outcome_json(outcome),
        _wrote(
            outcome,
            f"approved {a['id']} as {a['approved_by']}",
            f"{a['id']} was already approved",
        ),
    )


@approval.command("list")
@_common
def approval_list() -> None:
    """Pending and approved requests."""
    from ..api import render

    rows = _ctx().coordinator().approvals()
    emit({"approvals": rows}, render.approvals(rows))


@cli.command()
@_common
def activate() -> None:
    """Activate the registry: every slot registered and a registry request approved."""
    outcome = _ctx().coordinator().activate()
    info = outcome.change.result["activation"]
    emit(
        _outcome_json(outcome),
        _wrote(
            outcome,
            f"activated: {info['registered']}/{info['slots']} sessions, "
            f"approval {info['approval_id']}",
            "the registry is already active",
        ),
    )


@cli.group()
def hooks() -> None:
    """Install the validating hooks: client pre-commit, server pre-receive, GitHub workflow."""


@hooks.command("install")
@click.option(
    "--server", metavar="BARE_REPO", help="Install the pre-receive hook in this bare repository."
)
@click.option(
    "--github-workflow",
    is_flag=True,
    help="Commit the validating workflow to the coordination branch.",
)
@_common
def hooks_install(server: str | None, github_workflow: bool) -> None:
    """Install gitcoord's hook (chaining to any hook already there).

    \b
    gitcoord hooks install                   pre-commit in this clone
    gitcoord hooks install --server PATH     pre-receive in a bare repository
    gitcoord hooks install --github-workflow validation as a GitHub Actions check
    """
    from . import githooks as hk

    ctx = _ctx()
    if github_workflow:
        outcome = ctx.coordinator().install_workflow()
        emit(
            _outcome_json(outcome),
            _wrote(
                outcome,
                "committed .github/workflows/gitcoord.yml to the coordination branch; make "
                "'gitcoord validate' a required status check on that branch",
                "the workflow is already on the coordination branch",
            ),
        )
        return
    if server:
        data = hk.install(server, "pre-receive")
        ref = ctx.ref
        if ref:
            subprocess_config(server, "gitcoord.ref", ref)
    else:
        data = hk.install(ctx.path, "pre-commit")
    chained = f"; runs the previous hook first ({data['chained']})" if data["chained"] else ""
    emit(data, f"installed {data['hook']}{chained}")


@hooks.command("uninstall")
@click.option(
    "--server", metavar="BARE_REPO", help="Remove the pre-receive hook from this bare repository."
)
@_common
def hooks_uninstall(server: str | None) -> None:
    """Remove gitcoord's hook and put back the one it chained to."""
    from . import githooks as hk

    data = hk.uninstall(server or _ctx().path, "pre-receive" if server else "pre-commit")
    if not data["removed"]:
        text = f"no gitcoord hook at {data['hook']}"
    else:
        text = f"removed {data['hook']}" + (
            " and restored the previous hook" if data["restored"] else ""
        )
    emit(data, text)


@hooks.command("run", hidden=True)
@click.argument("which", type=click.Choice(["pre-commit", "pre-receive"]))
def hooks_run(which: str) -> None:
    """What the installed shims execute."""
    from ..errors import InvalidError
    from . import githooks as hk

    if which == "pre-receive":
        lines = sys.stdin.read().splitlines()
        rejected = hk.run_pre_receive(".", lines)
        if rejected:
            raise InvalidError(
                "push rejected by gitcoord:\n" + "\n".join(f"  {r}" for r in rejected)
            )
        return
    hk.run_pre_commit(".")


def subprocess_config(repo: str, key: str, value: str) -> None:
    import subprocess

    from ..gitio import clean_env

    subprocess.run(["git", "config", key, value], cwd=repo, env=clean_env(), check=True)


@cli.command()
@_common
def mcp() -> None:
    """Serve gitcoord's verbs to an AI agent over MCP (stdio).

    The session is --session / $GITCOORD_SESSION. Add it to a project with
    `gitcoord integrate claude-code`, or by hand to .mcp.json as
    {"command": "gitcoord", "args": ["mcp"]}.
    """
    from .mcp import serve

    ctx = _ctx()
    serve(path=ctx.path, session=ctx.session, ref=ctx.ref, remote=ctx.remote)


@cli.command()
@click.argument("tool", type=click.Choice(["claude-code"]))
@click.option(
    "--remove", is_flag=True, help="Undo: remove gitcoord's entries, keep everything else."
)
@click.option("--no-mcp", is_flag=True, help="Do not add the MCP server to .mcp.json.")
@click.option("--release-on-stop", is_flag=True, help="Release the session's claims when it ends.")
@_common
def integrate(tool: str, remove: bool, no_mcp: bool, release_on_stop: bool) -> None:
    """Wire gitcoord into an AI coding tool's hooks (merged, never overwritten)."""
    from .claude.settings import claude_code

    data = claude_code(_ctx().path, remove=remove, mcp=not no_mcp, release_on_stop=release_on_stop)
    emit(data, data["summary"])


@cli.command()
@click.option(
    "--sessions",
    "count",
    type=click.IntRange(2, 50),
    default=12,
    show_default=True,
    help="How many sessions.",
)
@click.option("--keep", is_flag=True, help="Keep the temporary directory and print where it is.")
@_common
def demo(count: int, keep: bool) -> None:
    """Run a demo on a throwaway bare remote: sessions register, race, and the dashboard prints."""
    from .demo import run_demo

    summary = run_demo(count, keep=keep, echo=None if _ctx().json else click.echo)
    if _ctx().json:
        emit(summary, "")
    broken = (
        summary["lost_updates"] or summary["double_grants"] or len(summary["race"]["winners"]) != 1
    )
    if broken:
        raise GitcoordError(
            "demo invariants failed: expected one winner, 0 lost updates, 0 double grants"
        )




# --- entry point and the one error mapping -----------------------------------------


def _wants_json(argv: list[str]) -> bool:
    return "--json" in argv


def _fail(err: GitcoordError, as_json: bool) -> int:
    if as_json:
        click.echo(json.dumps({"error": err.to_json()}, indent=2))
    else:
        click.echo(f"gitcoord: {err.message}", err=True)
    return int(err.code)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    as_json = _wants_json(args)
    try:
        code = cli.main(args=args, prog_name="gitcoord", standalone_mode=False)
        if isinstance(code, int) and code:
            return code  # ctx.exit(n): click returns it instead of raising
    except GitcoordError as err:
        return _fail(err, as_json)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("gitcoord: aborted", err=True)
        return int(ExitCode.UNEXPECTED)
    except click.ClickException as exc:
        return _fail(UsageError(exc.format_message()), as_json)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # the one place a bug becomes exit 1, not a traceback
        if os.environ.get("GITCOORD_DEBUG"):
            raise
        return _fail(
            GitcoordError(
                f"unexpected error: {type(exc).__name__}: {exc} "
                "(set GITCOORD_DEBUG=1 for a traceback)"
            ),
            as_json,
        )
    return 0
