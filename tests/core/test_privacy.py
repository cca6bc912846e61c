import numpy as np
import pytest

from fedpa.errors import ConfigError, PrivacyBudgetError
from fedpa.privacy import PrivacyConfig, clip_and_noise, epsilon_after, noise_multiplier_for


def update(scale: float = 10.0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"a": rng.normal(size=(40, 30)).astype(np.float32) * scale, "b": rng.normal(size=50).astype(np.float32)}


def test_clipping_bounds_the_whole_update_norm():
    out, report = clip_and_noise(update(), clip_norm=1.5, noise_multiplier=1.0, rng=np.random.default_rng(1),
                                 mechanism="none")
    norm = np.sqrt(sum(np.square(v.astype(np.float64)).sum() for v in out.values()))
    assert report.clipped and report.norm_before > 100
    assert norm == pytest.approx(1.5, rel=1e-5)


def test_small_updates_are_not_scaled():
    small = {"a": np.full(4, 0.1, np.float32)}
    out, report = clip_and_noise(small, clip_norm=1.0, noise_multiplier=1.0, rng=np.random.default_rng(0),
                                 mechanism="none")
    assert not report.clipped and np.array_equal(out["a"], small["a"])


def test_gaussian_noise_std_is_sigma_times_c():
    zero = {"a": np.zeros(200_000, np.float32)}
    out, _ = clip_and_noise(zero, clip_norm=0.5, noise_multiplier=1.2, rng=np.random.default_rng(3))
    # std of 200k draws has relative standard error ~ 1/sqrt(2n) ≈ 0.16%
    assert out["a"].std() == pytest.approx(0.6, rel=0.01)
    assert abs(out["a"].mean()) < 0.01


def test_laplace_noise_scale():
    zero = {"a": np.zeros(200_000, np.float32)}
    out, _ = clip_and_noise(zero, clip_norm=1.0, noise_multiplier=2.0, rng=np.random.default_rng(3),
                            mechanism="laplace")
    assert np.abs(out["a"]).mean() == pytest.approx(2.0, rel=0.01)  # E|Laplace(b)| = b


def test_noise_is_seeded():
    a, _ = clip_and_noise(update(), clip_norm=1, noise_multiplier=1, rng=np.random.default_rng(5))
    b, _ = clip_and_noise(update(), clip_norm=1, noise_multiplier=1, rng=np.random.default_rng(5))
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_epsilon_grows_with_rounds_and_shrinks_with_noise():
    cfg = PrivacyConfig(noise_multiplier=2.0)
    eps = [epsilon_after(r, cfg) for r in (0, 1, 5, 30)]
    assert eps[0] == 0 and eps == sorted(eps) and eps[-1] > eps[1] > 0
    assert epsilon_after(30, PrivacyConfig(noise_multiplier=4.0)) < eps[-1]
    sigma = noise_multiplier_for(8.0, 30)
    assert epsilon_after(30, PrivacyConfig(noise_multiplier=sigma)) == pytest.approx(8.0, rel=1e-3)


def test_budget_refusal_names_the_numbers():
    cfg = PrivacyConfig(noise_multiplier=1.0, epsilon_budget=5.0)
    assert cfg.check_budget(0) < 5.0
    with pytest.raises(PrivacyBudgetError, match=r"budget ε=5\.0"):
        cfg.check_budget(100)


@pytest.mark.parametrize("kwargs, match", [
    ({"delta": 0.0}, "delta"), ({"delta": 1.0}, "delta"), ({"clip_norm": 0.0}, "clip_norm"),
    ({"noise_multiplier": 0.0}, "noise_multiplier"), ({"epsilon_budget": 0.0}, "epsilon_budget"),
    ({"mechanism": "exponential"}, "mechanism"),
])
def test_invalid_privacy_settings_are_refused(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        PrivacyConfig(**kwargs)
    with pytest.raises(ConfigError):
        noise_multiplier_for(0.0, 10)
