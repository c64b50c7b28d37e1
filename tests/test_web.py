"""`gitcoord web` in a real browser, and `gitcoord state --html`.

One module-wide setup: a bare remote, a clone where sessions registered, beat, claimed,
added tasks and milestones, talked and asked for approvals, and a second clone where the
human runs `gitcoord web` (its own git identity, an approver, and its own SSH signing
key). One headless Chromium (Debian's `chromium` + `chromium-driver`, through Selenium)
loads the page with the printed token. Without the browser those tests skip and say why;
`.ci/run` installs it as root.

Screenshots (desktop 1280 and phone 375 wide) go to $GITCOORD_ARTIFACTS, else to a
temporary folder pytest keeps.
"""

from __future__ import annotations

import base64
import json
import os
import re
import select
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
from conftest import git, run, shared_world

ARTIFACTS = os.environ.get("GITCOORD_ARTIFACTS")  # read before the hermetic env clears it
HOSTILE = "<script>alert(1)</script>"
HOSTILE_BODY = '<img src=x onerror="alert(2)"> & "quotes" \u202eevil'
HUMAN = "boss@example.com"
WAIT = 20.0  # seconds any one thing may take to show in the browser


@dataclass
class Site:
    root: Path
    remote: Path
    sessions: Path  # the sessions' clone
    human: Path  # the clone `gitcoord web` runs in
    env: dict[str, str]  # the module's hermetic environment
    url: str  # with the token
    base: str  # without
    proc: subprocess.Popen[str]
    approvals: dict[str, str]  # subject -> id
    escalation: str  # the id of a message sessions sent to `human`


def _tip(repo: Path) -> str:
    return git(repo, "rev-parse", "gitcoord").strip()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    with shared_world(tmp_path_factory, "web") as shared:
        root, remote = shared.root, shared.remote
        sessions = shared.clone("sessions")
        assert run(sessions, "init", "--approver", HUMAN, "--slots", "6").code == 0
        seed = [
            ("orchestrator", "Orchestrator - Coordinate all sessions", "12 sessions, 0 collisions"),
            ("research-1", "Prospect research (batch 1-25)", "25 prospects/day, score 70+"),
            ("research-2", "Prospect research (batch 26-50)", "25 prospects/day, score 70+"),
            ("outreach-1", "Email outreach (emails 1-17)", "17 emails/day, 95% delivery"),
        ]
        for sid, role, goal in seed:
            r = run(sessions, "register", "--role", role, "--goal", goal, session=sid)
            assert r.code == 0, r.err
        beats = [
            ("orchestrator", "reviewing", "registry", "approval", "80"),
            ("research-1", "scoring", "prospects:1-25", "batch", "60"),
            ("research-2", "scoring", "prospects:26-50", "batch", "35"),
        ]
        for sid, *beat in beats:
            assert run(sessions, "heartbeat", *beat, "--force", session=sid).code == 0
        todo = [
            ("research-1", "claim", "batch", "prospects:1-25", "--hours", "4"),
            ("research-2", "claim", "batch", "prospects:26-50", "--hours", "4"),
            ("orchestrator", "task", "add", "Deploy church-guidance-ministry", "--priority", "P0"),
            (
                "orchestrator",
                "task",
                "add",
                "Verify DNS and SSL",
                "--priority",
                "P0",
                "--depends-on",
                "t1",
            ),
            ("orchestrator", "task", "add", "Score prospects 1-25", "--priority", "P1"),
            ("orchestrator", "task", "add", "CI/CD pipeline", "--priority", "P2"),
            (
                "orchestrator",
                "milestone",
                "add",
                "activation",
                "--step",
                "All 12 registered",
                "--step",
                "Human approves registry",
                "--step",
                "Daily workflow runs",
            ),
            ("orchestrator", "milestone", "done", "activation", "1"),
            ("outreach-1", "claim", "task", "t1", "--hours", "2"),
        ]
        for sid, *args in todo:
            r = run(sessions, *args, session=sid)
            assert r.code == 0, (args, r.err)
        sent = run(
            sessions,
            "--json",
            "send",
            "orchestrator",
            "Batch 1 scored",
            "25 prospects, average 74/100",
            session="research-1",
        )
        assert sent.code == 0, sent.err
        first = sent.json()["message"]["id"]  # type: ignore[index]
        assert (
            run(
                sessions,
                "send",
                "research-1",
                "Re: Batch 1 scored",
                "Queued for approval",
                "--reply-to",
                first,
                session="orchestrator",
            ).code
            == 0
        )
        escalated = run(
            sessions,
            "--json",
            "send",
            "human",
            "Need staging credentials",
            HOSTILE_BODY,
            session="outreach-1",
        )
        assert escalated.code == 0, escalated.err
        escalation = escalated.json()["message"]["id"]  # type: ignore[index]
        approvals = {}
        for subject, sid, kind, note in [
            (
                "Final registry",
                "orchestrator",
                "registry",
                "4 of 6 slots; batches split 1-25/26-50",
            ),
            ("Send emails 1-17 today", "outreach-1", "general", "Drafts in outreach/day-1/"),
            ("Prospects 26-50 for outreach", "research-2", "general", "25 prospects, avg 71"),
            ("Prospects 1-25 for outreach", "research-1", "general", "25 prospects, avg 74"),
            ("Outreach template v2", "outreach-1", "general", "Shorter subject line"),
        ]:
            r = run(
                sessions,
                "--json",
                "approval",
                "request",
                subject,
                "--kind",
                kind,
                "--note",
                note,
                session=sid,
            )
            assert r.code == 0, r.err
            approvals[subject] = r.json()["approval"]["id"]  # type: ignore[index]

        human = shared.clone("human")
        git(human, "config", "user.email", HUMAN)
        git(human, "config", "user.name", "The Boss")
        key = root / "boss_key"
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", HUMAN, "-f", str(key)], check=True
        )
        git(human, "config", "user.signingKey", str(key))
        env = dict(os.environ)
        # the person is who the clone's git config says (not the suite's fixed identity)
        server_env = {
            k: v for k, v in env.items() if not k.startswith(("GIT_AUTHOR_", "GIT_COMMITTER_"))
        }
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gitcoord",
                "-C",
                str(human),
                "web",
                "--port",
                "0",
                "--interval",
                "1",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=server_env,
        )
        try:
            ready, _, _ = select.select([proc.stdout], [], [], 30)
            assert ready, "gitcoord web printed nothing in 30 s"
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line, proc.stderr.read() if proc.stderr else ""
            found = re.search(r"http://\S+", line)
            assert found, line
            url = found.group(0)
            base = url.split("?", 1)[0]
            yield Site(root, remote, sessions, human, env, url, base, proc, approvals, escalation)
        finally:
            proc.terminate()  # by its own PID
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def as_module(site: Site, *args: str, session: str | None = None) -> Any:
    """The CLI in this process, in the module's environment (its HOME, keys, config)."""
    with pytest.MonkeyPatch.context() as mp:
        for k, v in site.env.items():
            mp.setenv(k, v)
        r = run(site.sessions, *args, session=session)
    assert r.code == 0, (args, r.err)
    return r


def _request(
    url: str, *, data: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, str]:
    req = urllib.request.Request(url, data=data, headers=headers or {})

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *a: Any, **k: Any) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(req, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


# --- without a browser ---------------------------------------------------------------------


def test_every_request_without_the_token_is_refused(site: Site) -> None:
    for path in ("", "sections", "events", "approvals", "favicon.ico"):
        code, body = _request(site.base + path)
        assert code == 403, path
        assert "token" in body
    assert _request(site.base + "?token=wrong")[0] == 403
    code, _ = _request(site.base + "approvals", data=b"action=approve&id=x")
    assert code == 403
    cookie = site.base.split(":")[2].strip("/")
    # the token, but through a name that is not loopback (a rebinding DNS name)
    token = site.url.split("token=", 1)[1]
    host = {"Host": f"evil.example:{cookie}"}
    assert _request(site.base + f"?token={token}", headers=host)[0] == 403


def test_the_token_becomes_a_strict_cookie_and_the_page_reads_without_script(site: Site) -> None:
    token = site.url.split("token=", 1)[1]
    req = urllib.request.Request(site.url)

    class Keep(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *a: Any, **k: Any) -> None:
            return None

    try:
        urllib.request.build_opener(Keep).open(req, timeout=10)
        raise AssertionError("expected a redirect")
    except urllib.error.HTTPError as err:
        assert err.code == 303 and err.headers["Location"] == "/"
        cookie = err.headers["Set-Cookie"]
    assert token in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
    name_value = cookie.split(";", 1)[0]
    code, page = _request(site.base, headers={"Cookie": name_value})
    assert code == 200
    # server-rendered: everything is in the HTML itself
    for text in (
        "research-1",
        "Prospect research (batch 1-25)",
        "prospects:1-25",
        "Deploy church-guidance-ministry",
        "Final registry",
        "activation",
        "Batch 1 scored",
        "Audit log",
        'href="./">Refresh</a>',
    ):
        assert text in page, text
    assert HOSTILE_BODY not in page and "&lt;img src=x onerror=&quot;alert(2)&quot;&gt;" in page
    assert "\\u202e" in page  # the override is shown, not obeyed
    assert token not in page  # the form carries a CSRF token derived from it, not it
    # a form without its CSRF token, or from another site, changes nothing
    aid = site.approvals["Send emails 1-17 today"]
    code, _ = _request(
        site.base + "approvals",
        data=f"action=approve&id={aid}".encode(),
        headers={"Cookie": name_value},
    )
    assert code == 403
    csrf = re.search(r'name="csrf" value="([^"]+)"', page)
    assert csrf is not None
    code, _ = _request(
        site.base + "approvals",
        data=f"action=approve&id={aid}&csrf={csrf.group(1)}".encode(),
        headers={"Cookie": name_value, "Origin": "http://evil.example"},
    )
    assert code == 403
    pending = as_module(site, "--json", "approval", "list").json()["approvals"]
    assert {a["id"]: a["status"] for a in pending}[aid] == "pending"


def test_threads_and_the_day_in_hours() -> None:
    """The pure parts of the overview, without git."""
    from datetime import datetime, timedelta, timezone

    from gitcoord.api.overview import threads
    from gitcoord.audit.history import Entry
    from gitcoord.audit.timeline import day

    def msg(mid: str, sender: str, to: str, reply_to: str | None = None) -> dict[str, Any]:
        return {"id": mid, "sender": sender, "to": to, "subject": mid, "reply_to": reply_to}

    shown = threads(
        [
            msg("20261201T100000000Z-aaaaaa", "a", "b"),  # answered by b
            msg("20261201T100100000Z-bbbbbb", "b", "a", "20261201T100000000Z-aaaaaa"),
            msg("20261201T100200000Z-cccccc", "a", "human"),  # answered by an approver
            msg("20261201T100300000Z-dddddd", HUMAN, "a", "20261201T100200000Z-cccccc"),
            msg("20261201T100400000Z-eeeeee", "c", "b"),  # nobody answered
            msg("20261201T100500000Z-ffffff", "c", "broadcast"),  # needs no answer
        ],
        {HUMAN},
    )
    assert [len(t["messages"]) for t in shown] == [1, 1, 2, 2]  # newest thread first
    open_ = [m["id"] for t in shown for m in t["messages"] if m["unanswered"]]
    assert open_ == ["20261201T100400000Z-eeeeee"]

    now = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)

    def entry(minutes_ago: int, **trailers: str) -> Entry:
        when = now - timedelta(minutes=minutes_ago)
        return Entry(f"{minutes_ago:040x}", when, "s", {k: [v] for k, v in trailers.items()})

    entries = [  # newest first, as `log` reads them
        entry(
            5,
            **{
                "Gitcoord-Op": "send",
                "Gitcoord-Session": "b",
                "Gitcoord-Message": "m2",
                "Gitcoord-To": "a",
                "Gitcoord-Reply-To": "m1",
            },
        ),
        entry(
            8,
            **{
                "Gitcoord-Op": "claim",
                "Gitcoord-Session": "b",
                "Gitcoord-Resource": "task/x",
                "Gitcoord-Collisions": "2",
            },
        ),
        entry(
            9,
            **{
                "Gitcoord-Op": "send",
                "Gitcoord-Session": "a",
                "Gitcoord-Message": "m1",
                "Gitcoord-To": "b",
            },
        ),
        entry(
            70,
            **{
                "Gitcoord-Op": "heartbeat",
                "Gitcoord-Session": "a",
                "Gitcoord-Heartbeat": "2026-12-01T10:50:00Z",
            },
        ),
        entry(
            60 * 30,
            **{"Gitcoord-Op": "claim", "Gitcoord-Session": "a", "Gitcoord-Resource": "task/old"},
        ),  # before the window
    ]
    d = day(entries, now)
    assert len(d["hours"]) == 24 and d["hours"][-1] == "2026-12-01T12:00:00Z"
    # the last hour is the one running (12:00-13:00); 11:5x is the one before
    assert d["claims_granted"][-2] == 1 and sum(d["claims_granted"]) == 1
    assert d["collisions_prevented"][-2] == 2 and sum(d["work_collisions"]) == 0
    assert d["heartbeats"] == {"a": [0] * 21 + [1, 0, 0]}
    assert [(r["message"], r["by"], r["seconds"]) for r in d["replies"]] == [("m1", "b", 240.0)]


def test_one_fetch_per_interval_whatever_the_number_of_pages(site: Site) -> None:
    """The hub's refresh is shared: many pages at once cost one fetch."""
    from gitcoord.api.coordinator import Coordinator
    from gitcoord.faces.web.app import Hub

    async def many() -> tuple[int, int]:
        with Coordinator(str(site.human)) as c:
            hub = Hub(c, interval=60)
            async with anyio.create_task_group() as tg:
                for _ in range(20):
                    tg.start_soon(hub.refresh)
            once = hub.fetches
            hub.interval = 0.2
            hub.watchers = 5  # five open pages
            with anyio.move_on_after(1.1):
                await hub.poll()
            return once, hub.fetches

    with pytest.MonkeyPatch.context() as mp:
        for k, v in site.env.items():
            mp.setenv(k, v)
        once, polled = anyio.run(many)
    assert once == 1
    assert 2 <= polled <= 1 + 6  # one per 0.2 s interval, not one per page


def test_state_html_is_one_self_contained_page_that_escapes(site: Site, tmp_path: Path) -> None:
    with pytest.MonkeyPatch.context() as mp:
        for k, v in site.env.items():
            mp.setenv(k, v)
        assert (
            run(site.sessions, "register", "--role", HOSTILE, "--goal", "g", session="mallory").code
            == 0
        )
        out = tmp_path / "state.html"
        r = run(site.sessions, "state", "--html", "--output", str(out))
        assert r.code == 0, r.err
        assert r.out.startswith("wrote ") and str(out) in r.out
        printed = run(site.sessions, "--json", "state", "--html")
        assert run(site.sessions, "leave", session="mallory").code == 0
    page = out.read_text()
    assert page.startswith("<!doctype html>") and page.rstrip().endswith("</html>")
    for sid in ("orchestrator", "research-1", "research-2", "outreach-1", "mallory"):
        assert sid in page
    assert HOSTILE not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    # self-contained and inert: no script, nothing loaded, no form, a CSP that forbids both
    assert "<script" not in page.lower() and "<form" not in page and "<button" not in page
    assert not re.search(r'\s(src|href)="(https?:)?//', page)
    assert "<style>" in page and "Content-Security-Policy" in page
    assert "<svg" in page  # the charts are drawn inline
    assert printed.json()["html"].count("mallory") == page.count("mallory")  # type: ignore[index]


# --- in the browser ------------------------------------------------------------------------


def _browser_missing() -> str | None:
    if shutil.which("chromium") is None and not os.access("/usr/bin/chromium", os.X_OK):
        return "needs Debian's chromium (apt-get install chromium; .ci/run does it as root)"
    if shutil.which("chromedriver") is None and not os.access("/usr/bin/chromedriver", os.X_OK):
        return "needs chromium-driver (apt-get install chromium-driver; .ci/run does it as root)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "needs selenium (pip install -e '.[test]')"
    return None


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = Path(ARTIFACTS) if ARTIFACTS else tmp_path_factory.mktemp("artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def browser(site: Site, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    missing = _browser_missing()
    if missing:
        pytest.skip(missing)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tmp_path_factory.mktemp("chromium")
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for arg in (
        "--headless=new",
        "--no-sandbox",  # root in CI
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,900",
        f"--user-data-dir={profile}",
        # nothing beyond this machine: no updates, sync, safe browsing, name lookups
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
        "--disable-domain-reliability",
        "--no-first-run",
        "--no-default-browser-check",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    ):
        options.add_argument(arg)
    service = Service(shutil.which("chromedriver") or "/usr/bin/chromedriver")
    with pytest.MonkeyPatch.context() as mp:
        for k, v in site.env.items():
            mp.setenv(k, v)
        mp.setenv("SE_OFFLINE", "true")  # Selenium Manager never downloads anything
        driver = webdriver.Chrome(service=service, options=options)
    try:
        driver.set_page_load_timeout(30)
        driver.get(site.url)
        yield driver
    finally:
        driver.quit()


def _wait(driver: Any, until: Any, message: str) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT, poll_frequency=0.1).until(until, message)


def _section_text(driver: Any, sid: str) -> str:
    """Read in one go: the live script may swap the section in between two calls."""
    return str(driver.execute_script(f"return document.getElementById('{sid}').innerText"))


def _shoot(driver: Any, path: Path, height: int | None = None) -> None:
    """The whole page (or its top `height` pixels) as a PNG."""
    params: dict[str, Any] = {"captureBeyondViewport": True, "fromSurface": True}
    if height is not None:
        width = driver.execute_script("return document.documentElement.clientWidth")
        params["clip"] = {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}
    from selenium.common.exceptions import TimeoutException

    _wait(driver, lambda d: d.execute_script("return document.readyState") == "complete", "load")
    try:
        shot = driver.execute_cdp_cmd("Page.captureScreenshot", params)
    except TimeoutException:
        # Seen once at the end of a loaded CI run, right after `get`: chromedriver's wait
        # for the navigation to settle timed out ("aborted by navigation: Not attached to
        # an active page"). A picture is not what these tests judge: load the page again
        # (the emulated device stays) and take it again.
        driver.refresh()
        shot = driver.execute_cdp_cmd("Page.captureScreenshot", params)
    path.write_bytes(base64.b64decode(shot["data"]))


def test_the_page_shows_the_day_and_keeps_the_token_out_of_sight(browser: Any, site: Site) -> None:
    from selenium.webdriver.common.by import By

    assert browser.current_url == site.base  # the token left the address bar
    cookies = {c["name"]: c for c in browser.get_cookies()}
    (cookie,) = cookies.values()
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert "daily review" in browser.title
    for landmark in ("header", "main", "nav", "footer"):
        assert browser.find_elements(By.TAG_NAME, landmark), landmark
    sessions = _section_text(browser, "sessions")
    for text in ("orchestrator", "Prospect research (batch 26-50)", "60%", "scoring"):
        assert text in sessions
    claims = _section_text(browser, "claims")
    assert "batch/prospects:1-25" in claims and "research-1" in claims
    board = _section_text(browser, "board")
    assert "P0" in board and "blocked" in board and "claimed" in board
    assert "activation" in _section_text(browser, "milestones")
    messages = _section_text(browser, "messages")
    assert "Re: Batch 1 scored" in messages and "unanswered" in messages
    assert '<img src=x onerror="alert(2)">' in messages  # shown as text, never run
    assert browser.find_elements(By.CSS_SELECTOR, "#metrics svg[role=img]")
    log = _section_text(browser, "log")
    assert re.search(r"\b[0-9a-f]{10}\b", log)  # commit ids
    health = _section_text(browser, "health")  # the line `gitcoord status` prints
    assert "health: ATTENTION" in health and "approvals pending" in health
    assert "blocked P0" in health and "Verify DNS and SSL" in health
    # only the page's own script ran: the hostile text made no element
    assert len(browser.find_elements(By.TAG_NAME, "script")) == 1
    assert not browser.find_elements(By.CSS_SELECTOR, "main img")


def test_a_heartbeat_appears_without_reloading(browser: Any, site: Site) -> None:
    browser.get(site.base)
    browser.execute_script("window.gitcoordMarker = 'still the same page';")
    _wait(
        browser,
        lambda d: d.execute_script("return document.getElementById('live-status') !== null"),
        "no live page",
    )
    as_module(
        site,
        "heartbeat",
        "deploying",
        "treasury-manager",
        "smoke-tests",
        "90",
        "--force",
        session="research-2",
    )
    _wait(
        browser,
        lambda d: "treasury-manager" in _section_text(d, "sessions"),
        "the heartbeat did not appear on the open page",
    )
    assert "90%" in _section_text(browser, "sessions")
    assert browser.execute_script("return window.gitcoordMarker") == "still the same page"


def _card(browser: Any, subject: str) -> Any:
    from selenium.webdriver.common.by import By

    for card in browser.find_elements(By.CSS_SELECTOR, "#approvals li.request"):
        if subject in card.text:
            return card
    raise AssertionError(f"no pending request {subject!r} on the page")


def _approvals(site: Site) -> dict[str, dict[str, Any]]:
    rows = as_module(site, "--json", "approval", "list", "--all").json()["approvals"]
    return {a["id"]: a for a in rows}


def test_approve_from_the_page_as_the_person_running_it(browser: Any, site: Site) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    browser.get(site.base)
    aid = site.approvals["Final registry"]
    button = _card(browser, "Final registry").find_element(By.CSS_SELECTOR, "button[value=approve]")
    button.send_keys(Keys.ENTER)  # by keyboard
    notice = _wait(
        browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".notice"), "no outcome shown"
    )[0]
    assert f"approved {aid} as {HUMAN}" in notice.text, notice.text
    assert notice.get_attribute("role") == "status"
    got = _approvals(site)[aid]
    assert got["status"] == "approved" and got["approved_by"] == HUMAN
    # one commit, a person's act: no session speaks in it, and it is signed by their key
    head = git(site.remote, "cat-file", "commit", "gitcoord")
    assert "gpgsig -----BEGIN SSH SIGNATURE-----" in head
    assert f"<{HUMAN}>" in head and "Gitcoord-Session:" not in head
    assert f"Gitcoord-Approval: {aid}" in head
    assert "Final registry" not in _section_text(browser, "approvals").split("Decided")[0]


def test_reject_from_the_page_with_a_reason(browser: Any, site: Site) -> None:
    from gitcoord.api.verbs import BY_NAME

    if "approval reject" not in BY_NAME:
        pytest.skip("this gitcoord has no `approval reject` verb yet")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    browser.get(site.base)
    aid = site.approvals["Prospects 26-50 for outreach"]
    card = _card(browser, "Prospects 26-50 for outreach")
    reason = card.find_element(By.CSS_SELECTOR, "input[name=reason]")
    label = card.find_element(By.CSS_SELECTOR, f"label[for='{reason.get_attribute('id')}']")
    assert label.text
    reason.send_keys("scores under 70: rescore first")
    reason.send_keys(Keys.TAB)  # to the Reject button, by keyboard
    active = browser.switch_to.active_element
    assert active.get_attribute("value") == "reject"
    active.send_keys(Keys.ENTER)
    notice = _wait(
        browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".notice"), "no outcome shown"
    )[0]
    assert aid in notice.text, notice.text
    got = _approvals(site)[aid]
    assert got["status"] == "rejected", got
    assert "rescore first" in json.dumps(got)


def test_approve_several_at_once(browser: Any, site: Site) -> None:
    from selenium.webdriver.common.by import By

    browser.get(site.base)
    picked = ["Prospects 1-25 for outreach", "Outreach template v2"]
    for subject in picked:
        box = _card(browser, subject).find_element(By.CSS_SELECTOR, "input[type=checkbox]")
        box.click()
    browser.find_element(By.CSS_SELECTOR, "form#batch button").click()
    notice = _wait(
        browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".notice"), "no outcome shown"
    )[0]
    got = _approvals(site)
    for subject in picked:
        aid = site.approvals[subject]
        assert f"approved {aid} as {HUMAN}" in notice.text, notice.text
        assert got[aid]["status"] == "approved"
    assert got[site.approvals["Send emails 1-17 today"]]["status"] == "pending"


def test_a_refused_decision_shows_the_command_lines_error(browser: Any, site: Site) -> None:
    from selenium.webdriver.common.by import By

    browser.get(site.base)
    card = _card(browser, "Send emails 1-17 today")
    browser.execute_script(
        "arguments[0].querySelector('input[name=id]').value = '20991231-abcdef';", card
    )
    card.find_element(By.CSS_SELECTOR, "button[value=approve]").click()
    notice = _wait(
        browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".notice.error"), "no error shown"
    )[0]
    assert notice.get_attribute("role") == "alert"
    assert notice.text.startswith("gitcoord: ") and "20991231-abcdef" in notice.text
    assert _approvals(site)[site.approvals["Send emails 1-17 today"]]["status"] == "pending"


def test_answer_an_escalation_from_the_page(browser: Any, site: Site) -> None:
    from selenium.webdriver.common.by import By

    browser.get(site.base)
    assert "unanswered" in _section_text(browser, "messages")
    form = browser.find_element(By.CSS_SELECTOR, "#messages form.answer")
    box = form.find_element(By.TAG_NAME, "textarea")
    label = form.find_element(By.CSS_SELECTOR, f"label[for='{box.get_attribute('id')}']")
    assert "outreach-1" in label.text
    box.send_keys("They are in the vault: ops/staging.")
    form.find_element(By.TAG_NAME, "button").click()
    notice = _wait(
        browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".notice"), "no outcome shown"
    )[0]
    assert "to outreach-1" in notice.text, notice.text
    inbox = as_module(site, "--json", "inbox", "--for", "outreach-1").json()["messages"]
    (answer,) = [m for m in inbox if m.get("reply_to") == site.escalation]
    assert answer["sender"] == HUMAN and answer["body"] == "They are in the vault: ops/staging."
    assert answer["subject"] == "Re: Need staging credentials"
    assert "unanswered" not in _section_text(browser, "messages")
    assert not browser.find_elements(By.CSS_SELECTOR, "#messages form.answer")


def test_no_serious_accessibility_violation(browser: Any, site: Site) -> None:
    axe = pytest.importorskip("axe_core_python.base", reason="needs axe-core-python")
    browser.get(site.base)
    browser.execute_script(axe.AXE_SCRIPT)  # axe-core itself, from the package: no network
    result = browser.execute_async_script(
        "var done = arguments[arguments.length - 1];"
        "axe.run(document, {runOnly: {type: 'tag', values: "
        "['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice']}})"
        ".then(done, function (e) { done({error: String(e)}); });"
    )
    assert "error" not in result, result
    assert result["passes"], "axe checked nothing"
    bad = [
        (v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3])
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]
    assert bad == []
    # every control can be reached and named: buttons, fields, links
    unnamed = browser.execute_script(
        "return Array.from(document.querySelectorAll('button, input:not([type=hidden]), a'))"
        ".filter(function (e) { return e.tabIndex < 0; }).length;"
    )
    assert unnamed == 0


def test_phone_width_has_no_horizontal_scroll_and_screenshots(
    browser: Any, site: Site, artifacts: Path
) -> None:
    browser.get(site.base)
    _shoot(browser, artifacts / "web-desktop-1280.png")
    _shoot(browser, artifacts / "web-desktop-1280-top.png", height=1400)  # docs/web.png
    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": 375, "height": 812, "deviceScaleFactor": 1, "mobile": True},
    )
    try:
        browser.get(site.base)
        width = browser.execute_script(
            "return [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
        )
        assert width[1] == 375, width
        assert width[0] <= width[1], f"horizontal scroll at 375 px: {width}"
        _shoot(browser, artifacts / "web-phone-375.png")
        _shoot(browser, artifacts / "web-phone-375-top.png", height=1600)
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    assert (artifacts / "web-desktop-1280.png").stat().st_size > 10_000
    print(f"screenshots in {artifacts}")


def test_state_html_reads_on_a_phone(browser: Any, site: Site, tmp_path: Path) -> None:
    with pytest.MonkeyPatch.context() as mp:
        for k, v in site.env.items():
            mp.setenv(k, v)
        out = tmp_path / "state.html"
        assert run(site.sessions, "state", "--html", "--output", str(out)).code == 0
    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": 375, "height": 812, "deviceScaleFactor": 1, "mobile": True},
    )
    try:
        browser.get(out.as_uri())
        assert "orchestrator" in _section_text(browser, "sessions")
        sw, cw = browser.execute_script(
            "return [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
        )
        assert sw <= cw
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
        browser.get(site.base)


def test_listening_beyond_loopback_needs_a_flag(site: Site) -> None:
    with pytest.MonkeyPatch.context() as mp:
        for k, v in site.env.items():
            mp.setenv(k, v)
        r = run(site.human, "web", "--host", "0.0.0.0", "--port", "0")
    assert r.code == 2
    assert "--allow-remote" in r.err and "plain HTTP" in r.err
