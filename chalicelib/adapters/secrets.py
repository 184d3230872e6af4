"""Webhook secrets in AWS Secrets Manager, cached in a warm handler.

The secret value is JSON ``{"current": s, "previous": p|null, "previous_expires_at": epoch|null}``.
"""

from __future__ import annotations

import contextlib
import json
import secrets as random_secrets
import threading
import time
from collections.abc import Callable
from typing import Any

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
