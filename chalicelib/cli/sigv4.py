"""SigV4 signing of Stagecoach API requests on AWS (the API uses API Gateway's IAM authorizer).

``signed_headers`` returns the headers to send with the request: the caller's own headers plus
``Authorization``, ``X-Amz-Date`` and, with temporary credentials, ``X-Amz-Security-Token``.
The body must be sent exactly as signed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

SERVICE = "execute-api"
_API_HOST = re.compile(r"^[a-z0-9]+\.execute-api\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$")


class NoCredentialsError(RuntimeError):
    """No AWS credentials were found to sign with."""


def region_from_url(url: str) -> str | None:
    """The region of an ``https://{id}.execute-api.{region}.amazonaws.com`` URL, else None."""
    host = (urlsplit(url).hostname or "").lower()
    match = _API_HOST.match(host)
    return match.group(1) if match else None


def signed_headers(
    method: str,
    url: str,
    body: bytes = b"",
    headers: Mapping[str, str] | None = None,
    *,
    credentials: Any = None,
    region: str | None = None,
) -> dict[str, str]:
    """Headers that sign ``method url`` with ``body`` for API Gateway (service ``execute-api``).

    The region comes from ``region``, else the execute-api URL, else ``AWS_REGION`` /
    ``AWS_DEFAULT_REGION``. ``credentials`` defaults to botocore's credential chain.
    """
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    if credentials is None:
        import botocore.session

        credentials = botocore.session.get_session().get_credentials()
        if credentials is None:
            raise NoCredentialsError("no AWS credentials found (set AWS_PROFILE or AWS_ACCESS_KEY_ID)")
    signing_region = (
        region or region_from_url(url) or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    )
    if not signing_region:
        raise ValueError(f"cannot tell the region of {url}; set AWS_REGION")
    request = AWSRequest(method=method.upper(), url=url, data=body, headers=dict(headers or {}))
    SigV4Auth(credentials, SERVICE, signing_region).add_auth(request)
    return {str(k): str(v) for k, v in request.headers.items()}
