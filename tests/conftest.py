"""Fixtures shared by the device tests (tests/edge) and the harness tests (tests/harness).

``world`` (a trained student and its exported bundle) and ``sqlite_server`` (a real aggregator) are
session-scoped and costly, so they live here once instead of in each folder's conftest. Imports are
inside the fixtures: test folders that use neither (aggregator, data) do not pay for torch.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest


@dataclass
class World:
    """One trained student, its exported bundle and the dataset, built once per test session."""

    ds: Any
    student: Any
    fm_only: dict[str, float]
    bundle: Path
    root: Path

    def publish(self, server: Any, model_id: str, config: dict[str, Any], *, privacy: Any = None,
                signing_key: Path | None = None) -> Path:
        """Publish the bundle under a fresh model id (a copy with its manifest renamed) on ``server``."""
        import shutil

        from fedpa.manifest import read_manifest

        dest = self.root / f"bundle-{model_id}"
        shutil.copytree(self.bundle, dest)
        manifest = read_manifest(dest).model_copy(update={"model_id": model_id, **({"privacy": privacy}
                                                                                   if privacy else {})})
        (dest / "manifest.json").write_text(manifest.to_json())
        if signing_key is not None:
            from fedpa.signing import load_private_key, sign_bundle

            sign_bundle(dest, load_private_key(signing_key))
        from edge.client import AggregatorClient

        with AggregatorClient(server.url, token=server.admin_token) as admin:
            admin.publish(dest, config=config)
            if manifest.item_vectors is not None:  # its programs need the item table's vectors: publish it too
                from edge.items import publish_item_table
                from export.items import student_item_vectors, write_item_table

                table = write_item_table(dest, self.ds, dest.parent / f"items-{model_id}.safetensors",
                                         table_version=1, overwrite=True,
                                         code_vectors=student_item_vectors(self.student, dest))
                publish_item_table(admin, model_id, table.path)
        return dest


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    """Synthetic data with strong group drift, teacher → student, a residual-gate bundle (~1 min)."""
    import torch

    from export.bundle import build_bundle
    from fedpa.data import load_dataset
    from fedpa.manifest import PrivacySettings
    from fedpa.train import TrainConfig, adapter_config_for, distill, pretrain

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("edge-world")
    ds = load_dataset("synthetic", seed=0, n_users=200, drift=3.0)
    train = TrainConfig(epochs=30)
    teacher = pretrain(ds, train=train, seed=0).model
    student = distill(ds, teacher, train=train, seed=0)
    built = build_bundle(student.model, ds.schema, root / "bundle", model_id="edge-test",
                         adapter=adapter_config_for(ds.schema, gate_mode="residual"),
                         privacy=PrivacySettings(mechanism="none", noise_multiplier=0.0), seed=0,
                         max_batch=256, max_train_batch=64)
    return World(ds=ds, student=student.model, fm_only=student.metrics["private_test"], bundle=built.path, root=root)


@pytest.fixture(scope="session")
def sqlite_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real uvicorn aggregator on SQLite for the session (rate limit off: rounds follow each other fast)."""
    from harness.server_process import AggregatorProcess

    folder = tmp_path_factory.mktemp("aggregator")
    server = AggregatorProcess(database_url=f"sqlite:///{folder / 'agg.db'}", log_file=folder / "agg.log",
                               env={"FEDPA_RATE_LIMIT_PER_MINUTE": "0"})
    with server:
        yield server
