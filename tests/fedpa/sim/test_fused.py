"""The fused batched forward is the model's own function: values and gradients match."""

import pytest
import torch
from torch.func import functional_call

from fedpa.sim.engine import Population
from fedpa.sim.methods import build_program, get_method


@pytest.mark.parametrize("overrides", [
    {"name": "fedpa", "user_embeddings": True},
    {"name": "fedpa-paper"},
    {"name": "fedavg-lora"},
    {"name": "local-only"},
    {"name": "global-private-lora", "gate_mode": "paper", "rank": 3},
])
def test_fused_forward_and_gradients_equal_the_model(small_ds, small_student, overrides):
    # Prepare: non-trivial tensors (B ≠ 0) for 5 clients, with the gate broadcast as in evaluation
    overrides = dict(overrides)
    method = get_method(overrides.pop("name"), **overrides)
    users = small_ds.private_users[:5]
    program = build_program(method, small_student, small_ds.schema, small_ds.user_groups[users], seed=0)
    pop = Population(program.private_init, 5, program.spec, program.bank, program.group_values)
    g = torch.Generator().manual_seed(0)
    params = {k: (v + 0.2 * torch.randn(v.shape, generator=g)).requires_grad_(True)
              for k, v in pop.params(torch.arange(5), copy=False).items()}
    x = torch.from_numpy(small_ds.private_train.x[:35].reshape(5, 7, -1))
    # Execute
    fused = program.forward(params, x)
    reference = functional_call(program.module, dict(params), (x,))
    # Assert
    torch.testing.assert_close(fused, reference, atol=1e-5, rtol=1e-5)
    g1 = torch.autograd.grad(fused.square().sum(), list(params.values()))
    g2 = torch.autograd.grad(reference.square().sum(), list(params.values()))
    for name, a, b in zip(params, g1, g2, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4, msg=name)
