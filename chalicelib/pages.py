"""The web dashboard's files (chalicelib/ui/): HTML shells that carry no data, the JS and the CSS.

Every page is the same shell; its JS reads the JSON API (signed with SigV4 on AWS) and fills it in.
Files are read on first use, never at import.
"""

from __future__ import annotations

import functools
import html
from pathlib import Path

from chalice.app import Response

from chalicelib.domain.errors import NotFoundError
from chalicelib.domain.releases import is_release_id
from chalicelib.domain.stacks import is_stack_id

UI = Path(__file__).resolve().parent / "ui"
ASSETS = {
    "app.js": "text/javascript; charset=utf-8",
    "sigv4.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}
# The pages load their own scripts and styles and call their own origin; nothing else.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-cache",
}


@functools.cache
def _file(name: str) -> str:
    return (UI / name).read_text(encoding="utf-8")


def base_path(context_path: str, route_path: str) -> str:
    """Where the API is mounted: the request's full path (API Gateway puts its stage first, ``/api``) less
    the route's own path; ``""`` locally."""
    path = context_path or "/"
    if route_path == "/":
        return path.rstrip("/")
    base = path[: -len(route_path)] if path.endswith(route_path) else ""
    return base if base.startswith("/") else ""


def _html(page: str, page_id: str, base: str) -> Response:
    body = (
        _file("index.html")
        .replace("{{ASSETS}}", html.escape(f"{base}/ui/assets/"))
        .replace("{{BASE}}", html.escape(base))
        .replace("{{PAGE}}", page)
        .replace("{{ID}}", page_id)
    )
    headers: dict[str, str | list[str]] = {"Content-Type": "text/html; charset=utf-8", **SECURITY_HEADERS}
    return Response(body=body, status_code=200, headers=headers)


def overview_page(context_path: str) -> Response:
    """``GET /``: every stack, its stages left to right."""
    return _html("overview", "", base_path(context_path, "/"))


def stack_page(stack_id: str, context_path: str) -> Response:
    """``GET /ui/stacks/{id}``: one stack's pipeline, approvals, releases and DORA metrics."""
    if not is_stack_id(stack_id):
        raise NotFoundError(f"stack {stack_id!r} does not exist")
    return _html("stack", stack_id, base_path(context_path, f"/ui/stacks/{stack_id}"))


def release_page(release_id: str, context_path: str) -> Response:
    """``GET /ui/releases/{id}``: one release's timeline and build log."""
    if not is_release_id(release_id):
        raise NotFoundError(f"release {release_id!r} does not exist")
    return _html("release", release_id, base_path(context_path, f"/ui/releases/{release_id}"))


def asset(name: str) -> Response:
    """``GET /ui/assets/{name}``: the dashboard's JS and CSS."""
    content_type = ASSETS.get(name)
    if content_type is None:
        raise NotFoundError(f"no dashboard file {name!r}")
    return Response(body=_file(name), status_code=200, headers={"Content-Type": content_type, **SECURITY_HEADERS})
