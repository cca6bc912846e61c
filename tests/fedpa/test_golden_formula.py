"""golden.json's perturbation formula: exact, deterministic, and the only way version 2 stores the start."""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

import numpy as np
import pytest

from fedpa.errors import BundleError
from fedpa.runtime.golden import GOLDEN_FORMAT_VERSION, Golden, GoldenCase, GoldenTraining, perturb, perturbation


def _mix32(v: int) -> int:
    """The documented hash in plain Python integers (an implementation independent of numpy's)."""
    v ^= v >> 16
    v = (v * 0x7FEB352D) & 0xFFFFFFFF
    v ^= v >> 15
    v = (v * 0x846CA68B) & 0xFFFFFFFF
    return v ^ (v >> 16)


def _reference(seed: int, index: int, n: int) -> list[float]:
    base = _mix32((seed + 0x9E3779B9 * (index + 1)) & 0xFFFFFFFF)
    return [((_mix32((base + i) & 0xFFFFFFFF) >> 8) - (1 << 23)) / float(1 << 23) for i in range(n)]


@pytest.mark.parametrize(("seed", "index", "n"), [(0, 0, 50), (1, 3, 17), (0xFFFFFFFF, 40, 9), (12345, 7, 1)])
def test_perturbation_is_the_documented_formula(seed, index, n):
    got = perturbation(seed, index, n)
    assert got.dtype == np.float32
    assert got.tolist() == _reference(seed, index, n)  # exact: every value is k·2⁻²³


def test_perturbation_spans_minus_one_to_one_and_differs_per_tensor_and_seed():
    a = perturbation(0, 0, 10_000)
    assert a.min() >= -1.0 and a.max() < 1.0
    assert abs(float(a.mean())) < 0.05 and 0.5 < float(a.std()) * np.sqrt(3) < 1.5  # ~uniform
    assert not np.array_equal(a[:100], perturbation(0, 1, 100))
    assert not np.array_equal(a[:100], perturbation(1, 0, 100))


def test_perturb_is_float32_arithmetic_in_input_order():
    start = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.full(4, 0.25, np.float32)}
    out = perturb(start, seed=9, scale=0.1)
    s = np.float32(0.1)
    for index, (name, a) in enumerate(start.items()):
        noise = perturbation(9, index, a.size)
        want = np.array([np.float32(x + np.float32(e * s)) for x, e in zip(a.reshape(-1), noise, strict=True)],
                        np.float32).reshape(a.shape)
        assert out[name].dtype == np.float32 and out[name].shape == a.shape
        assert struct.pack(f"<{a.size}f", *out[name].reshape(-1)) == struct.pack(f"<{a.size}f", *want.reshape(-1))


def test_out_of_range_seed_is_refused():
    with pytest.raises(BundleError, match="not a 32-bit unsigned integer"):
        perturbation(-1, 0, 3)


def _golden() -> Golden:
    start = {"w": np.ones((2, 2), np.float32)}
    return Golden(personalisation=perturb(start, seed=5, scale=0.1),
                  cases=(GoldenCase(x=np.zeros((1, 2), np.int64), logits=np.zeros(1, np.float32)),),
                  training=GoldenTraining(lr=0.1, x=np.zeros((1, 2), np.int64), y=np.zeros(1, np.float32), loss=0.5,
                                          gradients={"w": np.full((2, 2), 0.5, np.float32)}, loss_after=0.4),
                  groups={"age": 1}, seed=5, scale=0.1)


def test_golden_stores_the_formula_not_the_tensors_and_rebuilds_them():
    golden = _golden()
    data = json.loads(json.dumps(golden.to_dict()))
    assert data["format_version"] == GOLDEN_FORMAT_VERSION == 2
    assert "personalisation" not in data and data["perturbation"] == {"seed": 5, "scale": float(np.float32(0.1))}
    seen = []
    back = Golden.from_dict(data, lambda groups: seen.append(dict(groups)) or {"w": np.ones((2, 2), np.float32)})
    assert seen == [{"age": 1}]
    np.testing.assert_array_equal(back.personalisation["w"], golden.personalisation["w"])
    np.testing.assert_array_equal(back.training.gradients["w"], golden.training.gradients["w"])


def test_version_1_golden_is_refused_with_a_rebuild_hint():
    data = _golden().to_dict() | {"format_version": 1}
    with pytest.raises(BundleError, match=r"format_version 1 is not the supported 2 .*rebuild the bundle"):
        Golden.from_dict(data, lambda groups: {})


def test_the_android_engine_reads_this_golden_format():
    """Golden.java's FORMAT_VERSION is pinned to Python's (its perturbation is pinned bit for bit by
    android-demo/test.sh's GoldenPerturbationTest)."""
    java = (Path(__file__).parents[2] / "android-demo/core/src/main/java/org/fedpa/core/Golden.java").read_text()
    assert re.findall(r"public static final int FORMAT_VERSION = (\d+);", java) == [str(GOLDEN_FORMAT_VERSION)]
