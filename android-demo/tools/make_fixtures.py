#!/usr/bin/env python3
"""Reference data for the Java host tests, written with the project's own Python code.

1. ``engine-<mode>.safetensors``: a small FedPA recommender (paper gate; residual gate with a
   private user-embedding delta) with *every* personalisation tensor randomised (so each branch
   and gradient is non-trivial), a batch of inputs, and what eager torch computes for it: logits,
   BCE loss (mean), the gradient of each personalisation tensor, and the tensors after 3 SGD steps.
   The Java engine must reproduce all of it.
2. ``roundtrip.safetensors`` + ``roundtrip.json``: tensors and metadata written by
   ``fedpa.payload.encode_tensors`` with their values in JSON, for the safetensors reader.
3. ``epsilon.json``: ``fedpa.privacy.epsilon_after`` for a grid of (sigma, rounds, delta);
   ``heterogeneous.json``: ``epsilon_of`` for ledgers of mixed sigma; ``signing/``: a manifest
   signed by ``fedpa.signing`` (and by another key) for the Java verifier.
4. ``perturbation.json``: ``fedpa.runtime.golden.perturbation`` and ``perturb`` (the golden
   vectors' personalisation formula) for a few seeds, indices and scales, as float32 bit patterns:
   the Java ``Golden.perturbation`` must reproduce every bit.
5. ``initial_bank.json``: the manifest's ``shared_state`` (tensors + initial law) of small FedPA
   models, random stored tensors, and the bank ``fedpa.state.SharedStateSpec.initial_bank`` makes
   of them, as float32 bit patterns: the Java ``SharedState.initialBank`` must reproduce every bit.
6. ``history.json``: a feature schema with history columns (``fedpa.signals``), a sequence of
   labelled rows and, before each is observed, ``HistoryState.codes`` of probe candidates, plus the
   final ``to_dict()``: the Java ``HistoryState`` must reproduce every code.

Usage: ``python tools/make_fixtures.py OUT_DIR``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from fedpa.model import AdapterConfig, Backbone, BackboneConfig, FedPARecommender, ParamGroup, parameter_groups
from fedpa.payload import encode_tensors

SGD_STEPS = 3
LR = 0.1


def perturbation_fixture() -> list[dict[str, object]]:
    """Golden-perturbation cases: (seed, index, scale, start) → float32 bits of the noise and of start + scale·noise."""
    from fedpa.runtime.golden import perturb, perturbation

    def bits(a: np.ndarray) -> list[int]:
        return [int(v) for v in np.asarray(a, dtype=np.float32).view(np.int32)]

    rng = np.random.default_rng(3)
    cases = []
    for seed, index, n, scale in ((0, 0, 64, 0.1), (1, 5, 33, 0.1), (4294967295, 17, 40, 0.37), (123456789, 2, 7, 1e-3)):
        start = rng.normal(0, 1, n).astype(np.float32)
        tensors = {f"t{i}": np.zeros(1, np.float32) for i in range(index)} | {"t": start}
        cases.append({"seed": seed, "index": index, "scale": float(np.float32(scale)),
                      "noise_bits": bits(perturbation(seed, index, n)), "start_bits": bits(start),
                      "perturbed_bits": bits(perturb(tensors, seed=seed, scale=scale)["t"])})
    return cases


def initial_bank_fixture() -> list[dict[str, object]]:
    """Initial-bank cases: (shared_state JSON, stored tensors) → the materialised bank, as float32 bits."""
    from fedpa.personalise import shared_state_spec

    def bits(a: np.ndarray) -> list[int]:
        return [int(v) for v in np.asarray(a, dtype=np.float32).reshape(-1).view(np.int32)]

    rng = np.random.default_rng(5)
    cases = []
    for seed, mode in ((7, "residual"), (4294967295, "paper")):
        spec = shared_state_spec(build(mode, private_emb=False, seed=1), seed=seed)
        shapes = {t.param: t.shape for t in spec.tensors}
        stored = {p: rng.normal(0, 1, shapes[p]).astype(np.float32) for p in spec.stored_names}
        bank = spec.initial_bank(stored)
        cases.append({"shared_state": json.loads(spec.model_dump_json()),
                      "stored": {p: {"shape": list(a.shape), "bits": bits(a)} for p, a in stored.items()},
                      "bank": {n: bits(a) for n, a in bank.items()}})
    return cases


def build(mode: str, *, private_emb: bool, seed: int) -> FedPARecommender:
    torch.manual_seed(seed)
    backbone = Backbone(BackboneConfig(cardinalities=(4, 3, 6, 7, 5), n_user_features=2, embedding_dim=4,
                                       hidden=(12, 6)))
    adapter = AdapterConfig(group_attributes=("u0", "u1"), group_cardinalities=(4, 3), rank=3, alpha=6.0,
                            gate_mode=mode, gate_hidden=5, private_user_embeddings=private_emb)
    model = FedPARecommender(backbone, adapter)
    groups = parameter_groups(model)
    with torch.no_grad():
        for g in (ParamGroup.PRIVATE, ParamGroup.GROUP, ParamGroup.GATE):
            for p in groups[g].values():
                p.copy_(torch.randn_like(p) * 0.3)  # B ≠ 0 and a non-uniform gate: every branch matters
    return model


def engine_fixture(model: FedPARecommender, n: int, seed: int) -> dict[str, np.ndarray]:
    gen = torch.Generator().manual_seed(seed)
    cards = model.backbone.config.cardinalities
    x = torch.stack([torch.randint(0, c, (n,), generator=gen) for c in cards], dim=1)
    y = (torch.rand(n, generator=gen) < 0.4).float()
    groups = parameter_groups(model)
    names = [n_ for g in (ParamGroup.PRIVATE, ParamGroup.GROUP, ParamGroup.GATE) for n_ in groups[g]]
    params = {n_: p for g in (ParamGroup.PRIVATE, ParamGroup.GROUP, ParamGroup.GATE) for n_, p in groups[g].items()}
    out: dict[str, np.ndarray] = {"x": x.numpy().astype(np.int64), "y": y.numpy()}
    out.update({f"frozen.{k}": v.detach().numpy() for k, v in groups[ParamGroup.FROZEN].items()})
    out.update({f"param.{k}": params[k].detach().numpy().copy() for k in names})
    logits = model(x)
    loss = F.binary_cross_entropy_with_logits(logits, y)
    grads = torch.autograd.grad(loss, [params[k] for k in names])
    out["logits"] = logits.detach().numpy()
    out["loss"] = loss.detach().reshape(1).numpy()
    out.update({f"grad.{k}": g.numpy() for k, g in zip(names, grads, strict=True)})
    opt = torch.optim.SGD([params[k] for k in names], lr=LR)
    for _ in range(SGD_STEPS):
        opt.zero_grad()
        F.binary_cross_entropy_with_logits(model(x), y).backward()
        opt.step()
    out.update({f"after.{k}": params[k].detach().numpy().copy() for k in names})
    out["lr"] = np.array([LR], np.float32)
    out["steps"] = np.array([SGD_STEPS], np.int64)
    return {k: np.ascontiguousarray(v) for k, v in out.items()}


def config_json(model: FedPARecommender) -> str:
    return json.dumps({"backbone": model.backbone.config.to_dict(), "adapter": model.config.to_dict()})


def history_fixture(seed: int) -> dict:
    """Rows observed one by one and the history codes of probe candidates before each (Python's reference)."""
    from fedpa.data.schema import CategoricalFeature, FeatureSchema
    from fedpa.signals import HistoryState, SignalSpec, fit_history_features, history_values_asof

    rng = np.random.default_rng(seed)
    spec = SignalSpec(prior_ctr=0.3, history_fields=("cat", "dur"))
    n = 300
    user = np.sort(rng.integers(0, 20, n))
    seen = np.arange(n) - np.searchsorted(user, user)  # every earlier row of the same user
    fit = history_values_asof(user, rng.integers(0, 6, (n, 2)), rng.integers(0, 2, n), seen, spec,
                              spec.history_fields)
    base = (CategoricalFeature("u0", "user", ("a", "b")), CategoricalFeature("cat", "item", tuple("pqrst")),
            CategoricalFeature("dur", "item", bucket_edges=(0.5, 1.5, 2.5)))
    schema = FeatureSchema(base + fit_history_features(fit, spec.history_fields, n_buckets=6), ("u0",),
                           signals=spec.to_dict())
    width = len(schema.features)

    def rows(k: int) -> np.ndarray:
        x = np.zeros((k, width), np.int64)
        x[:, 0], x[:, 1], x[:, 2] = 1, rng.integers(0, 6, k), rng.integers(0, 5, k)
        return x

    state = HistoryState.for_schema(schema)
    probe = rows(12)
    steps = []
    for _ in range(40):
        x, y = rows(1), float(rng.random() < 0.35)
        steps.append({"x": x[0].tolist(), "y": y, "probe_codes": state.codes(probe).tolist()})
        state.observe(x, [y])
    return {"feature_schema": schema.to_dict(), "probe": probe.tolist(), "steps": steps,
            "final_codes": state.codes(probe).tolist(), "state": state.to_dict()}


def main() -> int:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    for mode, private_emb, seed in (("paper", False, 1), ("residual", True, 2)):
        model = build(mode, private_emb=private_emb, seed=seed)
        data = engine_fixture(model, n=9, seed=seed + 10)
        (out / f"engine-{mode}.safetensors").write_bytes(encode_tensors(data, metadata={"config": config_json(model)}))

    rng = np.random.default_rng(3)
    tensors = {
        "layers.0.gate.w1": rng.normal(size=(5, 7)).astype(np.float32),
        "layers.0.groups.age.lora_A@3": rng.normal(size=(3, 7)).astype(np.float32),
        "one": np.array([2.5], np.float32),  # (0-d arrays become 1-d in encode_tensors: ascontiguousarray)
        "codes": np.array([[0, 1, -2], [3, 2**40, 5]], np.int64),
        "empty": np.zeros((0, 4), np.float32),
    }
    meta = {"fedpa.update": json.dumps({"nonce": "abcdefghijklmnop", "groups": {"age": 3}}), "note": "héllo"}
    (out / "roundtrip.safetensors").write_bytes(encode_tensors(tensors, metadata=meta))
    (out / "roundtrip.json").write_text(json.dumps({
        "tensors": {k: {"shape": list(v.shape), "values": v.ravel().tolist()} for k, v in tensors.items()},
        "metadata": meta,
    }))

    from fedpa.privacy import PrivacyConfig, epsilon_after

    grid = []
    for sigma in (0.5, 1.0, 1.1, 4.0):
        for rounds in (1, 5, 30):
            for delta in (1e-5, 1e-3):
                eps = epsilon_after(rounds, PrivacyConfig(noise_multiplier=sigma, delta=delta))
                grid.append({"sigma": sigma, "rounds": rounds, "delta": delta, "epsilon": eps})
    (out / "epsilon.json").write_text(json.dumps(grid))
    # heterogeneous ledgers: each upload composed with its own σ (replacement adjacency)
    from fedpa.privacy import Upload, epsilon_of

    ledgers = [[(0.5, 4), (5.0, 1)], [(7.0, 10), (2.0, 3)], [(1.1, 1), (4.0, 30), (0.8, 2)]]
    hetero = []
    for ledger in ledgers:
        for delta in (1e-5, 1e-3):
            uploads = [Upload("gaussian", s, 1.0) for s, n in ledger for _ in range(n)]
            hetero.append({"uploads": [[s, n] for s, n in ledger], "delta": delta,
                           "epsilon": epsilon_of(uploads, delta=delta)})
    (out / "heterogeneous.json").write_text(json.dumps(hetero))
    # publisher signatures made by fedpa.signing, for the Java verifier
    from fedpa.signing import generate_keypair, load_private_key, sign_manifest

    signing = out / "signing"
    key, _ = generate_keypair(signing / "publisher", overwrite=True)
    other, _ = generate_keypair(signing / "other", overwrite=True)
    manifest = json.dumps({"format_version": 1, "model_id": "m", "model_version": 3}).encode()
    (signing / "manifest.json").write_bytes(manifest)
    (signing / "manifest.sig").write_bytes(sign_manifest(manifest, load_private_key(key)))
    (signing / "manifest.sig-other").write_bytes(sign_manifest(manifest, load_private_key(other)))

    (out / "perturbation.json").write_text(json.dumps(perturbation_fixture()))
    (out / "initial_bank.json").write_text(json.dumps(initial_bank_fixture()))
    (out / "history.json").write_text(json.dumps(history_fixture(seed=7)))
    print(f"fixtures written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
