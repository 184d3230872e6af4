"""GET /stacks/{id}/metrics over DynamoDB (paged releases, BatchGetItem of stage runs) and the dashboard's
pages and files, through chalice.test.Client against the emulated account."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from chalicelib.domain.clock import iso
from chalicelib.domain.releases import PipelineConfig, new_release
from tests.fakes import stack_body

JSON = {"Content-Type": "application/json"}
CONFIG = PipelineConfig("arn:aws:states:us-east-1:123456789012:stateMachine:stagecoach-release", "arn:role", 1, 60)


def seed(count: int, failed_every: int = 0) -> list[str]:
    """``count`` releases of stack hello, one an hour back from now, each deployed to prod an hour after it
    was received (every ``failed_every``-th one FAILED); returns their ids, newest first."""
    from chalicelib import bootstrap
    from chalicelib.adapters.models import StageRunModel

    stack = bootstrap.stack_repository().get("hello")
    assert stack is not None
    now = datetime.now(UTC)
    ids = []
    for n in range(count):
        received = now - timedelta(hours=n + 2)
        release_id = f"r{'0' * 20}{n:06d}"
        release = new_release(stack, release_id, iso(received), CONFIG, sha=f"{n:040x}", ref="main")
        bootstrap.release_repository().record(replace(release, status="SUCCEEDED"), [])
        failed = bool(failed_every) and n % failed_every == 0
        StageRunModel(
            pk=f"RELEASE#{release_id}",
            sk="STAGE#prod",
            status="FAILED" if failed else "SUCCEEDED",
            started_at=iso(received + timedelta(minutes=30)),
            ended_at=iso(received + timedelta(hours=1)),
        ).save()
        ids.append(release_id)
    return ids


def create_stack(client: Any) -> None:
    response = client.http.post("/stacks", body=json.dumps(stack_body(id="hello")), headers=JSON)
    assert response.status_code == 201, response.body


def test_metrics_read_every_page_of_the_window_and_each_run_in_batches(client: Any) -> None:
    create_stack(client)
    seed(130, failed_every=10)  # more than a page of releases (100) and a BatchGetItem (100 keys)
    response = client.http.get("/stacks/hello/metrics?days=30")
    assert response.status_code == 200, response.body
    body = response.json_body
    assert body["stage"] == "prod"
    assert body["releases_read"] == 130
    assert body["truncated"] is False
    assert body["change_failure_rate"]["deployments"] == 130
    assert body["change_failure_rate"]["failed"] == 13
    assert body["deployment_frequency"]["deployments"] == 117
    assert body["lead_time"]["median_seconds"] == 3600.0  # received (no pushed_at) → deployed
    assert body["time_to_restore"]["samples"] == 12  # the newest deploy failed: not restored yet
    assert body["time_to_restore"]["failing_now"] is True
    assert body["time_to_restore"]["median_seconds"] == 3600.0  # the next deploy, an hour later
    assert sum(day["deployments"] for day in body["daily"]) == 117


def test_metrics_of_another_stage_and_a_short_window(client: Any) -> None:
    create_stack(client)
    seed(3)
    dev = client.http.get("/stacks/hello/metrics?stage=dev&days=1")
    assert dev.status_code == 200, dev.body
    assert dev.json_body["stage"] == "dev"
    assert dev.json_body["deployment_frequency"]["deployments"] == 0
    assert dev.json_body["releases_read"] == 3


def test_metrics_refuse_bad_windows_unknown_stacks_and_stages_with_json_errors(client: Any) -> None:
    create_stack(client)
    for query in ("days=0", "days=366", "days=abc", "days=1.5"):
        response = client.http.get(f"/stacks/hello/metrics?{query}")
        assert response.status_code == 400, query
        assert response.json_body["code"] == "ValidationError"
        assert "days" in response.json_body["message"]
    missing = client.http.get("/stacks/nope/metrics")
    assert missing.status_code == 404
    assert missing.json_body["code"] == "NotFound"
    no_stage = client.http.get("/stacks/hello/metrics?stage=staging")
    assert no_stage.status_code == 404
    assert "staging" in no_stage.json_body["message"]


def test_the_pages_are_data_free_shells_and_the_files_have_their_types(client: Any) -> None:
    home = client.http.get("/")
    assert home.status_code == 200
    assert home.headers["Content-Type"].startswith("text/html")
    assert "default-src 'none'" in home.headers["Content-Security-Policy"]
    assert 'data-page="overview"' in home.body.decode()
    assert 'src="/ui/assets/app.js"' in home.body.decode()
    assert 'data-base=""' in home.body.decode()
    stack = client.http.get("/ui/stacks/hello")
    assert stack.status_code == 200
    assert 'data-page="stack" data-id="hello"' in stack.body.decode()
    assert 'href="/ui/assets/app.css"' in stack.body.decode()
    release = client.http.get("/ui/releases/r01JD5Z3Q8M6X2K7N4P9T1V3W5Y")
    assert 'data-page="release" data-id="r01JD5Z3Q8M6X2K7N4P9T1V3W5Y"' in release.body.decode()
    for name, kind in (("app.js", "text/javascript"), ("sigv4.js", "text/javascript"), ("app.css", "text/css")):
        asset = client.http.get(f"/ui/assets/{name}")
        assert asset.status_code == 200
        assert asset.headers["Content-Type"].startswith(kind)
    for path in ("/ui/assets/index.html", "/ui/assets/..%2Fpages.py", "/ui/stacks/Not_An_Id", "/ui/releases/x"):
        response = client.http.get(path)
        assert response.status_code == 404, path
        assert response.json_body["code"] == "NotFound"


def test_the_releases_listing_pages_with_its_own_tokens(client: Any) -> None:
    """Regression: a stack's second page of releases (the metrics read every page) was refused as another
    listing's token once stacks had a uid."""
    create_stack(client)
    ids = seed(3)
    first = client.http.get("/stacks/hello/releases?limit=2")
    assert first.status_code == 200, first.body
    token = first.json_body["next_token"]
    assert token
    second = client.http.get(f"/stacks/hello/releases?limit=2&next_token={token}")
    assert second.status_code == 200, second.body
    assert [r["id"] for r in first.json_body["releases"] + second.json_body["releases"]] == ids
