"""Building signed provider deliveries for tests."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).parent / "fixtures" / "webhooks"
SHA = "a" * 40


def fixture(path: str) -> dict[str, Any]:
    """A provider fixture payload (``github/push.json``)."""
    payload: dict[str, Any] = json.loads((FIXTURES / path).read_text())
    return payload


def github_push(
    ref: str = "refs/heads/main", sha: str = SHA, full_name: str = "acme/hello", **extra: Any
) -> dict[str, Any]:
    """A minimal GitHub push payload."""
    return {
        "ref": ref,
        "before": "0" * 40 if extra.pop("created", False) else "b" * 40,
        "after": sha,
        "deleted": False,
        "repository": {"full_name": full_name},
        "head_commit": {
            "id": sha,
            "message": "Ship it",
            "timestamp": "2026-11-27T12:00:00Z",
            "author": {"name": "Ada"},
        },
        "pusher": {"name": "ada"},
        **extra,
    }


def hmac_sha256(secret: str, body: bytes) -> str:
    """``sha256=<hex>`` of a body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def github_headers(secret: str, body: bytes, event: str = "push", delivery: str | None = None) -> dict[str, str]:
    """Headers GitHub sends, signed."""
    return {
        "Content-Type": "application/json",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "X-Hub-Signature-256": hmac_sha256(secret, body),
    }


def gitlab_headers(secret: str, event: str = "Push Hook", delivery: str | None = None) -> dict[str, str]:
    """Headers GitLab sends."""
    return {
        "Content-Type": "application/json",
        "X-Gitlab-Event": event,
        "X-Gitlab-Token": secret,
        "X-Gitlab-Event-UUID": delivery or str(uuid.uuid4()),
    }


def bitbucket_headers(
    secret: str, body: bytes, event: str = "repo:push", delivery: str | None = None
) -> dict[str, str]:
    """Headers Bitbucket sends, signed."""
    return {
        "Content-Type": "application/json",
        "X-Event-Key": event,
        "X-Request-UUID": delivery or str(uuid.uuid4()),
        "X-Hub-Signature": hmac_sha256(secret, body),
    }
