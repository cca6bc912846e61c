"""Property-based fuzzing of every OpenAPI operation, valid and invalid inputs: never a 5xx.

Bounded and seeded (``derandomize``). Drives hypothesis directly: schemathesis' lazy pytest
integration does not run under pytest 9.
"""

from __future__ import annotations

import pytest
import schemathesis
from agg_helpers import ADMIN, make_settings, publish, register, write_bundle
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from aggregator.main import create_app

# The schema is generated from code, so listing operations needs no database.
_PATHS = create_app(make_settings("sqlite://")).openapi()["paths"]
_MODES = {"valid": GenerationMode.POSITIVE, "invalid": GenerationMode.NEGATIVE}
# Negative cases need some input to break; operations without parameters or body have none.
_CASES = [pytest.param(method.upper(), path, mode, id=f"{name}-{method.upper()}-{path}")
          for path, item in _PATHS.items() for method, spec in item.items() for name, mode in _MODES.items()
          if mode == GenerationMode.POSITIVE or spec.get("parameters") or "requestBody" in spec]


@pytest.fixture(scope="module")
def fuzz_app(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fuzz")
    app = create_app(make_settings(f"sqlite:///{tmp / 'fuzz.db'}", scheduler_enabled=False))
    with TestClient(app) as client:  # runs the migrations; publish a model to fuzz against
        write_bundle(tmp / "b")
        assert publish(client, tmp / "b").status_code == 201
        device = register(client)
    return schemathesis.openapi.from_asgi("/openapi.json", app), device


@pytest.mark.parametrize(("method", "path", "mode"), _CASES)
def test_no_server_errors(fuzz_app, method, path, mode):
    schema, device = fuzz_app
    operation = schema[path][method]
    headers = device if path.endswith(("/updates", "/state")) else ADMIN
    checks = [not_a_server_error, status_code_conformance]
    if mode == GenerationMode.POSITIVE:
        checks.append(response_schema_conformance)

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=8, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def run(case):
        case.call_and_validate(headers=headers, checks=checks)

    run()
