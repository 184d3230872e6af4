"""`stagecoach deploy --watch` / `watch` against a real control plane running real releases."""

from __future__ import annotations

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


def test_watch_hints_approval_then_exits_1_on_rejection(plane: Any, tmp_path: Path) -> None:
    repo, sha = example_repo(tmp_path)
    create(plane, "watch-reject", repo, approval=True)
    deployed = cli(plane, "--json", "deploy", "watch-reject", "--sha", sha)
    assert deployed.returncode == 0, deployed.stderr
    import json

    release_id = json.loads(deployed.stdout)["release_id"]
    watcher = subprocess.Popen(
        [sys.executable, "-m", "chalicelib.cli", "--url", plane.url, "watch", release_id, "--timeout", "150"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert watcher.stdout is not None
    seen: list[str] = []
    hint = f"stagecoach approve {release_id} prod"
    # Reject only once the watcher has shown the approval hint (it polls once a second).
    for line in watcher.stdout:
        seen.append(line)
        if hint in line:
            break
    assert any(hint in line for line in seen), "".join(seen)
    rejected = cli(plane, "reject", release_id, "prod", "--comment", "not today")
    assert rejected.returncode == 0, rejected.stderr
    out, _ = watcher.communicate(timeout=150)
    assert watcher.returncode == 1, "".join(seen) + out
    assert "not today" in out
