import numpy as np
import pytest
from sklearn.metrics import log_loss, precision_score, roc_auc_score

from fedpa.metrics import auc, evaluate, gauc, logloss, weighted_precision


@pytest.fixture
def scored():
    rng = np.random.default_rng(7)
    n = 2000
    user = rng.integers(0, 40, n)
    y = (rng.random(n) < 0.3 + 0.01 * user).astype(np.float32)
    prob = np.round(np.clip(0.4 * y + 0.6 * rng.random(n), 0, 1), 2)  # rounding creates ties
    return user, y, prob


def test_auc_matches_sklearn_with_ties(scored):
    _, y, prob = scored
    assert auc(y, prob) == pytest.approx(roc_auc_score(y, prob), abs=1e-12)


def test_gauc_is_impression_weighted_mean_of_per_user_auc(scored):
    user, y, prob = scored
    total = weight = 0.0
    for u in np.unique(user):
        m = user == u
        if 0 < y[m].sum() < m.sum():
            total += roc_auc_score(y[m], prob[m]) * m.sum()
            weight += m.sum()
    assert gauc(user, y, prob) == pytest.approx(total / weight, abs=1e-12)


def test_gauc_ignores_per_user_bias_that_pooled_auc_rewards(scored):
    user, y, _ = scored
    ctr = np.array([y[user == u].mean() for u in user])  # "user's own click rate" score
    assert auc(y, ctr) > 0.55
    assert gauc(user, y, ctr) == pytest.approx(0.5)


def test_logloss_and_weighted_precision_match_sklearn(scored):
    _, y, prob = scored
    assert logloss(y, prob) == pytest.approx(log_loss(y, np.clip(prob, 1e-7, 1 - 1e-7)), abs=1e-12)
    assert weighted_precision(y, prob) == pytest.approx(
        precision_score(y, prob >= 0.5, average="weighted"), abs=1e-12)


def test_single_class_auc_is_nan_and_evaluate_takes_logits(scored):
    assert np.isnan(auc(np.ones(5), np.arange(5)))
    user, y, prob = scored
    logits = np.log(np.clip(prob, 1e-6, 1 - 1e-6) / np.clip(1 - prob, 1e-6, 1))
    result = evaluate(user, y, logits)
    assert result["auc"] == pytest.approx(roc_auc_score(y, prob), abs=1e-3)
    assert result["n"] == len(y)


def test_gauc_skips_one_class_users_and_is_nan_without_any_two_class_user():
    user = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    y = np.array([1, 0, 1, 1, 1, 0, 1, 0])  # user 1 has only positives
    score = np.array([0.9, 0.1, 0.1, 0.5, 0.2, 0.3, 0.3, 0.8])  # ties inside users 0 and 2
    expected = (roc_auc_score(y[:3], score[:3]) * 3 + roc_auc_score(y[5:], score[5:]) * 3) / 6
    assert gauc(user, y, score) == pytest.approx(expected, abs=1e-12)
    assert np.isnan(gauc(np.array([0, 0, 1]), np.array([1, 1, 0]), np.array([0.1, 0.2, 0.3])))
    assert np.isnan(gauc(np.array([]), np.array([]), np.array([])))


def test_gauc_delta_ci_is_paired_and_covers_the_point() -> None:
    from fedpa.metrics import gauc_delta_ci

    rng = np.random.default_rng(0)
    user = np.repeat(np.arange(200), 20)
    y = rng.integers(0, 2, user.size)
    good = y + rng.normal(0, 1.0, user.size)  # informative
    noise = rng.normal(0, 1.0, user.size)
    ci = gauc_delta_ci([(user, y, good, noise)], n_boot=500)
    assert ci.delta == pytest.approx(gauc(user, y, good) - gauc(user, y, noise))
    assert 0 < ci.low < ci.delta < ci.high
    same = gauc_delta_ci([(user, y, good, good)], n_boot=200)
    assert (same.delta, same.low, same.high) == (0.0, 0.0, 0.0)
    two = gauc_delta_ci([(user, y, good, noise), (user, y, noise, noise)], n_boot=500)
    assert two.delta == pytest.approx(ci.delta / 2)
    with pytest.raises(ValueError, match="same rows"):
        gauc_delta_ci([(user, y, good, noise[:-1])])
