"""The house rules: imports only point down the data path, and every verb has every face.

- The package's import graph — imports inside functions included, `TYPE_CHECKING`
  blocks aside — has no cycle, and no module imports one of a higher layer.
- The click application's commands and the tools that the MCP SDK's own client
  lists are both the verb registry: a verb missing from either face fails here,
  against a short reviewed list of commands that are for people only.
"""

from __future__ import annotations

import ast
import os
import sys
from pathlib import Path

import anyio
import click
from conftest import World, run
from mcp import Client, StdioServerParameters

import gitcoord
from gitcoord.api.verbs import ALL
from gitcoord.domain.graph import cycles
from gitcoord.faces.cli import cli

PACKAGE = Path(gitcoord.__file__).resolve().parent

# Top-down along the data path. A module may import its own layer's modules and any
# layer below; `base` (errors, clock) is below everything, gitio just above it.
LAYERS = ["package", "faces", "api", "ops|audit", "domain", "store", "gitio", "base"]
BASE = {"gitcoord.errors", "gitcoord.clock", "gitcoord.version"}
# The package itself (its lazy `Coordinator`) and `python -m gitcoord` stand on top.
PACKAGE_FACE = {"gitcoord", "gitcoord.__main__"}

# Commands that are not verbs an agent calls: wiring gitcoord into tools (hooks, mcp,
# integrate, the Claude Code hook handlers), the demo, and what only a human may do.
HUMAN_ONLY = {
    "init",  # creates the branch and names its approvers
    "upgrade",  # changes config.yaml's format: the approvers' (it locks out older clients)
    "approval grant",  # a human's approval, as the human's git identity
    "approval reject",  # likewise: a decision is a person's
    "approver add",  # the approver list: the approvers' own, signed by their keys
    "approver remove",
    "signatures",  # requiring signatures is an approver's decision
    "key revoke",  # an approver's act
    "key rotate",  # replaces the user's machine key: the user's, not a session's
    "hooks install",
    "hooks uninstall",
    "hooks run",
    "mcp",
    "integrate",
    "demo",
    "web",  # a person's review page: its approve and reject buttons are the person's
    "hook session-start",
    "hook post-tool-use",
    "hook pre-tool-use",
    "hook stop",
}


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer(module: str) -> int:
    if module in BASE:
        return len(LAYERS) - 1
    if module in PACKAGE_FACE:
        return 0
    if module in ("gitcoord.gitio", "gitcoord.sshsig"):  # the doors to git and ssh-keygen
        return LAYERS.index("gitio")
    top = module.split(".")[1]
    for i, names in enumerate(LAYERS):
        if top in names.split("|"):
            return i
    raise AssertionError(f"{module} belongs to no layer: add it to LAYERS or BASE")


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(source: str, module: str, is_package: bool) -> set[str]:
    """Every gitcoord module `source` imports, anywhere but under `if TYPE_CHECKING:`."""
    tree = ast.parse(source)
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _type_checking(node):
            skip |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    found: set[str] = set()
    base = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("gitcoord")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base[: len(base) - node.level + 1]
                target = ".".join(anchor + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("gitcoord"):
                continue
            # `from . import x` names a module x or a name defined in the package;
            # `graph` keeps whichever exists (a parent package is not a dependency).
            found |= {f"{target}.{alias.name}|{target}" for alias in node.names}
    return found


def graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    edges: dict[str, set[str]] = {}
    for name, path in files.items():
        targets = set()
        for found in imports_of(path.read_text(), name, path.name == "__init__.py"):
            module, _, package = found.partition("|")
            targets.add(module if module in files else package or module)
        edges[name] = {t for t in targets if t in files and t != name}
    return edges


def test_the_import_graph_has_no_cycle() -> None:
    edges = graph()
    assert len(edges) > 40  # the whole package was read
    assert cycles(edges) == []


def test_imports_only_point_down_the_data_path() -> None:
    upward = [
        f"{src} -> {dst}"
        for src, dsts in sorted(graph().items())
        for dst in sorted(dsts)
        if layer(dst) < layer(src) and not dst.startswith(src + ".")  # a package its children
    ]
    assert upward == []


def test_the_checks_can_fail() -> None:
    """The graph reader sees imports inside functions and skips TYPE_CHECKING blocks."""
    source = (
        "from typing import TYPE_CHECKING\n"
        "from ..domain import state\n"
        "if TYPE_CHECKING:\n    from ..faces import cli\n"
        "def f():\n    from ..api.coordinator import Coordinator\n"
    )
    got = {t.partition("|")[0] for t in imports_of(source, "gitcoord.store.x", is_package=False)}
    assert "gitcoord.domain.state" in got and "gitcoord.api.coordinator.Coordinator" in got
    assert not any(t.startswith("gitcoord.faces") for t in got)
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert layer("gitcoord.store.transaction") > layer("gitcoord.domain.state")


def click_commands(group: click.Group, prefix: str = "") -> set[str]:
    ctx = click.Context(group)
    found: set[str] = set()
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        assert cmd is not None, name
        full = f"{prefix}{name}"
        if isinstance(cmd, click.Group):
            found |= click_commands(cmd, full + " ")
        else:
            found.add(full)
    return found


def test_every_verb_has_a_command_and_every_command_is_a_verb_or_reviewed() -> None:
    commands = click_commands(cli)
    verbs = {v.name for v in ALL}
    assert verbs <= commands
    assert commands - verbs <= HUMAN_ONLY, commands - verbs - HUMAN_ONLY


def test_the_cli_and_the_mcp_tools_offer_the_same_verbs(world: World) -> None:
    clone = world.clone("a")
    assert run(clone, "init").code == 0

    async def listed() -> dict[str, object]:
        params = StdioServerParameters(
            command=sys.executable,
            args=["-m", "gitcoord", "-C", str(clone), "mcp"],
            cwd=str(clone),
            env=dict(os.environ),
        )
        async with Client(params, mode="legacy", read_timeout_seconds=60) as client:
            return {t.name: t for t in (await client.list_tools()).tools}

    tools = anyio.run(listed)
    commands = click_commands(cli)
    for_agents = {c.replace(" ", "_") for c in commands - HUMAN_ONLY}
    assert set(tools) == for_agents
    # what the tools say about themselves comes from the same declarations
    by_name = {v.method: v for v in ALL}
    for name, t in tools.items():
        verb = by_name[name]
        hints = t.annotations  # type: ignore[attr-defined]
        assert hints.read_only_hint is (not verb.writes), name
        assert hints.idempotent_hint is verb.idempotent, name
        required = set(t.input_schema.get("required", []))  # type: ignore[attr-defined]
        assert required == {p.name for p in verb.params if p.required}, name


def test_the_python_api_and_help_are_made_from_the_declarations() -> None:
    import inspect

    from gitcoord import Coordinator

    for verb in ALL:
        method = getattr(Coordinator, verb.method)
        params = list(inspect.signature(method).parameters)[1:]  # after self
        assert params == [p.name for p in verb.params], verb.name
        assert method.__doc__ == verb.help
    claim = inspect.signature(Coordinator.claim).parameters
    assert claim["type"].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    assert claim["ttl"].kind is inspect.Parameter.KEYWORD_ONLY and claim["ttl"].default is None
    r = run(Path("."), "claim", "--help")
    assert r.code == 0 and "Arguments:" in r.out and "TYPE  Kind of resource" in r.out, r.out
