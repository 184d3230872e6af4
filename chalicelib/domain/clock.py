"""Time and identifiers, in the forms stored everywhere (ISO-8601 UTC with ``Z``, ULID-like ids)."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def now_iso() -> str:
    """The current time as ``2026-11-27T14:30:00.123Z``."""
    return iso(datetime.now(UTC))


def iso(moment: datetime) -> str:
    """Format an aware datetime as ISO-8601 UTC with milliseconds and ``Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_iso(text: str) -> datetime:
    """Parse an ISO-8601 timestamp (``Z`` or offset) into an aware datetime."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def new_id(prefix: str = "r") -> str:
    """A time-ordered unique id: prefix + 10 chars of milliseconds + 16 random chars (Crockford base32)."""
    millis = int(time.time() * 1000)
    stamp = "".join(_CROCKFORD[(millis >> shift) & 31] for shift in range(45, -1, -5))
    rand = int.from_bytes(os.urandom(10), "big")
    tail = "".join(_CROCKFORD[(rand >> shift) & 31] for shift in range(75, -1, -5))
    return f"{prefix}{stamp}{tail}"
