"""The command line: parse, run a verb (or a wiring command), print text or one JSON document.

The application is `app.cli` (the root group and its options); its commands are
one per verb, derived from the registry (`verbs.attach`), plus the commands that
wire gitcoord into other tools (`commands`) and Claude Code's hook handlers
(loaded only when invoked).

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

import click

from ...domain.untrusted import terminal
from ...errors import ExitCode, GitcoordError, UsageError
from .app import cli


def _attach(group: click.Group) -> None:
    """Every verb's command, and the wiring commands: made when a command is looked up."""
    from ...api.verbs import ALL, GROUPS
    from . import commands, verbs

    verbs.attach(group, ALL, GROUPS)
    for command in (commands.hooks, commands.mcp, commands.integrate, commands.demo, commands.web):
        group.add_command(command)


cli.on_first_use(_attach)

__all__ = ["cli", "main"]


def _wants_json(argv: list[str]) -> bool:
    return "--json" in argv


def _fail(err: GitcoordError, as_json: bool) -> int:
    if as_json:
        click.echo(json.dumps({"error": err.to_json()}, indent=2))
    else:
        click.echo(f"gitcoord: {terminal(err.message)}", err=True)
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
