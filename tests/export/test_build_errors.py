"""Bad inputs to a build fail early and specifically, and a failed build leaves nothing behind."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import export.bundle as export_bundle
from export.bundle import build_bundle, check_architecture
from export.cli import app
from export.source import resolve_student
from fedpa.errors import BundleError
from fedpa.model import AdapterConfig, Backbone, BackboneConfig
from fedpa.runtime import Bundle
from fedpa.train import adapter_config_for, save_checkpoint
from fedpa.wire import INFERENCE_ONNX, INFERENCE_PTE, TRAINING_PTE


@pytest.fixture
def stub_lowering(monkeypatch, bundle):
    """Reuse the session bundle's programs instead of lowering again (same student, adapter, seed).

    The packaging path still runs for real, including the self-check on those programs.
    """
    for name, key, file in (("lower_inference", "inference", INFERENCE_PTE),
                            ("lower_onnx", "inference_onnx", INFERENCE_ONNX),
                            ("lower_training", "training", TRAINING_PTE)):
        data, spec = (bundle.path / file).read_bytes(), bundle.program(key)
        monkeypatch.setattr(export_bundle, name, lambda *_a, _d=data, _s=spec, **_k: (_d, _s))


def _adapter(dataset) -> AdapterConfig:
    return adapter_config_for(dataset.schema, rank=4, gate_mode="paper")


def test_model_schema_mismatch(student, dataset, tmp_path):
    schema = dataset.schema
    last = dataclasses.replace(schema.features[-1], bucket_edges=(0.5, 1.0))
    other = dataclasses.replace(schema, features=(*schema.features[:-1], last))
    with pytest.raises(BundleError, match="feature schema mismatch: the model's cardinalities"):
        build_bundle(student, other, tmp_path / "b", model_id="x")
    assert not (tmp_path / "b").exists()


def test_weights_not_fitting_declared_architecture(student, dataset):
    broken = Backbone(student.config)
    broken.layers[0] = torch.nn.Linear(student.config.input_dim, 16)  # config still says 32
    with pytest.raises(BundleError, match="architecture mismatch"):
        check_architecture(broken, dataset.schema, _adapter(dataset))


def test_adapter_groups_not_in_schema(student, dataset):
    adapter = AdapterConfig(group_attributes=("category",), group_cardinalities=(9,))  # an item feature
    with pytest.raises(BundleError, match="group attribute 'category'"):
        check_architecture(student, dataset.schema, adapter)


def test_checkpoint_with_mismatched_architecture(student, dataset, tmp_path):
    path = save_checkpoint(tmp_path / "s.pt", student, dataset.schema, kind="student")
    raw = torch.load(path, weights_only=True)
    config = json.loads(raw["config"])
    raw["config"] = json.dumps({**config, "hidden": [16, 8]})  # declared architecture ≠ weights
    torch.save(raw, path)
    with pytest.raises(BundleError, match=r"student checkpoint: .*weights do not match architecture"):
        resolve_student(student=path)


def test_checkpoint_schema_differs_from_dataset(student_checkpoint):
    with pytest.raises(BundleError, match=r"schema mismatch between .* and the dataset: feature 'num_duration'"):
        resolve_student(student=student_checkpoint, dataset="synthetic", dataset_options={"n_buckets": 5})


def test_source_argument_errors(student_checkpoint, tmp_path):
    with pytest.raises(BundleError, match="not both"):
        resolve_student(student=student_checkpoint, teacher=student_checkpoint)
    with pytest.raises(BundleError, match="nothing to export"):
        resolve_student()
    with pytest.raises(BundleError, match=r"teacher checkpoint: .*not found"):
        resolve_student(teacher=tmp_path / "missing.pt", dataset="synthetic")
    with pytest.raises(BundleError, match="unknown dataset"):
        resolve_student(dataset="no-such-dataset")


def test_teacher_checkpoint_needs_dataset(student, dataset, tmp_path):
    teacher = save_checkpoint(tmp_path / "t.pt", student, dataset.schema, kind="teacher")
    with pytest.raises(BundleError, match="needs a dataset"):
        resolve_student(teacher=teacher)


def test_existing_output_and_bad_model_id_fail_before_lowering(student, dataset, bundle_copy):
    before = sorted(p.name for p in bundle_copy.iterdir())
    with pytest.raises(BundleError, match="already exists"):
        build_bundle(student, dataset.schema, bundle_copy, model_id="x")
    assert sorted(p.name for p in bundle_copy.iterdir()) == before
    with pytest.raises(BundleError, match="invalid model id"):
        build_bundle(student, dataset.schema, bundle_copy.parent / "new", model_id="bad id!")
    with pytest.raises(BundleError, match="invalid model id"):
        build_bundle(student, dataset.schema, bundle_copy.parent / "new", model_id="ok", model_version=0)
    with pytest.raises(BundleError, match=r"seed -1 is not a 32-bit unsigned integer"):
        build_bundle(student, dataset.schema, bundle_copy.parent / "new", model_id="ok", seed=-1)
    assert not (bundle_copy.parent / "new").exists()


def test_failed_self_check_leaves_nothing(stub_lowering, monkeypatch, student, dataset, tmp_path):
    # Prepare: golden vectors that the (correct) programs cannot reproduce
    real = export_bundle.make_golden

    def wrong_golden(*args, **kwargs):
        golden = real(*args, **kwargs)
        golden.cases[0].logits[:] += 0.5
        return golden

    monkeypatch.setattr(export_bundle, "make_golden", wrong_golden)
    # Execute / Assert
    with pytest.raises(BundleError, match="disagree with eager PyTorch: pte logits, case 0"):
        build_bundle(student, dataset.schema, tmp_path / "out", model_id="x", adapter=_adapter(dataset))
    assert list(tmp_path.iterdir()) == []  # no bundle, no temporary directory


def test_overwrite_swaps_in_a_complete_bundle(stub_lowering, student, dataset, bundle_copy):
    result = build_bundle(student, dataset.schema, bundle_copy, model_id="replaced", model_version=2,
                          adapter=_adapter(dataset), overwrite=True)
    opened = Bundle.open(bundle_copy)
    assert opened.manifest.model_id == "replaced" and opened.manifest.model_version == 2
    assert result.parity.ok
    assert [p.name for p in bundle_copy.parent.iterdir()] == [bundle_copy.name]  # old copy removed
    assert oct(bundle_copy.stat().st_mode & 0o777) == "0o755"


def test_shared_state_matches_manifest_and_initial_adapters_are_alive(bundle):
    bank = bundle.shared_state()
    spec = bundle.manifest.shared_state.by_name()
    assert set(bank) == set(spec)
    group_a = [a for n, a in bank.items() if spec[n].role == "group" and spec[n].param.endswith("lora_A")]
    group_b = [a for n, a in bank.items() if spec[n].role == "group" and spec[n].param.endswith("lora_B")]
    assert all(np.abs(a).max() > 0 for a in group_a)  # A ~ N(0, 1/in): never the dead zero init
    assert all(np.abs(b).max() == 0 for b in group_b)  # B = 0: adapters start silent


def test_cli_build_reports_errors(tmp_path):
    result = CliRunner().invoke(app, ["build", "--teacher", str(tmp_path / "missing.pt"), "--dataset", "synthetic",
                                      "--out", str(tmp_path / "b")])
    assert result.exit_code == 1
    assert "checkpoint" in result.output and "not found" in result.output
    assert not (tmp_path / "b").exists()


def test_backbone_config_roundtrip_in_manifest(bundle, student):
    assert BackboneConfig.from_dict(bundle.manifest.backbone) == student.config
