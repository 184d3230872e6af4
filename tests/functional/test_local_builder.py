"""The local builder against real git repositories and real shells (no mocks)."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from chalicelib.adapters.local_builder import (
    LocalBuilder,
    LocalBuildRequest,
    LocalBuildResult,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "hello-stack"


def git(repo: Path, *args: str) -> str:
    out = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


def make_repo(path: Path, files: dict[str, str]) -> str:
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "--quiet", "--initial-branch=main")
    return commit(path, files)


def commit(path: Path, files: dict[str, str], message: str = "c") -> str:
    for name, content in files.items():
        target = path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
    git(path, "add", "-A")
    git(path, "commit", "--quiet", "-m", message)
    return git(path, "rev-parse", "HEAD")


class Uploads(dict[str, bytes]):
    def __call__(self, key: str, content: bytes) -> None:
        self[key] = content


@pytest.fixture
def uploads() -> Uploads:
    return Uploads()


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path / "work"


def run(
    uploads: Uploads,
    workdir: Path,
    clone_url: str,
    sha: str,
    *,
    timeout: int = 60,
    env: dict[str, str] | None = None,
    buildspec_path: str = "buildspec.yml",
) -> LocalBuildResult:
    builder = LocalBuilder(upload=uploads, workdir_root=str(workdir))
    return builder.run(
        LocalBuildRequest(
            build_id="stagecoach-local:1234",
            clone_url=clone_url,
            sha=sha,
            buildspec_path=buildspec_path,
            env=env or {"STAGECOACH_STACK": "hello", "ARTIFACT_PREFIX": "builds/r1/"},
            timeout_seconds=timeout,
        )
    )


def assert_clean(workdir: Path) -> None:
    assert not workdir.exists() or list(workdir.iterdir()) == []


SUCCESS_SPEC = """
version: 0.2
env:
  variables:
    FROM_SPEC: spec-value
phases:
  install:
    commands:
      - echo "installing"
  build:
    commands:
      - echo "sha=$CODEBUILD_RESOLVED_SOURCE_VERSION" > out/env.txt
      - echo "id=$CODEBUILD_BUILD_ID stack=$STAGECOACH_STACK spec=$FROM_SPEC" >> out/env.txt
      - echo "src=$CODEBUILD_SRC_DIR pwd=$(pwd)" >> out/env.txt
      - mkdir -p out/nested && echo nested > out/nested/deep.txt
  post_build:
    commands:
      - echo "post build ran"
artifacts:
  base-directory: out
  files:
    - '**/*'
"""


def test_success_uploads_artifacts_and_exposes_env(tmp_path: Path, uploads: Uploads, workdir: Path) -> None:
    repo = tmp_path / "repo"
    sha = make_repo(repo, {"buildspec.yml": SUCCESS_SPEC, "out/static.txt": "static\n"})

    result = run(uploads, workdir, str(repo), sha)

    assert result.status == "SUCCEEDED", result.log
    assert result.failed_phase is None
    assert result.build_id == "stagecoach-local:1234"
    assert result.artifacts == ("env.txt", "nested/deep.txt", "static.txt")
    assert set(uploads) == {"env.txt", "nested/deep.txt", "static.txt"}
    env_txt = uploads["env.txt"].decode()
    assert f"sha={sha}" in env_txt
    assert "id=stagecoach-local:1234 stack=hello spec=spec-value" in env_txt
    src, pwd = env_txt.splitlines()[2].split(" ")
    assert src.removeprefix("src=") == pwd.removeprefix("pwd=")
    assert uploads["static.txt"] == b"static\n"
    for line in (
        "Entering phase INSTALL",
        'Running command echo "installing"',
        "Phase complete: BUILD State: SUCCEEDED",
        "Phase complete: POST_BUILD State: SUCCEEDED",
        "Phase complete: UPLOAD_ARTIFACTS State: SUCCEEDED",
    ):
        assert line in result.log
    assert "installing\n" in result.log and "post build ran" in result.log
    assert result.started_at.endswith("Z") and result.ended_at.endswith("Z")
    assert result.started_at <= result.ended_at
    assert_clean(workdir)


def test_checks_out_the_requested_commit_and_branch(tmp_path: Path, uploads: Uploads, workdir: Path) -> None:
    spec = (
        "version: 0.2\nphases:\n  build:\n    commands:\n      - cp version.txt out.txt\n"
        "artifacts:\n  files: [out.txt]\n"
    )
    repo = tmp_path / "repo"
    first = make_repo(repo, {"buildspec.yml": spec, "version.txt": "one\n"})
    git(repo, "checkout", "--quiet", "-b", "feature")
    feature = commit(repo, {"version.txt": "feature\n"})
    git(repo, "checkout", "--quiet", "main")
    commit(repo, {"version.txt": "two\n"})

    result = run(uploads, workdir, f"file://{repo}", first)
    assert result.status == "SUCCEEDED", result.log
    assert uploads["out.txt"] == b"one\n"

    result = run(uploads, workdir, str(repo), "feature")
    assert result.status == "SUCCEEDED", result.log
    assert uploads["out.txt"] == b"feature\n"
    assert f"resolved to {feature}" in result.log


VERSION_SPEC = (
    "version: 0.2\nphases:\n  build:\n    commands:\n      - cp version.txt out.txt\nartifacts:\n  files: [out.txt]\n"
)


@pytest.fixture
def bare_with_master_head(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A bare repository whose HEAD is git's default ``refs/heads/master``, a branch it does not have.

    Branches main and feature, tags v1 (annotated) and light, a ref outside heads and tags
    (refs/pull/7/head) and a commit no ref points at; returns (bare path, commit sha of each).
    """
    work = tmp_path / "work-repo"
    shas = {"main-1": make_repo(work, {"buildspec.yml": VERSION_SPEC, "version.txt": "main-1\n"})}
    git(work, "tag", "-a", "v1", "-m", "v1")
    shas["main"] = commit(work, {"version.txt": "main\n"})
    git(work, "tag", "light")
    git(work, "checkout", "--quiet", "-b", "feature")
    shas["feature"] = commit(work, {"version.txt": "feature\n"})
    shas["pull"] = commit(work, {"version.txt": "pull\n"})
    shas["dangling"] = commit(work, {"version.txt": "dangling\n"})
    bare = tmp_path / "hello.git"
    git(tmp_path, "init", "--quiet", "--bare", "--initial-branch=master", str(bare))
    git(work, "push", "--quiet", str(bare), "main", f"{shas['feature']}:refs/heads/feature", "v1", "light")
    git(
        work, "push", "--quiet", str(bare), f"{shas['pull']}:refs/pull/7/head", f"{shas['dangling']}:refs/keep/dangling"
    )
    git(bare, "update-ref", "-d", "refs/keep/dangling")  # the commit stays, reachable from no ref
    assert git(bare, "symbolic-ref", "HEAD") == "refs/heads/master"
    return bare, shas


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("main", "main"),
        ("refs/heads/main", "main"),
        ("feature", "feature"),
        ("refs/heads/feature", "feature"),
        ("v1", "main-1"),
        ("refs/tags/v1", "main-1"),
        ("light", "main"),
        ("refs/pull/7/head", "pull"),
        ("sha:main-1", "main-1"),
        ("short:feature", "feature"),
        ("sha:dangling", "dangling"),
    ],
)
def test_builds_any_branch_tag_ref_or_sha_whatever_the_remote_head(
    bare_with_master_head: tuple[Path, dict[str, str]], uploads: Uploads, workdir: Path, version: str, expected: str
) -> None:
    bare, shas = bare_with_master_head
    kind, _, name = version.partition(":")
    source_version = {"sha": shas.get(name, ""), "short": shas.get(name, "")[:8]}.get(kind, version)

    result = run(uploads, workdir, str(bare), source_version)

    assert result.status == "SUCCEEDED", result.log
    assert uploads["out.txt"] == f"{expected}\n".encode()
    assert result.resolved_sha == shas[expected]
    assert f"Source version {source_version} resolved to {shas[expected]}" in result.log
    assert_clean(workdir)


def test_an_unknown_branch_fails_download_source_with_the_reason(
    bare_with_master_head: tuple[Path, dict[str, str]], uploads: Uploads, workdir: Path
) -> None:
    bare, _ = bare_with_master_head
    result = run(uploads, workdir, str(bare), "refs/heads/nope")
    assert (result.status, result.failed_phase) == ("FAILED", "DOWNLOAD_SOURCE")
    assert "reference not found for primary source and source version refs/heads/nope" in result.log_tail
    assert "couldn't find remote ref refs/heads/nope" in result.log
    assert result.resolved_sha is None


def test_failing_command_fails_build_phase(tmp_path: Path, uploads: Uploads, workdir: Path) -> None:
    spec = """
version: 0.2
phases:
  build:
    commands:
      - echo "before failure"
      - 'echo "boom: the tests are broken" >&2; exit 3'
      - echo "must not run"
    finally:
      - echo "finally ran"
  post_build:
    commands:
      - echo "post build must not run"
artifacts:
  files: ['**/*']
"""
    repo = tmp_path / "repo"
    sha = make_repo(repo, {"buildspec.yml": spec})

    result = run(uploads, workdir, str(repo), sha)

    assert result.status == "FAILED"
    assert result.failed_phase == "BUILD"
    assert "boom: the tests are broken" in result.log_tail
    assert "exit status 3" in result.log_tail
    assert "Phase complete: BUILD State: FAILED" in result.log_tail
    assert "finally ran" in result.log
    assert "must not run" not in result.log.replace("Running command", "")
    assert "post build must not run" not in result.log
    assert len(result.log_tail.splitlines()) <= 20
    assert result.artifacts == () and uploads == {}
    assert_clean(workdir)


def test_on_failure_continue_runs_next_phases_but_fails(tmp_path: Path, uploads: Uploads, workdir: Path) -> None:
    spec = """
version: 0.2
phases:
  pre_build:
    on-failure: CONTINUE
    commands:
      - "false"
  build:
    commands:
      - echo "build after continue" > built.txt
artifacts:
  files: [built.txt]
"""
    repo = tmp_path / "repo"
    sha = make_repo(repo, {"buildspec.yml": spec})

    result = run(uploads, workdir, str(repo), sha)

    assert result.status == "FAILED"
    assert result.failed_phase == "PRE_BUILD"
    assert "Phase complete: PRE_BUILD State: FAILED" in result.log
    assert "Phase complete: BUILD State: SUCCEEDED" in result.log
    assert uploads == {}


def test_timeout_kills_the_build(tmp_path: Path, uploads: Uploads, workdir: Path) -> None:
    spec = "version: 0.2\nphases:\n  build:\n    commands:\n      - echo sleeping; sleep 30\n"
    repo = tmp_path / "repo"
    sha = make_repo(repo, {"buildspec.yml": spec})

    started = time.monotonic()
    result = run(uploads, workdir, str(repo), sha, timeout=2)
    elapsed = time.monotonic() - started

    assert result.status == "TIMED_OUT"
    assert result.failed_phase == "BUILD"
    assert elapsed < 10
    assert "sleeping" in result.log
    assert "BUILD_TIMED_OUT" in result.log_tail
    assert_clean(workdir)


def test_background_process_does_not_outlive_its_command(tmp_path: Path, uploads: Uploads, workdir: Path) -> None:
    marker = tmp_path / "marker"
    spec = f"version: 0.2\nphases:\n  build:\n    commands:\n      - (sleep 1; touch {marker}) > /dev/null 2>&1 &\n"
    repo = tmp_path / "repo"
    sha = make_repo(repo, {"buildspec.yml": spec})

    result = run(uploads, workdir, str(repo), sha)
    time.sleep(1.5)

    assert result.status == "SUCCEEDED", result.log
    assert not marker.exists()


def test_bad_sha_fails_download_source(tmp_path: Path, uploads: Uploads, workdir: Path) -> None:
    repo = tmp_path / "repo"
    make_repo(repo, {"buildspec.yml": SUCCESS_SPEC})

    result = run(uploads, workdir, str(repo), "0" * 40)

    assert result.status == "FAILED"
    assert result.failed_phase == "DOWNLOAD_SOURCE"
    assert "reference not found" in result.log_tail
    assert_clean(workdir)


@pytest.mark.parametrize(
    "clone_url", ["/does/not/exist", "relative/path", "ext::sh -c touch% /tmp/pwned", "--upload-pack=x"]
)
def test_bad_clone_url_fails_download_source(tmp_path: Path, uploads: Uploads, workdir: Path, clone_url: str) -> None:
    result = run(uploads, workdir, clone_url, "main")
    assert result.status == "FAILED"
    assert result.failed_phase == "DOWNLOAD_SOURCE"
    assert_clean(workdir)


def test_credentials_in_clone_url_are_redacted(uploads: Uploads, workdir: Path) -> None:
    url = "https://x-access-token:supersecret123@127.0.0.1:9/acme/hello.git"
    result = run(uploads, workdir, url, "main", timeout=20)
    assert result.status in ("FAILED", "TIMED_OUT")
    assert result.failed_phase == "DOWNLOAD_SOURCE"
    assert "supersecret123" not in result.log
    assert "https://***@127.0.0.1:9/acme/hello.git" in result.log


@pytest.mark.parametrize(
    ("files", "buildspec_path", "needle"),
    [
        ({"other.txt": "x"}, "buildspec.yml", "cannot read buildspec"),
        ({"buildspec.yml": "version: 0.2\nphases:\n  bild: {}\n"}, "buildspec.yml", "unknown phase"),
        ({"buildspec.yml": "x"}, "../../etc/passwd", "not inside the source directory"),
    ],
)
def test_buildspec_errors_fail_download_source(
    tmp_path: Path,
    uploads: Uploads,
    workdir: Path,
    files: dict[str, str],
    buildspec_path: str,
    needle: str,
) -> None:
    repo = tmp_path / "repo"
    sha = make_repo(repo, files)
    result = run(uploads, workdir, str(repo), sha, buildspec_path=buildspec_path)
    assert result.status == "FAILED"
    assert result.failed_phase == "DOWNLOAD_SOURCE"
    assert "YAML_FILE_ERROR" in result.log_tail
    assert needle in result.log_tail


def test_no_matching_artifacts_fails_upload(tmp_path: Path, uploads: Uploads, workdir: Path) -> None:
    spec = "version: 0.2\nphases:\n  build:\n    commands: [echo hi]\nartifacts:\n  files: ['dist/*.zip']\n"
    repo = tmp_path / "repo"
    sha = make_repo(repo, {"buildspec.yml": spec})
    result = run(uploads, workdir, str(repo), sha)
    assert result.status == "FAILED"
    assert result.failed_phase == "UPLOAD_ARTIFACTS"
    assert "no matching artifact paths" in result.log_tail


def test_upload_error_fails_upload_phase(tmp_path: Path, workdir: Path) -> None:
    spec = "version: 0.2\nphases:\n  build:\n    commands: [echo hi > a.txt]\nartifacts:\n  files: [a.txt]\n"
    repo = tmp_path / "repo"
    sha = make_repo(repo, {"buildspec.yml": spec})

    def broken_upload(key: str, content: bytes) -> None:
        raise OSError("bucket unavailable")

    result = LocalBuilder(upload=broken_upload, workdir_root=str(workdir)).run(
        LocalBuildRequest("b1", str(repo), sha, "buildspec.yml", {}, 30)
    )
    assert result.status == "FAILED"
    assert result.failed_phase == "UPLOAD_ARTIFACTS"
    assert "bucket unavailable" in result.log_tail


def test_artifact_symlink_outside_source_is_refused(tmp_path: Path, uploads: Uploads, workdir: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("secret")
    spec = (
        "version: 0.2\nphases:\n  build:\n    commands:\n"
        f"      - ln -s {secret} leak.txt\n"
        "artifacts:\n  files: [leak.txt]\n"
    )
    repo = tmp_path / "repo"
    sha = make_repo(repo, {"buildspec.yml": spec})
    result = run(uploads, workdir, str(repo), sha)
    assert result.status == "FAILED"
    assert result.failed_phase == "UPLOAD_ARTIFACTS"
    assert uploads == {}


def test_programming_errors_raise(uploads: Uploads) -> None:
    builder = LocalBuilder(upload=uploads)
    with pytest.raises(ValueError):
        builder.run(LocalBuildRequest("b", "/x", "main", "buildspec.yml", {}, 0))


def test_builds_the_hello_stack_example(tmp_path: Path, uploads: Uploads, workdir: Path) -> None:
    repo = tmp_path / "hello-stack"
    shutil.copytree(EXAMPLE, repo, ignore=shutil.ignore_patterns("__pycache__", "dist"))
    git(repo, "init", "--quiet", "--initial-branch=main")
    git(repo, "add", "-A")
    git(repo, "commit", "--quiet", "-m", "hello")
    sha = git(repo, "rev-parse", "HEAD")

    result = run(uploads, workdir, str(repo), sha)

    assert result.status == "SUCCEEDED", result.log
    assert result.artifacts == ("template.yaml",)
    template = uploads["template.yaml"].decode()
    assert f"Default: {sha}" in template
    assert "__BUILD_SHA__" not in template
    assert "Ran 4 tests" in result.log
    assert f"packaged hello at {sha}" in result.log
    assert_clean(workdir)


def test_hello_stack_template_deploys_on_moto(monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3
    import moto

    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    template = (EXAMPLE / "template.yaml").read_text()
    with moto.mock_aws():
        cfn = boto3.client("cloudformation")
        for stage in ("dev", "prod"):
            cfn.create_stack(
                StackName=f"hello-{stage}",
                TemplateBody=template,
                Parameters=[
                    {"ParameterKey": "Stage", "ParameterValue": stage},
                    {"ParameterKey": "Sha", "ParameterValue": "abc123"},
                ],
                Capabilities=["CAPABILITY_IAM"],
            )
        stack = cfn.describe_stacks(StackName="hello-prod")["Stacks"][0]
        assert stack["StackStatus"] == "CREATE_COMPLETE"
        outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
        assert {"BucketName", "QueueUrl", "FunctionName", "ReleaseParameterName"} <= set(outputs)
        ssm = boto3.client("ssm")
        value = ssm.get_parameter(Name="/hello-prod/release")["Parameter"]["Value"]
        assert value == "stage=prod sha=abc123"
        assert ssm.get_parameter(Name="/hello-dev/release")["Parameter"]["Value"].startswith("stage=dev")
        assert boto3.client("s3").head_bucket(Bucket=outputs["BucketName"])


def test_shell_state_carries_over_between_commands_and_phases(tmp_path: Path, uploads: Uploads, workdir: Path) -> None:
    buildspec = """version: 0.2
phases:
  pre_build:
    commands:
      - cd app
      - export EXPORTED=one
      - PLAIN="two words"
      - COUNT=$((1 + 1))
  build:
    commands:
      - test "$(basename "$PWD")" = app
      - test "$EXPORTED" = one && test "$PLAIN" = "two words" && test "$COUNT" = 2
      - mkdir -p ../dist && echo "$PLAIN $EXPORTED" > ../dist/out.txt
      - cd .. && unset PLAIN
      - test -z "${PLAIN:-}" && test -d app
artifacts:
  base-directory: dist
  files:
    - out.txt
"""
    sha = make_repo(tmp_path / "repo", {"buildspec.yml": buildspec, "app/README": "x\\n"})
    result = run(uploads, workdir, str(tmp_path / "repo"), sha)
    assert result.status == "SUCCEEDED", result.log
    assert uploads["out.txt"] == b"two words one\n"


ENV_SPEC = """
version: 0.2
phases:
  build:
    commands:
      - env | sort > env.txt
artifacts:
  files:
    - env.txt
"""


def test_commands_get_a_minimal_environment_not_the_control_planes(
    tmp_path: Path, uploads: Uploads, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STAGECOACH_CANARY_SECRET", "control-plane-only")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "control-plane-key")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    repo = tmp_path / "repo"
    sha = make_repo(repo, {"buildspec.yml": ENV_SPEC})
    result = run(uploads, workdir, str(repo), sha)
    assert result.status == "SUCCEEDED", result.log
    names = {line.split("=", 1)[0]: line.split("=", 1)[1] for line in uploads["env.txt"].decode().splitlines()}
    assert "STAGECOACH_CANARY_SECRET" not in names
    assert "AWS_SECRET_ACCESS_KEY" not in names
    assert names["AWS_REGION"] == names["AWS_DEFAULT_REGION"] == "eu-west-1"
    assert names["PATH"] and names["HOME"]
    assert names["STAGECOACH_STACK"] == "hello"
    assert names["CODEBUILD_RESOLVED_SOURCE_VERSION"] == sha
    assert "control-plane" not in uploads["env.txt"].decode()
