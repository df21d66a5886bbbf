"""Signed checkpoints of the audit log, and the Ed25519 key that signs them (``cryptography``).

A checkpoint is one line of ``checkpoints.jsonl``::

    {"key":"<fingerprint>","last":"<64 hex>","root":"<64 hex>","sig":"<base64>","size":N,
     "time_ns":T}

``root`` is the Merkle tree hash of records [0, N) (merkle.py), ``last`` the ``hash`` of record
N-1 (the head of the chain), ``key`` the signer's fingerprint (``sha256:`` + the first 16 bytes,
in hex, of SHA-256 over the 32-byte raw public key) and ``sig`` the Ed25519 signature over
``signed_text``: these five ASCII lines, each ending in ``\\n``::

    swatch audit checkpoint v1
    size N
    root <64 hex>
    last <64 hex>
    time_ns T

The private key is ``audit.key`` (PKCS#8 PEM, mode 0600, created on first start), the public key
``audit.pub`` (SubjectPublicKeyInfo PEM), both in the audit directory unless told otherwise.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from syscall_watcher.audit.records import AuditError, canonical

KEY_FILE = "audit.key"
PUB_FILE = "audit.pub"
CHECKPOINTS_FILE = "checkpoints.jsonl"
HEADER = "swatch audit checkpoint v1"


@dataclass(frozen=True)
class Checkpoint:
    size: int
    root: str
    last: str
    time_ns: int
    key: str
    sig: str

    def signed_text(self) -> bytes:
        return (f"{HEADER}\nsize {self.size}\nroot {self.root}\nlast {self.last}\n"
                f"time_ns {self.time_ns}\n").encode("ascii")

    def line(self) -> bytes:
        return canonical(self.as_dict()) + b"\n"

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "last": self.last, "root": self.root, "sig": self.sig,
                "size": self.size, "time_ns": self.time_ns}

    def signature_ok(self, public: Ed25519PublicKey) -> bool:
        try:
            public.verify(base64.b64decode(self.sig, validate=True), self.signed_text())
        except (InvalidSignature, binascii.Error, ValueError):
            return False
        return True


def _is_hex64(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef"
                                                               for c in value)


def parse_checkpoint(data: Any) -> Checkpoint:
    """A checkpoint from its JSON form (a line's text or the decoded object)."""
    if isinstance(data, (bytes, str)):
        try:
            data = json.loads(data)
        except ValueError:
            raise AuditError("not a checkpoint: not valid JSON") from None
    if not isinstance(data, dict):
        raise AuditError("not a checkpoint: not a JSON object")
    size, t = data.get("size"), data.get("time_ns")
    if not (isinstance(size, int) and size > 0 and isinstance(t, int)
            and _is_hex64(data.get("root")) and _is_hex64(data.get("last"))
            and isinstance(data.get("key"), str) and isinstance(data.get("sig"), str)):
        raise AuditError("not a checkpoint: needs size > 0, time_ns, root, last (64 hex), key, "
                         "sig")
    return Checkpoint(size=size, root=data["root"], last=data["last"], time_ns=t,
                      key=data["key"], sig=data["sig"])


def fingerprint(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "sha256:" + hashlib.sha256(raw).hexdigest()[:32]


def public_pem(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.PEM,
                               serialization.PublicFormat.SubjectPublicKeyInfo)


def sign(key: Ed25519PrivateKey, size: int, root: str, last: str, time_ns: int) -> Checkpoint:
    unsigned = Checkpoint(size, root, last, time_ns, fingerprint(key.public_key()), "")
    sig = base64.b64encode(key.sign(unsigned.signed_text())).decode()
    return Checkpoint(size, root, last, time_ns, unsigned.key, sig)


def check_key_file(path: Path) -> None:
    """The private key must be ours and readable by nobody else."""
    st = path.stat()
    if not stat.S_ISREG(st.st_mode):
        raise AuditError(f"{path}: the signing key is not a regular file")
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        raise AuditError(f"{path}: the signing key has mode {mode:04o}, readable or writable by "
                         f"others; it must be 0600 (chmod 600 {path})")
    if st.st_uid != os.geteuid():
        raise AuditError(f"{path}: the signing key belongs to uid {st.st_uid}, not to uid "
                         f"{os.geteuid()} that signs with it")


def load_private(path: Path) -> Ed25519PrivateKey:
    check_key_file(path)
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except ValueError as err:
        raise AuditError(f"{path}: not a PEM private key ({err})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise AuditError(f"{path}: not an Ed25519 private key")
    return key


def load_or_create_key(key_path: Path, pub_path: Path) -> tuple[Ed25519PrivateKey, bool]:
    """(the signing key, whether it was created now). A new key is written with mode 0600
    (O_EXCL: never over an existing file) and its public half beside it."""
    if key_path.exists():
        key = load_private(key_path)
        if not pub_path.exists():
            _write_new(pub_path, public_pem(key.public_key()), 0o644)
        return key, False
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    _write_new(key_path, pem, 0o600)
    pub_path.unlink(missing_ok=True)  # a public key without its private half is stale
    _write_new(pub_path, public_pem(key.public_key()), 0o644)
    return key, True


def _write_new(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        os.fchmod(fd, mode)  # the umask does not get a say
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def load_public(path: Path) -> Ed25519PublicKey:
    """A public key from a PEM file (SubjectPublicKeyInfo), or from the private key's PEM."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise AuditError(f"{path}: cannot read the public key: {err.strerror}") from None
    try:
        if b"PRIVATE KEY" in data:
            priv = serialization.load_pem_private_key(data, password=None)
            pub: Any = priv.public_key()
        else:
            pub = serialization.load_pem_public_key(data)
    except ValueError as err:
        raise AuditError(f"{path}: not a PEM key ({err})") from None
    if not isinstance(pub, Ed25519PublicKey):
        raise AuditError(f"{path}: not an Ed25519 key")
    return pub
