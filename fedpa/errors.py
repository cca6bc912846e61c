"""One error tree for the whole system (httpx style).

Every refusal the system makes is a subclass of :class:`FedPAError` whose message names the
offending value, so CLIs print it as is and the aggregator maps it to a 4xx in one handler.
"""

__all__ = [
    "BundleError",
    "ConfigError",
    "DataError",
    "FedPAError",
    "PayloadError",
    "PrivacyBudgetError",
    "PrivacyPolicyError",
    "SignatureError",
    "SyncError",
]


class FedPAError(Exception):
    """Base class of every error FedPA raises on purpose."""


class ConfigError(FedPAError, ValueError):
    """An option or configuration value is invalid (e.g. a rank of 0, ε ≤ 0)."""


class DataError(FedPAError, ValueError):
    """A data file is missing or malformed; the message names file, column and row."""


class PayloadError(FedPAError, ValueError):
    """A tensor payload (safetensors on the wire) has wrong names, shapes, dtypes or values."""


class BundleError(FedPAError):
    """An export bundle is missing a file, fails its hash check or has an unknown format."""


class PrivacyBudgetError(FedPAError):
    """An upload would spend more privacy (ε) than the device's configured budget."""


class PrivacyPolicyError(FedPAError):
    """A bundle's privacy settings fall below the device's own policy (σ floor, C ceiling, no LDP)."""


class SignatureError(BundleError):
    """A bundle is unsigned, signed by another key, or its signature does not match its manifest."""


class SyncError(FedPAError):
    """The aggregator refused a request or could not be reached after retries."""
