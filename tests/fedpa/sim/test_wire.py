"""Upload encodings: the simulation's quantiser equals encode→decode; packed payloads are smaller."""

import numpy as np
import pytest
import torch

from fedpa.errors import ConfigError
from fedpa.payload import payload_nbytes
from fedpa.sim.wire import decode_update, encode_update, quantize


def deltas(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"layers.0.gate.w1": torch.randn(3, 8, 40, generator=g), "layers.0.groups.a.lora_A": torch.randn(3, 4, 40,
            generator=g) * 1e-3, "zeros": torch.zeros(3, 5)}


@pytest.mark.parametrize("dtype", ["fp32", "fp16", "int8"])
@pytest.mark.parametrize("packed", [False, True])
def test_quantize_equals_what_the_server_decodes(dtype, packed):
    stacked = deltas()
    for i in range(3):
        client = {k: v[i].numpy() for k, v in stacked.items()}
        layout = [(k, v.shape) for k, v in client.items()]
        decoded = decode_update(encode_update(client, dtype, packed=packed), layout if packed else None)
        for k, v in stacked.items():
            np.testing.assert_array_equal(decoded[k], quantize(v, dtype)[i].numpy())


def test_sizes_shrink_with_the_encoding():
    client = {k: v[0].numpy() for k, v in deltas().items()}
    fp32 = len(encode_update(client, "fp32"))
    assert fp32 == payload_nbytes(client)  # exactly the protocol's float32 payload
    assert len(encode_update(client, "fp16")) < fp32
    assert len(encode_update(client, "int8")) < len(encode_update(client, "fp16"))
    assert len(encode_update(client, "int8", packed=True)) < len(encode_update(client, "int8"))
    floats = sum(v.size for v in client.values())
    assert len(encode_update(client, "int8", packed=True)) < floats + 300  # ~200 B of header


def test_int8_error_is_bounded_by_half_a_step():
    d = deltas()["layers.0.gate.w1"]
    err = (quantize(d, "int8") - d).abs().flatten(1).amax(1)
    step = d.abs().flatten(1).amax(1) / 127
    assert torch.all(err <= step / 2 + 1e-7)


def test_unknown_dtype_is_refused():
    with pytest.raises(ConfigError, match="bf16"):
        quantize(torch.zeros(1, 2), "bf16")
