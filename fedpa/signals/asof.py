"""The one counting primitive behind every new input: "how many log rows with my key came before me".

Both the item statistics (key = item, or item × group value; order = timestamp) and the history
features (key = user × item-field value; order = the user's row position) are this count, and the
sum of labels over the same rows. Vectorised with one sort and two binary searches per query, so a
million-row log is a fraction of a second; the streaming versions (item table, ``HistoryState``)
are checked against it in the tests.

Usage: ``n, clicks = count_before(log_key, log_order, log_y, q_key, q_order)``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["count_before", "dense_keys"]


def dense_keys(*columns: np.ndarray) -> np.ndarray:
    """One dense int64 id per distinct tuple of the given equally long integer columns.

    Columns are folded in one at a time (``id · (span + 1) + offset``, re-densified after each),
    which stays far below int64's range and sorts 1-D arrays only.
    """
    cols = [np.asarray(c, np.int64).ravel() for c in columns]
    key = np.zeros(cols[0].size if cols else 0, np.int64)
    for c in cols:
        if c.size == 0:
            return np.zeros(0, np.int64)
        offset = c - c.min()
        _, key = np.unique(key * (offset.max() + 1) + offset, return_inverse=True)
        key = key.astype(np.int64).ravel()
    return key


def count_before(log_key: np.ndarray, log_order: np.ndarray, log_y: np.ndarray,
                 q_key: np.ndarray, q_order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per query: the log rows with the same key and an order value strictly below the query's.

    Returns ``(count, label_sum)`` as int64 and float64 arrays. Keys must already be comparable
    integers (use :func:`dense_keys` on the concatenation of log and query columns); orders are
    any integers (timestamps, row positions). "Strictly below" is the leak-free rule: a row never
    counts itself, nor rows at the same instant.
    """
    log_key = np.asarray(log_key, np.int64).ravel()
    q_key = np.asarray(q_key, np.int64).ravel()
    log_order = np.asarray(log_order, np.int64).ravel()
    q_order = np.asarray(q_order, np.int64).ravel()
    log_y = np.asarray(log_y, np.float64).ravel()
    values = np.unique(np.concatenate([log_order, q_order]))
    width = np.int64(values.size + 1)  # order ranks 0..size-1 fit below one key step
    log_combined = log_key * width + np.searchsorted(values, log_order)
    order = np.argsort(log_combined, kind="stable")
    sorted_combined = log_combined[order]
    cum = np.r_[0.0, np.cumsum(log_y[order])]
    hi = np.searchsorted(sorted_combined, q_key * width + np.searchsorted(values, q_order), side="left")
    lo = np.searchsorted(sorted_combined, q_key * width, side="left")
    return (hi - lo).astype(np.int64), cum[hi] - cum[lo]
