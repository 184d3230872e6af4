"""Clone credentials reach a build only through the build worker, which fetches them when it starts it."""

from __future__ import annotations

import json
from typing import Any

from chalicelib.adapters.codebuild import CodeBuildBuilder
from chalicelib.adapters.secrets import codebuild_source_secret, userinfo_of
from chalicelib.domain.builds import BuildRequest, SourceCredentials
from chalicelib.services.builds import BuildService
from tests.fakes import CountingMetrics, InMemoryCloneCredentials

NOW = "2026-11-27T12:00:00.000Z"
TOKEN = "ghp_0123456789abcdefghijklmnopqrstuvwxyz"


def message(clone_url: str) -> str:
    return json.dumps(
        {
            "task_token": "task-token-1",
            "release_id": "r1",
            "stack_id": "hello",
            "sha": "a" * 40,
            "ref": "refs/heads/main",
            "clone_url": clone_url,
            "buildspec_path": "buildspec.yml",
            "template_path": "template.yaml",
        }
    )


class RecordingBuilder:
    def __init__(self) -> None:
        self.started: list[tuple[BuildRequest, SourceCredentials | None]] = []

    def start(self, request: BuildRequest, credentials: SourceCredentials | None) -> str:
        self.started.append((request, credentials))
        return "build-1"


class Records:
    def __init__(self) -> None:
        self.builds: dict[str, dict[str, Any]] = {}
        self.tokens: dict[str, tuple[str, str]] = {}

    def put_build_token(self, release_id: str, token: str, template_key: str) -> None:
        self.tokens[release_id] = (token, template_key)

    def build_token(self, release_id: str) -> tuple[str, str] | None:
        return self.tokens.get(release_id)

    def record_build(self, release_id: str, build: dict[str, Any]) -> None:
        self.builds[release_id] = build


class Callbacks:
    def __init__(self) -> None:
        self.failed: list[tuple[str, str, str]] = []

    def succeed(self, token: str, output: dict[str, Any]) -> None:
        raise AssertionError("no build finishes here")

    def fail(self, token: str, error: str, cause: str) -> None:
        self.failed.append((token, error, cause))


def service(credentials: InMemoryCloneCredentials) -> tuple[BuildService, RecordingBuilder, Callbacks]:
    builder, callbacks = RecordingBuilder(), Callbacks()
    built = BuildService(
        builder,
        Records(),
        callbacks,
        credentials,
        lambda: "bucket",
        lambda: "us-east-1",
        lambda: NOW,
        CountingMetrics(),
    )
    return built, builder, callbacks


def test_the_worker_fetches_the_stacks_credentials_for_a_url_that_stands_for_them() -> None:
    credentials = InMemoryCloneCredentials()
    credentials.put("hello", "github", "https://***@github.com/acme/private.git", f"bot:{TOKEN}")
    worker, builder, _ = service(credentials)
    assert worker.start(message("https://***@github.com/acme/private.git")) == "build-1"
    [(request, given)] = builder.started
    assert request.clone_url == "https://***@github.com/acme/private.git"
    assert given is not None and given.userinfo == f"bot:{TOKEN}"
    assert TOKEN not in repr(given)


def test_no_credentials_are_fetched_for_a_url_without_them() -> None:
    worker, builder, _ = service(InMemoryCloneCredentials())
    worker.start(message("https://github.com/acme/public.git"))
    assert builder.started[0][1] is None


def test_credentials_gone_from_the_store_fail_the_build_task_with_why() -> None:
    worker, builder, callbacks = service(InMemoryCloneCredentials())
    assert worker.start(message("https://***@github.com/acme/private.git")) == ""
    assert builder.started == []
    [(token, error, cause)] = callbacks.failed
    assert (token, error) == ("task-token-1", "BuildNotStarted")
    assert "no stored clone credentials" in cause


class RecordingCodeBuild:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def start_build(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        return {"build": {"id": "stagecoach:1"}}


def test_codebuild_is_told_which_secret_holds_the_credentials_never_their_value() -> None:
    client = RecordingCodeBuild()
    request = BuildRequest("t", "r1", "hello", "a" * 40, "https://***@github.com/acme/private.git", "b.yml", "t.yaml")
    arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:stagecoach/clone/hello-AbCdEf"
    CodeBuildBuilder(client, "stagecoach", "bucket").start(request, SourceCredentials(f"bot:{TOKEN}", arn))
    [call] = client.calls
    assert call["sourceLocationOverride"] == "https://github.com/acme/private.git"
    assert call["sourceTypeOverride"] == "GITHUB"
    assert call["sourceAuthOverride"] == {"type": "SECRETS_MANAGER", "resource": arn}
    assert TOKEN not in json.dumps(call) and "***" not in json.dumps(call)


def test_codebuild_gets_no_source_auth_without_credentials() -> None:
    client = RecordingCodeBuild()
    request = BuildRequest("t", "r1", "hello", "a" * 40, "https://github.com/acme/public.git", "b.yml", "t.yaml")
    CodeBuildBuilder(client, "stagecoach", "bucket").start(request, None)
    assert "sourceAuthOverride" not in client.calls[0]


def test_stored_credentials_are_in_codebuilds_source_credential_form() -> None:
    document, tags = codebuild_source_secret("github", "https://***@github.com/acme/a.git", f"bot:{TOKEN}")
    assert document == {"ServerType": "GITHUB", "AuthType": "PERSONAL_ACCESS_TOKEN", "Token": TOKEN, "Username": "bot"}
    assert {t["Key"]: t["Value"] for t in tags} == {
        "codebuild:source": "",
        "codebuild:source:type": "personal_access_token",
        "codebuild:source:provider": "github",
    }
    assert userinfo_of(document) == f"bot:{TOKEN}"
    enterprise, _ = codebuild_source_secret("github", "https://***@git.acme.dev/a.git", TOKEN)
    assert enterprise == {"ServerType": "GITHUB_ENTERPRISE", "AuthType": "PERSONAL_ACCESS_TOKEN", "Token": TOKEN}
    assert userinfo_of(enterprise) == TOKEN
    bitbucket, _ = codebuild_source_secret("bitbucket", "https://***@bitbucket.org/a/b.git", "bot:app-password")
    assert bitbucket["AuthType"] == "BASIC_AUTH"
