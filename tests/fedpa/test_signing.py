"""Publisher signatures: what a device that pins a key accepts and refuses."""

import json
import os

import pytest

from fedpa.errors import ConfigError, SignatureError
from fedpa.signing import (
    generate_keypair,
    load_private_key,
    load_public_key,
    sign_bundle,
    verify_bundle_signature,
)


@pytest.fixture
def keys(tmp_path):
    key, pub = generate_keypair(tmp_path / "keys")
    return load_private_key(key), load_public_key(pub)


@pytest.fixture
def bundle(tmp_path):
    folder = tmp_path / "bundle"
    folder.mkdir()
    (folder / "manifest.json").write_text(json.dumps({"model_version": 2, "privacy": {"noise_multiplier": 7.0}}))
    return folder


def test_keygen_writes_a_private_key_only_its_owner_reads(tmp_path):
    key, pub = generate_keypair(tmp_path / "k")
    assert oct(os.stat(key).st_mode & 0o777) == "0o600"
    assert pub.read_text().startswith("-----BEGIN PUBLIC KEY-----")
    with pytest.raises(ConfigError, match="already exists"):
        generate_keypair(tmp_path / "k")


def test_signed_bundle_verifies(bundle, keys):
    sign_bundle(bundle, keys[0])
    verify_bundle_signature(bundle, keys[1])


def test_unsigned_bundle_is_refused(bundle, keys):
    with pytest.raises(SignatureError, match="unsigned"):
        verify_bundle_signature(bundle, keys[1])


def test_tampered_manifest_is_refused(bundle, keys):
    sign_bundle(bundle, keys[0])
    raw = json.loads((bundle / "manifest.json").read_text())
    raw["privacy"]["noise_multiplier"] = 0.001  # what a hostile server would like devices to use
    (bundle / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(SignatureError, match="does not match"):
        verify_bundle_signature(bundle, keys[1])


def test_bundle_resigned_by_another_key_is_refused(bundle, keys, tmp_path):
    other, _ = generate_keypair(tmp_path / "other")
    sign_bundle(bundle, load_private_key(other))
    with pytest.raises(SignatureError, match="not by the trusted publisher key"):
        verify_bundle_signature(bundle, keys[1])
    # a forged key id over another key's signature is still refused by the signature check
    sig = json.loads((bundle / "manifest.sig").read_text())
    sig["key_id"] = keys[1].key_id
    (bundle / "manifest.sig").write_text(json.dumps(sig))
    with pytest.raises(SignatureError, match="does not match"):
        verify_bundle_signature(bundle, keys[1])


def test_malformed_signature_and_keys_are_refused(bundle, keys, tmp_path):
    (bundle / "manifest.sig").write_text("not json")
    with pytest.raises(SignatureError, match="malformed"):
        verify_bundle_signature(bundle, keys[1])
    (tmp_path / "bad.pub").write_text("nope")
    with pytest.raises(ConfigError, match="not a readable PEM public key"):
        load_public_key(tmp_path / "bad.pub")
