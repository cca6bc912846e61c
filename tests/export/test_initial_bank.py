"""The bundle's initial bank: a law (seed, drawn bounds) plus the stored tensors, refused when damaged."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from export.verify import verify_bundle
from fedpa.counter_rng import counter_uniform
from fedpa.errors import BundleError
from fedpa.manifest import sha256_file
from fedpa.payload import decode_tensors, encode_tensors
from fedpa.runtime import Bundle
from fedpa.wire import MANIFEST_NAME, SHARED_STATE_FILE


def _rehash(bundle: Path, name: str) -> None:
    """Make the manifest agree with a changed file, so only the content checks can catch it."""
    manifest = json.loads((bundle / MANIFEST_NAME).read_text())
    manifest["files"][name] = {"sha256": sha256_file(bundle / name), "size": (bundle / name).stat().st_size}
    (bundle / MANIFEST_NAME).write_text(json.dumps(manifest))


def _edit_initial(bundle: Path, **fields: object) -> None:
    manifest = json.loads((bundle / MANIFEST_NAME).read_text())
    manifest["shared_state"]["initial"].update(fields)
    (bundle / MANIFEST_NAME).write_text(json.dumps(manifest))


def _write_stored(bundle: Path, stored: dict[str, np.ndarray]) -> None:
    (bundle / SHARED_STATE_FILE).write_bytes(encode_tensors(stored))
    _rehash(bundle, SHARED_STATE_FILE)


def test_bundle_stores_only_what_is_not_drawn(bundle):
    # Prepare
    spec = bundle.manifest.shared_state
    law = spec.initial
    stored = decode_tensors((bundle.path / SHARED_STATE_FILE).read_bytes())
    # Execute
    bank = bundle.shared_state()
    # Assert: the file holds each non-drawn parameter once; the lora_A of every group and the gates' w1 are drawn
    assert law is not None and set(stored) == set(spec.stored_names)
    assert {t.param for t in spec.tensors if t.param.endswith((".lora_A", ".w1"))} == set(law.drawn)
    for index, t in enumerate(spec.tensors):
        if t.param in law.drawn:
            want = counter_uniform(law.seed, index, t.numel) * np.float32(law.drawn[t.param])
            assert bank[t.name].tobytes() == want.astype(np.float32).tobytes()
        else:
            assert bank[t.name].tobytes() == stored[t.param].tobytes()


def test_drawn_tensors_keep_the_init_variance_and_differ_per_group_value(bundle):
    spec, bank = bundle.manifest.shared_state, bundle.shared_state()
    group_a = [(t, bank[t.name]) for t in spec.tensors if t.role == "group" and t.param.endswith(".lora_A")]
    values = np.concatenate([a.reshape(-1) * np.sqrt(t.shape[-1]) for t, a in group_a])
    assert abs(values.var() - 1.0) < 0.1 and abs(values.mean()) < 0.05  # LoRA's N(0, 1/in) variance
    first = {t.param: a for t, a in group_a if t.value == 0}
    assert all(not np.array_equal(a, first[t.param]) for t, a in group_a if t.value != 0)


def test_missing_stored_tensor_is_refused(bundle_copy):
    stored = decode_tensors((bundle_copy / SHARED_STATE_FILE).read_bytes())
    gone = next(iter(stored))
    del stored[gone]
    _write_stored(bundle_copy, stored)
    with pytest.raises(BundleError, match=rf"{SHARED_STATE_FILE}: stored initial tensors do not match .*"
                                          rf"missing \['{gone}'\]"):
        verify_bundle(bundle_copy)


def test_damaged_stored_tensor_is_refused(bundle_copy):
    stored = decode_tensors((bundle_copy / SHARED_STATE_FILE).read_bytes())
    name = next(n for n, a in stored.items() if a.size > 1)
    bad = dict(stored, **{name: stored[name].reshape(-1)[:-1]})
    _write_stored(bundle_copy, bad)
    with pytest.raises(BundleError, match=rf"stored initial tensor '{name}' has shape"):
        Bundle.open(bundle_copy).shared_state()
    nan = dict(stored, **{name: np.full_like(stored[name], np.nan)})
    _write_stored(bundle_copy, nan)
    with pytest.raises(BundleError, match=rf"stored initial tensor '{name}' contains NaN"):
        Bundle.open(bundle_copy).shared_state()


def test_whole_bank_in_the_file_is_refused(bundle_copy):
    # a format-2 style file: every wire name, not the stored part
    _write_stored(bundle_copy, Bundle.open(bundle_copy).shared_state())
    with pytest.raises(BundleError, match=r"stored initial tensors do not match .*unexpected \["):
        Bundle.open(bundle_copy).shared_state()


@pytest.mark.parametrize(("fields", "message"), [
    ({"law": "torch-normal"}, r"shared_state.initial.law"),
    ({"seed": -1}, r"shared_state.initial.seed"),
    ({"seed": 2 ** 32}, r"shared_state.initial.seed"),
    ({"drawn": {"layers.0.nowhere.lora_A": 0.5}}, r"initial.drawn names parameters the bank does not hold"),
    ({"drawn": {}}, r"stored initial tensors do not match .*missing \["),
])
def test_bad_law_field_is_refused(bundle_copy, fields, message):
    _edit_initial(bundle_copy, **fields)
    with pytest.raises(BundleError, match=message):
        Bundle.open(bundle_copy).shared_state()


def test_a_bound_that_is_no_float32_is_refused(bundle_copy):
    manifest = json.loads((bundle_copy / MANIFEST_NAME).read_text())
    drawn = manifest["shared_state"]["initial"]["drawn"]
    param = next(iter(drawn))
    _edit_initial(bundle_copy, drawn={**drawn, param: 0.1})  # 0.1 is not a float32 value
    with pytest.raises(BundleError, match=rf"drawn bound of '{param}' must be a positive float32 value, got 0.1"):
        Bundle.open(bundle_copy)


def test_another_seed_fails_golden_parity(bundle_copy):
    # a manifest whose seed was changed is a valid law, but not the bank the golden vectors were computed from
    manifest = json.loads((bundle_copy / MANIFEST_NAME).read_text())
    _edit_initial(bundle_copy, seed=(manifest["shared_state"]["initial"]["seed"] + 1) % 2 ** 32)
    result = verify_bundle(bundle_copy, backends=("pte",))
    assert not result.ok
