"""`gitcoord mcp`: every verb an agent may use, as MCP tools served over stdio.

Built on the official MCP Python SDK (`mcp` 2.x, `MCPServer`). The tools are
derived from the verb registry (`gitcoord.api.verbs`): one tool per verb not
marked `human` (init and approval grant stay with people), named like the
Python API's method (`claim`, `task_add`), with the verb's parameters, defaults
and help, the SDK's tool annotations (read-only, idempotent, destructive), and
the same JSON document `gitcoord <verb> --json` prints as its structured result.
Verbs that act as a session take a `session` argument too: Claude Code tells
hooks, but not MCP servers, which session they serve.

One `Coordinator` lives as long as the server and is closed when it stops;
every tool call still reads the branch as it is now (the Coordinator caches
nothing between calls). Tool calls run on worker threads, so they are
serialised by one lock: the Coordinator's `git cat-file --batch` reader serves
one caller at a time.

Errors: a `GitcoordError` comes back as a tool error (`isError: true`) whose
text is `<kind>: <message>` (e.g. `conflict: task/x is held by s1 until ...`)
and whose structured content is `{"error": {...}}` with the same fields as
`--json` prints (for a conflict: holder, expires_at, generation, commit).

Only this module imports `mcp`, so the rest of the CLI does not pay for it.
"""

from __future__ import annotations

import inspect
import json
import sys
import threading
from collections.abc import Callable
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import MCPServer
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import Field

from ..api.coordinator import AUTO, Coordinator
from ..api.verb import Param, Verb
from ..api.verbs import ALL
from ..domain import names, untrusted
from ..errors import GitcoordError
from ..version import __version__

INSTRUCTIONS = """\
gitcoord coordinates many AI coding sessions through a git branch: each session
registers a number, a role and a goal; claims what it works on so no two sessions
take the same thing (the first claim wins, a held claim is an error naming the
holder); says what it is doing with heartbeats; and talks with messages.

Start with `status` and `inbox`. Before working on a task, a service or a set of
files, `claim` it (type `task`, `service`, `path` with a glob such as
`src/api/**`, ...), or take the most urgent ready task with `next` (claim=true).
`renew` long work before the lease ends, `release` when done, and send a
`heartbeat` every few minutes. If the server has no session configured, pass
your session id as `session` on each call.
"""

SESSION = Param(
    "session",
    str,
    "Act as this session id. Defaults to the server's session (--session or "
    "$GITCOORD_SESSION); needed when the server was started without one.",
)


def _annotation(p: Param) -> Any:
    """The parameter's type for the SDK's input schema, with its help and bounds."""
    base: Any
    if p.choices is not None:
        base = Literal[p.choices]
    elif p.kind is list:
        base = list[str]
    else:
        base = p.kind
    if not p.required and p.default is None:
        base = base | None
    bounds: dict[str, Any] = {}
    if p.low is not None:
        bounds["gt" if p.low_open else "ge"] = p.low
    if p.high is not None:
        bounds["le"] = p.high
    return Annotated[base, Field(description=p.help, **bounds)]


def _result(verb: Verb, value: Any) -> CallToolResult:
    doc = verb.json(value)
    # The text is what a model reads: other sessions' words inside it stay data.
    text = untrusted.fenced(json.dumps(doc, indent=2), "the sessions of this repository")
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=doc)


def _error(err: GitcoordError) -> CallToolResult:
    return CallToolResult(
        content=[TextContent(type="text", text=f"{err.kind}: {err.message}")],
        structured_content={"error": err.to_json()},
        is_error=True,
    )


class _Gate:
    """One Coordinator, one caller at a time, as the session the call names."""

    def __init__(self, coord: Coordinator) -> None:
        self.coord = coord
        self.default_session = coord.session
        self._lock = threading.Lock()

    def __call__(self, session: str | None, fn: Callable[[Coordinator], Any]) -> Any:
        with self._lock:
            acting = names.check_session_id(session) if session else self.default_session
            self.coord.session = acting
            try:
                return fn(self.coord)
            finally:
                self.coord.session = self.default_session


def tool(verb: Verb, gate: _Gate) -> Callable[..., CallToolResult]:
    """The function the SDK serves for `verb`: its signature is the tool's input schema."""
    params = [p for p in verb.params if p.mcp] + ([SESSION] if verb.session else [])
    signature = inspect.Signature(
        [
            inspect.Parameter(
                p.name,
                inspect.Parameter.KEYWORD_ONLY,
                default=inspect.Parameter.empty if p.required else p.default,
                annotation=_annotation(p),
            )
            for p in params
        ],
        return_annotation=CallToolResult,
    )

    def call(**values: Any) -> CallToolResult:
        session = values.pop("session", None)
        for p in verb.params:
            if p.kind is list and values.get(p.name) is not None:
                values[p.name] = tuple(values[p.name])
        try:
            return _result(verb, gate(session, lambda c: verb.run(c, **values)))
        except GitcoordError as err:
            return _error(err)
        except Exception as exc:  # a bug: say what it was, as the CLI does
            print(f"gitcoord mcp: unexpected {type(exc).__name__}: {exc}", file=sys.stderr)
            return _error(GitcoordError(f"unexpected error: {type(exc).__name__}: {exc}"))

    call.__name__ = verb.method
    call.__doc__ = verb.help
    call.__signature__ = signature  # type: ignore[attr-defined]
    return call


def build_server(coord: Coordinator) -> MCPServer:
    """An MCPServer whose tools act through `coord` (tests may drive it in-process)."""
    server: MCPServer = MCPServer(
        "gitcoord",
        title="gitcoord",
        instructions=INSTRUCTIONS,
        version=__version__,
        log_level="WARNING",
    )
    gate = _Gate(coord)
    for verb in ALL:
        if verb.human:
            continue
        server.add_tool(
            tool(verb, gate),
            name=verb.method,
            description=verb.help,
            annotations=ToolAnnotations(
                title=verb.summary,
                read_only_hint=not verb.writes,
                destructive_hint=verb.destructive,
                idempotent_hint=verb.idempotent,
                open_world_hint=False,
            ),
        )
    return server


def serve(
    path: str = ".",
    session: str | None = None,
    ref: str | None = None,
    remote: str | None = AUTO,
) -> None:
    """Run the server on stdin/stdout until the client closes it."""
    from . import flusher

    coord = Coordinator(path, session=session, ref=ref, remote=remote)
    flusher.install(coord)
    try:
        build_server(coord).run("stdio")
    finally:
        coord.close()
