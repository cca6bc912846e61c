"""The FedPA model: LoRA init, gate modes, parameter groups, batched == per-client, fused == reference."""

from dataclasses import replace

import pytest
import torch
from torch.func import functional_call

from fedpa.errors import ConfigError
from fedpa.model import (
    AdapterConfig,
    Backbone,
    FedPARecommender,
    FusedFedPALayer,
    ParamGroup,
    fuse_layers,
    parameter_groups,
    student_config,
)

CARDS = (5, 4, 7, 9)


def make_model(**adapter) -> FedPARecommender:
    torch.manual_seed(0)
    config = dict(group_attributes=("a", "b"), group_cardinalities=(5, 4))
    config.update(adapter)
    return FedPARecommender(Backbone(student_config(CARDS, 2)), AdapterConfig(**config))


def batch(seed: int = 0, n: int = 32):
    g = torch.Generator().manual_seed(seed)
    x = torch.stack([torch.randint(0, c, (n,), generator=g) for c in CARDS], dim=-1)
    y = torch.randint(0, 2, (n,), generator=g).float()
    return x, y


def one_step_grads(model: FedPARecommender) -> dict[str, torch.Tensor]:
    x, y = batch()
    loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x), y)
    loss.backward()
    return {n: p.grad for n, p in model.named_parameters() if p.requires_grad}


def test_lora_a_and_b_both_learn_after_one_step():
    model = make_model()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    grads = one_step_grads(model)
    # B = 0 at init: dL/dB is non-zero because A is random; dL/dA is zero until B moves ...
    assert grads["layers.0.user.lora_B"].abs().sum() > 0
    opt.step()
    opt.zero_grad()
    grads = one_step_grads(model)  # ... so after one optimiser step both factors receive gradient
    for name in ("layers.0.user.lora_A", "layers.0.user.lora_B", "layers.1.groups.a.lora_A",
                 "layers.1.groups.a.lora_B"):
        assert grads[name].abs().sum() > 0, name


def test_zero_init_adapters_are_dead():
    """The research code's A = B = 0: every adapter gradient is exactly zero, forever."""
    model = make_model(lora_init="zero")
    grads = one_step_grads(model)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    opt.step()
    opt.zero_grad()
    grads = one_step_grads(model)  # still zero after a step: nothing can ever move A or B
    for name in ("layers.0.user.lora_A", "layers.0.user.lora_B", "layers.1.groups.a.lora_A",
                 "layers.1.groups.b.lora_B"):
        assert torch.count_nonzero(grads[name]) == 0, name
    assert grads["layers.0.gate.w1"].abs().sum() > 0  # the gate still learns: adapters alone are dead


def test_residual_mode_equals_backbone_at_init():
    model = make_model(gate_mode="residual", private_user_embeddings=True)
    x, _ = batch(n=64)
    assert torch.equal(model(x), model.backbone(x))


def test_paper_mode_mixes_branches():
    model = make_model(gate_mode="paper")
    x, _ = batch()
    assert not torch.allclose(model(x), model.backbone(x))


def test_parameter_groups_partition_all_parameters_and_freeze_backbone():
    model = make_model(private_user_embeddings=True)
    groups = parameter_groups(model)
    names = [n for g in groups.values() for n in g]
    assert sorted(names) == sorted(n for n, _ in model.named_parameters())
    assert all(not p.requires_grad for p in groups[ParamGroup.FROZEN].values())
    assert set(groups[ParamGroup.PRIVATE]) == {"layers.0.user.lora_A", "layers.0.user.lora_B",
                                                 "layers.1.user.lora_A", "layers.1.user.lora_B",
                                                 "user_embedding.delta"}
    assert "backbone.head.weight" in groups[ParamGroup.FROZEN]
    assert len(groups[ParamGroup.GATE]) == 8 and len(groups[ParamGroup.GROUP]) == 8


def test_training_leaves_frozen_tensors_unchanged():
    model = make_model()
    frozen = {n: p.clone() for n, p in parameter_groups(model)[ParamGroup.FROZEN].items()}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    for seed in range(5):
        x, y = batch(seed)
        opt.zero_grad()
        torch.nn.functional.binary_cross_entropy_with_logits(model(x), y).backward()
        opt.step()
    for name, before in frozen.items():
        assert torch.equal(before, parameter_groups(model)[ParamGroup.FROZEN][name]), name
    assert model.layers[0].user.lora_B.abs().sum() > 0


@pytest.mark.parametrize("mode", ["paper", "residual"])
def test_batched_clients_equal_one_at_a_time(mode):
    model = make_model(gate_mode=mode, private_user_embeddings=True)
    trainable = {n: p.detach() for g in (ParamGroup.PRIVATE, ParamGroup.GROUP, ParamGroup.GATE)
                 for n, p in parameter_groups(model)[g].items()}
    gen = torch.Generator().manual_seed(1)
    stacked = {n: p + 0.1 * torch.randn((3, *p.shape), generator=gen) for n, p in trainable.items()}
    x = torch.stack([batch(seed)[0] for seed in range(3)])  # [U=3, L, F]
    together = functional_call(model, stacked, (x,))
    for u in range(3):
        alone = functional_call(model, {n: t[u] for n, t in stacked.items()}, (x[u],))
        torch.testing.assert_close(together[u], alone, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("form", ["program", "batched"])
@pytest.mark.parametrize("mode", ["paper", "residual"])
def test_fused_layer_equals_the_reference_layer(mode, form):
    # Prepare: non-trivial branches (B ≠ 0), every personalisation tensor stacked for 3 clients
    model = make_model(gate_mode=mode, private_user_embeddings=True)
    gen = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith(("layers.", "user_embedding")):
                p.add_(0.3 * torch.randn(p.shape, generator=gen))
    fused = fuse_layers(model, form=form)
    assert all(isinstance(layer, FusedFedPALayer) for layer in fused.layers)
    assert [n for n, _ in fused.named_parameters()] == [n for n, _ in model.named_parameters()]
    stacked = {n: (p.detach() + 0.1 * torch.randn((3, *p.shape), generator=gen)).requires_grad_(True)
               for g in (ParamGroup.PRIVATE, ParamGroup.GROUP, ParamGroup.GATE)
               for n, p in parameter_groups(model)[g].items()}
    x = torch.stack([batch(seed)[0] for seed in range(3)])  # [U=3, L, F]
    # Execute: one user [L, F] and three clients [U, L, F] (the batched form's use)
    one, one_ref = fused(x[0]), model(x[0])
    many = functional_call(fused, stacked, (x,))
    many_ref = functional_call(model, stacked, (x,))
    # Assert: same values and same gradients for every tensor
    torch.testing.assert_close(one, one_ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(many, many_ref, rtol=1e-5, atol=1e-6)
    grads = torch.autograd.grad(many.square().sum(), list(stacked.values()))
    grads_ref = torch.autograd.grad(many_ref.square().sum(), list(stacked.values()))
    for name, a, b in zip(stacked, grads, grads_ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6, msg=name)


def test_bad_configs_are_refused():
    with pytest.raises(ConfigError, match="rank"):
        AdapterConfig(("a",), (3,), rank=0)
    with pytest.raises(ConfigError, match="gate_mode"):
        AdapterConfig(("a",), (3,), gate_mode="softmax")
    with pytest.raises(ConfigError, match="cardinalities"):
        AdapterConfig(("a", "b"), (3,))
    with pytest.raises(ConfigError, match="fused form"):
        FusedFedPALayer(make_model().layers[0], form="fast")


def test_signal_columns_get_their_own_narrow_embedding():
    # Prepare: 2 user + 1 item column at width 8, then 2 signal columns at width 2
    cards = (5, 4, 7, 9, 6)
    config = replace(student_config(cards, 2, n_signal_features=2), signal_dim=2)
    torch.manual_seed(0)
    model = FedPARecommender(Backbone(config), AdapterConfig(("a",), (5,), private_user_embeddings=True))
    with torch.no_grad():
        model.user_embedding.delta.normal_()
    x = torch.tensor([[1, 2, 3, 4, 5], [0, 3, 6, 8, 0]])
    # Execute
    h = model.backbone.embed(x, model.user_embedding.delta)
    # Assert: the layout is [wide features × 8 | signal features × 2], each row from its own table
    assert config.input_dim == 3 * 8 + 2 * 2 == h.shape[-1]
    assert model.backbone.layers[0].in_features == 28
    wide, narrow = model.backbone.embedding.weight, model.backbone.signal_embedding.weight
    assert wide.shape == (5 + 4 + 7, 8) and narrow.shape == (9 + 6, 2)
    delta = model.user_embedding.delta
    expected = torch.cat([wide[1] + delta[0], wide[5 + 2] + delta[1], wide[9 + 3], narrow[4], narrow[9 + 5]])
    torch.testing.assert_close(h[0], expected)
    torch.testing.assert_close(h[1, -2:], narrow[9 + 0])
    # both tables are frozen parts of the backbone
    frozen = parameter_groups(model)[ParamGroup.FROZEN]
    assert {"backbone.embedding.weight", "backbone.signal_embedding.weight"} <= frozen.keys()


def test_backbone_config_round_trips_and_reads_configs_without_signal_keys():
    config = student_config((5, 4, 7, 9), 2, n_signal_features=1)
    assert type(config).from_dict(config.to_dict()) == config
    old = {k: v for k, v in config.to_dict().items() if k not in ("n_signal_features", "signal_dim")}
    assert type(config).from_dict(old).input_dim == 4 * 8  # a checkpoint written before: every column wide
    with pytest.raises(ConfigError, match="n_signal_features"):
        student_config((5, 4, 7, 9), 2, n_signal_features=3)  # would make user columns narrow
