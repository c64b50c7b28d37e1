"""The parse cache: a command parses only the files that changed since the last one,
and what it loads is exactly what a fresh parse would give (gitcoord/store/parsecache.py)."""

from __future__ import annotations

import io
import json
from datetime import timezone
from pathlib import Path
from typing import Any

from conftest import World, at, git, run
from hypothesis import example, given, settings
from hypothesis import strategies as st

from gitcoord import Coordinator
from gitcoord.domain import yamlio
from gitcoord.domain.branch import PARSE_VERSION
from gitcoord.domain.state import load_state
from gitcoord.store.parsecache import ParseCache
from gitcoord.store.trees import TreeSource


def setup(world: World, claims: int) -> tuple[Path, Path]:
    a, b = world.clone("a"), world.clone("b")
    assert run(a, "init").code == 0
    for repo, sid in ((a, "alice"), (b, "bob")):
        assert run(repo, "register", "--role", "r", "--goal", "g", session=sid).code == 0
    for k in range(claims):
        assert run(b, "claim", "task", f"t{k}", session="bob").code == 0
        if k % 2:
            assert run(b, "release", "task", f"t{k}", session="bob").code == 0
    return a, b


def test_a_command_parses_only_what_changed_since_the_last(world: World) -> None:
    a, b = setup(world, 6)
    with Coordinator(str(a), session="alice") as c:
        c.status()
        files = c.store.parsed.hits + c.store.parsed.misses
        assert c.store.parsed.misses >= 1 + 6  # bob and his six claim files, at least
    with Coordinator(str(a), session="alice") as c:  # a new command: from the file
        c.status()
        assert (c.store.parsed.hits, c.store.parsed.misses) == (files, 0)
    assert run(b, "claim", "task", "new", session="bob").code == 0
    with Coordinator(str(a), session="alice") as c:
        c.status()
        assert c.store.parsed.misses == 1  # the new claim file only
        c.claim("task", "mine")  # a transaction loads through the cache as well
        assert c.store.parsed.misses == 1
    with Coordinator(str(a), session="alice") as c:
        state = c.snapshot().state
        assert set(state.claims) == {f"task/t{k}" for k in range(6)} | {"task/new", "task/mine"}
        assert c.store.parsed.misses == 0  # alice's own claim file: parsed by its writer


def test_sessions_sharing_a_clone_parse_a_changed_file_once_between_them(world: World) -> None:
    a, b = setup(world, 3)
    with (
        Coordinator(str(a), session="alice") as first,
        Coordinator(str(a), session="alice") as second,
    ):
        first.status()
        second.status()  # both long-lived, both warm
        assert run(b, "claim", "task", "fresh", session="bob").code == 0
        before = second.store.parsed.misses
        first.status()  # parses bob's new claim file and saves
        assert first.store.parsed.misses >= 1
        second.status()  # finds it in the file first saved
        assert second.store.parsed.misses == before
        assert "task/fresh" in second.snapshot().state.claims


def test_a_file_another_process_parsed_meanwhile_is_not_parsed_again(tmp_path: Path) -> None:
    """Within one transaction, too: a member of a group whose push was refused decides
    again on the new tip, whose new files the first member to decide parsed and saved
    meanwhile. It looks at the file on each miss, not once per command."""
    parsed: list[bytes] = []

    def parse(raw: bytes) -> Any:
        parsed.append(raw)
        return yamlio.load(raw)

    first = ParseCache(str(tmp_path), "k", parse=parse, version="v")
    second = ParseCache(str(tmp_path), "k", parse=parse, version="v")
    assert second.parse("a" * 40, lambda: b"x: 1\n") == {"x": 1}  # a miss: it looked
    assert first.parse("b" * 40, lambda: b"y: 2\n") == {"y": 2}
    first.save(prune=False)  # (as a member shares what it parsed, mid-transaction)
    assert second.parse("b" * 40, lambda: b"not read: from the file") == {"y": 2}
    assert parsed == [b"x: 1\n", b"y: 2\n"]
    assert (second.hits, second.misses) == (1, 1)


def test_what_a_group_hands_on_is_taken_only_as_this_cache_would_keep_it(tmp_path: Path) -> None:
    """A member's hand-on comes through a socket: only entries of this parser's format,
    under object ids, are taken, and never over an entry this process already has."""
    cache = ParseCache(str(tmp_path), "k", parse=yamlio.load, version="v")
    mine, theirs, other = "a" * 40, "b" * 40, "c" * 64
    assert cache.parse(mine, lambda: b"x: 1\n") == {"x": 1}
    assert not cache.absorb({theirs: {"y": 2}}, "another parser")
    assert not cache.absorb([theirs], cache.format)
    assert cache.absorb(
        {mine: {"x": "forged"}, "HEAD": {"z": 3}, "B" * 40: {}, 7: {}, other: {"w": 4}},
        cache.format,
    )
    parsed: list[bytes] = []

    def read(raw: bytes) -> Any:
        def give() -> bytes:
            parsed.append(raw)
            return raw

        return give

    assert cache.parse(mine, read(b"x: 1\n")) == {"x": 1}  # its own, kept
    assert cache.parse(other, read(b"w: 5\n")) == {"w": 4}  # a well-formed one, taken
    assert cache.parse(theirs, read(b"y: 2\n")) == {"y": 2}  # (refused: parsed here)
    assert cache.parse("HEAD", read(b"z: 9\n")) == {"z": 9}
    assert parsed == [b"y: 2\n", b"z: 9\n"]


def test_what_a_group_hands_on_outlives_the_save_that_ends_the_transaction(
    tmp_path: Path,
) -> None:
    """A member takes the files of the others in its batch at the end of the batch (the
    verdict), after its own loads: the save that ends its transaction keeps only what
    was used since the last one, and dropped them, so its next transaction parsed each
    of them again (measured: two of every three parses at 20 sessions of one machine).
    Absorbed entries count as used once; a later save after loads that did not use them
    lets them go, as it does any entry."""
    parsed: list[bytes] = []

    def parse(raw: bytes) -> Any:
        parsed.append(raw)
        return yamlio.load(raw)

    def never() -> bytes:
        raise AssertionError("read: it should have come from the cache")

    cache = ParseCache(str(tmp_path), "k", parse=parse, version="v")
    mine, theirs = "a" * 40, "b" * 40
    assert cache.parse(mine, lambda: b"x: 1\n") == {"x": 1}  # this transaction's load
    assert cache.absorb({theirs: {"y": 2}}, cache.format)  # the batch's verdict
    cache.save()  # the end of the transaction
    assert cache.parse(theirs, never) == {"y": 2}  # the next transaction's load
    assert cache.parse(mine, never) == {"x": 1}
    cache.save()
    assert cache.parse(mine, never) == {"x": 1}  # a load that no longer uses `theirs`
    cache.parse("c" * 40, lambda: b"z: 3\n")  # (something new: the save rewrites)
    cache.save()
    assert cache.parse(theirs, lambda: b"y: 2\n") == {"y": 2}  # let go: parsed again
    assert parsed == [b"x: 1\n", b"z: 3\n", b"y: 2\n"]


def test_the_state_loaded_through_the_cache_is_the_state_parsed_afresh(world: World) -> None:
    a, _ = setup(world, 4)
    for f in (a / ".git" / "gitcoord" / "parsed").iterdir():
        f.unlink()
    with Coordinator(str(a), session="alice") as c:
        tip, parsed = c.store.snapshot()
        files = c.store.parsed.misses
        assert c.store.parsed.hits == 0
        _, again = c.store.snapshot()
        # The same store again: from the documents it validated, the cache not even asked.
        assert (c.store.parsed.hits, c.store.parsed.misses) == (0, files)
        assert tip is not None
        fresh = load_state(TreeSource(c.store.reader, c.store.tree_of(tip)))
    with Coordinator(str(a), session="alice") as c:  # a new store: from the cache's file
        _, cached = c.store.snapshot()
        assert (c.store.parsed.hits, c.store.parsed.misses) == (files, 0)
    assert again == fresh == parsed == cached
    assert again.claims and again.sessions and again.config is not None


def test_a_corrupt_or_unwritable_cache_costs_time_not_correctness(world: World) -> None:
    a, _ = setup(world, 2)
    assert run(a, "status", session="alice").code == 0
    folder = a / ".git" / "gitcoord" / "parsed"
    (cache,) = folder.iterdir()
    cache.write_bytes(b"{not json")
    r = run(a, "status", "--json", session="alice")
    assert r.code == 0, r.err
    assert len(r.json()["claims"]) == 2  # type: ignore[index]
    assert json.loads(cache.read_bytes())["entries"]  # rebuilt
    # A file where the folder belongs: nothing can be saved, every command still works.
    for f in folder.iterdir():
        f.unlink()
    folder.rmdir()
    folder.write_bytes(b"")
    assert run(a, "claim", "task", "x", session="alice").code == 0
    r = run(a, "status", "--json", session="alice")
    assert r.code == 0, r.err
    assert "task/x" in {f"{c['type']}/{c['name']}" for c in r.json()["claims"]}  # type: ignore[index]


def typed(x: Any) -> Any:
    """`x` with every value's type beside it: 1 == True == 1.0 must not pass."""
    if isinstance(x, dict):
        return ("dict", [(typed(k), typed(v)) for k, v in x.items()])
    if isinstance(x, list):
        return ("list", [typed(v) for v in x])
    if isinstance(x, float) and x != x:
        return ("float", "nan")
    return (type(x).__name__, x)


def leaves(t: Any) -> list[Any]:
    kind, value = t
    if kind == "dict":
        return [leaf for k, v in value for leaf in leaves(k) + leaves(v)]
    if kind == "list":
        return [leaf for v in value for leaf in leaves(v)]
    return [t]


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=20),
    st.datetimes(timezones=st.just(timezone.utc)),
    st.dates(),
    st.binary(max_size=8),
)
keys = st.one_of(st.text(max_size=8), st.integers(-3, 3), st.booleans(), st.none())
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None)
@given(data=values)
@example(data=float("nan"))
@example(data={"banana": "nan"})
@example(data={"a": [1, True, 1.0, "1", None], 1: "int key", "t": "2026-01-01T00:00:00Z"})
def test_what_comes_back_from_the_cache_equals_a_fresh_parse_type_for_type(
    tmp_path_factory: Any, data: Any
) -> None:
    buf = io.StringIO()
    yamlio._y().dump(data, buf)
    raw = buf.getvalue().encode()
    try:
        fresh = yamlio.load(raw)
    except yamlio.YamlProblem:
        return
    common = str(tmp_path_factory.mktemp("common"))
    parser = {"parse": yamlio.load, "version": PARSE_VERSION}  # as the branch makes it
    first = ParseCache(common, "refs/heads/gitcoord", **parser)
    assert typed(first.parse("a" * 40, lambda: raw)) == typed(fresh)
    first.save()
    second = ParseCache(common, "refs/heads/gitcoord", **parser)  # what the next command reads
    assert typed(second.parse("a" * 40, lambda: raw)) == typed(fresh)
    try:  # JSON says it type for type, and no NaN (NaN != NaN: the check refuses it)
        again = json.loads(json.dumps(fresh))
        storable = typed(again) == typed(fresh) and ("float", "nan") not in leaves(typed(fresh))
    except (TypeError, ValueError):  # dates, bytes...
        storable = False
    assert second.misses == (0 if storable else 1)


def test_a_store_judges_each_file_by_its_place_and_not_its_bytes_alone(world: World) -> None:
    """A long-lived store keeps the documents it validated by blob (`Validated`): the same
    bytes where another kind of document belongs are judged as that kind, and a bad file
    is reported on every load, not only the first."""
    from reliability import commit_files, tip

    a, _ = setup(world, 1)
    with Coordinator(str(a), session="alice") as c:
        base, state = c.store.snapshot()
        assert base is not None and not state.problems
        claim = git(a, "show", f"{base}:{at('coordination/claims/task/t0.yaml')}").encode()
        # A claim's bytes as a session file, and a file that is no YAML mapping at all.
        mallory, zed = (
            at("coordination/sessions/mallory.yaml"),
            at("coordination/sessions/zed.yaml"),
        )
        bad = commit_files(a, {mallory: claim, zed: b"- 1\n"}, parent=base)
        for _ in range(2):  # the second load goes through the documents validated
            problems = {(p.path, p.rule) for p in c.store.load(bad).problems}
            assert {(mallory, "schema"), (zed, "schema")} <= problems
            assert "task/t0" in c.store.load(base).claims
        assert tip(world.remote) == base


def test_states_loaded_one_after_another_are_the_states_loaded_afresh(world: World) -> None:
    """A store loads each state from what the last one left (each kind's folder, each
    shard's, by tree id): along a history that changes one shard at a time, with a bad
    file and a misplaced one in shards that do not change, every state it loads is the
    state a fresh load gives, problems included and in the same order."""
    from reliability import commit_files

    a, _ = setup(world, 4)
    with Coordinator(str(a), session="alice") as c:
        base, _ = c.store.snapshot()
        assert base is not None
        t1 = git(a, "show", f"{base}:{at('coordination/claims/task/t1.yaml')}").encode()
        real = at("coordination/claims/task/t1.yaml")
        shard = real.split("/")[-2]
        twin = real.replace(f"/{shard}/", "/00/" if shard != "00" else "/01/")
        bad = commit_files(
            a,
            {
                at("coordination/claims/task/zz.yaml"): b"- not a mapping\n",
                at("coordination/claims/task/elsewhere.yaml"): t1,  # t1's, misplaced
                twin: t1,  # the same folder (tree id) as t1's own, in another shard
            },
            parent=base,
        )
        history = [base, bad]
        for k in range(3):  # then one claim file at a time changes
            t0 = git(a, "show", f"{history[-1]}:{at('coordination/claims/task/t0.yaml')}")
            changed = t0.replace("note:", f"note: {k}") if "note:" in t0 else t0 + f"note: n{k}\n"
            history.append(
                commit_files(
                    a,
                    {at("coordination/claims/task/t0.yaml"): changed.encode()},
                    parent=history[-1],
                )
            )
        for tip in history + history[::-1]:
            loaded = c.store.load(tip)
            fresh = load_state(TreeSource(c.store.reader, c.store.tree_of(tip)))
            assert loaded == fresh, tip
            assert loaded.problems == fresh.problems
        assert {p.rule for p in c.store.load(bad).problems} >= {"schema", "path"}
        assert twin in {p.path for p in c.store.load(bad).problems}
        notes = {c.store.load(tip).claims["task/t0"].note for tip in history[2:]}
        assert len(notes) == 3  # each step changed what the state holds


def test_a_store_keeps_a_state_by_commit_and_never_by_a_name_that_moves(world: World) -> None:
    """A commit names its tree: its state is loaded once and handed out again (the
    verifier and the writer then check one object once). A ref names whatever it points
    at now, and a commit not fetched yet has no state here: neither is kept."""
    a, b = setup(world, 1)
    with Coordinator(str(a), session="alice") as c:
        first, _ = c.store.snapshot()
        assert first is not None
        assert c.store.load(first) is c.store.load(first)
        git(a, "update-ref", "refs/test/moving", first)
        before = c.store.load("refs/test/moving")
        assert "task/later" not in before.claims
        assert run(b, "claim", "task", "later", session="bob").code == 0
        later, _ = c.store.snapshot()
        assert later is not None and later != first
        git(a, "update-ref", "refs/test/moving", later)
        assert "task/later" in c.store.load("refs/test/moving").claims
        absent = "1" * len(first)  # a commit this clone does not have (yet)
        assert c.store.load(absent).claims == {}
        assert c.store.load(absent) is not c.store.load(absent)
