"""Git provider webhooks: body decoding, signature checks and payload parsing.

Pure Python (standard library only). Supports GitHub, GitLab and Bitbucket (Cloud and
Server/Data Center, both under the provider name ``"bitbucket"``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qs

from .errors import BadRequestError, UnsupportedMediaTypeError, ValidationError
from .limits import MAX_KEY_CHARS, MAX_REF_BYTES, check_json_depth, check_unicode, clip

__all__ = [
    "PROVIDERS",
    "Delivery",
    "Push",
    "execution_name",
    "normalize_provider",
    "parse_delivery",
    "read_body",
    "ref_matches",
    "short_ref",
    "verify_signature",
]

PROVIDERS = ("github", "gitlab", "bitbucket")
_PROVIDER_ALIASES = {
    "github": "github",
    "gitlab": "gitlab",
    "bitbucket": "bitbucket",
    "bitbucket-cloud": "bitbucket",
    "bitbucket-server": "bitbucket",
    "bitbucket_cloud": "bitbucket",
    "bitbucket_server": "bitbucket",
}

ZERO_SHA = "0" * 40
_SHA_RE = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")
_EVENT_HEADERS = {
    "github": "x-github-event",
    "gitlab": "x-gitlab-event",
    "bitbucket": "x-event-key",
}
_GITLAB_PUSH_KINDS = {"push", "tag_push"}
_GITLAB_PUSH_EVENTS = {"Push Hook", "Tag Push Hook"}
_BITBUCKET_PUSH_EVENTS = {"repo:push", "repo:refs_changed"}
_PING_EVENTS = {"github": {"ping"}, "bitbucket": {"diagnostics:ping"}}


@dataclass(frozen=True)
class Push:
    """One ref change that may become a release."""

    ref: str
    sha: str
    repository: str
    message: str
    author: str
    pushed_at: str | None
    deleted: bool


@dataclass(frozen=True)
class Delivery:
    """One webhook delivery, normalised across providers."""

    provider: str
    delivery_id: str | None
    event: str
    kind: str
    pushes: tuple[Push, ...]


# --------------------------------------------------------------------------- helpers


def normalize_provider(provider: str) -> str:
    """Return the canonical provider name or raise BadRequestError if unknown."""
    canonical = _PROVIDER_ALIASES.get(provider.strip().lower())
    if canonical is None:
        raise BadRequestError(f"unknown webhook provider {provider!r}")
    return canonical


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """Header value by lower-cased name; blank values count as missing."""
    value = headers.get(name)
    if value is None:
        # Be lenient if a caller forgot to lower-case the keys.
        for key, candidate in headers.items():
            if key.lower() == name:
                value = candidate
                break
    if value is None:
        return None
    value = value.strip()
    return value or None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _sha(value: Any, what: str) -> str:
    sha = _str(value).strip().lower()
    if not _SHA_RE.match(sha):
        raise BadRequestError(f"push payload has no valid {what} commit sha")
    return sha


def _is_zero(sha: str) -> bool:
    return sha.strip("0") == ""


def _timestamp(value: Any) -> str | None:
    """Normalise a provider timestamp to ISO-8601 UTC with ``Z``; keep unparseable text."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        try:
            moment = datetime.fromtimestamp(value, tz=UTC)
        except (OverflowError, OSError, ValueError):
            return None
    elif isinstance(value, str) and value.strip():
        text = value.strip()
        # "+0100" (Bitbucket Server) -> "+01:00"; "Z" is fine for 3.11 fromisoformat.
        fixed = re.sub(r"([+-]\d{2})(\d{2})$", r"\1:\2", text)
        try:
            moment = datetime.fromisoformat(fixed)
        except ValueError:
            return text
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
    else:
        return None
    stamp = moment.astimezone(UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


# --------------------------------------------------------------------------- body


JSON_TYPE = "application/json"
FORM_TYPE = "application/x-www-form-urlencoded"


def accepted_types(provider: str) -> str:
    """The content types a provider's deliveries may have, in words."""
    if normalize_provider(provider) == "github":
        return f"{JSON_TYPE} or {FORM_TYPE} (the JSON in a 'payload' field)"
    return JSON_TYPE


def read_body(provider: str, content_type: str | None, body: bytes) -> dict[str, Any]:
    """Decode the raw webhook body into a JSON object.

    A missing content type is JSON (GitHub's default). GitHub may post ``application/x-www-form-urlencoded``
    with the JSON in ``payload``; a form-typed body that is itself a JSON object (what ``curl -d`` sends)
    is read as JSON. Raises BadRequestError when the body is not a JSON object and
    UnsupportedMediaTypeError for content types the provider does not use.
    """
    canonical = normalize_provider(provider)
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media == FORM_TYPE:
        text = _decode(body)
        if text.lstrip(" \t\r\n\ufeff").startswith("{"):
            return _json_object(text)
        if canonical != "github":
            raise UnsupportedMediaTypeError(f"{canonical} webhooks must be {JSON_TYPE}, not {media}")
        try:
            fields = parse_qs(text, keep_blank_values=True, strict_parsing=False)
        except ValueError as exc:
            raise BadRequestError(f"the {FORM_TYPE} body cannot be parsed; or send {JSON_TYPE}") from exc
        values = fields.get("payload")
        if not values or len(values) != 1:
            raise BadRequestError(
                f"a {FORM_TYPE} body must have exactly one 'payload' field holding the JSON; or send {JSON_TYPE}"
            )
        return _json_object(values[0])
    if media and media != JSON_TYPE and not media.endswith("+json"):
        raise UnsupportedMediaTypeError(
            f"unsupported content type {clip(media, 100)!r}; {canonical} webhooks are {accepted_types(canonical)}"
        )
    return _json_object(_decode(body))


def _decode(body: bytes) -> str:
    if not body or not body.strip():
        raise BadRequestError("request body is empty")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequestError("request body is not UTF-8") from exc


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _json_object(text: str) -> dict[str, Any]:
    text = text.lstrip("\ufeff")
    try:
        check_json_depth(text, "body")
    except ValidationError as exc:
        raise BadRequestError(f"request body {exc.message.removeprefix('body: ')}") from exc
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise BadRequestError("request body is not valid JSON") from exc
    if not isinstance(value, dict):
        raise BadRequestError("request body must be a JSON object")
    try:
        check_unicode(text, value)
    except ValidationError as exc:
        raise BadRequestError(f"request body {exc.message.removeprefix('body: ')}") from exc
    return value


# --------------------------------------------------------------------------- signatures


def verify_signature(provider: str, headers: Mapping[str, str], body: bytes, secrets: Sequence[str]) -> bool:
    """True if any of ``secrets`` authenticates the delivery (constant-time compare).

    GitHub: ``X-Hub-Signature-256`` (the legacy SHA-1 header alone is not accepted).
    GitLab: ``X-Gitlab-Token`` equals the secret. Bitbucket: ``X-Hub-Signature`` sha256.
    """
    canonical = normalize_provider(provider)
    candidates = [s for s in secrets if s]
    if not candidates:
        return False
    if canonical == "gitlab":
        token = _header(headers, "x-gitlab-token")
        if not token:
            return False
        given = token.encode("utf-8")
        ok = False
        for secret in candidates:
            ok |= hmac.compare_digest(given, secret.encode("utf-8"))
        return ok
    name = "x-hub-signature-256" if canonical == "github" else "x-hub-signature"
    signature = _header(headers, name)
    if signature is None:
        return False
    algo, sep, digest = signature.partition("=")
    if not sep or algo.strip().lower() != "sha256":
        return False
    given_digest = digest.strip().lower().encode("ascii", "replace")
    ok = False
    for secret in candidates:
        expected = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
        ok |= hmac.compare_digest(given_digest, expected.encode("ascii"))
    return ok


# --------------------------------------------------------------------------- parsing


def parse_delivery(provider: str, headers: Mapping[str, str], payload: dict[str, Any]) -> Delivery:
    """Normalise one delivery: event name, kind ("push"/"ping"/"other") and pushes.

    ``headers`` keys are lower-cased. Unknown events yield kind "other"; a push event
    without a ref or sha raises BadRequestError.
    """
    canonical = normalize_provider(provider)
    event = _header(headers, _EVENT_HEADERS[canonical])
    if event is None:
        event = _event_from_payload(canonical, payload)
    if event is None:
        raise BadRequestError(f"missing {_EVENT_HEADERS[canonical]} header")
    delivery_id = _delivery_id(canonical, headers)

    if event in _PING_EVENTS.get(canonical, set()):
        return Delivery(canonical, delivery_id, event, "ping", ())

    pushes: tuple[Push, ...] | None = None
    if canonical == "github" and event == "push":
        pushes = (_github_push(payload),)
    elif canonical == "gitlab" and (
        event in _GITLAB_PUSH_EVENTS or (event == "System Hook" and payload.get("object_kind") in _GITLAB_PUSH_KINDS)
    ):
        pushes = (_gitlab_push(payload),)
    elif canonical == "bitbucket" and event == "repo:push":
        pushes = _bitbucket_cloud_pushes(payload)
    elif canonical == "bitbucket" and event == "repo:refs_changed":
        pushes = _bitbucket_server_pushes(payload)

    if pushes is None:
        return Delivery(canonical, delivery_id, event, "other", ())
    return Delivery(canonical, delivery_id, event, "push", pushes)


def _event_from_payload(provider: str, payload: dict[str, Any]) -> str | None:
    if provider == "gitlab":
        return {"push": "Push Hook", "tag_push": "Tag Push Hook"}.get(_str(payload.get("object_kind")))
    if provider == "bitbucket":
        return _str(payload.get("eventKey")) or None
    return None


_DELIVERY_HEADERS = {
    "github": ("x-github-delivery",),
    "gitlab": ("idempotency-key", "x-gitlab-event-uuid"),
    "bitbucket": ("x-request-uuid", "x-request-id"),
}


def _delivery_id(provider: str, headers: Mapping[str, str]) -> str | None:
    """The delivery id header (part of a deduplication key): 1 to MAX_KEY_CHARS visible ASCII characters."""
    for name in _DELIVERY_HEADERS[provider]:
        value = headers.get(name)
        if value is None:
            continue
        if not 0 < len(value) <= MAX_KEY_CHARS or not all("!" <= c <= "~" for c in value):
            raise BadRequestError(f"the {name} header must be 1 to {MAX_KEY_CHARS} visible ASCII characters")
        return value
    return None


def _require_ref(value: Any) -> str:
    ref = _str(value).strip()
    if not ref:
        raise BadRequestError("push payload has no ref")
    size = len(ref.encode("utf-8", "surrogatepass"))
    if size > MAX_REF_BYTES:
        raise BadRequestError(f"push payload ref is {size} bytes; the limit is {MAX_REF_BYTES}")
    return ref


def _github_push(payload: dict[str, Any]) -> Push:
    ref = _require_ref(payload.get("ref"))
    sha = _sha(payload.get("after"), "new")
    repo = _dict(payload.get("repository"))
    full_name = _str(repo.get("full_name"))
    if not full_name:
        owner = _dict(repo.get("owner"))
        login = _str(owner.get("login")) or _str(owner.get("name"))
        name = _str(repo.get("name"))
        full_name = f"{login}/{name}" if login and name else ""
    if not full_name:
        raise BadRequestError("push payload has no repository full_name")
    head = _dict(payload.get("head_commit"))
    author = (
        _str(_dict(head.get("author")).get("name"))
        or _str(_dict(payload.get("pusher")).get("name"))
        or _str(_dict(payload.get("sender")).get("login"))
    )
    pushed_at = _timestamp(head.get("timestamp")) or _timestamp(repo.get("pushed_at"))
    return Push(
        ref=ref,
        sha=sha,
        repository=full_name,
        message=_str(head.get("message")),
        author=author,
        pushed_at=pushed_at,
        deleted=payload.get("deleted") is True or _is_zero(sha),
    )


def _gitlab_push(payload: dict[str, Any]) -> Push:
    ref = _require_ref(payload.get("ref"))
    sha = _sha(payload.get("after"), "new")
    project = _dict(payload.get("project"))
    full_name = _str(project.get("path_with_namespace"))
    if not full_name:
        raise BadRequestError("push payload has no project.path_with_namespace")
    commits = [c for c in payload.get("commits") or [] if isinstance(c, dict)]
    head: dict[str, Any] = {}
    for commit in commits:
        if _str(commit.get("id")).lower() == sha:
            head = commit
            break
    author = _str(_dict(head.get("author")).get("name")) or _str(payload.get("user_name"))
    return Push(
        ref=ref,
        sha=sha,
        repository=full_name,
        message=_str(head.get("message")) or _str(payload.get("message")),
        author=author,
        pushed_at=_timestamp(head.get("timestamp")),
        deleted=_is_zero(sha),
    )


_BITBUCKET_REF_PREFIX = {
    "branch": "refs/heads/",
    "named_branch": "refs/heads/",
    "tag": "refs/tags/",
    "annotated_tag": "refs/tags/",
}


def _bitbucket_author(target: dict[str, Any], actor: dict[str, Any]) -> str:
    author = _dict(target.get("author"))
    user = _dict(author.get("user"))
    raw = _str(author.get("raw"))
    raw_name = raw.split("<", 1)[0].strip() if raw else ""
    return (
        _str(user.get("display_name"))
        or _str(author.get("display_name"))
        or raw_name
        or _str(actor.get("display_name"))
        or _str(actor.get("nickname"))
        or _str(actor.get("username"))
    )


def _bitbucket_cloud_pushes(payload: dict[str, Any]) -> tuple[Push, ...]:
    repo = _dict(payload.get("repository"))
    full_name = _str(repo.get("full_name"))
    if not full_name:
        raise BadRequestError("push payload has no repository.full_name")
    changes = _dict(payload.get("push")).get("changes")
    if not isinstance(changes, list):
        raise BadRequestError("repo:push payload has no push.changes")
    actor = _dict(payload.get("actor"))
    pushes: list[Push] = []
    for change in changes:
        change = _dict(change)
        new = change.get("new")
        old = change.get("old")
        state = _dict(new) or _dict(old)
        if not state:
            raise BadRequestError("push change has neither new nor old ref")
        prefix = _BITBUCKET_REF_PREFIX.get(_str(state.get("type")))
        name = _str(state.get("name"))
        if prefix is None or not name:
            raise BadRequestError("push change has no branch or tag name")
        deleted = not isinstance(new, dict)
        target = _dict(state.get("target"))
        sha = ZERO_SHA if deleted else _sha(target.get("hash"), "new")
        pushes.append(
            Push(
                ref=_require_ref(prefix + name),
                sha=sha,
                repository=full_name,
                message="" if deleted else _str(target.get("message")),
                author=_bitbucket_author({} if deleted else target, actor),
                pushed_at=None if deleted else _timestamp(target.get("date")),
                deleted=deleted,
            )
        )
    return tuple(pushes)


def _bitbucket_server_pushes(payload: dict[str, Any]) -> tuple[Push, ...]:
    repo = _dict(payload.get("repository"))
    key = _str(_dict(repo.get("project")).get("key"))
    slug = _str(repo.get("slug"))
    if not key or not slug:
        raise BadRequestError("push payload has no repository project key / slug")
    changes = payload.get("changes")
    if not isinstance(changes, list):
        raise BadRequestError("repo:refs_changed payload has no changes")
    actor = _dict(payload.get("actor"))
    author = _str(actor.get("displayName")) or _str(actor.get("name"))
    pushed_at = _timestamp(payload.get("date"))
    pushes: list[Push] = []
    for change in changes:
        change = _dict(change)
        ref_obj = _dict(change.get("ref"))
        ref = _str(ref_obj.get("id")) or _str(change.get("refId"))
        if not ref:
            display = _str(ref_obj.get("displayId"))
            kind = _str(ref_obj.get("type")).upper()
            if display and kind in {"BRANCH", "TAG"}:
                ref = ("refs/heads/" if kind == "BRANCH" else "refs/tags/") + display
        ref = _require_ref(ref)
        sha = _sha(change.get("toHash"), "new")
        deleted = _str(change.get("type")).upper() == "DELETE" or _is_zero(sha)
        pushes.append(
            Push(
                ref=ref,
                sha=sha,
                repository=f"{key}/{slug}",
                message="",
                author=author,
                pushed_at=pushed_at,
                deleted=deleted,
            )
        )
    return tuple(pushes)


# --------------------------------------------------------------------------- refs


_HEADS = "refs/heads/"
_TAGS = "refs/tags/"


def short_ref(ref: str) -> str:
    """``refs/heads/feature/x`` -> ``feature/x``; ``refs/tags/v1`` -> ``v1``; else unchanged."""
    for prefix in (_HEADS, _TAGS):
        if ref.startswith(prefix):
            return ref[len(prefix) :]
    return ref


@lru_cache(maxsize=512)
def _glob_regex(pattern: str) -> re.Pattern[str]:
    """Compile a glob: ``*`` stays within a path segment, ``**`` crosses ``/``."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        char = pattern[i]
        if char == "*":
            if pattern.startswith("**", i):
                i += 2
                while i < n and pattern[i] == "*":
                    i += 1
                if i < n and pattern[i] == "/":
                    out.append("(?:.*/)?")  # "**/" = zero or more whole segments
                    i += 1
                else:
                    out.append(".*")
                continue
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            end = i + 1
            if end < n and pattern[end] in "!^":
                end += 1
            if end < n and pattern[end] == "]":
                end += 1
            while end < n and pattern[end] != "]":
                end += 1
            if end >= n:
                out.append(re.escape(char))
            else:
                body = pattern[i + 1 : end]
                negate = body[:1] in ("!", "^")
                if negate:
                    body = body[1:]
                body = body.replace("\\", "\\\\").replace("^", "\\^").replace("[", "\\[")
                out.append(f"[^/{body}]" if negate else f"[{body}]")
                i = end
        else:
            out.append(re.escape(char))
        i += 1
    return re.compile("".join(out), re.DOTALL)


def _glob_match(name: str, pattern: str) -> bool:
    try:
        regex = _glob_regex(pattern)
    except re.error:
        return name == pattern
    return regex.fullmatch(name) is not None


def ref_matches(ref: str, branches: Sequence[str], tags: Sequence[str]) -> bool:
    """True if a branch ref matches a branch glob or a tag ref matches a tag glob."""
    if ref.startswith(_HEADS):
        name, patterns = ref[len(_HEADS) :], branches
    elif ref.startswith(_TAGS):
        name, patterns = ref[len(_TAGS) :], tags
    else:
        return False
    if not name:
        return False
    return any(_glob_match(name, pattern) for pattern in patterns if pattern)


# --------------------------------------------------------------------------- names


_EXECUTION_NAME_MAX = 80
_RELEASE_TAIL_MAX = 32
_TRANSLIT = {
    "ß": "ss",
    "æ": "ae",
    "Æ": "AE",
    "ø": "o",
    "Ø": "O",
    "œ": "oe",
    "Œ": "OE",
    "đ": "d",
    "Đ": "D",
    "ł": "l",
    "Ł": "L",
    "þ": "th",
    "Þ": "TH",
    "ı": "i",
}


def _slug(text: str) -> str:
    """ASCII ``[A-Za-z0-9_-]`` slug: transliterate, replace the rest with '-', collapse."""
    chars: list[str] = []
    for char in unicodedata.normalize("NFKD", text):
        if unicodedata.combining(char):
            continue
        char = _TRANSLIT.get(char, char)
        # Keep ASCII word characters (transliterations may be several letters long).
        keep = all(c.isascii() and (c.isalnum() or c in "_-") for c in char)
        chars.append(char if keep else "-")
    return re.sub(r"-{2,}", "-", "".join(chars)).strip("-")


def _cut(text: str, limit: int) -> str:
    return text[: max(limit, 0)].strip("-")


def execution_name(stack_id: str, ref: str, sha: str, release_id: str) -> str:
    """Deterministic Step Functions execution name (<= 80 chars of ``[A-Za-z0-9_-]``).

    Shape ``{stack}-{branch}-{sha8}-{release}``; stack and branch are shortened first,
    the release id is kept whole (or its last 32 characters) so names stay unique.
    """
    release = _slug(release_id)
    if not release:
        raise ValueError("release_id must contain at least one ASCII letter or digit")
    release = release[-_RELEASE_TAIL_MAX:].strip("-")
    sha8 = _slug(sha[:8])
    stack = _slug(stack_id)
    branch = _slug(short_ref(ref))

    tail = "-".join(part for part in (sha8, release) if part)
    avail = _EXECUTION_NAME_MAX - len(tail)  # room for "{stack}-{branch}-"
    stack = _cut(stack, min(len(stack), max(avail - 2 - len(branch), (avail - 2) // 2)))
    branch = _cut(branch, avail - (len(stack) + 1 if stack else 0) - 1)

    name = "-".join(part for part in (stack, branch, tail) if part)
    return re.sub(r"-{2,}", "-", name)[:_EXECUTION_NAME_MAX]
