"""Objects read in bulk: one exchange with `git cat-file --batch` for many objects.

A state at 200 sessions spans ~300 folders (shards of claims, sessions, heartbeats...),
and a cold process (a server hook, an agent's child) listed each with an exchange of its
own; a verified range read each commit's changed folders the same way. Under load each
exchange waits for cat-file to be scheduled, then for the reader. `ObjectReader.read_many`
pipelines them; `TreeSource.prefetch` and the verifier's `_prefetch` use it.

These tests hold it to what single reads say (same answers, same states, same verdicts,
hostile names and paths included) and show that it is what makes the exchanges few.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from conftest import World, git, run
from reliability import REF, hand_commit_local, tip

from gitcoord.api.coordinator import Coordinator
from gitcoord.audit import verify
from gitcoord.domain import kinds, yamlio
from gitcoord.domain.models import FORMAT, Claim, Message
from gitcoord.gitio import Git, ObjectReader
from gitcoord.store.trees import TreeSource

NOW = datetime.now(timezone.utc).replace(microsecond=0)


def claims(n: int, holder: str = "s1", start: int = 0) -> dict[str, bytes | None]:
    files: dict[str, bytes | None] = {}
    for k in range(start, start + n):
        doc = Claim(
            type="prospect",
            name=f"p-{k:05d}",
            holder=holder,
            generation=1,
            acquired_at=NOW - timedelta(minutes=5),
            expires_at=NOW + timedelta(hours=1),
        )
        files[kinds.claim_path(doc.type, doc.name, fmt=FORMAT)] = yamlio.dump(doc)
    return files


def founded(world: World) -> Path:
    """A repository with no remote (its own branch is the store), two sessions in it."""
    a = world.local_repo("a")
    assert run(a, "init").code == 0
    for sid in ("s1", "s2"):
        assert run(a, "register", "--role", "r", "--goal", "g", session=sid).code == 0
    return a


def on_branch(a: Path, files: dict[str, bytes | None], message: str = "hand edit") -> str:
    return hand_commit_local(a, files, message)


def counted(reader: ObjectReader, monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """How many exchanges `reader` has with cat-file: single reads (and of those, the
    trees: a file's blob is read once when the parse cache does not have it), and bulk
    ones."""
    seen = {"read": 0, "tree": 0, "read_many": 0}

    def wrap(name: str) -> Callable[..., Any]:
        real = getattr(reader, name)

        def call(*args: Any) -> Any:
            seen[name] += 1
            got = real(*args)
            if name == "read" and got is not None and got[1] == "tree":
                seen["tree"] += 1
            return got

        return call

    for name in ("read", "read_many"):
        monkeypatch.setattr(reader, name, wrap(name))
    return seen


def trees_asked(reader: ObjectReader, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many trees each bulk read (`ObjectReader.trees`) asks for."""
    asked: list[int] = []
    real = reader.trees

    def trees(names: list[str]) -> None:
        asked.append(len(names))
        real(names)

    monkeypatch.setattr(reader, "trees", trees)
    return asked


def test_read_many_answers_each_name_as_a_single_read_does(world: World) -> None:
    a = founded(world)
    on_branch(a, claims(300))
    objects = git(a, "rev-list", "--objects", REF).split("\n")
    ids = [line.split(" ")[0] for line in objects if line]
    names = [
        *ids,  # ~800 names: more than one batch (PIPELINED bytes) of requests
        f"{REF}:coordination",  # `<rev>:<path>`
        "0" * 40,  # missing
        "no\nsuch",  # a newline would end the request: never sent
        "nul\0name",
        "x" * 100_000,  # one request longer than any pipe's buffer: alone, no deadlock
        ids[0],  # asked twice
    ]
    git_ = Git.at(str(a))
    with ObjectReader(git_) as bulk, ObjectReader(git_) as single:
        got = bulk.read_many(names)
        assert got == [single.read(n) for n in names]
        assert bulk.read(ids[1]) == single.read(ids[1])  # still in step after the bulk
    assert got[-6] is not None and got[-6][1] == "tree"
    assert got[-5:-1] == [None, None, None, None]
    assert sum(1 for g in got if g is not None) == len(ids) + 2


def test_a_cold_state_load_lists_its_folders_in_a_few_exchanges_and_the_same_state(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = founded(world)
    # Two layouts in one tree: a good claim per shard and a file where none belongs.
    commit = on_branch(a, {**claims(400), "coordination/claims/stray.txt": b"x\n"})

    def load(prefetch: bool) -> tuple[Any, dict[str, int]]:
        if not prefetch:
            monkeypatch.setattr(TreeSource, "PREFETCH", 0)
        with Coordinator(str(a), remote=None) as coord:
            seen = counted(coord.store.reader, monkeypatch)
            # As a trust check does first: the root and coordination/ are read (cached)
            # before the state's load, which still reads every folder below in bulk.
            assert coord.store.view(commit).oid("coordination/config.yaml")
            state = coord.store.load(commit)
        monkeypatch.undo()
        return state, seen

    bulk, bulk_seen = load(prefetch=True)
    one_by_one, single_seen = load(prefetch=False)
    assert len(bulk.claims) == 400
    assert bulk == one_by_one  # documents, and problems (the stray file) alike
    assert any("stray.txt" in p.path for p in bulk.problems)
    # Without the prefetch: a read per folder. With it: a handful, the rest in bulk.
    assert single_seen["tree"] > 150 and single_seen["read_many"] == 0
    assert bulk_seen["tree"] < 10 and 0 < bulk_seen["read_many"] <= 8


def test_prefetch_stops_at_its_budget_on_a_branch_of_countless_folders(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = founded(world)
    crowd = {f"coordination/quarantine/d{k:04d}/x": b"raw\n" for k in range(300)}
    commit = on_branch(a, crowd)
    monkeypatch.setattr(TreeSource, "PREFETCH", 50)
    with Coordinator(str(a), remote=None) as coord:
        asked = trees_asked(coord.store.reader, monkeypatch)
        coord.store.view(commit).prefetch("coordination")
        state = coord.store.load(commit)
    assert sum(asked) <= 50 * 2  # the view's own prefetch, and the load's
    assert state.config is not None and set(state.sessions) == {"s1", "s2"}


def test_a_state_load_reads_ahead_no_message_folder(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Messages are read on demand, never with a state: a branch of many days of messages
    (a folder a day) costs a state's load none of their folders."""
    a = founded(world)
    days = {}
    for n in range(120):
        at = NOW - timedelta(days=n)
        mid = f"{at:%Y%m%dT%H%M%S}000Z-{n:06x}"
        doc = Message(id=mid, sender="s1", to="broadcast", subject="s", body="b", sent_at=at)
        days[kinds.message_path("broadcast", mid, fmt=FORMAT)] = yamlio.dump(doc)
    commit = on_branch(a, days)
    with Coordinator(str(a), remote=None) as coord:
        asked = trees_asked(coord.store.reader, monkeypatch)
        state = coord.store.load(commit)
    assert set(state.sessions) == {"s1", "s2"}
    assert 0 < sum(asked) < 40  # the state's few folders; not 120 days of messages


def test_a_verified_range_reads_its_commits_folders_in_bulk_with_the_same_verdicts(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = founded(world)
    old = tip(a, REF)
    on_branch(a, claims(1, start=0), "gitcoord: claim\n\nGitcoord-Session: s1\n")
    on_branch(a, claims(1, holder="s2", start=1))
    # Hostile: a file whose name is not UTF-8, and one in a folder of its own making.
    on_branch(a, {"coordination/claims/\udcff\udcfe.yaml": b"x: 1\n"})
    on_branch(a, {"coordination/odd/deep/er/file.yaml": b"a: b\n"})
    new = tip(a, REF)

    def verdict(prefetch: bool) -> tuple[list[str], dict[str, int]]:
        if not prefetch:
            monkeypatch.setattr(verify, "PREFETCHED", 0)
        with Coordinator(str(a), remote=None) as coord:
            coord.store.load(old)  # as a clone that verified up to `old` would have it
            seen = counted(coord.store.reader, monkeypatch)
            found = verify.verify_update(coord.store, old, new)
        monkeypatch.undo()
        return [str(p) for p in found], seen

    bulk, bulk_seen = verdict(prefetch=True)
    single, single_seen = verdict(prefetch=False)
    assert bulk == single
    # Refused, not crashed on: each hostile path is named, read from the bulk-read trees.
    assert any("/\udcff\udcfe.yaml" in p and "[layout]" in p for p in bulk)
    assert any(p.startswith("coordination/odd:") and "[layout]" in p for p in bulk)
    assert bulk_seen["read_many"] >= 1
    assert bulk_seen["tree"] < single_seen["tree"] / 2
