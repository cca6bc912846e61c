"""``fedpa-export items``: the item table of the session bundle, equal to fedpa.signals' own table,
and refused when the dataset or the bundle does not fit."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from export.cli import app
from export.items import write_item_table
from fedpa.errors import BundleError
from fedpa.runtime.items import ItemRows, ItemTableFile, item_table_features
from fedpa.signals import build_item_table


def test_items_cli_writes_the_signals_table_for_the_bundle(bundle_dir, dataset, student_checkpoint, tmp_path) -> None:
    out = tmp_path / "items.safetensors"
    schema = dataset.schema
    if not item_table_features(schema):
        pytest.skip("the session dataset has no item_table features")

    result = CliRunner().invoke(app, ["items", "--bundle", str(bundle_dir), "--dataset", "synthetic",
                                      "--out", str(out), "--table-version", "3", "--student", str(student_checkpoint)])

    assert result.exit_code == 0, result.output
    table = ItemTableFile.decode(out.read_bytes())
    assert (table.meta.model_id, table.meta.model_version, table.meta.table_version) == ("synthetic", 1, 3)
    table.check_schema(schema)
    reference = build_item_table(schema, dataset.signal_log, item_ids=dataset.item_ids,
                                 item_codes=dataset.item_codes)
    ids = np.concatenate([dataset.item_ids[:50], np.array(["never-seen"], dtype=object)])
    rows = ItemRows.decode(table.lookup(ids).encode())
    user = dataset.private_users[0]
    groups = dict(zip(schema.group_attributes, dataset.user_groups[user].tolist(), strict=True))
    got = rows.columns_for(schema, groups)
    order = item_table_features(schema)
    np.testing.assert_array_equal(np.stack([got[n] for n in order], 1),
                                  reference.candidate_codes(ids, dataset.user_groups[user]))
    assert not rows.known[-1] and rows.item_code[-1] == 0


def test_items_cli_refuses_another_dataset_or_an_existing_file(bundle_dir, student_checkpoint, tmp_path) -> None:
    out = tmp_path / "items.safetensors"
    out.write_bytes(b"keep me")
    student = ["--student", str(student_checkpoint)]

    exists = CliRunner().invoke(app, ["items", "--bundle", str(bundle_dir), "--dataset", "synthetic",
                                      "--out", str(out), *student])
    other = CliRunner().invoke(app, ["items", "--bundle", str(bundle_dir), "--dataset", "synthetic",
                                     "--out", str(tmp_path / "b.safetensors"), "--option", "n_users=150", *student])

    assert exists.exit_code == 1 and "already exists" in exists.output and out.read_bytes() == b"keep me"
    assert other.exit_code == 1 and "error:" in other.output and "Traceback" not in other.output
    assert "not the one the bundle was built from" in other.output
    assert not (tmp_path / "b.safetensors").exists()


def test_a_bundle_without_item_table_columns_needs_no_table(bundle_copy, dataset, tmp_path) -> None:
    manifest = json.loads((bundle_copy / "manifest.json").read_text())
    manifest["feature_schema"]["features"] = [f for f in manifest["feature_schema"]["features"]
                                              if f.get("source") != "item_table"]
    manifest["item_vectors"] = None
    (bundle_copy / "manifest.json").write_text(json.dumps(manifest))

    with pytest.raises(BundleError, match="no item_table features"):
        write_item_table(bundle_copy, dataset, tmp_path / "items.safetensors")


def test_bundle_inputs_include_every_selected_kind(bundle, dataset) -> None:
    """The exported programs take the new columns: the manifest's input width is the full schema's."""
    from fedpa.signals import SignalSpec

    kinds = SignalSpec.from_dict(dataset.schema.signals).kinds
    sources = {f.source for f in dataset.schema.features}
    width = bundle.manifest.programs["inference"].inputs[0].shape[-1]

    assert width == len(dataset.schema.features)
    assert ("item_table" in sources) == bool({"item_stats", "item_code"} & set(kinds))
    assert ("history" in sources) == ("history" in kinds)
