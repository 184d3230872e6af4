"""Character rules shared by every validated string.

Patterns are matched whole (``fullmatch``) and use only syntax that means the same in Python and in
ECMA-262 regular expressions, so docs/openapi.yaml states them as they are (tests/unit/test_openapi.py
compares the two).
"""

from __future__ import annotations

import re

CONTROL = r"\x00-\x1f\x7f-\x9f"
SPACE = r"\x20\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
# A visible character somewhere and no control characters anywhere.
TEXT = rf"[^{CONTROL}]*[^{CONTROL}{SPACE}][^{CONTROL}]*"

_COMPILED: dict[str, re.Pattern[str]] = {}


def matches(pattern: str, value: str) -> bool:
    """``value`` matches ``pattern`` as a whole."""
    compiled = _COMPILED.get(pattern)
    if compiled is None:
        compiled = _COMPILED[pattern] = re.compile(pattern)
    return compiled.fullmatch(value) is not None
