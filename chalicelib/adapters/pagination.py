"""Opaque pagination tokens over DynamoDB's LastEvaluatedKey."""

from __future__ import annotations

import base64
import json
from typing import Any

from chalicelib.domain.errors import ValidationError

MAX_KEY_BYTES = 1024


def encode_token(last_evaluated_key: dict[str, Any] | None) -> str | None:
    """A URL-safe token for the next page, or None at the end."""
    if not last_evaluated_key:
        return None
    raw = json.dumps(last_evaluated_key, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(
    token: str | None, expected_keys: set[str], fixed: dict[str, str] | None = None
) -> dict[str, Any] | None:
    """The LastEvaluatedKey behind a token; ValidationError if it is not one of ours.

    ``fixed``: attributes the key must have with these values (the partition being listed), so that a
    token of another listing is refused here rather than by DynamoDB.
    """
    if not token:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        key = json.loads(raw)
    except (ValueError, TypeError) as exc:
        raise ValidationError("is not a token this API returned", "next_token") from exc
    if not isinstance(key, dict) or set(key) != expected_keys:
        raise ValidationError("is not a token this API returned", "next_token")
    for value in key.values():
        if not isinstance(value, dict) or set(value) != {"S"} or not isinstance(value["S"], str):
            raise ValidationError("is not a token this API returned", "next_token")
        if not value["S"] or len(value["S"].encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
            raise ValidationError("is not a token this API returned", "next_token")
    for name, expected in (fixed or {}).items():
        if key[name]["S"] != expected:
            raise ValidationError("is a token of another listing", "next_token")
    return key
