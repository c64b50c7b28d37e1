"""`gitcoord mcp` driven over stdio by the MCP SDK's own client.

Real processes and real git: each server is `python -m gitcoord --session X mcp`
started in its own clone of a bare remote, spoken to with `mcp.Client` over the
server's stdin/stdout, and what the tools did is read back with the CLI from a
third clone.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from conftest import World, flusher_lock, git, run
from mcp import Client, StdioServerParameters
from mcp.types import CallToolResult, TextContent

TOOLS = {
    "register",
    "claim",
    "renew",
    "release",
    "heartbeat",
    "send",
    "inbox",
    "status",
    "log",
    "next",
    "task_add",
    "task_list",
    "task_done",
}


@asynccontextmanager
async def server(clone: Path, session: str | None) -> AsyncIterator[Client]:
    """`gitcoord mcp` in `clone`, connected with the legacy initialize handshake."""
    args = ["-m", "gitcoord", "-C", str(clone)]
    if session:
        args += ["--session", session]
    args.append("mcp")
    params = StdioServerParameters(
        command=sys.executable, args=args, cwd=str(clone), env=dict(os.environ)
    )
    async with Client(params, mode="legacy", read_timeout_seconds=60) as client:
        yield client


def text(result: CallToolResult) -> str:
    return "\n".join(c.text for c in result.content if isinstance(c, TextContent))


def ok(result: CallToolResult) -> dict[str, Any]:
    assert not result.is_error, text(result)
    assert isinstance(result.structured_content, dict), result
    return result.structured_content


def status_json(cwd: Path) -> dict[str, Any]:
    r = run(cwd, "status", "--json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert isinstance(doc, dict)
    return doc


@pytest.fixture
def clones(world: World) -> tuple[Path, Path, Path]:
    a, b, c = world.clone("a"), world.clone("b"), world.clone("c")
    assert run(a, "init").code == 0
    return a, b, c


def test_mcp_tools_claims_conflicts_and_messages(clones: tuple[Path, Path, Path]) -> None:
    a, b, c = clones

    async def main() -> None:
        async with server(a, "alpha") as alpha:
            info = alpha.server_info
            assert info is not None and info.name == "gitcoord"
            assert alpha.instructions and "claim" in alpha.instructions

            listed = await alpha.list_tools()
            by_name = {t.name: t for t in listed.tools}
            assert set(by_name) >= TOOLS
            # typed, documented arguments
            props = by_name["claim"].input_schema["properties"]
            assert props["type"]["type"] == "string" and props["type"]["description"]
            assert set(by_name["claim"].input_schema["required"]) == {"type", "name"}
            assert props["ttl"]["description"] and props["note"]["description"]
            hb = by_name["heartbeat"].input_schema["properties"]["progress"]
            assert hb["maximum"] == 100 and hb["minimum"] == 0

            reg = ok(
                await alpha.call_tool(
                    "register", {"role": "Research (batch 1)", "goal": "25 prospects/day"}
                )
            )
            assert reg["session"]["id"] == "alpha" and reg["changed"] is True

            got = ok(
                await alpha.call_tool(
                    "claim", {"type": "task", "name": "i-match", "hours": 1, "note": "scoring"}
                )
            )
            assert got["op"] == "claim" and got["changed"] is True
            assert got["claim"]["holder"] == "alpha" and got["claim"]["generation"] == 1

            async with server(b, "beta") as beta:
                ok(await beta.call_tool("register", {"role": "Research (batch 2)", "goal": "25"}))
                lost = await beta.call_tool("claim", {"type": "task", "name": "i-match"})
                assert lost.is_error
                assert "conflict" in text(lost) and "held by alpha" in text(lost), text(lost)
                # beside the text, the same error document `--json` prints
                err = lost.structured_content["error"]  # type: ignore[index]
                assert (err["kind"], err["code"], err["holder"]) == ("conflict", 3, "alpha")
                assert err["generation"] == 1 and err["expires_at"]
                assert err["commit"] == got["commit"]  # the commit that won

                # invalid input is a tool error with its reason, not a crash
                bad = await beta.call_tool("claim", {"type": "Task!", "name": "x"})
                assert bad.is_error and "invalid claim type" in text(bad), text(bad)

                sent = ok(
                    await alpha.call_tool(
                        "send", {"to": "beta", "subject": "Hello", "body": "i-match is mine"}
                    )
                )
                mid = sent["message"]["id"]
                box = ok(await beta.call_tool("inbox", {}))
                assert [m["id"] for m in box["messages"]] == [mid]
                assert box["marked_read"] is True
                again = ok(await beta.call_tool("inbox", {}))
                assert again["messages"] == [] and again["unread"] == 0

                beat = ok(
                    await beta.call_tool(
                        "heartbeat",
                        {"action": "waiting", "target": "i-match", "phase": "idle", "progress": 0},
                    )
                )
                assert beat["action"] == "pushed"

                ok(await alpha.call_tool("renew", {"type": "task", "name": "i-match", "ttl": "2h"}))
                rel = ok(await alpha.call_tool("release", {"type": "task", "name": "i-match"}))
                assert rel["changed"] is True
                taken = ok(await beta.call_tool("claim", {"type": "task", "name": "i-match"}))
                assert taken["claim"]["holder"] == "beta" and taken["claim"]["generation"] == 2

                # reads: status and log, as the branch is now
                st = ok(await alpha.call_tool("status", {}))
                assert {s["id"] for s in st["sessions"]} == {"alpha", "beta"}
                log = ok(await alpha.call_tool("log", {"resource": "task/i-match"}))
                ops = [(e["op"], e["session"]) for e in log["entries"]]
                assert ops[0] == ("claim", "beta") and ("release", "alpha") in ops

                # the board: add, take with next, nothing left for the other, done
                added = ok(await alpha.call_tool("task_add", {"title": "Ship", "priority": "P0"}))
                tid = added["task"]["id"]
                peek = ok(await beta.call_tool("next", {}))  # as the CLI: no claim unless asked
                assert peek["task"]["id"] == tid and peek["claimed"] is False
                assert peek["changed"] is False
                took = ok(await beta.call_tool("next", {"claim": True}))
                assert took["task"]["id"] == tid and took["claim"]["holder"] == "beta"
                empty = await alpha.call_tool("next", {"claim": True})
                assert empty.is_error and "nothing left" in text(empty), text(empty)
                done = ok(await beta.call_tool("task_done", {"task_id": tid}))
                assert done["task"]["status"] == "done"
                board = ok(await alpha.call_tool("task_list", {"status": "all"}))
                assert [(t["id"], t["status"]) for t in board["tasks"]] == [(tid, "done")]

    anyio.run(main)

    # What the servers did is on the remote: the CLI in a third clone sees it.
    st = status_json(c)
    assert {s["id"]: s["role"] for s in st["sessions"]} == {
        "alpha": "Research (batch 1)",
        "beta": "Research (batch 2)",
    }
    claims = {cl["resource"]: cl for cl in st["claims"]}
    assert claims["task/i-match"]["holder"] == "beta"
    assert claims["task/i-match"]["status"] == "live"
    assert claims["task/i-match"]["generation"] == 2
    beta_beat = next(s for s in st["sessions"] if s["id"] == "beta")["heartbeat"]
    assert beta_beat["action"] == "waiting"


def test_mcp_session_from_env_or_argument(clones: tuple[Path, Path, Path], monkeypatch) -> None:
    a, _, c = clones

    async def main() -> None:
        # no --session and no GITCOORD_SESSION: writes say so, reads still work
        async with server(a, None) as anon:
            refused = await anon.call_tool("register", {"role": "r", "goal": "g"})
            assert refused.is_error and "no session" in text(refused), text(refused)
            assert ok(await anon.call_tool("status", {}))["sessions"] == []
            # a session id given per call
            reg = ok(
                await anon.call_tool("register", {"role": "r", "goal": "g", "session": "gamma"})
            )
            assert reg["session"]["id"] == "gamma"
            bad = await anon.call_tool("claim", {"type": "task", "name": "x", "session": "../x"})
            assert bad.is_error and "invalid session id" in text(bad)

        monkeypatch.setenv("GITCOORD_SESSION", "delta")
        async with server(a, None) as env_server:
            reg = ok(await env_server.call_tool("register", {"role": "r", "goal": "g"}))
            assert reg["session"]["id"] == "delta"
            ok(await env_server.call_tool("claim", {"type": "service", "name": "api"}))

    anyio.run(main)
    claims = {cl["resource"]: cl["holder"] for cl in status_json(c)["claims"]}
    assert claims == {"service/api": "delta"}


def test_mcp_heartbeats_and_read_marks_ride_the_clones_next_push(
    clones: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the MCP server, with riding on (as agents run it): a due heartbeat and a
    moved read mark are held, not pushed; the next write of the server's session carries
    both in the same push. The test holds the clone's flusher lock: none is started."""
    a, b, c = clones
    monkeypatch.setenv("GITCOORD_RIDE", "1")
    assert run(b, "register", "--role", "r", "--goal", "g", session="bob").code == 0

    async def main() -> None:
        async with server(a, "alpha") as alpha:
            ok(await alpha.call_tool("register", {"role": "r", "goal": "g"}))
            beat = {"action": "implementing", "target": "x", "phase": "tests", "progress": 10}
            first = ok(await alpha.call_tool("heartbeat", beat))
            assert first["action"] == "held" and first["commit"] is None, first
            assert run(b, "send", "alpha", "hello", "from bob", session="bob").code == 0
            box = ok(await alpha.call_tool("inbox", {}))
            assert box["unread"] == 1 and box["mark_held"] is True and box["commit"] is None
            assert ok(await alpha.call_tool("inbox", {}))["unread"] == 0  # read by the held mark
            seen = {s["id"]: s for s in status_json(c)["sessions"]}
            assert seen["alpha"]["heartbeat"] is None
            done = ok(await alpha.call_tool("claim", {"type": "task", "name": "t1"}))
            assert done["changed"] is True

    with flusher_lock(a):
        anyio.run(main)
    seen = {s["id"]: s for s in status_json(c)["sessions"]}
    assert seen["alpha"]["heartbeat"]["progress"] == 10
    subjects = [
        line.split(" ", 1)[1]
        for line in git(
            c, "log", "-3", "--format=%H %s", "refs/gitcoord/remotes/origin/gitcoord"
        ).splitlines()
    ]
    assert subjects[0].startswith("read inbox of alpha") and subjects[1].startswith(
        "claim task/t1 by alpha"
    ), subjects
