"""A small hand-written feature schema shared by the encoder tests of the data pipeline and the device."""

from __future__ import annotations

from fedpa.data import CategoricalFeature, FeatureSchema


def small_schema(*, group_attributes: tuple[str, ...] = ("level",)) -> FeatureSchema:
    """Two user features (one categorical, one ordinal), a categorical, a bucketed and a hashed item feature."""
    return FeatureSchema(
        features=(
            CategoricalFeature("age", "user", ("18-24", "25-34")),
            CategoricalFeature("level", "user", ("1", "3", "10")),
            CategoricalFeature("category", "item", ("a", "b")),
            CategoricalFeature("duration", "item", bucket_edges=(0.5, 2.25, 7.125)),
            CategoricalFeature("item_id_hash", "item", hash_buckets=64),
        ),
        group_attributes=group_attributes,
    )
