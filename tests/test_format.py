"""The documented branch format (coordination/ in this repo) stays in sync with the models."""

from __future__ import annotations

from conftest import REPO_ROOT

from gitcoord import schema
from gitcoord.models import DOCUMENTS
from gitcoord.state import DirSource, load_state
from gitcoord.validate import check_state

EXAMPLE = REPO_ROOT / "coordination" / "example"


def test_json_schemas_match_models() -> None:
    for name, text in schema.render().items():
        path = schema.SCHEMA_DIR / name
        assert path.exists(), f"{name} missing: run python -m gitcoord.schema"
        assert path.read_text() == text, f"{name} is stale: run python -m gitcoord.schema"
    assert schema.main(["--check"]) == 0


def test_example_tree_is_a_valid_state() -> None:
    state = load_state(DirSource(str(EXAMPLE)))
    assert state.config is not None
    assert check_state(state) == []


def test_example_tree_shows_every_kind_of_file() -> None:
    state = load_state(DirSource(str(EXAMPLE)))
    shown = {"config"} if state.config else set()
    if state.sessions:
        shown.add("session")
    if state.claims:
        shown.add("claim")
    assert shown == set(DOCUMENTS), f"example tree lacks {set(DOCUMENTS) - shown}"
