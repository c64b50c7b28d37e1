"""`gitcoord mcp`: gitcoord's verbs as MCP tools, served over stdio.

Built on the official MCP Python SDK (`mcp` 2.x, `MCPServer`). One
`Coordinator` lives as long as the server and is closed when it stops; every
tool call still reads the branch as it is now (the Coordinator caches nothing
between calls). Tool calls run on worker threads, so they are serialised by one
lock: the Coordinator's `git cat-file --batch` reader serves one caller at a
time.

Errors: a `GitcoordError` comes back as a tool error (`isError: true`) whose
text is `<kind>: <message>`, e.g. `conflict: task/x is held by s1 until ...`.
The SDK withholds the text of any other exception, which is why every
anticipated failure is raised as the SDK's `ToolError`.

Only this module imports `mcp`, so the rest of the CLI does not pay for it.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field

from .. import __version__
from ..api.coordinator import AUTO, Coordinator
from ..domain import names
from ..errors import GitcoordError

T = TypeVar("T")

INSTRUCTIONS = """\
gitcoord coordinates many AI coding sessions through a git branch: each session
registers a number, a role and a goal; claims what it works on so no two sessions
take the same thing (the first claim wins, a held claim is an error naming the
holder); says what it is doing with heartbeats; and talks with messages.

Start with `status` and `inbox`. Before working on a task, a service or a set of
files, `claim` it (type `task`, `service`, `path` with a glob such as
`src/api/**`, ...). `renew` long work before the lease ends, `release` when done,
and send a `heartbeat` every few minutes. If the server has no session
configured, pass your session id as `session` on each call.
"""

# --- typed, documented arguments --------------------------------------------------

SessionArg = Annotated[
    str | None,
    Field(
        description=(
            "Act as this session id. Defaults to the server's session (--session or "
            "$GITCOORD_SESSION); needed when the server was started without one."
        )
    ),
]
ClaimType = Annotated[
    str,
    Field(description="Kind of resource: lowercase, e.g. 'task', 'service', 'path'."),
]
ClaimName = Annotated[
    str,
    Field(description="The resource, e.g. 'i-match', or a glob for paths such as 'src/api/**'."),
]
Ttl = Annotated[
    str | None,
    Field(description="Lease length: '30s', '10m', '2h', '1d'. Default: the branch's lease."),
]
Hours = Annotated[float | None, Field(description="Lease length in hours (instead of ttl).", gt=0)]


def _outcome(outcome: Any) -> dict[str, Any]:
    """The same document `gitcoord <verb> --json` prints."""
    return {
        **outcome.change.result,
        "op": outcome.change.op,
        "changed": outcome.commit is not None,
        "commit": outcome.commit,
        "attempts": outcome.attempts,
    }


def _tool_error(err: GitcoordError) -> ToolError:
    return ToolError(f"{err.kind}: {err.message}")


class _Gate:
    """One Coordinator, one caller at a time, errors turned into tool errors."""

    def __init__(self, coord: Coordinator) -> None:
        self.coord = coord
        self.default_session = coord.session
        self._lock = threading.Lock()

    def __call__(self, session: str | None, fn: Callable[[Coordinator], T]) -> T:
        with self._lock:
            try:
                acting = names.check_session_id(session) if session else self.default_session
                self.coord.session = acting
                try:
                    return fn(self.coord)
                finally:
                    self.coord.session = self.default_session
            except GitcoordError as err:
                raise _tool_error(err) from err
            except ToolError:
                raise
            except Exception as exc:  # a bug: say what it was, as the CLI does
                print(f"gitcoord mcp: unexpected {type(exc).__name__}: {exc}", file=sys.stderr)
                raise ToolError(f"unexpected error: {type(exc).__name__}: {exc}") from exc


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

    # --- sessions ------------------------------------------------------------

    @server.tool()
    def register(
        role: Annotated[
            str | None,
            Field(description="What this session is responsible for (needed the first time)."),
        ] = None,
        goal: Annotated[
            str | None,
            Field(description="Its measurable objective (needed the first time)."),
        ] = None,
        number: Annotated[
            int | None,
            Field(description="Session number to ask for, 1..slots. Default: lowest free.", ge=1),
        ] = None,
        session: SessionArg = None,
    ) -> dict[str, Any]:
        """Register this session: a unique number, a role and a goal.

        Registering again updates role and goal and keeps the number. A number
        already taken by another session is an error listing the free numbers.
        """
        return gate(session, lambda c: _outcome(c.register(role=role, goal=goal, number=number)))

    # --- claims --------------------------------------------------------------

    @server.tool()
    def claim(
        type: ClaimType,
        name: ClaimName,
        ttl: Ttl = None,
        hours: Hours = None,
        note: Annotated[str | None, Field(description="What you are doing with it.")] = None,
        session: SessionArg = None,
    ) -> dict[str, Any]:
        """Claim TYPE/NAME for a lease, so no other session works on it.

        Held by another session and unexpired: an error naming the holder and the
        expiry. Expired: taken over (generation + 1). Already yours: renewed.
        The result's `claim.generation` is a fencing token.
        """
        return gate(
            session,
            lambda c: _outcome(c.claim(type, name, ttl=ttl, hours=hours, note=note)),
        )

    @server.tool()
    def renew(
        type: ClaimType,
        name: ClaimName,
        ttl: Ttl = None,
        hours: Hours = None,
        session: SessionArg = None,
    ) -> dict[str, Any]:
        """Extend a claim you hold (an error if it is not yours)."""
        return gate(session, lambda c: _outcome(c.renew(type, name, ttl=ttl, hours=hours)))

    @server.tool()
    def release(
        type: ClaimType,
        name: ClaimName,
        session: SessionArg = None,
    ) -> dict[str, Any]:
        """Release a claim you hold. Releasing twice is not an error."""
        return gate(session, lambda c: _outcome(c.release(type, name)))

    # --- the work board -------------------------------------------------------

    @server.tool(name="next")
    def next_task(
        claim: Annotated[
            bool, Field(description="Claim it in the same transaction (no one else gets it).")
        ] = True,
        ttl: Ttl = None,
        session: SessionArg = None,
    ) -> dict[str, Any]:
        """The highest-priority ready task (not done, not claimed, dependencies done).

        With claim=true (the default) it is yours in the same commit; an error says
        so when nothing is left.
        """
        return gate(session, lambda c: _outcome(c.next(take=claim, ttl=ttl)))

    @server.tool()
    def task_add(
        title: Annotated[str, Field(description="One line.")],
        priority: Annotated[
            Literal["P0", "P1", "P2", "P3"], Field(description="P0 urgent .. P3 low.")
        ] = "P2",
        depends_on: Annotated[
            list[str] | None, Field(description="Task ids (t1, t2, ...) to finish first.")
        ] = None,
        milestone: Annotated[str | None, Field(description="Milestone name.")] = None,
        note: Annotated[str, Field(description="Details.")] = "",
        session: SessionArg = None,
    ) -> dict[str, Any]:
        """Add a task to the board; it gets the next short id (t1, t2, ...)."""
        return gate(
            session,
            lambda c: _outcome(
                c.task_add(
                    title,
                    priority=priority,
                    depends_on=tuple(depends_on or ()),
                    milestone=milestone,
                    note=note,
                )
            ),
        )

    @server.tool()
    def task_list(
        status: Annotated[
            Literal["open", "ready", "claimed", "blocked", "done", "all"],
            Field(description="Which tasks."),
        ] = "open",
    ) -> dict[str, Any]:
        """Tasks by priority, oldest first within a priority, with holder and blockers."""
        return gate(None, lambda c: {"tasks": c.tasks(status)})

    @server.tool()
    def task_done(
        task_id: Annotated[str, Field(description="The task you hold, e.g. t3.")],
        session: SessionArg = None,
    ) -> dict[str, Any]:
        """Mark a task you hold done; its claim is released in the same commit."""
        return gate(session, lambda c: _outcome(c.task_done(task_id)))

    # --- heartbeats and messages ---------------------------------------------

    @server.tool()
    def heartbeat(
        action: Annotated[str, Field(description="What you are doing, e.g. 'implementing'.")],
        target: Annotated[str, Field(description="What you are doing it to, e.g. 'i-match'.")],
        phase: Annotated[str, Field(description="Where you are, e.g. 'tests'.")],
        progress: Annotated[int, Field(description="Percent done.", ge=0, le=100)],
        force: Annotated[
            bool, Field(description="Push now even if unchanged or too soon.")
        ] = False,
        session: SessionArg = None,
    ) -> dict[str, Any]:
        """Say what this session is doing. Call it every few minutes.

        To spare the remote an unchanged heartbeat is pushed only every ~10 min
        and a changed one sooner than ~2 min after the last is kept locally and
        carried by your next write (`action` in the result: pushed, skipped,
        deferred).
        """
        return gate(session, lambda c: c.heartbeat(action, target, phase, progress, force=force))

    @server.tool()
    def send(
        to: Annotated[str, Field(description="A session id, a session number, or 'broadcast'.")],
        subject: Annotated[str, Field(description="One line.")],
        body: Annotated[str, Field(description="The message, at most 64 KiB.")],
        reply_to: Annotated[
            str | None, Field(description="Id of the message this answers.")
        ] = None,
        session: SessionArg = None,
    ) -> dict[str, Any]:
        """Send a message to a session or to everyone."""
        return gate(session, lambda c: _outcome(c.send(to, subject, body, reply_to=reply_to)))

    @server.tool()
    def inbox(
        include_read: Annotated[bool, Field(description="Show read messages too.")] = False,
        peek: Annotated[bool, Field(description="Leave unread messages unread.")] = False,
        session: SessionArg = None,
    ) -> dict[str, Any]:
        """Unread direct and broadcast messages, oldest first, then marked read."""
        return gate(session, lambda c: c.inbox(include_read=include_read, peek=peek))

    # --- reads ---------------------------------------------------------------

    @server.tool()
    def status() -> dict[str, Any]:
        """Sessions (with their last heartbeat) and claims, as the branch is now."""
        return gate(None, lambda c: c.status())

    @server.tool()
    def log(
        by_session: Annotated[
            str | None, Field(description="Only this session's operations.")
        ] = None,
        resource: Annotated[
            str | None, Field(description="Only this resource ('task/x') or type ('task').")
        ] = None,
        op: Annotated[
            str | None, Field(description="Only this operation: claim, release, send, ...")
        ] = None,
        since: Annotated[
            str | None, Field(description="Only newer: a duration back ('2h') or an ISO date.")
        ] = None,
        limit: Annotated[int, Field(description="At most this many entries.", ge=1)] = 50,
    ) -> dict[str, Any]:
        """The audit trail, newest first: one entry per operation on the branch."""

        def read(c: Coordinator) -> dict[str, Any]:
            from .. import clock

            when = clock.parse_since(since) if since else None
            entries = c.log(session=by_session, resource=resource, op=op, since=when, limit=limit)
            return {"entries": [e.to_json() for e in entries]}

        return gate(None, read)

    return server


def serve(
    path: str = ".",
    session: str | None = None,
    ref: str | None = None,
    remote: str | None = AUTO,
) -> None:
    """Run the server on stdin/stdout until the client closes it."""
    coord = Coordinator(path, session=session, ref=ref, remote=remote)
    try:
        build_server(coord).run("stdio")
    finally:
        coord.close()
