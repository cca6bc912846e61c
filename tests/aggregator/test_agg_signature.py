"""The aggregator stores and serves the publisher's signature byte for byte (it never checks it: devices do)."""

from __future__ import annotations

from agg_helpers import ADMIN, MODEL_ID, register

from fedpa.signing import generate_keypair, load_private_key, load_public_key, sign_bundle, verify_manifest


def test_signature_is_served_unchanged(app_client, bundle, tmp_path):
    client = app_client()
    root, _ = bundle
    key, pub = generate_keypair(tmp_path / "keys")
    sign_bundle(root, load_private_key(key))
    names = ["manifest.json", "manifest.sig", "shared_state.safetensors", "inference.onnx"]
    files = [("files", (n, (root / n).read_bytes(), "application/octet-stream")) for n in names]

    created = client.post("/v1/models", files=files, headers=ADMIN)
    device = register(client)
    manifest = client.get(f"/v1/models/{MODEL_ID}", headers=device)
    signature = client.get(f"/v1/models/{MODEL_ID}/files/manifest.sig", headers=device)

    assert created.status_code == 201, created.text
    assert signature.status_code == 200 and signature.content == (root / "manifest.sig").read_bytes()
    verify_manifest(manifest.content, signature.content, load_public_key(pub))  # what a device checks
