"""The vectorised GAUC equals fedpa.metrics on data with ties and one-class users."""

import numpy as np

from fedpa.metrics import evaluate
from fedpa.sim.scoring import evaluate_fast, gauc_fast


def test_evaluate_fast_equals_fedpa_metrics():
    rng = np.random.default_rng(0)
    user = rng.integers(0, 200, 5000)
    y = (rng.random(5000) < 0.3).astype(np.float32)
    y[user == 7] = 1.0  # a user with one class only is skipped by both
    logit = np.round(rng.normal(size=5000), 1)  # many ties
    fast, slow = evaluate_fast(user, y, logit), evaluate(user, y, logit)
    assert fast.keys() == slow.keys()
    for k in fast:
        assert np.isclose(fast[k], slow[k], rtol=1e-12, atol=1e-12), k


def test_gauc_without_two_class_users_is_nan():
    assert np.isnan(gauc_fast(np.array([0, 0, 1]), np.array([1, 1, 0]), np.array([0.1, 0.2, 0.3])))
