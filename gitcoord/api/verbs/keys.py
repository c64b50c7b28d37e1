"""Keys: this machine's signing key, sessions' keys, approvers' keys, and the switch
that requires signatures. Why and how: README, "Security"."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from ..verb import REQUIRED, Param, Verb, wrote

if TYPE_CHECKING:
    from ...domain.change import Change
    from ...domain.state import State
    from ..coordinator import Coordinator


def _key_json(signer: Any) -> dict[str, Any] | None:
    if signer is None:
        return None
    path = signer.key_file or "ssh-agent"
    return {"path": path, "key": signer.public, "fingerprint": signer.fingerprint}


def _show(c: Coordinator) -> dict[str, Any]:
    from ...sshsig import fingerprint

    machine = c.machine_key(create=False)
    _, state = c.store.snapshot()
    config = state.config
    sessions = [
        {
            "session": sid,
            "fingerprint": fingerprint(s.key) if s.key else None,
            "this_machine": machine is not None and s.key == machine.public,
            "present": s.present,
        }
        for sid, s in sorted(state.sessions.items())
    ]
    approvers = (
        [(e, config.approver_keys.get(e)) for e in config.approvers] if config is not None else []
    )
    return {
        "machine_key": _key_json(machine),
        "person_key": _key_json(c.person_key()),
        "format": config.format if config else None,
        "require_signatures": bool(config and config.require_signatures),
        "approvers": [
            {"email": e, "fingerprint": fingerprint(k) if k else None} for e, k in approvers
        ],
        "sessions": sessions,
    }


def _show_text(doc: dict[str, Any]) -> str:
    m, p = doc["machine_key"], doc["person_key"]
    lines = [
        "this machine's key (signs for the sessions it runs): "
        + (f"{m['fingerprint']}  {m['path']}" if m else "none yet (made on the first write)"),
        "your own key (user.signingKey, signs what approvers do): "
        + (f"{p['fingerprint']}  {p['path']}" if p else "not set"),
        f"signatures: {'required' if doc['require_signatures'] else 'not required'}"
        + (f" (format {doc['format']})" if doc["format"] else ""),
    ]
    for a in doc["approvers"]:
        lines.append(f"approver {a['email']}: {a['fingerprint'] or 'no key'}")
    for s in doc["sessions"]:
        mine = " (this machine)" if s["this_machine"] else ""
        gone = " (left)" if not s["present"] else ""
        lines.append(f"session {s['session']}: {s['fingerprint'] or 'no key'}{mine}{gone}")
    return "\n".join(lines)


SHOW = Verb(
    "key show",
    "Show this machine's signing key, yours, the approvers' and each session's.",
    _show,
    _show_text,
    details="Sessions are bound to the key of the user and machine that registered them "
    "(made on first use: $XDG_CONFIG_HOME/gitcoord/signing_key, or GITCOORD_SIGNING_KEY). "
    "Approvers sign with their own key, git's user.signingKey (a file, or key::<public key> "
    "in ssh-agent or on a FIDO token), never with the machine key.",
    writes=False,
    idempotent=True,
    session=False,
)


def _rotate(c: Coordinator) -> dict[str, Any]:
    """A new machine key, bound in turn to every session the old one signs for (each in
    a commit the old key signs), then put in the old one's place. Safe to run again
    after an interruption: it carries on where it stopped."""
    from ... import clock
    from ...errors import UsageError
    from ...ops import keys
    from ...sshsig import SigningError, generate, machine_key_path, read_public

    old = c.machine_key(create=False)
    if old is None:
        raise UsageError("this machine has no signing key yet: nothing to rotate")
    path = machine_key_path()
    nxt = path + ".next"
    try:
        new = read_public(nxt + ".pub", nxt) if os.path.exists(nxt) else generate(nxt)
    except SigningError as exc:
        raise UsageError(str(exc)) from None
    _, state = c.store.snapshot()
    mine = sorted(sid for sid, s in state.present.items() if s.key == old.public)
    rotated = []
    for sid in mine:

        def plan(s: State, sid: str = sid) -> Change:
            return keys.rotate_session(s, clock.now(), session=sid, old=old.public, new=new)

        if c.transact(plan).commit:
            rotated.append(sid)
    # Every session now speaks with the new key: it takes the old one's place (kept
    # beside it, as .old, for the record; it signs nothing any more).
    for suffix in ("", ".pub"):
        if os.path.exists(path + suffix):
            os.replace(path + suffix, path + ".old" + suffix)
        os.replace(nxt + suffix, path + suffix)
    c.forget_keys()
    return {"old": old.fingerprint, "new": _fp(new), "sessions": mine, "rotated": rotated}


def _fp(key: str) -> str:
    from ...sshsig import fingerprint

    return fingerprint(key)


ROTATE = Verb(
    "key rotate",
    "Replace this machine's signing key, rebinding every session it signs for.",
    _rotate,
    lambda doc: (
        f"rotated {doc['old']} -> {doc['new']}"
        + (f" for {', '.join(doc['sessions'])}" if doc["sessions"] else " (no session was bound)")
    ),
    details="Each session bound to the old key gets one commit, signed by the old key, that "
    "binds the new one; then the new key replaces the old (kept as signing_key.old). Run it "
    "again if it was interrupted. A key that is lost or stolen cannot rotate itself: an "
    "approver runs `gitcoord key revoke SESSION --key NEWKEY`.",
    session=False,
    human=True,
)


def _revoke(c: Coordinator, session: str, key: str | None = None) -> Any:
    from ... import clock
    from ...domain import names
    from ...errors import UsageError
    from ...ops import keys

    names.check_session_id(session)
    new = _read_key(c, key) if key else None
    if key and new is None:
        raise UsageError(f"--key: {key} is not a public key nor a file holding one")
    return c.transact(lambda s: keys.revoke(s, clock.now(), session=session, new=new))


def _read_key(c: Coordinator, value: str) -> str | None:
    """A public key given literally or as a file (a .pub)."""
    from ...sshsig import normalize_key

    try:
        return normalize_key(value)
    except ValueError:
        pass
    path = os.path.join(c.path, os.path.expanduser(value))
    try:
        with open(path, encoding="utf-8") as fh:
            return normalize_key(fh.read(64 * 1024))
    except (OSError, ValueError, UnicodeDecodeError):
        return None


REVOKE = Verb(
    "key revoke",
    "As an approver: unbind SESSION's key (lost or stolen), binding --key instead.",
    _revoke,
    lambda doc: wrote(
        doc,
        f"revoked {doc['session']}'s key {doc['revoked'] or '(none)'}"
        + (f"; bound {_fp(doc['key'])}" if doc["key"] else "; it binds a key when it registers"),
        f"{doc['session']} already had that key",
    ),
    (
        Param("session", str, "The session.", REQUIRED, positional=True, metavar="SESSION"),
        Param(
            "key",
            str,
            "The key to bind instead: 'ssh-ed25519 AAAA...' or a .pub file.",
            metavar="KEY",
        ),
    ),
    details="An approver's act, signed by your own key. Without --key the session is unbound "
    "until it registers again, and the first registration binds (so give --key when you can: "
    "the owner's new machine key, from `gitcoord key show` there).",
    destructive=True,
    session=False,
    human=True,
)


def _approver_add(c: Coordinator, email: str, key: str | None = None) -> Any:
    from ... import clock
    from ...errors import UsageError
    from ...ops import keys

    public = _read_key(c, key) if key else None
    if key and public is None:
        raise UsageError(f"--key: {key} is not a public key nor a file holding one")
    if public is None and email == c.store.identity.email:
        public = c.public_key("person")  # your own, by user.signingKey
    return c.transact(lambda s: keys.add_approver(s, clock.now(), email=email, key=public))


def _approvers_text(doc: dict[str, Any], done: str) -> str:
    listed = ", ".join(f"{a['email']} ({a['fingerprint'] or 'no key'})" for a in doc["approvers"])
    head = done if doc["changed"] else "unchanged"
    return f"{head}; approvers: {listed or 'none'}"


APPROVER_ADD = Verb(
    "approver add",
    "As an approver: list EMAIL as an approver, proved by --key (a public key or .pub file).",
    _approver_add,
    lambda doc: _approvers_text(doc, "approver added"),
    (
        Param("email", str, "The approver's git e-mail.", REQUIRED, positional=True),
        Param(
            "key",
            str,
            "Their own SSH public key (default for your own e-mail: your user.signingKey).",
            metavar="KEY",
        ),
    ),
    details="Changing the approvers is an approver's act, signed by an approver's key where "
    "signatures are required. Give a second approver (or an offline break-glass key of the "
    "repository's owner) so a lost key can be replaced by the others.",
    idempotent=True,
    session=False,
    human=True,
)


def _approver_remove(c: Coordinator, email: str) -> Any:
    from ... import clock
    from ...ops import keys

    return c.transact(lambda s: keys.remove_approver(s, clock.now(), email=email))


APPROVER_REMOVE = Verb(
    "approver remove",
    "As an approver: take EMAIL (and its key) off the approvers.",
    _approver_remove,
    lambda doc: _approvers_text(doc, "approver removed"),
    (Param("email", str, "The approver's git e-mail.", REQUIRED, positional=True),),
    details="Refused for the last approver key of a branch that requires signatures.",
    idempotent=True,
    destructive=True,
    session=False,
    human=True,
)


def _signatures(c: Coordinator, state: str) -> Any:
    from ... import clock
    from ...ops import keys

    return c.transact(lambda s: keys.require(s, clock.now(), on=state == "on"))


def _signatures_text(doc: dict[str, Any]) -> str:
    what = "required" if doc["require_signatures"] else "not required"
    text = wrote(doc, f"signatures are now {what}", f"signatures were {what} already")
    if doc["require_signatures"] and doc["unbound_sessions"]:
        text += (
            "\nwithout a key (they register again to bind one before they can write): "
            + ", ".join(doc["unbound_sessions"])
        )
    return text


SIGNATURES = Verb(
    "signatures",
    "As an approver: require signed commits on the branch (on), or stop (off).",
    _signatures,
    _signatures_text,
    (
        Param(
            "state",
            str,
            "on or off.",
            REQUIRED,
            positional=True,
            choices=("on", "off"),
            metavar="on|off",
        ),
    ),
    details="With signatures required, the server hook, `validate --range` and every client "
    "loading a tip it has not verified check that each commit is signed by the key of the "
    "session it speaks for, or by an approver's key. Needs format 3 and an approver key.",
    idempotent=True,
    session=False,
    human=True,
)

VERBS = (SHOW, ROTATE, REVOKE, APPROVER_ADD, APPROVER_REMOVE, SIGNATURES)
