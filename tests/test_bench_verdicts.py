"""How the benchmark pages judge a target: on the median of repeated runs, never on the
luckiest one (`benchmarks/selfhosted.py`: one 30 s window of 200 sessions gave 8.0 to 16.0
landed operations a second on the same kind of box); and that the benchmarks'
experiments still run against the store they patch."""

from __future__ import annotations

from typing import Any

from conftest import World, run

from benchmarks import selfhosted


def runs(machines: int, *ops: float, lost: int = 0) -> list[dict[str, Any]]:
    return [{"sessions": 200, "machines": machines, "ops_per_second": x, "lost": lost} for x in ops]


def test_the_200_session_target_is_judged_on_the_median_of_its_runs() -> None:
    lucky = selfhosted.verdict(runs(10, 15.2, 8.0, 9.0))[-1]
    assert "**not met**" in lucky  # the best run passes; the median (9.00) does not
    assert "median 9.00 of 15.20, 8.00, 9.00" in lucky

    steady = selfhosted.verdict(runs(10, 8.0, 13.6, 12.0) + runs(50, 1.4))[-1]
    assert "**met**" in steady and "best 12.00 ops/s (10 machines)" in steady
    assert "50 machines: median 1.40 of 1.40" in steady


def test_a_lost_update_in_any_run_fails_the_target() -> None:
    line = selfhosted.verdict(runs(10, 14.0, 13.0) + runs(50, 1.0, lost=1))[-1]
    assert "lost 1" in line and "**not met**" in line


def test_no_200_session_run_no_verdict() -> None:
    assert selfhosted.verdict([]) == []


def test_the_store_before_16_experiment_still_claims(world: World) -> None:
    """The latency benchmark's "store before #16" curve patches a live `Store`'s methods:
    a change of their signatures broke it at its first claim, which no other test runs."""
    from benchmarks import netdelay
    from gitcoord import Coordinator

    a = world.clone("a")
    assert run(a, "init").code == 0
    assert run(a, "register", "--role", "r", "--goal", "g", session="s1").code == 0
    with Coordinator(str(a), session="s1") as c:
        netdelay.before_16(c.store)
        assert c.claim("task", "t1").commit
