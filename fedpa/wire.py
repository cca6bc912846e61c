"""The wire contract between the aggregator and every client, in one torch-free module.

Everything two programs must spell the same way lives here: the bundle's file names, the
safetensors metadata keys, the HTTP headers, the ``groups`` query of a state download, the
error codes of ``{"error", "detail"}`` bodies, and the encoding of an update upload. The JSON
bodies themselves are pydantic models in ``fedpa.protocol`` (re-exported here); tensors are
safetensors (``fedpa.payload``). The server emits these constants, the Python clients, tests and
benchmarks read them from here, and the Android client's copies are pinned to them by
``tests/fedpa/test_wire.py``.

A client tells refusals apart by :class:`ErrorCode` (exact string equality), never by searching
the human-readable ``detail``, which may be reworded at any time.

Usage::

    body = encode_update(deltas, meta)
    meta, arrays = decode_update(body)
    query = {GROUPS_PARAM: encode_groups({"age": 3, "city": ALL_VALUES})}
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from enum import StrEnum

import numpy as np
from pydantic import ValidationError

from fedpa.errors import PayloadError
from fedpa.payload import decode_tensors, encode_tensors
from fedpa.protocol import UpdateMeta, UpdatePrivacy

__all__ = [
    "ALL_VALUES",
    "BACKBONE_FILE",
    "GOLDEN_FILE",
    "GROUPS_PARAM",
    "INFERENCE_ONNX",
    "INFERENCE_PTE",
    "MANIFEST_NAME",
    "MODEL_VERSION_HEADER",
    "PRIVATE_INIT_FILE",
    "PROGRAM_KEYS",
    "REQUIRED_FILES",
    "SHARED_STATE_FILE",
    "SIGNATURE_NAME",
    "STATE_META_MODEL_ID",
    "STATE_META_MODEL_VERSION",
    "STATE_META_STATE_VERSION",
    "STATE_VERSION_HEADER",
    "TABLE_VERSION_HEADER",
    "TRAINING_PTE",
    "UPDATE_META_KEY",
    "ErrorCode",
    "GroupSelection",
    "UpdateMeta",
    "UpdatePrivacy",
    "decode_groups",
    "decode_update",
    "encode_groups",
    "encode_update",
    "read_metadata",
]

# ---------------------------------------------------------------------------- bundle files

MANIFEST_NAME = "manifest.json"
SIGNATURE_NAME = "manifest.sig"  # beside the manifest, never listed in it (it signs the manifest's bytes)
INFERENCE_PTE = "inference.pte"
INFERENCE_ONNX = "inference.onnx"
TRAINING_PTE = "training.pte"
SHARED_STATE_FILE = "shared_state.safetensors"  # the bank's version 0, as published
PRIVATE_INIT_FILE = "private_init.safetensors"
GOLDEN_FILE = "golden.json"
# the frozen backbone and head, once: a runtime input of all three programs (issue 14)
BACKBONE_FILE = "backbone.safetensors"
# manifest.programs keys → what a client uses them for
PROGRAM_KEYS = {"inference": INFERENCE_PTE, "inference_onnx": INFERENCE_ONNX, "training": TRAINING_PTE}
# no schema.json since issue 14: it only repeated manifest.feature_schema (11–15 KB of the size budget)
REQUIRED_FILES = (*PROGRAM_KEYS.values(), BACKBONE_FILE, SHARED_STATE_FILE, PRIVATE_INIT_FILE, GOLDEN_FILE)

# ---------------------------------------------------------------------------- safetensors metadata

UPDATE_META_KEY = "fedpa.update"  # an upload's __metadata__ entry holding the UpdateMeta JSON
# A state download's __metadata__ (strings, as safetensors requires).
STATE_META_MODEL_ID = "fedpa.model_id"
STATE_META_MODEL_VERSION = "fedpa.model_version"
STATE_META_STATE_VERSION = "fedpa.state_version"

# ---------------------------------------------------------------------------- HTTP headers

STATE_VERSION_HEADER = "X-FedPA-State-Version"  # the shared-state version a download holds
MODEL_VERSION_HEADER = "X-FedPA-Model-Version"  # the model version a manifest, file or download belongs to
TABLE_VERSION_HEADER = "X-FedPA-Table-Version"  # the item table version a look-up answered from

# ---------------------------------------------------------------------------- groups query

GROUPS_PARAM = "groups"  # GET …/state?groups=attr:value,attr:*
ALL_VALUES = "*"  # every value of an attribute: downloads then do not reveal the device's own
GroupSelection = Mapping[str, int | str]  # attribute → value code, or ALL_VALUES


def encode_groups(groups: GroupSelection) -> str:
    """``{"age": 3, "city": "*"}`` → ``"age:3,city:*"`` (the ``groups`` query of a state download)."""
    return ",".join(f"{attribute}:{value}" for attribute, value in groups.items())


def decode_groups(raw: str) -> dict[str, int | str]:
    """The syntax of a ``groups`` query: ``attr:value`` pairs, each attribute once, a value an int or ``*``.

    Which attributes and values a model has is the shared-state spec's business
    (``SharedStateSpec.check_selection``); this only refuses what no model could mean.
    """
    out: dict[str, int | str] = {}
    for part in filter(None, (p.strip() for p in raw.split(","))):
        attribute, sep, value = part.partition(":")
        if not sep or attribute in out:
            raise PayloadError(f"groups must be 'attribute:value' pairs, each attribute once; got {part!r}")
        if value == ALL_VALUES:
            out[attribute] = ALL_VALUES
            continue
        try:
            out[attribute] = int(value)
        except ValueError:
            raise PayloadError(f"group value {value!r} of {attribute!r} is not an integer code or '*'") from None
    return out


# ---------------------------------------------------------------------------- error codes


class ErrorCode(StrEnum):
    """The ``error`` field of every refusal body; clients compare it for equality, never by substring.

    The values are the wire format: renaming one breaks deployed clients (the Android app pins the
    ones it acts on). Generic codes come from the HTTP status; specific ones say which rule refused.
    """

    # generic, one per status
    BAD_REQUEST = "bad_request"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    CONFLICT = "conflict"
    UNPROCESSABLE = "unprocessable"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    RATE_LIMITED = "rate_limited"
    UNAVAILABLE = "unavailable"
    HTTP_ERROR = "http_error"  # an HTTP error the API has no specific code for
    # request shape
    INVALID_JSON = "invalid_json"
    INVALID_REQUEST = "invalid_request"
    INVALID_PAYLOAD = "invalid_payload"
    INVALID_BUNDLE = "invalid_bundle"
    INVALID_CONFIG = "invalid_config"
    BODY_TIMEOUT = "body_timeout"
    # authentication and enrolment
    MISSING_TOKEN = "missing_token"
    INVALID_TOKEN = "invalid_token"
    TOKEN_EXPIRED = "token_expired"
    UNKNOWN_DEVICE = "unknown_device"
    WRONG_MODEL = "wrong_model"
    ADMIN_ONLY = "admin_only"
    DEVICE_ONLY = "device_only"
    INVALID_ENROLLMENT_KEY = "invalid_enrollment_key"
    ENROLLMENT_KEY_EXPIRED = "enrollment_key_expired"
    ENROLLMENT_KEY_USED_UP = "enrollment_key_used_up"
    # models, files, item tables
    UNKNOWN_MODEL = "unknown_model"
    UNKNOWN_FILE = "unknown_file"
    MODEL_VERSION_NOT_NEWER = "model_version_not_newer"
    NO_ITEM_TABLE = "no_item_table"
    TABLE_VERSION_NOT_NEWER = "table_version_not_newer"
    LOOKUP_BATCH_TOO_LARGE = "lookup_batch_too_large"
    ITEM_VECTORS_MISMATCH = "item_vectors_mismatch"  # 422: the table's vectors are not the model's (dim, digest)
    # 409: the model was published by an older server in a manifest format this one no longer reads
    MODEL_FORMAT_OUTDATED = "model_format_outdated"
    # update uploads
    MODEL_ID_MISMATCH = "model_id_mismatch"
    MODEL_VERSION_MISMATCH = "model_version_mismatch"  # 409: the device runs an old bundle
    STALE_BASE = "stale_base"  # 409: trained on an old shared state; download it and train again
    REPLAYED_NONCE = "replayed_nonce"  # 409: this nonce was accepted before: the server holds the update
    OUT_OF_RANGE = "out_of_range"
    INVALID_PRIVACY = "invalid_privacy"
    PRIVACY_BELOW_FLOOR = "privacy_below_floor"
    PRIVACY_BUDGET_EXCEEDED = "privacy_budget_exceeded"
    # the server cannot take it now (503, retry)
    INTAKE_BUSY = "intake_busy"
    STORAGE_UNAVAILABLE = "storage_unavailable"
    STATE_UNAVAILABLE = "state_unavailable"


# ---------------------------------------------------------------------------- update uploads

_MAX_HEADER = 1 << 20
# Tensor dtypes safetensors.numpy can load; others (BF16, F8_*) are refused with a precise error.
_NUMPY_DTYPES = frozenset({"BOOL", "U8", "I8", "U16", "I16", "F16", "U32", "I32", "F32", "U64", "I64", "F64"})


def encode_update(deltas: Mapping[str, np.ndarray], meta: UpdateMeta) -> bytes:
    """One upload body: the deltas (wire names) as safetensors, ``meta`` under ``UPDATE_META_KEY``."""
    return encode_tensors(deltas, metadata={UPDATE_META_KEY: meta.model_dump_json()})


def read_metadata(body: bytes, *, max_metadata_bytes: int = 16384) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors body (safetensors' own loader does not return it).

    Also refuses what safetensors.numpy cannot load (a BF16 tensor raised KeyError inside it: a
    500 on the server) and JSON nested deeper than Python's parser recurses (RecursionError), and
    metadata over ``max_metadata_bytes`` (junk padding that would be stored with the update).
    """
    if len(body) < 8:
        raise PayloadError(f"payload of {len(body)} bytes is not safetensors (no header)")
    n = int.from_bytes(body[:8], "little")
    if n > min(len(body) - 8, _MAX_HEADER):
        raise PayloadError(f"safetensors header length {n} exceeds the payload or {_MAX_HEADER} bytes")
    try:
        header = json.loads(body[8 : 8 + n])
    except (UnicodeDecodeError, ValueError) as exc:
        raise PayloadError(f"safetensors header is not JSON: {exc}") from exc
    except RecursionError:
        raise PayloadError("safetensors header is nested too deeply to be a tensor index") from None
    if not isinstance(header, dict):
        raise PayloadError("safetensors header must be a JSON object")
    meta = header.get("__metadata__", {})
    if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise PayloadError("safetensors __metadata__ must map strings to strings")
    size = sum(len(k.encode()) + len(v.encode()) for k, v in meta.items())
    if size > max_metadata_bytes:
        raise PayloadError(f"safetensors __metadata__ of {size} bytes exceeds the limit of {max_metadata_bytes} bytes")
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        dtype = entry.get("dtype") if isinstance(entry, dict) else None
        if dtype not in _NUMPY_DTYPES:
            raise PayloadError(f"tensor {name!r} has dtype {dtype!r}; updates are float32 (F32)")
    return meta


def decode_update(body: bytes, *, max_metadata_bytes: int = 16384) -> tuple[UpdateMeta, dict[str, np.ndarray]]:
    """The metadata (``UPDATE_META_KEY`` → UpdateMeta) and delta arrays of one upload body; PayloadError if not."""
    raw = read_metadata(body, max_metadata_bytes=max_metadata_bytes).get(UPDATE_META_KEY)
    if raw is None:
        raise PayloadError(f"the safetensors __metadata__ has no {UPDATE_META_KEY!r} entry (UpdateMeta JSON)")
    try:
        meta = UpdateMeta.model_validate_json(raw)
    except ValidationError as exc:
        parts = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise PayloadError(f"invalid {UPDATE_META_KEY} metadata: {parts}") from exc
    return meta, decode_tensors(body)
