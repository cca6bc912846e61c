"""Exported programs compute what eager PyTorch computes: scores, SGD steps, trained adapters."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fedpa.model import ParamGroup, parameter_groups
from fedpa.runtime import check_golden

TOL = 1e-5


def _eager_logits(model, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


@pytest.mark.parametrize("n", [1, 7, 256])
def test_pte_and_onnx_scores_match_eager(bundle, helpers, rng, n):
    # Prepare: real rows of one user, their group adapters, all tensors perturbed (non-trivial)
    x, _ = helpers.user_rows(0)
    x = np.resize(x, (n, x.shape[1]))
    tensors = helpers.personalisation(rng)
    expected = _eager_logits(helpers.eager(tensors), x)
    # Execute
    pte = bundle.scorer("pte").score(x, tensors, helpers.vectors(x))
    onnx = bundle.scorer("onnx").score(x, tensors, helpers.vectors(x))
    # Assert
    assert pte.shape == onnx.shape == (n,)
    np.testing.assert_allclose(pte, expected, atol=TOL, rtol=0)
    np.testing.assert_allclose(onnx, expected, atol=TOL, rtol=0)


def test_adapters_change_the_scores(bundle, helpers, rng):
    """Guards the parity test: personalisation tensors really are inputs, not baked-in constants."""
    x, _ = helpers.user_rows(0)
    scorer = bundle.scorer("pte")
    a = scorer.score(x, helpers.personalisation(rng), helpers.vectors(x))
    b = scorer.score(x, helpers.personalisation(rng), helpers.vectors(x))
    assert np.abs(a - b).max() > 1e-3


def test_batches_above_max_batch_are_chunked(bundle, helpers, rng):
    max_batch = bundle.program("inference").max_batch
    test_x = helpers.dataset.private_test.x
    x = np.resize(test_x, (max_batch + 37, test_x.shape[1]))
    tensors = helpers.personalisation(rng)
    np.testing.assert_allclose(bundle.scorer("pte").score(x, tensors, helpers.vectors(x)),
                               _eager_logits(helpers.eager(tensors), x), atol=TOL, rtol=0)


def test_training_program_matches_eager_sgd(bundle, helpers, rng):
    # Prepare: the same non-trivial start for the ExecuTorch trainer and an eager SGD reference
    lr, steps, batch = 0.1, 6, 32
    start = helpers.personalisation(rng)
    trainer = bundle.trainer(lr=lr)
    trainer.write(start)
    model = helpers.eager(start)
    groups = parameter_groups(model)
    trainable = [p for g in (ParamGroup.PRIVATE, ParamGroup.GROUP, ParamGroup.GATE) for p in groups[g].values()]
    for p in trainable:
        p.requires_grad_(True)
    frozen_before = {n: p.detach().clone() for n, p in groups[ParamGroup.FROZEN].items()}
    optimizer = torch.optim.SGD(trainable, lr=lr)
    x_all, y_all = helpers.user_rows(0)
    x_all, y_all = np.resize(x_all, (steps * batch, x_all.shape[1])), np.resize(y_all, steps * batch)
    # Execute: N steps on both
    et_losses, eager_losses = [], []
    for i in range(steps):
        xb, yb = x_all[i * batch:(i + 1) * batch], y_all[i * batch:(i + 1) * batch]
        et_losses.append(trainer.step(xb, yb, helpers.vectors(xb)))
        loss = F.binary_cross_entropy_with_logits(model(torch.from_numpy(xb)), torch.from_numpy(yb))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        eager_losses.append(float(loss.detach()))
    # Assert: same losses, same updated tensors, frozen tensors untouched on both sides
    np.testing.assert_allclose(et_losses, eager_losses, atol=TOL, rtol=0)
    trained = trainer.read()
    params = dict(model.named_parameters())
    assert set(trained) == set(start) == set(bundle.personalisation_names)
    for name, value in trained.items():
        np.testing.assert_allclose(value, params[name].detach().numpy(), atol=TOL, rtol=0, err_msg=name)
        assert np.abs(value - start[name]).max() > 0, f"{name} did not train"
    for name, before in frozen_before.items():
        assert torch.equal(params[name], before), name
    # the program's frozen backbone is unchanged too: its loss on unseen rows equals the eager model's
    x_new, y_new = helpers.user_rows(1)
    with torch.no_grad():
        eager_new = float(F.binary_cross_entropy_with_logits(model(torch.from_numpy(x_new)),
                                                             torch.from_numpy(y_new)))
    assert abs(trainer.loss(x_new, y_new, helpers.vectors(x_new)) - eager_new) <= TOL


def test_trained_adapters_round_trip_through_inference(bundle, helpers, rng):
    # Prepare: train on device
    trainer = bundle.trainer(lr=0.2)
    trainer.write(helpers.personalisation(rng))
    x, y = helpers.user_rows(0)
    for _ in range(5):
        trainer.step(x, y, helpers.vectors(x))
    trained = trainer.read()
    # Execute: score with the trained tensors on both inference programs
    pte = bundle.scorer("pte").score(x, trained, helpers.vectors(x))
    onnx = bundle.scorer("onnx").score(x, trained, helpers.vectors(x))
    # Assert
    expected = _eager_logits(helpers.eager(trained), x)
    np.testing.assert_allclose(pte, expected, atol=TOL, rtol=0)
    np.testing.assert_allclose(onnx, expected, atol=TOL, rtol=0)


def test_a_step_with_a_non_finite_loss_is_not_applied(bundle, helpers, rng):
    # Prepare: adapters so large that the forward pass overflows float32 (finite inputs, inf/NaN loss)
    trainer = bundle.trainer(lr=0.2)
    huge = {n: np.full_like(v, 1e30) for n, v in helpers.personalisation(rng).items()}
    trainer.write(huge)
    x, y = helpers.user_rows(0)
    # Execute
    loss = trainer.step(x, y, helpers.vectors(x))
    # Assert: nothing moved, the step is counted; a sane start trains again
    assert not np.isfinite(loss) and trainer.skipped_steps == 1
    assert all(np.array_equal(v, huge[n]) for n, v in trainer.read().items())
    sane = helpers.personalisation(rng)
    trainer.write(sane)
    assert np.isfinite(trainer.step(x, y, helpers.vectors(x))) and trainer.skipped_steps == 1
    assert any(not np.array_equal(v, sane[n]) for n, v in trainer.read().items())


def test_trainer_write_is_all_or_nothing(bundle, helpers, rng):
    trainer = bundle.trainer()
    before = trainer.read()
    name = bundle.personalisation_names[0]
    with pytest.raises(Exception, match="shape"):
        trainer.write({name: np.zeros((1, 1), np.float32), bundle.personalisation_names[1]: before[
            bundle.personalisation_names[1]] + 1})
    with pytest.raises(Exception, match="not trainable"):
        trainer.write({"backbone.embedding.weight": np.zeros((1, 1), np.float32)})
    after = trainer.read()
    assert all(np.array_equal(before[n], after[n]) for n in before)
    # a partial write changes exactly the named tensor
    trainer.write({name: before[name] + 1})
    np.testing.assert_array_equal(trainer.read()[name], before[name] + 1)


def test_golden_vectors_replay(bundle):
    report = check_golden(bundle)
    assert report.ok, report.failures()
    names = [c.name for c in report.checks]
    assert any(n.startswith("pte logits") for n in names) and any(n.startswith("onnx logits") for n in names)
    assert any(n.startswith("gradient ") for n in names) and "loss after the step" in names


def test_golden_personalisation_is_nontrivial(bundle):
    golden = bundle.golden()
    lora_b = [a for n, a in golden.personalisation.items() if n.endswith("lora_B")]
    assert lora_b and all(np.abs(a).max() > 0 for a in lora_b)
    assert all(np.abs(g).max() > 0 for g in golden.training.gradients.values())


def test_bound_scorer_matches_and_copies(bundle, helpers, rng):
    x, _ = helpers.user_rows(0)
    tensors = helpers.personalisation(rng)
    for backend in ("pte", "onnx"):
        scorer = bundle.scorer(backend)
        rank = scorer.bind(tensors)
        expected = scorer.score(x, tensors, helpers.vectors(x))
        name = bundle.personalisation_names[-1]
        saved = tensors[name].copy()
        tensors[name] += 1.0  # changing the caller's array after binding must not leak in
        np.testing.assert_array_equal(rank.score(x, helpers.vectors(x)), expected)
        tensors[name] = saved
