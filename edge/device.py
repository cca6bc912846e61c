"""One device: download and verify the bundle, train locally, upload a private (LDP) update.

A round on a device (docs/design.md §3, §4):

1. fetch the whole shared bank (``GET …/state?groups=attr:*,…``: the download does not reveal the
   device's groups) and keep the gate and its own groups' adapters;
2. refuse early if one more upload would exceed the ε budget (nothing is trained or sent): the
   accountant composes what this device actually applied to every upload it ever sent (the
   store's ledger), at the device's δ and budget (:class:`~fedpa.privacy.DevicePolicy`);
3. train private adapter + gate + group adapters with the bundle's **training program**
   (ExecuTorch runtime), mini-batches from :func:`fedpa.schedule.local_batches`; a run that
   diverged (:func:`fedpa.schedule.diverged_run`) is discarded: the adapters stay as they were
   and the round's update is zero (still clipped and noised, so it looks like any other);
4. deltas of the shared tensors only → clip to C → noise (``fedpa.privacy.clip_and_noise``, a fresh
   OS-entropy generator per upload unless a simulation passes ``noise_seed``);
5. stage the upload in the local store (ε charged here, once), then POST it; on 2xx the round's
   private adapter becomes current, on a 4xx the local state is left exactly as before the round.

The private adapter exists only in ``private.safetensors`` and the training program's inputs;
nothing that builds a request ever reads it. A bundle is installed only if it is signed by the
pinned publisher key (``trust_key``), is not older than the installed model version, and its
privacy settings satisfy the device's policy.

Usage: ``device = Device(store, client, model_id="demo", policy=DevicePolicy(), trust_key=key); device.setup()``.
"""

from __future__ import annotations

import logging
import math
import secrets
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from edge.client import AggregatorClient, DeviceToken, Refused, ServerUnreachable
from edge.programs import LocalPrograms
from edge.signals import item_vectors_for
from edge.store import AppliedPrivacy, DeviceState, LocalStore, PendingUpload
from fedpa.errors import BundleError, ConfigError, PrivacyBudgetError, PrivacyPolicyError
from fedpa.manifest import Manifest, read_manifest
from fedpa.privacy import UNBOUNDED, DevicePolicy, PrivacyConfig, clip_and_noise, report_example_count, secure_rng
from fedpa.protocol import UpdateMeta, UpdatePrivacy
from fedpa.schedule import LocalTraining, diverged_run, round_rng
from fedpa.signing import PublicKey, verify_bundle_signature
from fedpa.wire import ALL_VALUES, MANIFEST_NAME, ErrorCode, encode_update

__all__ = ["UNBOUNDED", "Device", "LocalTraining", "RoundResult"]

log = logging.getLogger(__name__)

RoundStatus = Literal["accepted", "stale", "refused", "skipped"]


@dataclass
class RoundResult:
    status: RoundStatus
    base_version: int
    example_count: int = 0
    loss: float = float("nan")
    epsilon: float = 0.0
    bytes_up: int = 0
    bytes_down: int = 0
    clip_norm_before: float = float("nan")
    skipped_steps: int = 0  # local SGD steps not applied: non-finite loss or gradient
    discarded: str = ""  # why the local run diverged and was not used (fedpa.schedule.diverged_run); "" if used
    receipt: dict[str, Any] = field(default_factory=dict)
    detail: str = ""


class Device:
    """A phone's FedPA client over a local store and an aggregator connection."""

    def __init__(self, store: LocalStore, client: AggregatorClient, *, model_id: str,
                 privacy: PrivacyConfig | None = None, policy: DevicePolicy | None = None,
                 trust_key: PublicKey | None = None, training: LocalTraining | None = None,
                 programs: Callable[[Path], LocalPrograms] = LocalPrograms.open,
                 noise_seed: int | None = None, backend: str = "pte") -> None:
        self.store = store
        self.client = client
        self.model_id = model_id
        self.privacy = privacy  # None: LDP off (simulation parity, debugging) — raw deltas are sent
        # The device's own floor and budget: bundles below it are refused, its δ and ε budget are
        # the accountant's (None: the privacy config's own budget, for simulations and tests).
        self.policy = policy
        self.trust_key = trust_key  # None: unsigned bundles are accepted (CLIs require --allow-unsigned)
        self.training = training or LocalTraining()
        self._open_programs = programs  # a fleet passes a cache so its devices share loaded programs
        self._programs: LocalPrograms | None = None
        # Real devices draw noise from OS entropy: seeded noise is predictable noise. Simulated
        # fleets pass a seed so a run is reproducible and matches fedpa.sim's noise stream.
        self.noise_seed = noise_seed
        self.backend = backend
        self._shared: dict[str, np.ndarray] | None = None  # wire names, last downloaded
        self._etag: str | None = None
        self._cached: tuple[int, str | None] | None = None  # (version, etag) in the store's shared.safetensors
        self._needs_setup = False
        st = store.state
        if st.token:
            client.token = st.token
            if st.device_id is not None:
                # A store written before expiries were kept has no issue time: its token is never
                # rotated, only replaced by registering again once the server says it expired.
                issued = st.token_issued_at
                client.identity = DeviceToken(st.device_id, st.token, 0.0 if issued is None else issued,
                                              None if issued is None else st.token_expires_at)
                client.model_id = st.model_id
        client.on_token = self._token_changed

    # ------------------------------------------------------------------ setup

    def _token_changed(self, token: DeviceToken) -> None:
        """Persist a rotated (or re-registered) token at once: the old one stops working."""
        st = self.store.state
        st.device_id, st.token = token.device_id, token.token
        st.token_issued_at, st.token_expires_at = token.issued_at, token.expires_at
        self.store.commit()

    @property
    def state(self) -> DeviceState:
        return self.store.state

    @property
    def bundle_dir(self) -> Path:
        return self.store.root / "bundle"

    def setup(self, *, groups: Mapping[str, int] | None = None, user: str | None = None) -> None:
        """Register (once), download and verify the bundle (once per model version), set groups."""
        st = self.store.state
        changed = False
        if groups is not None and dict(groups) != st.groups:
            st.groups = {k: int(v) for k, v in groups.items()}
            changed = True
        if user is not None and user != st.user:
            st.user, changed = user, True
        if st.token is None or st.model_id != self.model_id or st.server != self.client.base_url:
            st.device_id, st.token = self.client.register(self.model_id)
            st.model_id, st.server = self.model_id, self.client.base_url
            changed = True
        self.client.token = st.token
        remote = self.client.manifest(self.model_id)
        if st.model_version != remote["model_version"] or not (self.bundle_dir / MANIFEST_NAME).is_file():
            st.model_version = self._download_bundle()
            changed = True
        if changed:
            self.store.commit()

    def _download_bundle(self) -> int:
        """Into a fresh folder, verified, then swapped in: a crash never leaves half a bundle in use.

        Refused (nothing installed): a signature that is not the pinned key's, a model version
        older than the installed one, privacy settings below the device's policy. Returns the
        installed model version.
        """
        incoming = self.store.root / "bundle.incoming"
        shutil.rmtree(incoming, ignore_errors=True)
        before = self.client.bytes_down
        try:
            self.client.download_bundle(self.model_id, incoming)
            self.store.state.bytes_down += self.client.bytes_down - before
            manifest = self._check_incoming(incoming)
        except BaseException:
            shutil.rmtree(incoming, ignore_errors=True)
            raise
        old = self.store.root / "bundle.old"
        shutil.rmtree(old, ignore_errors=True)
        if self.bundle_dir.exists():
            self.bundle_dir.rename(old)
        incoming.rename(self.bundle_dir)
        shutil.rmtree(old, ignore_errors=True)
        self._programs = None
        self.store.save_private(self.programs.private_init())  # a new model starts a new adapter
        return manifest.model_version

    def _check_incoming(self, incoming: Path) -> Manifest:
        if self.trust_key is not None:
            verify_bundle_signature(incoming, self.trust_key)  # SignatureError: unsigned, re-signed, tampered
        manifest = read_manifest(incoming)  # every file's sha256, or BundleError
        st = self.store.state
        if manifest.model_id != self.model_id:
            raise BundleError(f"{self.client.base_url}: asked for model {self.model_id!r}, the bundle is "
                              f"{manifest.model_id!r}")
        if st.model_id == self.model_id and st.model_version is not None and manifest.model_version < st.model_version:
            raise BundleError(f"{self.client.base_url}: model {self.model_id!r} version {manifest.model_version} is "
                              f"older than the installed version {st.model_version}; refusing the downgrade")
        if self.policy is not None:
            self.policy.config_for(manifest.privacy)  # PrivacyPolicyError: below this device's floor
        return manifest

    @property
    def programs(self) -> LocalPrograms:
        if self._programs is None:
            self._programs = self._open_programs(self.bundle_dir)
        return self._programs

    @property
    def manifest(self) -> Manifest:
        return self.programs.manifest

    # ------------------------------------------------------------------ tensors

    def private(self) -> dict[str, np.ndarray]:
        stored = self.store.load_private()
        return stored if stored is not None else self.programs.private_init()

    def sync_state(self) -> int:
        """Download the gate + this device's group adapters if they changed; returns the state version."""
        before = self.client.bytes_down
        spec = self.manifest.shared_state
        everything = {a: ALL_VALUES for a in spec.attributes}  # the whole bank: the request names no group of ours
        dl = self.client.state(self.model_id, everything, etag=self._etag if self._shared else None)
        self.state.bytes_down += self.client.bytes_down - before
        if dl.tensors is not None:
            mine = {t.name for t in spec.for_groups(self.state.groups)}
            kept = {n: a for n, a in dl.tensors.items() if n in mine}
            spec.validate(kept, groups=self.state.groups)
            if set(dl.tensors) != {t.name for t in spec.tensors}:
                raise BundleError(f"{self.client.base_url}: the shared-state download is not the whole bank "
                                  f"of {self.model_id!r}")
            if (dl.state_version, dl.etag) != self._cached:  # rewrite the offline cache only on change
                self.store.save_shared(kept, version=dl.state_version, etag=dl.etag)
                self._cached = (dl.state_version, dl.etag)
            self._shared, self._etag = kept, dl.etag
        self.state.last_state_version = dl.state_version
        return dl.state_version

    def personalisation(self, *, offline: bool = False) -> dict[str, np.ndarray]:
        """Private adapter + gate + this device's group adapters, by model parameter name.

        ``offline`` uses the last downloaded shared state (a phone ranks without a network).
        """
        if self._shared is None and offline:
            cached = self.store.load_shared()
            if cached is None:
                raise ConfigError(f"{self.store.root}: no shared state downloaded yet; run a round online first")
            self._shared = cached[0]
        if self._shared is None:
            self.sync_state()
        assert self._shared is not None
        return {**self.private(), **self.manifest.shared_state.to_params(self._shared)}

    def item_vectors(self, x: np.ndarray) -> np.ndarray | None:
        """The programs' ``item_vector`` input for rows ``x`` (None when the bundle embeds item codes itself).

        The vectors come from the item rows this device fetched (``edge.signals``, cached by code).
        """
        spec = self.manifest.item_vectors
        if spec is None or len(x) == 0:
            return None
        return item_vectors_for(self.store, x, column=spec.column, digest=spec.sha256)

    def score(self, x: np.ndarray, *, offline: bool = False) -> np.ndarray:
        """Logits of encoded candidate rows ``[N, F]`` with the current personalisation."""
        x = np.asarray(x, np.int64)
        return self.programs.score(x, self.personalisation(offline=offline), backend=self.backend,
                                   item_vector=self.item_vectors(x))

    def recommend(self, candidates: np.ndarray, *, k: int = 10, offline: bool = False
                  ) -> tuple[np.ndarray, np.ndarray]:
        """Indices (into ``candidates``) and logits of the top-k rows."""
        logits = self.score(candidates, offline=offline)
        top = np.argsort(-logits, kind="stable")[:k]
        return top, logits[top]

    # ------------------------------------------------------------------ one round

    def run_round(self) -> RoundResult:
        """Resume a pending upload if there is one, else train and upload one update."""
        if self.state.pending is not None:
            return self._send_pending()
        if self._needs_setup:
            self.setup()
            self._needs_setup = False
        if not self.state.groups:
            raise ConfigError("device has no groups: call setup(groups=...) first")
        data = self.store.load_log()
        if data is None or len(data[1]) == 0:
            return RoundResult("skipped", self.state.last_state_version or 0, detail="no local interactions")
        x, y, _ = data
        applied = self._applied()
        eps = self._epsilon_for_next(applied)  # PrivacyBudgetError here: nothing trained, nothing sent
        base_version = self.sync_state()
        assert self._shared is not None
        spec = self.manifest.shared_state
        shared = spec.to_params(self._shared)
        t = self.training
        round_index = self.state.rounds_completed + self.state.refused  # this device's n-th training round
        batches = t.batches(len(y), round=round_index)
        start = {**self.private(), **shared}
        trained, loss, skipped = self.programs.train(start, x, y, batches, lr=t.lr,
                                                     item_vector=self.item_vectors(x))
        discarded = diverged_run(loss, skipped, trained)
        if discarded is not None:
            # Keep the previous adapters and send a zero change. Under LDP it is still clipped and
            # noised like any upload: the server cannot tell it apart (skipping the upload would
            # reveal a data-dependent event the accountant does not cover), and ε is charged as usual.
            log.warning("device %s: local run diverged (%s); previous adapters kept, zero update sent",
                        self.state.device_id, discarded)
            trained = start
        deltas = spec.from_params({p: trained[p] - shared[p] for p in shared}, groups=self.state.groups)
        rng = (round_rng(self.noise_seed, t.client, round_index, stream=1) if self.noise_seed is not None
               else secure_rng())
        upload, privacy, norm = self._privatise(deltas, applied, eps, rng)
        nonce = secrets.token_urlsafe(24)
        meta = UpdateMeta(model_id=self.model_id, model_version=int(self.state.model_version or 1),
                          base_version=base_version, groups=self.state.groups,
                          example_count=report_example_count(len(y)), nonce=nonce, privacy=privacy)
        body = encode_update(upload, meta)
        new_private = {p: trained[p] for p in start if p not in shared}
        # without LDP there is no finite ε to claim: the device records it as infinite
        spent = eps if applied is not None and applied.mechanism != "none" else math.inf
        record: AppliedPrivacy = {"mechanism": privacy.mechanism, "noise_multiplier": privacy.noise_multiplier,
                                  "clip_norm": privacy.clip_norm}
        pending = PendingUpload(nonce=nonce, base_version=base_version, round=self.state.rounds_completed,
                                example_count=len(y), epsilon_after=spent, created_at=time.time(), applied=record)
        self.store.stage_upload(pending, body, new_private)
        result = self._send_pending()
        result.loss, result.clip_norm_before, result.skipped_steps = loss, norm, skipped
        result.discarded = discarded or ""
        return result

    def _applied(self) -> PrivacyConfig | None:
        """The settings this round applies: the configured ones under the device's policy.

        With a policy, σ must clear its floor for the bundle's planned rounds, C its ceiling, and
        δ and the ε budget are the policy's (a server or bundle never sets them).
        """
        p = self.privacy
        if p is None or self.policy is None:
            return p
        if p.mechanism == "none":
            raise PrivacyPolicyError("this device's privacy policy requires noise on every upload (mechanism 'none')")
        settings = self.manifest.privacy.model_copy(update={"mechanism": p.mechanism})
        return self.policy.config_for(settings, noise_multiplier=p.noise_multiplier, clip_norm=p.clip_norm)

    def _epsilon_for_next(self, applied: PrivacyConfig | None) -> float:
        """ε after this upload, composed over every upload this device sent; refuses past the budget."""
        if applied is None or applied.mechanism == "none":
            budget = self.policy.epsilon_budget if self.policy is not None else None
            if budget is not None:
                raise PrivacyBudgetError(f"an upload without noise has unbounded ε, past this device's budget "
                                         f"ε={budget:g}; nothing was trained or sent")
            return UNBOUNDED
        return min(applied.check_budget(self.store.uploads()), UNBOUNDED)

    def _privatise(self, deltas: dict[str, np.ndarray], p: PrivacyConfig | None, eps: float,
                   rng: np.random.Generator) -> tuple[dict[str, np.ndarray], UpdatePrivacy, float]:
        norm = float(np.sqrt(sum(float(np.square(d, dtype=np.float64).sum()) for d in deltas.values())))
        if p is None:
            raw = {k: v.astype(np.float32) for k, v in deltas.items()}
            return raw, UpdatePrivacy.applied(None, epsilon_spent=eps), norm
        noised, report = clip_and_noise(deltas, clip_norm=p.clip_norm, noise_multiplier=p.noise_multiplier,
                                        rng=rng, mechanism=p.mechanism)
        return noised, UpdatePrivacy.applied(p, epsilon_spent=eps), report.norm_before

    def _send_pending(self) -> RoundResult:
        pending = self.state.pending
        assert pending is not None
        body = self.store.pending_body()
        record = {"round": pending.round, "base_version": pending.base_version, "nonce": pending.nonce,
                  "epsilon": pending.epsilon_after, "bytes": len(body)}
        result = RoundResult("accepted", pending.base_version, example_count=pending.example_count,
                             epsilon=pending.epsilon_after, bytes_up=len(body))
        try:
            result.receipt = self.client.upload(self.model_id, body)
        except Refused as exc:
            if exc.replayed:  # our earlier attempt got through; only its answer was lost
                self.store.finish_upload(accepted=True, record={**record, "status": "accepted (replay)"})
                return result
            status: RoundStatus = "stale" if exc.stale else "refused"
            self.store.finish_upload(accepted=False, record={**record, "status": status, "detail": str(exc)})
            if exc.stale:
                self._shared, self._etag = None, None  # re-download before the next round
            if exc.code == ErrorCode.MODEL_VERSION_MISMATCH:
                self._needs_setup = True  # a newer model was published: fetch its bundle first
            log.warning("device %s: upload refused: %s", self.state.device_id, exc)
            result.status, result.detail = status, str(exc)
            return result
        except ServerUnreachable:
            log.warning("device %s: server unreachable; upload %s kept for resume",
                        self.state.device_id, pending.nonce)
            raise
        self.store.finish_upload(accepted=True, record={**record, "status": "accepted"})
        return result

