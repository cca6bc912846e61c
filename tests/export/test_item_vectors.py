"""Item vectors travel in the item table, not in the bundle (issue 14, deliverable 2).

The session bundle's programs take ``item_vector`` as a runtime input; the item-code embedding
rows are in none of its files; the table written by ``fedpa-export items --student`` serves each
candidate's quantised vector (the OOV row for unknown items) within the 64-byte budget, and the
programs fed those vectors agree with eager PyTorch.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from export.cli import app
from export.items import student_item_vectors
from fedpa.errors import BundleError, PayloadError
from fedpa.model import Backbone, external_item_vectors, student_config
from fedpa.payload import encode_tensors
from fedpa.runtime.items import (
    ITEMS_METADATA_KEY,
    ItemRows,
    ItemTableFile,
    dequantise_vectors,
    quantise_vectors,
)
from fedpa.train import save_checkpoint
from fedpa.wire import BACKBONE_FILE

TOL = 1e-5


@pytest.fixture(scope="module")
def table_path(bundle_dir, student_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("items") / "items.safetensors"
    result = CliRunner().invoke(app, ["items", "--bundle", str(bundle_dir), "--dataset", "synthetic", "--out",
                                      str(out), "--table-version", "5", "--student", str(student_checkpoint)])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def table(table_path) -> ItemTableFile:
    return ItemTableFile.decode(table_path.read_bytes())


def test_the_programs_take_the_item_vector_and_hold_no_item_rows(bundle, bundle_dir, student):
    spec = bundle.manifest.item_vectors
    assert spec is not None and spec.feature == "item_code"
    assert bundle.schema.names[spec.column] == "item_code"
    for key in ("inference", "inference_onnx", "training"):
        inputs = {i.name: i for i in bundle.program(key).inputs}
        assert inputs["item_vector"].shape == (-1, spec.dim) and inputs["item_vector"].group == "item", key
    # the item-code rows (codes 1.., as float32 bytes) are in no file of the bundle; the rows of the
    # neighbouring feature tables are (so the search would find the item rows if they were there)
    rows = student.item_rows(spec.column).detach().numpy()
    item_bytes = np.ascontiguousarray(rows[1:9], "<f4").tobytes()
    weight = student.embedding.weight.detach().numpy()
    other_bytes = np.ascontiguousarray(weight[:4], "<f4").tobytes()
    assert other_bytes in (bundle_dir / BACKBONE_FILE).read_bytes()
    for name in bundle.manifest.files:
        assert item_bytes not in (bundle_dir / name).read_bytes(), name


def test_the_programs_shrink_by_the_item_rows(bundle, bundle_dir, student):
    spec = bundle.manifest.item_vectors
    assert spec is not None
    embedding = [a.shape for n, a in bundle.frozen.items() if n.endswith("backbone.embedding.weight")]
    assert embedding == [(student.embedding.weight.shape[0] - spec.rows, spec.dim)]


def test_external_item_vectors_compute_what_the_table_embedding_computes(student, dataset):
    column = dataset.schema.names.index("item_code")
    external = external_item_vectors(student, column)
    x = torch.from_numpy(dataset.private_train.x[:64])
    vectors = student.item_rows(column)[x[:, column]]
    assert external.embedding.weight.shape[0] == student.embedding.weight.shape[0] - student.config.cardinalities[
        column]
    torch.testing.assert_close(external(x, vectors), student(x), atol=0, rtol=0)
    x2 = x.clone()
    x2[:, column] = 0  # the code in x is ignored: only the vector counts
    torch.testing.assert_close(external(x2, vectors), student(x), atol=0, rtol=0)
    with pytest.raises(Exception, match="item_vector"):
        external(x)
    with pytest.raises(Exception, match="own table"):
        student(x, vectors)


def test_the_table_serves_the_quantised_rows_and_the_oov_row(table, student, bundle, dataset):
    spec = bundle.manifest.item_vectors
    assert spec is not None and table.meta.vector_dim == spec.dim and table.meta.format_version == 2
    q, scale = quantise_vectors(student.item_rows(spec.column).detach().numpy())
    np.testing.assert_array_equal(table.vector, q[table.item_code])
    np.testing.assert_array_equal(table.vector_scale, scale[table.item_code])
    ids = np.concatenate([dataset.item_ids[:20], np.array(["never-seen"], dtype=object)])
    rows = ItemRows.decode(table.lookup(ids).encode())
    served = rows.vectors()
    assert not rows.known[-1]
    np.testing.assert_array_equal(served[-1], dequantise_vectors(q[:1], scale[:1])[0])  # OOV row
    np.testing.assert_array_equal(served, dequantise_vectors(q, scale)[rows.item_code])
    # the quantisation error is at most half a step per value
    exact = student.item_rows(spec.column).detach().numpy()[rows.item_code]
    assert (np.abs(served - exact) <= scale[rows.item_code][:, None] / 2 + 1e-7).all()


def test_scores_with_served_vectors_match_eager(bundle, table, helpers, rng, dataset):
    x, _ = helpers.user_rows(0)
    ids = np.concatenate([dataset.item_ids[:len(x) - 1], np.array(["never-seen"], dtype=object)])
    rows = table.lookup(ids)
    spec = bundle.manifest.item_vectors
    assert spec is not None
    x = x.copy()
    x[:, spec.column] = rows.item_code
    tensors = helpers.personalisation(rng)
    with torch.no_grad():
        expected = helpers.eager(tensors)(torch.from_numpy(x)).numpy()
    for backend in ("pte", "onnx"):
        got = bundle.scorer(backend).score(x, tensors, rows.vectors())
        np.testing.assert_allclose(got, expected, atol=TOL, rtol=0, err_msg=backend)
    trainer = bundle.trainer(lr=0.1)
    trainer.write(tensors)
    y = (np.arange(len(x)) % 2).astype(np.float32)
    with torch.no_grad():
        eager_loss = float(torch.nn.functional.binary_cross_entropy_with_logits(torch.from_numpy(expected),
                                                                                torch.from_numpy(y)))
    assert abs(trainer.loss(x, y, rows.vectors()) - eager_loss) <= TOL


def test_the_item_vector_really_is_an_input(bundle, helpers, rng):
    x, y = helpers.user_rows(0)
    tensors = helpers.personalisation(rng)
    v = helpers.vectors(x)
    scorer = bundle.scorer("pte")
    assert np.abs(scorer.score(x, tensors, v) - scorer.score(x, tensors, v + 0.5)).max() > 1e-3
    with pytest.raises(BundleError, match=r"pass item_vector \["):
        scorer.score(x, tensors)
    with pytest.raises(BundleError, match="item_vector must have shape"):
        scorer.score(x, tensors, v[:, :-1])
    with pytest.raises(BundleError, match="NaN"):
        scorer.score(x, tensors, np.full_like(v, np.nan))
    with pytest.raises(BundleError, match="item vectors"):
        bundle.trainer().step(x, y)


def test_golden_cases_carry_the_served_vectors(bundle, helpers):
    golden = bundle.golden()
    for case in (*golden.cases, golden.training):
        assert case.item_vector is not None
        np.testing.assert_array_equal(case.item_vector, helpers.vectors(case.x))


def test_wire_bytes_per_candidate_within_budget(table, dataset):
    n = 256
    ids = np.resize(dataset.item_ids, n)
    body = table.lookup(ids).encode()
    per_candidate = len(body) / n
    # item_code 4 + stat codes + known 1 + d int8 + a float32 scale, plus the header spread over n
    row = 4 + len(table.meta.columns) + 1 + table.meta.vector_dim + 4
    assert row <= per_candidate <= 64, per_candidate


def test_items_needs_the_bundles_own_student(bundle_dir, dataset, tmp_path):
    missing = CliRunner().invoke(app, ["items", "--bundle", str(bundle_dir), "--dataset", "synthetic",
                                       "--out", str(tmp_path / "a.safetensors")])
    assert missing.exit_code == 1 and "error:" in missing.output and "--student" in missing.output
    assert "Traceback" not in missing.output
    torch.manual_seed(99)
    schema = dataset.schema
    other = Backbone(student_config(schema.cardinalities, len(schema.user_feature_positions)))
    path = save_checkpoint(tmp_path / "other.pt", other, schema, kind="student")
    with pytest.raises(BundleError, match="not the ones bundle"):
        student_item_vectors(path, bundle_dir)
    wrong = CliRunner().invoke(app, ["items", "--bundle", str(bundle_dir), "--dataset", "synthetic",
                                     "--out", str(tmp_path / "b.safetensors"), "--student", str(path)])
    assert wrong.exit_code == 1 and "error:" in wrong.output and "bundle's own student" in wrong.output
    assert not (tmp_path / "a.safetensors").exists() and not (tmp_path / "b.safetensors").exists()


def test_a_version_1_table_is_refused_precisely(table):
    meta = json.loads(table.meta.to_json())
    meta["format_version"] = 1
    del meta["vector_dim"]
    body = encode_tensors({"item_code": table.item_code, "codes": table.codes, "default_codes": table.default_codes,
                           "id_bytes": np.frombuffer(b"a", np.uint8), "id_offsets": np.array([0, 1])},
                          metadata={ITEMS_METADATA_KEY: json.dumps(meta)})
    with pytest.raises(PayloadError, match=r"format_version 1 carries no item vectors.*--student"):
        ItemTableFile.decode(body)


def test_corrupt_vectors_are_refused(table):
    rows = table.lookup(table.ids[:4])
    good = rows.encode()
    assert ItemRows.decode(good).vectors().shape == (4, table.meta.vector_dim)
    meta = {ITEMS_METADATA_KEY: rows.meta.model_copy(update={"columns": ()}).to_json()}
    base = {"item_code": rows.item_code, "codes": rows.codes, "known": rows.known.astype(np.uint8)}
    assert rows.vector is not None and rows.vector_scale is not None
    cases = {
        "tensors": {**base, "vector": rows.vector},  # no scale
        "int8": {**base, "vector": rows.vector.astype(np.float32), "vector_scale": rows.vector_scale},
        "do not fit": {**base, "vector": np.concatenate([rows.vector, rows.vector], 1),  # oversized rows
                       "vector_scale": rows.vector_scale},
        "finite": {**base, "vector": rows.vector, "vector_scale": np.full(4, np.inf, np.float32)},
    }
    for message, tensors in cases.items():
        with pytest.raises(PayloadError, match=message):
            ItemRows.decode(encode_tensors(tensors, metadata=meta))


def test_quantisation_round_trip_bounds():
    rng = np.random.default_rng(0)
    rows = rng.normal(0, 0.05, (100, 8)).astype(np.float32)
    rows[3] = 0.0
    q, scale = quantise_vectors(rows)
    back = dequantise_vectors(q, scale)
    assert q.dtype == np.int8 and scale.dtype == np.float32 and np.abs(q).max() == 127
    assert (np.abs(back - rows) <= scale[:, None] / 2 + 1e-9).all() and not back[3].any()
    with pytest.raises(PayloadError, match="finite"):
        quantise_vectors(np.full((2, 8), np.nan, np.float32))


def test_inspect_counts_the_served_item_vectors_outside_the_bundle(bundle, bundle_dir, student):
    from export.verify import summarise

    info = summarise(bundle_dir)
    spec = bundle.manifest.item_vectors
    assert spec is not None and info["item_vectors"]["rows"] == spec.rows
    params = info["parameters"]
    assert params["item vectors (served by the item table, not in the bundle)"] == spec.rows * spec.dim
    frozen = sum(p.numel() for p in student.parameters())
    assert params["frozen (backbone, embeddings, head)"] == frozen - spec.rows * spec.dim


def test_a_device_cache_gives_the_served_vectors_by_item_code(table, bundle):
    from fedpa.runtime.items import CodeVectors

    spec = bundle.manifest.item_vectors
    assert spec is not None and table.meta.vector_sha256 == spec.sha256
    rows = ItemRows.decode(table.lookup(np.concatenate([table.ids[:30], np.array(["never-seen"], dtype=object)]))
                           .encode())
    book = CodeVectors(spec.sha256, spec.dim)
    book.learn(rows)
    again = CodeVectors.decode(book.encode())
    np.testing.assert_array_equal(again.for_codes(rows.item_code), rows.vectors())
    assert again.digest == spec.sha256
    unseen = int(np.setdiff1d(np.arange(spec.rows), rows.item_code)[0])
    with pytest.raises(PayloadError, match=f"no item vector for item codes \\[{unseen}\\]"):
        again.for_codes(np.array([unseen]))
    with pytest.raises(PayloadError, match="for a cache of"):
        CodeVectors("0" * 64, spec.dim).learn(rows)
