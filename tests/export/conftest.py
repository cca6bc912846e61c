"""One real bundle per test session, built through the CLI from a student checkpoint.

Building lowers three programs (~45 s on two shared cores), so every export test shares it;
tests that damage a bundle work on a copy (``bundle_copy``).
"""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from export.cli import app
from fedpa.data import load_dataset
from fedpa.model import AdapterConfig, Backbone, FedPARecommender, student_config
from fedpa.personalise import load_tensors
from fedpa.runtime import Bundle
from fedpa.runtime.items import dequantise_vectors, quantise_vectors
from fedpa.train import save_checkpoint

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def dataset():
    return load_dataset("synthetic", seed=0)


@pytest.fixture(scope="session")
def student(dataset) -> Backbone:
    """A random (untrained) student: parity is a property of the programs, not of training."""
    torch.manual_seed(0)
    schema = dataset.schema
    return Backbone(student_config(schema.cardinalities, len(schema.user_feature_positions))).eval()


@pytest.fixture(scope="session")
def student_checkpoint(tmp_path_factory, student, dataset) -> Path:
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "student.pt", student, dataset.schema,
                           kind="student", metrics={"note": "random weights"})


@pytest.fixture(scope="session")
def publisher_keys(tmp_path_factory) -> Path:
    """A publisher key pair written by `fedpa-export keygen` (publisher.key, publisher.pub)."""
    folder = tmp_path_factory.mktemp("keys")
    result = CliRunner().invoke(app, ["keygen", "--out", str(folder)])
    assert result.exit_code == 0, result.output
    return folder


@pytest.fixture(scope="session")
def bundle_dir(tmp_path_factory, student_checkpoint, publisher_keys) -> Path:
    out = tmp_path_factory.mktemp("bundles") / "synthetic-v1"
    result = CliRunner().invoke(app, [
        "build", "--student", str(student_checkpoint), "--dataset", "synthetic", "--out", str(out),
        "--model-id", "synthetic", "--model-version", "1", "--rank", "4", "--gate-mode", "paper",
        "--max-train-batch", "256", "--signing-key", str(publisher_keys / "publisher.key"),
    ])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="session")
def bundle(bundle_dir) -> Bundle:
    return Bundle.open(bundle_dir)


@pytest.fixture
def bundle_copy(bundle_dir, tmp_path) -> Path:
    """A private copy to damage."""
    return Path(shutil.copytree(bundle_dir, tmp_path / "copy"))


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


class Helpers:
    """Shared reference code for the export tests (a fixture, so test modules need no imports)."""

    def __init__(self, bundle: Bundle, student: Backbone, dataset) -> None:
        self.bundle, self.student, self.dataset = bundle, student, dataset

    def eager(self, tensors: dict[str, np.ndarray]) -> FedPARecommender:
        """The eager reference: the student + the bundle's adapter config + the given personalisation.

        Its item-code rows are the dequantised ones the item table serves (what the programs get
        as ``item_vector``), so ``model(x)`` needs no vectors and equals the programs exactly.
        """
        student = copy.deepcopy(self.student)
        spec = self.bundle.manifest.item_vectors
        if spec is not None:
            with torch.no_grad():
                student.item_rows(spec.column).copy_(torch.from_numpy(self.code_vectors()))
        model = FedPARecommender(student, AdapterConfig.from_dict(self.bundle.manifest.adapter))
        load_tensors(model, tensors)
        return model.eval()

    def code_vectors(self) -> np.ndarray:
        """The dequantised item-code rows ``[rows, d]`` (row k = code k) the item table serves."""
        spec = self.bundle.manifest.item_vectors
        assert spec is not None
        return dequantise_vectors(*quantise_vectors(self.student.item_rows(spec.column).detach().numpy()))

    def vectors(self, x: np.ndarray) -> np.ndarray | None:
        """The programs' ``item_vector`` input for rows ``x``: their item codes' served vectors."""
        spec = self.bundle.manifest.item_vectors
        return None if spec is None else self.code_vectors()[np.asarray(x)[:, spec.column]]

    @staticmethod
    def nontrivial(tensors: dict[str, np.ndarray], rng: np.random.Generator, scale: float = 0.2
                   ) -> dict[str, np.ndarray]:
        """Perturbed copies: fresh adapters have B = 0, which would hide a runtime that ignores them."""
        return {n: (a + rng.normal(0, scale, a.shape)).astype(np.float32) for n, a in tensors.items()}

    def user_rows(self, user_index: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """One private user's training rows (x, y): real encoded rows, not random codes."""
        split = self.dataset.private_train
        mask = split.user == np.unique(split.user)[user_index]
        return split.x[mask], split.y[mask]

    def personalisation(self, rng: np.random.Generator, user_index: int = 0) -> dict[str, np.ndarray]:
        """That user's initial tensors (their group values' adapters), made non-trivial."""
        x, _ = self.user_rows(user_index)
        return self.nontrivial(self.bundle.personalisation(self.bundle.groups_of(x[0])), rng)


@pytest.fixture(scope="session")
def helpers(bundle, student, dataset) -> Helpers:
    return Helpers(bundle, student, dataset)
