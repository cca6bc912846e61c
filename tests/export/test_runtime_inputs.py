"""The runtime API refuses inputs a program would misread: foreign schemas, bad codes, wrong tensors."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from fedpa.data import CategoricalFeature, FeatureSchema
from fedpa.errors import BundleError


def test_encode_raw_values_matches_schema_encoding(bundle):
    schema = bundle.schema
    raw = {f.name: (list(f.vocabulary[:2]) if f.kind == "vocabulary" else [1, f.n_codes] if f.kind == "coded"
                    else [3.0, 1e6]) for f in schema.features}
    x = bundle.encoder().encode(raw)
    assert x.dtype == np.int64 and x.shape == (2, len(schema.features))
    for j, f in enumerate(schema.features):
        np.testing.assert_array_equal(x[:, j], f.encode(raw[f.name]))
    assert (x > 0).all()  # every value above is known (or in a bucket)


def test_encode_refuses_unknown_and_missing_features(bundle):
    names = bundle.schema.names
    raw = {n: ["1"] for n in names}
    with pytest.raises(BundleError, match=r"unknown features \['colour'\]"):
        bundle.encoder().encode({**raw, "colour": ["red"]})
    with pytest.raises(BundleError, match=rf"missing features \['{names[0]}'\]"):
        bundle.encoder().encode({n: v for n, v in raw.items() if n != names[0]})


def test_recode_reorders_and_remaps_vocabularies(bundle, dataset):
    # Prepare: the dataset's schema with one vocabulary grown and reordered (a later data pull)
    schema = dataset.schema
    j = next(i for i, f in enumerate(schema.features) if f.kind == "vocabulary")
    f = schema.features[j]
    grown = dataclasses.replace(f, vocabulary=("new-value", *reversed(f.vocabulary)))
    foreign = dataclasses.replace(schema, features=(*schema.features[:j], grown, *schema.features[j + 1:]))
    x = dataset.private_test.x[:50]
    raw_column = [f.vocabulary[c - 1] if c > 0 else None for c in x[:, j]]
    foreign_x = x.copy()
    foreign_x[:, j] = grown.encode(raw_column)
    foreign_x = np.concatenate([foreign_x, np.zeros((50, 1), np.int64)], axis=1)
    # (the last column's source: columns are ordered by source, and a full schema ends with history)
    last = foreign.features[-1].source
    extra = dataclasses.replace(foreign, features=(*foreign.features, CategoricalFeature("extra", "item", source=last)))
    # Execute
    recoded = bundle.encoder().recode(foreign_x, extra, allow_extra=True)
    # Assert: the bundle's own codes come back; "new-value" would be OOV
    np.testing.assert_array_equal(recoded, x)
    with pytest.raises(BundleError, match=r"unknown features \['extra'\]"):
        bundle.encoder().recode(foreign_x, extra)
    with pytest.raises(BundleError, match=r"feature schema mismatch: .*encodes differently"):
        bundle.encoder().check(foreign)


def test_recode_refuses_unmappable_encodings(bundle, dataset):
    schema = dataset.schema
    j = next(i for i, f in enumerate(schema.features) if f.kind == "bucketised")
    other = dataclasses.replace(schema.features[j], bucket_edges=(0.1, 0.2))
    foreign = FeatureSchema(features=(*schema.features[:j], other, *schema.features[j + 1:]),
                            group_attributes=schema.group_attributes)
    with pytest.raises(BundleError, match="cannot be mapped code by code; encode the raw values"):
        bundle.encoder().recode(np.zeros((1, len(schema.features)), np.int64), foreign)
    missing = FeatureSchema(features=schema.features[1:], group_attributes=schema.group_attributes[1:])
    with pytest.raises(BundleError, match=rf"missing features \['{schema.names[0]}'\]"):
        bundle.encoder().recode(np.zeros((1, len(missing.features)), np.int64), missing)


def test_scorer_refuses_bad_codes_and_tensors(bundle, helpers, rng):
    scorer = bundle.scorer("pte")
    tensors = helpers.personalisation(rng)
    x, _ = helpers.user_rows(0)
    bad = x.copy()
    bad[0, 2] = bundle.cardinalities[2]
    with pytest.raises(BundleError, match=rf"x\[0, 2\] = {bundle.cardinalities[2]} out of range"):
        scorer.score(bad, tensors)
    with pytest.raises(BundleError, match="shape"):
        scorer.score(x[:, :-1], tensors)
    with pytest.raises(BundleError, match="integer codes"):
        scorer.score(x.astype(np.float32), tensors)
    name = bundle.personalisation_names[0]
    with pytest.raises(BundleError, match=rf"missing \['{name}'\]"):
        scorer.score(x, {n: a for n, a in tensors.items() if n != name})
    with pytest.raises(BundleError, match=f"{name}.*shape"):
        scorer.score(x, {**tensors, name: np.zeros((2, 2), np.float32)})
    with pytest.raises(BundleError, match="unknown backend"):
        bundle.scorer("tflite")


def test_trainer_refuses_bad_batches(bundle, helpers):
    trainer = bundle.trainer()
    x, y = helpers.user_rows(0)
    with pytest.raises(BundleError, match="y must have shape"):
        trainer.step(x, y[:-1])
    with pytest.raises(BundleError, match=r"labels in \[0, 1\]"):
        trainer.step(x, y + 2)
    big = np.resize(x, (bundle.program("training").max_batch + 1, x.shape[1]))
    with pytest.raises(BundleError, match="exceeds the training program's max_batch"):
        trainer.step(big, np.zeros(len(big), np.float32))
    with pytest.raises(BundleError, match="learning rate"):
        trainer.lr = 0.0


def test_personalisation_assembly(bundle):
    groups = {a: 1 for a in bundle.schema.group_attributes}
    tensors = bundle.personalisation(groups)
    assert tuple(tensors) == bundle.personalisation_names
    bank = bundle.shared_state()
    for t in bundle.manifest.shared_state.for_groups(groups):
        np.testing.assert_array_equal(tensors[t.param], bank[t.name])
    with pytest.raises(BundleError, match="out of range"):
        bundle.personalisation({a: 99 for a in groups})
    download = {t.name: bank[t.name] for t in bundle.manifest.shared_state.for_groups(groups)}
    assert bundle.personalisation(groups, shared=download).keys() == tensors.keys()
    with pytest.raises(BundleError, match="shared state lacks"):
        bundle.personalisation({a: 0 for a in groups}, shared=download)


@pytest.mark.parametrize(("found", "shown"), [
    (CategoricalFeature("num_duration", "item", bucket_edges=(0.5, 1.0, 2.5)), "position 2: 2.5 vs bundle's 2"),
    (CategoricalFeature("num_duration", "item", bucket_edges=(0.5, 1.0)), "lacks the last 1 of the bundle's 3: 2"),
    (CategoricalFeature("num_duration", "item", vocabulary=("a",)), "vocabulary (2 codes) vs bundle's bucketised"),
    (CategoricalFeature("num_duration", "item", hash_buckets=8), "hashed (9 codes)"),
])
def test_schema_differences_show_what_differs(found, shown):
    """Two encodings with the same kind and size must not read the same (issue 17 item 8)."""
    from fedpa.runtime import schema_differences

    bundle = FeatureSchema((CategoricalFeature("num_duration", "item", bucket_edges=(0.5, 1.0, 2.0)),))

    diffs = schema_differences(bundle, FeatureSchema((found,)))

    assert len(diffs) == 1 and shown in diffs[0], diffs
