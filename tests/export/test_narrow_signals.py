"""The optional narrow signal-column table (not the pipeline's default) lowers to programs that match eager."""

from __future__ import annotations

import torch

from export.bundle import build_bundle
from fedpa.model import Backbone, student_config
from fedpa.runtime import Bundle


def test_a_student_with_the_narrow_signal_table_exports_and_passes_golden_parity(dataset, tmp_path):
    # Prepare: the full-input synthetic schema, its statistic columns embedded from their own 4-dim table
    schema = dataset.schema
    assert schema.n_signal_features > 0
    torch.manual_seed(1)
    config = student_config(schema.cardinalities, len(schema.user_feature_positions),
                            n_signal_features=schema.n_signal_features)
    student = Backbone(config).eval()
    # Execute: the build replays its golden vectors (eager) through the .pte and .onnx programs
    result = build_bundle(student, schema, tmp_path / "narrow", model_id="narrow", max_batch=64, max_train_batch=64)
    # Assert
    assert result.parity.ok, result.parity.failures()
    backbone = Bundle.open(result.path).manifest.backbone
    assert (backbone["n_signal_features"], backbone["signal_dim"]) == (schema.n_signal_features, 4)
    assert config.input_dim < len(schema.cardinalities) * config.embedding_dim  # it really is narrower
