"""No secret leaves the system: a whole release with planted secrets, then every output grepped for them.

Planted: the webhook secret, clone credentials (the repository is served over HTTP by a local git
server that demands them), a variable only the control plane's environment has, and the task tokens
of the build and of the approval (read from the table while they exist). Collected: every API
response (the raw history and the build log among them), every log record and everything printed,
every SQS message the event pump delivered, the execution input and the table.
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
import shutil
import subprocess
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.e2e.pipeline_support import (
    EXAMPLE,
    awaiting,
    ended,
    example_repo,
    push,
    run_until,
)

JSON = {"Content-Type": "application/json"}
USER = "stagecoach-bot"


class GitServer(SimpleHTTPRequestHandler):
    """Git's dumb HTTP protocol over a directory of bare repositories, behind Basic authentication."""

    def __init__(self, *args: Any, userinfo: str, **kwargs: Any) -> None:
        self.expected = "Basic " + base64.b64encode(userinfo.encode()).decode()
        super().__init__(*args, **kwargs)

    def do_GET(self) -> None:
        if self.headers.get("Authorization") != self.expected:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        super().do_GET()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


@pytest.fixture
def git_server(tmp_path: Path) -> Iterator[tuple[str, str, str]]:
    """(clone URL with credentials, the token, the head sha) of the example, served with Basic auth."""
    buildspec = (
        (EXAMPLE / "buildspec.yml")
        .read_text()
        .replace("  build:\n    commands:\n", "  build:\n    commands:\n      - env | sort\n")
    )
    repo, sha = example_repo(tmp_path, buildspec=buildspec)
    served = tmp_path / "served"
    served.mkdir()
    subprocess.run(["git", "clone", "--quiet", "--bare", str(repo), str(served / "hello.git")], check=True)
    subprocess.run(["git", "update-server-info"], cwd=served / "hello.git", check=True)
    token = "tok-" + secrets.token_hex(16)
    handler = partial(GitServer, directory=str(served), userinfo=f"{USER}:{token}")
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{USER}:{token}@127.0.0.1:{server.server_address[1]}/hello.git", token, sha
    finally:
        server.shutdown()
        server.server_close()
        shutil.rmtree(served, ignore_errors=True)


class Recorded:
    """chalice.test.Client whose ``http`` keeps every response body."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.responses: list[tuple[str, str, str]] = []
        self.http = self

    def __getattr__(self, method: str) -> Any:
        call = getattr(self._client.http, method)

        def recorded(path: str, **kwargs: Any) -> Any:
            response = call(path, **kwargs)
            self.responses.append((method.upper(), path, response.body.decode("utf-8", "replace")))
            return response

        return recorded


class Records(logging.Handler):
    """Every log record, formatted, with its exception."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(logging.Formatter().format(record))


@pytest.fixture
def logs(client: Any) -> Iterator[Records]:
    from chalicelib import bootstrap

    # Made first: powertools hangs a filter dropping its own records on every root handler present when
    # its logger is created, which would blind this one.
    bootstrap.logger()
    records = Records()
    loggers = [logging.getLogger(), logging.getLogger("stagecoach")]
    for logger in loggers:
        logger.addHandler(records)
    try:
        yield records
    finally:
        for logger in loggers:
            logger.removeHandler(records)


@pytest.fixture
def pump(aws: Any) -> Iterator[tuple[Any, list[str]]]:
    """The embedded mode's event pump, keeping every message and event it delivers."""
    from chalicelib.local.pump import EventPump

    delivered: list[str] = []
    yield EventPump.for_app(aws, tap=lambda event: delivered.append(json.dumps(event))), delivered


def table_item(aws: Any, pk: str, sk: str) -> dict[str, Any]:
    found = boto3.client("dynamodb", region_name="us-east-1").get_item(
        TableName=aws.table, Key={"pk": {"S": pk}, "sk": {"S": sk}}, ConsistentRead=True
    )
    item: dict[str, Any] = found.get("Item", {})
    return item


def test_no_planted_secret_leaves_through_any_output(
    client: Any,
    aws: Any,
    pump: tuple[Any, list[str]],
    logs: Records,
    git_server: tuple[str, str, str],
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    event_pump, delivered = pump
    clone_url, token, sha = git_server
    canary = "canary-" + secrets.token_hex(8)
    monkeypatch.setenv("STAGECOACH_CANARY_SECRET", canary)
    api = Recorded(client)

    body = {
        "id": "hello",
        "name": "Hello",
        "repository": {"provider": "github", "full_name": "acme/hello", "clone_url": clone_url},
        "stages": [{"name": "dev", "parameters": {"Stage": "dev"}}, {"name": "prod", "approval": True}],
    }
    created = api.http.post("/stacks", body=json.dumps(body), headers=JSON)
    assert created.status_code == 201, created.body
    webhook_secret = created.json_body["webhook"]["secret"]
    accepted = push(api, webhook_secret, sha)
    assert accepted.status_code == 202, accepted.body
    release_id = accepted.json_body["release_id"]

    waiting = run_until(api, event_pump, release_id, awaiting("prod"))
    assert waiting["build"]["status"] == "SUCCEEDED", api.http.get(f"/releases/{release_id}/build-log").json_body
    build_token = table_item(aws, f"RELEASE#{release_id}", "#BUILD")["task_token"]["S"]
    approval_token = table_item(aws, f"RELEASE#{release_id}", "STAGE#prod")["task_token"]["S"]
    raw_waiting = api.http.get(f"/releases/{release_id}/history?raw=true").body.decode()
    # the token travelled in the coordinator's message (its "token" key) and is shown as *** there
    assert approval_token not in raw_waiting and '\\"token\\":\\"***\\"' in raw_waiting
    approved = api.http.post(f"/releases/{release_id}/stages/prod/approve", body=b"{}", headers=JSON)
    assert approved.status_code == 200, approved.body
    done = run_until(api, event_pump, release_id, ended)
    assert done["status"] == "SUCCEEDED", done

    for path in ("/stacks", "/stacks/hello", "/stacks/hello/releases", f"/releases/{release_id}"):
        api.http.get(path)
    api.http.get(f"/releases/{release_id}/history")
    api.http.get(f"/releases/{release_id}/history?raw=true")
    build_log = api.http.get(f"/releases/{release_id}/build-log").json_body["log"]
    assert "Entering phase BUILD" in build_log and "CODEBUILD_SOURCE_REPO_URL=http://***@127.0.0.1" in build_log
    assert "PATH=" in build_log

    sfn = boto3.client("stepfunctions", region_name="us-east-1")
    execution_input = sfn.describe_execution(executionArn=done["execution_arn"])["input"]
    table = json.dumps(boto3.client("dynamodb", region_name="us-east-1").scan(TableName=aws.table)["Items"])
    printed = capfd.readouterr()
    outputs = {
        "responses": "\n".join(text for _, _, text in api.responses[1:]),
        "create response": api.responses[0][2],
        "logs": "\n".join(logs.lines) + printed.out + printed.err,
        "build log": build_log,
        "sqs messages": "\n".join(delivered),
        "execution input": execution_input,
        "table": table,
    }
    assert logs.lines and delivered and len(api.responses) > 10
    never_anywhere = {"clone token": token, "clone user info": f"{USER}:{token}", "canary": canary}
    for where, text in outputs.items():
        for what, value in never_anywhere.items():
            assert value not in text, f"the {what} leaked into the {where}"
    for where in ("responses", "logs", "build log", "execution input", "table", "sqs messages"):
        assert webhook_secret not in outputs[where], f"the webhook secret leaked into the {where}"
    assert webhook_secret in outputs["create response"]
    for where in ("responses", "create response", "logs", "build log", "execution input"):
        for what, value in (("build task token", build_token), ("approval task token", approval_token)):
            assert value not in outputs[where], f"the {what} leaked into the {where}"
    assert "http://***@127.0.0.1" in outputs["execution input"]
