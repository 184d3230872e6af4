"""Every route needs SigV4 (IAM authorizer) on AWS except /health, the signed webhooks and the dashboard's
data-free pages and files (their scripts read the signed API)."""

from __future__ import annotations

from chalice.app import IAMAuthorizer

from app import app

OPEN = (
    "/health",
    "/openapi.yaml",
    "/webhooks/github/{stack_id}",
    "/webhooks/gitlab/{stack_id}",
    "/webhooks/bitbucket/{stack_id}",
    "/",
    "/ui/stacks/{stack_id}",
    "/ui/releases/{release_id}",
    "/ui/assets/{name}",
)


def test_every_api_route_has_the_iam_authorizer_and_only_webhooks_and_health_are_open() -> None:
    seen = 0
    for path, methods in app.routes.items():
        for method, entry in methods.items():
            seen += 1
            if path in OPEN:
                assert entry.authorizer is None, f"{method} {path} must stay open"
            else:
                assert isinstance(entry.authorizer, IAMAuthorizer), f"{method} {path} has no IAM authorizer"
    assert seen >= 20
