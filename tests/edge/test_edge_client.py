"""The REST client: what is retried, how long it waits, what becomes a refusal."""

from __future__ import annotations

import json
import random

import httpx
import pytest

from edge.client import AggregatorClient, Refused, RetryPolicy, ServerUnreachable
from fedpa.errors import BundleError, SyncError
from fedpa.manifest import read_manifest
from fedpa.wire import ErrorCode


def _client(handler, *, attempts: int = 4) -> tuple[AggregatorClient, list[float]]:
    slept: list[float] = []
    client = AggregatorClient("http://agg", http=httpx.Client(transport=httpx.MockTransport(handler)),
                              retry=RetryPolicy(attempts=attempts, base_delay=0.1, factor=2.0, jitter=0.0),
                              sleep=slept.append, token="t0k")
    return client, slept


def test_transport_errors_and_5xx_are_retried_with_exponential_backoff():
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) == 1:
            raise httpx.ConnectError("refused", request=request)
        if len(calls) == 2:
            return httpx.Response(503)
        return httpx.Response(200, json={"status": "ok"})

    client, slept = _client(handler)
    assert client.health() == {"status": "ok"}
    assert slept == [0.1, 0.2]
    assert calls[-1].headers["Authorization"] == "Bearer t0k"


def test_gives_up_after_the_last_attempt_with_the_cause():
    client, slept = _client(lambda r: (_ for _ in ()).throw(httpx.ReadTimeout("slow", request=r)), attempts=3)
    with pytest.raises(ServerUnreachable, match="after 3 attempts: ReadTimeout"):
        client.health()
    assert slept == [0.1, 0.2]


def test_a_4xx_is_a_refusal_and_never_retried():
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(409, json={"error": "stale_base", "detail": "base_version 1 is stale"})

    client, slept = _client(handler)
    with pytest.raises(Refused) as info:
        client.upload("m", b"body")
    assert len(calls) == 1 and slept == []
    assert info.value.status == 409 and info.value.code == "stale_base"
    assert info.value.stale and not info.value.replayed


def test_replay_and_model_version_conflicts_are_told_apart():
    replay = Refused(409, "replayed_nonce", "nonce 'x' was already used (replay)", method="POST", url="u")
    version = Refused(409, "model_version_mismatch", "model 'm' is at model_version 2", method="POST", url="u")
    assert replay.replayed and not replay.stale
    assert version.stale and not version.replayed


def test_refusals_are_told_apart_by_the_exact_code_never_the_text():
    """A detail that mentions a nonce, a replay or a version decides nothing; only the code does."""
    wordy = Refused(409, "conflict", "nonce replay? stale version?", method="POST", url="u")
    unknown = Refused(409, "replayed_nonce_v2", "from a newer server", method="POST", url="u")
    terse = Refused(409, ErrorCode.REPLAYED_NONCE, "", method="POST", url="u")
    wrong_status = Refused(422, ErrorCode.STALE_BASE, "", method="POST", url="u")
    assert not (wordy.replayed or wordy.stale or unknown.replayed or unknown.stale)
    assert terse.replayed and not terse.stale
    assert not wrong_status.stale


def test_429_waits_at_least_retry_after():
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) == 1:
            return httpx.Response(429, headers={"Retry-After": "3"}, json={"error": "rate_limited", "detail": ""})
        return httpx.Response(202, json={"update_id": 1, "state_version": 0, "round": 0})

    client, slept = _client(handler)
    assert client.upload("m", b"x")["update_id"] == 1
    assert slept == [3.0]


def test_jitter_spreads_delays_within_bounds():
    policy = RetryPolicy(base_delay=1.0, factor=2.0, max_delay=5.0, jitter=0.25)
    rng = random.Random(0)
    delays = [policy.delay(a, rng) for a in range(6) for _ in range(20)]
    assert min(delays) >= 0.75 and max(delays) <= 5.0 * 1.25
    assert len({round(d, 6) for d in delays}) > 50  # not a fixed schedule a fleet would stampede on


def test_state_download_passes_groups_and_etag():
    seen = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen.update(groups=request.url.params["groups"], etag=request.headers.get("If-None-Match"))
        return httpx.Response(304, headers={"X-FedPA-State-Version": "7", "X-FedPA-Model-Version": "2",
                                            "ETag": '"abc"'})

    client, _ = _client(handler)
    dl = client.state("m", {"age": 1, "region": 3}, etag='"abc"')
    assert seen == {"groups": "age:1,region:3", "etag": '"abc"'}
    assert dl.tensors is None and dl.state_version == 7 and dl.model_version == 2


def _manifest_server(files: dict[str, bytes], listed: dict[str, bytes]):
    """A MockTransport handler serving a manifest that lists ``listed`` while serving ``files``."""
    import hashlib

    from fedpa.manifest import FileEntry, Manifest
    from fedpa.state import InitialBank, SharedStateSpec

    spec = SharedStateSpec.build(gate=[("layers.0.gate.b1", (3,))], group=[], cardinalities={},
                                 initial=InitialBank(seed=0, drawn={}))
    entries = {n: FileEntry(sha256=hashlib.sha256(b).hexdigest(), size=len(b)) for n, b in listed.items()}
    manifest = Manifest(model_id="m", model_version=1, created_at="2026-01-01T00:00:00Z", feature_schema={},
                        backbone={}, adapter={}, shared_state=spec, private_tensors=(), files=entries)
    raw = json.loads(manifest.to_json())

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/models/m":
            return httpx.Response(200, json=raw)
        name = request.url.path.rsplit("/", 1)[-1]
        if name not in files:  # e.g. manifest.sig of an unsigned model
            return httpx.Response(404, json={"error": "unknown_file", "detail": name})
        return httpx.Response(200, content=files[name])

    return raw, handler


def test_download_bundle_checks_every_file_before_writing_it(tmp_path):
    good = {"inference.pte": b"program", "golden.json": b"{}"}
    _, handler = _manifest_server({**good, "golden.json": b"{tampered}"}, good)
    client, _ = _client(handler)
    with pytest.raises(BundleError, match=r"'golden.json' of 'm' arrived with 10 bytes"):
        client.download_bundle("m", tmp_path / "bundle")
    assert not (tmp_path / "bundle" / "golden.json").exists()

    _, handler = _manifest_server(good, good)
    client, _ = _client(handler)
    dest = client.download_bundle("m", tmp_path / "bundle")
    assert read_manifest(dest).files.keys() == good.keys()  # the written copy verifies


def test_download_bundle_refuses_a_manifest_naming_a_path(tmp_path):
    good = {"inference.pte": b"program"}
    raw, _ = _manifest_server(good, good)
    raw["files"]["../escape.txt"] = raw["files"]["inference.pte"]

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=raw) if request.url.path == "/v1/models/m" else httpx.Response(
            200, content=b"program")

    client, _ = _client(handler)
    with pytest.raises(BundleError, match="must be a plain file name"):
        client.download_bundle("m", tmp_path / "bundle")
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "bundle").exists()


@pytest.mark.parametrize(("body", "why"), [(b"[1, 2]", "expected a JSON object, got list"),
                                           (b"<html>ok</html>", "the answer is not JSON")])
def test_a_2xx_without_a_json_object_is_a_sync_error_naming_the_call(body, why):
    client, slept = _client(lambda r: httpx.Response(200, content=body))
    with pytest.raises(SyncError, match=f"GET http://agg/v1/models/m/status: {why}"):
        client.status("m")
    assert slept == []  # the server answered; asking again would get the same answer
