"""Checked CSV reading: every malformed input becomes a DataError naming file, column and row.

pandas parses fast but reports bad values vaguely (or silently turns them into NaN), so the
loaders read with pandas and then validate each required column here. Rows are reported as
1-based data rows together with the physical line (the header is line 1).

Usage: ``df = read_table(path, required=("user_id", "item_id"))``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from fedpa.errors import DataError

__all__ = [
    "check_unique_ids",
    "parse_binary_label",
    "parse_ids",
    "parse_timestamp_ms",
    "read_columns",
    "read_table",
]

logger = logging.getLogger(__name__)


def _where(path: Path, column: str, row: int) -> str:
    """Location text for a data row given its 0-based position in the file."""
    return f"{path.name}: column {column!r}, row {row + 1} (line {row + 2})"


def read_columns(path: str | Path, *, sep: str = ",") -> tuple[str, ...]:
    """The header of a delimited file (stripped names); a missing or unreadable file is a DataError."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        header = pd.read_csv(path, sep=sep, nrows=0)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read the header: {exc}") from exc
    return tuple(str(c).strip() for c in header.columns)


def _raw_names(path: Path, sep: str, stripped: Sequence[str]) -> list[str]:
    """Header names as spelled in the file for the given stripped names (pandas keys by raw name)."""
    raw = pd.read_csv(path, sep=sep, nrows=0).columns
    wanted = set(stripped)
    return [c for c in raw if str(c).strip() in wanted]


def read_table(
    path: str | Path,
    *,
    required: Sequence[str],
    sep: str = ",",
    id_columns: Sequence[str] = (),
    usecols: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Read one delimited file, refusing a missing file, unparsable text or absent columns.

    ``id_columns`` are read as strings so that ids keep their exact spelling (``007`` ≠ ``7``).
    """
    path = Path(path)
    columns = list(read_columns(path, sep=sep))
    missing = [c for c in required if c not in columns]
    if missing:
        raise DataError(f"{path.name}: missing required column {missing[0]!r} (found columns: {columns})")
    keep = None if usecols is None else set(usecols) | set(required)
    try:
        df = pd.read_csv(
            path,
            sep=sep,
            usecols=None if keep is None else (lambda c: str(c).strip() in keep),
            dtype={c: str for c in _raw_names(path, sep, id_columns)},
        )
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"{path}: malformed file: {exc}") from exc
    df.columns = [str(c).strip() for c in df.columns]
    return df


def parse_ids(df: pd.DataFrame, column: str, path: Path) -> np.ndarray:
    """Non-empty id strings (object array); a blank id is an error at its row."""
    s = df[column]
    text = s.astype("string").str.strip()
    bad = text.isna() | (text == "")
    if bool(bad.any()):
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(f"{_where(path, column, row)}: missing id")
    return text.to_numpy(dtype=object)


def _numeric(df: pd.DataFrame, column: str, path: Path, what: str) -> np.ndarray:
    """Column as float64, reporting the first missing or non-numeric cell."""
    s = df[column]
    if isinstance(s.dtype, np.dtype) and s.dtype.kind in "iub":
        return s.to_numpy(dtype=np.float64)
    values = pd.to_numeric(s, errors="coerce")
    bad = values.isna().to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raw = s.iloc[row]
        if pd.isna(raw) or str(raw).strip() == "":
            raise DataError(f"{_where(path, column, row)}: missing value (expected {what})")
        raise DataError(f"{_where(path, column, row)}: expected {what}, got {raw!r}")
    return values.to_numpy(dtype=np.float64)


def parse_binary_label(df: pd.DataFrame, column: str, path: Path) -> np.ndarray:
    """Labels as float32 0/1; anything else (2, 0.5, "x", blank) is an error at its row."""
    v = _numeric(df, column, path, "a 0/1 integer label")
    bad = (v != 0.0) & (v != 1.0)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(f"{_where(path, column, row)}: expected a 0/1 integer label, got {df[column].iloc[row]!r}")
    return v.astype(np.float32)


def parse_timestamp_ms(df: pd.DataFrame, column: str, path: Path) -> np.ndarray:
    """Timestamps in milliseconds as int64 (KuaiSAR writes them as floats like ``1.6e12``)."""
    v = _numeric(df, column, path, "a numeric timestamp in ms")
    bad = ~np.isfinite(v) | (np.abs(v) >= 2.0**62)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(f"{_where(path, column, row)}: timestamp out of range: {df[column].iloc[row]!r}")
    ms: np.ndarray = np.rint(v).astype(np.int64)
    return ms


def check_unique_ids(ids: np.ndarray, column: str, path: Path) -> None:
    """A feature table must list each id once, or its features would be ambiguous."""
    dup = pd.Series(ids).duplicated().to_numpy()
    if dup.any():
        row = int(np.flatnonzero(dup)[0])
        raise DataError(f"{_where(path, column, row)}: duplicate id {ids[row]!r}")
