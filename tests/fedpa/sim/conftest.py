"""Shared fixtures for the simulation tests: one thread, a small synthetic dataset, a quick student."""

import numpy as np
import pytest
import torch

from fedpa.data import load_dataset
from fedpa.model import Backbone
from fedpa.train import default_student_config


@pytest.fixture(autouse=True)
def _one_thread():
    """The CI machine has two cores shared with other jobs: keep timings and results stable."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def small_ds():
    """Base inputs: the harness's mechanics are tested on the paper's model (full inputs: test_features.py)."""
    return load_dataset("synthetic", seed=0, n_users=120, n_items=80, interactions_per_user=30, features="base")


@pytest.fixture(scope="session")
def small_full_ds():
    return load_dataset("synthetic", seed=0, n_users=120, n_items=80, interactions_per_user=30)


def quick_student(ds, *, seed: int = 0, epochs: int = 3) -> Backbone:
    """A student fitted for a few full-batch-ish Adam epochs on open users: enough to be non-trivial."""
    torch.manual_seed(seed)
    model = Backbone(default_student_config(ds.schema))  # the architecture the pipeline distils
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x, y = torch.from_numpy(ds.open_train.x), torch.from_numpy(ds.open_train.y)
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        for idx in np.array_split(rng.permutation(len(y)), max(1, len(y) // 256)):
            loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval().requires_grad_(False)


@pytest.fixture(scope="session")
def small_student(small_ds):
    return quick_student(small_ds)
