"""The input rules docs/openapi.yaml states, as the domain and services apply them (fakes, no AWS)."""

from __future__ import annotations

from typing import Any

import pytest

from chalicelib.domain import clone_urls
from chalicelib.domain import stacks as domain
from chalicelib.domain.errors import ConflictError, NotFoundError, ValidationError
from chalicelib.domain.releases import manual_ref
from chalicelib.services.release_queries import parse_flag
from chalicelib.services.releases import is_idempotency_key
from chalicelib.services.stacks import parse_limit, parse_next_token
from tests import fakes
from tests.fakes import (
    InMemoryCloneCredentials,
    InMemoryStackRepository,
    stack_body,
)

NOW = "2026-11-27T12:00:00.000Z"


def repository(clone_url: str, provider: str = "github") -> dict[str, str]:
    return {"provider": provider, "full_name": "acme/hello", "clone_url": clone_url}


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("Hello", True),
        ("Café 日本", True),
        (" x ", True),
        ("", False),
        ("   ", False),
        ("\u3000\u00a0", False),
        ("\ufeff", False),
        ("a\nb", False),
        ("a\x00", False),
        ("a\x85", False),
        ("a" * 100, True),
        ("a" * 101, False),
    ],
)
def test_names_need_a_visible_character_and_no_control_characters(name: str, ok: bool) -> None:
    body = stack_body(name=name, id="hello")
    if ok:
        assert domain.parse_new_stack(body, NOW).name == name
    else:
        with pytest.raises(ValidationError) as caught:
            domain.parse_new_stack(body, NOW)
        assert caught.value.field == "name"


def test_without_an_id_the_name_needs_an_ascii_letter_or_digit() -> None:
    assert domain.parse_new_stack(stack_body(name="Hello World!"), NOW).id == "hello-world"
    for name in ("日本", "\u212a", "---"):  # the Kelvin sign lower-cases to an ASCII k: not a letter here
        with pytest.raises(ValidationError) as caught:
            domain.parse_new_stack(stack_body(name=name), NOW)
        assert caught.value.field == "id"
        assert "required" in caught.value.message


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://github.com/acme/hello.git", True),
        ("https://x", True),
        ("http://127.0.0.1:8080/hello.git", True),
        ("http://bot:tok@localhost/hello.git", True),
        ("http://[::1]:9418/x", True),
        ("http://example.com/hello.git", False),
        ("http://127.0.0.1.example.com/x", False),
        ("file:///srv/git/hello.git", True),
        ("/srv/git/hello.git", True),
        ("ftp://example.com/x", False),
        ("https://", False),
        ("https://host/a\nb", False),
        ("relative/path", False),
        ("https://" + "a" * 2041, False),
    ],
)
def test_clone_url_forms(url: str, ok: bool) -> None:
    body = stack_body(repository=repository(url))
    if ok:
        domain.parse_new_stack(body, NOW)
    else:
        with pytest.raises(ValidationError) as caught:
            domain.parse_new_stack(body, NOW)
        assert caught.value.field == "repository.clone_url"


def test_clone_url_credentials_are_split_off_and_never_kept_in_the_url() -> None:
    stack = domain.parse_new_stack(
        stack_body(repository=repository("https://bot:s3cr3t-t0ken@git.acme.dev/a.git")), NOW
    )
    assert stack.repository.clone_url == "https://***@git.acme.dev/a.git"
    assert stack.repository.credentials == "bot:s3cr3t-t0ken"
    assert "s3cr3t" not in repr(stack)
    assert stack.repository.has_stored_credentials
    assert stack.repository.to_dict()["clone_url"] == "https://***@git.acme.dev/a.git"


def test_stars_stand_for_stored_credentials_only() -> None:
    with pytest.raises(ValidationError) as caught:
        domain.parse_new_stack(stack_body(repository=repository("https://***@git.acme.dev/a.git")), NOW)
    assert caught.value.field == "repository.clone_url"
    plain = domain.parse_new_stack(stack_body(), NOW)
    with pytest.raises(ConflictError, match="no stored credentials"):
        domain.patch_stack(plain, {"version": 1, "repository": repository("https://***@git.acme.dev/a.git")}, NOW)
    secret = domain.parse_new_stack(stack_body(repository=repository("https://bot:tok@git.acme.dev/a.git")), NOW)
    kept = domain.patch_stack(secret, {"version": 1, "repository": repository("https://***@git.acme.dev/b.git")}, NOW)
    assert kept.repository.clone_url == "https://***@git.acme.dev/b.git"
    assert kept.repository.credentials is None


def test_clone_url_helpers() -> None:
    url = "https://bot:tok@host/a.git"
    public, userinfo = clone_urls.split(url)
    assert (public, userinfo) == ("https://***@host/a.git", "bot:tok")
    assert clone_urls.with_credentials(public, "bot:tok") == url
    assert clone_urls.without_userinfo(public) == "https://host/a.git"
    assert clone_urls.redact("https://tok@host/a?x@y") == "https://***@host/a?x@y"
    assert clone_urls.split("https://host/a@b") == ("https://host/a@b", None)
    assert clone_urls.with_credentials("https://host/a.git", "bot:tok") == "https://host/a.git"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("id", 7),
        ("id", None),
        ("name", ["x"]),
        ("repository", []),
        ("branches", "main"),
        ("branches", [1]),
        ("tags", {"a": 1}),
        ("template_path", 3.5),
        ("buildspec_path", True),
        ("stages", {}),
        ("stages", [None]),
    ],
)
def test_wrong_types_name_the_field(field: str, value: Any) -> None:
    with pytest.raises(ValidationError) as caught:
        domain.parse_new_stack(stack_body(**{field: value}), NOW)
    assert caught.value.field is not None and caught.value.field.startswith(field)


@pytest.mark.parametrize(
    ("stage", "field"),
    [
        ({"name": "dev", "approval": "yes"}, "stages[0].approval"),
        ({"name": "dev", "approval_timeout_seconds": "1"}, "stages[0].approval_timeout_seconds"),
        ({"name": "dev", "approval_timeout_seconds": 1.5}, "stages[0].approval_timeout_seconds"),
        ({"name": "dev", "approval_timeout_seconds": 604801}, "stages[0].approval_timeout_seconds"),
        ({"name": "dev", "region": 1}, "stages[0].region"),
        ({"name": "dev", "region": "eu-west-١"}, "stages[0].region"),
        ({"name": "dev", "role_arn": "arn:aws:iam::١٢٣٤٥٦٧٨٩٠١٢:role/x"}, "stages[0].role_arn"),
        ({"name": "dev", "parameters": []}, "stages[0].parameters"),
        ({"name": "dev", "parameters": {"A": "v" * 4097}}, "stages[0].parameters.A"),
        ({"name": "dev", "parameters": {f"P{i}": "v" for i in range(201)}}, "stages[0].parameters"),
        ({"name": 5}, "stages[0].name"),
    ],
)
def test_stage_fields_name_the_field_and_the_rule(stage: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        domain.parse_new_stack(stack_body(stages=[stage]), NOW)
    assert caught.value.field == field


def test_json_integers_may_be_written_as_integral_numbers() -> None:
    stack = domain.parse_new_stack(stack_body(stages=[{"name": "dev", "approval_timeout_seconds": 60.0}]), NOW)
    assert stack.stage("dev").approval_timeout_seconds == 60
    assert isinstance(stack.stage("dev").approval_timeout_seconds, int)
    assert domain.patch_stack(stack, {"version": 1.0, "name": "x"}, NOW).version == 2
    with pytest.raises(ValidationError):
        domain.patch_stack(stack, {"version": True, "name": "x"}, NOW)


def test_stage_limits_that_depend_on_the_stack_are_conflicts() -> None:
    full = domain.parse_new_stack(stack_body(stages=[{"name": f"s{i}"} for i in range(20)]), NOW)
    with pytest.raises(ConflictError, match="already has 20 stages"):
        domain.add_stage(full, {"name": "one-more"}, NOW)
    with pytest.raises(ValidationError) as caught:
        domain.parse_new_stack(stack_body(stages=[{"name": f"s{i}"} for i in range(21)]), NOW)
    assert caught.value.message == "stages: at most 20 stages (it has 21)"


def test_remove_stage_body_must_be_an_object_with_only_a_version() -> None:
    stack = domain.parse_new_stack(stack_body(), NOW)
    with pytest.raises(ValidationError):
        domain.remove_stage(stack, "dev", None, NOW)
    with pytest.raises(ValidationError) as caught:
        domain.remove_stage(stack, "dev", {"force": True}, NOW)
    assert caught.value.field == "force"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"ref": "main"}, ("refs/heads/main", "")),
        ({"sha": "abcdef1"}, ("", "abcdef1")),
        ({"ref": "refs/tags/v1", "sha": "abcdef1"}, ("refs/tags/v1", "abcdef1")),
    ],
)
def test_manual_release_bodies(body: dict[str, Any], expected: tuple[str, str]) -> None:
    assert manual_ref(body) == expected


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "ref"),
        ({"ref": None}, "ref"),
        ({"ref": "main", "sha": None}, "sha"),
        ({"ref": "has space"}, "ref"),
        ({"ref": "a" * 256}, "ref"),
        ({"ref": "a\u0000"}, "ref"),
        ({"sha": "ABCDEF1"}, "sha"),
        ({"sha": "abcdef1\n"}, "sha"),
        ({"branch": "main"}, "branch"),
    ],
)
def test_bad_manual_release_bodies_name_the_field(body: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        manual_ref(body)
    assert caught.value.field == field


def test_query_parameters() -> None:
    assert parse_limit(None) == 25
    assert parse_limit("100") == 100
    for bad in ("0", "101", "١", "1e2", "", " 5", "0005"):
        with pytest.raises(ValidationError):
            parse_limit(bad)
    assert parse_next_token(None) is None
    assert parse_next_token("eyJwayI6") == "eyJwayI6"
    for bad in ("", "a b", "é", "x" * 2049):
        with pytest.raises(ValidationError):
            parse_next_token(bad)
    assert parse_flag(None, "raw") is False
    assert parse_flag("true", "raw") is True
    assert parse_flag("false", "raw") is False
    with pytest.raises(ValidationError) as caught:
        parse_flag("yes", "raw")
    assert caught.value.message == "raw: must be true or false"


def test_idempotency_keys_are_short_visible_ascii() -> None:
    assert is_idempotency_key("retry-1")
    assert not is_idempotency_key("")
    assert not is_idempotency_key("a" * 256)
    assert not is_idempotency_key("a b")
    assert not is_idempotency_key("é")


def test_ids_that_cannot_exist_are_not_found_without_a_lookup() -> None:
    repo = InMemoryStackRepository()
    service = fakes.stack_service(repo, now=NOW)
    for stack_id in ("x" * 3000, "Hello", "a/b", "a\nb"):
        with pytest.raises(NotFoundError):
            service.show(stack_id)


def test_the_service_keeps_clone_credentials_in_the_store_only() -> None:
    repo = InMemoryStackRepository()
    credentials = InMemoryCloneCredentials()
    service = fakes.stack_service(repo, credentials, now=NOW)
    url = "https://bot:tok-123456@git.acme.dev/a.git"
    created = service.create(stack_body(repository=repository(url)))
    assert created["repository"]["clone_url"] == "https://***@git.acme.dev/a.git"
    assert credentials.stored["hello"] == ("github", "https://***@git.acme.dev/a.git", "bot:tok-123456")
    assert "tok-123456" not in repr(repo.stacks)
    kept = {"version": 1, "repository": repository("https://***@git.acme.dev/a.git")}
    service.patch("hello", kept)
    assert credentials.stored["hello"][2] == "bot:tok-123456"
    service.patch("hello", {"version": 2, "repository": repository("https://bot:new-token@git.acme.dev/a.git")})
    assert credentials.stored["hello"][2] == "bot:new-token"
    service.patch("hello", {"version": 3, "repository": repository("https://git.acme.dev/a.git")})
    assert "hello" not in credentials.stored
    service.patch("hello", {"version": 4, "repository": repository("https://bot:again@git.acme.dev/a.git")})
    service.delete("hello")
    assert credentials.stored == {}


@pytest.mark.parametrize("value", ["", "has space", "é", "x" * 256])
def test_delivery_id_headers_are_visible_ascii_keys(value: str) -> None:
    from chalicelib.domain.errors import BadRequestError
    from chalicelib.domain.webhooks import parse_delivery

    payload = {"ref": "refs/heads/main", "after": "a" * 40, "repository": {"full_name": "acme/hello"}}
    headers = {"x-github-event": "push", "x-github-delivery": "d-1"}
    assert parse_delivery("github", headers, payload).delivery_id == "d-1"
    with pytest.raises(BadRequestError, match="x-github-delivery header must be 1 to 255 visible ASCII"):
        parse_delivery("github", {**headers, "x-github-delivery": value}, payload)
