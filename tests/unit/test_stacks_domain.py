"""Stacks and stages: validation and changes, on the pure domain and the service with fakes."""

from __future__ import annotations

from typing import Any

import pytest

from chalicelib.domain import stacks as domain
from chalicelib.domain.errors import ConflictError, NotFoundError, ValidationError
from chalicelib.domain.lanes import Deployed, Lane
from chalicelib.services.ports import StageState
from chalicelib.services.stacks import StackService, parse_limit
from tests import fakes
from tests.fakes import (
    InMemoryLaneStore,
    InMemoryReleaseRepository,
    InMemoryStackRepository,
    stack_body,
)

NOW = "2026-11-27T12:00:00.000Z"


def new_stack(**overrides: Any) -> domain.Stack:
    return domain.parse_new_stack(stack_body(**overrides), NOW)


def test_new_stack_defaults_and_order() -> None:
    stack = new_stack()
    assert stack.id == "hello"
    assert [s.name for s in stack.stages] == ["dev", "test", "prod"]
    assert stack.branches == ("main",)
    assert stack.tags == ()
    assert stack.template_path == "template.yaml"
    assert stack.buildspec_path == "buildspec.yml"
    assert stack.stage("prod").approval is True
    assert stack.stage("dev").approval_timeout_seconds == 24 * 3600
    assert stack.version == 1


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"name": ""}, "name"),
        ({"stages": []}, "stages"),
        ({"stages": [{"name": "Dev"}]}, "stages[0].name"),
        ({"stages": [{"name": "dev"}, {"name": "dev"}]}, "stages[1].name"),
        ({"stages": [{"name": "a" * 33}]}, "stages[0].name"),
        ({"stages": [{"name": "dev", "approval": "yes"}]}, "stages[0].approval"),
        ({"stages": [{"name": "dev", "parameters": {"A-B": "x"}}]}, "stages[0].parameters.A-B"),
        ({"stages": [{"name": "dev", "parameters": {"A": 1}}]}, "stages[0].parameters.A"),
        ({"stages": [{"name": "dev", "role_arn": "nope"}]}, "stages[0].role_arn"),
        ({"stages": [{"name": "dev", "region": "mars"}]}, "stages[0].region"),
        ({"stages": [{"name": "dev", "colour": "red"}]}, "stages[0].colour"),
        ({"repository": {"provider": "svn", "full_name": "a/b", "clone_url": "https://x"}}, "repository.provider"),
        ({"repository": {"provider": "github", "full_name": "nope", "clone_url": "https://x"}}, "repository.full_name"),
        ({"repository": {"provider": "github", "full_name": "a/b", "clone_url": "ftp://x"}}, "repository.clone_url"),
        ({"repository": "acme/hello"}, "repository"),
        ({"branches": "main"}, "branches"),
        ({"template_path": "../etc/passwd"}, "template_path"),
        ({"id": "Not A Slug"}, "id"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_invalid_stack_names_the_field(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        new_stack(**overrides)
    assert caught.value.field == field
    assert field in caught.value.message


def test_clone_url_may_be_local_path_or_file_url() -> None:
    for url in ("/srv/git/hello.git", "file:///srv/git/hello.git", "https://example.com/a.git"):
        repo = {"provider": "gitlab", "full_name": "group/sub/hello", "clone_url": url}
        assert new_stack(repository=repo).repository.clone_url == url


def test_add_stage_at_position_and_default_last() -> None:
    stack = new_stack()
    added = domain.add_stage(stack, {"name": "staging", "position": 2}, NOW)
    assert [s.name for s in added.stages] == ["dev", "test", "staging", "prod"]
    assert added.version == stack.version + 1
    last = domain.add_stage(added, {"name": "dr"}, NOW)
    assert last.stages[-1].name == "dr"


def test_add_stage_rejects_duplicates_and_bad_position() -> None:
    stack = new_stack()
    with pytest.raises(ConflictError):
        domain.add_stage(stack, {"name": "dev"}, NOW)
    with pytest.raises(ConflictError, match="position 9 is past the end"):
        domain.add_stage(stack, {"name": "x", "position": 9}, NOW)
    with pytest.raises(ValidationError) as caught:
        domain.add_stage(stack, {"name": "x", "position": 20}, NOW)
    assert caught.value.field == "position"
    assert "from 0 to 19" in caught.value.message


def test_move_and_update_stage() -> None:
    stack = new_stack()
    moved = domain.update_stage(stack, "prod", {"position": 0, "approval": False}, NOW)
    assert [s.name for s in moved.stages] == ["prod", "dev", "test"]
    assert moved.stage("prod").approval is False
    params = domain.update_stage(moved, "dev", {"parameters": {"Size": "small"}}, NOW)
    assert params.stage("dev").parameters == {"Size": "small"}
    assert [s.name for s in params.stages] == ["prod", "dev", "test"]
    with pytest.raises(NotFoundError):
        domain.update_stage(stack, "nope", {}, NOW)
    with pytest.raises(ValidationError):
        domain.update_stage(stack, "dev", {"name": "renamed"}, NOW)


def test_remove_stage_never_the_last() -> None:
    stack = domain.parse_new_stack(stack_body(stages=[{"name": "dev"}, {"name": "prod"}]), NOW)
    one = domain.remove_stage(stack, "dev", {}, NOW)
    assert [s.name for s in one.stages] == ["prod"]
    with pytest.raises(ConflictError):
        domain.remove_stage(one, "prod", {}, NOW)


def test_patch_requires_matching_version() -> None:
    stack = new_stack()
    with pytest.raises(ValidationError):
        domain.patch_stack(stack, {"name": "x"}, NOW)
    with pytest.raises(ConflictError):
        domain.patch_stack(stack, {"name": "x", "version": 7}, NOW)
    patched = domain.patch_stack(stack, {"name": "Renamed", "version": 1, "branches": ["main", "release/*"]}, NOW)
    assert patched.name == "Renamed"
    assert patched.branches == ("main", "release/*")
    assert patched.version == 2


def stack_service(repo: InMemoryStackRepository) -> StackService:
    return fakes.stack_service(repo, now=NOW)


def test_service_writes_nothing_on_invalid_input() -> None:
    repo = InMemoryStackRepository()
    service = stack_service(repo)
    with pytest.raises(ValidationError):
        service.create(stack_body(stages=[]))
    service.create(stack_body())
    writes = repo.writes
    for bad in ({"name": 5}, {"position": -1, "name": "x"}):
        with pytest.raises(ValidationError):
            service.add_stage("hello", bad)
    with pytest.raises(ConflictError):
        service.remove_stage("hello", "dev", {"version": 99})
    assert repo.writes == writes


def test_service_conflicts_on_duplicate_id_and_stale_version() -> None:
    repo = InMemoryStackRepository()
    service = stack_service(repo)
    service.create(stack_body())
    with pytest.raises(ConflictError):
        service.create(stack_body())
    view = service.patch("hello", {"version": 1, "name": "New"})
    assert view["version"] == 2
    with pytest.raises(ConflictError):
        service.patch("hello", {"version": 1, "name": "Older"})


def test_service_view_lists_stages_in_order_with_positions() -> None:
    repo = InMemoryStackRepository()
    service = stack_service(repo)
    service.create(stack_body())
    view = service.update_stage("hello", "test", {"position": 0})
    assert [(s["name"], s["position"]) for s in view["stages"]] == [("test", 0), ("dev", 1), ("prod", 2)]
    assert view["stages"][0]["status"] == "IDLE"
    assert view["stages"][0]["current_release"] is None


def test_service_paginates() -> None:
    repo = InMemoryStackRepository()
    service = stack_service(repo)
    for i in range(5):
        service.create(stack_body(name=f"svc {i}"))
    first = service.list("2", None)
    assert [s["id"] for s in first["stacks"]] == ["svc-0", "svc-1"]
    second = service.list("2", first["next_token"])
    assert [s["id"] for s in second["stacks"]] == ["svc-2", "svc-3"]
    third = service.list("2", second["next_token"])
    assert [s["id"] for s in third["stacks"]] == ["svc-4"]
    assert third["next_token"] is None


def test_service_list_shows_stage_states_from_one_batch_read_per_page() -> None:
    repo = InMemoryStackRepository()
    releases = InMemoryReleaseRepository()
    lanes_store = InMemoryLaneStore(repo, releases)
    service = fakes.stack_service(repo, lanes=lanes_store, releases=releases, uid="s1", now=NOW)
    for i in range(3):
        service.create(stack_body(name=f"svc {i}"))
    deployed = Deployed("r1", f"{NOW}#r1", "c" * 40, "Ship it", NOW)
    lanes_store.states_by_stack["svc-1"] = {"dev": StageState(Lane("svc-1", "dev", deployed=deployed), "SUCCEEDED")}

    listed = service.list(None, None)

    stages = {s["id"]: {st["name"]: st for st in s["stages"]} for s in listed["stacks"]}
    assert stages["svc-1"]["dev"]["status"] == "SUCCEEDED"
    assert stages["svc-1"]["dev"]["current_release"] == {
        "release_id": "r1",
        "sha": "c" * 40,
        "message": "Ship it",
        "deployed_at": NOW,
    }
    assert stages["svc-1"]["test"]["status"] == "IDLE"
    assert stages["svc-0"]["dev"]["status"] == "IDLE"
    assert lanes_store.batch_reads == 1
    assert service.list("1", "svc-2")["stacks"] == []  # nothing to read for an empty page
    assert lanes_store.batch_reads == 1


@pytest.mark.parametrize("raw", ["0", "101", "x", "-1"])
def test_limit_bounds(raw: str) -> None:
    with pytest.raises(ValidationError):
        parse_limit(raw)


def test_a_factory_asked_by_many_threads_at_once_builds_once() -> None:
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    from chalicelib.bootstrap import once

    built: list[int] = []

    @once
    def slow_client() -> object:
        built.append(1)
        time.sleep(0.05)  # a botocore client takes tens of ms to build: every thread arrives meanwhile
        return object()

    start_together = threading.Barrier(16)

    def ask(_: int) -> object:
        start_together.wait(timeout=10)
        return slow_client()

    with ThreadPoolExecutor(max_workers=16) as pool:
        clients = list(pool.map(ask, range(16)))
    assert len(built) == 1
    assert len({id(c) for c in clients}) == 1
    slow_client.cache_clear()
    assert slow_client() is not clients[0]
    assert len(built) == 2


def test_bootstrap_reset_forgets_every_cached_factory() -> None:
    from chalicelib import bootstrap

    factories = [v for v in vars(bootstrap).values() if isinstance(v, bootstrap.once)]
    assert len(factories) >= 10
    bootstrap.settings()
    bootstrap.reset()
    assert all(f.cache_info().currsize == 0 for f in factories)
