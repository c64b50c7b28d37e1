"""What a verb is: the one declaration from which the CLI, the Python API and MCP derive.

A verb is declared once (`gitcoord/api/verbs/<domain>.py`) as a `Verb`: its name
(`claim`, `task add`), its parameters with their type, help and default, whether
it writes, its MCP hints, how it runs on a `Coordinator`, and how its result
reads as text. The faces are built from the registry (`gitcoord.api.verbs.ALL`)
and hold no verb of their own:

- `gitcoord.faces.cli` makes one click command per verb (positional parameters
  become arguments, the rest options);
- `gitcoord.api.coordinator.Coordinator` gets one method per verb, named by the
  verb with `_` for spaces (`c.claim(...)`, `c.task_add(...)`);
- `gitcoord.faces.mcp` makes one tool per verb an agent may use (every verb not
  marked `human`), with the same parameters, defaults and results.

Standard library only: the command line imports this on every start, before it
knows whether the command will need pydantic, git or the MCP SDK.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

REQUIRED: Any = object()  # a parameter without a default


@dataclass(frozen=True)
class Param:
    """One parameter of a verb, as every face shows it.

    `kind` is one of str, int, float, bool or list (a repeatable string). A
    `positional` parameter is a command-line argument; the others are options,
    spelled `--name-with-dashes` unless `flag` says otherwise (e.g. `log`'s
    `by_session` is `--session` on the command line, where no session acts).
    """

    name: str
    kind: type
    help: str
    default: Any = None
    positional: bool = False
    flag: str | None = None
    metavar: str | None = None
    choices: tuple[str, ...] | None = None
    low: float | None = None  # inclusive, unless low_open
    high: float | None = None
    low_open: bool = False
    stdin: bool = False  # command line: the value "-" reads standard input
    percent: bool = False  # an int that people may write as 40%
    show_default: bool = False
    mcp: bool = True  # offered to agents as a tool argument (not: a file on this machine)

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    @property
    def option(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")


@dataclass(frozen=True)
class Verb:
    """One thing gitcoord does, declared once.

    `run(coordinator, **params)` does it and returns what the Python API returns
    (an `Outcome` for writes, a dict or list for reads); `to_json` turns that into
    the one JSON document that `--json` prints and MCP returns as structured
    content; `text(doc)` is how people read it.
    """

    name: str
    summary: str
    run: Callable[..., Any]
    text: Callable[[dict[str, Any]], str]
    params: tuple[Param, ...] = ()
    details: str = ""
    writes: bool = True
    idempotent: bool = False  # doing it twice has no further effect
    destructive: bool = False  # may take something away from someone
    session: bool = True  # acts as a session (MCP offers a `session` argument)
    human: bool = False  # for people only: not offered to agents over MCP
    to_json: Callable[[Any], dict[str, Any]] | None = None

    @property
    def method(self) -> str:
        """The Python API method and MCP tool name: `task add` -> `task_add`."""
        return self.name.replace(" ", "_")

    @property
    def help(self) -> str:
        return self.summary + ("\n\n" + self.details if self.details else "")

    def json(self, value: Any) -> dict[str, Any]:
        if self.to_json is not None:
            return self.to_json(value)
        if isinstance(value, dict):
            return value
        return outcome_json(value)


def outcome_json(outcome: Any) -> dict[str, Any]:
    """The document a write prints: the operation's result, and what landed."""
    return {
        **outcome.change.result,
        "op": outcome.change.op,
        "changed": outcome.commit is not None,
        "commit": outcome.commit,
        "attempts": outcome.attempts,
    }


def percent(value: Any) -> int:
    """A percentage as people write it: 40 or "40%" (a whole number 0-100)."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a percentage")
    if isinstance(value, int):
        number = value
    else:
        text = str(value).strip()
        text = text[:-1].rstrip() if text.endswith("%") else text
        if not (text.isascii() and text.isdigit() and len(text) <= 3):
            raise ValueError(
                f"{str(value)!r} is not a percentage: give a whole number from 0 to 100, "
                "e.g. 40 or 40%"
            )
        number = int(text)
    if not 0 <= number <= 100:
        raise ValueError(f"{number} is not a percentage: give a whole number from 0 to 100")
    return number


def wrote(doc: dict[str, Any], done: str, unchanged: str) -> str:
    """Text for a write: what it did and the commit, or that nothing changed."""
    if doc.get("commit"):
        return f"{done} (commit {str(doc['commit'])[:10]})"
    return unchanged
