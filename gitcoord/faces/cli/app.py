"""The command-line application: the root group, its options, and how results print.

Every command shares `Ctx` (what the root options decided: -C, --ref, --remote,
--local, --timeout, --session, --json) and prints through `emit`: text for
people, or exactly one JSON document with --json.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

# Pydantic looks for plugins through importlib.metadata on import (~30 ms); the
# CLI uses none. Set before anything imports pydantic.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

import click

from ...domain.untrusted import terminal
from ...errors import UsageError
from ...version import __version__

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
            from ...api.coordinator import Coordinator
            from .. import flusher

            self._coord = Coordinator(
                self.path,
                session=self.session,
                ref=self.ref,
                remote=self.remote,
                timeout=self.timeout,
            )
            flusher.install(self._coord)
        return self._coord

    def close(self) -> None:
        if self._coord is not None:
            self._coord.close()


def common(f: F, *, session: bool = True) -> F:
    """--json and --session are accepted after the subcommand too (--session not where
    the command has an option of that name, as `log` does to filter by session)."""

    def set_json(ctx: click.Context, _: click.Parameter, value: bool) -> None:
        if value:
            ctx.ensure_object(Ctx).json = True

    def set_session(ctx: click.Context, _: click.Parameter, value: str | None) -> None:
        if value:
            ctx.ensure_object(Ctx).session = value

    if session:
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
    """One JSON document with --json, else the text (and any warnings on stderr)."""
    ctx = click.get_current_context().find_object(Ctx)
    if ctx is not None and ctx.json:
        click.echo(json.dumps(data, indent=2, sort_keys=False))
        return
    for warning in data.get("warnings") or ():
        click.echo(f"gitcoord: warning: {terminal(warning)}", err=True)
    click.echo(terminal(text))  # other sessions' text: no control sequences reach the terminal


class LazyGroup(click.Group):
    """Commands made or imported only when a command is looked up.

    The verbs' commands are made from the registry the first time any command is
    asked for (`on_first_use`), so `gitcoord --version` never imports it; and the
    Claude Code hook handlers live in their own module, imported only when invoked,
    so `gitcoord claim` does not pay for them.
    """

    lazy: ClassVar[dict[str, str]] = {
        "hook": "gitcoord.faces.claude.hooks:hook",
    }
    _first_use: Callable[[click.Group], None] | None = None

    def on_first_use(self, load: Callable[[click.Group], None]) -> None:
        self._first_use = load

    def _load(self) -> None:
        load, self._first_use = self._first_use, None
        if load is not None:
            load(self)

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._load()
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        self._load()
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
@common
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


def ctx() -> Ctx:
    return click.get_current_context().ensure_object(Ctx)
