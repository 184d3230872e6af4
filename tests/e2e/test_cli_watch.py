"""`stagecoach deploy --watch` / `watch` against a real control plane running real releases."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.pipeline_support import example_repo
from tests.plane import running_plane

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def plane() -> Iterator[Any]:
    with running_plane(pump=True) as plane:
        yield plane


def cli(plane: Any, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chalicelib.cli", "--url", plane.url, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def create(plane: Any, stack_id: str, repo: Path, approval: bool) -> None:
    prod = "prod:approval" if approval else "prod"
    result = cli(
        plane,
        "stacks",
        "create",
        "--id",
        stack_id,
        "--name",
        stack_id,
        "--repo",
        "acme/hello",
        "--provider",
        "github",
        "--clone-url",
        str(repo),
        "--stage",
        "dev",
        "--stage",
        prod,
    )
    assert result.returncode == 0, result.stderr


def test_deploy_watch_exits_0_when_the_release_succeeds(plane: Any, tmp_path: Path) -> None:
    repo, sha = example_repo(tmp_path)
    create(plane, "watch-ok", repo, approval=False)
    result = cli(plane, "deploy", "watch-ok", "--sha", sha, "--watch", "--timeout", "150")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCEEDED" in result.stdout
    assert "prod" in result.stdout


def test_watch_exits_1_when_the_build_fails(plane: Any, tmp_path: Path) -> None:
    repo, sha = example_repo(tmp_path, break_build=True)
    create(plane, "watch-fail", repo, approval=False)
    result = cli(plane, "deploy", "watch-fail", "--sha", sha, "--watch", "--timeout", "150")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAILED" in result.stdout + result.stderr
    assert "broken on purpose" in result.stdout + result.stderr


def test_watch_returns_4_at_the_approval_gate_then_1_once_rejected(plane: Any, tmp_path: Path) -> None:
    repo, sha = example_repo(tmp_path)
    create(plane, "watch-reject", repo, approval=True)
    deployed = cli(plane, "--json", "deploy", "watch-reject", "--sha", sha)
    assert deployed.returncode == 0, deployed.stderr
    release_id = json.loads(deployed.stdout)["release_id"]

    at_gate = cli(plane, "watch", release_id, "--timeout", "150")

    assert at_gate.returncode == 4, at_gate.stdout + at_gate.stderr
    approve = f"stagecoach --url {plane.url} approve {release_id} prod"
    assert f"release {release_id} awaits approval at prod of these changes:" in at_gate.stdout
    assert "Add     Function" in at_gate.stdout  # the change set the approval is about
    assert approve in at_gate.stdout
    again = cli(plane, "--json", "watch", release_id, "--timeout", "150")  # still there: returns at once
    assert again.returncode == 4 and json.loads(again.stdout)["status"] == "RUNNING"
    rejected = cli(plane, "reject", release_id, "prod", "--comment", "not today")
    assert rejected.returncode == 0, rejected.stderr
    ended = cli(plane, "watch", release_id, "--timeout", "150")
    assert ended.returncode == 1, ended.stdout + ended.stderr
    assert "not today" in ended.stdout


def test_through_approval_keeps_watching_until_someone_decides(plane: Any, tmp_path: Path) -> None:
    repo, sha = example_repo(tmp_path)
    create(plane, "watch-through", repo, approval=True)
    release_id = json.loads(cli(plane, "--json", "deploy", "watch-through", "--sha", sha).stdout)["release_id"]
    watcher = subprocess.Popen(
        [sys.executable, "-m", "chalicelib.cli", "--url", plane.url, "watch", release_id, "--through-approval"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert watcher.stdout is not None
    seen: list[str] = []
    hint = f"run: stagecoach --url {plane.url} approve {release_id} prod"
    for line in watcher.stdout:  # approve only once the watcher has shown the hint (it polls once a second)
        seen.append(line)
        if hint in line:
            break
    assert any(hint in line for line in seen), "".join(seen)
    assert watcher.poll() is None  # still watching
    assert cli(plane, "approve", release_id, "prod").returncode == 0
    out, _ = watcher.communicate(timeout=150)
    assert watcher.returncode == 0, "".join(seen) + out
    assert f"release {release_id} SUCCEEDED" in out
