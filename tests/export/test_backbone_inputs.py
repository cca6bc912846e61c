"""The frozen backbone is a runtime input of every program, shipped once in backbone.safetensors."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from export.verify import verify_bundle
from fedpa.errors import BundleError
from fedpa.manifest import sha256_file
from fedpa.model import FedPARecommender, ParamGroup, external_item_vectors, parameter_groups
from fedpa.payload import decode_tensors, encode_tensors
from fedpa.personalise import load_tensors
from fedpa.runtime import Bundle
from fedpa.runtime.programs import OnnxScorer, PteScorer, Trainer
from fedpa.wire import BACKBONE_FILE, INFERENCE_ONNX, INFERENCE_PTE, TRAINING_PTE

TOL = 1e-5


def _rewrite(bundle_dir, name: str, data: bytes) -> None:
    """Replace one file and re-hash it in the manifest: only the content checks can catch it."""
    (bundle_dir / name).write_bytes(data)
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    manifest["files"][name] = {"sha256": sha256_file(bundle_dir / name), "size": len(data)}
    (bundle_dir / "manifest.json").write_text(json.dumps(manifest))


def _frozen_specs(bundle, key: str) -> list[tuple[str, tuple[int, ...]]]:
    return [(t.name, tuple(t.shape)) for t in bundle.program(key).inputs if t.group == "frozen"]


def _as_programs(bundle, model: FedPARecommender, tensors) -> FedPARecommender:
    """The eager model as the programs hold it: without the item-code rows the item table serves."""
    spec = bundle.manifest.item_vectors
    if spec is None:
        return model
    out = FedPARecommender(external_item_vectors(model.backbone, spec.column), model.config).eval()
    load_tensors(out, tensors)
    return out


def test_backbone_file_holds_the_students_frozen_tensors_once(bundle, helpers):
    # Prepare: the eager model's frozen parameters (backbone + head), by name
    tensors = bundle.personalisation(bundle.groups_of(helpers.user_rows(0)[0][0]))
    model = _as_programs(bundle, helpers.eager(tensors), tensors)
    frozen = {n: p.detach().numpy() for n, p in parameter_groups(model)[ParamGroup.FROZEN].items()}
    # Execute
    shipped = bundle.frozen
    # Assert: same names in the same order as every program's "frozen" inputs, same values
    assert list(shipped) == list(frozen)
    for key in ("inference", "inference_onnx", "training"):
        assert _frozen_specs(bundle, key) == [(n, a.shape) for n, a in frozen.items()]
    for name, a in frozen.items():
        np.testing.assert_array_equal(shipped[name], a)
    # ... and no program carries a copy: no run of any frozen tensor's float32 bytes appears in a file
    for file in (INFERENCE_PTE, INFERENCE_ONNX, TRAINING_PTE):
        data = (bundle.path / file).read_bytes()
        for name, a in frozen.items():
            if a.size < 16:  # a few bytes could occur by chance
                continue
            raw = np.ascontiguousarray(a, "<f4").tobytes()
            assert raw[:64] not in data and raw[-64:] not in data, (file, name)


def test_onnx_program_has_no_frozen_initializers(bundle):
    import onnx

    proto = onnx.load(str(bundle.path / INFERENCE_ONNX))
    frozen = {n for n, _ in _frozen_specs(bundle, "inference_onnx")}
    assert frozen <= {i.name for i in proto.graph.input}
    assert not [i.name for i in proto.graph.initializer if i.name in frozen or i.name.endswith(".weight")]


def test_programs_compute_with_the_backbone_they_are_given(bundle, helpers, rng):
    """A different backbone fed at run time changes the scores exactly as in eager PyTorch."""
    # Prepare: a perturbed student, its weights as the programs' frozen inputs
    x, _ = helpers.user_rows(0)
    tensors = helpers.personalisation(rng)
    other = {n: (a + rng.normal(0, 0.05, a.shape)).astype(np.float32) for n, a in bundle.frozen.items()}
    model = _as_programs(bundle, helpers.eager(tensors), tensors)
    v = helpers.vectors(x)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in other:
                p.copy_(torch.from_numpy(other[name]))
        expected = model(torch.from_numpy(x), None if v is None else torch.from_numpy(v)).numpy()
    # Execute
    pte = PteScorer(bundle.path / INFERENCE_PTE, bundle.program("inference"), bundle.cardinalities, other)
    onnx = OnnxScorer(bundle.path / INFERENCE_ONNX, bundle.program("inference_onnx"), bundle.cardinalities, other)
    # Assert
    np.testing.assert_allclose(pte.score(x, tensors, v), expected, atol=TOL, rtol=0)
    np.testing.assert_allclose(onnx.score(x, tensors, v), expected, atol=TOL, rtol=0)
    assert np.abs(bundle.scorer("pte").score(x, tensors, v) - expected).max() > 1e-3


def test_training_program_gets_no_frozen_state_and_leaves_the_backbone_alone(bundle, helpers, rng):
    # Prepare
    x, y = helpers.user_rows(0)
    frozen = copy.deepcopy(bundle.frozen)
    trainer = Trainer(bundle.path / TRAINING_PTE, bundle.program("training"), bundle.cardinalities, frozen, lr=0.5)
    trainer.write(helpers.personalisation(rng))
    # Execute: a few large steps
    for _ in range(3):
        trainer.step(x[:32], y[:32], helpers.vectors(x[:32]))
    # Assert: only personalisation tensors train; the frozen inputs are unchanged, bit for bit
    assert set(trainer.read()) == set(bundle.personalisation_names)
    assert set(trainer.gradients()) == set(bundle.personalisation_names)
    for name, a in bundle.frozen.items():
        np.testing.assert_array_equal(frozen[name], a)
    groups = {o.group for o in bundle.program("training").outputs}
    assert "frozen" not in groups


def test_scorers_and_trainer_refuse_a_backbone_that_does_not_fit(bundle):
    frozen = dict(bundle.frozen)
    first = next(iter(frozen))
    missing = {n: a for n, a in frozen.items() if n != first}
    with pytest.raises(BundleError, match=rf"frozen tensors: missing \['{first}'\]"):
        PteScorer(bundle.path / INFERENCE_PTE, bundle.program("inference"), bundle.cardinalities, missing)
    bad = {**frozen, first: frozen[first][:-1]}
    with pytest.raises(BundleError, match=rf"frozen tensor '{first}': shape"):
        Trainer(bundle.path / TRAINING_PTE, bundle.program("training"), bundle.cardinalities, bad, lr=0.1)


def _backbone(bundle_copy) -> dict[str, np.ndarray]:
    return decode_tensors((bundle_copy / BACKBONE_FILE).read_bytes())


@pytest.mark.parametrize(("damage", "message"), [
    ("not safetensors", r"backbone.safetensors: payload is not valid safetensors"),
    ("renamed", r"backbone.safetensors: tensors differ from the programs' frozen inputs: missing \['backbone"),
    ("extra", r"unknown \['backbone.extra'\]"),
    ("reshaped", r"backbone.safetensors: backbone.head.bias has shape \(2,\), the programs need \(1,\)"),
    ("float64", r"backbone.safetensors: backbone.head.bias has dtype float64, the programs need float32"),
    ("nan", r"backbone.safetensors: backbone.head.bias contains NaN"),
])
def test_damaged_backbone_is_a_precise_bundle_error(bundle_copy, damage, message):
    # Prepare: a re-hashed backbone file (so the hash check passes and the content check must catch it)
    tensors = _backbone(bundle_copy)
    head = "backbone.head.bias"
    if damage == "not safetensors":
        data = b"\x08\x00\x00\x00\x00\x00\x00\x00not json"
    else:
        if damage == "renamed":
            tensors = {("x." + n if n == next(iter(tensors)) else n): a for n, a in tensors.items()}
        elif damage == "extra":
            tensors["backbone.extra"] = np.zeros(3, np.float32)
        elif damage == "reshaped":
            tensors[head] = np.zeros(2, np.float32)
        elif damage == "float64":
            tensors[head] = tensors[head].astype(np.float64)
        else:
            tensors[head] = np.full_like(tensors[head], np.nan)
        data = encode_tensors(tensors)
    _rewrite(bundle_copy, BACKBONE_FILE, data)
    # Execute / Assert: opening still works (hashes match); using the programs or verifying does not
    bundle = Bundle.open(bundle_copy)
    with pytest.raises(BundleError, match=message):
        bundle.scorer("pte")
    with pytest.raises(BundleError, match=message):
        verify_bundle(bundle_copy, backends=("pte",))


def test_missing_or_unlisted_backbone_is_refused(bundle_copy):
    (bundle_copy / BACKBONE_FILE).unlink()
    with pytest.raises(BundleError, match=r"backbone.safetensors: listed in the manifest but missing"):
        Bundle.open(bundle_copy)
    manifest = json.loads((bundle_copy / "manifest.json").read_text())
    del manifest["files"][BACKBONE_FILE]
    (bundle_copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=r"manifest lists no \['backbone.safetensors'\] \(built before .*rebuild"):
        Bundle.open(bundle_copy)
