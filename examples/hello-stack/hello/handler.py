"""The hello-stack service: one tiny Lambda-style handler."""

import json
import os


def greeting(name=None):
    """Return the greeting for ``name`` (``world`` when empty)."""
    name = (name or "").strip() or "world"
    return f"Hello, {name}!"


def handler(event, context):
    """API-Gateway-style handler: ``?name=...`` → JSON greeting with stage and sha."""
    params = (event or {}).get("queryStringParameters") or {}
    body = {
        "message": greeting(params.get("name")),
        "stage": os.environ.get("STAGE", "dev"),
        "sha": os.environ.get("SHA", "unknown"),
    }
    return {
        "statusCode": 200,
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps(body),
    }
