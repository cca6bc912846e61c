import numpy as np
import pytest
from pydantic import ValidationError

from fedpa.aggregation import ClientUpdate, CoordinateMedian, TrimmedMean, aggregate_bank
from fedpa.errors import PayloadError
from fedpa.payload import decode_tensors, encode_tensors
from fedpa.state import SharedStateSpec

SPEC = SharedStateSpec.build(
    gate=[("layers.0.gate.w1", (2, 3))],
    group=[("layers.0.groups.g.lora_A", "g", (1, 3))],
    cardinalities={"g": 3},
)


def arrays(groups: dict[str, int], value: float = 1.0) -> dict[str, np.ndarray]:
    return {t.name: np.full(t.shape, value, np.float32) for t in SPEC.for_groups(groups)}


def test_spec_lists_group_tensors_per_value():
    assert [t.name for t in SPEC.tensors] == [
        "layers.0.gate.w1", "layers.0.groups.g.lora_A@0", "layers.0.groups.g.lora_A@1", "layers.0.groups.g.lora_A@2"]
    assert SPEC.attributes == {"g": 3}
    assert SPEC.to_params(arrays({"g": 2})).keys() == {"layers.0.gate.w1", "layers.0.groups.g.lora_A"}
    params = SPEC.to_params(arrays({"g": 2}))
    assert SPEC.from_params(params, groups={"g": 2}).keys() == arrays({"g": 2}).keys()


def test_payload_round_trip_and_corruption():
    data = encode_tensors(arrays({"g": 1}), metadata={"k": "v"})
    back = decode_tensors(data)
    assert all(np.array_equal(back[k], v) for k, v in arrays({"g": 1}).items())
    with pytest.raises(PayloadError, match="not valid safetensors"):
        decode_tensors(data[: len(data) // 2])
    with pytest.raises(PayloadError, match="exceeds the limit"):
        decode_tensors(data, max_bytes=10)


@pytest.mark.parametrize("mutate, match", [
    (lambda a: a.pop("layers.0.gate.w1"), "missing"),
    (lambda a: a.update({"layers.0.groups.g.lora_A@0": np.zeros((1, 3), np.float32)}), "unexpected"),
    (lambda a: a.update({"layers.0.gate.w1": np.zeros((3, 2), np.float32)}), "shape"),
    (lambda a: a.update({"layers.0.gate.w1": np.zeros((2, 3), np.float64)}), "dtype"),
    (lambda a: a.update({"layers.0.gate.w1": np.full((2, 3), np.nan, np.float32)}), "NaN"),
])
def test_validate_refuses_each_bad_input(mutate, match):
    a = arrays({"g": 1})
    mutate(a)
    with pytest.raises(PayloadError, match=match):
        SPEC.validate(a, groups={"g": 1})


def test_validate_refuses_unknown_group_values():
    with pytest.raises(PayloadError, match="out of range"):
        SPEC.validate(arrays({"g": 1}), groups={"g": 7})
    with pytest.raises(PayloadError, match="exactly the attributes"):
        SPEC.validate(arrays({"g": 1}), groups={"h": 1})


def test_group_tensor_without_attribute_or_value_is_refused_at_parse():
    # before: accepted, then a TypeError on first use (None + 1); a manifest now fails with the tensor named
    raw = {"name": "a@0", "param": "a", "shape": [1], "role": "group", "attribute": "g"}
    with pytest.raises(ValidationError, match="group tensor 'a@0' needs its attribute and value"):
        SharedStateSpec.model_validate({"tensors": [raw]})
    with pytest.raises(ValidationError, match="needs its attribute and value"):
        SharedStateSpec.model_validate({"tensors": [{**raw, "attribute": None, "value": 0}]})
    spec = SharedStateSpec.model_validate({"tensors": [{**raw, "value": 0}]})
    assert spec.attributes == {"g": 1} and spec.tensors[0].group == ("g", 0)


def test_aggregation_is_example_weighted_and_per_group():
    bank = {t.name: np.zeros(t.shape, np.float32) for t in SPEC.tensors}
    updates = [ClientUpdate(arrays({"g": 1}, 1.0), weight=1), ClientUpdate(arrays({"g": 1}, 4.0), weight=3),
               ClientUpdate(arrays({"g": 2}, 10.0), weight=1)]
    new, report = aggregate_bank(bank, updates, SPEC, server_lr=0.5)
    assert np.allclose(new["layers.0.gate.w1"], 0.5 * (1 * 1 + 3 * 4 + 10) / 5)
    assert np.allclose(new["layers.0.groups.g.lora_A@1"], 0.5 * (1 + 12) / 4)
    assert np.allclose(new["layers.0.groups.g.lora_A@2"], 5.0)
    assert np.array_equal(new["layers.0.groups.g.lora_A@0"], bank["layers.0.groups.g.lora_A@0"])
    assert report.reporters == {"gate": 3, "g=1": 2, "g=2": 1}


def test_min_reporters_protects_small_groups_and_caps_apply():
    bank = {t.name: np.zeros(t.shape, np.float32) for t in SPEC.tensors}
    updates = [ClientUpdate(arrays({"g": 1}, 1.0), weight=100), ClientUpdate(arrays({"g": 1}, 3.0), weight=1),
               ClientUpdate(arrays({"g": 2}, 10.0), weight=1)]
    new, report = aggregate_bank(bank, updates, SPEC, min_reporters=2, weight_cap=1)
    assert np.allclose(new["layers.0.groups.g.lora_A@1"], 2.0)  # capped: equal weights
    assert np.array_equal(new["layers.0.groups.g.lora_A@2"], bank["layers.0.groups.g.lora_A@2"])
    assert report.skipped_groups == {"g=2": 1}


def test_robust_rules():
    stacked = np.array([[0.0], [1.0], [2.0], [100.0]])
    w = np.ones(4)
    assert CoordinateMedian().reduce(stacked, w)[0] == 1.5
    assert TrimmedMean(0.25).reduce(stacked, w)[0] == 1.5
