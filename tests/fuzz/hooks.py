"""Schemathesis hooks of the fuzz test (tests/functional/test_fuzz.py), loaded through SCHEMATHESIS_HOOKS.

Deliveries to the seeded stack are signed (below), so fuzzed payloads reach the webhook parsers.

JSON Schema cannot state four of the API's rules, which docs/openapi.yaml states in words: stage names
are unique within a stack, so are a stack's notification targets (type and URL), a stack's settings are
at most 65536 bytes of JSON, and ``next_token`` must be
one a listing returned. Data breaking only those rules is schema-valid yet rightly refused with a 400
naming the rule; those refusals, and nothing else, are not counted as failures.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

import schemathesis
from schemathesis.openapi.checks import RejectedPositiveData

# The messages of the rules above (chalicelib/domain/stacks.py, chalicelib/adapters/pagination.py).
INEXPRESSIBLE_RULES = (
    "duplicate stage name",
    "the same type and URL twice",
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


# Deliveries to the seeded stack are signed with its webhook secret (given by the test), so that
# generated payloads get past the signature check and reach the parsers of every provider.
SECRET_VARIABLE = "STAGECOACH_FUZZ_WEBHOOK_SECRET"
SIGNED_STACK = "hello"


def serialized(body: Any, media_type: str | None) -> bytes | None:
    """The bytes a body is sent as (what the signature covers), or None if it cannot be signed."""
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode("utf-8", "surrogatepass")
    if media_type == "application/x-www-form-urlencoded" and isinstance(body, dict):
        return urlencode({str(k): str(v) for k, v in body.items()}).encode()
    if media_type == "application/json":
        try:
            return json.dumps(body).encode()
        except (TypeError, ValueError, RecursionError):
            return None
    return None


SIGNING: dict[str, str] = {}


def _stack_of(case: Any) -> Any:
    """The case's stack_id path parameter (None if it has none; generated containers may be anything)."""
    parameters = case.path_parameters
    return parameters.get("stack_id") if isinstance(parameters, Mapping) else None


def signing_secret() -> str | None:
    """The seeded stack's current webhook secret: the test's, or the last one a rotation returned."""
    return SIGNING.get("secret") or os.environ.get(SECRET_VARIABLE)


@schemathesis.hook
def after_call(context: Any, case: Any, response: Any) -> None:
    """Keep signing with the seeded stack's secret when the fuzzer rotates it, or deletes and creates it again
    (the document's examples name that stack)."""
    operation = (case.operation.method.upper(), case.operation.path)
    if operation == ("POST", "/stacks/{stack_id}/webhook/rotate") and response.status_code == 200:
        if _stack_of(case) == SIGNED_STACK:
            SIGNING["secret"] = str(json.loads(response.content)["secret"])
    elif operation == ("POST", "/stacks") and response.status_code == 201:
        created = json.loads(response.content)
        if created["id"] == SIGNED_STACK:
            SIGNING["secret"] = str(created["webhook"]["secret"])


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    """Sign deliveries to the seeded stack as its provider would."""
    secret = signing_secret()
    path = case.operation.path
    if not secret or not path.startswith("/webhooks/") or _stack_of(case) != SIGNED_STACK:
        return
    if case.headers is not None and not isinstance(case.headers, Mapping):
        return
    headers = dict(case.headers or {})
    if path.startswith("/webhooks/gitlab/"):
        headers["X-Gitlab-Token"] = secret
    else:
        body = serialized(case.body, case.media_type)
        if body is None:
            return
        kwargs["data"] = body
        name = "X-Hub-Signature-256" if path.startswith("/webhooks/github/") else "X-Hub-Signature"
        headers[name] = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    case.headers = headers
