"""Keys: who signs for a session, who approves, and whether signatures are required.

A session's key is bound when it registers (`sessions.register`); these change it
afterwards, each as one commit whose signer the verifier judges (`audit.signatures`):
- `rotate_session`: the session's own commit, signed by its old key, binding a new one;
- `revoke`: an approver's act, unbinding a lost or stolen key (or binding a new one);
- `add_approver` / `remove_approver` / `require`: an approver's acts on config.yaml,
  signed by an approver's key once signatures are required (before that, as config
  changes always were: by a listed approver, or by anyone while none is listed).
"""

from __future__ import annotations

from datetime import datetime

from ..domain import kinds
from ..domain.change import Change
from ..domain.models import Config
from ..domain.state import State
from ..errors import RefusedError, UsageError
from ..sshsig import fingerprint
from .kernel import require_initialised, require_registered


def _format_3(config: Config) -> None:
    if config.format < 3:
        raise RefusedError(
            f"keys need a branch at format 3 (this one is at {config.format}): an approver "
            "runs `gitcoord upgrade` first",
            format=config.format,
        )


def rotate_session(state: State, now: datetime, *, session: str, old: str, new: str) -> Change:
    """Bind `new` to `session`, which `old` (this machine's current key) signs for."""
    config = require_initialised(state)
    _format_3(config)
    me = require_registered(state, session)
    if me.key == new:
        return Change("key-rotate", "rotate", session=session, result=_rotated(session, new, False))
    if me.key != old:
        bound = fingerprint(me.key) if me.key else "no key"
        raise RefusedError(
            f"session {session} is bound to {bound}, not this machine's key {fingerprint(old)}: "
            "only the key bound to a session rotates it",
            session=session,
        )
    doc = me.model_copy(update={"key": new, "updated_at": max(now, me.updated_at)})
    return Change(
        "key-rotate",
        f"rotate {session}'s key to {fingerprint(new)}",
        session=session,
        resource=f"session/{session}",
        writes={kinds.session_path(session, fmt=state.format): doc},
        trailers={"Gitcoord-Key": fingerprint(new)},
        result=_rotated(session, new, True),
    )


def _rotated(session: str, key: str, changed: bool) -> dict[str, object]:
    return {"session": session, "key": key, "fingerprint": fingerprint(key), "rotated": changed}


def revoke(state: State, now: datetime, *, session: str, new: str | None) -> Change:
    """An approver unbinds `session`'s key (lost, stolen), binding `new` if given: until
    a key is bound again nothing speaks for it on a branch requiring signatures, and
    the next registration binds one (so give `new` when you can)."""
    config = require_initialised(state)
    _format_3(config)
    found = state.sessions.get(session)
    if found is None:
        raise RefusedError(f"no session {session}", session=session)
    result = {
        "session": session,
        "revoked": fingerprint(found.key) if found.key else None,
        "key": new,
    }
    if found.key == new:
        return Change("key-revoke", "revoke", result={**result, "changed": False})
    doc = found.model_copy(update={"key": new, "updated_at": max(now, found.updated_at)})
    what = f"bind {fingerprint(new)}" if new else "leave it unbound"
    return Change(
        "key-revoke",
        f"revoke {session}'s key and {what}",
        resource=f"session/{session}",
        writes={kinds.session_path(session, fmt=state.format): doc},
        trailers={"Gitcoord-Revoked": result["revoked"] or "none"},
        result={**result, "changed": True},
    )


def add_approver(state: State, now: datetime, *, email: str, key: str | None) -> Change:
    """List `email` as an approver, with `key` as the key that proves it (format 3)."""
    config = require_initialised(state)
    if key is not None:
        _format_3(config)
    approvers = list(config.approvers)
    keys = dict(config.approver_keys)
    if email in approvers and keys.get(email) == key and (key is not None or email not in keys):
        return Change("approver-add", "approver", result=_approvers(config, False))
    if email not in approvers:
        approvers.append(email)
    if key is not None:
        keys[email] = key
    new = config.model_copy(update={"approvers": approvers, "approver_keys": keys})
    return Change(
        "approver-add",
        f"add approver {email}" + (f" with key {fingerprint(key)}" if key else ""),
        resource="config/approvers",
        writes={kinds.config_path(): new},
        trailers={"Gitcoord-Approver": email},
        result=_approvers(new, True),
    )


def remove_approver(state: State, now: datetime, *, email: str) -> Change:
    """Take `email` off the approvers (and its key): never the last approver key of a
    branch that requires signatures, which would leave nobody to govern it."""
    config = require_initialised(state)
    if email not in config.approvers and email not in config.approver_keys:
        return Change("approver-remove", "approver", result=_approvers(config, False))
    keys = {e: k for e, k in config.approver_keys.items() if e != email}
    if config.require_signatures and not keys:
        raise RefusedError(
            f"{email} holds the last approver key, and this branch requires signatures: add "
            "another approver first (`gitcoord approver add EMAIL --key KEY`)",
            approver=email,
        )
    new = config.model_copy(
        update={"approvers": [e for e in config.approvers if e != email], "approver_keys": keys}
    )
    return Change(
        "approver-remove",
        f"remove approver {email}",
        resource="config/approvers",
        writes={kinds.config_path(): new},
        trailers={"Gitcoord-Approver": email},
        result=_approvers(new, True),
    )


def _approvers(config: Config, changed: bool) -> dict[str, object]:
    return {
        "approvers": [
            {
                "email": e,
                "key": config.approver_keys.get(e),
                "fingerprint": fingerprint(k) if (k := config.approver_keys.get(e)) else None,
            }
            for e in config.approvers
        ],
        "require_signatures": config.require_signatures,
        "changed": changed,
    }


def require(state: State, now: datetime, *, on: bool) -> Change:
    """Turn the signature requirement on or off. On needs an approver key; the result
    names the live sessions without a key, which cannot write until they register again."""
    config = require_initialised(state)
    _format_3(config)
    if on and not config.approver_keys:
        raise UsageError(
            "requiring signatures needs an approver key first: "
            "gitcoord approver add EMAIL --key KEY (or your own: git config user.signingKey)"
        )
    unbound = sorted(sid for sid, s in state.present.items() if s.key is None)
    result = {"require_signatures": on, "unbound_sessions": unbound}
    if config.require_signatures == on:
        return Change("signatures", "signatures", result={**result, "changed": False})
    new = config.model_copy(update={"require_signatures": on})
    return Change(
        "signatures",
        ("require" if on else "stop requiring") + " signatures",
        resource="config/require_signatures",
        writes={kinds.config_path(): new},
        trailers={"Gitcoord-Signatures": "required" if on else "optional"},
        result={**result, "changed": True},
    )
