"""Buildspec parsing and artifact selection (pure)."""

from __future__ import annotations

import pytest

from chalicelib.domain.buildspec import (
    Artifacts,
    glob_to_regex,
    parse_buildspec,
    select_artifacts,
)
from chalicelib.domain.errors import ValidationError

FULL = """
version: 0.2
env:
  variables:
    GREETING: hello world
    RETRIES: 3
    DEBUG: true
  parameter-store:
    TOKEN: /ci/token
phases:
  post_build:
    commands:
      - echo done
  install:
    runtime-versions:
      python: 3.12
    commands:
      - pip install -r requirements.txt
  build:
    on-failure: CONTINUE
    commands:
      - make test
      - "echo key: value"
    finally:
      - echo cleanup
artifacts:
  base-directory: dist
  discard-paths: yes
  files:
    - '**/*'
cache:
  paths: ['/root/.cache/pip/**/*']
"""


def test_full_buildspec() -> None:
    spec = parse_buildspec(FULL)
    assert spec.version == "0.2"
    assert spec.env_variables == {"GREETING": "hello world", "RETRIES": "3", "DEBUG": "true"}
    assert [p.name for p in spec.phases] == ["install", "build", "post_build"]
    build = spec.phase("build")
    assert build is not None
    assert build.codebuild_name == "BUILD"
    assert build.commands == ("make test", "echo key: value")
    assert build.on_failure == "CONTINUE"
    assert build.finally_commands == ("echo cleanup",)
    install = spec.phase("install")
    assert install is not None and install.on_failure == "ABORT"
    assert install.finally_commands == ()
    assert spec.phase("pre_build") is None
    assert spec.artifacts == Artifacts(files=("**/*",), base_directory="dist", discard_paths=True)
    assert set(spec.ignored_keys) == {
        "env.parameter-store",
        "phases.install.runtime-versions",
        "cache",
    }


def test_minimal_buildspec_string_version() -> None:
    spec = parse_buildspec('version: "0.2"\nphases:\n  build:\n    commands: [make]\n')
    assert spec.env_variables == {}
    assert spec.artifacts is None
    assert spec.phases[0].commands == ("make",)


def test_artifacts_single_file_string_and_normalised_paths() -> None:
    spec = parse_buildspec(
        "version: 0.2\nphases:\n  build:\n    commands: [make]\n"
        "artifacts:\n  files: ./out/template.yaml\n  base-directory: ./\n  discard-paths: no\n"
    )
    assert spec.artifacts == Artifacts(files=("out/template.yaml",), base_directory=None)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("", "must be a YAML mapping"),
        ("- a\n- b\n", "must be a YAML mapping"),
        ("version: 0.2\nphases: [\n", "not valid YAML"),
        ("phases:\n  build:\n    commands: [make]\n", "version: is required"),
        ("version: 0.1\nphases:\n  build:\n    commands: [make]\n", "only 0.2"),
        ("version: 0.2\n", "phases: is required"),
        ("version: 0.2\nphases: {}\n", "phases: must be a non-empty mapping"),
        ("version: 0.2\nphases:\n  pre-build:\n    commands: [make]\n", "unknown phase 'pre-build'"),
        ("version: 0.2\nphases:\n  build:\n", "phases.build: must be a mapping"),
        ("version: 0.2\nphases:\n  build:\n    commands: make\n", "must be a list"),
        (
            "version: 0.2\nphases:\n  build:\n    commands:\n      - echo key: value\n",
            "phases.build.commands[0]: command was read as a mapping; quote it",
        ),
        ("version: 0.2\nphases:\n  build:\n    commands: [true]\n", "must be a string"),
        ("version: 0.2\nphases:\n  build:\n    commands: ['  ']\n", "command is empty"),
        (
            "version: 0.2\nphases:\n  build:\n    on-failure: RETRY\n    commands: [make]\n",
            "phases.build.on-failure: must be ABORT or CONTINUE",
        ),
        ("version: 0.2\nphases:\n  build:\n    command: [make]\n", "unknown key 'command'"),
        ("version: 0.2\nfoo: 1\nphases:\n  build:\n    commands: [make]\n", "unknown key 'foo'"),
        ("version: 0.2\nenv: []\nphases:\n  build:\n    commands: [make]\n", "env: must be"),
        (
            "version: 0.2\nenv:\n  variables:\n    1BAD: x\nphases:\n  build:\n    commands: [m]\n",
            "invalid variable name",
        ),
        (
            "version: 0.2\nenv:\n  variables:\n    CODEBUILD_X: x\nphases:\n  build:\n    commands: [m]\n",
            "reserved",
        ),
        (
            "version: 0.2\nenv:\n  variables:\n    A: [1]\nphases:\n  build:\n    commands: [m]\n",
            "env.variables.A: value must be a string",
        ),
        ("version: 0.2\nphases:\n  build:\n    commands: [m]\nartifacts: x\n", "artifacts: must"),
        (
            "version: 0.2\nphases:\n  build:\n    commands: [m]\nartifacts:\n  name: x\n",
            "artifacts.files: is required",
        ),
        (
            "version: 0.2\nphases:\n  build:\n    commands: [m]\nartifacts:\n  files: ['/etc/x']\n",
            "must be relative",
        ),
        (
            "version: 0.2\nphases:\n  build:\n    commands: [m]\nartifacts:\n  files: [a]\n  base-directory: ../up\n",
            "must not point outside",
        ),
        (
            "version: 0.2\nphases:\n  build:\n    commands: [m]\nartifacts:\n  files: [a]\n  discard-paths: maybe\n",
            "artifacts.discard-paths: must be yes or no",
        ),
    ],
)
def test_invalid_buildspecs(text: str, needle: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_buildspec(text)
    assert needle in str(info.value)


@pytest.mark.parametrize(
    ("pattern", "path", "matches"),
    [
        ("**/*", "a.txt", True),
        ("**/*", "a/b/c.txt", True),
        ("*.yaml", "template.yaml", True),
        ("*.yaml", "sub/template.yaml", False),
        ("dist/**/*", "dist/a/b.zip", True),
        ("dist/**/*", "dist/b.zip", True),
        ("dist/**/*", "other/b.zip", False),
        ("**/*.py", "x.py", True),
        ("**/*.py", "pkg/mod/x.py", True),
        ("**/*.py", "pkg/mod/x.pyc", False),
        ("a?c.txt", "abc.txt", True),
        ("a?c.txt", "a/c.txt", False),
        ("dist/**", "dist/x/y", True),
        ("template.yaml", "template.yaml", True),
        ("template.yaml", "template-yaml", False),
    ],
)
def test_glob(pattern: str, path: str, matches: bool) -> None:
    assert bool(glob_to_regex(pattern).match(path)) is matches


def test_select_artifacts_keeps_paths_sorted() -> None:
    artifacts = Artifacts(files=("**/*.yaml", "README.md"))
    selected = select_artifacts(artifacts, ["b/t.yaml", "README.md", "a.yaml", "x.txt"])
    assert selected == [("README.md", "README.md"), ("a.yaml", "a.yaml"), ("b/t.yaml", "b/t.yaml")]


def test_select_artifacts_discard_paths_and_collision() -> None:
    artifacts = Artifacts(files=("**/*",), discard_paths=True)
    assert select_artifacts(artifacts, ["x/a.zip", "y/b.zip"]) == [
        ("x/a.zip", "a.zip"),
        ("y/b.zip", "b.zip"),
    ]
    with pytest.raises(ValidationError, match=r"both map to 'a\.zip'"):
        select_artifacts(artifacts, ["x/a.zip", "y/a.zip"])
