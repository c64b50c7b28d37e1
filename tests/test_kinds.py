"""The table of kinds (gitcoord/domain/kinds.py) is the single source of what lives where.

Everything that used to be a parallel table (models.DOCUMENTS, the names.*_path
functions, state.TOP_LEVEL, State.apply, load_state, transition.model_for, doc_at
and the owner rule) must agree with it, so adding a kind is one row plus its rules.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import typing
from collections import abc
from pathlib import Path

import pytest
from conftest import REPO_ROOT, World, git, run

from gitcoord.domain import kinds, models, names, schema
from gitcoord.domain.kinds import KINDS, kind_at, kind_of
from gitcoord.domain.models import FORMAT
from gitcoord.domain.state import TOP_LEVEL, DirSource, State, load_state
from gitcoord.domain.transition import _owner, doc_at, model_for, parse_doc

EXAMPLE = REPO_ROOT / "coordination" / "example"
HELD = [k for k in KINDS if k.held is not None]


def tree_files(root: Path) -> dict[str, bytes]:
    """Every file below root/coordination, by its path on the branch."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted((root / names.ROOT).rglob("*"))
        if p.is_file()
    }


def example_docs() -> dict[str, object]:
    return {path: parse_doc(path, raw) for path, raw in tree_files(EXAMPLE).items()}


# --- the table itself ---------------------------------------------------------------


def test_rows_are_distinct_and_name_real_fields() -> None:
    assert len({k.name for k in KINDS}) == len(KINDS)
    assert len({k.model for k in KINDS}) == len(KINDS)
    assert len({k.where.top for k in KINDS}) == len(KINDS)
    for kind in KINDS:
        fields = kind.model.model_fields
        assert set(kind.key) <= set(fields), kind.name
        assert kind.owner is None or kind.owner in fields, kind.name
        assert kind.single == isinstance(kind.where, kinds.File), kind.name
    with pytest.raises(ValueError):
        kinds.Kind("bad", models.Session, kinds.File("bad.yaml"), key=("id",))


def test_documents_and_schemas_come_from_the_table() -> None:
    assert {k.name: k.model for k in KINDS} == kinds.DOCUMENTS
    assert not hasattr(models, "DOCUMENTS")  # one table: the models do not keep another
    assert set(schema.render()) == {f"{k.name}.schema.json" for k in KINDS}


def test_model_docstrings_name_the_place_the_table_gives() -> None:
    for kind in KINDS:
        doc = kind.model.__doc__ or ""
        assert doc.startswith(f"`{names.ROOT}/{kind.where.top}"), (kind.name, doc[:60])


def test_state_fields_are_the_held_kinds() -> None:
    """A held kind has its typed State field (mypy knows it), and nothing else is loaded."""
    hints = typing.get_type_hints(State)
    fields = {f.name for f in dataclasses.fields(State)} - {"problems", "source"}
    assert fields == {k.held for k in HELD}
    for kind in HELD:
        hint = hints[kind.held]
        expected = kind.model | None if kind.single else abc.Mapping[str, kind.model]
        assert hint == expected, (kind.name, hint)


def test_top_level_is_the_kinds_plus_two_entries_without_documents() -> None:
    assert {k.where.top for k in KINDS} | {names.STATE_PAGE, names.QUARANTINE} == TOP_LEVEL


# --- paths <-> kinds ------------------------------------------------------------------


def test_every_file_of_the_example_round_trips_path_kind_key() -> None:
    docs = example_docs()
    seen = set()
    for path, doc in docs.items():
        kind = kind_at(path)
        assert kind is not None, path
        assert isinstance(doc, kind.model), path
        assert kind_of(doc) is kind and model_for(path) is kind.model
        key = kind.key_of(doc)
        assert kind.key_at(path) == key, path
        assert kind.path(key, fmt=FORMAT) == path, path
        assert kind.where.misplaced(path, key, kind.key, FORMAT) is None, path
        seen.add(kind.name)
    assert seen == {k.name for k in KINDS}  # test_format keeps the example complete


def test_path_functions_are_the_tables() -> None:
    """The spelling callers use (`kinds.session_path(...)`) is one line over each row."""
    assert not hasattr(names, "session_path")  # names validates; it spells no path
    assert kinds.config_path() == kinds.CONFIG.path(fmt=1) == "coordination/config.yaml"
    assert kinds.activation_path() == kinds.ACTIVATION.path(fmt=FORMAT)
    assert kinds.roster_path() == kinds.ROSTER.path(fmt=FORMAT)
    for fmt in (3, FORMAT):
        for key in ("s-1.x", "t12"):
            assert kinds.session_path(key, fmt=fmt) == kinds.SESSION.path(key, fmt=fmt)
            assert kinds.heartbeat_path(key, fmt=fmt) == kinds.HEARTBEAT.path(key, fmt=fmt)
            assert kinds.read_path(key, fmt=fmt) == kinds.READ.path(key, fmt=fmt)
            assert kinds.milestone_path(key, fmt=fmt) == kinds.MILESTONE.path(key, fmt=fmt)
        assert kinds.approval_path("20261121-a1b2c3", fmt=fmt) == kinds.APPROVAL.path(
            "20261121-a1b2c3", fmt=fmt
        )
        assert kinds.task_path("t12", fmt=fmt) == kinds.TASK.path("t12", fmt=fmt)
        for type_, name in [("task", "i-match"), ("path", "src/api/**"), ("x", "a:1-25")]:
            path = kinds.claim_path(type_, name, fmt=fmt)
            assert path == kinds.CLAIM.path(names.resource_key(type_, name), fmt=fmt)
            assert kind_at(path) is kinds.CLAIM
            assert kinds.CLAIM.key_at(path) == names.resource_key(type_, name)
            assert path in kinds.claim_paths(type_, name)
        mid = "20261121T093000123Z-a1b2c3"
        path = kinds.message_path("bob", mid, fmt=fmt)
        assert path == kinds.MESSAGE.path(f"bob/{mid}", fmt=fmt)
        assert path.startswith(kinds.message_dir("bob") + "/")
        assert kind_at(path) is kinds.MESSAGE and kinds.MESSAGE.key_at(path) == f"bob/{mid}"


def test_the_two_layouts_spelled_out() -> None:
    """Format 3 and before: flat folders; format 4 (`SHARDED`): no folder grows unbounded."""
    mid = "20261121T093000123Z-a1b2c3"
    flat = {
        kinds.session_path("S07", fmt=3): "coordination/sessions/S07.yaml",
        kinds.task_path("t1234", fmt=3): "coordination/tasks/t1234.yaml",
        kinds.approval_path(
            "20261121-a1b2c3", fmt=3
        ): "coordination/approvals/20261121-a1b2c3.yaml",
        kinds.claim_path("path", "src/**", fmt=3): "coordination/claims/path/src%2F%2A%2A.yaml",
        kinds.message_path("bob", mid, fmt=3): f"coordination/messages/bob/2026-11-21/{mid}.yaml",
    }
    for got, want in flat.items():
        assert got == want
    h = hashlib.sha256
    sharded = {
        kinds.session_path(
            "S07", fmt=4
        ): f"coordination/sessions/{h(b'S07').hexdigest()[:2]}/S07.yaml",
        kinds.task_path("t1234", fmt=4): "coordination/tasks/1/t1234.yaml",
        kinds.task_path("t999", fmt=4): "coordination/tasks/0/t999.yaml",
        kinds.approval_path("20261121-a1b2c3", fmt=4): (
            "coordination/approvals/2026-11/21/20261121-a1b2c3.yaml"
        ),
        kinds.claim_path("path", "src/**", fmt=4): (
            f"coordination/claims/path/{h(b'src/**').hexdigest()[:2]}/src%2F%2A%2A.yaml"
        ),
        kinds.message_path(
            "bob", mid, fmt=4
        ): f"coordination/messages/bob/2026-11/21/09/{mid}.yaml",
    }
    for got, want in sharded.items():
        assert got == want
    # any file name maps somewhere, so a stray file is reported, never an exception
    assert kinds.task_path("notes", fmt=4) == "coordination/tasks/0/notes.yaml"
    assert kinds.task_path("t٣", fmt=4) == "coordination/tasks/0/t٣.yaml"
    # a file of either layout is of its kind; in the wrong one for its branch, misplaced
    old, new = kinds.session_path("S07", fmt=3), kinds.session_path("S07", fmt=4)
    assert kind_at(old) is kind_at(new) is kinds.SESSION
    assert kinds.SESSION.where.misplaced(old, "S07", ("id",), 4) is not None
    assert kinds.SESSION.where.misplaced(new, "S07", ("id",), 3) is not None
    assert kinds.SESSION.where.misplaced(new, "S07", ("id",), 4) is None


def test_paths_that_are_no_kind() -> None:
    for path in [
        names.state_page_path(),
        "coordination/quarantine/sessions__a.yaml",
        ".github/workflows/gitcoord.yml",
        "coordination/sessions/deep/er/a.yaml",  # a kind is decided by its folder and depth
        "coordination",
    ]:
        assert kind_at(path) is None and model_for(path) is None, path
    assert kind_of(b"raw") is None and kind_of(None) is None


# --- State: apply, load_state and doc_at agree ------------------------------------------


def test_apply_puts_each_kind_where_load_state_does() -> None:
    loaded = load_state(DirSource(str(EXAMPLE)))
    assert loaded.problems == ()
    docs = example_docs()
    applied = State().apply(docs)  # type: ignore[arg-type]
    for kind in HELD:
        assert getattr(applied, kind.held) == getattr(loaded, kind.held), kind.name
        assert getattr(loaded, kind.held), f"the example has no {kind.name}"
    assert applied == dataclasses.replace(loaded, problems=())


def test_doc_at_reads_back_what_is_at_each_path() -> None:
    state = load_state(DirSource(str(EXAMPLE)))
    for path, doc in example_docs().items():
        kind = kind_at(path)
        assert kind is not None
        assert doc_at(state, path) == (doc if kind.held is not None else None), path
    assert doc_at(state, names.state_page_path()) is None
    assert doc_at(state, kinds.session_path("nobody", fmt=FORMAT)) is None


def test_owner_comes_from_the_tables_owner_field() -> None:
    for path, doc in example_docs().items():
        kind = kind_at(path)
        assert kind is not None and isinstance(doc, models.BaseModel)
        expected = getattr(doc, kind.owner) if kind.owner is not None else None
        assert _owner(doc) == expected, path
    owned = {k.name: k.owner for k in KINDS if k.owner is not None}
    assert owned == {
        "session": "id",
        "heartbeat": "session",
        "read": "session",
        "message": "sender",
    }


def test_load_state_reports_misplaced_documents_by_their_location(tmp_path: Path) -> None:
    """One misplaced file per folder kind: the table's messages, unchanged."""
    for path, raw in tree_files(EXAMPLE).items():
        dest = tmp_path / path
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(raw)
    root = tmp_path / names.ROOT
    session = root / kinds.session_path("marketing-research-1", fmt=FORMAT).split("/", 1)[1]
    session.rename(session.with_name("other.yaml"))
    claim = root / kinds.claim_path("task", "i-match", fmt=FORMAT).split("/", 1)[1]
    claim.rename(claim.with_name("elsewhere.yaml"))
    task = root / kinds.task_path("t1", fmt=FORMAT).split("/", 1)[1]
    (task.parent / "notes.txt").write_text("x")
    flat = root / kinds.task_path("t2", fmt=3).split("/", 1)[1]  # the layout before format 4
    (root / kinds.task_path("t2", fmt=FORMAT).split("/", 1)[1]).rename(flat)
    got = {(p.path, p.rule, p.message) for p in load_state(DirSource(str(tmp_path))).problems}
    rel = lambda p: p.relative_to(tmp_path).as_posix()  # noqa: E731
    assert got == {
        (
            rel(session.with_name("other.yaml")),
            "path",
            "file name says 'other' but id is 'marketing-research-1'",
        ),
        (
            rel(claim.with_name("elsewhere.yaml")),
            "path",
            "type/name 'task/i-match': belongs in "
            + kinds.claim_path("task", "i-match", fmt=FORMAT),
        ),
        (
            rel(task.parent / "notes.txt"),
            "layout",
            "unexpected entry: only .yaml files belong here",
        ),
        (rel(flat), "layout", "expected a folder here"),
    }
    assert {p.rule for p in load_state(DirSource(str(tmp_path))).problems} == {"path", "layout"}


# --- a real branch ----------------------------------------------------------------------


def cli(cwd: Path, *args: str, session: str | None = None) -> dict[str, typing.Any]:
    r = run(cwd, "--json", *args, session=session)
    assert r.code == 0, (args, r.out, r.err)
    doc = json.loads(r.out)
    assert isinstance(doc, dict)
    return doc


def test_every_file_of_a_fresh_branch_is_known_to_the_table(world: World) -> None:
    a = world.clone("a")
    cli(a, "init", "--template", "marketing-12", "--approver", "test@example.com")
    cli(a, "register", session="marketing-research-1")
    cli(a, "register", "--number", "5", "--role", "r", "--goal", "g", session="bob")
    cli(a, "heartbeat", "--force", "testing", "kinds", "one", "10", session="bob")
    cli(a, "claim", "path", "src/api/**", session="bob")
    cli(a, "send", "marketing-research-1", "Hi", "body", session="bob")
    cli(a, "send", "broadcast", "All", "body", session="bob")
    cli(a, "inbox", session="marketing-research-1")
    aid = cli(a, "approval", "request", "Deploy?", session="bob")["approval"]["id"]
    cli(a, "approval", "grant", aid)  # as test@example.com, the approver
    cli(a, "state", "--write", session="bob")

    paths = git(world.remote, "ls-tree", "-r", "--name-only", "gitcoord").split()
    tops = {p.split("/")[1] for p in paths if p.startswith(names.ROOT + "/")}
    assert tops <= TOP_LEVEL
    assert tops - {names.STATE_PAGE} <= {k.where.top for k in KINDS}
    found = set()
    for path in paths:
        if not path.startswith(names.ROOT + "/") or path == names.state_page_path():
            continue
        kind = kind_at(path)
        assert kind is not None, path
        raw = git(world.remote, "show", f"gitcoord:{path}").encode()
        doc = parse_doc(path, raw)
        assert isinstance(doc, kind.model), path
        assert kind.path(kind.key_of(doc), fmt=FORMAT) == path
        found.add(kind.name)
    # activation takes every slot registered; the example tree (above) has one
    assert found == {k.name for k in KINDS} - {"activation"}, found
