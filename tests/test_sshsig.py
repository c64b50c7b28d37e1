"""Signatures checked in process (`sshsig._ed25519_valid`) against the reference,
`ssh-keygen -Y check-novalidate`: the in-process check may only ever be stricter.

It accepts an SSHSIG by an ssh-ed25519 key when every field is exactly what ssh-keygen
requires; anything else goes to ssh-keygen. So the property that matters is one-way:
whatever it accepts, ssh-keygen accepts. Hostile signatures are made by taking honest
ones apart (PROTOCOL.sshsig's fields) and changing one field or one byte at a time.
"""

from __future__ import annotations

import base64
import struct
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gitcoord import sshsig
from gitcoord.sshsig import (
    ARMOR_BEGIN,
    ARMOR_END,
    Signer,
    _ed25519_valid,
    _keygen_valid,
    _strings,
)

PAYLOAD = b"tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\nauthor a <a@x> 1 +0000\n\nclaim\n"


def _key(tmp: Path, name: str, kind: str = "ed25519") -> Signer:
    path = tmp / name
    subprocess.run(
        ["ssh-keygen", "-q", "-t", kind, "-N", "", "-f", str(path)], check=True, capture_output=True
    )
    return Signer(str(path), sshsig.normalize_key((tmp / f"{name}.pub").read_text()))


def _fields(signature: bytes) -> list[bytes]:
    """The SSHSIG blob's fields: magic, version, key, namespace, reserved, hash, sig."""
    text = signature.strip()
    blob = base64.b64decode(b"".join(text[len(ARMOR_BEGIN) : -len(ARMOR_END)].split()))
    out, at = [blob[:6], blob[6:10]], 10
    while at < len(blob):
        (n,) = struct.unpack(">I", blob[at : at + 4])
        out.append(blob[at + 4 : at + 4 + n])
        at += 4 + n
    return out


def _armor(fields: list[bytes], trailing: bytes = b"") -> bytes:
    blob = fields[0] + fields[1] + b"".join(struct.pack(">I", len(f)) + f for f in fields[2:])
    b64 = base64.b64encode(blob + trailing).decode()
    lines = "\n".join(b64[i : i + 70] for i in range(0, len(b64), 70))
    return ARMOR_BEGIN + b"\n" + lines.encode() + b"\n" + ARMOR_END + b"\n"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Signer, Signer, bytes]:
    tmp = tmp_path_factory.mktemp("keys")
    alice, mallory = _key(tmp, "alice"), _key(tmp, "mallory")
    return alice, mallory, alice.sign(PAYLOAD)


def _agree_one_way(payload: bytes, signature: bytes) -> bool:
    """Fails the test if the in-process check accepts what ssh-keygen refuses; returns
    what ssh-keygen said."""
    reference = _keygen_valid(payload, signature)
    assert not _ed25519_valid(payload, signature) or reference, signature
    return reference


def test_an_honest_signature_is_accepted_in_process_and_by_ssh_keygen(
    keys: tuple[Signer, Signer, bytes],
) -> None:
    alice, _, sig = keys
    assert _ed25519_valid(PAYLOAD, sig) and _keygen_valid(PAYLOAD, sig)
    assert sshsig.signed_by(PAYLOAD, sig) == alice.public


def test_each_field_changed_is_refused_by_both_or_left_to_ssh_keygen(
    keys: tuple[Signer, Signer, bytes],
) -> None:
    alice, mallory, sig = keys
    f = _fields(sig)
    key_type, sig_inner = b"ssh-ed25519", _fields(mallory.sign(PAYLOAD))[6]
    changed = {
        "payload": (PAYLOAD + b" ", _armor(f)),
        "another key named": (PAYLOAD, _armor([*f[:2], _fields(mallory.sign(b"x"))[2], *f[3:]])),
        "another key's signature": (PAYLOAD, _armor([*f[:6], sig_inner])),
        "namespace": (PAYLOAD, _armor([*f[:3], b"file", *f[4:]])),
        "version": (PAYLOAD, _armor([f[0], b"\0\0\0\2", *f[2:]])),
        "hash sha1": (PAYLOAD, _armor([*f[:5], b"sha1", f[6]])),
        "trailing bytes": (PAYLOAD, _armor(f, b"\0\0\0\0")),
        "signature type": (PAYLOAD, _armor([*f[:6], _strings(b"ssh-rsa", _fields(sig)[6][19:])])),
        "signature short": (PAYLOAD, _armor([*f[:6], _strings(key_type, b"\1" * 63)])),
        "magic": (PAYLOAD, _armor([b"SSHSIH", *f[1:]])),
    }
    for what, (payload, bad) in changed.items():
        assert not _agree_one_way(payload, bad), what
        assert sshsig.signed_by(payload, bad) is None, what
    # Spellings ssh-keygen lets through (it ignores the reserved field, and compares the
    # namespace as a C string): not decided in process; ssh-keygen's verdict stands.
    for odd in (_armor([*f[:4], b"x", *f[5:]]), _armor([*f[:3], b"git\0", *f[4:]])):
        assert not _ed25519_valid(PAYLOAD, odd)
        assert _keygen_valid(PAYLOAD, odd)
        assert sshsig.signed_by(PAYLOAD, odd) == alice.public


def _signed_as(
    key: Signer, namespace: bytes, hash_alg: bytes, version: bytes = b"\0\0\0\1"
) -> bytes:
    """A signature truly made by `key`'s private half over `PAYLOAD` in the SSHSIG shape
    but with the given fields: what a holder of a key could push, valid as Ed25519."""
    import hashlib

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import load_ssh_private_key

    private = load_ssh_private_key(Path(key.key_file).read_bytes(), None)
    assert isinstance(private, Ed25519PrivateKey)
    digest = hashlib.new(hash_alg.decode(), PAYLOAD).digest()
    raw = private.sign(b"SSHSIG" + _strings(namespace, b"", hash_alg, digest))
    key_blob = base64.b64decode(key.public.split()[1])
    sig_blob = _strings(b"ssh-ed25519", raw)
    return _armor([b"SSHSIG", version, key_blob, namespace, b"", hash_alg, sig_blob])


def test_valid_ed25519_in_shapes_ssh_keygen_refuses_are_refused(
    keys: tuple[Signer, Signer, bytes],
) -> None:
    """Signatures that verify as Ed25519 but in a namespace, hash or version ssh-keygen
    refuses (a signature made for another purpose must not pass as a commit's)."""
    alice, _, _ = keys
    assert _ed25519_valid(PAYLOAD, _signed_as(alice, b"git", b"sha256"))  # the shape is right
    for shape in (
        _signed_as(alice, b"file", b"sha512"),
        _signed_as(alice, b"git", b"sha1"),
        _signed_as(alice, b"git", b"sha384"),
        _signed_as(alice, b"git", b"sha512", b"\0\0\0\2"),
    ):
        assert not _agree_one_way(PAYLOAD, shape)
        assert sshsig.signed_by(PAYLOAD, shape) is None


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(at=st.integers(min_value=0), bit=st.integers(min_value=0, max_value=7))
def test_any_flipped_bit_is_never_accepted_in_process_alone(
    keys: tuple[Signer, Signer, bytes], at: int, bit: int
) -> None:
    _, _, sig = keys
    text = sig.strip()
    blob = bytearray(base64.b64decode(b"".join(text[len(ARMOR_BEGIN) : -len(ARMOR_END)].split())))
    blob[at % len(blob)] ^= 1 << bit
    b64 = base64.b64encode(bytes(blob))
    _agree_one_way(PAYLOAD, ARMOR_BEGIN + b"\n" + b64 + b"\n" + ARMOR_END + b"\n")


def test_other_key_types_are_checked_by_ssh_keygen(tmp_path: Path) -> None:
    ecdsa = _key(tmp_path, "ecdsa", "ecdsa")
    sig = ecdsa.sign(PAYLOAD)
    assert not _ed25519_valid(PAYLOAD, sig)
    assert sshsig.signed_by(PAYLOAD, sig) == ecdsa.public
    assert sshsig.signed_by(PAYLOAD + b"x", sig) is None


def test_a_machine_key_signs_in_process_exactly_as_ssh_keygen_does(
    keys: tuple[Signer, Signer, bytes], tmp_path: Path
) -> None:
    """Ed25519 is deterministic: the signature made in process is ssh-keygen's, byte for
    byte (so git's `verify-commit` and every older gitcoord read it as before)."""
    alice, _, _ = keys
    for payload in (PAYLOAD, b"", b"\0" * 3000, "é".encode() * 7):
        ours = alice.sign(payload)
        assert ours == alice._sign(payload, alice.key_file)  # ssh-keygen's own
        assert _keygen_valid(payload, ours)
    # Any other key is signed by ssh-keygen: an ECDSA key, and a key file that is not
    # the private half of the public key it comes with.
    ecdsa = _key(tmp_path, "ecdsa", "ecdsa")
    assert sshsig.signed_by(PAYLOAD, ecdsa.sign(PAYLOAD)) == ecdsa.public
    other = _key(tmp_path, "other")
    mixed = Signer(other.key_file, alice.public)
    assert sshsig.signed_by(PAYLOAD, mixed.sign(PAYLOAD)) == other.public
