"""The published contract against a real local control plane: its gateway, then Schemathesis on every operation.

The gateway (chalicelib/local/gateway.py) answers unknown routes and methods in the API's error shape.
Schemathesis fuzzes the document the plane serves (GET /openapi.yaml).

Every operation gets the document's examples, boundary cases (coverage phase) and generated data
(fuzzing phase), positive and negative, with every check (all are on by default): no 5xx, responses
and headers as documented, documented content types, schema-valid data accepted, schema-invalid data
refused with a 4xx, 405 with ``Allow`` for methods a route does not have. A stack and a release exist
beforehand and half of the generated ids are theirs, so the operations behind them are reached too;
deliveries to that stack are signed with its secret (tests/fuzz/hooks.py), so payloads reach the
webhook parsers.

The local control plane has no IAM (on AWS, API Gateway checks SigV4 before the app), so the
document's ``security`` is taken out of the copy fuzzed here. The run is bounded by examples per
operation (STAGECOACH_FUZZ_EXAMPLES, default 5); its time is printed (``pytest -s``) and capped.
A failing run prints its seed; STAGECOACH_FUZZ_SEED replays it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fakes import stack_body
from tests.plane import http, running_plane

ROOT = Path(__file__).resolve().parents[2]
MAX_EXAMPLES = int(os.environ.get("STAGECOACH_FUZZ_EXAMPLES", "5"))
TIME_CAP_SECONDS = 300
CONFIG = """
[cache]
directory = "{cache}"

[dictionaries.stacks]
values = ["hello"]
[dictionaries.doomed]
values = ["doomed"]
[dictionaries.stages]
values = ["dev", "test", "prod"]
[dictionaries.releases]
values = ["{release_id}"]

[parameters]
"path.stack_id" = {{ dictionary = "stacks", probability = 0.5 }}
"path.stage" = {{ dictionary = "stages", probability = 0.5 }}
"path.release_id" = {{ dictionary = "releases", probability = 0.5 }}

# Deleting the shared stack would leave the other operations nothing to reach: delete another one.
[[operations]]
include-name = "DELETE /stacks/{{stack_id}}"
parameters = {{ "path.stack_id" = {{ dictionary = "doomed", probability = 0.5 }} }}

# A delivery's required fields depend on its event header (a push needs a ref, a sha...), which JSON
# Schema cannot tie to the body: a signed, schema-valid delivery may rightly be a 400.
[[operations]]
include-path-regex = "^/webhooks/"
checks.positive_data_acceptance.enabled = false

# Schema-violating data may also be refused for its size (413), before anything reads it.
[checks.negative_data_rejection]
expected-statuses = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429", "5xx"]

[phases]
stateful.enabled = false
# Each path gets three methods it does not have (405 with Allow); every method is checked once above.
coverage.unexpected-methods = ["put", "delete", "trace"]
"""


def without_security(document: dict[str, Any]) -> dict[str, Any]:
    """The document without its SigV4 requirement (nothing checks it locally)."""
    document.pop("security", None)
    document.get("components", {}).pop("securitySchemes", None)
    for item in document["paths"].values():
        for operation in item.values():
            if isinstance(operation, dict):
                operation.pop("security", None)
    return document


def seed(url: str) -> tuple[str, str]:
    """The stacks and the release the fuzzed ids point at; returns (release id, hello's webhook secret)."""
    secrets = {}
    for stack_id in ("hello", "doomed"):
        body = stack_body(id=stack_id, stages=[{"name": "dev"}, {"name": "test"}, {"name": "prod", "approval": True}])
        status, created = http("POST", f"{url}/stacks", body)
        assert status == 201, created
        secrets[stack_id] = created["webhook"]["secret"]
    status, started = http("POST", f"{url}/stacks/hello/releases", {"ref": "main"})
    assert status == 202, started
    return str(started["release_id"]), secrets["hello"]


@pytest.fixture(scope="module")
def plane() -> Iterator[Any]:
    """One control plane for the module, without the event pump (builds never start: nothing is cloned)."""
    with running_plane(pump=False) as running:
        yield running


def raw_request(plane: Any, method: str, path: str, headers: dict[str, str] | None = None) -> tuple[int, Any, Any]:
    """(status, headers, JSON body) of one request sent as given (http.client adds nothing)."""
    connection = HTTPConnection(plane.host, plane.port, timeout=30)
    try:
        connection.putrequest(method, path, skip_accept_encoding=True)
        for name, value in (headers or {}).items():
            connection.putheader(name, value)
        connection.endheaders()
        response = connection.getresponse()
        body = response.read()
        return response.status, response.headers, json.loads(body) if body else None
    finally:
        connection.close()


def assert_error_shape(headers: Any, body: Any, code: str) -> None:
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Request-Id"]
    assert set(body) == {"code", "message"} and body["code"] == code, body


@pytest.mark.slow
@pytest.mark.parametrize("method", ["GET", "POST", "TRACE", "QUERY"])
def test_a_path_no_route_matches_is_a_404_in_the_error_shape(plane: Any, method: str) -> None:
    status, headers, body = raw_request(plane, method, "/no/such/route", {"Content-Length": "0"})
    assert status == 404
    assert_error_shape(headers, body, "NotFound")
    assert "/no/such/route" in body["message"]


@pytest.mark.slow
@pytest.mark.parametrize("method", ["PUT", "TRACE", "QUERY", "DELETE"])
def test_a_method_a_route_does_not_have_is_a_405_with_allow(plane: Any, method: str) -> None:
    status, headers, body = raw_request(plane, method, "/stacks", {"Content-Length": "0"})
    assert status == 405
    assert_error_shape(headers, body, "MethodNotAllowed")
    assert sorted(headers["Allow"].split(", ")) == ["GET", "POST"]


@pytest.mark.slow
def test_content_lengths_the_gateway_refuses(plane: Any) -> None:
    status, headers, body = raw_request(plane, "POST", "/stacks", {"Content-Length": "ten"})
    assert status == 400
    assert_error_shape(headers, body, "BadRequest")
    status, headers, body = raw_request(plane, "POST", "/stacks", {"Content-Length": str(11 * 1024 * 1024)})
    assert status == 413
    assert_error_shape(headers, body, "PayloadTooLarge")


@pytest.mark.slow
def test_no_input_gets_a_5xx_and_every_response_keeps_the_contract(plane: Any, tmp_path: Path) -> None:
    release_id, webhook_secret = seed(plane.url)
    with urllib.request.urlopen(f"{plane.url}/openapi.yaml", timeout=30) as response:
        assert response.headers["Content-Type"] == "application/yaml"
        document = yaml.safe_load(response.read())
    schema = tmp_path / "openapi.json"
    schema.write_text(json.dumps(without_security(document)))
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG.format(release_id=release_id, cache=tmp_path / "cache"))
    command = [
        str(Path(sys.executable).with_name("st")),
        "--config-file",
        str(config),
        "run",
        str(schema),
        "--url",
        plane.url,
        "--max-examples",
        str(MAX_EXAMPLES),
        "--workers",  # one: with more, Hypothesis's lambda introspection races in CPython 3.11's ast
        "1",
        "--output-sanitize",
        "false",
        "--request-timeout",
        "30",
    ]
    if os.environ.get("STAGECOACH_FUZZ_SEED"):  # replay a run: its seed is printed at the end
        command += ["--seed", os.environ["STAGECOACH_FUZZ_SEED"]]
    environment = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "tests.fuzz.hooks",
        "STAGECOACH_FUZZ_WEBHOOK_SECRET": webhook_secret,
        "NO_COLOR": "1",
    }
    started = time.monotonic()
    result = subprocess.run(
        command,
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=TIME_CAP_SECONDS,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    elapsed = time.monotonic() - started
    report = tmp_path / "schemathesis.out"
    report.write_text(result.stdout + result.stderr)
    summary = result.stdout[result.stdout.rfind("SUMMARY") :]
    print(f"\nfuzz: {elapsed:.1f} s, {MAX_EXAMPLES} examples per operation (full output: {report})\n{summary}")
    problems = [result.stdout.find(f"= {title} =") for title in ("FAILURES", "ERRORS")]
    failures = result.stdout[min(p for p in problems if p >= 0) :][:20000] if max(problems) >= 0 else ""
    assert result.returncode == 0, f"{failures}\n{summary}\n{result.stderr[-5000:]}\nfull output: {report}"
    assert "passed" in result.stdout and " 0 passed" not in result.stdout
