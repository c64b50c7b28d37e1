"""Inbox cost against the size of the history: 10 vs 10,000 messages on the branch.

    .venv/bin/python benchmarks/inbox.py [--runs 20] [--sizes 10,10000]

For each size, a fresh bare remote gets 20 registered sessions and that many
messages (spread over 30 days, to every session and one in 50 to broadcast),
written through the store one transaction per sender. Then session `alice`,
in a clone of its own, is timed in process (`gitcoord.Coordinator.inbox`):
  1. the first read of its whole inbox (everything addressed to it is unread);
  2. an inbox with nothing unread (no push);
  3. `--peek` with one new message (bob sends it first, untimed);
  4. reading that message and pushing the read mark.
Prints a Markdown table of medians and the ratio between the largest and the
smallest size. An inbox read should cost what is new, not what is on the
branch, so rows 2-4 should stay near 1x; row 1 grows with alice's own share.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from gitcoord.domain.models import FORMAT

SESSIONS = ["alice", "bob"] + [f"s{n:02d}" for n in range(3, 21)]


def git(cwd: Path, *args: str, env: dict[str, str] | None = None) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, check=True
    ).stdout.decode()


def hermetic_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "GITCOORD_"))}
    cfg = home / ".gitconfig"
    cfg.write_text(
        "[user]\n\tname = Bench\n\temail = bench@example.com\n[init]\n\tdefaultBranch = main\n"
    )
    env.update(HOME=str(home), GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=str(cfg))
    return env


def use_env(env: dict[str, str]) -> None:
    """Run this process (the in-process Coordinator) under the hermetic environment."""
    for k in list(os.environ):
        if k.startswith(("GIT_", "GITCOORD_")):
            del os.environ[k]
    os.environ.update(env)


def bulk_messages(total: int, today: datetime) -> list[Any]:
    """The same construction as tests/test_communication.py."""
    from gitcoord import clock
    from gitcoord.domain import names
    from gitcoord.domain.models import Message

    base = today.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=29)
    out = []
    for i in range(total):
        to = names.BROADCAST if i % 50 == 0 else SESSIONS[i % len(SESSIONS)]
        sender = SESSIONS[(i * 7 + i // 50 + 1) % len(SESSIONS)]
        if sender == to:
            sender = SESSIONS[(i * 7 + i // 50 + 2) % len(SESSIONS)]
        sent = base + timedelta(days=(i // len(SESSIONS)) % 30, seconds=i, milliseconds=i % 1000)
        mid = clock.message_id(sent, f"{i:06x}")
        out.append(
            Message(
                id=mid,
                sender=sender,
                to=to,
                subject=f"bulk {i}",
                body=f"message {i}",
                sent_at=sent.replace(microsecond=0),
            )
        )
    return out


def message_yaml(msg: Any) -> bytes:
    """`yamlio.dump(msg)` for these plain one-line fields (checked on a sample below)."""
    from gitcoord import clock

    return (
        f"id: {msg.id}\nsender: {msg.sender}\nto: {msg.to}\nsubject: {msg.subject}\n"
        f"body: {msg.body}\nsent_at: '{clock.iso(msg.sent_at)}'\n"
    ).encode()


def populate(clone: Path, total: int) -> None:
    from gitcoord import Coordinator, clock
    from gitcoord.domain import kinds, yamlio
    from gitcoord.domain.change import Change

    with Coordinator(str(clone), timeout=600) as c:
        c.init(slots=32)
    for sid in SESSIONS:
        with Coordinator(str(clone), session=sid) as c:
            c.register(role=f"role of {sid}", goal="benchmark")
    messages = bulk_messages(total, clock.now())
    for msg in messages[:: max(1, total // 50)]:
        assert message_yaml(msg) == yamlio.dump(msg)
    by_sender: dict[str, list[Any]] = {}
    for msg in messages:
        by_sender.setdefault(msg.sender, []).append(msg)
    for sender, mine in sorted(by_sender.items()):

        def plan(state: Any, sender: str = sender, mine: list[Any] = mine) -> Any:
            return Change(
                "send",
                f"send {len(mine)} messages from {sender}",
                session=sender,
                writes={kinds.message_path(m.to, m.id, fmt=FORMAT): message_yaml(m) for m in mine},
            )

        with Coordinator(str(clone), session=sender, timeout=600) as c:
            c.store.transact(plan, clock.now)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def measure(total: int, runs: int, tmp: Path, env: dict[str, str]) -> dict[str, Any]:
    from gitcoord import Coordinator

    root = tmp / f"n{total}"
    root.mkdir()
    remote = root / "remote.git"
    git(root, "init", "-q", "--bare", str(remote), env=env)
    writer, reader = root / "writer", root / "reader"
    git(root, "clone", "-q", str(remote), str(writer), env=env)
    populate(writer, total)
    git(root, "clone", "-q", str(remote), str(reader), env=env)

    rows: dict[str, list[float]] = {
        "first read of the whole inbox": [],
        "inbox, nothing unread": [],
        "inbox --peek, 1 new message": [],
        "inbox, 1 new message (read + mark)": [],
    }
    with (
        Coordinator(str(reader), session="alice") as alice,
        Coordinator(str(writer), session="bob") as bob,
    ):
        secs, first = timed(lambda: alice.inbox())
        rows["first read of the whole inbox"].append(secs)
        unread_first = first["unread"]
        for i in range(-1, runs):  # -1: warm-up, not recorded
            quiet, doc = timed(lambda: alice.inbox())
            assert doc["unread"] == 0 and doc["commit"] is None
            mid = bob.send("alice", f"new {i}", "body").change.result["message"]["id"]
            peek, doc = timed(lambda: alice.inbox(peek=True))
            assert [m["id"] for m in doc["messages"]] == [mid], doc
            read, doc = timed(lambda: alice.inbox())
            assert [m["id"] for m in doc["messages"]] == [mid] and doc["marked_read"]
            if i >= 0:
                rows["inbox, nothing unread"].append(quiet)
                rows["inbox --peek, 1 new message"].append(peek)
                rows["inbox, 1 new message (read + mark)"].append(read)
    return {"rows": rows, "first_unread": unread_first}


def report(results: dict[int, dict[str, Any]], runs: int) -> str:
    sizes = sorted(results)
    small, large = sizes[0], sizes[-1]
    lines = [
        f"Inbox of session alice with {' vs '.join(f'{n:,}' for n in sizes)} messages on the "
        f"branch (20 sessions, 30 days), file remote, medians of {runs} runs (first read: one "
        f"run), {datetime.now(timezone.utc):%Y-%m-%d}, {platform.machine()} with "
        f"{os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{git(Path('.'), '--version').strip()}.",
        "",
        "| operation | "
        + " | ".join(f"{n:,} messages" for n in sizes)
        + f" | {large:,} / {small:,} |",
        "|---|" + "---:|" * (len(sizes) + 1),
    ]
    for name in results[small]["rows"]:
        meds = [statistics.median(results[n]["rows"][name]) for n in sizes]
        label = name
        if name.startswith("first read"):
            label += " (" + " / ".join(str(results[n]["first_unread"]) for n in sizes) + " unread)"
        cells = " | ".join(f"{m * 1000:.1f} ms" for m in meds)
        lines.append(f"| {label} | {cells} | {meds[-1] / meds[0]:.2f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--sizes", default="10,10000", help="comma-separated message counts")
    args = ap.parse_args()
    sizes = sorted({int(x) for x in args.sizes.split(",")})
    if len(sizes) < 2:
        ap.error("give at least two sizes")
    with tempfile.TemporaryDirectory(prefix="gitcoord-bench-inbox-") as tmp_s:
        tmp = Path(tmp_s)
        (tmp / "home").mkdir()
        env = hermetic_env(tmp / "home")
        use_env(env)
        results = {n: measure(n, args.runs, tmp, env) for n in sizes}
    print(report(results, args.runs))


if __name__ == "__main__":
    sys.exit(main())
