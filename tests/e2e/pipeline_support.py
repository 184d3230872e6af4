"""Driving whole releases in the emulator: a git repo of the example, the event pump, polling."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.webhook_support import github_headers, github_push

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "hello-stack"
JSON = {"Content-Type": "application/json"}
GIT = [
    "git",
    "-c",
    "user.name=Stagecoach Test",
    "-c",
    "user.email=test@stagecoach.local",
    "-c",
    "init.defaultBranch=main",
]


def git(cwd: Path, *args: str) -> str:
    """Run git; returns stdout."""
    return subprocess.run([*GIT, *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def example_repo(tmp: Path, break_build: bool = False, buildspec: str | None = None) -> tuple[Path, str]:
    """A git repository holding examples/hello-stack (optionally another buildspec); returns (path, head sha)."""
    repo = tmp / "hello-stack"
    shutil.copytree(EXAMPLE, repo)
    if buildspec is not None:
        (repo / "buildspec.yml").write_text(buildspec)
    if break_build:
        (repo / "tests" / "check_broken.py").write_text(
            "import unittest\n\nclass Broken(unittest.TestCase):\n"
            "    def test_fails(self):\n        self.assertEqual(1, 2, 'the example is broken on purpose')\n"
        )
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "Hello, stages")
    return repo, git(repo, "rev-parse", "HEAD")


def create_stack(
    client: Any, repo: Path, stack_id: str = "hello", approval_on_prod: bool = True, mode: str = "SUPERSEDED"
) -> str:
    """Create the example's stack (dev → test → prod); returns the webhook secret."""
    body = {
        "id": stack_id,
        "name": "Hello",
        "execution_mode": mode,
        "repository": {"provider": "github", "full_name": "acme/hello", "clone_url": str(repo)},
        "stages": [
            {"name": "dev", "parameters": {"Stage": "dev"}},
            {"name": "test", "parameters": {"Stage": "test"}},
            {"name": "prod", "parameters": {"Stage": "prod"}, "approval": approval_on_prod},
        ],
    }
    response = client.http.post("/stacks", body=json.dumps(body), headers=JSON)
    assert response.status_code == 201, response.body
    return str(response.json_body["webhook"]["secret"])


def push(client: Any, secret: str, sha: str, stack_id: str = "hello", ref: str = "refs/heads/main") -> Any:
    """Deliver a signed GitHub push for ``sha``."""
    payload = github_push(ref=ref, sha=sha, full_name="acme/hello", created=True)
    body = json.dumps(payload).encode()
    return client.http.post(f"/webhooks/github/{stack_id}", body=body, headers=github_headers(secret, body))


def release(client: Any, release_id: str) -> dict[str, Any]:
    """GET /releases/{id}."""
    response = client.http.get(f"/releases/{release_id}")
    assert response.status_code == 200, response.body
    body: dict[str, Any] = response.json_body
    return body


def run_until(client: Any, pump: Any, release_id: str, done: Any, timeout: float = 120.0) -> dict[str, Any]:
    """Deliver queued messages until ``done(release)`` is true; returns the release."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pump.drain()
        current = release(client, release_id)
        if done(current):
            return current
        time.sleep(0.2)
    raise AssertionError(f"release {release_id} did not get there in {timeout} s: {json.dumps(current)[:2000]}")


def ended(current: dict[str, Any]) -> bool:
    """The release has ended (SUCCEEDED, FAILED, SUPERSEDED, CANCELLED, TIMED_OUT)."""
    return current["status"] not in ("PENDING", "RUNNING")


def awaiting(stage: str) -> Any:
    """A predicate: the stage waits for approval."""

    def check(current: dict[str, Any]) -> bool:
        return ended(current) or any(
            s["name"] == stage and s["status"] == "AWAITING_APPROVAL" for s in current["stages"]
        )

    return check
