"""Builds on AWS CodeBuild: one shared project, everything per build given as overrides."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

from chalicelib.domain import clone_urls
from chalicelib.domain.builds import BUILD_DIRECTORY, BuildRequest, SourceCredentials

SOURCE_TYPES = {"github.com": "GITHUB", "bitbucket.org": "BITBUCKET", "gitlab.com": "GITLAB"}


def source_type(clone_url: str) -> str:
    """CodeBuild's source type for a clone URL (GitHub, Bitbucket, GitLab hosts; else GitHub Enterprise)."""
    host = (urlparse(clone_url).hostname or "").lower()
    return SOURCE_TYPES.get(host, "GITHUB_ENTERPRISE")


class CodeBuildBuilder:
    """Builder on CodeBuild's StartBuild (idempotent per release for five minutes)."""

    def __init__(self, client: Any, project: str, artifact_bucket: str) -> None:
        self._client = client
        self._project = project
        self._bucket = artifact_bucket

    def start(self, request: BuildRequest, credentials: SourceCredentials | None) -> str:
        """StartBuild with the release's source, buildspec, environment and artifact location.

        Clone credentials are named (the secret's ARN in ``sourceAuthOverride``), never passed.
        """
        environment = [
            {"name": name, "value": value, "type": "PLAINTEXT"}
            for name, value in request.environment(self._bucket).items()
        ]
        location = clone_urls.without_userinfo(request.clone_url)
        source_auth: dict[str, Any] = {}
        if credentials is not None:
            source_auth["sourceAuthOverride"] = {"type": "SECRETS_MANAGER", "resource": credentials.reference}
        response = self._client.start_build(
            **source_auth,
            projectName=self._project,
            sourceVersion=request.source_version,
            sourceTypeOverride=source_type(location),
            sourceLocationOverride=location,
            buildspecOverride=request.buildspec_path,
            environmentVariablesOverride=environment,
            artifactsOverride={
                "type": "S3",
                "location": self._bucket,
                "path": request.artifact_prefix.removesuffix(f"/{BUILD_DIRECTORY}"),
                "name": BUILD_DIRECTORY,
                "namespaceType": "NONE",
                "packaging": "NONE",
                "encryptionDisabled": False,
            },
            idempotencyToken=request.release_id[:64],
        )
        return str(response["build"]["id"])
