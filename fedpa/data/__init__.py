"""The data layer: loaders, open/private splits, feature encoders and a synthetic generator.

Torch-free (numpy and pandas only) so the CLI, benchmarks and tooling can use it without the ML
extra. The public contract is everything re-exported here.

Usage: ``ds = load_dataset("synthetic", seed=0)``; ``ds.private_train.x`` holds int64 codes.
"""

from fedpa.data.build import SPLIT_RULES, SplitRule, split_rule
from fedpa.data.dataset import SPLIT_NAMES, Dataset, Interactions, dataset_stats
from fedpa.data.formats import NUMERIC_PREFIX, write_generic_csv
from fedpa.data.loaders import DATA_DIR_ENV, DATASET_DEFAULTS, DATASET_NAMES, load_dataset
from fedpa.data.schema import CategoricalFeature, FeatureSchema
from fedpa.data.synthetic import SYNTHETIC_DEFAULTS, generate_synthetic

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
