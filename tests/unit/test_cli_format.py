"""Pure parts of the stagecoach CLI: formatting, argument parsing, webhook bodies, the watch loop."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
from collections.abc import Iterator
from typing import Any

import pytest

from chalicelib.cli import format as fmt
from chalicelib.cli import githook
from chalicelib.cli.api import ApiError, ConnectionFailed, error_from_response, path
from chalicelib.cli.commands import build_parser, main, resolve_url, stack_body
from chalicelib.cli.watch import change_line, states, watch_release

SHA = "a" * 40
OLD = "b" * 40
ZERO = "0" * 40

# ------------------------------------------------------------------ formatting


def test_table_aligns_columns_and_fills_blanks() -> None:
    text = fmt.table(("ID", "NAME", "OK"), [("a", None, True), ("longer", "x y\nz", False)])
    assert text.splitlines() == [
        "ID      NAME   OK",
        "a       -      yes",
        "longer  x y z  no",
    ]


def test_table_has_no_trailing_whitespace() -> None:
    text = fmt.table(("A", "B"), [("x", "")])
    assert all(line == line.rstrip() for line in text.splitlines())


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, ""), (0, "0.0s"), (4.2, "4.2s"), (59.94, "59.9s"), (125, "2m05s"), (3720, "1h02m")],
)
def test_duration(seconds: Any, text: str) -> None:
    assert fmt.duration(seconds) == text


def test_times_refs_and_shas() -> None:
    assert fmt.when("2026-11-27T14:30:00.123Z") == "2026-11-27 14:30:00"
    assert fmt.when("2026-11-27T14:30:00+00:00") == "2026-11-27 14:30:00"
    assert fmt.when(None) == ""
    assert fmt.short_ref("refs/heads/release/1") == "release/1"
    assert fmt.short_ref("refs/tags/v1") == "v1"
    assert fmt.short_sha(SHA) == "aaaaaaaa"
    assert fmt.truncate("first line\nsecond", 50) == "first line"
    assert fmt.truncate("x" * 60, 10) == "x" * 9 + "…"


def stack_doc(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": "hello",
        "name": "Hello",
        "repository": {"provider": "github", "full_name": "acme/hello", "clone_url": "/srv/hello.git"},
        "branches": ["main"],
        "tags": [],
        "template_path": "template.yaml",
        "buildspec_path": "buildspec.yml",
        "stages": [
            {
                "name": "dev",
                "position": 0,
                "approval": False,
                "status": "IDLE",
                "locked_by": None,
                "current_release": {
                    "release_id": "r01A",
                    "sha": SHA,
                    "message": "fix the thing\n\nlong body",
                    "deployed_at": "2026-11-27T14:30:00.000Z",
                },
            },
            {
                "name": "prod",
                "position": 1,
                "approval": True,
                "status": "IDLE",
                "locked_by": None,
                "current_release": None,
            },
        ],
        "webhook": {"verified_at": None, "urls": {"github": "/webhooks/github/hello"}, "secret": "s3cret"},
        "version": 3,
    }
    doc.update(overrides)
    return doc


def test_pipeline_view_shows_stages_in_order_with_current_release() -> None:
    text = fmt.stack_details(stack_doc(), awaiting=[("r01B", "prod")])
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("#"))
    assert lines[header].split() == [
        "#",
        "STAGE",
        "STATUS",
        "APPROVAL",
        "RELEASE",
        "MESSAGE",
        "DEPLOYED",
        "(UTC)",
        "IN",
        "STAGE",
        "WAITING",
        "PIN",
    ]
    assert lines[header + 1].split()[:7] == ["0", "dev", "IDLE", "no", "aaaaaaaa", "fix", "the"]
    assert "2026-11-27 14:30:00" in lines[header + 1]
    assert lines[header + 2].split()[:4] == ["1", "prod", "IDLE", "yes"]
    assert "awaiting approval: release r01B at prod" in text
    assert "run: stagecoach approve r01B prod" in text
    assert "(no verified delivery yet)" in text


def test_created_stack_prints_the_secret_and_the_full_webhook_url() -> None:
    text = fmt.created_stack(stack_doc(), "http://127.0.0.1:8000/")
    assert "webhook secret: s3cret" in text
    assert "http://127.0.0.1:8000/webhooks/github/hello" in text
    assert "dev → prod (approval)" in text


def test_stacks_table_has_a_line_per_stage_with_its_status_and_commit() -> None:
    other = stack_doc(id="api", repository={"full_name": "acme/api"}, stages=[{"name": "dev", "status": "FAILED"}])
    lines = fmt.stacks_table([stack_doc(), other]).splitlines()
    assert lines == [
        "STACK  REPOSITORY  STAGE  STATUS  COMMIT    DEPLOYED (UTC)",
        "hello  acme/hello  dev    IDLE    aaaaaaaa  2026-11-27 14:30:00",
        "                   prod*  IDLE    -         -",
        "api    acme/api    dev    FAILED  -         -",
    ]
    assert "no stacks yet" in fmt.stacks_table([])


def test_a_current_release_without_a_sha_shows_its_release_id() -> None:
    doc = stack_doc()
    doc["stages"][0]["current_release"]["sha"] = ""
    assert "r01A" in fmt.stacks_table([doc]).splitlines()[1]


def test_tables_cut_their_flexible_column_to_fit_a_terminal() -> None:
    long_repo = stack_doc(repository={"full_name": "acme/" + "very-long-repository-name-" * 3})
    wide = fmt.stacks_table([long_repo])
    assert max(len(line) for line in wide.splitlines()) > 80
    fitted = fmt.stacks_table([long_repo], width=80)
    assert max(len(line) for line in fitted.splitlines()) <= 80
    assert "acme/very-long-repo" in fitted and "…" in fitted
    assert fmt.stacks_table([long_repo], width=500) == wide
    releases = [{"id": "r01X", "status": "SUCCEEDED", "message": "word " * 40, "received_at": "2026-11-27T14:30:00Z"}]
    assert max(len(line) for line in fmt.releases_table(releases, width=100).splitlines()) <= 100


def release_doc(status: str = "RUNNING", stages: list[tuple[str, str]] | None = None, **extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": "r01X",
        "stack_id": "hello",
        "ref": "refs/heads/main",
        "sha": SHA,
        "message": "ship it",
        "status": status,
        "trigger": "push",
        "received_at": "2026-11-27T14:30:00.000Z",
        "duration_seconds": None,
        "failed_stage": None,
        "error": None,
        "cause": None,
        "build": None,
        "stages": [
            {
                "name": n,
                "position": i,
                "status": s,
                "duration_seconds": None,
                "approval": None,
                "changes": None,
                "no_changes": False,
                "error": None,
                "cause": None,
            }
            for i, (n, s) in enumerate(stages or [("dev", "PENDING"), ("prod", "PENDING")])
        ],
    }
    doc.update(extra)
    return doc


def test_release_views() -> None:
    doc = release_doc(stages=[("dev", "SUCCEEDED"), ("prod", "AWAITING_APPROVAL")])
    doc["build"] = {"id": "b1", "status": "SUCCEEDED", "duration_seconds": 4.2, "failed_phase": None}
    text = fmt.release_details(doc)
    assert "release r01X  RUNNING  stack hello" in text
    assert "refs/heads/main @ aaaaaaaa" in text
    assert "build     b1  SUCCEEDED  4.2s" in text
    assert "run: stagecoach approve r01X prod" in text
    listing = fmt.releases_table([doc])
    assert listing.splitlines()[1].split()[:5] == ["r01X", "RUNNING", "main", "aaaaaaaa", "ship"]
    assert fmt.releases_table([]) == "no releases"


def test_failure_line_falls_back_to_the_failed_stage() -> None:
    doc = release_doc("FAILED", stages=[("dev", "SUCCEEDED"), ("prod", "FAILED")])
    doc["stages"][1].update(error="DeployFailed", cause="Bucket exists")
    assert fmt.failure_line(doc) == "stage prod: DeployFailed: Bucket exists"
    doc["failed_stage"], doc["error"] = "prod", "ApprovalRejected"
    assert fmt.failure_line(doc).startswith("stage prod: ApprovalRejected")


def test_timeline_and_build_log() -> None:
    history = {
        "release_id": "r01X",
        "events": [
            {
                "name": "Build",
                "type": "Task",
                "stage": None,
                "started_at": "2026-11-27T14:30:00Z",
                "ended_at": "2026-11-27T14:30:04Z",
                "duration_seconds": 4.2,
                "outcome": "SUCCEEDED",
                "error": None,
                "cause": None,
            },
            {
                "name": "Deploy",
                "type": "Task",
                "stage": "dev",
                "started_at": "2026-11-27T14:30:05Z",
                "ended_at": None,
                "duration_seconds": None,
                "outcome": "FAILED",
                "error": "States.Timeout",
                "cause": "took too long",
            },
        ],
    }
    lines = fmt.timeline(history).splitlines()
    assert lines[0] == "release r01X"
    assert lines[3].split()[:6] == ["2026-11-27", "14:30:00", "4.2s", "-", "Build", "Task"]
    assert "States.Timeout took too long" in lines[4]
    assert fmt.timeline({"release_id": "r", "events": []}) == "release r: no events yet"
    assert fmt.build_log({"log": "line 1\nline 2\n", "pointer": None}) == "line 1\nline 2"
    pointer = fmt.build_log(
        {"build_id": "b1", "status": "SUCCEEDED", "log": None, "pointer": {"group": "/aws/codebuild/x", "stream": "s"}}
    )
    assert "not stored inline" in pointer and "group: /aws/codebuild/x" in pointer
    assert "no log yet" in fmt.build_log({"log": None, "pointer": None})


# ------------------------------------------------------------------ arguments


def test_param_and_stage_specs() -> None:
    assert fmt.parse_param("Size=large=2") == ("Size", "large=2")
    assert fmt.parse_param("Empty=") == ("Empty", "")
    with pytest.raises(ValueError):
        fmt.parse_param("novalue")
    assert fmt.parse_stage_spec("dev") == {"name": "dev"}
    assert fmt.parse_stage_spec("prod:approval") == {"name": "prod", "approval": True}
    for bad in ("prod:", "prod:fast", ":approval"):
        with pytest.raises(ValueError):
            fmt.parse_stage_spec(bad)


def test_create_arguments_become_the_post_body() -> None:
    args = build_parser().parse_args(
        [
            "stacks",
            "create",
            "--name",
            "Hello",
            "--repo",
            "acme/hello",
            "--clone-url",
            "/srv/h.git",
            "--stage",
            "dev",
            "--stage",
            "test",
            "--stage",
            "prod:approval",
            "--branch",
            "main",
            "--branch",
            "release/*",
            "--tag",
            "v*",
            "--id",
            "hi",
            "--json",
        ]
    )
    assert args.json is True
    assert stack_body(args) == {
        "id": "hi",
        "name": "Hello",
        "branches": ["main", "release/*"],
        "tags": ["v*"],
        "stages": [{"name": "dev"}, {"name": "test"}, {"name": "prod", "approval": True}],
        "repository": {"provider": "github", "full_name": "acme/hello", "clone_url": "/srv/h.git"},
    }


def test_create_from_a_file_with_flag_overrides(tmp_path: Any) -> None:
    spec = tmp_path / "stack.json"
    spec.write_text(
        json.dumps(
            {
                "name": "A",
                "repository": {"provider": "gitlab", "full_name": "a/b", "clone_url": "https://x/a/b.git"},
                "stages": [{"name": "dev"}],
            }
        )
    )
    args = build_parser().parse_args(["stacks", "create", "--file", str(spec), "--name", "B"])
    body = stack_body(args)
    assert body["name"] == "B"
    assert body["repository"]["provider"] == "gitlab"


def run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(argv, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize(
    "argv",
    [
        ["stacks", "create", "--name", "x"],
        ["stacks", "create", "--name", "x", "--repo", "a/b", "--clone-url", "/x", "--stage", "prod:fast"],
        ["stages", "add", "s", "dev", "--param", "novalue"],
        ["deploy", "s"],
        ["deploy", "s", "--ref", "main", "--sha", SHA],
        ["watch", "r", "--interval", "-1"],
        ["stages", "update", "s", "dev"],
        ["nonsense"],
        ["stacks"],
    ],
)
def test_usage_errors_are_one_line_and_exit_2(argv: list[str]) -> None:
    code, out, err = run(["--url", "http://127.0.0.1:9", *argv])
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("stagecoach")


@pytest.mark.parametrize("position", ["before", "after"])
def test_with_json_a_usage_error_is_a_json_line_on_stderr(position: str) -> None:
    argv = ["--json", "deploy", "s"] if position == "before" else ["deploy", "s", "--json"]
    code, out, err = run(["--url", "http://127.0.0.1:9", *argv])
    assert (code, out) == (2, "")
    assert len(err.splitlines()) == 1
    document = json.loads(err)
    assert document["code"] == "UsageError"
    assert "one of the arguments --ref --tag --sha is required" in document["message"]


def test_error_documents() -> None:
    api_error = error_from_response(404, b'{"code": "NotFound", "message": "stack \'x\' does not exist"}')
    assert api_error.document() == {"code": "NotFound", "message": "stack 'x' does not exist", "status": 404}
    down = ConnectionFailed("cannot reach http://x: connection refused")
    assert down.document() == {"code": "ConnectionFailed", "message": "cannot reach http://x: connection refused"}
    assert (api_error.exit_code, down.exit_code) == (1, 2)


def test_options_work_before_and_after_the_command(monkeypatch: pytest.MonkeyPatch) -> None:
    parser = build_parser()
    assert parser.parse_args(["--json", "stacks", "list"]).json is True
    assert parser.parse_args(["stacks", "list", "--json"]).json is True
    assert parser.parse_args(["stacks", "list"]).json is False
    assert parser.parse_args(["stacks", "list", "--url", "http://x"]).url == "http://x"
    monkeypatch.setenv("STAGECOACH_URL", "http://env:1/")
    assert resolve_url(None) == "http://env:1"
    assert resolve_url("http://given") == "http://given"
    monkeypatch.delenv("STAGECOACH_URL")
    assert resolve_url(None) == "http://127.0.0.1:8000"


def test_stage_update_flags() -> None:
    args = build_parser().parse_args(["stages", "update", "s", "prod", "--no-approval", "--param", "A=1"])
    assert args.approval is False and args.param == [("A", "1")]
    assert build_parser().parse_args(["stages", "update", "s", "prod"]).approval is None


# ------------------------------------------------------------------ API errors


def test_api_error_lines() -> None:
    error = error_from_response(404, b'{"code": "NotFound", "message": "stack \'x\' does not exist"}')
    assert error.message == "404 NotFound: stack 'x' does not exist"
    assert error.exit_code == 1
    missing = error_from_response(403, b'{"message": "Missing Authentication Token"}', "GET", "/releases/r/history")
    assert missing.message == "403 Forbidden: this server has no route GET /releases/r/history"
    assert error_from_response(502, b"<html>bad gateway</html>").message == "502 BadGateway: <html>bad gateway</html>"
    assert isinstance(error, ApiError)
    assert ConnectionFailed("x").exit_code == 2
    assert path("stacks", "a b/c", "stages") == "/stacks/a%20b%2Fc/stages"


# ------------------------------------------------------------------ webhook body


def test_push_payload_for_an_update() -> None:
    commit = githook.Commit(SHA, "ship it\n\nbody", "2026-11-27T15:30:00+01:00", "Ada", "ada@example.com")
    update = githook.RefUpdate(OLD, SHA, "refs/heads/main")
    payload = githook.push_payload(update, "acme/hello", "/srv/hello.git", commit, "ada")
    assert payload == {
        "ref": "refs/heads/main",
        "before": OLD,
        "after": SHA,
        "created": False,
        "deleted": False,
        "repository": {"full_name": "acme/hello", "clone_url": "/srv/hello.git"},
        "head_commit": {
            "id": SHA,
            "message": "ship it\n\nbody",
            "timestamp": "2026-11-27T15:30:00+01:00",
            "author": {"name": "Ada", "email": "ada@example.com"},
        },
        "pusher": {"name": "ada"},
    }


def test_push_payload_created_and_deleted_refs() -> None:
    created = githook.push_payload(githook.RefUpdate(ZERO, SHA, "refs/heads/x"), "a/b", "/r", None, "u")
    assert created["created"] is True and created["deleted"] is False
    commit = githook.Commit(SHA, "m", "t", "n", "e")
    deleted = githook.push_payload(githook.RefUpdate(SHA, ZERO, "refs/heads/x"), "a/b", "/r", commit, "u")
    assert deleted["deleted"] is True and deleted["head_commit"] is None


def test_signed_request_verifies_with_the_servers_check() -> None:
    from chalicelib.domain import webhooks

    payload = githook.push_payload(githook.RefUpdate(OLD, SHA, "refs/heads/main"), "acme/hello", "/r", None, "u")
    body, headers = githook.webhook_request(payload, "s3cret", delivery_id="d-1")
    expected = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert headers["X-Hub-Signature-256"] == expected == githook.sign("s3cret", body)
    assert headers["X-GitHub-Event"] == "push"
    assert headers["X-GitHub-Delivery"] == "d-1"
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body) == payload
    lowered = {k.lower(): v for k, v in headers.items()}
    assert webhooks.verify_signature("github", lowered, body, ["s3cret"])
    assert not webhooks.verify_signature("github", lowered, body, ["other"])
    delivery = webhooks.parse_delivery("github", lowered, webhooks.read_body("github", "application/json", body))
    assert delivery.kind == "push"
    assert delivery.pushes[0].ref == "refs/heads/main" and delivery.pushes[0].sha == SHA
    assert delivery.pushes[0].repository == "acme/hello"


def test_a_fresh_delivery_id_per_request() -> None:
    _, first = githook.webhook_request({}, "s")
    _, second = githook.webhook_request({}, "s")
    assert first["X-GitHub-Delivery"] != second["X-GitHub-Delivery"]


def test_ref_update_lines_and_responses() -> None:
    lines = [f"{OLD} {SHA} refs/heads/main\n", "\n", "garbage\n", f"{ZERO} {SHA} refs/tags/v1\n"]
    assert githook.parse_ref_updates(lines) == [
        githook.RefUpdate(OLD, SHA, "refs/heads/main"),
        githook.RefUpdate(ZERO, SHA, "refs/tags/v1"),
    ]
    assert githook.describe_response("refs/heads/main", 202, {"release_id": "r01", "status": "PENDING"}) == (
        "stagecoach: refs/heads/main -> release r01 (202)"
    )
    assert githook.describe_response("refs/heads/main", 200, {"release_id": "r01", "duplicate": True}) == (
        "stagecoach: refs/heads/main -> release r01 (200, already released)"
    )
    assert githook.describe_response("refs/heads/x", 202, {"ignored": "refs/heads/x matches none"}) == (
        "stagecoach: refs/heads/x ignored: refs/heads/x matches none (202)"
    )


def test_the_bare_repository_head_is_the_first_branch_that_is_not_a_pattern() -> None:
    assert githook.head_branch(["main", "release/*"]) == "main"
    assert githook.head_branch(["release/*", "develop"]) == "develop"
    assert githook.head_branch(["release/*", "v[0-9]*"]) is None


def test_hook_script_runs_the_package() -> None:
    script = githook.hook_script("http://127.0.0.1:8000", "hello", python="/opt/py bin/python")
    assert script.startswith("#!/bin/sh\n")
    assert "exec '/opt/py bin/python' -m chalicelib.cli git post-receive --url http://127.0.0.1:8000 --stack hello" in (
        script
    )


def test_post_receive_without_config_warns_and_exits_0(tmp_path: Any) -> None:
    out = io.StringIO()
    code = githook.post_receive(io.StringIO(f"{OLD} {SHA} refs/heads/main\n"), out, repo=str(tmp_path))
    assert code == 0
    assert "warning" in out.getvalue()


# ------------------------------------------------------------------ watch


def scripted(*documents: dict[str, Any]) -> Any:
    """A fetch function returning each document in turn (the last one forever)."""
    items: Iterator[dict[str, Any]] = iter(documents)
    last: dict[str, Any] = {}

    def fetch() -> dict[str, Any]:
        nonlocal last
        last = next(items, last)
        return last

    return fetch


def watch(
    fetch: Any, timeout: float | None = None, stop_at_approval: bool = True, command: str = "stagecoach"
) -> tuple[int, list[str], str]:
    out = io.StringIO()
    ticks = iter(range(10_000))
    result = watch_release(
        "r01X",
        fetch,
        out,
        interval=1,
        timeout=timeout,
        stop_at_approval=stop_at_approval,
        command=command,
        sleep=lambda _s: None,
        monotonic=lambda: float(next(ticks)),
        clock=lambda: "12:00:01",
    )
    problem = result.problem.message if result.problem else ""
    return result.exit_code, out.getvalue().splitlines(), problem


def test_watch_succeeded_exits_0_and_prints_changes_only() -> None:
    building = release_doc("RUNNING", build={"status": "IN_PROGRESS", "duration_seconds": None})
    built = release_doc(
        "RUNNING",
        build={"status": "SUCCEEDED", "duration_seconds": 4.2},
        stages=[("dev", "DEPLOYING"), ("prod", "PENDING")],
    )
    waiting = release_doc(
        "RUNNING",
        build={"status": "SUCCEEDED", "duration_seconds": 4.2},
        stages=[("dev", "SUCCEEDED"), ("prod", "AWAITING_APPROVAL")],
    )
    done = release_doc(
        "SUCCEEDED",
        build={"status": "SUCCEEDED", "duration_seconds": 4.2},
        stages=[("dev", "SUCCEEDED"), ("prod", "SUCCEEDED")],
        duration_seconds=62.0,
    )
    code, lines, err = watch(scripted(building, building, built, waiting, waiting, done), stop_at_approval=False)
    assert code == 0 and err == ""
    assert lines[0].startswith("watching release r01X  stack hello  main @ aaaaaaaa")
    assert "12:00:01  build      IN_PROGRESS" in lines
    assert "12:00:01  build      SUCCEEDED  (4.2s)" in lines
    assert "12:00:01  dev        DEPLOYING" in lines
    assert sum("prod" in line and "AWAITING_APPROVAL" in line for line in lines) == 1
    assert sum("run: stagecoach approve r01X prod" in line for line in lines) == 1
    assert "12:00:01  release    SUCCEEDED  (1m02s)" in lines
    assert lines[-1] == "release r01X SUCCEEDED"
    assert sum("build" in line for line in lines) == 2


def test_watch_returns_4_at_an_approval_gate_with_the_command_to_run() -> None:
    built = release_doc("RUNNING", build={"status": "SUCCEEDED"}, stages=[("dev", "DEPLOYING"), ("prod", "PENDING")])
    waiting = release_doc(
        "RUNNING", build={"status": "SUCCEEDED"}, stages=[("dev", "SUCCEEDED"), ("prod", "AWAITING_APPROVAL")]
    )
    waiting["stages"][1]["changes"] = [
        {
            "action": "Modify",
            "logical_id": "Function",
            "resource_type": "AWS::Lambda::Function",
            "replacement": "True",
            "details": [{"attribute": "Properties", "name": "Runtime", "before": "python3.11", "after": "python3.12"}],
        },
        {"action": "Remove", "logical_id": "Queue", "resource_type": "AWS::SQS::Queue", "details": []},
    ]
    never = release_doc("SUCCEEDED")
    code, lines, err = watch(scripted(built, waiting, never), command="stagecoach --url http://h:9")
    assert (code, err) == (4, "")
    assert "12:00:01  prod       AWAITING_APPROVAL" in lines
    assert lines[-7:] == [
        "release r01X awaits approval at prod of these changes:",
        "ACTION  RESOURCE  TYPE                               PROPERTY            BEFORE → AFTER",
        "Modify  Function  AWS::Lambda::Function  !! REPLACE  Properties.Runtime  python3.11 → python3.12",
        "Remove  Queue     AWS::SQS::Queue        !! REMOVE   -                   -",
        "run:",
        "  stagecoach --url http://h:9 approve r01X prod   (or: stagecoach --url http://h:9 reject r01X prod)",
        "then follow it again: stagecoach --url http://h:9 watch r01X",
    ]
    assert not any("SUCCEEDED" in line and "release" in line for line in lines)


def test_watch_of_a_release_already_at_the_gate_returns_at_once() -> None:
    calls = 0
    waiting = release_doc("RUNNING", stages=[("dev", "SUCCEEDED"), ("prod", "AWAITING_APPROVAL")])

    def fetch() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        return waiting

    assert watch(fetch)[0] == 4
    assert calls == 1


def test_watch_failed_exits_1_with_the_stage_and_cause() -> None:
    failed = release_doc(
        "FAILED",
        stages=[("dev", "FAILED"), ("prod", "SKIPPED")],
        failed_stage="dev",
        error="DeployFailed",
        cause="Template format error",
    )
    code, lines, _ = watch(scripted(release_doc(), failed))
    assert code == 1
    assert lines[-1] == "release r01X FAILED at stage dev: DeployFailed: Template format error"


def test_watch_times_out_with_exit_3() -> None:
    code, lines, err = watch(scripted(release_doc()), timeout=5)
    assert code == 3
    assert "timed out after 5s" in err and "still RUNNING" in err
    assert sum("release" in line and "RUNNING" in line for line in lines) == 1


def test_watch_api_error_exits_2() -> None:
    def fetch() -> dict[str, Any]:
        raise ConnectionFailed("cannot reach http://x: connection refused")

    code, _lines, err = watch(fetch)
    assert code == 2
    assert err == "cannot reach http://x: connection refused"


def test_states_order() -> None:
    doc = release_doc(build={"status": "SUCCEEDED", "duration_seconds": 1})
    assert [name for name, _, _ in states(doc)] == ["build", "dev", "prod", "release"]
    assert change_line("t", "dev", "DEPLOYING", None) == "t  dev        DEPLOYING"


def test_watch_of_a_superseded_release_names_the_newer_one_and_exits_1() -> None:
    waiting = release_doc("RUNNING", stages=[("dev", "WAITING"), ("prod", "PENDING")])
    waiting["stages"][0]["waiting_for"] = "r02Y"
    gone = release_doc("SUPERSEDED", stages=[("dev", "SUPERSEDED"), ("prod", "SKIPPED")], superseded_by="r03Z")
    gone["stages"][0]["superseded_by"] = "r03Z"
    code, lines, _ = watch(scripted(waiting, gone))
    assert code == 1
    assert "12:00:01  dev        WAITING for r02Y" in lines
    assert "12:00:01  dev        SUPERSEDED by r03Z" in lines
    assert lines[-1] == "release r01X SUPERSEDED by release r03Z; follow it: stagecoach watch r03Z"


def test_watch_of_a_cancelled_release_says_who_and_exits_1() -> None:
    cancelled = release_doc("CANCELLED", cause="cancelled by alice: wrong commit", cancelled_by="alice")
    code, lines, _ = watch(scripted(cancelled))
    assert code == 1
    assert lines[-1] == "release r01X CANCELLED: cancelled by alice: wrong commit"


def test_releases_table_shows_who_superseded_or_cancelled() -> None:
    rows = [
        release_doc("SUPERSEDED", superseded_by="r03Z"),
        release_doc("CANCELLED", cancelled_by="alice"),
        release_doc("SUCCEEDED"),
    ]
    text = fmt.releases_table(rows)
    assert "SUPERSEDED by r03Z" in text and "CANCELLED by alice" in text


# ------------------------------------------------------------------ metrics


def metrics_document(**changes: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "stack_id": "hello",
        "stage": "prod",
        "window": {"start": "2026-10-31T12:00:00.000Z", "end": "2026-11-30T12:00:00.000Z", "days": 30},
        "deployment_frequency": {
            "deployments": 21,
            "per_day": 0.7,
            "per_week": 4.9,
            "days_with_deployments": 14,
            "bucket": "daily",
            "level": "elite",
        },
        "lead_time": {"median_seconds": 5400.0, "samples": 21, "level": "elite"},
        "change_failure_rate": {"rate": 0.0909, "failed": 2, "deployments": 22, "level": "elite"},
        "time_to_restore": {"median_seconds": 3 * 86400.0, "samples": 2, "failing_now": True, "level": "medium"},
        "daily": [],
        "releases_read": 24,
        "truncated": True,
    }
    document.update(changes)
    return document


def test_metrics_table_has_a_line_per_key_with_its_level() -> None:
    lines = fmt.metrics_table(metrics_document()).splitlines()
    assert lines[0] == "hello / prod: last 30 days (to 2026-11-30 12:00:00 UTC)"
    assert lines[2].split() == ["METRIC", "VALUE", "FROM", "LEVEL"]
    assert "4.9/week" in lines[3] and "21 deploys, 14 days (daily)" in lines[3] and lines[3].endswith("elite")
    assert "1h30m" in lines[4]
    assert "9%" in lines[5] and "2 of 22 changes" in lines[5]
    assert "3.0d" in lines[6] and "failing now" in lines[6] and lines[6].endswith("medium")
    assert lines[-1] == "24 releases read (older ones left out)"


def test_metrics_table_shows_blanks_without_data() -> None:
    empty = metrics_document(
        lead_time={"median_seconds": None, "samples": 0, "level": None},
        change_failure_rate={"rate": None, "failed": 0, "deployments": 0, "level": None},
    )
    lines = fmt.metrics_table(empty).splitlines()
    assert lines[4].split()[-1] == "-"
    assert lines[5].split()[3:5] == ["-", "0"]


def test_the_metrics_command_takes_a_stage_and_days() -> None:
    args = build_parser().parse_args(["metrics", "hello", "--stage", "test", "--days", "7"])
    assert (args.stack, args.stage, args.days) == ("hello", "test", 7)
    defaults = build_parser().parse_args(["metrics", "hello"])
    assert (defaults.stage, defaults.days) == (None, None)
