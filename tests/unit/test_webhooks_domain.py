"""Unit tests for chalicelib.domain.webhooks (pure Python, real provider payloads)."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from chalicelib.domain import webhooks
from chalicelib.domain.errors import BadRequestError, UnsupportedMediaTypeError
from chalicelib.domain.webhooks import (
    Delivery,
    Push,
    execution_name,
    parse_delivery,
    read_body,
    ref_matches,
    short_ref,
    verify_signature,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "webhooks"
ZERO = "0" * 40

EVENT_HEADER = {
    "github": "x-github-event",
    "gitlab": "x-gitlab-event",
    "bitbucket": "x-event-key",
}

# fixture -> (provider, event header value, kind, [(ref, sha, repository, deleted)])
CASES: dict[str, tuple[str, str, str, list[tuple[str, str, str, bool]]]] = {
    "github/ping.json": ("github", "ping", "ping", []),
    "github/delete.json": ("github", "delete", "other", []),
    "github/pull-request-opened.json": ("github", "pull_request", "other", []),
    "github/pull-request-closed.json": ("github", "pull_request", "other", []),
    "github/push.json": (
        "github",
        "push",
        "push",
        [("refs/tags/simple-tag", ZERO, "Codertocat/Hello-World", True)],
    ),
    "github/push-1.json": (
        "github",
        "push",
        "push",
        [("refs/tags/simple-tag", ZERO, "Codertocat/Hello-World", True)],
    ),
    "github/push-organization.json": (
        "github",
        "push",
        "push",
        [("refs/tags/simple-tag", ZERO, "Codertocat/Hello-World", True)],
    ),
    "github/push-new-branch.json": (
        "github",
        "push",
        "push",
        [
            (
                "refs/heads/master",
                "6113728f27ae82c7b1a177c8d03f9e96e0adf246",
                "Codertocat/Hello-World",
                False,
            )
        ],
    ),
    "gitlab/push.json": (
        "gitlab",
        "Push Hook",
        "push",
        [
            (
                "refs/heads/master",
                "da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
                "mike/diaspora",
                False,
            )
        ],
    ),
    "gitlab/push-official-docs.json": (
        "gitlab",
        "Push Hook",
        "push",
        [
            (
                "refs/heads/master",
                "da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
                "mike/diaspora",
                False,
            )
        ],
    ),
    "gitlab/tag-push.json": (
        "gitlab",
        "Tag Push Hook",
        "push",
        [
            (
                "refs/tags/v1.0.0",
                "82b3d5ae55f7080f1e6022629cdb57bfae7cccc7",
                "jsmith/example",
                False,
            )
        ],
    ),
    "gitlab/tag-push-official-docs.json": (
        "gitlab",
        "Tag Push Hook",
        "push",
        [
            (
                "refs/tags/v1.0.0",
                "82b3d5ae55f7080f1e6022629cdb57bfae7cccc7",
                "jsmith/example",
                False,
            )
        ],
    ),
    "gitlab/merge-request.json": ("gitlab", "Merge Request Hook", "other", []),
    "bitbucket-cloud/repo-push.json": (
        "bitbucket",
        "repo:push",
        "push",
        [
            (
                "refs/heads/name-of-branch",
                "709d658dc5b6d6afcd46049c2f332ee3f515a67d",
                "team_name/repo_name",
                False,
            )
        ],
    ),
    "bitbucket-cloud/pull-request-created.json": (
        "bitbucket",
        "pullrequest:created",
        "other",
        [],
    ),
    "bitbucket-server/repo-refs-changed.json": (
        "bitbucket",
        "repo:refs_changed",
        "push",
        [("refs/heads/feature/wip", ZERO, "~gopher/webhook-test", True)],
    ),
}


def _raw(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def _load(name: str) -> dict[str, Any]:
    provider = CASES[name][0]
    return read_body(provider, "application/json", _raw(name))


def _deliver(name: str, **extra: str) -> Delivery:
    provider, event, _, _ = CASES[name]
    headers = {EVENT_HEADER[provider]: event, **extra}
    return parse_delivery(provider, headers, _load(name))


def _sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


# --------------------------------------------------------------------------- fixtures


def test_every_fixture_file_has_a_case() -> None:
    on_disk = {p.relative_to(FIXTURES).as_posix() for p in FIXTURES.glob("*/*.json")}
    assert on_disk == set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_fixture_parses(name: str) -> None:
    provider, event, kind, expected = CASES[name]
    delivery = _deliver(name)
    assert delivery.provider == provider
    assert delivery.event == event
    assert delivery.kind == kind
    got = [(p.ref, p.sha, p.repository, p.deleted) for p in delivery.pushes]
    assert got == expected
    for push in delivery.pushes:
        assert re.fullmatch(r"[0-9a-f]{40}", push.sha)


def test_github_new_branch_details() -> None:
    (push,) = _deliver("github/push-new-branch.json").pushes
    assert push.message == "Initial commit"
    assert push.author == "Codertocat"
    assert push.pushed_at == "2019-05-15T15:19:25.000Z"


def test_github_tag_deletion_uses_pusher_and_repo_pushed_at() -> None:
    (push,) = _deliver("github/push.json").pushes
    assert push.deleted is True
    assert push.message == ""
    assert push.author == "Codertocat"
    # head_commit is null; repository.pushed_at is epoch seconds in push payloads.
    assert push.pushed_at == "2019-05-15T15:20:57.000Z"


def test_github_push_deleted_flag_or_zero_sha() -> None:
    payload = _load("github/push-new-branch.json")
    payload = {**payload, "deleted": True}
    (push,) = parse_delivery("github", {"x-github-event": "push"}, payload).pushes
    assert push.deleted is True
    payload = {**_load("github/push.json"), "deleted": False}
    (push,) = parse_delivery("github", {"x-github-event": "push"}, payload).pushes
    assert push.deleted is True  # after is all zeros


def test_gitlab_head_commit_is_the_after_commit() -> None:
    (push,) = _deliver("gitlab/push.json").pushes
    assert push.message == "fixed readme"
    assert push.author == "GitLab dev user"
    assert push.pushed_at == "2012-01-03T21:36:29.000Z"


def test_gitlab_tag_push_falls_back_to_user_name() -> None:
    (push,) = _deliver("gitlab/tag-push.json").pushes
    assert push.author == "John Smith"
    assert push.pushed_at is None
    assert push.ref.startswith("refs/tags/")


def test_gitlab_branch_deletion() -> None:
    payload = {**_load("gitlab/push.json"), "after": ZERO, "checkout_sha": None}
    payload["commits"] = []
    (push,) = parse_delivery("gitlab", {"x-gitlab-event": "Push Hook"}, payload).pushes
    assert push.deleted is True
    assert push.sha == ZERO
    assert push.author == "John Smith"


def test_gitlab_system_hook_push() -> None:
    payload = _load("gitlab/push.json")
    delivery = parse_delivery("gitlab", {"x-gitlab-event": "System Hook"}, payload)
    assert delivery.kind == "push"
    assert delivery.pushes[0].ref == "refs/heads/master"


def test_bitbucket_cloud_details() -> None:
    (push,) = _deliver("bitbucket-cloud/repo-push.json").pushes
    assert push.message == "new commit message\n"
    assert push.author == "Emma"
    assert push.pushed_at == "2015-06-09T03:34:49.000Z"


def test_bitbucket_cloud_deletion_tag_and_many_changes() -> None:
    payload = _load("bitbucket-cloud/repo-push.json")
    change = payload["push"]["changes"][0]
    deleted = {**change, "new": None}
    tag = {
        **change,
        "old": None,
        "new": {
            **change["new"],
            "type": "tag",
            "name": "v2.0",
            "target": {
                **change["new"]["target"],
                "author": {"raw": "Ann Dev <ann@example.com>"},
            },
        },
    }
    payload["push"] = {"changes": [deleted, tag]}
    delivery = parse_delivery("bitbucket", {"x-event-key": "repo:push"}, payload)
    first, second = delivery.pushes
    assert (first.ref, first.sha, first.deleted) == (
        "refs/heads/name-of-branch",
        ZERO,
        True,
    )
    assert (second.ref, second.deleted, second.author) == (
        "refs/tags/v2.0",
        False,
        "Ann Dev",
    )


def test_bitbucket_server_details() -> None:
    (push,) = _deliver("bitbucket-server/repo-refs-changed.json").pushes
    assert push.author == "Foo Bar"
    assert push.pushed_at == "2019-03-01T09:37:14.000Z"  # "+0100" offset normalised
    assert push.message == ""


def test_bitbucket_server_add_and_update() -> None:
    payload = _load("bitbucket-server/repo-refs-changed.json")
    sha = "a" * 40
    payload["changes"] = [
        {
            "ref": {"id": "refs/tags/v1", "displayId": "v1", "type": "TAG"},
            "fromHash": ZERO,
            "toHash": sha,
            "type": "ADD",
        },
        {
            "ref": {"displayId": "main", "type": "BRANCH"},
            "fromHash": "b" * 40,
            "toHash": sha,
            "type": "UPDATE",
        },
    ]
    delivery = parse_delivery("bitbucket", {"x-event-key": "repo:refs_changed"}, payload)
    assert [(p.ref, p.sha, p.deleted) for p in delivery.pushes] == [
        ("refs/tags/v1", sha, False),
        ("refs/heads/main", sha, False),
    ]


def test_bitbucket_server_ping() -> None:
    delivery = parse_delivery("bitbucket", {"x-event-key": "diagnostics:ping"}, {})
    assert delivery.kind == "ping"
    assert delivery.pushes == ()


def test_unknown_event_is_other() -> None:
    payload = _load("github/push-new-branch.json")
    delivery = parse_delivery("github", {"x-github-event": "star"}, payload)
    assert delivery.kind == "other"
    assert delivery.pushes == ()


# --------------------------------------------------------------------------- ids


def test_delivery_ids() -> None:
    gh = _deliver("github/ping.json", **{"x-github-delivery": "abc-123"})
    assert gh.delivery_id == "abc-123"
    gl = _deliver(
        "gitlab/push.json",
        **{"idempotency-key": "idem-1", "x-gitlab-event-uuid": "uuid-1"},
    )
    assert gl.delivery_id == "idem-1"
    gl2 = _deliver("gitlab/push.json", **{"x-gitlab-event-uuid": "uuid-1"})
    assert gl2.delivery_id == "uuid-1"
    bb = _deliver(
        "bitbucket-cloud/repo-push.json",
        **{"x-request-uuid": "req-uuid", "x-request-id": "req-id"},
    )
    assert bb.delivery_id == "req-uuid"
    bbs = _deliver("bitbucket-server/repo-refs-changed.json", **{"x-request-id": "r-1"})
    assert bbs.delivery_id == "r-1"
    assert _deliver("github/ping.json").delivery_id is None


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("provider", "event", "name", "drop"),
    [
        ("github", "push", "github/push-new-branch.json", "ref"),
        ("github", "push", "github/push-new-branch.json", "after"),
        ("gitlab", "Push Hook", "gitlab/push.json", "ref"),
        ("gitlab", "Tag Push Hook", "gitlab/tag-push.json", "after"),
        (
            "bitbucket",
            "repo:refs_changed",
            "bitbucket-server/repo-refs-changed.json",
            "changes",
        ),
        ("bitbucket", "repo:push", "bitbucket-cloud/repo-push.json", "push"),
    ],
)
def test_push_without_ref_or_sha_is_bad_request(provider: str, event: str, name: str, drop: str) -> None:
    payload = _load(name)
    del payload[drop]
    with pytest.raises(BadRequestError):
        parse_delivery(provider, {EVENT_HEADER[provider]: event}, payload)


def test_bitbucket_server_change_without_hash_is_bad_request() -> None:
    payload = _load("bitbucket-server/repo-refs-changed.json")
    del payload["changes"][0]["toHash"]
    with pytest.raises(BadRequestError):
        parse_delivery("bitbucket", {"x-event-key": "repo:refs_changed"}, payload)


def test_bad_sha_is_bad_request() -> None:
    payload = {**_load("github/push-new-branch.json"), "after": "not-a-sha"}
    with pytest.raises(BadRequestError):
        parse_delivery("github", {"x-github-event": "push"}, payload)


def test_missing_event_header_is_bad_request() -> None:
    with pytest.raises(BadRequestError):
        parse_delivery("github", {}, _load("github/push.json"))


def test_unknown_provider_is_bad_request() -> None:
    with pytest.raises(BadRequestError):
        parse_delivery("svn", {}, {})


# --------------------------------------------------------------------------- read_body


def test_read_body_json_with_charset() -> None:
    body = _raw("bitbucket-server/repo-refs-changed.json")
    payload = read_body("bitbucket", "application/json; charset=UTF-8", body)
    assert payload["eventKey"] == "repo:refs_changed"


def test_read_body_missing_content_type_tries_json() -> None:
    assert read_body("gitlab", None, _raw("gitlab/push.json"))["object_kind"] == "push"


def test_read_body_github_form_encoded() -> None:
    raw = _raw("github/push-new-branch.json")
    form = urlencode({"payload": raw.decode("utf-8")}).encode("ascii")
    payload = read_body("github", "application/x-www-form-urlencoded", form)
    assert payload == json.loads(raw)


def test_read_body_form_without_payload_is_bad_request() -> None:
    with pytest.raises(BadRequestError):
        read_body("github", "application/x-www-form-urlencoded", b"other=1")


def test_read_body_form_only_for_github() -> None:
    with pytest.raises(UnsupportedMediaTypeError):
        read_body("gitlab", "application/x-www-form-urlencoded", b"payload=%7B%7D")


@pytest.mark.parametrize("body", [b"{not json", b"", b"   ", b"[1, 2]", b'"text"', b"\xff\xfe"])
def test_read_body_bad_json(body: bytes) -> None:
    with pytest.raises(BadRequestError):
        read_body("github", "application/json", body)


def test_read_body_form_with_bad_json() -> None:
    with pytest.raises(BadRequestError):
        read_body("github", "application/x-www-form-urlencoded", b"payload=%7Bnope")


def test_read_body_unsupported_media_type() -> None:
    with pytest.raises(UnsupportedMediaTypeError):
        read_body("github", "text/plain", b"{}")


# --------------------------------------------------------------------------- signatures


BODY = _raw("github/push-new-branch.json")


def test_github_signature_good() -> None:
    headers = {"x-hub-signature-256": _sign("s3cret", BODY)}
    assert verify_signature("github", headers, BODY, ["s3cret"]) is True


def test_github_signature_wrong_secret() -> None:
    headers = {"x-hub-signature-256": _sign("s3cret", BODY)}
    assert verify_signature("github", headers, BODY, ["other"]) is False


def test_github_signature_tampered_body() -> None:
    headers = {"x-hub-signature-256": _sign("s3cret", BODY)}
    assert verify_signature("github", headers, BODY + b" ", ["s3cret"]) is False


def test_github_signature_legacy_sha1_only_is_rejected() -> None:
    sha1 = "sha1=" + hmac.new(b"s3cret", BODY, hashlib.sha1).hexdigest()
    assert verify_signature("github", {"x-hub-signature": sha1}, BODY, ["s3cret"]) is False
    # Even a sha256 value in the legacy header is not GitHub's contract.
    legacy = {"x-hub-signature": _sign("s3cret", BODY)}
    assert verify_signature("github", legacy, BODY, ["s3cret"]) is False


def test_github_signature_missing_header_or_no_secret() -> None:
    assert verify_signature("github", {}, BODY, ["s3cret"]) is False
    headers = {"x-hub-signature-256": _sign("s3cret", BODY)}
    assert verify_signature("github", headers, BODY, []) is False
    assert verify_signature("github", {"x-hub-signature-256": "sha256="}, BODY, [""]) is False


def test_github_signature_rotation_second_secret() -> None:
    headers = {"x-hub-signature-256": _sign("previous", BODY)}
    assert verify_signature("github", headers, BODY, ["current", "previous"]) is True


def test_github_signature_malformed_header() -> None:
    good = _sign("s3cret", BODY)
    for value in [good[7:], "md5=" + good[7:], "sha256=zz", "sha256=ünï"]:
        headers = {"x-hub-signature-256": value}
        assert verify_signature("github", headers, BODY, ["s3cret"]) is False


def test_gitlab_token() -> None:
    body = _raw("gitlab/push.json")
    ok = {"x-gitlab-token": "tok"}
    assert verify_signature("gitlab", ok, body, ["tok"]) is True
    assert verify_signature("gitlab", ok, body, ["new", "tok"]) is True
    assert verify_signature("gitlab", {"x-gitlab-token": "nope"}, body, ["tok"]) is False
    assert verify_signature("gitlab", {}, body, ["tok"]) is False
    assert verify_signature("gitlab", {"x-gitlab-token": "tok"}, body, []) is False


@pytest.mark.parametrize(
    "name",
    ["bitbucket-cloud/repo-push.json", "bitbucket-server/repo-refs-changed.json"],
)
def test_bitbucket_signature(name: str) -> None:
    body = _raw(name)
    headers = {"x-hub-signature": _sign("bb", body)}
    assert verify_signature("bitbucket", headers, body, ["bb"]) is True
    assert verify_signature("bitbucket", headers, body, ["x", "bb"]) is True
    assert verify_signature("bitbucket", headers, body, ["x"]) is False
    assert verify_signature("bitbucket", headers, body[:-1], ["bb"]) is False
    assert verify_signature("bitbucket", {}, body, ["bb"]) is False


# --------------------------------------------------------------------------- refs


@pytest.mark.parametrize(
    ("ref", "branches", "tags", "expected"),
    [
        ("refs/heads/main", ["main"], [], True),
        ("refs/heads/main", ["Main"], [], False),
        ("refs/heads/mainline", ["main"], [], False),
        ("refs/heads/release/a", ["release/*"], [], True),
        ("refs/heads/release/a/b", ["release/*"], [], False),
        ("refs/heads/release/a/b", ["release/**"], [], True),
        ("refs/heads/release", ["release/**"], [], False),
        ("refs/heads/feature/x/y/z", ["**"], [], True),
        ("refs/heads/a/b/fix", ["**/fix"], [], True),
        ("refs/heads/fix", ["**/fix"], [], True),
        ("refs/heads/a/b/c/d", ["a/**/d"], [], True),
        ("refs/heads/a/d", ["a/**/d"], [], True),
        ("refs/heads/feature/x", ["*"], [], False),
        ("refs/heads/hotfix-1", ["hotfix-?"], [], True),
        ("refs/heads/hotfix-12", ["hotfix-?"], [], False),
        ("refs/heads/v1", ["v[0-9]"], [], True),
        ("refs/heads/vx", ["v[!0-9]"], [], True),
        ("refs/heads/fëature/ü", ["fëature/*"], [], True),
        ("refs/heads/fëature/ü", ["feature/*"], [], False),
        ("refs/heads/fëature/ü", ["fëature/ü"], [], True),
        ("refs/heads/a.b", ["a.b"], [], True),
        ("refs/heads/axb", ["a.b"], [], False),
        ("refs/heads/(x)+", ["(x)+"], [], True),
        ("refs/tags/v1.0", ["*"], [], False),
        ("refs/tags/v1.0", [], ["v*"], True),
        ("refs/tags/releases/v1.0", [], ["v*"], False),
        ("refs/heads/v1.0", [], ["v*"], False),
        ("refs/pull/1/head", ["**"], ["**"], False),
        ("refs/heads/", ["**"], [], False),
        ("main", ["main"], [], False),
        ("refs/heads/main", [], [], False),
        ("refs/heads/x[", ["x["], [], True),
    ],
)
def test_ref_matches(ref: str, branches: list[str], tags: list[str], expected: bool) -> None:
    assert ref_matches(ref, branches, tags) is expected


def test_short_ref() -> None:
    assert short_ref("refs/heads/feature/x") == "feature/x"
    assert short_ref("refs/tags/v1.0") == "v1.0"
    assert short_ref("refs/pull/1/head") == "refs/pull/1/head"


# --------------------------------------------------------------------------- names


NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,80}$")
SHA = "6113728f27ae82c7b1a177c8d03f9e96e0adf246"
RELEASE = "r01JDXZ8R6Y4N3KQ7W2M5P9TVB"


def test_execution_name_simple() -> None:
    name = execution_name("hello", "refs/heads/main", SHA, RELEASE)
    assert name == f"hello-main-6113728f-{RELEASE}"


def test_execution_name_is_always_valid() -> None:
    stacks = ["hello", "a" * 120, "my_stack-1", "ßtäck", "---", "日本"]
    branches = [
        "main",
        "feature/x",
        "fëature/ü",
        "release/2024/" + "very-long-segment/" * 10,
        "日本語のブランチ",
        "a--b__c..d//e",
        "-leading-and-trailing-",
        "x" * 300,
        "emoji/🚀/launch",
        "",
    ]
    refs = [f"refs/heads/{b}" for b in branches] + [f"refs/tags/{b}" for b in branches]
    releases = [RELEASE, "r" + "Z" * 26, "x" * 200 + "TAIL1234567890ABCDEF"]
    seen: set[str] = set()
    for stack in stacks:
        for ref in refs:
            for release in releases:
                name = execution_name(stack, ref, SHA, release)
                assert NAME_RE.fullmatch(name), (stack, ref, release, name)
                assert "--" not in name
                assert not name.startswith("-") and not name.endswith("-")
                assert name.endswith(release[-16:]), name
                assert name == execution_name(stack, ref, SHA, release)  # deterministic
                seen.add(name)
    assert len(seen) > 1


def test_execution_name_unique_per_release() -> None:
    ref = "refs/heads/" + "feature/" * 20 + "x"
    stack = "s" * 100
    names = {execution_name(stack, ref, SHA, f"r01JDXZ8R6Y4N3KQ7W2M5P{i:04d}") for i in range(200)}
    assert len(names) == 200
    a = execution_name("hello", "refs/heads/main", SHA, "r" + "A" * 25 + "B")
    b = execution_name("hello", "refs/heads/main", SHA, "r" + "A" * 25 + "C")
    assert a != b


def test_execution_name_transliterates() -> None:
    name = execution_name("hello", "refs/heads/fëature/ü", SHA, RELEASE)
    assert name.startswith("hello-feature-u-6113728f-")


# --------------------------------------------------------------------------- purity


def test_module_is_pure_python() -> None:
    source = Path(webhooks.__file__).read_text(encoding="utf-8")
    for banned in (
        "boto3",
        "botocore",
        "pynamodb",
        "chalice\n",
        "from chalice ",
        "import chalice",
    ):
        assert banned not in source


def test_dataclasses_are_frozen() -> None:
    push = Push("refs/heads/main", SHA, "a/b", "", "", None, False)
    with pytest.raises(AttributeError):
        push.ref = "x"  # type: ignore[misc]
