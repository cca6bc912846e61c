"""The FedPA device client: local store, LDP uploads, REST sync, ``fedpa-edge`` CLI — only what a device runs.

Runs only exported programs (``.pte`` through ExecuTorch, ``.onnx`` through onnxruntime) via
``fedpa.runtime`` — never eager PyTorch models — so it behaves like the phone it stands in for.

Usage: ``device = Device(LocalStore.open("me/"), AggregatorClient(url), model_id="demo")``.
"""

from edge.client import AggregatorClient, Refused, RetryPolicy, ServerUnreachable
from edge.device import Device, LocalTraining, RoundResult
from edge.store import DeviceState, LocalStore

__all__ = [
    "AggregatorClient",
    "Device",
    "DeviceState",
    "LocalStore",
    "LocalTraining",
    "Refused",
    "RetryPolicy",
    "RoundResult",
    "ServerUnreachable",
]
