"""A damaged bundle is refused with a specific error; an intact one verifies and describes itself."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from export.cli import app
from export.verify import summarise, verify_bundle
from fedpa.errors import BundleError
from fedpa.runtime import Bundle
from fedpa.wire import REQUIRED_FILES


def _flip_byte(path, offset=None):
    data = bytearray(path.read_bytes())
    i = len(data) // 2 if offset is None else offset
    data[i] ^= 0x01
    path.write_bytes(bytes(data))


def test_intact_bundle_verifies(bundle_dir):
    result = verify_bundle(bundle_dir)
    assert result.ok
    assert len(result.parity.checks) > 10


def test_bundle_holds_every_file_with_hashes(bundle):
    assert set(REQUIRED_FILES) <= set(bundle.manifest.files)
    for name, entry in bundle.manifest.files.items():
        assert (bundle.path / name).stat().st_size == entry.size


@pytest.mark.parametrize("name", sorted(REQUIRED_FILES))
def test_flipped_byte_is_detected(bundle_copy, name):
    # Prepare: one bit of one file changed, size unchanged
    _flip_byte(bundle_copy / name)
    # Execute / Assert
    with pytest.raises(BundleError, match=rf"{name}: sha256 .* \(corrupt or tampered\)"):
        Bundle.open(bundle_copy)
    with pytest.raises(BundleError, match="corrupt or tampered"):
        verify_bundle(bundle_copy)


def test_missing_file(bundle_copy):
    (bundle_copy / "training.pte").unlink()
    with pytest.raises(BundleError, match=r"training.pte: listed in the manifest but missing"):
        Bundle.open(bundle_copy)


def test_file_not_listed_in_manifest(bundle_copy):
    manifest = json.loads((bundle_copy / "manifest.json").read_text())
    del manifest["files"]["golden.json"]
    (bundle_copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=r"manifest lists no \['golden.json'\]"):
        Bundle.open(bundle_copy)


def test_manifest_cannot_point_outside_the_bundle(bundle_copy):
    manifest = json.loads((bundle_copy / "manifest.json").read_text())
    manifest["files"]["../outside.txt"] = manifest["files"]["golden.json"]
    (bundle_copy.parent / "outside.txt").write_bytes((bundle_copy / "golden.json").read_bytes())
    (bundle_copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="must be a plain file name"):
        Bundle.open(bundle_copy)


def test_unknown_format_version(bundle_copy):
    manifest = json.loads((bundle_copy / "manifest.json").read_text())
    manifest["format_version"] = 99
    (bundle_copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="unknown format_version 99"):
        Bundle.open(bundle_copy)


@pytest.mark.parametrize(("version", "why"), [
    (1, "programs hold their own weights"),  # before the programs took weights and item vectors as inputs
    (2, "ships its whole initial bank"),  # before the bank became a law plus stored tensors
])
def test_older_format_bundle_is_refused_with_the_fix(bundle_copy, version, why):
    manifest = json.loads((bundle_copy / "manifest.json").read_text())
    manifest["format_version"] = version
    (bundle_copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=rf"format_version {version} .*{why}.* reads format_version 3 .*"
                                          r"rebuild it with this version's fedpa-export build"):
        Bundle.open(bundle_copy)


def test_manifest_not_json_or_absent(bundle_copy, tmp_path):
    (bundle_copy / "manifest.json").write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        Bundle.open(bundle_copy)
    with pytest.raises(BundleError, match="not a bundle directory"):
        Bundle.open(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BundleError, match=r"no manifest.json"):
        Bundle.open(tmp_path / "empty")


def test_golden_mismatch_fails_parity_not_hashes(bundle_copy):
    """A re-hashed but wrong golden file passes the hash check and is caught by the replay."""
    golden = json.loads((bundle_copy / "golden.json").read_text())
    golden["inference"][0]["logits"][0] += 0.01
    (bundle_copy / "golden.json").write_text(json.dumps(golden))
    manifest = json.loads((bundle_copy / "manifest.json").read_text())
    from fedpa.manifest import sha256_file

    manifest["files"]["golden.json"] = {"sha256": sha256_file(bundle_copy / "golden.json"),
                                        "size": (bundle_copy / "golden.json").stat().st_size}
    (bundle_copy / "manifest.json").write_text(json.dumps(manifest))
    result = verify_bundle(bundle_copy, backends=("pte",))
    assert not result.ok
    assert [c.name for c in result.parity.failures()] == ["pte logits, case 0 (N=1)"]


def test_summary_counts(bundle):
    info = summarise(bundle.path)
    golden = bundle.golden()
    per_device = sum(a.size for a in golden.personalisation.values())
    p = info["parameters"]
    assert p["private (on device)"] + p["group (this device's values)"] + p["gate"] == per_device
    assert p["frozen (backbone, embeddings, head)"] > 0
    assert info["total_bytes"] == sum(f.stat().st_size for f in bundle.path.iterdir())
    assert [f["name"] for f in info["features"]] == list(bundle.schema.names)
    assert info["toolchain"]["executorch"] and info["toolchain"]["onnx_opset"]


def test_cli_verify_and_inspect(bundle_dir, bundle_copy):
    runner = CliRunner()
    ok = runner.invoke(app, ["verify", str(bundle_dir)])
    assert ok.exit_code == 0, ok.output
    assert "OK" in ok.output
    info = runner.invoke(app, ["inspect", str(bundle_dir), "--json"])
    assert info.exit_code == 0, info.output
    assert json.loads(info.stdout)["model_id"] == "synthetic"
    table = runner.invoke(app, ["inspect", str(bundle_dir)])
    assert table.exit_code == 0 and "parameters" in table.output
    _flip_byte(bundle_copy / "inference.pte")
    bad = runner.invoke(app, ["verify", str(bundle_copy)])
    assert bad.exit_code == 1
    assert "corrupt or tampered" in bad.output


def test_cli_signatures(bundle_dir, bundle_copy, publisher_keys, tmp_path):
    runner = CliRunner()
    trust = ["--trust-key", str(publisher_keys / "publisher.pub"), "--skip-onnx"]
    ok = runner.invoke(app, ["verify", str(bundle_dir), *trust])  # built with --signing-key
    assert ok.exit_code == 0, ok.output
    assert "signature" in ok.output
    other = tmp_path / "other"
    assert runner.invoke(app, ["keygen", "--out", str(other)]).exit_code == 0
    resigned = runner.invoke(app, ["sign", str(bundle_copy), "--signing-key", str(other / "publisher.key")])
    assert resigned.exit_code == 0, resigned.output
    bad = runner.invoke(app, ["verify", str(bundle_copy), *trust])
    assert bad.exit_code == 1 and "not by the trusted publisher key" in " ".join(bad.output.split())
    (bundle_copy / "manifest.sig").unlink()
    unsigned = runner.invoke(app, ["verify", str(bundle_copy), *trust])
    assert unsigned.exit_code == 1 and "unsigned" in " ".join(unsigned.output.split())
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    assert manifest["privacy"]["epsilon_budget"] == 8.0 and manifest["privacy"]["rounds"] == 30
    assert manifest["privacy"]["noise_multiplier"] == pytest.approx(6.985, abs=1e-3)  # ε = 8, replacement


def test_inspect_json_stays_plain_when_colour_is_forced(bundle_dir, monkeypatch):
    """FORCE_COLOR=1 (many terminals and CI systems set it) must not put escape codes into JSON."""
    monkeypatch.setenv("FORCE_COLOR", "1")

    info = CliRunner().invoke(app, ["inspect", str(bundle_dir), "--json"])

    assert info.exit_code == 0, info.output
    assert "\x1b[" not in info.stdout
    assert json.loads(info.stdout)["model_id"] == "synthetic"


def test_verify_prints_only_fedpa_lines_unless_verbose(bundle_dir):
    """torchao/torch warnings and ExecuTorch's native log lines stay hidden; --verbose shows them."""
    import os
    import subprocess
    import sys

    run = [sys.executable, "-c", "import sys; from export.cli import app; sys.argv[0] = 'fedpa-export'; app()"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop("TORCH_LOGS", None)

    quiet = subprocess.run([*run, "verify", str(bundle_dir), "--skip-onnx"], env=env, capture_output=True,
                           text=True, timeout=300)

    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr.strip() == "", quiet.stderr
    assert "OK" in quiet.stdout
    assert not any(word in quiet.stdout for word in ("torchao", "triton", "torchvision", ".cpp:"))
