"""The data layer: loaders, open/private splits, feature encoders and a synthetic generator.

Torch-free (numpy and pandas only) so the CLI, benchmarks and tooling can use it without the ML
extra. The public contract is everything re-exported here.

Usage: ``ds = load_dataset("synthetic", seed=0)``; ``ds.private_train.x`` holds int64 codes.
"""

from typing import TYPE_CHECKING

from fedpa.lazy import lazy_exports

if TYPE_CHECKING:  # what type checkers see; at run time each name is imported on first use (__getattr__)
    from fedpa.data.build import SPLIT_RULES, SplitRule, split_rule
    from fedpa.data.dataset import SPLIT_NAMES, Dataset, Interactions, dataset_stats
    from fedpa.data.formats import NUMERIC_PREFIX, write_generic_csv
    from fedpa.data.loaders import DATA_DIR_ENV, DATASET_DEFAULTS, DATASET_NAMES, load_dataset
    from fedpa.data.schema import CategoricalFeature, FeatureSchema
    from fedpa.data.synthetic import SYNTHETIC_DEFAULTS, generate_synthetic

# Why lazy: a device imports ``fedpa.data.schema`` (the feature schema its bundle carries), and Python
# runs this file first; eager re-exports would load the dataset loaders and builders onto every phone.
__getattr__, __dir__ = lazy_exports(__name__, {
    "build": ("SPLIT_RULES", "SplitRule", "split_rule"),
    "dataset": ("SPLIT_NAMES", "Dataset", "Interactions", "dataset_stats"),
    "formats": ("NUMERIC_PREFIX", "write_generic_csv"),
    "loaders": ("DATA_DIR_ENV", "DATASET_DEFAULTS", "DATASET_NAMES", "load_dataset"),
    "schema": ("CategoricalFeature", "FeatureSchema"),
    "synthetic": ("SYNTHETIC_DEFAULTS", "generate_synthetic"),
})


__all__ = [
    "DATASET_DEFAULTS",
    "DATASET_NAMES",
    "DATA_DIR_ENV",
    "NUMERIC_PREFIX",
    "SPLIT_NAMES",
    "SPLIT_RULES",
    "SYNTHETIC_DEFAULTS",
    "CategoricalFeature",
    "Dataset",
    "FeatureSchema",
    "Interactions",
    "SplitRule",
    "dataset_stats",
    "generate_synthetic",
    "load_dataset",
    "split_rule",
    "write_generic_csv",
]
