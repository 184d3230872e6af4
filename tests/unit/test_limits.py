"""Limits: checked before parsing, named in errors, and small enough that what they allow fits AWS."""

from __future__ import annotations

import json
from typing import Any

import pytest

from chalicelib.domain import limits
from chalicelib.domain import stacks as domain
from chalicelib.domain.errors import ValidationError
from chalicelib.domain.releases import PipelineConfig, execution_input, new_release
from chalicelib.domain.webhooks import Push
from tests.fakes import stack_body

NOW = "2026-11-27T12:00:00.000Z"
CONFIG = PipelineConfig(
    state_machine_arn="arn:aws:states:us-east-1:123456789012:stateMachine:stagecoach-release",
    default_role_arn="arn:aws:iam::123456789012:role/stagecoach-deploy/default",
    poll_seconds=10,
    build_timeout_seconds=3600,
)
# What AWS accepts (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ServiceQuotas.html,
# https://docs.aws.amazon.com/step-functions/latest/dg/service-quotas.html).
DYNAMODB_ITEM_BYTES = 400 * 1024
EXECUTION_INPUT_BYTES = 256 * 1024


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        ("{}", 1),
        ('{"a": [1, {"b": 2}]}', 3),
        ('{"a": "[[[[{{{{"}', 1),
        ('{"a": "\\"[[[["}', 1),
        ("[" * 40 + "]" * 40, 40),
        ("1", 0),
        ('"]]]"', 0),
    ],
)
def test_json_depth_counts_nesting_not_brackets_in_strings(text: str, depth: int) -> None:
    assert limits.json_depth(text) == depth


def test_depth_over_the_limit_names_the_body_and_the_limit() -> None:
    limits.check_json_depth("[" * 32 + "]" * 32)
    with pytest.raises(ValidationError) as caught:
        limits.check_json_depth("[" * 1000 + "]" * 1000)
    assert caught.value.field == "body"
    assert caught.value.message == "body: nests 1000 levels deep; the limit is 32"


def test_depth_check_of_a_megabyte_is_quick() -> None:
    import time

    text = json.dumps({"message": "[{" * 250_000})
    started = time.perf_counter()
    limits.check_json_depth(text)
    assert time.perf_counter() - started < 1.0


def test_lone_surrogates_are_refused_pairs_are_fine() -> None:
    text = '{"name": "\\ud800"}'
    with pytest.raises(ValidationError, match="lone UTF-16 surrogate"):
        limits.check_unicode(text, json.loads(text))
    pair = '{"name": "\\ud83d\\ude00"}'
    limits.check_unicode(pair, json.loads(pair))


@pytest.mark.parametrize("char", ["a", "é", "€", "😀"])
def test_truncation_keeps_whole_characters_within_the_bound(char: str) -> None:
    text = char * 50_000
    cut = limits.truncate_utf8(text, 1000)
    assert len(cut.encode("utf-8")) <= 1000
    assert cut.startswith(char * 10)
    size = len(text.encode("utf-8"))
    assert cut.endswith(f"[truncated by Stagecoach: the message was {size} bytes]")
    assert limits.truncate_utf8("short", 1000) == "short"


def _largest_stack() -> domain.Stack:
    """A stack with 20 stages whose settings are as close to the limit as parameters allow."""
    stages: list[dict[str, Any]] = [
        {"name": f"stage-{i:02d}", "role_arn": f"arn:aws:iam::123456789012:role/{'r' * 400}", "parameters": {}}
        for i in range(domain.MAX_STAGES)
    ]
    body = stack_body(stages=stages, branches=["b" * 256] * 50, name="n" * 100)
    key = 0
    while True:
        stage = stages[key % len(stages)]
        stage["parameters"][f"P{key:04d}"] = "v" * 200
        try:
            domain.parse_new_stack(body, NOW)
        except ValidationError:
            del stage["parameters"][f"P{key:04d}"]
            return domain.parse_new_stack(body, NOW)
        key += 1


def test_the_largest_stack_and_message_fit_in_an_execution_input_and_a_release_item() -> None:
    stack = _largest_stack()
    assert domain.settings_size(stack) > limits.MAX_STACK_SETTINGS_BYTES - 300
    message = "😀" * 200_000  # 800 KB of 4-byte characters, escaped as 12 bytes each in JSON
    push = Push("refs/heads/" + "b" * 255, "a" * 40, "acme/hello", message, "x" * 5000, None, False)
    release = new_release(stack, "r" + "0" * 26, NOW, CONFIG, push=push)
    assert len(release.message.encode()) <= limits.MAX_MESSAGE_BYTES
    assert len(release.author) <= limits.MAX_AUTHOR_CHARS
    input_bytes = len(json.dumps(execution_input(stack, release, CONFIG)).encode())
    assert input_bytes < EXECUTION_INPUT_BYTES
    # The release item holds the message, the input and small fields (names and values count).
    item = {**{k: str(v) for k, v in vars(release).items()}, "pk": "RELEASE#" + release.id, "sk": "#RELEASE"}
    item_bytes = sum(len(k.encode()) + len(v.encode()) for k, v in item.items())
    assert item_bytes < DYNAMODB_ITEM_BYTES - 20_000  # room for the build details and status fields


def test_settings_over_the_limit_name_the_limit() -> None:
    stages = [{"name": "dev", "parameters": {f"P{i}": "v" * 4096 for i in range(20)}}]
    with pytest.raises(ValidationError) as caught:
        domain.parse_new_stack(stack_body(stages=stages), NOW)
    assert caught.value.field == "stages"
    assert "the limit is 65536" in caught.value.message
