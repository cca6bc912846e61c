"""FedPA: federated adaptation of a foundation-model recommender.

This package is the one home of the method. Its torch-free modules (``errors``, ``state``,
``payload``, ``manifest``, ``metrics``, ``privacy``) are all the aggregator may import; the torch
modules (``model``, ``train``, ``runtime``, ``sim``) serve export, edge and experiments.
Importing ``fedpa`` itself never imports torch.
"""

from fedpa.errors import (
    BundleError,
    ConfigError,
    DataError,
    FedPAError,
    PayloadError,
    PrivacyBudgetError,
)

__all__ = [
    "BundleError",
    "ConfigError",
    "DataError",
    "FedPAError",
    "PayloadError",
    "PrivacyBudgetError",
]
__version__ = "0.1.0"
