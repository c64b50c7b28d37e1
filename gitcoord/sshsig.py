"""SSH signatures in git's own format: the one door to `ssh-keygen`.

A signed commit carries, after its committer line, a `gpgsig` header holding an
armored SSHSIG signature (namespace "git") of the commit without that header: what
`git commit -S` with `gpg.format=ssh` writes and `git verify-commit` checks. Both
halves go through OpenSSH's `ssh-keygen -Y`, the reference implementation (one short
process, ~5 ms, per signature made or checked), but for the commonest case, done in
process by pyca/cryptography's Ed25519: signing with an unencrypted ssh-ed25519 key
file (every machine key), byte for byte what ssh-keygen makes, and checking a
signature by an ssh-ed25519 key when its every field is exactly what ssh-keygen
requires (anything else still goes to ssh-keygen). No cryptography is written here.
What this module parses itself is framing: the header, the armor, the SSHSIG fields
(`signed_by` checks the signature against the key it names, and the caller decides
whether that key may sign).

Keys:
- a machine key, one per user and machine (`machine_signer`): sessions that run as one
  user on one machine can read each other's files, so a key per session would be
  theatre. It is made on first use (ed25519, no passphrase, 0600, in a 0700 folder
  outside any repository) and bound to every session that registers from it;
- a person's key, for what approvers do: git's own `user.signingKey` (a key file, or
  `key::<public key>` with the private half in ssh-agent or on a FIDO token), never
  the machine key.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import socket
import struct
import subprocess
import tempfile
from dataclasses import dataclass

NAMESPACE = "git"
KEY_ENV = "GITCOORD_SIGNING_KEY"  # the machine key's path, instead of the default
HEADERS = {"sha1": b"gpgsig", "sha256": b"gpgsig-sha256"}
ARMOR_BEGIN = b"-----BEGIN SSH SIGNATURE-----"
ARMOR_END = b"-----END SSH SIGNATURE-----"
SIGN_TIMEOUT = 120.0  # a FIDO key waits for a touch; a passphrase for a person
MAX_KEY_FILE = 64 * 1024  # an OpenSSH private key file is a few hundred bytes

KEY_TYPES = (
    "ssh-ed25519",
    "sk-ssh-ed25519@openssh.com",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ecdsa-sha2-nistp256@openssh.com",
    "ssh-rsa",
)
# "<type> <base64>": what a branch stores for a key (no comment: it is public data
# that names nobody, and a comment would be one more place for hostile text).
KEY_PATTERN = (
    r"^(?:" + "|".join(re.escape(t) for t in KEY_TYPES) + r") [A-Za-z0-9+/]{16,2800}={0,2}$"
)
_KEY_RE = re.compile(KEY_PATTERN)


class SigningError(Exception):
    """A key that cannot be made, read or used; the message says which and why."""


# --- public keys ----------------------------------------------------------------


def _string(data: bytes, at: int) -> tuple[bytes, int]:
    if at + 4 > len(data):
        raise ValueError("truncated")
    (size,) = struct.unpack(">I", data[at : at + 4])
    end = at + 4 + size
    if end > len(data):
        raise ValueError("truncated")
    return data[at + 4 : end], end


def normalize_key(text: str) -> str:
    """`<type> <base64>` of an OpenSSH public key line (a comment dropped), checked to
    be well formed: the blob decodes and names the same type. ValueError otherwise."""
    parts = text.strip().split()
    if text.strip().startswith("key::"):
        return normalize_key(text.strip()[5:])
    if len(parts) < 2:
        raise ValueError("not an OpenSSH public key (expected '<type> <base64> [comment]')")
    kind, b64 = parts[0], parts[1]
    if kind not in KEY_TYPES:
        raise ValueError(
            f"unsupported key type {kind[:40]!r} (use {', '.join(KEY_TYPES[:3])}, ...)"
        )
    try:
        blob = base64.b64decode(b64, validate=True)
        named, _ = _string(blob, 0)
    except (ValueError, base64.binascii.Error):  # type: ignore[attr-defined]
        raise ValueError("the key's base64 does not decode") from None
    if named.decode("ascii", "replace") != kind:
        raise ValueError("the key's blob names another type than its line")
    line = f"{kind} {b64}"
    if not _KEY_RE.fullmatch(line):
        raise ValueError("not an OpenSSH public key")
    return line


def fingerprint(key: str) -> str:
    """`SHA256:...`, as `ssh-keygen -l` and git's messages show a key."""
    blob = base64.b64decode(key.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


# --- signing ----------------------------------------------------------------------


def available() -> bool:
    """Whether ssh-keygen is here to sign and check signatures."""
    return shutil.which("ssh-keygen") is not None


def _keygen() -> str:
    found = shutil.which("ssh-keygen")
    if found is None:
        raise SigningError("ssh-keygen (OpenSSH) is not installed: it makes and checks signatures")
    return found


@dataclass(frozen=True)
class Signer:
    """A key that signs: `key_file` is the private key, or (`agent`) a public key file
    whose private half ssh-agent (or a FIDO token through it) holds; empty when only
    the public key itself is known (git's `key::` form)."""

    key_file: str
    public: str  # normalized
    agent: bool = False

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public)

    def sign(self, payload: bytes) -> bytes:
        """The armored SSHSIG of `payload` (namespace "git")."""
        if self.key_file and not self.agent:
            made = _ed25519_sign(self.key_file, self.public, payload)
            if made is not None:
                return made
        if self.key_file:
            return self._sign(payload, self.key_file)
        # Only the public key is known (key::...): ssh-keygen wants it as a file.
        with tempfile.TemporaryDirectory(prefix="gitcoord-key-") as tmp:
            pub = os.path.join(tmp, "key.pub")
            with open(pub, "w", encoding="utf-8") as fh:
                fh.write(self.public + "\n")
            return self._sign(payload, pub)

    def _sign(self, payload: bytes, key_file: str) -> bytes:
        argv = [_keygen(), "-Y", "sign", "-n", NAMESPACE, "-f", key_file, "-q"]
        if self.agent:
            argv.insert(-1, "-U")
        what = key_file if self.key_file else f"the ssh-agent key {self.fingerprint}"
        try:
            proc = subprocess.run(
                argv, input=payload, capture_output=True, timeout=SIGN_TIMEOUT, check=False
            )
        except subprocess.TimeoutExpired:
            raise SigningError(f"signing with {what} timed out") from None
        if proc.returncode != 0 or ARMOR_BEGIN not in proc.stdout:
            why = proc.stderr.decode("utf-8", "replace").strip().splitlines()
            raise SigningError(
                f"could not sign with {what}: {why[-1] if why else 'ssh-keygen failed'}"
            )
        return proc.stdout.strip() + b"\n"


def _ed25519_sign(key_file: str, public: str, payload: bytes) -> bytes | None:
    """The armored SSHSIG that `ssh-keygen -Y sign -n git` makes of `payload` with an
    unencrypted ssh-ed25519 key file (what every machine key is), byte for byte (Ed25519
    is deterministic; sha512, as ssh-keygen hashes by default), made in process by
    pyca/cryptography; None for any other key, which ssh-keygen then signs with. A
    session's every write is signed: a process (~6 ms, more on a loaded machine) each."""
    if not public.startswith("ssh-ed25519 "):
        return None
    try:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from cryptography.hazmat.primitives.serialization import load_ssh_private_key

        with open(key_file, "rb") as fh:
            private = load_ssh_private_key(fh.read(MAX_KEY_FILE), None)
    except (OSError, ValueError, TypeError, ImportError):  # encrypted, FIDO, unreadable
        return None
    key_blob = base64.b64decode(public.split()[1])
    named = _string(key_blob, _string(key_blob, 0)[1])[0]  # the raw key after its type
    if not isinstance(private, Ed25519PrivateKey) or (
        private.public_key().public_bytes_raw() != named
    ):
        return None  # not the key the public half names: let ssh-keygen say so
    digest = hashlib.sha512(payload).digest()
    signed = b"SSHSIG" + _strings(NAMESPACE.encode(), b"", b"sha512", digest)
    sig_blob = _strings(b"ssh-ed25519", private.sign(signed))
    blob = b"SSHSIG\x00\x00\x00\x01" + _strings(
        key_blob, NAMESPACE.encode(), b"", b"sha512", sig_blob
    )
    b64 = base64.b64encode(blob)
    lines = b"\n".join(b64[i : i + 70] for i in range(0, len(b64), 70))
    return ARMOR_BEGIN + b"\n" + lines + b"\n" + ARMOR_END + b"\n"


def _strings(*parts: bytes) -> bytes:
    """SSH wire-format strings: each part after its length (uint32, big-endian)."""
    return b"".join(struct.pack(">I", len(part)) + part for part in parts)


def default_key_path() -> str:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "gitcoord", "signing_key")


def machine_key_path() -> str:
    return os.path.expanduser(os.environ.get(KEY_ENV) or default_key_path())


def machine_signer(create: bool = True, path: str | None = None) -> Signer | None:
    """This user's key on this machine (made on first use when `create`); None when
    there is none and `create` is False."""
    path = path or machine_key_path()
    if not os.path.exists(path):
        if not create:
            return None
        generate(path)
    return Signer(path, read_public(path + ".pub", path))


def generate(path: str) -> str:
    """A new ed25519 key at `path` (0600; its folder 0700), without a passphrase: a
    session cannot type one. Returns the public key."""
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, mode=0o700, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".new-key-", dir=folder)
    try:
        made = os.path.join(tmp, "key")
        comment = f"gitcoord@{socket.gethostname()[:60]}"
        proc = subprocess.run(
            [_keygen(), "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", made],
            capture_output=True,
            check=False,
        )
        if proc.returncode != 0:
            raise SigningError(
                f"could not make a signing key at {path}: "
                + proc.stderr.decode("utf-8", "replace").strip()
            )
        os.chmod(made, 0o600)
        try:
            os.link(made, path)  # never over a key another process made meanwhile
        except FileExistsError:
            return read_public(path + ".pub", path)  # theirs (read_public derives it)
        os.replace(made + ".pub", path + ".pub")
    except OSError as exc:
        raise SigningError(f"could not make a signing key at {path}: {exc.strerror}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return read_public(path + ".pub", path)


def read_public(pub_path: str, key_path: str) -> str:
    """The public key of a key file: its `.pub`, else derived by ssh-keygen -y."""
    try:
        with open(pub_path, encoding="utf-8") as fh:
            return normalize_key(fh.read())
    except (OSError, ValueError):
        pass
    proc = subprocess.run(
        [_keygen(), "-y", "-P", "", "-f", key_path], capture_output=True, check=False
    )
    try:
        return normalize_key(proc.stdout.decode("utf-8", "replace"))
    except ValueError:
        raise SigningError(
            f"cannot read the public key of {key_path} (put it beside it as {pub_path})"
        ) from None


def person_signer(value: str, cwd: str | None = None) -> Signer:
    """The signer that git's `user.signingKey` names: a key file (private, or public
    with the private half in ssh-agent), or `key::<public key>` (ssh-agent)."""
    value = value.strip()
    literal = (
        value[5:] if value.startswith("key::") else value if value.startswith("ssh-") else None
    )
    if literal is not None:
        try:
            public = normalize_key(literal)
        except ValueError as exc:
            raise SigningError(f"user.signingKey: {exc}") from None
        return Signer("", public, agent=True)
    path = os.path.expanduser(value)
    if cwd is not None and not os.path.isabs(path):
        path = os.path.join(cwd, path)
    if not os.path.isfile(path):
        raise SigningError(f"user.signingKey names {value}, which is not a file")
    if path.endswith(".pub"):
        return Signer(path, read_public(path, path[:-4]), agent=True)
    return Signer(path, read_public(path + ".pub", path))


# --- commits ----------------------------------------------------------------------


def _header_end(raw: bytes) -> int:
    end = raw.find(b"\n\n")
    return len(raw) if end < 0 else end + 1


def split_commit(raw: bytes, object_format: str = "sha1") -> tuple[bytes, bytes | None]:
    """(the signed payload, the armored signature or None) of a raw commit object: the
    payload is the commit without its signature headers (both hash's, as git does)."""
    end = _header_end(raw)
    head, body = raw[:end], raw[end:]
    kept: list[bytes] = []
    sig: list[bytes] | None = None
    current: bytes | None = None
    wanted = HEADERS.get(object_format, b"gpgsig")
    for line in head.splitlines(keepends=True):
        if line.startswith(b" ") and current is not None:
            if current == wanted and sig is not None:
                sig.append(line[1:])
            continue  # a continuation of a signature header: not part of the payload
        name = line.split(b" ", 1)[0]
        if name in HEADERS.values():
            current = name
            if name == wanted and sig is None:
                sig = [line[len(name) + 1 :]]
            continue
        current = None
        kept.append(line)
    return b"".join(kept) + body, (b"".join(sig) if sig is not None else None)


def embed_signature(payload: bytes, signature: bytes, object_format: str = "sha1") -> bytes:
    """The commit `payload` with `signature` in its header, as git writes it."""
    end = _header_end(payload)
    lines = signature.rstrip(b"\n").split(b"\n")
    header = HEADERS.get(object_format, b"gpgsig") + b" " + b"\n ".join(lines) + b"\n"
    return payload[:end] + header + payload[end:]


def signature_key(signature: bytes) -> str | None:
    """The public key an armored SSHSIG says made it (not yet checked), normalized."""
    text = signature.strip()
    if not (text.startswith(ARMOR_BEGIN) and text.endswith(ARMOR_END)):
        return None
    inner = b"".join(text[len(ARMOR_BEGIN) : -len(ARMOR_END)].split())
    try:
        blob = base64.b64decode(inner, validate=True)
        if blob[:6] != b"SSHSIG":
            return None
        key_blob, _ = _string(blob, 10)
        kind, _ = _string(key_blob, 0)
        return normalize_key(f"{kind.decode('ascii')} {base64.b64encode(key_blob).decode()}")
    except (ValueError, UnicodeDecodeError, base64.binascii.Error):  # type: ignore[attr-defined]
        return None


def _ed25519_valid(payload: bytes, signature: bytes) -> bool:
    """Whether `signature` is an SSHSIG (PROTOCOL.sshsig) by an ssh-ed25519 key over
    `payload` in namespace "git" that verifies, checked in process: True only when every
    field is exactly what `ssh-keygen -Y check-novalidate` requires (version 1, the
    namespace, sha256 or sha512, a signature of the key's own type, nothing trailing)
    and Ed25519 verifies. False says only "not decided here": the caller asks
    ssh-keygen, so this check can make a verdict faster, never more lenient.

    One ssh-keygen process costs ~7 ms; this ~0.3 ms. A client verifies every commit
    the other machines land, and the server hook every commit pushed: at 200 sessions
    the processes were a large part of both. pyca/cryptography does the Ed25519."""
    text = signature.strip()
    if not (text.startswith(ARMOR_BEGIN) and text.endswith(ARMOR_END)):
        return False
    try:
        blob = base64.b64decode(
            b"".join(text[len(ARMOR_BEGIN) : -len(ARMOR_END)].split()), validate=True
        )
        if blob[:6] != b"SSHSIG" or blob[6:10] != b"\x00\x00\x00\x01":
            return False
        key_blob, at = _string(blob, 10)
        namespace, at = _string(blob, at)
        reserved, at = _string(blob, at)
        hash_alg, at = _string(blob, at)
        sig_blob, at = _string(blob, at)
        if at != len(blob) or namespace != NAMESPACE.encode() or reserved:
            return False
        if hash_alg not in (b"sha256", b"sha512"):
            return False
        kind, k = _string(key_blob, 0)
        public, k = _string(key_blob, k)
        sig_kind, j = _string(sig_blob, 0)
        raw, j = _string(sig_blob, j)
        if (kind, sig_kind) != (b"ssh-ed25519", b"ssh-ed25519") or k != len(key_blob):
            return False
        if j != len(sig_blob) or len(public) != 32 or len(raw) != 64:
            return False
    except (ValueError, base64.binascii.Error):  # type: ignore[attr-defined]
        return False
    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    except ImportError:  # a broken installation: ssh-keygen still decides
        return False
    digest = hashlib.new(hash_alg.decode(), payload).digest()
    signed = b"SSHSIG" + _strings(NAMESPACE.encode(), reserved, hash_alg, digest)
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(raw, signed)
    except (InvalidSignature, ValueError):
        return False
    return True


def signed_by(payload: bytes, signature: bytes) -> str | None:
    """The public key that made `signature` over `payload`, once the signature has been
    checked against that key (namespace "git"): in process for the usual ssh-ed25519
    key (`_ed25519_valid`), else by ssh-keygen; None for a signature that does not
    verify or does not parse. Whether that key may sign is the caller's question."""
    key = signature_key(signature)
    if key is None:
        return None
    if _ed25519_valid(payload, signature) or _keygen_valid(payload, signature):
        return key
    return None


def _keygen_valid(payload: bytes, signature: bytes) -> bool:
    """Whether `ssh-keygen -Y check-novalidate` (namespace "git") accepts the signature."""
    fd, path = tempfile.mkstemp(prefix="gitcoord-sig-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(signature)
        proc = subprocess.run(
            [_keygen(), "-Y", "check-novalidate", "-n", NAMESPACE, "-s", path],
            input=payload,
            capture_output=True,
            timeout=30,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return False
    finally:
        os.unlink(path)
    return proc.returncode == 0
