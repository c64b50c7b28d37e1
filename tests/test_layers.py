"""Imports point down the data path: the store is a register of trees that knows nothing
of coordination, and the domain is built on the store, never on what is above it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "gitcoord"
# What each layer may import from gitcoord besides itself.
BELOW = {
    "store": {"errors", "clock", "gitio"},
    "domain": {"store", "errors", "clock", "gitio"},
}


def imported(path: Path) -> set[str]:
    """The gitcoord modules `path` imports, as dotted names below `gitcoord.`."""
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    package = list(rel.parts[:-1])
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = [*base, *(node.module or "").split(".")] if node.module else base
                if node.module is None:  # `from .. import x`: each name is a module
                    found |= {".".join([*target, a.name]) for a in node.names}
                    continue
                found.add(".".join(target))
            elif (node.module or "").split(".")[0] == "gitcoord":
                found.add(node.module or "")
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "gitcoord"}
    return {name.removeprefix("gitcoord.") for name in found if name != "gitcoord"}


@pytest.mark.parametrize("layer", sorted(BELOW))
def test_a_layer_imports_only_itself_and_what_is_below_it(layer: str) -> None:
    wrong = []
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        for name in sorted(imported(path)):
            top = name.split(".")[0]
            if top != layer and top not in BELOW[layer]:
                wrong.append(f"{path.relative_to(PACKAGE.parent)} imports gitcoord.{name}")
    assert not wrong, "\n".join(wrong)


def test_the_check_sees_relative_and_absolute_imports(tmp_path: Path) -> None:
    assert imported(PACKAGE / "domain" / "branch.py") >= {
        "store.transaction",
        "domain.state",
        "errors",
    }
    assert "domain.yamlio" in imported(PACKAGE / "domain" / "branch.py")  # `from . import`
