"""`gitcoord demo`, the README's main job, runs end to end and checks itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_demo_runs_and_cleans_up(tmp_path: Path) -> None:
    before = set(Path("/tmp").glob("gitcoord-demo-*"))
    proc = subprocess.run(
        [sys.executable, "-m", "gitcoord", "demo", "--sessions", "4", "--json"],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["registered"] == 4
    assert len(summary["race"]["winners"]) == 1 and summary["race"]["losers"] == 3
    assert summary["distinct_claims"] == 4
    assert summary["lost_updates"] == 0 and summary["double_grants"] == 0
    assert summary["commits"] >= 1 + 4 + 1 + 4  # init, registrations, the race, the batches
    assert not list(tmp_path.glob("gitcoord-demo-*")), "the demo leaves nothing behind"
    assert set(Path("/tmp").glob("gitcoord-demo-*")) <= before
