"""Commands that wire gitcoord into other tools: git hooks, the MCP server, Claude Code, the demo.

These are not verbs (they act on files and processes around the coordination
branch, not through it), so they are written out here; every verb is derived
from its declaration (`verbs.py`).
"""

from __future__ import annotations

import sys

import click

from ...errors import GitcoordError
from .app import common, emit
from .app import ctx as _ctx


@click.group()
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
@click.option(
    "--install",
    metavar="SPEC",
    help="With --github-workflow: the pinned gitcoord the workflow installs "
    "(default: this installation's own source, from its direct_url.json).",
)
@common
def hooks_install(server: str | None, github_workflow: bool, install: str | None) -> None:
    """Install gitcoord's hook (chaining to any hook already there).

    \b
    gitcoord hooks install                   pre-commit in this clone
    gitcoord hooks install --server PATH     pre-receive in a bare repository
    gitcoord hooks install --github-workflow validation as a GitHub Actions check
    """
    from ...api.verb import outcome_json, wrote
    from .. import githooks as hk

    ctx = _ctx()
    if github_workflow:
        outcome = hk.install_workflow(ctx.coordinator(), install)
        emit(
            outcome_json(outcome),
            wrote(
                outcome_json(outcome),
                "committed .github/workflows/gitcoord.yml to the coordination branch (a check "
                "to watch, not a required one: GitHub would refuse gitcoord's own pushes)",
                "the workflow is already on the coordination branch",
            ),
        )
        return
    if server:
        data = hk.install(server, "pre-receive")
        ref = ctx.ref
        if ref:
            set_config(server, "gitcoord.ref", ref)
    else:
        data = hk.install(ctx.path, "pre-commit")
    chained = f"; runs the previous hook first ({data['chained']})" if data["chained"] else ""
    closed = (
        "; with no state to judge by, the guard refuses (gitcoord.pathClaims true)"
        if data.get("path_claims")
        else ""
    )
    emit(data, f"installed {data['hook']}{chained}{closed}")


@hooks.command("uninstall")
@click.option(
    "--server", metavar="BARE_REPO", help="Remove the pre-receive hook from this bare repository."
)
@common
def hooks_uninstall(server: str | None) -> None:
    """Remove gitcoord's hook and put back the one it chained to."""
    from .. import githooks as hk

    data = hk.uninstall(server or _ctx().path, "pre-receive" if server else "pre-commit")
    if not data["removed"]:
        text = f"no gitcoord hook at {data['hook']}"
    else:
        text = f"removed {data['hook']}" + (
            " and restored the previous hook" if data["restored"] else ""
        )
    emit(data, text)


@hooks.command("run", hidden=True)
@click.argument("which", type=click.Choice(["pre-commit", "pre-receive", "validate-index"]))
def hooks_run(which: str) -> None:
    """What the installed shims execute (and the pre-commit framework's
    gitcoord-validate: `validate-index`)."""
    from ...errors import InvalidError
    from ...store.remote import STALE_PUSH
    from .. import githooks as hk

    if which == "pre-receive":
        lines = sys.stdin.read().splitlines()
        rejected = hk.run_pre_receive(".", lines)
        if rejected and rejected[0].startswith(STALE_PUSH):
            raise InvalidError(rejected[0])  # alone: the pusher reads it as a lost race
        if rejected:
            raise InvalidError(
                "push rejected by gitcoord:\n" + "\n".join(f"  {r}" for r in rejected)
            )
        return
    where = _ctx().path  # the hooks run where git starts them; -C for a person
    if which == "validate-index":
        click.echo(hk.run_validate_index(where))
        return
    hk.run_pre_commit(where)


def set_config(repo: str, key: str, value: str) -> None:
    from ...gitio import Git

    Git.at(repo).run(["config", key, value])


@click.command()
@common
def mcp() -> None:
    """Serve gitcoord's verbs to an AI agent over MCP (stdio).

    The session is --session / $GITCOORD_SESSION. Add it to a project with
    `gitcoord integrate claude-code`, or by hand to .mcp.json as
    {"command": "gitcoord", "args": ["mcp"]}.
    """
    from ..mcp import serve

    ctx = _ctx()
    serve(path=ctx.path, session=ctx.session, ref=ctx.ref, remote=ctx.remote)


@click.command()
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on. Anything but loopback needs --allow-remote.",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=0,
    show_default=True,
    help="Port to listen on (0: any free port).",
)
@click.option("--open", "open_browser", is_flag=True, help="Open the page in a web browser.")
@click.option(
    "--allow-remote",
    is_flag=True,
    help="Really listen beyond this machine (plain HTTP: the token travels unencrypted).",
)
@click.option(
    "--interval",
    type=click.FloatRange(1, 600),
    default=3.0,
    show_default=True,
    help="Seconds between fetches of the branch tip while a page watches.",
)
@common
def web(host: str, port: int, open_browser: bool, allow_remote: bool, interval: float) -> None:
    """Serve a live page for the daily review, on this machine.

    Sessions, claims, the board, milestones, messages, the approval queue (approve,
    reject with a reason), the health line, the day's metrics and the audit log,
    updated as the branch moves. Approving or rejecting runs the same verbs as
    `gitcoord approval ...`, as you (your git identity and user.signingKey).

    It prints a URL with a random access token; every request without it is refused.
    """
    from ..web.app import serve

    ctx = _ctx()

    def announce(info: dict[str, object]) -> None:
        emit(info, f"gitcoord web: serving {info['where']} at {info['url']}  (Ctrl-C stops)")

    serve(
        ctx.coordinator(),
        host=host,
        port=port,
        allow_remote=allow_remote,
        open_browser=open_browser,
        interval=interval,
        announce=announce,
        warn=lambda text: click.echo(f"gitcoord: warning: {text}", err=True),
    )


@click.command()
@click.argument("tool", type=click.Choice(["claude-code"]))
@click.option(
    "--remove", is_flag=True, help="Undo: remove gitcoord's entries, keep everything else."
)
@click.option("--no-mcp", is_flag=True, help="Do not add the MCP server to .mcp.json.")
@click.option("--release-on-stop", is_flag=True, help="Release the session's claims when it ends.")
@common
def integrate(tool: str, remove: bool, no_mcp: bool, release_on_stop: bool) -> None:
    """Wire gitcoord into an AI coding tool's hooks (merged, never overwritten)."""
    from ..claude.settings import claude_code

    data = claude_code(_ctx().path, remove=remove, mcp=not no_mcp, release_on_stop=release_on_stop)
    emit(data, data["summary"])


@click.command()
@click.option(
    "--sessions",
    "count",
    type=click.IntRange(2, 50),
    default=12,
    show_default=True,
    help="How many sessions.",
)
@click.option("--keep", is_flag=True, help="Keep the temporary directory and print where it is.")
@common
def demo(count: int, keep: bool) -> None:
    """Run a demo on a throwaway bare remote: sessions register, race, and the dashboard prints."""
    from ..demo import run_demo

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
