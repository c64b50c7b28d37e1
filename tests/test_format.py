"""The documented branch format (coordination/ in this repo) stays in sync with the models."""

from __future__ import annotations

from conftest import REPO_ROOT

from gitcoord.domain import schema
from gitcoord.domain.kinds import DOCUMENTS
from gitcoord.domain.models import FORMAT
from gitcoord.domain.state import DirSource, load_state
from gitcoord.domain.validate import check_state

EXAMPLE = REPO_ROOT / "coordination" / "example"


def all_messages(root):
    return sorted((root / "coordination" / "messages").rglob("*.yaml"))


def test_example_messages_are_valid_and_placed_by_key() -> None:
    from gitcoord.domain import kinds, yamlio
    from gitcoord.domain.models import Message

    paths = list(all_messages(EXAMPLE))
    assert paths
    for path in paths:
        msg = Message.model_validate(yamlio.load(path.read_bytes()))
        rel = path.relative_to(EXAMPLE).as_posix()
        assert rel == kinds.message_path(msg.to, msg.id, fmt=FORMAT)


def test_json_schemas_match_models() -> None:
    for name, text in schema.render().items():
        path = schema.SCHEMA_DIR / name
        assert path.exists(), f"{name} missing: run python -m gitcoord.domain.schema"
        assert path.read_text() == text, f"{name} is stale: run python -m gitcoord.domain.schema"
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
    if state.heartbeats:
        shown.add("heartbeat")
    if state.reads:
        shown.add("read")
    if list(all_messages(EXAMPLE)):
        shown.add("message")
    for kind, present in {
        "approval": state.approvals,
        "activation": state.activation,
        "task": state.tasks,
        "milestone": state.milestones,
        "roster": state.roster,
    }.items():
        if present:
            shown.add(kind)
    assert shown == set(DOCUMENTS), f"example tree lacks {set(DOCUMENTS) - shown}"
