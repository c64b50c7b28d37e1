"""Hostile and malformed input, generated (hypothesis) and hand-picked, on real git.

Every input — claim types and names, session ids, durations, message subjects and
bodies (as arguments and as raw bytes on stdin), roles, goals, heartbeat fields,
and whole files pushed onto the branch by hand — is either accepted and reads back
exactly as given, or refused with exit 2 (usage) or 5 (invalid) and one clear line
on stderr. Never a traceback or exit 1, never a file outside `coordination/` on the
branch, never an argument that git could read as an option, and an oversized input
is refused before anything is written. A file pushed by hand that breaks the schema
is named by `validate`, and `doctor --fix` sets it aside so work goes on.

The generated tests run GITCOORD_FUZZ_EXAMPLES examples each (default 25; e.g.
`GITCOORD_FUZZ_EXAMPLES=500 pytest tests/test_hostile.py` for a heavier run).
Examples share one repository per test (local branch, no remote: fast).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import World, at, git, run
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reliability import (
    REF,
    assert_clean_failure,
    branch_files,
    env_int,
    hand_commit_local,
    hand_push,
    show,
    tip,
)

from gitcoord import clock
from gitcoord.domain import kinds, names, overlap, yamlio
from gitcoord.domain.models import FORMAT

EXAMPLES = env_int("GITCOORD_FUZZ_EXAMPLES", 25)
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# What an attacker or a confused agent would try first.
NASTY = [
    "-x",
    "--upload-pack=touch PWNED",
    "--exec=touch PWNED",
    "-oProxyCommand=touch PWNED",
    "--output=PWNED",
    "../../../etc/passwd",
    "..",
    ".",
    "/abs",
    "a/../b",
    "a//b",
    "a/",
    "a\nb",
    "a\rb",
    "a\x00b",
    "a\x1bb",
    " lead",
    "trail ",
    "\t",
    "",
    "ünïcødé",
    "😀",
    "\u202eevil",
    "a" * 200,
    "HEAD",
    "refs/heads/x",
    "@{-1}",
    "x:1-5",
    "x:5-1",
    "x:1-99999999999999",
    "*",
    "**",
    "[",
    "{a,b}",
    "$(touch PWNED)",
    "`touch PWNED`",
    "a;touch PWNED",
    "%2e%2e",
    "a\\b",
    "'",
    '"',
    "broadcast",
    "con",
    "x.lock",
    "a:b:c",
]


def hostile(extra: st.SearchStrategy[str] | None = None) -> st.SearchStrategy[str]:
    options = [st.sampled_from(NASTY), st.text(max_size=80)]
    if extra is not None:
        options.append(extra)
    return st.one_of(*options)


@pytest.fixture
def repo(world: World) -> Path:
    """A repository with no remote (the local branch coordinates), one session s1."""
    r = world.local_repo("solo")
    assert run(r, "init", "--slots", "1000").code == 0
    assert run(r, "register", "--role", "r", "--goal", "g", session="s1").code == 0
    return r


def check(r: Any, allowed: set[int], repo: Path, *, as_json: bool = False) -> None:
    """The exit code is allowed; a failure is one clear line (or, with --json, one
    document whose message is one line); nothing outside coordination/ on the branch."""
    assert r.code in allowed, (r.code, r.out, r.err)
    assert "Traceback" not in r.err + r.out
    if as_json:
        doc = json.loads(r.out)
        if r.code != 0:
            assert doc["error"]["code"] == r.code, doc
            assert "\n" not in doc["error"]["message"], doc
            assert r.err == "", r.err
    elif r.code != 0:
        assert_clean_failure(r.err, r.code)
        assert r.err.count("\n") == 1, f"not one line: {r.err!r}"
    outside = [f for f in branch_files(repo) if not f.startswith("coordination/")]
    assert outside == [], outside
    assert not (repo / "PWNED").exists() and not Path("PWNED").exists()


def run_stdin(cwd: Path, data: bytes, *args: str, session: str | None = None) -> Any:
    """`run`, with `data` on stdin (the CLI reads `send ... -` from there)."""
    old = sys.stdin
    sys.stdin = io.TextIOWrapper(io.BytesIO(data))
    try:
        return run(cwd, *args, session=session)
    finally:
        sys.stdin = old


# --- names, ids, durations ---------------------------------------------------------------


@FUZZ
@given(
    type_=hostile(st.from_regex(names.CLAIM_TYPE_PATTERN, fullmatch=True)),
    name=hostile(st.from_regex(names.CLAIM_NAME_PATTERN, fullmatch=True)),
    separated=st.booleans(),
)
def test_claim_any_type_and_name(repo: Path, type_: str, name: str, separated: bool) -> None:
    args = ["claim", "--ttl", "1h", "--new-type"]
    args += ["--", type_, name] if separated else [type_, name]
    r = run(repo, *args, session="s1")
    check(r, {0, 2, 5}, repo)
    if r.code != 0:
        if type_.startswith("-") or name.startswith("-"):
            assert r.code == 2
        return
    # as the branch spells it: a folder's path claim is its glob, a batch's items canonical
    if type_ == overlap.PATH_TYPE:
        name = overlap.folder_glob(name)
    elif type_ == overlap.ITEMS_TYPE:
        name = overlap.canonical(name)
    path = kinds.claim_path(type_, name, fmt=FORMAT)
    assert path in branch_files(repo)
    doc = yamlio.load(show(repo, REF, path))
    assert (doc["type"], doc["name"], doc["holder"]) == (type_, name, "s1")
    claims = run(repo, "status", "--json").json()["claims"]  # type: ignore[index]
    assert f"{type_}/{name}" in {c["resource"] for c in claims}


@FUZZ
@given(session=hostile(st.from_regex(names.SESSION_ID_PATTERN, fullmatch=True)))
def test_register_any_session_id(repo: Path, session: str) -> None:
    r = run(repo, "--session", session, "register", "--role", "r", "--goal", "g")
    check(r, {0, 2} if session else {4}, repo)  # an empty id is no session at all
    if r.code == 0:
        assert kinds.session_path(session, fmt=FORMAT) in branch_files(repo)
        ids = [s["id"] for s in run(repo, "status", "--json").json()["sessions"]]  # type: ignore[index]
        assert session in ids


@FUZZ
@given(
    ttl=hostile(st.from_regex(r"\A[0-9]{1,12}(\.[0-9]{1,8})?[smhd]\Z")),
    hours=st.one_of(
        st.floats(allow_nan=True, allow_infinity=True).map(repr),
        st.sampled_from(["nan", "inf", "-inf", "1e400", "0x10", "", "1_000", "٣"]),
    ),
    which=st.sampled_from(["ttl", "hours"]),
)
def test_claim_any_duration(repo: Path, ttl: str, hours: str, which: str) -> None:
    value = ttl if which == "ttl" else hours
    before = clock.now()
    r = run(repo, "claim", "task", "dur", f"--{which}={value}", "--json", session="s1")
    check(r, {0, 2}, repo, as_json=True)
    if r.code != 0:
        return
    c = r.json()["claim"]  # type: ignore[index]
    expected = clock.parse_ttl(value) if which == "ttl" else clock.hours(float(value))
    expires = datetime.fromisoformat(c["expires_at"].replace("Z", "+00:00"))
    assert timedelta(0) < expected <= clock.MAX_TTL
    # Whole seconds on the branch; the command ran within this test's own minute.
    assert before + expected - timedelta(seconds=1) <= expires
    assert expires <= clock.now() + expected + timedelta(seconds=1)
    assert run(repo, "release", "task", "dur", session="s1").code == 0


# --- message subjects and bodies, roles, goals, heartbeat fields -------------------------


@FUZZ
@given(
    subject=hostile(),
    body=st.one_of(hostile(), st.text(max_size=3000), st.sampled_from(["", "-"])),
    to=st.sampled_from(["s1", "1", "broadcast", "nobody", "-s1", "0", "99"]),
)
def test_send_any_subject_and_body(repo: Path, subject: str, body: str, to: str) -> None:
    if body == "-":
        return  # stdin: the next test
    r = run(repo, "send", "--json", "--", to, subject, body, session="s1")
    check(r, {0, 2, 4, 5}, repo, as_json=True)
    if r.code == 4:  # unknown, or s1 itself (its inbox would never show it)
        assert to in ("nobody", "0", "99", "s1", "1"), r.err
    if r.code != 0:
        return
    m = r.json()["message"]  # type: ignore[index]
    doc = yamlio.load(show(repo, REF, kinds.message_path(m["to"], m["id"], fmt=FORMAT)))
    assert (doc["subject"], doc["body"], doc["sender"]) == (subject, body, "s1")


@FUZZ
@given(data=st.one_of(st.binary(max_size=4000), st.text(max_size=2000).map(str.encode)))
def test_send_any_bytes_on_stdin(repo: Path, data: bytes) -> None:
    r = run_stdin(repo, data, "send", "--json", "broadcast", "stdin", "-", session="s1")
    check(r, {0, 5}, repo, as_json=True)
    if r.code == 0:
        m = r.json()["message"]  # type: ignore[index]
        doc = yamlio.load(show(repo, REF, kinds.message_path("broadcast", m["id"], fmt=FORMAT)))
        assert doc["body"] == data.decode("utf-8", "replace")


@FUZZ
@given(
    role=hostile(),
    goal=hostile(),
    fields=st.tuples(hostile(), hostile(), hostile()),
    progress=st.one_of(st.integers(-5, 105).map(str), st.sampled_from(["x", "1e2", "", "-1"])),
)
def test_role_goal_and_heartbeat_fields(
    repo: Path, role: str, goal: str, fields: tuple[str, str, str], progress: str
) -> None:
    r = run(repo, "register", "--role", role, "--goal", goal, session="s1")
    check(r, {0, 2, 5}, repo)
    if r.code == 0:
        s = run(repo, "status", "--json").json()["sessions"][0]  # type: ignore[index]
        assert (s["role"], s["goal"]) == (role, goal)
    r = run(repo, "heartbeat", "--force", "--json", "--", *fields, progress, session="s1")
    check(r, {0, 2, 5}, repo, as_json=True)
    if r.code == 0:
        hb = run(repo, "status", "--json").json()["sessions"][0]["heartbeat"]  # type: ignore[index]
        assert (hb["action"], hb["target"], hb["phase"], hb["progress"]) == (
            *fields,
            int(progress),
        )


# --- files pushed by hand ------------------------------------------------------------------

SLOTS = [
    at("coordination/sessions/hx.yaml"),
    at("coordination/sessions/s1.yaml"),
    at("coordination/claims/task/hx.yaml"),
    at("coordination/claims/task/sub/hx.yaml"),
    at("coordination/heartbeats/s1.yaml"),
    at("coordination/reads/s1.yaml"),
    at("coordination/approvals/20260101-abcdef.yaml"),
    at("coordination/tasks/t1.yaml"),
    at("coordination/milestones/m1.yaml"),
    at("coordination/messages/s1/2026-01-01/20260101T000000000Z-abcdef.yaml"),
    "coordination/messages/s1/notaday",
    "coordination/activation.yaml",
    "coordination/roster.yaml",
    "coordination/junk.txt",
    "coordination/junk/deeper/file.yaml",
    "coordination/quarantine",
]

VALID = {
    "session": {
        "id": "hx",
        "number": 2,
        "role": "r",
        "goal": "g",
        "registered_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:00:00Z",
    },
    "claim": {
        "type": "task",
        "name": "hx",
        "holder": "s1",
        "generation": 1,
        "acquired_at": "2026-01-01T00:00:00Z",
        "expires_at": "2026-01-01T01:00:00Z",
    },
    "heartbeat": {
        "session": "s1",
        "action": "a",
        "target": "t",
        "phase": "p",
        "progress": 5,
        "at": "2026-01-01T00:00:00Z",
    },
}

HAND_PICKED = [
    b"[" * 3000 + b"]" * 3000,
    b"registered_at: 2026-13-45T00:00:00Z\n",
    b"a: !!python/object/apply:os.system ['touch PWNED']\n",
    b"!!int x\n",
    b"a: 0x" + b"f" * 5000 + b"\n",
    b"\xff\xfe\x00garbage",
    b"\xef\xbb\xbfid: hx\n",
    b"a: &a [1,2]\nb: *a\n",
    b"a: 1\n---\nb: 2\n",
    b"x" * (300 * 1024),
    b"",
    b"null\n",
    b"- 1\n- 2\n",
]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    doc = dict(draw(st.sampled_from(list(VALID.values()))))
    for _ in range(draw(st.integers(0, 3))):
        key = draw(st.sampled_from([*doc, "extra"]))
        if draw(st.booleans()):
            doc[key] = draw(json_values)
        else:
            doc.pop(key, None)
    return _dump(doc)


def _dump(data: Any) -> bytes:
    buf = io.StringIO()
    yamlio._y().dump(data, buf)
    return buf.getvalue().encode()


FILES = st.one_of(
    st.sampled_from(HAND_PICKED),
    st.binary(max_size=600),
    json_values.map(_dump),
    mutated(),
    st.sampled_from([_dump(v) for v in VALID.values()]),
)


@FUZZ
@given(path=st.sampled_from(SLOTS), data=FILES)
def test_any_file_pushed_by_hand_is_named_then_repaired(repo: Path, path: str, data: bytes) -> None:
    base = tip(repo)
    try:
        hand_commit_local(repo, {path: data})
        r = run(repo, "validate")
        check_listing(r, {0, 5})
        if r.code == 5:
            named = [ln for ln in r.err.splitlines()[1:] if ln.strip()]
            assert any(path in ln or _parent_named(ln, path) for ln in named), (path, r.err)
            # A bad file blocks writes until repaired — except a message, read on demand.
            blocked = run(repo, "claim", "task", "blocked", session="s1").code
            assert blocked == 5 or path.startswith("coordination/messages/"), blocked
            d = run(repo, "doctor")
            check_listing(d, {5})
            f = run(repo, "doctor", "--fix", "--json")
            assert f.code == 0, (f.out, f.err)
            moves = {q["path"]: q["to"] for q in f.json()["quarantine"]}  # type: ignore[index]
            if path in moves:
                assert show(repo, REF, moves[path]) == data, "the quarantined bytes changed"
            assert path not in branch_files(repo)
            assert run(repo, "validate").code == 0
        # (s1's own files may have been the bad ones: it registers again if need be)
        assert run(repo, "register", "--role", "r", "--goal", "g", session="s1").code == 0
        r = run(repo, "claim", "task", "after", "--ttl", "1m", session="s1")
        assert r.code == 0, r.err
        assert not (repo / "PWNED").exists()
    finally:
        git(repo, "update-ref", REF, str(base))


def _parent_named(line: str, path: str) -> bool:
    where = line.strip().split(":", 1)[0]
    return path.startswith(where + "/")


def check_listing(r: Any, allowed: set[int]) -> None:
    """validate/doctor: exit as allowed, a list of problems, never a traceback."""
    assert r.code in allowed, (r.code, r.out, r.err)
    assert_clean_failure(r.err, r.code)


# --- oversized input -------------------------------------------------------------------------


def test_oversized_inputs_are_refused_before_anything_is_written(world: World) -> None:
    clone = world.clone("c")
    assert run(clone, "init").code == 0
    assert run(clone, "register", "--role", "r", "--goal", "g", session="s1").code == 0
    before = tip(world.remote)
    big = b"x" * (5 * 1024 * 1024)
    env = {**os.environ, "GITCOORD_AGENT": "0"}
    argv = [sys.executable, "-m", "gitcoord", "-C", str(clone), "--session", "s1"]
    for via_agent in (False, True):
        p = subprocess.run(
            [*argv, "send", "broadcast", "huge", "-"],
            input=big,
            capture_output=True,
            env=env if not via_agent else dict(os.environ),
            timeout=120,
            check=False,
        )
        assert p.returncode == 5, (p.returncode, p.stderr)
        assert b"65536 bytes" in p.stderr and b"Traceback" not in p.stderr, p.stderr
    k100 = "y" * (100 * 1024)
    cases = [
        (("register", "--role", k100, "--goal", "g"), {5}),
        (("register", "--role", "r", "--goal", k100), {5}),
        (("send", "broadcast", k100, "body"), {5}),
        (("send", "broadcast", "subject", k100 * 2), {5}),
        (("claim", "task", k100), {2}),
        (("claim", k100, "x"), {2}),
        (("claim", "task", "x", "--note", k100), {5}),
        (("heartbeat", k100, "t", "p", "5", "--force"), {5}),
        (("send", k100, "s", "b"), {2}),
    ]
    for args, codes in cases:
        r = run(clone, *args, session="s1")
        assert r.code in codes, (args[0], r.code, r.err[:200])
        assert_clean_failure(r.err, r.code)
        assert len(r.err) < 2000, "the refusal echoes the whole input"
    r = run(clone, "register", "--role", "r", "--goal", "g", session=k100)
    assert r.code == 2 and len(r.err) < 2000
    assert tip(world.remote) == before


# --- option-like values never reach git ------------------------------------------------------

INJECTIONS = ["--upload-pack=touch PWNED", "--output=PWNED", "-oProxyCommand=touch PWNED"]


def test_option_like_values_are_refused_before_git_sees_them(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clone = world.clone("c")
    assert run(clone, "init").code == 0
    assert run(clone, "register", "--role", "r", "--goal", "g", session="s1").code == 0
    trace = tmp_path / "trace"
    monkeypatch.setenv("GIT_TRACE", str(trace))  # every git argv gitcoord runs, logged
    monkeypatch.chdir(tmp_path)
    for bad in INJECTIONS:
        attempts = [
            ["--session", "s1", "claim", "task", "--", bad],
            ["--session", "s1", "claim", "--", bad, "x"],
            ["--session", bad, "status"],
            ["--ref", bad, "status"],
            ["--remote", bad, "status"],
            ["validate", "--ref", bad],
            ["validate", "--range", f"{bad}..HEAD"],
            ["validate", "--range", f"HEAD..{bad}"],
            ["--session", "s1", "send", "--", bad, "s", "b"],
            ["--session", "s1", "send", "s1", "s", "b", "--reply-to", bad],
            ["--session", "s1", "renew", "task", "--", bad],
            ["--session", "s1", "task", "done", "--", bad],
            ["log", "--since", bad],
            ["--session", "s1", "doctor", "--session", bad],
        ]
        for args in attempts:
            r = run(clone, *args)
            assert r.code == 2, (args, r.code, r.err)
            assert_clean_failure(r.err, r.code)
    traced = trace.read_text(errors="replace") if trace.exists() else ""
    assert traced.count("trace: ") > 10, "GIT_TRACE logged nothing: the check would be vacuous"
    for bad in INJECTIONS:
        assert bad not in traced, f"git was called with {bad!r}:\n{traced[-2000:]}"
    assert not (clone / "PWNED").exists() and not (tmp_path / "PWNED").exists()


# --- a bad file pushed by hand through a real remote ----------------------------------------


def test_schema_violating_file_pushed_by_hand_is_named_and_doctor_unblocks_everyone(
    world: World,
) -> None:
    a, b = world.clone("a"), world.clone("b")
    assert run(a, "init").code == 0
    assert run(a, "register", "--role", "r", "--goal", "g", session="s1").code == 0
    assert run(b, "register", "--role", "r", "--goal", "g", session="s2").code == 0
    bad = b"id: s3\nnumber: many\nrole: r\ngoal: g\n"
    hand_push(a, {at("coordination/sessions/s3.yaml"): bad})
    for clone, s in ((a, "s1"), (b, "s2")):
        r = run(clone, "claim", "task", f"x-{s}", session=s)
        assert r.code == 5, r.err
        assert at("coordination/sessions/s3.yaml") in r.err and "doctor --fix" in r.err, r.err
    r = run(b, "validate")
    assert r.code == 5 and at("coordination/sessions/s3.yaml") in r.err and "number" in r.err
    r = run(b, "doctor", "--fix", session="s2")
    assert r.code == 0, r.err
    assert (
        "coordination/quarantine/" + at("coordination/sessions/s3.yaml")[13:].replace("/", "__")
        in r.out
    )
    for clone, s in ((a, "s1"), (b, "s2")):
        assert run(clone, "claim", "task", f"x-{s}", session=s).code == 0
    assert (
        show(
            world.remote,
            REF,
            "coordination/quarantine/"
            + at("coordination/sessions/s3.yaml")[13:].replace("/", "__"),
        )
        == bad
    )
    assert run(a, "validate").code == 0


def test_json_output_is_one_document_for_hostile_input(repo: Path) -> None:
    for bad in NASTY[:20]:
        r = run(repo, "claim", "--json", "--", "task", bad, session="s1")
        doc = json.loads(r.out)
        assert isinstance(doc, dict)
        if r.code:
            assert doc["error"]["code"] == r.code and "\n" not in doc["error"]["message"]
        assert "Traceback" not in r.err


# --- what gitcoord writes, it reads back --------------------------------------------------

YAML_ALPHABET = st.sampled_from(
    [*"[]{}'\"#|>-?:,!&*% \n\tab1", "\u2028", "é", "\x80", "\x85", "\x9f", "\ufffe", "😀"]
)


@settings(max_examples=max(200, EXAMPLES * 8), deadline=None)
@given(
    body=st.text(YAML_ALPHABET, max_size=400),
    subject=st.text(YAML_ALPHABET, min_size=1, max_size=120),
)
def test_every_message_gitcoord_writes_reads_back(body: str, subject: str) -> None:
    """The nesting guard refuses hostile files before parsing; it must never refuse a
    file gitcoord itself wrote, whatever brackets, quotes and indentation it holds."""
    from gitcoord.domain.models import Message

    try:
        msg = Message(
            id="20260101T000000000Z-abcdef",
            sender="a",
            to="b",
            subject=subject,
            body=body,
            sent_at=datetime(2026, 1, 1, tzinfo=clock.now().tzinfo),
        )
    except ValueError:
        return  # not a message gitcoord would write (control characters, blank subject)
    data = yamlio.load(yamlio.dump(msg))
    assert (data["subject"], data["body"]) == (subject, body)
