"""REST client of the aggregator (docs/api.md) with retries, for devices, fleets and admin scripts.

Phones lose the network all the time, so every call retries transport errors, 5xx and 429 with
exponential backoff and jitter, then gives up with :class:`ServerUnreachable`. A 4xx is the
server's considered answer and is never retried: it becomes :class:`Refused` carrying the
server's error code, so the caller decides (a stale base version means "download and try again
next round"; a replayed nonce means the server already holds the upload).

Usage: ``client = AggregatorClient("http://127.0.0.1:8000"); client.health()``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from edge.store import atomic_write
from fedpa.errors import BundleError, SyncError
from fedpa.manifest import parse_manifest, read_manifest
from fedpa.payload import decode_tensors
from fedpa.wire import (
    GROUPS_PARAM,
    MANIFEST_NAME,
    MODEL_VERSION_HEADER,
    SIGNATURE_NAME,
    STATE_VERSION_HEADER,
    ErrorCode,
    GroupSelection,
    encode_groups,
)

__all__ = ["ROTATE_AT", "AggregatorClient", "DeviceToken", "Refused", "RetryPolicy", "ServerUnreachable",
           "StateDownload"]

log = logging.getLogger(__name__)


class ServerUnreachable(SyncError):
    """The aggregator could not be reached (or kept failing with 5xx/429) after all retries."""


class Refused(SyncError):
    """The aggregator answered with a 4xx: it stored nothing, and resending the same request won't help.

    ``code`` is the body's ``error`` as sent; compare it with :class:`fedpa.wire.ErrorCode` members
    (a ``StrEnum``: equal to their strings), exactly, never by searching the human-readable
    ``detail``. A code this client does not know (from a newer server) is neither stale nor replayed.
    """

    def __init__(self, status: int, code: str, detail: str, *, method: str, url: str) -> None:
        super().__init__(f"{method} {url} refused with {status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail

    @property
    def stale(self) -> bool:
        """409 because the device trained on an old shared state (or runs an old model version)."""
        return self.status == 409 and self.code in (ErrorCode.STALE_BASE, ErrorCode.MODEL_VERSION_MISMATCH)

    @property
    def replayed(self) -> bool:
        """409 because this nonce was already accepted: the upload is on the server."""
        return self.status == 409 and self.code == ErrorCode.REPLAYED_NONCE


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff: delay ``base · factor^attempt`` capped at ``max_delay``, ±``jitter``."""

    attempts: int = 6
    base_delay: float = 0.2
    factor: float = 2.0
    max_delay: float = 10.0
    jitter: float = 0.25  # fraction of the delay; spreads a fleet's retries so they don't stampede

    def delay(self, attempt: int, rng: random.Random) -> float:
        d = min(self.max_delay, self.base_delay * self.factor**attempt)
        return d * (1.0 + self.jitter * (2.0 * rng.random() - 1.0))


@dataclass(frozen=True)
class StateDownload:
    """The shared tensors of one device's groups (None when the server answered 304 Not Modified)."""

    tensors: dict[str, np.ndarray] | None
    state_version: int
    model_version: int
    etag: str | None
    nbytes: int


_RETRY_STATUS = {408, 429, 500, 502, 503, 504}  # 408: the server timed out a slow body
_REGISTER, _ROTATE = "/v1/devices", "/v1/devices/token"
# A device token is rotated once this fraction of its lifetime has passed: early enough that a
# device offline for a while still finds it valid, late enough not to rotate on every call.
ROTATE_AT = 0.75


@dataclass(frozen=True)
class DeviceToken:
    """A device's bearer token, when it was received and when the server stops accepting it."""

    device_id: str
    token: str
    issued_at: float  # the device's clock when the token arrived
    expires_at: float | None  # the server's ``expires_at`` (unix time); None: never

    def rotation_due(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.issued_at + ROTATE_AT * (self.expires_at - self.issued_at)


class AggregatorClient:
    """Thin typed wrapper over the endpoints of docs/api.md; inject ``http`` in tests."""

    def __init__(self, base_url: str, *, token: str | None = None, http: httpx.Client | None = None,
                 retry: RetryPolicy | None = None, timeout: float = 30.0,
                 sleep: Callable[[float], None] = time.sleep, seed: int | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        # Set by register()/rotate_token() or by a device restoring its store: with it, the client
        # rotates the token before it expires and re-registers when the server says it expired.
        self.identity: DeviceToken | None = None
        self.model_id: str | None = None  # the model registered for (re-registration)
        self.on_token: Callable[[DeviceToken], None] | None = None  # a device persists every new token
        self._clock = clock
        self._own_http = http is None
        self.http = http or httpx.Client(timeout=timeout)
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self._rng = random.Random(seed)
        self.bytes_up = 0
        self.bytes_down = 0

    def close(self) -> None:
        if self._own_http:
            self.http.close()

    def __enter__(self) -> AggregatorClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ core

    def request(self, method: str, path: str, *, token: str | None = None, ok: tuple[int, ...] = (200,),
                **kwargs: Any) -> httpx.Response:
        """One call with retries; returns a response whose status is in ``ok`` or raises.

        With the device's own token (``identity``): rotated first when 3/4 of its lifetime has
        passed, and on 401 ``token_expired`` (the device was offline past ``expires_at``; an
        expired token cannot rotate) the device registers again for its model and the call is
        sent once more — where registration needs credentials the client does not hold
        (enrollment keys, admin-issued tokens), that registration's refusal is raised.
        """
        own = token is None and self.identity is not None and self.token == self.identity.token
        if own and path not in (_REGISTER, _ROTATE) and self.identity is not None \
                and self.identity.rotation_due(self._clock()):
            self.rotate_token()
        try:
            return self._send(method, path, token=token, ok=ok, **kwargs)
        except Refused as exc:
            if not (own and exc.code == ErrorCode.TOKEN_EXPIRED and self.model_id and path != _REGISTER):
                raise
            log.warning("device token expired (%s); registering again for model %s", exc.detail, self.model_id)
            self.token = None  # the expired token is no credential for registering
            self.register(self.model_id)
            return self._send(method, path, token=None, ok=ok, **kwargs)

    def _send(self, method: str, path: str, *, token: str | None, ok: tuple[int, ...], **kwargs: Any) -> httpx.Response:
        url = f"{self.base_url}{path}"
        headers = dict(kwargs.pop("headers", {}) or {})
        auth = token or self.token
        if auth:
            headers["Authorization"] = f"Bearer {auth}"
        last: str = ""
        for attempt in range(self.retry.attempts):
            wait_at_least = 0.0
            try:
                response = self.http.request(method, url, headers=headers, **kwargs)
            except httpx.TransportError as exc:  # connect refused, reset, timeout: try again
                last = f"{type(exc).__name__}: {exc}"
            else:
                self.bytes_down += len(response.content)
                self.bytes_up += _request_size(response.request)
                if response.status_code in ok:
                    return response
                if response.status_code not in _RETRY_STATUS and 400 <= response.status_code < 500:
                    code, detail = _error_body(response)
                    raise Refused(response.status_code, code, detail, method=method, url=url)
                last = f"HTTP {response.status_code}"
                wait_at_least = _retry_after(response)
            if attempt + 1 < self.retry.attempts:
                delay = max(wait_at_least, self.retry.delay(attempt, self._rng))
                log.info("%s %s failed (%s); retry %d in %.2fs", method, url, last, attempt + 1, delay)
                self._sleep(delay)
        raise ServerUnreachable(f"{method} {url} failed after {self.retry.attempts} attempts: {last}")

    def request_json(self, method: str, path: str, *, ok: tuple[int, ...] = (200,), **kwargs: Any) -> dict[str, Any]:
        """:meth:`request` for the endpoints that answer a JSON object (docs/api.md); anything else
        from a 2xx is the server breaking the contract, a :class:`SyncError` naming the call."""
        response = self.request(method, path, ok=ok, **kwargs)
        try:
            body = response.json()
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
            raise SyncError(f"{method} {response.request.url}: the answer is not JSON ({exc})") from exc
        if not isinstance(body, dict):
            raise SyncError(f"{method} {response.request.url}: expected a JSON object, got {type(body).__name__}")
        return body

    # ------------------------------------------------------------------ endpoints

    def health(self) -> dict[str, Any]:
        return self.request_json("GET", "/healthz")

    def register(self, model_id: str) -> tuple[str, str]:
        """A new device identity scoped to ``model_id``; stores the token for later calls."""
        body = self.request_json("POST", _REGISTER, json={"model_id": model_id}, ok=(200, 201))
        self.model_id = model_id
        identity = self._new_token(body)
        return identity.device_id, identity.token

    def rotate_token(self) -> DeviceToken:
        """Replace the device token by a fresh one (``POST /v1/devices/token``, new ``expires_at``)."""
        return self._new_token(self.request_json("POST", _ROTATE, ok=(200, 201)))

    def _new_token(self, body: Mapping[str, Any]) -> DeviceToken:
        try:
            expires = body.get("expires_at")
            identity = DeviceToken(device_id=str(body["device_id"]), token=str(body["token"]),
                                   issued_at=self._clock(), expires_at=None if expires is None else float(expires))
        except (KeyError, TypeError, ValueError) as exc:
            raise SyncError(f"{self.base_url}: the token answer lacks device_id/token/expires_at ({exc!r})") from exc
        self.token, self.identity = identity.token, identity
        if self.on_token is not None:
            self.on_token(identity)
        return identity

    def manifest(self, model_id: str) -> dict[str, Any]:
        return self.request_json("GET", f"/v1/models/{model_id}")

    def manifest_bytes(self, model_id: str) -> bytes:
        """``manifest.json`` byte for byte as published (what the publisher's signature covers)."""
        return self.request("GET", f"/v1/models/{model_id}").content

    def signature(self, model_id: str) -> bytes | None:
        """The bundle's ``manifest.sig`` as published, or None when the model was published unsigned."""
        try:
            return self.file(model_id, SIGNATURE_NAME)
        except Refused as exc:
            if exc.status == 404:
                return None
            raise

    def file(self, model_id: str, name: str) -> bytes:
        return self.request("GET", f"/v1/models/{model_id}/files/{name}").content

    def download_bundle(self, model_id: str, dest: str | Path) -> Path:
        """Every file the manifest lists, ``manifest.json`` (exact bytes) and ``manifest.sig`` if published.

        The manifest is validated first (so a hostile one cannot name a path outside ``dest``) and
        each file's size and sha256 are checked before it is written; BundleError otherwise. The
        signature is *not* checked here: the device does that against the key it pins.
        """
        dest = Path(dest)
        manifest_bytes = self.manifest_bytes(model_id)
        try:
            raw = json.loads(manifest_bytes)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise BundleError(f"{self.base_url} model {model_id!r}: manifest is not valid JSON ({exc})") from exc
        manifest = parse_manifest(raw, source=f"{self.base_url} model {model_id!r}")
        signature = self.signature(model_id)
        dest.mkdir(parents=True, exist_ok=True)
        for name, entry in manifest.files.items():
            content = self.file(model_id, name)
            digest = hashlib.sha256(content).hexdigest()
            if len(content) != entry.size or digest != entry.sha256:
                raise BundleError(f"{self.base_url}: bundle file {name!r} of {model_id!r} arrived with "
                                  f"{len(content)} bytes, sha256 {digest}; the manifest says {entry.size}, "
                                  f"{entry.sha256}")
            atomic_write(dest / name, content)
        if signature is not None:
            atomic_write(dest / SIGNATURE_NAME, signature)
        atomic_write(dest / MANIFEST_NAME, manifest_bytes)
        return dest

    def state(self, model_id: str, groups: GroupSelection | None = None, *,
              etag: str | None = None) -> StateDownload:
        """Gate + the groups' adapters (wire names; a value ``"*"`` = all of that attribute's);
        ``etag`` turns an unchanged state into a 304."""
        params = {GROUPS_PARAM: encode_groups(groups)} if groups is not None else {}
        headers = {"If-None-Match": etag} if etag else {}
        r = self.request("GET", f"/v1/models/{model_id}/state", params=params, headers=headers, ok=(200, 304))
        tensors = None if r.status_code == 304 else decode_tensors(r.content)
        return StateDownload(
            tensors=tensors,
            state_version=int(r.headers.get(STATE_VERSION_HEADER, -1)),
            model_version=int(r.headers.get(MODEL_VERSION_HEADER, -1)),
            etag=r.headers.get("ETag", etag),
            nbytes=len(r.content),
        )

    def upload(self, model_id: str, body: bytes) -> dict[str, Any]:
        """POST one update (``fedpa.wire.encode_update``); 202 → the server's receipt."""
        return self.request_json("POST", f"/v1/models/{model_id}/updates", content=body, ok=(200, 201, 202),
                                 headers={"Content-Type": "application/octet-stream"})

    def status(self, model_id: str) -> dict[str, Any]:
        return self.request_json("GET", f"/v1/models/{model_id}/status")

    def aggregate(self, model_id: str) -> dict[str, Any]:
        """Admin: close the current round now."""
        return self.request_json("POST", f"/v1/models/{model_id}/aggregate", ok=(200, 201, 202))

    def publish(self, bundle_dir: str | Path, *, config: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Admin: upload every file of a bundle (multipart, docs/api.md) → model id/version."""
        bundle_dir = Path(bundle_dir)
        manifest = read_manifest(bundle_dir)
        signed = [SIGNATURE_NAME] if (bundle_dir / SIGNATURE_NAME).is_file() else []
        names = [MANIFEST_NAME, *signed, *manifest.files]
        files = [("files", (name, (bundle_dir / name).read_bytes(), "application/octet-stream")) for name in names]
        data = {"config": json.dumps(dict(config))} if config else None
        return self.request_json("POST", "/v1/models", files=files, data=data, ok=(200, 201))


def _retry_after(response: httpx.Response) -> float:
    """Seconds a 429/503 asks us to wait (0 when absent or an HTTP date we don't parse)."""
    try:
        return max(0.0, float(response.headers.get("Retry-After", 0)))
    except ValueError:
        return 0.0


def _request_size(request: httpx.Request) -> int:
    try:
        return len(request.content)
    except httpx.RequestNotRead:  # streamed multipart: count what we can
        return 0


def _error_body(response: httpx.Response) -> tuple[str, str]:
    try:
        body = response.json()
    except ValueError:
        return ErrorCode.HTTP_ERROR, response.text[:500]
    if isinstance(body, dict):
        detail = body.get("detail", "")
        return str(body.get("error", ErrorCode.HTTP_ERROR)), detail if isinstance(detail, str) else str(detail)
    return ErrorCode.HTTP_ERROR, str(body)[:500]
