"""Counter-based uniform numbers that Python and Java compute bit for bit (numpy only).

Two bundle facts are random numbers nobody needs to ship: golden.json's perturbation
(``fedpa.runtime.golden``) and the initial shared bank's drawn tensors (``fedpa.state``). Both are
this function of a seed and a stream index; ``CounterRng.java`` in the Android client is the same
formula, pinned by a bit-for-bit fixture (``android-demo/tools/make_fixtures.py``).
"""

from __future__ import annotations

import numpy as np

from fedpa.errors import BundleError

__all__ = ["counter_uniform"]

_MASK = 0xFFFFFFFF


def _mix32(v: np.ndarray) -> np.ndarray:
    """A 32-bit integer hash (Wellons' "lowbias32"), on uint64 arrays holding uint32 values."""
    v = v ^ (v >> np.uint64(16))
    v = (v * np.uint64(0x7FEB352D)) & np.uint64(_MASK)
    v = v ^ (v >> np.uint64(15))
    v = (v * np.uint64(0x846CA68B)) & np.uint64(_MASK)
    return v ^ (v >> np.uint64(16))


def counter_uniform(seed: int, index: int, n: int) -> np.ndarray:
    """``n`` float32 values in [-1, 1) for stream ``index`` of ``seed`` (mean 0, variance ≈ 1/3).

    Element ``i``: ``h = mix32((mix32((seed + 0x9E3779B9·(index+1)) mod 2³²) + i) mod 2³²)``, then
    ``((h >> 8) - 2²³) · 2⁻²³`` — an integer below 2²⁴ times a power of two, so exact in float32.
    """
    if not 0 <= seed <= _MASK:
        raise BundleError(f"counter_uniform seed {seed} is not a 32-bit unsigned integer")
    base = _mix32(np.asarray([(seed + 0x9E3779B9 * (index + 1)) & _MASK], dtype=np.uint64))
    h = _mix32((base + np.arange(n, dtype=np.uint64)) & np.uint64(_MASK))
    return ((h >> np.uint64(8)).astype(np.int64) - (1 << 23)).astype(np.float32) * np.float32(2.0 ** -23)
