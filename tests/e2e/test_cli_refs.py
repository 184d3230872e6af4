"""Releasing any branch, tag or pushed commit of a bare repository, end to end in the emulator.

The bare repository is made by ``stagecoach git connect``; releases run for real (build, CloudFormation,
approval) on a control plane served over HTTP, and the CLI drives them as a person would.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.e2e.pipeline_support import example_repo, git
from tests.plane import running_plane

ROOT = Path(__file__).resolve().parents[2]
STACK = "refs"


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


def release_id_in(output: str) -> str:
    found = re.search(r"release (r[0-9A-Z]+)", output)
    assert found, output
    return found.group(1)


def stored_sha(plane: Any, release_id: str) -> str | None:
    """The ``sha`` attribute of the release item itself (the API's view falls back to the build's)."""
    ddb = boto3.client("dynamodb", endpoint_url=plane.aws_url, region_name="us-east-1")
    item = ddb.get_item(
        TableName=plane.resources.table, Key={"pk": {"S": f"RELEASE#{release_id}"}, "sk": {"S": "#RELEASE"}}
    )
    return item["Item"].get("sha", {}).get("S")


def test_pushes_and_manual_releases_of_any_branch_or_tag(plane: Any, tmp_path: Path) -> None:
    bare = tmp_path / "refs.git"
    created = cli(
        plane, "stacks", "create", "--id", STACK, "--name", STACK, "--repo", "acme/hello", "--clone-url", str(bare),
        "--stage", "dev", "--stage", "prod:approval", "--branch", "main",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    connected = cli(plane, "git", "connect", STACK, str(bare))
    assert connected.returncode == 0, connected.stderr
    assert git(bare, "symbolic-ref", "HEAD") == "refs/heads/main"

    work, main_sha = example_repo(tmp_path)
    git(work, "checkout", "-q", "-b", "feature")
    (work / "NOTES.md").write_text("a feature\n")
    git(work, "add", "NOTES.md")
    git(work, "commit", "-q", "-m", "A feature")
    feature_sha = git(work, "rev-parse", "HEAD")
    git(work, "checkout", "-q", "-b", "tagged", "main")
    (work / "NOTES.md").write_text("tagged\n")
    git(work, "add", "NOTES.md")
    git(work, "commit", "-q", "-m", "Tagged")
    git(work, "tag", "-a", "v1", "-m", "v1")
    tag_sha = git(work, "rev-parse", "HEAD")
    pushed = subprocess.run(
        ["git", "push", str(bare), "main", "feature", "v1"], cwd=work, capture_output=True, text=True, check=True
    ).stderr
    assert "refs/heads/feature ignored" in pushed  # not one of the stack's branches
    pushed_release = release_id_in(pushed.split("refs/heads/main")[1])

    # The pushed release: watch returns at the approval gate with the command to run, then after approval.
    at_gate = cli(plane, "watch", pushed_release)
    assert at_gate.returncode == 4, at_gate.stdout + at_gate.stderr
    assert f"stagecoach --url {plane.url} approve {pushed_release} prod" in at_gate.stdout
    assert cli(plane, "approve", pushed_release, "prod").returncode == 0
    done = cli(plane, "watch", pushed_release)
    assert done.returncode == 0, done.stdout + done.stderr

    # A branch that is not the bare repository's HEAD, by short name, and a tag: built and deployed to dev.
    for args, expected_sha in ((["--ref", "feature"], feature_sha), (["--tag", "v1"], tag_sha)):
        deployed = cli(plane, "deploy", STACK, *args, "--watch")
        assert deployed.returncode == 4, deployed.stdout + deployed.stderr  # dev deployed, prod waits
        release_id = release_id_in(deployed.stdout)
        release = json.loads(cli(plane, "--json", "releases", "show", release_id).stdout)
        assert release["sha"] == expected_sha and re.fullmatch(r"[0-9a-f]{40}", release["sha"])
        assert stored_sha(plane, release_id) == expected_sha
        assert [(s["name"], s["status"]) for s in release["stages"]] == [
            ("dev", "SUCCEEDED"),
            ("prod", "AWAITING_APPROVAL"),
        ]
        assert cli(plane, "reject", release_id, "prod", "--comment", "dev only").returncode == 0
        assert cli(plane, "watch", release_id).returncode == 1

    # The stacks list reads each stage's state: prod runs the pushed commit, dev the tag's release.
    listed = cli(plane, "stacks", "list").stdout.splitlines()
    dev = next(line for line in listed if line.startswith(STACK))
    prod = next(line for line in listed if "prod*" in line)
    assert dev.split()[2:4] == ["dev", "SUCCEEDED"], listed
    assert dev.split()[4] in (tag_sha[:8], release_id), listed  # the sha when the stage state has it
    assert prod.split()[:3] == ["prod*", "SUCCEEDED", main_sha[:8]], listed
    shown = cli(plane, "stacks", "show", STACK).stdout
    assert "(verified " in shown  # the signed push proved the hook
