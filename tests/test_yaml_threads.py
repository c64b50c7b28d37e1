"""YAML in threads: long-lived processes (the web page's workers, programs using the
API with a Coordinator per session in threads) parse and write files from several threads
at once. Each document must come out exactly as it does from one thread alone."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator

import pytest

from gitcoord.domain import yamlio
from gitcoord.domain.models import Claim


@pytest.fixture
def switching() -> Iterator[None]:
    """Threads switch as often as the interpreter allows: a race shows in a few loops."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(before)


def test_threads_parse_and_write_each_its_own_document(switching: None) -> None:
    docs = [
        Claim.model_validate(
            {
                "type": "task",
                "name": f"t{k}:{k}-{k + 3}",
                "holder": f"s{k:03d}",
                "generation": k + 1,
                "acquired_at": "2026-12-01T10:00:00Z",
                "expires_at": "2026-12-01T12:00:00Z",
                "note": "line one\nline two " * (k % 3),
            }
        )
        for k in range(8)
    ]
    alone = [(yamlio.dump(d), yamlio.load(yamlio.dump(d))) for d in docs]
    failures: list[str] = []

    def work(k: int) -> None:
        for _ in range(60):
            try:
                raw = yamlio.dump(docs[k])
                parsed = yamlio.load(raw)
            except Exception as exc:  # (whichever it is, it is the failure)
                failures.append(f"{k}: {type(exc).__name__}: {exc}")
                return
            if (raw, parsed) != alone[k]:
                failures.append(f"{k}: {raw!r}")
                return

    threads = [threading.Thread(target=work, args=(k,)) for k in range(len(docs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not failures, failures[:3]
