"""The wire contract (``fedpa.wire``): update encoding, group queries, error codes, and its copies.

The server and the Python clients import the contract; the Android client keeps its own
constants, so a test reads the Java source and compares them with the Python ones.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import numpy as np
import pytest

from fedpa import wire
from fedpa.errors import PayloadError
from fedpa.payload import encode_tensors
from fedpa.state import InitialBank, SharedStateSpec
from fedpa.wire import (
    ALL_VALUES,
    UPDATE_META_KEY,
    ErrorCode,
    UpdateMeta,
    UpdatePrivacy,
    decode_groups,
    decode_update,
    encode_groups,
    encode_update,
)

ROOT = Path(__file__).resolve().parents[2]
JAVA = ROOT / "android-demo" / "core" / "src" / "main" / "java" / "org" / "fedpa" / "core"
SPEC = SharedStateSpec.build(gate=[("gate.w", (2, 3))], group=[("lora_A", "age", (4,)), ("lora_B", "region", (2,))],
                             cardinalities={"age": 3, "region": 2})


def _meta(**fields: object) -> UpdateMeta:
    base = dict(model_id="m1", model_version=1, base_version=0, groups={"age": 2, "region": 0}, example_count=7,
                nonce="n" * 16, privacy=UpdatePrivacy(mechanism="gaussian", clip_norm=1.0, noise_multiplier=1.1,
                                                      epsilon_spent=0.5, delta=1e-5))
    return UpdateMeta.model_validate({**base, **fields})


def test_an_update_round_trips_exactly():
    rng = np.random.default_rng(0)
    deltas = {t.name: rng.normal(size=t.shape).astype(np.float32) for t in SPEC.for_groups({"age": 2, "region": 0})}
    meta = _meta()

    got_meta, got = decode_update(encode_update(deltas, meta))

    assert got_meta == meta
    assert sorted(got) == sorted(deltas)
    for name, array in deltas.items():
        np.testing.assert_array_equal(got[name], array)


@pytest.mark.parametrize(("body", "needle"), [
    (encode_tensors({"x": np.zeros(2, np.float32)}), UPDATE_META_KEY),  # no metadata entry at all
    (encode_tensors({"x": np.zeros(2, np.float32)}, metadata={UPDATE_META_KEY: "{}"}), "model_id"),
    (encode_tensors({"x": np.zeros(2, np.float32)}, metadata={UPDATE_META_KEY: "x" * 20000}), "exceeds the limit"),
    (b"\x01", "no header"),
])
def test_a_bad_update_body_is_refused_with_what_is_wrong(body, needle):
    with pytest.raises(PayloadError, match=needle):
        decode_update(body)


def test_groups_query_round_trips_and_the_spec_judges_it():
    selection = {"age": 1, "region": ALL_VALUES}

    raw = encode_groups(selection)

    assert raw == "age:1,region:*"
    assert decode_groups(raw) == selection
    assert SPEC.parse_selection(raw) == selection
    chosen = [t.name for t in SPEC.select(selection)]
    assert chosen == ["gate.w", "lora_A@1", "lora_B@0", "lora_B@1"]
    assert [t.name for t in SPEC.select(None)] == [t.name for t in SPEC.tensors]


@pytest.mark.parametrize(("raw", "needle"), [
    ("age", "'attribute:value' pairs"),
    ("age:1,age:2,region:0", "each attribute once"),
    ("age:x,region:0", "not an integer code"),
    ("age:3,region:0", "out of range 0..2"),
    ("age:1,colour:0,region:0", r"exactly the attributes \['age', 'region'\], got \['age', 'colour', 'region'\]"),
    ("age:1", "exactly the attributes"),
])
def test_a_bad_groups_query_is_refused(raw, needle):
    with pytest.raises(PayloadError, match=needle):
        SPEC.parse_selection(raw)


def test_an_upload_may_not_use_the_all_values_wildcard():
    with pytest.raises(PayloadError, match="out of range"):
        SPEC.check_groups({"age": ALL_VALUES, "region": 0})


def test_the_bank_must_be_exactly_the_spec():
    spec = SharedStateSpec(tensors=SPEC.tensors, initial=InitialBank(seed=0, drawn={"lora_A": 0.5}))
    stored = {"gate.w": np.zeros((2, 3), np.float32), "lora_B": np.zeros(2, np.float32)}
    bank = spec.initial_bank(stored)
    assert list(bank) == [t.name for t in SPEC.tensors]
    assert all(bank[t.name].shape == t.shape and bank[t.name].dtype == np.float32 for t in SPEC.tensors)
    with pytest.raises(PayloadError, match=r"missing \['gate.w'\]"):
        spec.initial_bank({k: v for k, v in stored.items() if k != "gate.w"})
    with pytest.raises(PayloadError, match="dtype float64"):
        spec.initial_bank({**stored, "gate.w": np.zeros((2, 3))})
    with pytest.raises(PayloadError, match="NaN or infinite"):
        spec.initial_bank({**stored, "lora_B": np.full(2, np.inf, np.float32)})


def test_error_codes_are_their_wire_strings():
    assert ErrorCode.REPLAYED_NONCE == "replayed_nonce"
    assert f"{ErrorCode.STALE_BASE}" == "stale_base"
    assert len({c.value for c in ErrorCode}) == len(ErrorCode)
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", c.value) for c in ErrorCode)


def test_the_server_emits_no_free_text_error_code():
    """Every ``code=`` the aggregator passes, or class ``code`` it declares, is an ErrorCode member."""
    offenders = []
    for path in sorted((ROOT / "aggregator").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            values = []
            if isinstance(node, ast.keyword) and node.arg == "code":
                values.append(node.value)
            if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "code" for t in node.targets):
                values.append(node.value)
            offenders += [f"{path.relative_to(ROOT)}:{v.lineno}" for v in values
                          if isinstance(v, ast.Constant) and isinstance(v.value, str)]
    assert offenders == []


def _java_constants(*files: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for name in files:
        text = (JAVA / name).read_text()
        out.update(re.findall(r'public static final String (\w+) = "([^"]*)";', text))
    return out


def test_the_android_client_spells_the_contract_as_python_does():
    java = _java_constants("Wire.java", "Bundle.java")
    # Java name → Python value; every Java constant of Wire.java must be checked here.
    expected = {
        "UPDATE_META_KEY": wire.UPDATE_META_KEY,
        "STATE_VERSION_HEADER": wire.STATE_VERSION_HEADER,
        "GROUPS_PARAM": wire.GROUPS_PARAM,
        "ALL_VALUES": wire.ALL_VALUES,
        "REPLAYED_NONCE": ErrorCode.REPLAYED_NONCE,
        "STALE_BASE": ErrorCode.STALE_BASE,
        "MODEL_VERSION_MISMATCH": ErrorCode.MODEL_VERSION_MISMATCH,
        "HTTP_ERROR": ErrorCode.HTTP_ERROR,
        "MANIFEST": wire.MANIFEST_NAME,
        "SHARED_STATE": wire.SHARED_STATE_FILE,
        "PRIVATE_INIT": wire.PRIVATE_INIT_FILE,
        "BACKBONE": wire.BACKBONE_FILE,
    }
    assert java == {name: str(value) for name, value in expected.items()}


def test_the_android_client_matches_error_codes_exactly():
    """No substring search of an error's text decides what the Java client does (as in edge/client.py)."""
    for path in JAVA.glob("*.java"):
        text = path.read_text()
        assert not re.search(r"\.contains\(\s*\"(replay|nonce|stale|version)\"", text), path.name
