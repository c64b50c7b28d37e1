"""Nothing grows without bound in one folder (format 4, `kinds.SHARDED`).

Released claims stay as tombstones and messages are never deleted, so a branch used for
months holds thousands of each. These tests put more than 3,000 of them on a real branch
(GitHub's guidance for one folder) and check that no folder passes 3,000 entries; that a
flat branch from before format 4 whose folder is past it takes no new file (the verifier's
`folder-size` rule, crafted with plain git) but still takes changes to what is there; and
that `gitcoord upgrade` moves it into sharded folders, after which work goes on.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from conftest import World, git, run
from reliability import REF, commit_files, show, tip

from gitcoord.domain import kinds, yamlio
from gitcoord.domain.models import FORMAT, Claim, Message

MANY = kinds.SHARD_LIMIT + 1
DAY = datetime(2026, 11, 30, tzinfo=timezone.utc)


def tombstones(fmt: int) -> dict[str, bytes | None]:
    """MANY released claims of one type, held once by s1: the files a busy registry leaves."""
    files: dict[str, bytes | None] = {}
    for n in range(MANY):
        doc = Claim(
            type="prospect",
            name=f"p-{n:05d}",
            holder="s1",
            generation=1,
            acquired_at=DAY,
            expires_at=DAY + timedelta(hours=1),
            released_at=DAY + timedelta(minutes=30),
        )
        files[kinds.claim_path(doc.type, doc.name, fmt=fmt)] = yamlio.dump(doc)
    return files


def broadcasts() -> dict[str, bytes | None]:
    """MANY messages to everyone on one day: one every 28 seconds, from s1."""
    files: dict[str, bytes | None] = {}
    for n in range(MANY):
        at = DAY + timedelta(seconds=28 * n)
        mid = f"{at:%Y%m%dT%H%M%S}000Z-{n:06x}"
        doc = Message(
            id=mid, sender="s1", to="broadcast", subject=f"note {n}", body="b", sent_at=at
        )
        files[kinds.message_path("broadcast", mid, fmt=FORMAT)] = yamlio.dump(doc)
    return files


def founded(world: World) -> Path:
    a = world.clone("a")
    assert run(a, "init").code == 0
    for sid in ("s1", "s2"):
        assert run(a, "register", "--role", "r", "--goal", "g", session=sid).code == 0
    return a


def push(a: Path, files: dict[str, bytes | None], message: str = "history") -> str:
    git(a, "fetch", "-q", "origin")
    commit = commit_files(
        a, files, parent=tip(a, f"refs/remotes/origin/{REF[11:]}"), message=message
    )
    git(a, "push", "-q", "origin", f"{commit}:{REF}")
    return commit


def largest_folders(repo: Path, commit: str) -> list[tuple[str, int]]:
    """Every folder of the commit's tree with its number of entries, largest first."""
    counts: Counter[str] = Counter()
    for path in git(repo, "ls-tree", "-r", "-t", "--name-only", commit).split():
        counts[path.rpartition("/")[0]] += 1
    return counts.most_common()


@pytest.mark.slow
def test_more_than_3000_tombstones_and_a_days_messages_stay_in_small_folders(
    world: World,
) -> None:
    a = founded(world)
    files = {**tombstones(FORMAT), **broadcasts()}
    commit = push(a, files)
    folders = largest_folders(world.remote, commit)
    assert folders[0][1] <= kinds.SHARD_LIMIT, folders[:3]
    listed = git(world.remote, "ls-tree", "-r", "--name-only", commit).split()
    assert sum(p.startswith("coordination/claims/prospect/") for p in listed) == MANY
    assert sum(p.startswith("coordination/messages/broadcast/2026-11/30/") for p in listed) == MANY
    # the branch reads as ever: it validates, and the day's messages are all in the inbox
    r = run(a, "validate")
    assert r.code == 0, r.err
    r = run(a, "--json", "status")
    assert r.code == 0
    inbox = run(a, "--json", "inbox", session="s2")
    assert inbox.code == 0, inbox.err
    assert len(inbox.json()["messages"]) == MANY  # type: ignore[index]
    # and work goes on: a claim of the same type is one more small file
    assert run(a, "claim", "prospect", "p-new", session="s2").code == 0
    assert run(a, "claim", "prospect", "p-00007", session="s2").code == 0  # a tombstone, anew


@pytest.mark.slow
def test_a_flat_folder_past_3000_takes_no_new_file_until_the_upgrade(world: World) -> None:
    a = founded(world)
    # the branch as format 3 wrote it (flat folders), with a claim type past 3,000
    git(a, "fetch", "-q", "origin")
    now = tip(a, f"refs/remotes/origin/{REF[11:]}")
    assert now is not None
    flat: dict[str, bytes | None] = {}
    for path in git(a, "ls-tree", "-r", "--name-only", now).split():
        kind = kinds.kind_at(path)
        if kind is not None and not kind.single:
            target = kind.path(kind.key_at(path), fmt=3)
            flat[path], flat[target] = None, show(a, now, path)
    config = show(a, now, kinds.config_path())
    flat[kinds.config_path()] = config.replace(b"format: %d\n" % FORMAT, b"format: 3\n")
    flat.update(tombstones(3))
    push(a, flat)
    assert run(a, "hooks", "install", "--server", str(world.remote)).code == 0

    # a new claim would be file 3,002 of claims/prospect/: refused, naming the way out
    r = run(a, "claim", "prospect", "p-new", session="s2")
    assert r.code == 5 and "[folder-size]" in r.err and "gitcoord upgrade" in r.err, r.err
    # ... and crafted with plain git, past the client, the server refuses it too
    doc = Claim(
        type="prospect",
        name="p-new",
        holder="s2",
        generation=1,
        acquired_at=datetime.now(timezone.utc) - timedelta(seconds=5),
        expires_at=datetime.now(timezone.utc) + timedelta(hours=1),
    )
    git(a, "fetch", "-q", "origin")
    base = tip(a, f"refs/remotes/origin/{REF[11:]}")
    crafted = commit_files(
        a,
        {kinds.claim_path("prospect", "p-new", fmt=3): yamlio.dump(doc)},
        parent=base,
        message="claim prospect/p-new\n\nGitcoord-Op: claim\nGitcoord-Session: s2",
    )
    import subprocess

    p = subprocess.run(
        ["git", "push", "origin", f"{crafted}:{REF}"], cwd=a, capture_output=True, text=True
    )
    assert p.returncode != 0 and "[folder-size]" in p.stderr, p.stderr
    # what is there still changes: a tombstone is claimed anew (the same file)
    assert run(a, "claim", "prospect", "p-00007", session="s2").code == 0

    old = tip(world.remote)
    # one commit moving 3,000+ files, judged whole by client and hook: the upgrade gives
    # itself the time it needs (the default 30 s is for everyday commands)
    r = run(a, "upgrade", session="s1")
    assert r.code == 0 and f"from format 3 to {FORMAT}" in r.out, (r.out, r.err)
    after = tip(world.remote)
    assert after is not None
    assert largest_folders(world.remote, after)[0][1] <= kinds.SHARD_LIMIT
    assert run(a, "claim", "prospect", "p-new", session="s2").code == 0
    assert run(a, "validate", "--range", f"{old}..{tip(world.remote)}").code == 0
