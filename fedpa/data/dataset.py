"""The in-memory dataset every trainer, simulator and benchmark consumes.

Arrays, not DataFrames: training loops index them millions of times, and a plain numpy layout
converts to tensors without copies. Raw ids are kept (as strings) only for reporting and export.

Usage: ``ds.private_train.select(ds.private_train.user == 3)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from fedpa.data.schema import FeatureSchema

if TYPE_CHECKING:
    from fedpa.signals import StatLog

__all__ = ["SPLIT_NAMES", "Dataset", "Interactions", "dataset_stats"]

SPLIT_NAMES: tuple[str, ...] = (
    "open_train",
    "open_val",
    "open_test",
    "private_train",
    "private_val",
    "private_test",
)


@dataclass
class Interactions:
    """Impressions of one split; rows sorted by (user, ts), ties in file order."""

    user: np.ndarray  # int64 [N] dense user index into Dataset.user_ids
    item: np.ndarray  # int64 [N] dense item index into Dataset.item_ids
    x: np.ndarray  # int64 [N, F] feature codes in schema order (user features, then item features)
    y: np.ndarray  # float32 [N] labels 0/1
    ts: np.ndarray  # int64 [N] timestamps in ms

    def __len__(self) -> int:
        return int(self.user.shape[0])

    def select(self, mask_or_index: np.ndarray | slice | list[int]) -> Interactions:
        """Rows picked by a boolean mask, an index array or a slice (order as given)."""
        idx = mask_or_index if isinstance(mask_or_index, slice) else np.asarray(mask_or_index)
        return Interactions(
            user=self.user[idx], item=self.item[idx], x=self.x[idx], y=self.y[idx], ts=self.ts[idx]
        )

    @classmethod
    def empty(cls, n_features: int) -> Interactions:
        """A zero-row split with the right dtypes and width."""
        return cls(
            user=np.zeros(0, np.int64),
            item=np.zeros(0, np.int64),
            x=np.zeros((0, n_features), np.int64),
            y=np.zeros(0, np.float32),
            ts=np.zeros(0, np.int64),
        )


@dataclass
class Dataset:
    """Encoded interactions split into open (pre-training) and private (federated) parts.

    ``user_ids``/``item_ids`` list every user and item of the log (dropped users included, so
    indices stay stable across options); ``open_users``/``private_users`` say who is in which pool.
    With ``split="time"`` a user may be in both pools (early rows open, later rows private).
    """

    name: str
    schema: FeatureSchema
    user_ids: np.ndarray  # raw ids (str) by dense user index
    item_ids: np.ndarray  # raw ids (str) by dense item index
    user_x: np.ndarray  # int64 [n_users, n_user_features]
    user_groups: np.ndarray  # int64 [n_users, K] group codes (user_x columns of group_attributes)
    open_users: np.ndarray  # int64 dense indices of the pre-training pool (after dropping)
    private_users: np.ndarray  # int64 dense indices of private users kept after dropping
    open_train: Interactions
    open_val: Interactions
    open_test: Interactions
    private_train: Interactions
    private_val: Interactions
    private_test: Interactions
    report: dict[str, Any]
    item_codes: np.ndarray | None = None  # int64 [n_items] frequent-item code per dense item (0 = OOV)
    signal_log: StatLog | None = None  # the rows item statistics count (the open log): feeds the item table

    @property
    def n_users(self) -> int:
        """Number of users in ``user_ids``."""
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        """Number of items in ``item_ids``."""
        return len(self.item_ids)

    def split(self, name: str) -> Interactions:
        """One split by name (see ``SPLIT_NAMES``)."""
        if name not in SPLIT_NAMES:
            raise KeyError(f"unknown split {name!r}; expected one of {SPLIT_NAMES}")
        part: Interactions = getattr(self, name)
        return part


def dataset_stats(ds: Dataset) -> list[dict[str, Any]]:
    """Per split: users, items, interactions and positive rate (what ``fedpa data stats`` prints)."""
    rows = []
    for name in SPLIT_NAMES:
        part = ds.split(name)
        n = len(part)
        rows.append(
            {
                "split": name,
                "users": int(np.unique(part.user).size),
                "items": int(np.unique(part.item).size),
                "interactions": n,
                "positive_rate": float(part.y.mean()) if n else float("nan"),
            }
        )
    return rows
