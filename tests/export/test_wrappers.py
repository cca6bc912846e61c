"""The export-time module forms compute exactly what the eager model computes (no lowering here)."""

from __future__ import annotations

import copy

import numpy as np
import onnxruntime as ort
import pytest
import torch

from export.lower import lower_onnx
from export.wrappers import InferenceWrapper, WithLoss, frozen_names, personalisation_names
from fedpa.model import AdapterConfig, Backbone, FedPARecommender, fuse_layers, student_config

CARDS = (5, 6, 4, 9, 11)


def _model(gate_mode: str, private_user_embeddings: bool = False, seed: int = 0) -> FedPARecommender:
    torch.manual_seed(seed)
    adapter = AdapterConfig(("a", "b"), (5, 6), rank=3, gate_mode=gate_mode,
                            private_user_embeddings=private_user_embeddings)
    model = FedPARecommender(Backbone(student_config(CARDS, 2)), adapter).eval()
    with torch.no_grad():  # non-trivial adapters: B = 0 would hide a wrong branch
        for name, p in model.named_parameters():
            if name.startswith(("layers.", "user_embedding")):
                p.add_(0.3 * torch.randn_like(p))
    return model


def _codes(n: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randint(0, c, (n,), generator=g) for c in CARDS], dim=1)


@pytest.mark.parametrize("gate_mode", ["paper", "residual"])
@pytest.mark.parametrize("private_user_embeddings", [False, True])
def test_fused_layers_equal_the_model(gate_mode, private_user_embeddings):
    model = _model(gate_mode, private_user_embeddings)
    fused = fuse_layers(model)
    x = _codes(64)
    assert [n for n, _ in fused.named_parameters()] == [n for n, _ in model.named_parameters()]
    with torch.no_grad():
        torch.testing.assert_close(fused(x), model(x), atol=1e-6, rtol=0)


def test_inference_wrapper_takes_tensors_as_inputs():
    model = _model("paper")
    wrapper = InferenceWrapper(fuse_layers(model))
    other = _model("paper", seed=5)  # same architecture, other personalisation values
    params = dict(other.named_parameters())
    x = _codes(16)
    with torch.no_grad():
        out = wrapper(x, *(params[n] for n in wrapper.names))
        expected = copy.deepcopy(model).eval()  # model's structure, other's tensors (backbone included)
        expected_params = dict(expected.named_parameters())
        for n in wrapper.names:
            expected_params[n].copy_(params[n])
        torch.testing.assert_close(out, expected(x), atol=1e-6, rtol=0)
        assert (out - model(x)).abs().max() > 1e-3  # and not the wrapped model's own tensors
    assert wrapper.names == (*personalisation_names(model), *frozen_names(model))
    assert frozen_names(model)[0] == "backbone.embedding.weight"
    assert not any(n.startswith("layers.") and ".base." in n for n in frozen_names(model))  # tied: listed once


def test_with_loss_keeps_plain_parameter_names():
    model = _model("paper")
    names = [n for n, p in WithLoss(model).named_parameters() if p.requires_grad]
    assert names and not any(n.startswith("model.") for n in names)
    assert set(names) == set(personalisation_names(model))


def test_residual_mode_exports_to_onnx_with_parity(tmp_path):
    model = _model("residual")
    data, spec = lower_onnx(model, max_batch=64)
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    params = dict(model.named_parameters())
    x = _codes(33)
    feeds = {"x": x.numpy(), **{t.name: params[t.name].detach().numpy() for t in spec.inputs[1:]}}
    with torch.no_grad():
        np.testing.assert_allclose(session.run(None, feeds)[0], model(x).numpy(), atol=1e-5, rtol=0)
