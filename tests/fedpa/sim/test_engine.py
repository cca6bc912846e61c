"""The batched engine equals one-client-at-a-time training with a plain model and torch SGD."""

import copy
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch.nn.functional import binary_cross_entropy_with_logits as bce

from fedpa.model import parameter_groups
from fedpa.schedule import LocalTraining, local_batches
from fedpa.sim.engine import Population, local_train, predict
from fedpa.sim.layout import ClientRows, segments, step_plan
from fedpa.sim.methods import build_program, get_method

USERS = 6
CONFIG = LocalTraining(lr=0.7, batch_size=8, epochs=2)


def setup(ds, student, method):
    users = ds.private_users[:USERS]
    rows = ClientRows.from_split(ds.private_train, users)
    program = build_program(method, student, ds.schema, ds.user_groups[users], seed=0)
    pop = Population(program.private_init, USERS, program.spec, program.bank, program.group_values)
    return users, rows, program, pop


def reference_model(program):
    """A plain single-user model (no client dimension) holding the program's frozen tensors."""
    return copy.deepcopy(program.module)


@pytest.mark.parametrize("name", ["fedpa", "fedpa-paper", "local-only", "fedavg-full"])
def test_batched_step_equals_one_client_at_a_time(small_ds, small_student, name):
    # Prepare
    method = get_method(name, lr=CONFIG.lr, batch_size=CONFIG.batch_size, user_embeddings=name == "fedpa")
    users, rows, program, pop = setup(small_ds, small_student, method)
    clients = np.arange(USERS)
    start = pop.params(torch.from_numpy(clients), copy=True)
    assert (rows.counts > CONFIG.batch_size).any()  # several batches per epoch are exercised
    # Execute
    trained, _, skipped = local_train(program.forward, start, rows, clients, replace(CONFIG, seed=5), round=2)
    assert int(skipped.sum()) == 0
    # Assert: a fresh model per client, its own tensors loaded, torch.optim.SGD over local_batches
    for i, user in enumerate(users):
        model = reference_model(program)
        named = dict(model.named_parameters())
        with torch.no_grad():
            for k, v in start.items():
                named[k].copy_(v[i])
        params = [named[k].requires_grad_(True) for k in start]
        opt = torch.optim.SGD(params, lr=CONFIG.lr)
        lo = rows.offsets[i]
        for b in local_batches(int(rows.counts[i]), batch_size=CONFIG.batch_size, epochs=CONFIG.epochs, seed=5,
                               client=int(user), round=2):
            loss = bce(model(rows.x[lo + b]), rows.y[lo + b])  # plain [L, F] input: no client dim
            opt.zero_grad()
            loss.backward()
            opt.step()
        for k in start:
            torch.testing.assert_close(trained[k][i], named[k].detach(), atol=1e-5, rtol=0)
            assert not torch.equal(trained[k][i], start[k][i]) or "lora_A" in k or "zero" in name


def test_chunking_changes_nothing(small_ds, small_student):
    method = get_method("fedpa", lr=0.5, batch_size=8)
    _, rows, program, pop = setup(small_ds, small_student, method)
    clients = np.arange(USERS)
    start = pop.params(torch.from_numpy(clients), copy=True)
    local = LocalTraining(lr=0.5, batch_size=8, epochs=1)
    whole, _, _ = local_train(program.forward, start, rows, clients, local, round=0)
    tiny, _, _ = local_train(program.forward, start, rows, clients, local, round=0, max_rows=9)
    for k in whole:
        torch.testing.assert_close(whole[k], tiny[k], atol=1e-6, rtol=0)


def test_a_client_update_ignores_the_other_clients(small_ds, small_student):
    """Client 0 trained alone or beside others: same result (per-client semantics are exact)."""
    method = get_method("fedpa", lr=0.5, batch_size=8)
    _, rows, program, pop = setup(small_ds, small_student, method)
    both = np.arange(USERS)
    start = pop.params(torch.from_numpy(both), copy=True)
    config = replace(CONFIG, seed=1)
    together, _, _ = local_train(program.forward, start, rows, both, config, round=4)
    alone, _, _ = local_train(program.forward, {k: v[:1] for k, v in start.items()}, rows, both[:1], config, round=4)
    for k in together:
        torch.testing.assert_close(together[k][:1], alone[k], atol=1e-6, rtol=0)


def test_step_plan_covers_each_clients_batches_in_order(small_ds):
    users = small_ds.private_users[:4]
    rows = ClientRows.from_split(small_ds.private_train, users)
    seen = {i: [] for i in range(4)}
    for step in step_plan(rows, np.arange(4), batch_size=8, epochs=2, seed=3, round=1):
        for c, idx, mask in zip(step.clients.tolist(), step.idx, step.mask, strict=True):
            seen[c].append(sorted((idx[mask] - rows.offsets[c]).tolist()))
    for c, user in enumerate(users):
        n = int(rows.counts[c])
        expected = local_batches(n, batch_size=8, epochs=2, seed=3, client=int(user), round=1)
        if n <= 8:  # one batch per epoch: the set of rows is the same whatever the permutation
            expected = [np.arange(n)] * 2
        assert seen[c] == [sorted(b.tolist()) for b in expected]


def test_predict_matches_the_plain_model(small_ds, small_student):
    method = get_method("fedpa", rank=2)
    users, _, program, pop = setup(small_ds, small_student, method)
    rows = ClientRows.from_split(small_ds.private_test, users)
    with torch.no_grad():  # give the user adapters non-zero B so the check is not trivial
        for k, v in pop.private.items():
            if k.endswith("lora_B"):
                v.normal_(0, 0.3, generator=torch.Generator().manual_seed(0))
    logits = predict(program.forward, pop.params, rows, segments(rows, length=4), max_rows=10)
    model = reference_model(program)
    named = dict(model.named_parameters())
    for i in range(USERS):
        p = pop.params(torch.tensor([i]))
        with torch.no_grad():
            for k, v in p.items():  # shared-by-all tensors come without the client dimension
                named[k].copy_(v[0] if v.dim() > named[k].dim() else v)
            ref = model(rows.x[rows.offsets[i] : rows.offsets[i + 1]]).numpy()
        np.testing.assert_allclose(logits[rows.offsets[i] : rows.offsets[i + 1]], ref, atol=1e-5)


def test_residual_variant_starts_as_the_student(small_ds, small_student):
    users, _, program, pop = setup(small_ds, small_student, get_method("fedpa"))
    rows = ClientRows.from_split(small_ds.private_val, users)
    logits = predict(program.forward, pop.params, rows, segments(rows))
    with torch.no_grad():
        np.testing.assert_allclose(logits, small_student(rows.x).numpy(), atol=1e-6)
    assert parameter_groups(reference_model(program))


def test_a_diverging_client_keeps_its_tensors_and_the_others_train(small_ds, small_student):
    method = get_method("local-only", lr=0.5, batch_size=8)
    _, rows, program, pop = setup(small_ds, small_student, method)
    clients = np.arange(USERS)
    start = pop.params(torch.from_numpy(clients), copy=True)
    with torch.no_grad():
        start["layers.0.user.lora_B"][1] = float("inf")  # client 1's model is broken
    trained, loss, skipped = local_train(program.forward, start, rows, clients, CONFIG, round=0)
    assert skipped[1] > 0 and int(skipped.sum()) == int(skipped[1])
    assert torch.isnan(loss[1]) and torch.isfinite(loss[[0, 2, 3, 4, 5]]).all()
    torch.testing.assert_close(trained["layers.0.user.lora_A"][1], start["layers.0.user.lora_A"][1])
    assert not torch.equal(trained["layers.0.user.lora_B"][0], start["layers.0.user.lora_B"][0])
