"""API Gateway proxy events and a Lambda context, to call the app the way Lambda does."""

from __future__ import annotations

from typing import Any


class LambdaContext:
    """The attributes Chalice and powertools read from a Lambda context."""

    function_name = "stagecoach-dev"
    aws_request_id = "bench"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:stagecoach-dev"

    def get_remaining_time_in_millis(self) -> int:
        """Lambda's remaining-time call."""
        return 30_000


def apigw_event(
    method: str,
    resource: str,
    path: str,
    body: str | None = None,
    headers: dict[str, str] | None = None,
    path_parameters: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A REST API (v1) proxy event."""
    return {
        "resource": resource,
        "path": path,
        "httpMethod": method,
        "headers": headers or {},
        "multiValueHeaders": {},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": path_parameters,
        "stageVariables": None,
        "body": body,
        "isBase64Encoded": False,
        "requestContext": {"resourcePath": resource, "httpMethod": method, "requestId": "bench", "stage": "api"},
    }
