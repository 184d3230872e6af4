"""Schemathesis hooks of the fuzz test (tests/functional/test_fuzz.py), loaded through SCHEMATHESIS_HOOKS.

JSON Schema cannot state three of the API's rules, which docs/openapi.yaml states in words: stage names
are unique within a stack, a stack's settings are at most 65536 bytes of JSON, and ``next_token`` must be
one a listing returned. Data breaking only those rules is schema-valid yet rightly refused with a 400
naming the rule; those refusals, and nothing else, are not counted as failures.
"""

from __future__ import annotations

import json
from typing import Any

import schemathesis
from schemathesis.openapi.checks import RejectedPositiveData

# The messages of the rules above (chalicelib/domain/stacks.py, chalicelib/adapters/pagination.py).
INEXPRESSIBLE_RULES = (
    "duplicate stage name",
    "the stack's settings are",
    "next_token: is not a token this API returned",
    "next_token: is a token of another listing",
)


def refused_by_inexpressible_rule(failure: Any, response: Any) -> bool:
    """The failure is a schema-valid request refused (400) for one of INEXPRESSIBLE_RULES."""
    if not isinstance(failure, RejectedPositiveData) or response.status_code != 400:
        return False
    try:
        message = str(json.loads(response.content).get("message", ""))
    except (ValueError, AttributeError):
        return False
    return any(rule in message for rule in INEXPRESSIBLE_RULES)


@schemathesis.hook
def filter_failure(context: Any, failure: Any, case: Any, response: Any) -> bool:
    """Keep every failure but refusals for the rules JSON Schema cannot state."""
    return not refused_by_inexpressible_rule(failure, response)
