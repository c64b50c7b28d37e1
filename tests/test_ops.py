"""The pure operations, the validator, names and durations: no git, a fixed clock.

Every test builds `State` objects directly and calls the functions in
`gitcoord.ops` with an explicit `now`, so each decision (numbering, conflicts,
generations, the clock-skew boundary) is checked exactly, to the second.
"""

from __future__ import annotations

import dataclasses
import os
import posixpath
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from conftest import at
from hypothesis import given, settings
from hypothesis import strategies as st

from gitcoord import clock
from gitcoord.domain import kinds, names
from gitcoord.domain.change import Change
from gitcoord.domain.models import FORMAT, Claim, Config, Session
from gitcoord.domain.state import DirSource, Problem, State, load_state
from gitcoord.domain.validate import check_state
from gitcoord.errors import (
    ConflictError,
    ExitCode,
    InvalidError,
    RefusedError,
    UsageError,
)
from gitcoord.ops import claims, sessions

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=timezone.utc)
SEC = timedelta(seconds=1)


# --- builders ---------------------------------------------------------------------


def config(slots: int = 4, skew: int = 60, lease_hours: float = 2.0) -> Config:
    return Config(slots=slots, clock_skew_seconds=skew, lease_hours=lease_hours, created_at=T0)


def session(sid: str, number: int, role: str = "role", goal: str = "goal") -> Session:
    return Session(id=sid, number=number, role=role, goal=goal, registered_at=T0, updated_at=T0)


def make_state(
    *sessions: Session,
    claims: tuple[Claim, ...] = (),
    cfg: Config | None = None,
    slots: int = 4,
    skew: int = 60,
) -> State:
    return State(
        config=cfg or config(slots=slots, skew=skew),
        sessions={s.id: s for s in sessions},
        claims={c.key: c for c in claims},
    )


def two_sessions(**kw: int) -> State:
    return make_state(session("alice", 1), session("bob", 2), **kw)


def apply(state: State, change: Change) -> State:
    after = state.apply(change.writes)
    assert check_state(after) == [], "an operation produced an invalid state"
    return after


def only_doc(change: Change) -> object:
    assert len(change.writes) == 1, change.writes
    return next(iter(change.writes.values()))


def claim_of(state: State, key: str = "task/i-match") -> Claim:
    return state.claims[key]


def do_claim(state: State, who: str, at: datetime, **kw: object) -> tuple[State, Change]:
    change = claims.claim(state, at, session=who, type_="task", name="i-match", **kw)  # type: ignore[arg-type]
    return apply(state, change), change


# --- init -------------------------------------------------------------------------


def test_init_on_empty_state_writes_config() -> None:
    change = sessions.init(State(), T0, slots=7, clock_skew_seconds=30)
    assert not change.noop
    assert change.op == "init"
    assert list(change.writes) == [kinds.config_path()] == ["coordination/config.yaml"]
    doc = only_doc(change)
    assert isinstance(doc, Config)
    assert (doc.slots, doc.clock_skew_seconds, doc.created_at) == (7, 30, T0)
    assert change.trailers == {"Gitcoord-Slots": "7"}
    assert "7 slots" in change.subject
    assert change.result["created"] is True
    assert change.result["config"]["slots"] == 7


def test_init_is_idempotent_and_keeps_existing_settings() -> None:
    state = make_state(slots=3)
    change = sessions.init(state, T0 + timedelta(days=1), slots=9)
    assert change.noop
    assert change.result["created"] is False
    assert change.result["config"]["slots"] == 3


@pytest.mark.parametrize("settings_", [{"slots": 0}, {"slots": 1001}, {"lease_hours": 0}])
def test_init_rejects_invalid_settings(settings_: dict[str, float]) -> None:
    with pytest.raises(InvalidError) as exc:
        sessions.init(State(), T0, **settings_)  # type: ignore[arg-type]
    assert exc.value.code == ExitCode.INVALID


# --- register ---------------------------------------------------------------------


def test_register_refuses_when_not_initialised() -> None:
    with pytest.raises(RefusedError) as exc:
        sessions.register(State(), T0, session="alice", role="r", goal="g")
    assert exc.value.code == ExitCode.REFUSED
    assert "gitcoord init" in exc.value.message


def test_register_numbers_lowest_free_first() -> None:
    state = make_state()
    for expected, sid in enumerate(["alice", "bob", "carol"], start=1):
        change = sessions.register(state, T0, session=sid, role="r", goal="g")
        assert change.result["session"]["number"] == expected
        assert change.result["created"] is True
        state = apply(state, change)
    assert state.free_numbers() == [4]


def test_register_fills_the_lowest_gap() -> None:
    state = make_state(session("alice", 1), session("carol", 3))
    change = sessions.register(state, T0, session="bob", role="r", goal="g")
    assert change.result["session"]["number"] == 2


def test_register_new_session_document_subject_and_trailers() -> None:
    change = sessions.register(make_state(), T0, session="alice", role="Research", goal="25/day")
    doc = only_doc(change)
    assert isinstance(doc, Session)
    assert (doc.id, doc.number, doc.role, doc.goal) == ("alice", 1, "Research", "25/day")
    assert doc.registered_at == doc.updated_at == T0
    assert list(change.writes) == [at("coordination/sessions/alice.yaml")]
    assert change.op == "register"
    assert change.subject == "register alice as #1"
    assert change.session == "alice"
    assert change.resource == "session/alice"
    assert change.trailers == {"Gitcoord-Number": "1"}


def test_register_explicit_free_number() -> None:
    state = make_state(session("alice", 1))
    change = sessions.register(state, T0, session="bob", role="r", goal="g", number=4)
    assert change.result["session"]["number"] == 4
    assert apply(state, change).free_numbers() == [2, 3]


def test_register_taken_number_is_a_conflict_with_free_numbers() -> None:
    state = make_state(session("alice", 1), session("carol", 3))
    with pytest.raises(ConflictError) as exc:
        sessions.register(state, T0, session="bob", role="r", goal="g", number=3)
    err = exc.value
    assert err.code == ExitCode.CONFLICT == 3
    assert err.details["free_numbers"] == [2, 4]
    assert err.details["holder"] == "carol"
    assert err.details["number"] == 3
    assert err.details["path"] == at("coordination/sessions/carol.yaml")
    assert "carol" in err.message and "2, 4" in err.message


@pytest.mark.parametrize("number", [0, -1, 5, 100])
def test_register_number_outside_slots_is_usage(number: int) -> None:
    with pytest.raises(UsageError) as exc:
        sessions.register(make_state(slots=4), T0, session="bob", role="r", goal="g", number=number)
    assert exc.value.code == ExitCode.USAGE
    assert exc.value.details["free_numbers"] == [1, 2, 3, 4]


def test_register_when_all_numbers_are_taken() -> None:
    state = make_state(session("alice", 1), session("bob", 2), slots=2)
    with pytest.raises(ConflictError) as exc:
        sessions.register(state, T0, session="carol", role="r", goal="g")
    assert exc.value.details["free_numbers"] == []
    assert exc.value.details["slots"] == 2


def test_register_when_full_still_lets_a_registered_session_update() -> None:
    state = make_state(session("alice", 1), session("bob", 2), slots=2)
    change = sessions.register(state, T0 + SEC, session="bob", role="new role", goal="g")
    assert change.result["session"]["number"] == 2
    assert not change.noop


def test_register_again_updates_role_and_goal_keeps_number() -> None:
    state = make_state(session("alice", 1), session("bob", 2))
    later = T0 + timedelta(minutes=5)
    change = sessions.register(state, later, session="bob", role="Reviewer", goal="review all")
    doc = only_doc(change)
    assert isinstance(doc, Session)
    assert (doc.number, doc.role, doc.goal) == (2, "Reviewer", "review all")
    assert doc.registered_at == T0
    assert doc.updated_at == later
    assert change.result["created"] is False
    assert change.subject == "update bob as #2"
    apply(state, change)


def test_register_again_with_one_field_keeps_the_other() -> None:
    state = make_state(session("bob", 2, role="Writer", goal="ship docs"))
    change = sessions.register(state, T0 + SEC, session="bob", role=None, goal="ship more docs")
    doc = only_doc(change)
    assert isinstance(doc, Session)
    assert (doc.role, doc.goal, doc.number) == ("Writer", "ship more docs", 2)


@pytest.mark.parametrize(
    ("role", "goal", "number"),
    [("role", "goal", None), (None, None, None), ("role", None, 2), (None, "goal", 2)],
)
def test_unchanged_register_is_a_noop(
    role: str | None, goal: str | None, number: int | None
) -> None:
    state = make_state(session("alice", 1), session("bob", 2))
    change = sessions.register(
        state, T0 + timedelta(hours=1), session="bob", role=role, goal=goal, number=number
    )
    assert change.noop
    assert change.writes == {}
    assert change.result["created"] is False
    assert change.result["session"]["number"] == 2


def test_register_can_move_own_number_to_a_free_one() -> None:
    state = make_state(session("alice", 1), session("bob", 2))
    change = sessions.register(state, T0, session="bob", role="role", goal="goal", number=4)
    after = apply(state, change)
    assert after.sessions["bob"].number == 4
    assert after.free_numbers() == [2, 3]


def test_register_cannot_move_onto_a_taken_number() -> None:
    state = make_state(session("alice", 1), session("bob", 2))
    with pytest.raises(ConflictError) as exc:
        sessions.register(state, T0, session="bob", role="role", goal="goal", number=1)
    assert exc.value.details["holder"] == "alice"


@pytest.mark.parametrize(("role", "goal"), [(None, "g"), ("r", None), (None, None)])
def test_new_session_needs_role_and_goal(role: str | None, goal: str | None) -> None:
    with pytest.raises(UsageError):
        sessions.register(make_state(), T0, session="alice", role=role, goal=goal)


@pytest.mark.parametrize(
    ("role", "goal"),
    [
        ("", "g"),
        ("r", ""),
        ("two\nlines", "g"),
        (" padded", "g"),
        ("r", "trailing "),
        ("r" * 201, "g"),
        ("r", "g" * 501),
        ("bell\x07", "g"),
    ],
)
def test_register_rejects_bad_role_or_goal_as_invalid(role: str, goal: str) -> None:
    with pytest.raises(InvalidError) as exc:
        sessions.register(make_state(), T0, session="alice", role=role, goal=goal)
    assert exc.value.code == ExitCode.INVALID


def test_register_accepts_limits() -> None:
    change = sessions.register(make_state(), T0, session="alice", role="r" * 200, goal="g" * 500)
    assert not change.noop


# --- claim ------------------------------------------------------------------------


def test_claim_refuses_without_a_session() -> None:
    with pytest.raises(RefusedError) as exc:
        claims.claim(two_sessions(), T0, session=None, type_="task", name="x")
    assert "GITCOORD_SESSION" in exc.value.message


def test_claim_refuses_an_unregistered_session_and_says_how_to_register() -> None:
    with pytest.raises(RefusedError) as exc:
        claims.claim(two_sessions(), T0, session="mallory", type_="task", name="x")
    assert exc.value.code == ExitCode.REFUSED
    assert "register" in exc.value.message
    assert exc.value.details["session"] == "mallory"


def test_claim_refuses_when_not_initialised() -> None:
    with pytest.raises(RefusedError) as exc:
        claims.claim(State(), T0, session="alice", type_="task", name="x")
    assert "gitcoord init" in exc.value.message


def test_new_claim_generation_one_default_lease() -> None:
    state = make_state(session("alice", 1), cfg=config(lease_hours=1.5))
    change = claims.claim(state, T0, session="alice", type_="task", name="i-match", note="working")
    doc = only_doc(change)
    assert isinstance(doc, Claim)
    assert list(change.writes) == [at("coordination/claims/task/i-match.yaml")]
    assert (doc.holder, doc.generation, doc.note) == ("alice", 1, "working")
    assert doc.acquired_at == T0
    assert doc.expires_at == T0 + timedelta(hours=1.5)
    assert doc.renewed_at is None and doc.released_at is None
    assert change.op == "claim"
    assert change.subject == "claim task/i-match by alice"
    assert change.session == "alice"
    assert change.resource == "task/i-match"
    assert change.trailers == {
        "Gitcoord-Generation": "1",
        "Gitcoord-Expires": "2025-03-01T13:30:00Z",
    }
    assert change.result["action"] == "claim"
    assert change.result["claim"]["status"] == "live"
    assert change.result["claim"]["resource"] == "task/i-match"


def test_claim_with_explicit_ttl() -> None:
    change = claims.claim(
        two_sessions(), T0, session="alice", type_="task", name="x", ttl=timedelta(minutes=10)
    )
    doc = only_doc(change)
    assert isinstance(doc, Claim)
    assert doc.expires_at == T0 + timedelta(minutes=10)


def test_claim_held_by_another_is_a_conflict_naming_holder() -> None:
    state, _ = do_claim(two_sessions(), "alice", T0, ttl=timedelta(minutes=10))
    with pytest.raises(ConflictError) as exc:
        do_claim(state, "bob", T0 + timedelta(minutes=3))
    err = exc.value
    assert err.code == ExitCode.CONFLICT
    assert err.details["holder"] == "alice"
    assert err.details["resource"] == "task/i-match"
    assert err.details["generation"] == 1
    assert err.details["expires_at"] == "2025-03-01T12:10:00Z"
    assert err.details["takeover_after"] == "2025-03-01T12:11:00Z"
    assert err.details["path"] == at("coordination/claims/task/i-match.yaml")
    assert "alice" in err.message and "7m" in err.message


def test_expired_claim_within_skew_grace_is_still_a_conflict() -> None:
    state, _ = do_claim(two_sessions(), "alice", T0, ttl=timedelta(minutes=10))
    with pytest.raises(ConflictError) as exc:
        do_claim(state, "bob", T0 + timedelta(minutes=10, seconds=30))
    assert "clock-skew grace" in exc.value.message
    assert exc.value.details["holder"] == "alice"


@pytest.mark.parametrize("skew", [0, 1, 60, 600])
def test_skew_grace_boundary_to_the_second(skew: int) -> None:
    state, _ = do_claim(two_sessions(skew=skew), "alice", T0, ttl=timedelta(minutes=10))
    boundary = T0 + timedelta(minutes=10) + timedelta(seconds=skew)
    with pytest.raises(ConflictError):
        do_claim(state, "bob", boundary - SEC)
    _, change = do_claim(state, "bob", boundary)
    assert change.op == "takeover"


def test_takeover_bumps_generation_and_names_previous_holder() -> None:
    state, _ = do_claim(two_sessions(), "alice", T0, ttl=timedelta(minutes=10), note="alice's")
    later = T0 + timedelta(hours=1)
    after, change = do_claim(state, "bob", later, ttl=timedelta(minutes=5))
    doc = claim_of(after)
    assert (doc.holder, doc.generation) == ("bob", 2)
    assert doc.acquired_at == later
    assert doc.expires_at == later + timedelta(minutes=5)
    assert doc.note == ""  # the old holder's note does not carry over
    assert change.op == "takeover"
    assert change.subject == "take over task/i-match from alice by bob"
    assert change.trailers["Gitcoord-Takeover-From"] == "alice"
    assert change.trailers["Gitcoord-Generation"] == "2"
    assert change.result["action"] == "takeover"


def test_same_holder_again_renews_with_same_generation() -> None:
    state, _ = do_claim(two_sessions(), "alice", T0, ttl=timedelta(minutes=10), note="keep me")
    later = T0 + timedelta(minutes=8)
    after, change = do_claim(state, "alice", later, ttl=timedelta(minutes=30))
    doc = claim_of(after)
    assert change.op == "renew"
    assert change.subject == "renew task/i-match by alice"
    assert "Gitcoord-Takeover-From" not in change.trailers
    assert doc.generation == 1
    assert doc.acquired_at == T0
    assert doc.renewed_at == later
    assert doc.expires_at == later + timedelta(minutes=30)
    assert doc.note == "keep me"


def test_renewal_can_replace_the_note() -> None:
    state, _ = do_claim(two_sessions(), "alice", T0, note="first")
    after, _ = do_claim(state, "alice", T0 + SEC, note="second")
    assert claim_of(after).note == "second"


def test_holder_reclaiming_own_expired_claim_keeps_generation() -> None:
    state, _ = do_claim(two_sessions(), "alice", T0, ttl=timedelta(minutes=10))
    after, change = do_claim(state, "alice", T0 + timedelta(days=1))
    assert change.op == "renew"
    assert claim_of(after).generation == 1
    assert claim_of(after).status(T0 + timedelta(days=1)) == "live"


def test_released_claim_claimed_by_another_is_plain_claim_with_next_generation() -> None:
    state, _ = do_claim(two_sessions(), "alice", T0)
    state = apply(
        state, claims.release(state, T0 + SEC, session="alice", type_="task", name="i-match")
    )
    after, change = do_claim(state, "bob", T0 + 2 * SEC)
    assert change.op == "claim"
    assert "Gitcoord-Takeover-From" not in change.trailers
    assert change.subject == "claim task/i-match by bob"
    doc = claim_of(after)
    assert (doc.holder, doc.generation, doc.released_at) == ("bob", 2, None)
    assert doc.acquired_at == T0 + 2 * SEC


def test_released_claim_claimed_again_by_same_holder_is_a_new_grant() -> None:
    state, _ = do_claim(two_sessions(), "alice", T0)
    state = apply(
        state, claims.release(state, T0 + SEC, session="alice", type_="task", name="i-match")
    )
    after, change = do_claim(state, "alice", T0 + 2 * SEC)
    assert change.op == "claim"
    assert claim_of(after).generation == 2
    assert claim_of(after).released_at is None


def test_generation_grows_across_every_change_of_holder() -> None:
    state = make_state(session("alice", 1), session("bob", 2), session("carol", 3))
    t = T0
    ten = timedelta(minutes=10)
    seen: list[tuple[str, int]] = []

    def step(who: str) -> None:
        nonlocal state
        state, change = do_claim(state, who, t, ttl=ten)
        seen.append((change.op, claim_of(state).generation))

    step("alice")  # claim 1
    t += SEC
    step("alice")  # renew 1
    t += timedelta(hours=1)
    step("bob")  # takeover 2
    t += SEC
    state = apply(state, claims.release(state, t, session="bob", type_="task", name="i-match"))
    t += SEC
    step("carol")  # claim 3
    t += timedelta(hours=1)
    step("alice")  # takeover 4
    assert seen == [("claim", 1), ("renew", 1), ("takeover", 2), ("claim", 3), ("takeover", 4)]


def test_claims_on_different_resources_are_independent() -> None:
    state, _ = do_claim(two_sessions(), "alice", T0)
    change = claims.claim(state, T0, session="bob", type_="service", name="i-match")
    state = apply(state, change)
    change = claims.claim(state, T0, session="bob", type_="task", name="i-match-2")
    state = apply(state, change)
    assert {k: c.holder for k, c in state.claims.items()} == {
        "task/i-match": "alice",
        "service/i-match": "bob",
        "task/i-match-2": "bob",
    }


def test_claim_with_glob_name_is_one_file_under_its_type() -> None:
    change = claims.claim(two_sessions(), T0, session="alice", type_="path", name="src/api/**")
    (path,) = change.writes
    assert path == at("coordination/claims/path/src%2Fapi%2F%2A%2A.yaml")
    assert change.resource == "path/src/api/**"


@pytest.mark.parametrize("note", ["bell\x07", "x" * 2001, "nul\x00"])
def test_claim_rejects_bad_notes(note: str) -> None:
    with pytest.raises(InvalidError):
        claims.claim(two_sessions(), T0, session="alice", type_="task", name="x", note=note)


def test_claim_note_may_be_multiline() -> None:
    change = claims.claim(
        two_sessions(), T0, session="alice", type_="task", name="x", note="line 1\n\tline 2"
    )
    doc = only_doc(change)
    assert isinstance(doc, Claim)
    assert doc.note == "line 1\n\tline 2"


# --- renew ------------------------------------------------------------------------


def test_renew_own_claim() -> None:
    state, _ = do_claim(two_sessions(), "alice", T0, ttl=timedelta(minutes=10))
    change = claims.renew(
        state,
        T0 + timedelta(minutes=9),
        session="alice",
        type_="task",
        name="i-match",
        ttl=timedelta(hours=1),
    )
    doc = only_doc(change)
    assert isinstance(doc, Claim)
    assert change.op == "renew"
    assert doc.generation == 1
    assert doc.expires_at == T0 + timedelta(minutes=69)


def test_renew_someone_elses_claim_is_refused() -> None:
    state, _ = do_claim(two_sessions(), "alice", T0)
    with pytest.raises(RefusedError) as exc:
        claims.renew(state, T0 + SEC, session="bob", type_="task", name="i-match")
    assert exc.value.code == ExitCode.REFUSED
    assert exc.value.details["holder"] == "alice"


def test_renew_someone_elses_expired_claim_is_refused_not_taken() -> None:
    state, _ = do_claim(two_sessions(), "alice", T0, ttl=timedelta(minutes=1))
    with pytest.raises(RefusedError):
        claims.renew(state, T0 + timedelta(days=1), session="bob", type_="task", name="i-match")


def test_renew_unknown_claim_is_refused() -> None:
    with pytest.raises(RefusedError) as exc:
        claims.renew(two_sessions(), T0, session="alice", type_="task", name="nothing")
    assert exc.value.details["resource"] == "task/nothing"


def test_renew_released_claim_is_refused() -> None:
    state, _ = do_claim(two_sessions(), "alice", T0)
    state = apply(
        state, claims.release(state, T0 + SEC, session="alice", type_="task", name="i-match")
    )
    with pytest.raises(RefusedError) as exc:
        claims.renew(state, T0 + 2 * SEC, session="alice", type_="task", name="i-match")
    assert "released" in exc.value.message


def test_renew_after_being_taken_over_is_refused() -> None:
    state, _ = do_claim(two_sessions(), "alice", T0, ttl=timedelta(minutes=1))
    state, _ = do_claim(state, "bob", T0 + timedelta(hours=1))
    with pytest.raises(RefusedError) as exc:
        claims.renew(
            state, T0 + timedelta(hours=1, seconds=1), session="alice", type_="task", name="i-match"
        )
    assert exc.value.details["holder"] == "bob"


def test_renew_refuses_unregistered() -> None:
    state, _ = do_claim(two_sessions(), "alice", T0)
    with pytest.raises(RefusedError):
        claims.renew(state, T0, session="ghost", type_="task", name="i-match")


# --- release ----------------------------------------------------------------------


def test_release_own_claim_leaves_a_tombstone() -> None:
    state, _ = do_claim(two_sessions(), "alice", T0, note="n")
    later = T0 + timedelta(minutes=5)
    change = claims.release(state, later, session="alice", type_="task", name="i-match")
    assert change.op == "release"
    assert change.subject == "release task/i-match by alice"
    assert change.resource == "task/i-match"
    assert change.trailers == {"Gitcoord-Generation": "1"}
    assert change.result["action"] == "released"
    assert change.result["claim"]["status"] == "released"
    after = apply(state, change)
    doc = claim_of(after)
    assert doc.released_at == later
    assert (doc.holder, doc.generation, doc.note) == ("alice", 1, "n")
    assert list(change.writes) == [at("coordination/claims/task/i-match.yaml")]
    assert change.writes[at("coordination/claims/task/i-match.yaml")] is not None


def test_release_twice_is_a_noop() -> None:
    state, _ = do_claim(two_sessions(), "alice", T0)
    state = apply(
        state, claims.release(state, T0 + SEC, session="alice", type_="task", name="i-match")
    )
    change = claims.release(state, T0 + 2 * SEC, session="alice", type_="task", name="i-match")
    assert change.noop
    assert change.result["action"] == "already-released"
    assert change.result["claim"]["released_at"] == "2025-03-01T12:00:01Z"


def test_release_someone_elses_claim_is_refused() -> None:
    state, _ = do_claim(two_sessions(), "alice", T0)
    with pytest.raises(RefusedError) as exc:
        claims.release(state, T0 + SEC, session="bob", type_="task", name="i-match")
    assert exc.value.details["holder"] == "alice"


def test_release_someone_elses_released_claim_is_refused() -> None:
    state, _ = do_claim(two_sessions(), "alice", T0)
    state = apply(
        state, claims.release(state, T0 + SEC, session="alice", type_="task", name="i-match")
    )
    with pytest.raises(RefusedError):
        claims.release(state, T0 + 2 * SEC, session="bob", type_="task", name="i-match")


def test_release_unknown_claim_is_refused() -> None:
    with pytest.raises(RefusedError) as exc:
        claims.release(two_sessions(), T0, session="alice", type_="task", name="nothing")
    assert "not claimed" in exc.value.message


def test_release_own_expired_claim_is_allowed() -> None:
    state, _ = do_claim(two_sessions(), "alice", T0, ttl=timedelta(minutes=1))
    change = claims.release(
        state, T0 + timedelta(days=2), session="alice", type_="task", name="i-match"
    )
    assert change.result["action"] == "released"


def test_holder_can_release_even_if_its_clock_went_back() -> None:
    state, _ = do_claim(two_sessions(), "alice", T0 + timedelta(minutes=5))
    change = claims.release(state, T0, session="alice", type_="task", name="i-match")
    assert check_state(state.apply(change.writes)) == []


def test_release_refuses_unregistered_and_uninitialised() -> None:
    with pytest.raises(RefusedError):
        claims.release(two_sessions(), T0, session="ghost", type_="task", name="x")
    with pytest.raises(RefusedError):
        claims.release(State(), T0, session="alice", type_="task", name="x")


# --- Claim model helpers ----------------------------------------------------------


def test_claim_status_and_takeable() -> None:
    c = Claim(
        type="task",
        name="x",
        holder="alice",
        generation=1,
        acquired_at=T0,
        expires_at=T0 + timedelta(minutes=10),
    )
    assert c.status(T0) == "live"
    assert c.status(T0 + timedelta(minutes=10)) == "expired"
    skew = timedelta(seconds=60)
    assert not c.takeable(T0 + timedelta(minutes=10, seconds=59), skew)
    assert c.takeable(T0 + timedelta(minutes=11), skew)
    released = c.model_copy(update={"released_at": T0 + SEC})
    assert released.status(T0 + SEC) == "released"
    assert released.takeable(T0 + SEC, skew)


# --- validate.check_state ---------------------------------------------------------


def rules(problems: list[Problem]) -> set[tuple[str, str]]:
    return {(p.path, p.rule) for p in problems}


def test_check_state_clean() -> None:
    state, _ = do_claim(two_sessions(), "alice", T0)
    assert check_state(state) == []
    assert check_state(State()) == []


def test_check_state_duplicate_numbers() -> None:
    state = make_state(session("alice", 2), session("bob", 2), session("carol", 1))
    problems = check_state(state)
    assert rules(problems) == {(at("coordination/sessions/bob.yaml"), "unique-number")}
    assert "alice" in problems[0].message


def test_check_state_number_out_of_range() -> None:
    state = make_state(session("alice", 1), session("bob", 5), slots=4)
    problems = check_state(state)
    assert rules(problems) == {(at("coordination/sessions/bob.yaml"), "number-range")}
    assert "1..4" in problems[0].message


def test_check_state_unregistered_holder() -> None:
    ghost = Claim(
        type="task",
        name="x",
        holder="ghost",
        generation=3,
        acquired_at=T0,
        expires_at=T0 + timedelta(hours=1),
    )
    problems = check_state(make_state(session("alice", 1), claims=(ghost,)))
    assert rules(problems) == {(at("coordination/claims/task/x.yaml"), "holder-registered")}
    assert "ghost" in problems[0].message


def test_check_state_time_order() -> None:
    bad_session = Session(
        id="alice", number=1, role="r", goal="g", registered_at=T0, updated_at=T0 - SEC
    )
    backwards = Claim(
        type="task",
        name="a",
        holder="alice",
        generation=1,
        acquired_at=T0,
        expires_at=T0,
    )
    released_early = Claim(
        type="task",
        name="b",
        holder="alice",
        generation=1,
        acquired_at=T0,
        expires_at=T0 + SEC,
        released_at=T0 - SEC,
    )
    problems = check_state(make_state(bad_session, claims=(backwards, released_early)))
    assert rules(problems) == {
        (at("coordination/sessions/alice.yaml"), "time-order"),
        (at("coordination/claims/task/a.yaml"), "time-order"),
        (at("coordination/claims/task/b.yaml"), "time-order"),
    }


def test_check_state_reports_files_without_config() -> None:
    state = State(config=None, sessions={"alice": session("alice", 1)})
    assert ("coordination/config.yaml", "layout") in rules(check_state(state))


def test_check_state_keeps_load_problems() -> None:
    loaded = Problem("coordination/junk", "layout", "unexpected entry in coordination/")
    state = State(config=config(), problems=(loaded,))
    assert check_state(state) == [loaded]


def test_register_refuses_to_plan_onto_invalid_numbers_is_caught_by_validator() -> None:
    # A state the ops would never produce, but a hand edit could: the validator sees it.
    state = make_state(session("alice", 1))
    dup = state.apply({kinds.session_path("bob", fmt=FORMAT): session("bob", 1)})
    assert (at("coordination/sessions/bob.yaml"), "unique-number") in rules(check_state(dup))


# --- load_state over a directory (no git) -----------------------------------------


def write_tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root


GOOD_CONFIG = f"format: {FORMAT}\nslots: 4\ncreated_at: '2025-03-01T12:00:00Z'\n"
GOOD_SESSION = (
    "id: alice\nnumber: 1\nrole: r\ngoal: g\n"
    "registered_at: '2025-03-01T12:00:00Z'\nupdated_at: '2025-03-01T12:00:00Z'\n"
)


def test_load_state_from_directory_reads_files(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {
            "coordination/config.yaml": GOOD_CONFIG,
            at("coordination/sessions/alice.yaml"): GOOD_SESSION,
        },
    )
    state = load_state(DirSource(str(tmp_path)))
    assert state.problems == ()
    assert state.config is not None and state.config.slots == 4
    assert state.sessions["alice"].number == 1


def test_load_state_without_coordination_folder_is_uninitialised(tmp_path: Path) -> None:
    state = load_state(DirSource(str(tmp_path)))
    assert not state.initialised
    assert check_state(state) == []


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (
            {at("coordination/sessions/alice.yaml"): "id: [unclosed\n"},
            (at("coordination/sessions/alice.yaml"), "yaml"),
        ),
        (
            {at("coordination/sessions/alice.yaml"): "- a list\n"},
            (at("coordination/sessions/alice.yaml"), "schema"),
        ),
        (
            {at("coordination/sessions/alice.yaml"): GOOD_SESSION + "colour: blue\n"},
            (at("coordination/sessions/alice.yaml"), "schema"),
        ),
        (
            {at("coordination/sessions/bob.yaml"): GOOD_SESSION},
            (at("coordination/sessions/bob.yaml"), "path"),
        ),
        (
            {"coordination/sessions/notes.txt": "hi\n"},
            ("coordination/sessions/notes.txt", "layout"),
        ),
        ({"coordination/extra.yaml": "a: 1\n"}, ("coordination/extra.yaml", "layout")),
        (
            {at("coordination/claims/loose.yaml"): "a: 1\n"},
            (at("coordination/claims/loose.yaml"), "layout"),
        ),
    ],
)
def test_load_state_reports_each_bad_file(
    tmp_path: Path, files: dict[str, str], expected: tuple[str, str]
) -> None:
    write_tree(tmp_path, {"coordination/config.yaml": GOOD_CONFIG, **files})
    problems = check_state(load_state(DirSource(str(tmp_path))))
    assert expected in rules(problems)


def test_load_state_reports_missing_config(tmp_path: Path) -> None:
    write_tree(tmp_path, {at("coordination/sessions/alice.yaml"): GOOD_SESSION})
    assert ("coordination/config.yaml", "layout") in rules(
        check_state(load_state(DirSource(str(tmp_path))))
    )


def test_load_state_claim_in_wrong_file(tmp_path: Path) -> None:
    claim_yaml = (
        "type: task\nname: i-match\nholder: alice\ngeneration: 1\n"
        "acquired_at: '2025-03-01T12:00:00Z'\nexpires_at: '2025-03-01T13:00:00Z'\n"
    )
    write_tree(
        tmp_path,
        {
            "coordination/config.yaml": GOOD_CONFIG,
            at("coordination/sessions/alice.yaml"): GOOD_SESSION,
            at("coordination/claims/task/other.yaml"): claim_yaml,
            at("coordination/claims/service/i-match.yaml"): claim_yaml,
        },
    )
    state = load_state(DirSource(str(tmp_path)))
    assert rules(check_state(state)) == {
        (at("coordination/claims/task/other.yaml"), "path"),
        (at("coordination/claims/service/i-match.yaml"), "path"),
    }
    assert state.claims == {}


# --- names ------------------------------------------------------------------------

GOOD_IDS = ["s1", "research-1", "a.b_c-d", "A" * 64, "9lives", "X"]
# A `$`-anchored re.match would also accept one trailing newline: names.py uses fullmatch.
BAD_IDS = [
    "",
    "-rf",
    "--help",
    ".hidden",
    "_x",
    "a/b",
    "../x",
    "a..b",
    "..",
    ".",
    "a b",
    " a",
    "a ",
    "a\nb",
    "a\tb",
    "A" * 65,
    "é",
    "a:b",
    "a\\b",
    "a*",
    "~a",
    "broadcast",
    "a\n",
]


@pytest.mark.parametrize("value", GOOD_IDS)
def test_good_session_ids(value: str) -> None:
    assert names.check_session_id(value) == value
    assert kinds.session_path(value, fmt=FORMAT) == at(f"coordination/sessions/{value}.yaml")


@pytest.mark.parametrize("value", BAD_IDS)
def test_bad_session_ids(value: str) -> None:
    with pytest.raises(UsageError) as exc:
        names.check_session_id(value)
    assert exc.value.code == ExitCode.USAGE
    assert exc.value.details["field"] == "session"


GOOD_TYPES = ["task", "service", "path", "a", "x_y-z9", "t" * 32]
BAD_TYPES = [
    "",
    "Task",
    "TASK",
    "1task",
    "-task",
    "_task",
    "ta sk",
    "a/b",
    "..",
    ".",
    "a.b",
    "t" * 33,
    " task",
    "tâsk",
    "ta\nsk",
    "task\n",
]


@pytest.mark.parametrize("value", GOOD_TYPES)
def test_good_claim_types(value: str) -> None:
    assert names.check_claim_type(value) == value


@pytest.mark.parametrize("value", BAD_TYPES)
def test_bad_claim_types(value: str) -> None:
    with pytest.raises(UsageError) as exc:
        names.check_claim_type(value)
    assert exc.value.details["field"] == "type"


GOOD_NAMES = [
    "i-match",
    "src/api/**",
    "prospects:1-25",
    "a.b",
    "file.txt",
    "a/b/c",
    "_x",
    "*",
    "?",
    "[abc]",
    "{a,b}",
    "x" * 128,
    "a/.b",
    "user@host",
    "a+b=c",
    "v~1",
    "50%",
    "a#tag",
    "a!b^c",
    "x%2e%2e",
    "x%2F",
]
BAD_NAMES = [
    "",
    "-rf",
    "--force",
    ".hidden",
    ".",
    "..",
    "../etc/passwd",
    "a/../b",
    "a/..",
    "a/./b",
    "a/.",
    "a//b",
    "a/",
    "/abs",
    "a b",
    " a",
    "a ",
    "a\tb",
    "a\nb",
    "x" * 129,
    "a\\b",
    'a"b',
    "a'b",
    "a$b",
    "a;b",
    "a|b",
    "a`b",
    "é",
    "~home",
    "#tag",
    "%2e%2e",
    "%2F",
    "i-match\n",
]


@pytest.mark.parametrize("value", GOOD_NAMES)
def test_good_claim_names(value: str) -> None:
    assert names.name_problem(value) is None
    assert names.check_claim_name(value) == value


@pytest.mark.parametrize("value", BAD_NAMES)
def test_bad_claim_names(value: str) -> None:
    assert names.name_problem(value) is not None
    with pytest.raises(UsageError) as exc:
        names.check_claim_name(value)
    assert exc.value.code == ExitCode.USAGE
    assert exc.value.details["field"] == "name"


def test_long_names_are_shortened_in_messages() -> None:
    with pytest.raises(UsageError) as exc:
        names.check_claim_name("x" * 129 + " ")
    assert "x" * 41 not in exc.value.message


def _assert_contained(type_: str, name: str) -> str:
    path = kinds.claim_path(type_, name, fmt=FORMAT)
    prefix = f"coordination/claims/{type_}/"
    assert path.startswith(prefix)
    shard, _, stem = path[len(prefix) :].partition("/")  # one of 256 folders (format 4)
    assert len(shard) == 2 and all(c in "0123456789abcdef" for c in shard), shard
    assert stem.endswith(".yaml")
    stem = stem[: -len(".yaml")]
    assert "/" not in stem and "\\" not in stem
    assert stem not in ("", ".", "..")
    assert not stem.startswith("-")
    assert posixpath.normpath(path) == path
    assert os.path.normpath(path).startswith(os.path.normpath(prefix))
    assert names.claim_name_from_stem(stem) == name
    return path


@pytest.mark.parametrize("value", GOOD_NAMES)
def test_claim_path_stays_under_its_type(value: str) -> None:
    _assert_contained("task", value)


def test_claim_path_is_injective_for_lookalikes() -> None:
    lookalikes = ["a/b", "a%2Fb", "a%252Fb", "a_b", "a:b", "x..", "x%2E%2E", "x%2e%2e"]
    paths = [
        kinds.claim_path("task", n, fmt=FORMAT) for n in lookalikes if names.name_problem(n) is None
    ]
    assert len(paths) == len(set(paths))


def test_claim_path_examples() -> None:
    assert kinds.claim_path("task", "i-match", fmt=FORMAT) == at(
        "coordination/claims/task/i-match.yaml"
    )
    assert kinds.claim_path("path", "src/api/**", fmt=FORMAT) == at(
        "coordination/claims/path/src%2Fapi%2F%2A%2A.yaml"
    )
    assert names.resource_key("path", "src/api/**") == "path/src/api/**"


@settings(max_examples=300, deadline=None)
@given(
    type_=st.from_regex(names.CLAIM_TYPE_PATTERN, fullmatch=True),
    name=st.from_regex(names.CLAIM_NAME_PATTERN, fullmatch=True),
)
def test_every_valid_name_maps_to_one_file_under_its_type(type_: str, name: str) -> None:
    if names.name_problem(name) is not None:
        return
    _assert_contained(type_, name)


@settings(max_examples=300, deadline=None)
@given(a=st.text(max_size=20), b=st.text(max_size=20))
def test_claim_file_stem_is_injective(a: str, b: str) -> None:
    if a != b:
        assert names.claim_file_stem(a) != names.claim_file_stem(b)


@settings(max_examples=300, deadline=None)
@given(value=st.text(max_size=140))
def test_accepted_names_never_escape(value: str) -> None:
    try:
        names.check_claim_name(value)
    except UsageError:
        return
    assert not value.startswith(("-", ".", "/"))
    assert ".." not in value.split("/")
    assert not any(c.isspace() for c in value)
    _assert_contained("task", value)


@settings(max_examples=300, deadline=None)
@given(value=st.text(max_size=70))
def test_accepted_session_ids_are_plain_file_names(value: str) -> None:
    try:
        names.check_session_id(value)
    except UsageError:
        return
    path = kinds.session_path(value, fmt=FORMAT)
    assert path == at(f"coordination/sessions/{value}.yaml")
    assert "/" not in value and not value.startswith(("-", "."))
    assert posixpath.normpath(path) == path


# --- clock ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("10m", timedelta(minutes=10)),
        ("2h", timedelta(hours=2)),
        ("1d", timedelta(days=1)),
        ("1.5h", timedelta(minutes=90)),
        ("0.5m", timedelta(seconds=30)),
        (" 2h ", timedelta(hours=2)),
        ("30d", timedelta(days=30)),
        ("720h", timedelta(days=30)),
    ],
)
def test_parse_ttl_good(text: str, expected: timedelta) -> None:
    assert clock.parse_ttl(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "2",
        "h",
        "2x",
        "2H",
        "-1h",
        "+1h",
        "2 h",
        "1e3s",
        "1h30m",
        "0s",
        "0m",
        "31d",
        "721h",
        "2,5h",
        ".5h",
        "ten m",
        "2hours",
    ],
)
def test_parse_ttl_bad(text: str) -> None:
    with pytest.raises(UsageError) as exc:
        clock.parse_ttl(text)
    assert exc.value.code == ExitCode.USAGE


def test_hours_bounds() -> None:
    assert clock.hours(2) == timedelta(hours=2)
    assert clock.hours(720) == timedelta(days=30)
    for bad in (0, -1, 720.5):
        with pytest.raises(UsageError):
            clock.hours(bad)


def test_clock_offset_shifts_now(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITCOORD_CLOCK_OFFSET", "3600")
    before = datetime.now(timezone.utc).replace(microsecond=0)
    shifted = clock.now()
    after = datetime.now(timezone.utc)
    assert before + timedelta(hours=1) <= shifted <= after + timedelta(hours=1)
    assert shifted.microsecond == 0
    assert shifted.tzinfo is not None
    monkeypatch.setenv("GITCOORD_CLOCK_OFFSET", "-86400")
    assert clock.now() < before


def test_clock_offset_must_be_a_number(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITCOORD_CLOCK_OFFSET", "soon")
    with pytest.raises(UsageError):
        clock.now()


def test_iso_and_human_delta() -> None:
    assert clock.iso(T0) == "2025-03-01T12:00:00Z"
    assert clock.iso(T0.astimezone(timezone(timedelta(hours=2)))) == "2025-03-01T12:00:00Z"
    assert clock.human_delta(timedelta(seconds=45)) == "45s"
    assert clock.human_delta(timedelta(minutes=3, seconds=10)) == "3m"
    assert clock.human_delta(timedelta(hours=1, minutes=5)) == "1h05m"
    assert clock.human_delta(timedelta(days=2, hours=3)) == "2d03h"


# --- overlap problems: grouped, and the same answer as every pair compared ----------------


def _overlap_pairs_naive(state: State, now: datetime, keys: set[str] | None) -> set[str]:
    """Every binding claim against every other (what the validator did before grouping)."""
    from gitcoord.domain import overlap

    assert state.config is not None
    skew = state.config.skew
    found = set()
    for key in sorted(state.claims if keys is None else keys & set(state.claims)):
        claim = state.claims[key]
        if claim.takeable(now, skew):
            continue
        for other in state.claims.values():
            if (
                other.type == claim.type
                and other.name != claim.name
                and not other.takeable(now, skew)
                and overlap.overlaps(claim.type, other.name, claim.name)
                and other.holder != claim.holder
            ):
                found.add(f"{max(key, other.key)} > {min(key, other.key)}")
    return found


_CLAIM_NAMES = {
    "task": ["t1", "t2", "t1:1", "t1:2-4", "t1:*", "t2:3,5"],
    "batch": ["pages", "pages:1-3", "pages:3", "pages:4-9", "rows:1", "rows"],
    "path": ["src/**", "src/a.py", "docs/**", "docs/*.md", "*.md", "src/b/**"],
}


@settings(max_examples=200, deadline=None)
@given(
    picks=st.lists(
        st.tuples(
            st.sampled_from(sorted(_CLAIM_NAMES)),
            st.integers(0, 5),
            st.sampled_from(["alice", "bob", "carol"]),
            st.sampled_from(["live", "released", "expired"]),
        ),
        max_size=14,
    ),
    subset=st.lists(st.integers(0, 13), max_size=4),
)
def test_overlap_problems_find_exactly_the_pairs_every_comparison_finds(
    picks: list[tuple[str, int, str, str]], subset: list[int]
) -> None:
    from gitcoord.domain.validate import overlap_problems

    now = T0 + timedelta(hours=1)
    claims: dict[str, Claim] = {}
    for type_, k, holder, status in picks:
        name = _CLAIM_NAMES[type_][k]
        claims[f"{type_}/{name}"] = Claim(
            type=type_,
            name=name,
            holder=holder,
            generation=1,
            acquired_at=T0,
            expires_at=now - timedelta(hours=1)
            if status == "expired"
            else now + timedelta(hours=1),
            released_at=T0 if status == "released" else None,
        )
    state = make_state(session("alice", 1), session("bob", 2), session("carol", 3))
    state = State(config=state.config, sessions=state.sessions, claims=claims)
    listed = sorted(claims)
    for keys in (None, {listed[i] for i in subset if i < len(listed)} | {"task/none"}):
        got = overlap_problems(state, now, keys)
        said = {f"{p.path} {p.message}" for p in got}
        assert len(said) == len(got)  # each pair once
        pairs = {
            f"{c.key} > {p.message.split()[1]}"
            for p in got
            for c in claims.values()
            if kinds.CLAIMS.file(c.type, c.name, state.format) == p.path
        }
        assert pairs == _overlap_pairs_naive(state, now, keys), (keys, got)


def test_a_state_checked_again_at_another_time_is_judged_at_that_time() -> None:
    """check_state keeps the rules that hold whatever the time of the states it checked
    last (a State is immutable): the overlap of claims, which depends on the time, is
    still judged at each call's own time, and the answer is the one a fresh check
    gives, in the same order."""
    from gitcoord.domain.validate import check_state

    now = T0 + timedelta(hours=1)

    def claim(name: str, holder: str, hours: float) -> Claim:
        return Claim(
            type="task",
            name=name,
            holder=holder,
            generation=1,
            acquired_at=T0,
            expires_at=now + timedelta(hours=hours),
        )

    base = make_state(session("alice", 1), session("bob", 2))
    claims = {
        "task/t1:1-3": claim("t1:1-3", "alice", 1),
        "task/t1:2": claim("t1:2", "bob", 2),
        "task/ghost": claim("ghost", "nobody", 1),  # a holder never registered
    }
    state = State(config=base.config, sessions=base.sessions, claims=claims)
    later = now + timedelta(hours=1, minutes=30)  # alice's claim has expired by then

    def rules(problems: list[Problem]) -> list[str]:
        return [p.rule for p in problems]

    first = check_state(state, now)
    assert rules(first) == ["holder-registered", "overlap"]
    assert rules(check_state(state, later)) == ["holder-registered"]
    assert check_state(state, now) == first
    assert check_state(state) == first[:1]
    fresh = dataclasses.replace(state)  # another object: checked from scratch
    assert fresh is not state
    assert check_state(fresh, now) == first
    assert check_state(fresh, later) == check_state(state, later)
