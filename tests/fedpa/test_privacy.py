import json

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
    cfg = PrivacyConfig(noise_multiplier=3.0, epsilon_budget=5.0)
    assert cfg.check_budget(0) < 5.0
    with pytest.raises(PrivacyBudgetError, match=r"budget ε=5 \(δ=1e-05, replacement adjacency\)"):
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


# ----------------------------------------------------------------------------- standard accounting


@pytest.mark.parametrize("sigma", [0.5, 1.0, 3.0, 7.0])
@pytest.mark.parametrize("rounds", [1, 5, 30])
def test_replacement_epsilon_is_dp_accountings_gaussian_at_sensitivity_2c(sigma, rounds):
    import dp_accounting
    from dp_accounting.rdp.rdp_privacy_accountant import RdpAccountant

    accountant = RdpAccountant()  # replacement: ‖u − u′‖ ≤ 2C, noise σC → noise multiplier σ/2
    accountant.compose(dp_accounting.SelfComposedDpEvent(dp_accounting.GaussianDpEvent(sigma / 2), rounds))
    expected = accountant.get_epsilon(1e-5)
    assert epsilon_after(rounds, PrivacyConfig(noise_multiplier=sigma)) == pytest.approx(expected, rel=1e-9)
    assert epsilon_after(rounds, PrivacyConfig(noise_multiplier=sigma), adjacency="add_remove") < expected


def test_heterogeneous_uploads_compose_with_their_own_sigma():
    from fedpa.privacy import Upload, epsilon_of

    uploads = [Upload("gaussian", 0.5, 1.0)] * 4 + [Upload("gaussian", 5.0, 1.0)]
    # the case: 4 × σ=0.5 then 1 × σ=5 (add/remove figure 25.97; "today's σ for all" said 1.91)
    assert epsilon_of(uploads, adjacency="add_remove") == pytest.approx(25.97, abs=0.01)
    today = epsilon_after(5, PrivacyConfig(noise_multiplier=5.0), adjacency="add_remove")
    assert today == pytest.approx(1.91, abs=0.01)
    assert epsilon_of(uploads) == pytest.approx(68.75, abs=0.01)  # replacement: σ/2 each
    assert epsilon_of(uploads) > epsilon_of(uploads[:4]) > 0
    assert epsilon_of([*uploads, Upload("none", 0.0, 1.0)]) == float("inf")


def test_budget_check_uses_the_ledger_not_todays_sigma():
    from fedpa.privacy import Upload

    cfg = PrivacyConfig(noise_multiplier=5.0, epsilon_budget=20.0)
    assert cfg.check_budget(4) < 20.0  # four earlier uploads *at σ=5* would fit
    with pytest.raises(PrivacyBudgetError, match="upload #5"):
        cfg.check_budget([Upload("gaussian", 0.5, 1.0)] * 4)  # but they were sent at σ=0.5


def test_device_policy_floor_and_ceiling():
    from fedpa.errors import PrivacyPolicyError
    from fedpa.manifest import PrivacySettings
    from fedpa.privacy import DevicePolicy

    policy = DevicePolicy()  # ε ≤ 8 over the bundle's planned rounds, C ≤ 1
    floor = policy.floor(30)
    assert epsilon_after(30, PrivacyConfig(noise_multiplier=floor)) == pytest.approx(8.0, rel=1e-3)
    ok = policy.config_for(PrivacySettings(noise_multiplier=floor * 1.01, clip_norm=0.5, delta=0.1,
                                           epsilon_budget=1e9, rounds=30))
    assert (ok.delta, ok.epsilon_budget, ok.clip_norm) == (1e-5, 8.0, 0.5)  # δ and budget are the device's
    with pytest.raises(PrivacyPolicyError, match="below this device's floor"):
        policy.config_for(PrivacySettings(noise_multiplier=0.001, rounds=30))
    with pytest.raises(PrivacyPolicyError, match="below this device's floor"):  # fewer planned rounds, lower floor
        policy.config_for(PrivacySettings(noise_multiplier=policy.floor(1) * 0.9, rounds=1))
    with pytest.raises(PrivacyPolicyError, match="maximum C"):
        policy.config_for(PrivacySettings(noise_multiplier=floor * 2, clip_norm=1e30))
    with pytest.raises(PrivacyPolicyError, match="no LDP"):
        policy.config_for(PrivacySettings(mechanism="none", noise_multiplier=0.0))
    assert DevicePolicy(min_noise_multiplier=2.0).floor(30) == 2.0
    with pytest.raises(ConfigError):
        DevicePolicy(epsilon_budget=float("inf"))


def test_example_count_reports():
    from fedpa.privacy import report_example_count, report_example_counts

    assert [report_example_count(n, "coarse") for n in (1, 3, 64, 1000)] == [1, 2, 64, 64]
    assert [report_example_count(n, "bounded") for n in (3, 1000)] == [3, 64]
    assert report_example_count(1234) == 1  # the device's choice reveals nothing
    assert report_example_counts(np.array([0, 5, 100]), "coarse").tolist() == [0, 4, 64]
    with pytest.raises(ConfigError):
        report_example_count(0)


def test_secure_rng_draws_fresh_noise_each_time():
    from fedpa.privacy import secure_rng

    assert not np.array_equal(secure_rng().normal(size=8), secure_rng().normal(size=8))


def test_fedpa_privacy_epsilon_cli_prints_replacement_json():
    import json

    from typer.testing import CliRunner

    from harness.cli import app

    result = CliRunner().invoke(app, ["privacy", "epsilon", "--noise-multiplier", "3.4926634469157625",
                                      "--clip-norm", "1", "--rounds", "30", "--delta", "1e-5"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["adjacency"] == "replacement"
    assert out["epsilon"] == pytest.approx(18.85, abs=0.01)  # the old docs' "ε = 8"
    assert out["epsilon_add_remove"] == pytest.approx(8.0, abs=0.01)


@pytest.mark.parametrize("config", [
    PrivacyConfig(clip_norm=0.5, noise_multiplier=3.0, delta=1e-6, epsilon_budget=4.0),
    PrivacyConfig(mechanism="laplace", clip_norm=0.25, noise_multiplier=7.0),
    PrivacyConfig(mechanism="none", noise_multiplier=5.0),  # no noise is applied, so σ 0 is what is written
])
def test_privacy_config_travels_through_its_json_forms_unchanged(config):
    from fedpa.manifest import PrivacySettings
    from fedpa.privacy import DevicePolicy
    from fedpa.protocol import UpdatePrivacy

    # a bundle's request, as published and read back
    request = PrivacySettings.model_validate_json(PrivacySettings.requesting(config, rounds=12).model_dump_json())
    assert (request.mechanism, request.clip_norm, request.noise_multiplier, request.delta, request.epsilon_budget,
            request.rounds) == (config.mechanism, config.clip_norm, config.upload.noise_multiplier, config.delta,
                                config.epsilon_budget, 12)
    if config.mechanism != "none":  # a device whose floor it meets applies exactly the requested σ and C
        applied = DevicePolicy(min_noise_multiplier=config.noise_multiplier).config_for(request)
        assert (applied.mechanism, applied.noise_multiplier, applied.clip_norm) == (
            config.mechanism, config.noise_multiplier, config.clip_norm)
    # what an upload declares
    declared = UpdatePrivacy.applied(config, epsilon_spent=1.5)
    assert (declared.mechanism, declared.clip_norm, declared.noise_multiplier, declared.delta,
            declared.epsilon_spent) == (config.mechanism, config.clip_norm, config.upload.noise_multiplier,
                                        config.delta, 1.5)


def test_an_upload_without_ldp_declares_no_bound():
    from fedpa.manifest import PrivacySettings
    from fedpa.privacy import UNBOUNDED
    from fedpa.protocol import UpdatePrivacy

    declared = UpdatePrivacy.applied(None, epsilon_spent=float("inf"))
    assert (declared.mechanism, declared.noise_multiplier) == ("none", 0.0)
    assert declared.clip_norm == declared.epsilon_spent == UNBOUNDED  # finite JSON, never a claim of ε = 0
    assert PrivacySettings.requesting(None) == PrivacySettings(mechanism="none", noise_multiplier=0.0)


@pytest.mark.parametrize(("epsilon", "rounds"), [(8.0, 5), (1.0, 30), (0.5, 1), (3.25, 7)])
def test_a_budget_sized_sigma_fits_its_rounds_and_the_bundle_states_the_budget_asked(epsilon, rounds):
    """The σ found for (ε, rounds) spends at most ε over exactly those rounds (no tolerance factor is
    needed on the budget), and the bundle's request carries ε as asked, as JSON, without float leftovers."""
    from fedpa.manifest import PrivacySettings
    from fedpa.privacy import noise_multiplier_for

    config = PrivacyConfig(clip_norm=0.5, noise_multiplier=noise_multiplier_for(epsilon, rounds),
                           epsilon_budget=epsilon)
    assert config.check_budget(rounds - 1) <= epsilon  # the last planned upload is allowed…
    with pytest.raises(PrivacyBudgetError):
        config.check_budget(rounds)  # …and one more is not
    written = json.loads(PrivacySettings.requesting(config, rounds=rounds).model_dump_json())
    assert written["epsilon_budget"] == epsilon and repr(written["epsilon_budget"]) == repr(epsilon)
    assert written["rounds"] == rounds and written["noise_multiplier"] == config.noise_multiplier


def test_the_bundle_request_states_a_budget_without_float_leftovers():
    from fedpa.manifest import PrivacySettings

    leftover = PrivacyConfig(noise_multiplier=3.0, epsilon_budget=8.0 * (1 + 1e-9))  # 8.000000008
    assert PrivacySettings.requesting(leftover).epsilon_budget == 8.0
    assert PrivacySettings.requesting(PrivacyConfig(noise_multiplier=3.0, epsilon_budget=0.125)).epsilon_budget == 0.125
