"""`gitcoord web`: a live page for the person who reviews the day, served on loopback.

What it shows is `gitcoord.api.overview` rendered by `gitcoord.api.htmlpage` (the
same renderer as `gitcoord state --html`); what a person does on it — approve,
reject with a reason — runs the very verbs the command line runs
(`BY_NAME["approval grant"]`, `BY_NAME["approval reject"]`) on the same
`Coordinator`, so it is signed as the person running `gitcoord web` and refused
exactly as `gitcoord approval ...` would be (the refusal's line is shown on the
page).

Who may use it: whoever holds the token. A random token (`secrets.token_urlsafe`)
is made at start and printed in the URL; the first request that carries it gets
it back as a cookie (HttpOnly, SameSite=Strict, named after the port) and is sent
on without it in the address bar. Every request without a valid token — page,
fragment, event stream, form — is answered 403. Forms carry a CSRF token (derived
from the token, so the token itself is never in the page), checked along with the
Origin header. Bound to loopback by default, where the Host header must name
loopback too (a rebinding DNS name gets 403); listening elsewhere needs
`--allow-remote` and says the page then travels unencrypted.

Live updates: one poller task per server fetches the branch tip at most every
`interval` seconds, only while someone watches (an open event stream), however
many pages are open; when the tip moves it reads the overview once, at that tip,
and tells every event stream (Server-Sent Events). The page's small script then
fetches the changed sections and swaps them in, leaving alone a section in which
the person is typing or has focus. Without JavaScript the page is plain HTML with
a Refresh link.

The Coordinator is used by one thread at a time (its `git cat-file` reader serves
one caller), on worker threads so the event loop never waits on git.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import hmac
import ipaddress
import secrets
import sys
import threading
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.to_thread
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from ... import clock
from ...api import htmlpage, overview
from ...api.coordinator import Coordinator
from ...api.verbs import BY_NAME
from ...domain.untrusted import terminal
from ...errors import GitcoordError, UsageError

FORM_LIMIT = 64 * 1024  # bytes of a posted form
KEEPALIVE = 15.0  # seconds between comments on an idle event stream
NOTICES = 100  # outcomes kept for the redirect after a form
REREAD = 60.0  # seconds after which an unmoved tip is read again: staleness moves with the clock

SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    # same-origin, not no-referrer: with no-referrer a browser sends "Origin: null" on
    # the page's own forms, and the Origin check could not tell them from another site's
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}


def page_csp(nonce: str) -> str:
    """The live page runs only its own script and styles (by nonce), talks only to
    itself, and posts forms only to itself."""
    return (
        f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
        "connect-src 'self'; img-src 'self' data:; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    )


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Hub:
    """The one picture of the branch that every page and event stream shares.

    `refresh` fetches the tip (at most once per `interval`, unless forced) and reads
    the overview again only when the tip moved; `version` counts the pictures, and
    each new one wakes the event streams."""

    def __init__(self, coordinator: Coordinator, interval: float) -> None:
        self.coordinator = coordinator
        self.interval = interval
        self.lock = threading.Lock()  # one caller of the Coordinator at a time
        self.doc: dict[str, Any] | None = None
        self.tip: str | None = None
        self.version = 0
        self.problem: str | None = None
        self.fetched_at = -1e9
        self.read_at = -1e9  # when the overview was last read
        self.fetches = 0  # how many times the tip was fetched (tests read it)
        self.watchers = 0
        self._refreshing: asyncio.Lock | None = None
        self._changed: asyncio.Event | None = None

    @property
    def changed(self) -> asyncio.Event:
        if self._changed is None:
            self._changed = asyncio.Event()
        return self._changed

    async def refresh(self, force: bool = False) -> None:
        if self._refreshing is None:
            self._refreshing = asyncio.Lock()
        async with self._refreshing:
            fresh = time.monotonic() - self.fetched_at < self.interval
            if fresh and not force and self.doc is not None:
                return
            try:
                again = self.doc is None or time.monotonic() - self.read_at > REREAD
                tip, doc = await anyio.to_thread.run_sync(self._read, self.tip, again)
            except GitcoordError as err:
                self.problem = err.message
            except Exception as exc:  # a bug: keep serving what we have, and say so
                print(f"gitcoord web: unexpected {type(exc).__name__}: {exc}", file=sys.stderr)
                self.problem = f"unexpected error: {type(exc).__name__}: {exc}"
            else:
                self.problem = None
                if doc is not None:
                    self.read_at = time.monotonic()
                    moved = tip != self.tip or self.doc is None
                    self.doc, self.tip = doc, tip
                    if moved:  # the pages' script reloads on this; the clock alone waits
                        self.version += 1  # for its minute
                        self.changed.set()
                        self._changed = asyncio.Event()
            finally:
                self.fetched_at = time.monotonic()

    def _read(self, known: str | None, again: bool) -> tuple[str | None, dict[str, Any] | None]:
        """The tip now, and the overview at it when it moved or `again` (else None)."""
        with self.lock:
            tip = overview.fetch(self.coordinator)
            self.fetches += 1
            if tip == known and not again:
                return tip, None
            return tip, overview.overview(self.coordinator, tip, fetched=True)

    async def poll(self) -> None:
        """The single poller: while anyone watches, one fetch per interval."""
        while True:
            await anyio.sleep(self.interval)
            if self.watchers:
                await self.refresh()


@dataclass(frozen=True)
class Settings:
    token: str
    port: int
    loopback: bool
    hosts: frozenset[str]  # Host headers accepted when bound to loopback

    @property
    def cookie(self) -> str:
        return f"gitcoord_web_{self.port}"

    @property
    def csrf(self) -> str:
        return hmac.new(self.token.encode(), b"gitcoord-web-csrf", hashlib.sha256).hexdigest()


def _same(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(
        given.encode("utf-8", "replace"), expected.encode()
    )


class Guard:
    """Every request: a Host we serve, and the token (query or cookie), else 403."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        if self.settings.loopback and request.headers.get("host", "") not in self.settings.hosts:
            response: Response = _forbidden("this server answers only on its loopback address")
        elif not (
            _same(request.query_params.get("token"), self.settings.token)
            or _same(request.cookies.get(self.settings.cookie), self.settings.token)
        ):
            response = _forbidden(
                "open the URL that `gitcoord web` printed: it carries the access token"
            )
        else:
            await self.app(scope, receive, send)
            return
        await response(scope, receive, send)


def _forbidden(why: str) -> Response:
    return PlainTextResponse(f"403 Forbidden: {why}\n", status_code=403, headers=SECURITY_HEADERS)


def build_app(
    coordinator: Coordinator,
    *,
    token: str,
    port: int,
    host: str = "127.0.0.1",
    interval: float = 3.0,
) -> tuple[ASGIApp, Hub]:
    """The application (guarded) and its hub, for `serve` and for tests."""
    # The page is a person's: what it does speaks for no session, even with
    # GITCOORD_SESSION set where it was started (a person's act, signed by their key).
    coordinator.session = None
    hub = Hub(coordinator, interval)
    loopback = is_loopback(host)
    names = {"127.0.0.1", "localhost", "[::1]", host if ":" not in host else f"[{host}]"}
    settings = Settings(token, port, loopback, frozenset(f"{n}:{port}" for n in names))
    notices: collections.OrderedDict[str, htmlpage.Notice] = collections.OrderedDict()
    actor = coordinator.store.identity.email

    grant = BY_NAME["approval grant"]
    grant_many = any(p.name == "approval_ids" for p in grant.params)
    reject = "approval reject" in BY_NAME

    def live(nonce: str) -> htmlpage.Live:
        return htmlpage.Live(
            csrf=settings.csrf,
            nonce=nonce,
            grant_many=grant_many,
            reject=reject,
            problem=hub.problem,
            actor=actor,
            version=hub.version,
        )

    async def index(request: Request) -> Response:
        if "token" in request.query_params:  # into the cookie, out of the address bar
            response: Response = RedirectResponse("/", status_code=303, headers=SECURITY_HEADERS)
            response.set_cookie(
                settings.cookie, settings.token, httponly=True, samesite="strict", path="/"
            )
            return response
        await hub.refresh()
        nonce = secrets.token_urlsafe(16)
        headers = {**SECURITY_HEADERS, "Content-Security-Policy": page_csp(nonce)}
        if hub.doc is None:
            text = f"gitcoord web: cannot read the branch: {hub.problem}"
            return PlainTextResponse(terminal(text) + "\n", status_code=503, headers=headers)
        notice = notices.get(request.query_params.get("notice", ""))
        body = htmlpage.page(hub.doc, clock.now(), live=live(nonce), notice=notice)
        return HTMLResponse(body, headers=headers)

    async def fragment(request: Request) -> Response:
        await hub.refresh()
        if hub.doc is None:
            return PlainTextResponse("not ready\n", status_code=503, headers=SECURITY_HEADERS)
        body = htmlpage.fragment(hub.doc, clock.now(), live(""))
        return HTMLResponse(body, headers=SECURITY_HEADERS)

    async def events(request: Request) -> Response:
        try:
            seen = int(request.query_params.get("v", ""))
        except ValueError:
            seen = hub.version

        async def stream() -> AsyncIterator[str]:
            nonlocal seen
            hub.watchers += 1
            try:
                yield "retry: 2000\n\n"
                while True:
                    wake = hub.changed
                    if hub.version != seen:
                        seen = hub.version
                        yield f"event: tip\ndata: {hub.tip or ''}\n\n"
                        continue
                    with contextlib.suppress(TimeoutError):
                        with anyio.fail_after(KEEPALIVE):
                            await wake.wait()
                        continue
                    yield ": keep-alive\n\n"
            finally:
                hub.watchers -= 1

        if hub.doc is None:
            await hub.refresh()
        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={**SECURITY_HEADERS, "X-Accel-Buffering": "no"},
        )

    async def read_form(request: Request) -> dict[str, list[str]] | Response:
        """The posted form, once it passed the Origin and CSRF checks (else the refusal)."""
        origin = request.headers.get("origin")
        if origin is not None and origin != f"http://{request.headers.get('host', '')}":
            return _forbidden("a form from another site")
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > FORM_LIMIT:
                return PlainTextResponse("413: form too large\n", status_code=413)
        try:
            form = urllib.parse.parse_qs(
                body.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=500
            )
        except ValueError:
            return PlainTextResponse("400: too many fields\n", status_code=400)
        if not _same((form.get("csrf") or [""])[0], settings.csrf):
            return _forbidden("the form's CSRF token is missing or wrong: reload the page")
        return form

    async def outcome(run: Callable[[], str], anchor: str) -> Response:
        """Run a person's act on a worker thread; show its line (or the refusal's, as the
        command line prints it) on the page it redirects to."""
        try:
            notice = htmlpage.Notice(await anyio.to_thread.run_sync(run))
        except GitcoordError as err:
            notice = htmlpage.Notice(f"gitcoord: {err.message}", error=True)
        except Exception as exc:  # a bug: the one line the CLI would print
            notice = htmlpage.Notice(
                f"gitcoord: unexpected error: {type(exc).__name__}: {exc}", error=True
            )
        key = secrets.token_urlsafe(8)
        notices[key] = notice
        while len(notices) > NOTICES:
            notices.popitem(last=False)
        await hub.refresh(force=True)
        return RedirectResponse(
            f"/?notice={key}#{anchor}", status_code=303, headers=SECURITY_HEADERS
        )

    async def decide(request: Request) -> Response:
        form = await read_form(request)
        if isinstance(form, Response):
            return form
        action = (form.get("action") or [""])[0]
        ids = [i.strip() for i in form.get("id", []) if i.strip()]
        reason = (form.get("reason") or [""])[0].strip()
        return await outcome(lambda: _act(hub, action, ids, reason), "approvals")

    async def answer(request: Request) -> Response:
        form = await read_form(request)
        if isinstance(form, Response):
            return form
        reply_to = (form.get("reply_to") or [""])[0].strip()
        body = (form.get("body") or [""])[0].replace("\r\n", "\n")
        return await outcome(lambda: _answer(hub, reply_to, body), "messages")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        task = asyncio.create_task(hub.poll())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    routes = [
        Route("/", index, methods=["GET"]),
        Route("/sections", fragment, methods=["GET"]),
        Route("/events", events, methods=["GET"]),
        Route("/approvals", decide, methods=["POST"]),
        Route("/messages", answer, methods=["POST"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    return Guard(app, settings), hub


def _act(hub: Hub, action: str, ids: list[str], reason: str) -> str:
    """Run the approval verb the form asks for, as the command line would; its text."""
    if not ids:
        raise UsageError("select at least one request")
    with hub.lock:
        c = hub.coordinator
        if action == "approve":
            verb = BY_NAME["approval grant"]
            if any(p.name == "approval_ids" for p in verb.params):
                results = [verb.run(c, approval_ids=tuple(ids))]
            else:
                results = [verb.run(c, approval_id=i) for i in ids]
        elif action == "reject":
            found = BY_NAME.get("approval reject")
            if found is None:
                raise UsageError("this gitcoord cannot reject a request")
            verb = found
            results = [verb.run(c, approval_ids=tuple(ids), reason=reason)]
        else:
            raise UsageError(f"unknown action {action!r}")
        return "\n".join(verb.text(verb.json(r)) for r in results)


def _answer(hub: Hub, reply_to: str, body: str) -> str:
    """Answer a message sent to the humans, as the person: `send SENDER "Re: ..." BODY
    --reply-to ID` without a session. Whom and what it answers come from the branch,
    not from the form."""
    if not body.strip():
        raise UsageError("write an answer first")
    found = None
    for thread in (hub.doc or {}).get("messages", []):
        for m in thread["messages"]:
            if m["id"] == reply_to:
                found = m
    if found is None:
        raise UsageError(f"no message {reply_to} on the page: reload it")
    subject = str(found["subject"])
    if not subject.lower().startswith("re:"):
        subject = f"Re: {subject}"
    verb = BY_NAME["send"]
    with hub.lock:
        result = verb.run(
            hub.coordinator, to=found["sender"], subject=subject[:200], body=body, reply_to=reply_to
        )
    return verb.text(verb.json(result))


Echo = Callable[[str], None]


def serve(
    coordinator: Coordinator,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    allow_remote: bool = False,
    open_browser: bool = False,
    interval: float = 3.0,
    announce: Callable[[dict[str, Any]], None],
    warn: Echo,
) -> None:
    """Serve the page until interrupted (Ctrl-C, SIGTERM)."""
    import socket

    import uvicorn

    if not is_loopback(host) and not allow_remote:
        raise UsageError(
            f"--host {host} would serve the page (and its approve buttons) beyond this machine, "
            "over plain HTTP: pass --allow-remote to do that on purpose"
        )
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(128)
    sock.set_inheritable(True)
    port = sock.getsockname()[1]
    token = secrets.token_urlsafe(32)
    app, _ = build_app(coordinator, token=token, port=port, host=host, interval=interval)
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}/?token={token}"
    if not is_loopback(host):
        warn(
            f"listening on {host}, beyond this machine: anyone who can reach it and learns the "
            "token can approve as you; the page and token travel unencrypted (plain HTTP)"
        )
    announce({"url": url, "host": host, "port": port, "where": coordinator.store.where})
    if open_browser:
        import webbrowser

        threading.Thread(target=webbrowser.open, args=(url,), daemon=True).start()
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=1,
        server_header=False,
    )
    uvicorn.Server(config).run(sockets=[sock])
