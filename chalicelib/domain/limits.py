"""Size limits of what Stagecoach accepts and stores, and the checks that are cheap enough to run first.

The limits keep every write inside what AWS accepts: a DynamoDB item is at most 400 KB, a Step
Functions execution input at most 256 KB, a DynamoDB key at most 2048 bytes. ``tests/unit/test_limits.py``
checks that the largest stack and release these limits allow still fit.
"""

from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Any

from .errors import ValidationError

# Request bodies deeper than this are refused before they are parsed (json.loads recurses per level).
MAX_JSON_DEPTH = 32
# A commit message is stored (and put in the execution input) cut to this many UTF-8 bytes.
MAX_MESSAGE_BYTES = 16 * 1024
MAX_AUTHOR_CHARS = 256
# The settings of a stack (repository, branches, tags, paths, stages) as compact JSON, at most.
MAX_STACK_SETTINGS_BYTES = 64 * 1024
# Refs are part of DynamoDB keys (PUSH#stack#ref#sha): a key is at most 2048 bytes.
MAX_REF_BYTES = 1024
# Delivery ids and idempotency keys are part of DynamoDB keys too.
MAX_KEY_CHARS = 255
TRUNCATION_NOTE = "\n[truncated by Stagecoach: the message was {size} bytes]"

# JSON strings, which may hold brackets that do not nest anything (unrolled: linear, no backtracking).
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_DELTA = {"[": 1, "{": 1, "]": -1, "}": -1}


def json_depth(text: str) -> int:
    """How deeply the arrays and objects of a JSON text nest, found without parsing it."""
    if text.count("[") + text.count("{") == 0:
        return 0
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", text))
    return max(0, max(accumulate(map(_DELTA.__getitem__, brackets)), default=0))


def check_json_depth(text: str, where: str = "body", limit: int = MAX_JSON_DEPTH) -> None:
    """ValidationError if ``text`` nests deeper than ``limit`` (checked before any parser recursion)."""
    if text.count("[") + text.count("{") <= limit:
        return
    depth = json_depth(text)
    if depth > limit:
        raise ValidationError(f"nests {depth} levels deep; the limit is {limit}", where)


def check_unicode(text: str, value: Any, where: str = "body") -> None:
    """ValidationError if the parsed JSON ``value`` of ``text`` holds a lone UTF-16 surrogate (``"\\ud800"``).

    Python's JSON parser lets them through, but they cannot be encoded as UTF-8, so nothing could store them.
    """
    if _SURROGATE_ESCAPE.search(text) is None:
        return
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValidationError("holds a lone UTF-16 surrogate escape; strings must be valid Unicode", where) from exc


def truncate_utf8(text: str, max_bytes: int, note: str = TRUNCATION_NOTE) -> str:
    """``text`` if it fits in ``max_bytes`` of UTF-8, else its head and a note saying it was cut (within the bound)."""
    encoded = text.encode("utf-8", "surrogatepass")
    if len(encoded) <= max_bytes:
        return text
    suffix = note.format(size=len(encoded))
    head = encoded[: max(0, max_bytes - len(suffix.encode("utf-8")))]
    return head.decode("utf-8", "ignore") + suffix


def clip(text: str, max_chars: int) -> str:
    """``text`` cut to ``max_chars`` characters, marked with an ellipsis when cut (for messages)."""
    return text if len(text) <= max_chars else text[: max_chars - 1] + "…"
