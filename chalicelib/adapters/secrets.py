"""Webhook secrets and clone credentials in AWS Secrets Manager.

A webhook secret's value is JSON ``{"current": s, "previous": p|null, "previous_expires_at": epoch|null}``,
cached in a warm handler. Clone credentials are kept in the form CodeBuild reads (see below).
"""

from __future__ import annotations

import contextlib
import json
import secrets as random_secrets
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

from chalicelib.domain.builds import SourceCredentials

SECRET_BYTES = 32
CACHE_SECONDS = 300.0


class SecretsManagerStore:
    """SecretStore on Secrets Manager; reads are cached for ``cache_seconds``."""

    def __init__(self, client: Callable[[], Any], prefix: str, cache_seconds: float = CACHE_SECONDS) -> None:
        self._client_factory = client
        self._prefix = prefix
        self._cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    @property
    def _client(self) -> Any:
        return self._client_factory()

    def _name(self, stack_id: str) -> str:
        return f"{self._prefix}{stack_id}"

    @staticmethod
    def _generate() -> str:
        return random_secrets.token_hex(SECRET_BYTES)

    def create(self, stack_id: str) -> str:
        """Store a new random secret (64 hex characters, 32 random bytes)."""
        value = self._generate()
        document = {"current": value, "previous": None, "previous_expires_at": None}
        self._client.create_secret(
            Name=self._name(stack_id),
            SecretString=json.dumps(document),
            Description=f"Stagecoach webhook secret of stack {stack_id}",
        )
        self._remember(stack_id, document)
        return value

    def rotate(self, stack_id: str, grace_seconds: int) -> str:
        """New current secret; the old one verifies for ``grace_seconds`` more."""
        old = self._read(stack_id)
        value = self._generate()
        document = {
            "current": value,
            "previous": old["current"],
            "previous_expires_at": int(time.time()) + grace_seconds,
        }
        self._client.put_secret_value(SecretId=self._name(stack_id), SecretString=json.dumps(document))
        self._remember(stack_id, document)
        return value

    def secrets(self, stack_id: str, fresh: bool = False) -> list[str]:
        """Current secret, then the previous one while its grace period lasts."""
        document = self._read(stack_id) if fresh else self._cached(stack_id)
        values = [document["current"]]
        expires = document.get("previous_expires_at")
        if document.get("previous") and expires and expires > time.time():
            values.append(document["previous"])
        return values

    def delete(self, stack_id: str) -> None:
        """Delete at once (a re-created stack of the same id gets a new secret)."""
        with contextlib.suppress(self._client.exceptions.ResourceNotFoundException):
            self._client.delete_secret(SecretId=self._name(stack_id), ForceDeleteWithoutRecovery=True)
        with self._lock:
            self._cache.pop(stack_id, None)

    def _cached(self, stack_id: str) -> dict[str, Any]:
        with self._lock:
            hit = self._cache.get(stack_id)
        if hit and time.monotonic() - hit[0] < self._cache_seconds:
            return hit[1]
        return self._read(stack_id)

    def _read(self, stack_id: str) -> dict[str, Any]:
        try:
            raw = self._client.get_secret_value(SecretId=self._name(stack_id))["SecretString"]
        except self._client.exceptions.ResourceNotFoundException:
            document: dict[str, Any] = {"current": "", "previous": None, "previous_expires_at": None}
        else:
            document = json.loads(raw)
        self._remember(stack_id, document)
        return document

    def _remember(self, stack_id: str, document: dict[str, Any]) -> None:
        with self._lock:
            self._cache[stack_id] = (time.monotonic(), document)


# CodeBuild reads source credentials from a Secrets Manager secret in this form, found through these
# tags (https://docs.aws.amazon.com/codebuild/latest/userguide/asm-create-secret.html); the build worker
# names the secret in StartBuild's sourceAuthOverride (type SECRETS_MANAGER), never its value.
CODEBUILD_SERVER_TYPES = {"github": "GITHUB", "gitlab": "GITLAB", "bitbucket": "BITBUCKET"}
CODEBUILD_HOSTED = {"github": "github.com", "gitlab": "gitlab.com", "bitbucket": "bitbucket.org"}
SELF_HOSTED_SERVER_TYPES = {"github": "GITHUB_ENTERPRISE", "gitlab": "GITLAB_SELF_MANAGED", "bitbucket": "BITBUCKET"}


def codebuild_source_secret(
    provider: str, clone_url: str, userinfo: str
) -> tuple[dict[str, str], list[dict[str, str]]]:
    """The secret document and tags CodeBuild expects for ``userinfo`` (``token`` or ``user:token``)."""
    host = (urlparse(clone_url).hostname or "").lower()
    hosted = host == CODEBUILD_HOSTED.get(provider)
    server_type = (CODEBUILD_SERVER_TYPES if hosted else SELF_HOSTED_SERVER_TYPES).get(provider, "GITHUB_ENTERPRISE")
    username, colon, token = userinfo.partition(":")
    auth_type = "BASIC_AUTH" if colon and provider == "bitbucket" else "PERSONAL_ACCESS_TOKEN"
    document = {"ServerType": server_type, "AuthType": auth_type, "Token": token if colon else username}
    if colon:
        document["Username"] = username
    tags = [
        {"Key": "codebuild:source", "Value": ""},
        {"Key": "codebuild:source:type", "Value": auth_type.lower()},
        {"Key": "codebuild:source:provider", "Value": server_type.lower()},
    ]
    return document, tags


def userinfo_of(document: dict[str, Any]) -> str:
    """The URL user info a stored document stands for."""
    token = str(document.get("Token", ""))
    username = document.get("Username")
    return f"{username}:{token}" if username is not None else token


class _StackSecret:
    """One Secrets Manager secret per stack, named ``{prefix}{stack_id}``."""

    def __init__(self, client: Callable[[], Any], prefix: str) -> None:
        self._client_factory = client
        self._prefix = prefix

    @property
    def _client(self) -> Any:
        return self._client_factory()

    def _name(self, stack_id: str) -> str:
        return f"{self._prefix}{stack_id}"


class SecretsManagerCloneCredentials(_StackSecret):
    """CloneCredentialStore on Secrets Manager: one secret per stack, named ``{prefix}{stack_id}``."""

    def put(self, stack_id: str, provider: str, clone_url: str, userinfo: str) -> None:
        """Create the stack's secret, or give it a new value."""
        document, tags = codebuild_source_secret(provider, clone_url, userinfo)
        try:
            self._client.create_secret(
                Name=self._name(stack_id),
                SecretString=json.dumps(document),
                Description=f"Stagecoach clone credentials of stack {stack_id}",
                Tags=tags,
            )
        except self._client.exceptions.ResourceExistsException:
            self._client.put_secret_value(SecretId=self._name(stack_id), SecretString=json.dumps(document))

    def get(self, stack_id: str) -> SourceCredentials | None:
        """The credentials and the secret's ARN; None if the stack has none."""
        try:
            found = self._client.get_secret_value(SecretId=self._name(stack_id))
        except self._client.exceptions.ResourceNotFoundException:
            return None
        return SourceCredentials(userinfo=userinfo_of(json.loads(found["SecretString"])), reference=str(found["ARN"]))

    def delete(self, stack_id: str) -> None:
        """Delete at once (credentials given again later make a new secret)."""
        with contextlib.suppress(self._client.exceptions.ResourceNotFoundException):
            self._client.delete_secret(SecretId=self._name(stack_id), ForceDeleteWithoutRecovery=True)


class SecretsManagerNotificationSecrets(_StackSecret):
    """NotificationSecrets on Secrets Manager: one secret per stack, ``{prefix}{stack_id}``, JSON
    ``{"commit_status_token": str|None, "webhooks": {target key: secret}}``."""

    def read(self, stack_id: str) -> dict[str, Any]:
        """The stack's tokens and secrets (an empty document if it has none)."""
        try:
            raw = self._client.get_secret_value(SecretId=self._name(stack_id))["SecretString"]
        except self._client.exceptions.ResourceNotFoundException:
            return {"commit_status_token": None, "webhooks": {}}
        document: dict[str, Any] = json.loads(raw)
        return document

    def write(self, stack_id: str, document: dict[str, Any]) -> None:
        """Create or replace the secret; delete it when the document holds nothing."""
        if not document.get("commit_status_token") and not document.get("webhooks"):
            self.delete(stack_id)
            return
        value = json.dumps(document)
        try:
            self._client.create_secret(
                Name=self._name(stack_id),
                SecretString=value,
                Description=f"Stagecoach commit-status token and webhook secrets of stack {stack_id}",
            )
        except self._client.exceptions.ResourceExistsException:
            self._client.put_secret_value(SecretId=self._name(stack_id), SecretString=value)

    def delete(self, stack_id: str) -> None:
        """Delete at once (nothing to do if the stack has none)."""
        with contextlib.suppress(self._client.exceptions.ResourceNotFoundException):
            self._client.delete_secret(SecretId=self._name(stack_id), ForceDeleteWithoutRecovery=True)
