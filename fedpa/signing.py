"""Publisher signatures on bundles: the device trusts a key, not the server or the network.

The manifest pins every bundle file by sha256, so signing ``manifest.json``'s exact bytes signs the
whole bundle. The signature sits beside it in ``manifest.sig`` (JSON: algorithm, key id,
base64 signature). The algorithm is **ECDSA P-256 with SHA-256**: Ed25519 would be simpler, but
Android's platform verifies it only from API 33 and the demo app runs from API 26, whose
``Signature.getInstance("SHA256withECDSA")`` verifies this format with no extra library.

Keys are PEM files: ``publisher.key`` (PKCS#8, written 0600 — keep it off the server) and
``publisher.pub`` (SubjectPublicKeyInfo — install it on devices). Usage::

    key_path, pub_path = generate_keypair("keys/")
    sign_bundle("bundles/demo", load_private_key(key_path))
    verify_bundle_signature("bundles/demo", load_public_key(pub_path))
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from fedpa.errors import ConfigError, SignatureError
from fedpa.wire import MANIFEST_NAME, SIGNATURE_NAME

__all__ = [
    "ALGORITHM",
    "PRIVATE_KEY_NAME",
    "PUBLIC_KEY_NAME",
    "PublicKey",
    "generate_keypair",
    "load_private_key",
    "load_public_key",
    "sign_bundle",
    "sign_manifest",
    "verify_bundle_signature",
    "verify_manifest",
]

ALGORITHM = "ecdsa-p256-sha256"
PRIVATE_KEY_NAME = "publisher.key"
PUBLIC_KEY_NAME = "publisher.pub"


@dataclass(frozen=True)
class PublicKey:
    """A publisher's P-256 public key and its id (sha256 of the DER SubjectPublicKeyInfo, hex)."""

    key: ec.EllipticCurvePublicKey

    @property
    def der(self) -> bytes:
        return self.key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)

    @property
    def key_id(self) -> str:
        return hashlib.sha256(self.der).hexdigest()


def generate_keypair(out_dir: str | Path, *, overwrite: bool = False) -> tuple[Path, Path]:
    """Write a new ``publisher.key`` (0600) and ``publisher.pub`` into ``out_dir``."""
    out = Path(out_dir)
    key_path, pub_path = out / PRIVATE_KEY_NAME, out / PUBLIC_KEY_NAME
    if not overwrite and (key_path.exists() or pub_path.exists()):
        raise ConfigError(f"{out}: a key pair already exists (remove it or pass --overwrite)")
    out.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    key_path.unlink(missing_ok=True)
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    pub_path.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                       serialization.PublicFormat.SubjectPublicKeyInfo))
    return key_path, pub_path


def load_private_key(path: str | Path) -> ec.EllipticCurvePrivateKey:
    """A publisher's signing key (PEM PKCS#8, P-256); ConfigError naming the file otherwise."""
    path = Path(path)
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"{path}: not a readable unencrypted PEM private key ({exc})") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ConfigError(f"{path}: signing key must be ECDSA P-256 (make one with `fedpa-export keygen`)")
    return key


def load_public_key(path: str | Path) -> PublicKey:
    """A trusted publisher key (PEM SubjectPublicKeyInfo, P-256); ConfigError naming the file otherwise."""
    path = Path(path)
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not a readable PEM public key ({exc})") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ConfigError(f"{path}: trusted key must be ECDSA P-256 (`fedpa-export keygen` writes one)")
    return PublicKey(key)


def sign_manifest(manifest_bytes: bytes, key: ec.EllipticCurvePrivateKey) -> bytes:
    """The ``manifest.sig`` content for these exact manifest bytes."""
    signature = key.sign(manifest_bytes, ec.ECDSA(hashes.SHA256()))
    return json.dumps({"algorithm": ALGORITHM, "key_id": PublicKey(key.public_key()).key_id,
                       "signature": base64.b64encode(signature).decode()}, indent=1).encode()


def verify_manifest(manifest_bytes: bytes, signature_file: bytes | None, trusted: PublicKey, *,
                    source: str = MANIFEST_NAME) -> None:
    """Raise SignatureError unless ``signature_file`` is ``trusted``'s signature of ``manifest_bytes``."""
    if signature_file is None:
        raise SignatureError(f"{source}: bundle is unsigned (no {SIGNATURE_NAME}); this device trusts only "
                             f"bundles signed by key {trusted.key_id[:16]}")
    try:
        sig = json.loads(signature_file)
        algorithm, key_id, raw = sig["algorithm"], sig["key_id"], base64.b64decode(sig["signature"], validate=True)
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise SignatureError(f"{source}: {SIGNATURE_NAME} is malformed ({exc})") from exc
    if algorithm != ALGORITHM:
        raise SignatureError(f"{source}: signature algorithm {algorithm!r} is not {ALGORITHM!r}")
    if key_id != trusted.key_id:
        raise SignatureError(f"{source}: signed by key {str(key_id)[:16]}, not by the trusted publisher key "
                             f"{trusted.key_id[:16]}")
    try:
        trusted.key.verify(raw, manifest_bytes, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature as exc:
        raise SignatureError(f"{source}: signature does not match the manifest (tampered or re-signed)") from exc


def sign_bundle(bundle_dir: str | Path, key: ec.EllipticCurvePrivateKey) -> Path:
    """Write ``manifest.sig`` for the bundle's ``manifest.json`` (which pins every file's sha256)."""
    bundle_dir = Path(bundle_dir)
    path = bundle_dir / SIGNATURE_NAME
    path.write_bytes(sign_manifest((bundle_dir / MANIFEST_NAME).read_bytes(), key))
    return path


def verify_bundle_signature(bundle_dir: str | Path, trusted: PublicKey) -> None:
    """SignatureError unless the bundle's manifest is signed by ``trusted`` (files: ``read_manifest``)."""
    bundle_dir = Path(bundle_dir)
    sig = bundle_dir / SIGNATURE_NAME
    manifest = bundle_dir / MANIFEST_NAME
    if not manifest.is_file():
        raise SignatureError(f"{manifest}: no manifest.json (not a FedPA bundle)")
    verify_manifest(manifest.read_bytes(), sig.read_bytes() if sig.is_file() else None, trusted,
                    source=str(bundle_dir))
