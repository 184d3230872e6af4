"""The dashboard's shells: where the API is mounted (API Gateway's stage), what a page is told."""

from __future__ import annotations

import pytest

from chalicelib import pages
from chalicelib.domain.errors import NotFoundError


@pytest.mark.parametrize(
    ("context_path", "route_path", "base"),
    [
        ("/", "/", ""),
        ("/api/", "/", "/api"),
        ("/api", "/", "/api"),
        ("/ui/stacks/hello", "/ui/stacks/hello", ""),
        ("/api/ui/stacks/hello", "/ui/stacks/hello", "/api"),
        ("/prod/ui/releases/r01JD5Z3Q8M6X2K7N4P9T1V3W5Y", "/ui/releases/r01JD5Z3Q8M6X2K7N4P9T1V3W5Y", "/prod"),
        ("/somewhere/else", "/ui/stacks/hello", ""),
        ("", "/", ""),
    ],
)
def test_the_base_is_the_full_path_less_the_route(context_path: str, route_path: str, base: str) -> None:
    assert pages.base_path(context_path, route_path) == base


def test_a_stage_mounted_page_links_its_files_and_the_api_from_the_stage() -> None:
    body = str(pages.stack_page("hello", "/api/ui/stacks/hello").body)
    assert 'data-page="stack" data-id="hello" data-base="/api"' in body
    assert 'src="/api/ui/assets/app.js"' in body
    assert 'href="/api/ui/assets/app.css"' in body


def test_the_base_is_escaped_into_the_html() -> None:
    body = str(pages.overview_page('/a"b<c>/').body)
    assert 'data-base="/a&quot;b&lt;c&gt;"' in body


def test_ids_that_cannot_exist_are_404_and_unknown_files_too() -> None:
    with pytest.raises(NotFoundError):
        pages.stack_page("Not_An_Id", "/ui/stacks/Not_An_Id")
    with pytest.raises(NotFoundError):
        pages.release_page("x", "/ui/releases/x")
    with pytest.raises(NotFoundError):
        pages.asset("index.html")
    assert pages.asset("app.css").headers["Content-Type"].startswith("text/css")
