from conftest import World, git, run


def test_init_register_claim_roundtrip(world: World) -> None:
    a = world.clone("a")
    assert run(a, "init").code == 0
    r = run(a, "register", "--role", "Research", "--goal", "25/day", session="s1")
    assert r.code == 0, r.err
    r = run(a, "claim", "task", "i-match", "--json", session="s1")
    assert r.code == 0, r.err
    assert r.json()["claim"]["generation"] == 1
    assert "claim task/i-match by s1" in git(world.remote, "log", "--format=%s", "gitcoord")
