"""Build logs the local builder keeps in S3."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

MAX_LOG_BYTES = 5 * 1024 * 1024


class S3LogStore:
    """LogStore on S3 (``s3://bucket/key`` pointers)."""

    def __init__(self, client: Callable[[], Any]) -> None:
        self._client = client

    def read(self, url: str) -> str | None:
        """The log text (its last 5 MiB), or None if there is none."""
        bucket, _, key = url.removeprefix("s3://").partition("/")
        client = self._client()
        try:
            head = client.head_object(Bucket=bucket, Key=key)
            size = int(head["ContentLength"])
            extra = {"Range": f"bytes={size - MAX_LOG_BYTES}-"} if size > MAX_LOG_BYTES else {}
            body = client.get_object(Bucket=bucket, Key=key, **extra)["Body"].read()
        except (client.exceptions.NoSuchKey, client.exceptions.ClientError):
            return None
        return str(body.decode("utf-8", errors="replace"))
