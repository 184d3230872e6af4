"""Local builder: stands in for AWS CodeBuild when Stagecoach runs on a laptop.

``LocalBuilder.run`` is synchronous (callers run it in a thread) and never raises for a
failed build; it returns a ``LocalBuildResult`` with status ``SUCCEEDED``, ``FAILED`` or
``TIMED_OUT``. Semantics, kept simple and close to CodeBuild:

- DOWNLOAD_SOURCE: ``git clone`` into a temp dir, check out ``sha`` (detached HEAD), read and
  parse the buildspec. ``sha`` is a full or short sha, a branch (``main`` or ``refs/heads/main``),
  a tag (``v1`` or ``refs/tags/v1``) or any other ref of the clone URL (``refs/pull/1/head``),
  whatever the remote's HEAD is: branches are looked up among the clone's ``origin/*``, tags among
  its tags, and what the clone does not have is fetched by name (a sha no ref points at too).
  A bad URL, an unknown version or an invalid buildspec fail this phase.
- INSTALL, PRE_BUILD, BUILD, POST_BUILD (only those in the buildspec): every command is its own
  ``bash`` process in its own process group (processes a command leaves in the background are
  killed when it ends), but as in CodeBuild 0.2 the shell state carries over: the directory a
  command ``cd``-ed to and the variables it set are restored for the next command. The first
  failing command fails the phase; the phase's ``finally`` commands then run. A failed ``ABORT``
  phase (the default) stops the build:
  later phases do not run (CodeBuild would still run POST_BUILD after BUILD). A failed
  ``CONTINUE`` phase lets later phases run but the build still ends FAILED, with
  ``failed_phase`` the first failed phase.
- UPLOAD_ARTIFACTS: only when every phase succeeded; each selected file is passed to
  ``upload(key, content)``. An ``artifacts`` section that matches no file fails this phase.
- Environment of commands: a minimal one, never this process's (which holds the control plane's
  settings and credentials): ``PATH``, ``HOME``, ``LANG`` and ``AWS_REGION``/``AWS_DEFAULT_REGION``
  as CodeBuild sets them, then ``env.variables`` of the buildspec, then the request env, then
  ``CODEBUILD_*`` (``CODEBUILD_BUILD_ID``, ``CODEBUILD_SRC_DIR``, ``CODEBUILD_RESOLVED_SOURCE_VERSION``,
  ``CODEBUILD_SOURCE_VERSION``, ``CODEBUILD_CI``). ``git`` gets the same minimal environment.
- Clone URL credentials (``https://user:token@host/...``) are used to clone and shown nowhere: the
  log replaces them (and each part of 8 characters or more) with ``***``.
- ``timeout_seconds`` bounds the whole build (clone included): the running process group gets
  SIGTERM, then SIGKILL, and the build is TIMED_OUT with ``failed_phase`` the running phase.
- The temp dir is always removed.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chalicelib.domain.buildspec import (
    BuildSpec,
    Phase,
    parse_buildspec,
    select_artifacts,
)
from chalicelib.domain.clock import now_iso
from chalicelib.domain.errors import ValidationError

SUCCEEDED = "SUCCEEDED"
FAILED = "FAILED"
TIMED_OUT = "TIMED_OUT"

LOG_TAIL_LINES = 20
_KILL_GRACE_SECONDS = 2.0
_URL_USERINFO = re.compile(r"^(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^/@]+)@")
_SCP_LIKE = re.compile(r"^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:.+$")
_ALLOWED_SCHEMES = ("https://", "http://", "ssh://", "file://")


@dataclass(frozen=True)
class LocalBuildRequest:
    build_id: str
    clone_url: str
    sha: str
    buildspec_path: str
    env: Mapping[str, str]
    timeout_seconds: int


@dataclass(frozen=True)
class LocalBuildResult:
    build_id: str
    status: str
    failed_phase: str | None
    log: str
    log_tail: str
    artifacts: tuple[str, ...]
    started_at: str
    ended_at: str
    resolved_sha: str | None = None


class _TimedOut(Exception):
    """The build deadline passed while a process ran (or before it could start)."""


class _PhaseFailed(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# Variables of the build's environment taken from this process (CodeBuild's image sets their like).
INHERITED_VARIABLES = ("PATH", "HOME", "LANG")
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"


def redact_url(url: str) -> str:
    """Hide credentials in ``https://user:token@host/...``."""
    return _URL_USERINFO.sub(lambda m: f"{m.group('scheme')}***@", url)


def redact_text(text: str, url: str) -> str:
    """``text`` with the credentials of ``url`` (and each long part of them) shown as ``***``."""
    for secret in _url_secrets(url):
        text = text.replace(secret, "***")
    return text


def base_environment() -> dict[str, str]:
    """The environment every build process starts from: a few variables of this process, nothing else."""
    env = {name: os.environ[name] for name in INHERITED_VARIABLES if os.environ.get(name)}
    env.setdefault("PATH", DEFAULT_PATH)
    env.setdefault("LANG", "C.UTF-8")
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        env["AWS_REGION"] = env["AWS_DEFAULT_REGION"] = region
    return env


@dataclass
class _Log:
    lines: list[str] = field(default_factory=list)
    secrets: tuple[str, ...] = ()

    def container(self, message: str) -> None:
        stamp = datetime.now(UTC).strftime("%Y/%m/%d %H:%M:%S.%f")
        self.lines.append(f"[Container] {stamp} {self._redact(message)}")

    def output(self, text: str) -> None:
        if text:
            self.lines.extend(self._redact(text).splitlines())

    def _redact(self, text: str) -> str:
        for secret in self.secrets:
            if secret:
                text = text.replace(secret, "***")
        return text

    def text(self) -> str:
        return "\n".join(self.lines) + ("\n" if self.lines else "")

    def tail(self, count: int = LOG_TAIL_LINES) -> str:
        return "\n".join(self.lines[-count:])


@dataclass
class _Build:
    request: LocalBuildRequest
    log: _Log
    deadline: float
    src_dir: Path
    env: dict[str, str]
    phase: str = "SUBMITTED"


class LocalBuilder:
    def __init__(
        self,
        upload: Callable[[str, bytes], None],
        workdir_root: str | None = None,
        *,
        shell: str = "bash",
        git: str = "git",
    ) -> None:
        self._upload = upload
        self._workdir_root = workdir_root
        self._shell = shell
        self._git = git

    # ------------------------------------------------------------------ public
    def run(self, request: LocalBuildRequest) -> LocalBuildResult:
        if not request.build_id:
            raise ValueError("build_id is required")
        if request.timeout_seconds <= 0:
            raise ValueError("timeout_seconds must be positive")

        started_at = now_iso()
        deadline = time.monotonic() + request.timeout_seconds
        log = _Log(secrets=_url_secrets(request.clone_url))
        log.container(f"Local build {request.build_id} (Stagecoach local builder)")
        status: str = FAILED
        failed_phase: str | None = "PROVISIONING"
        artifacts: tuple[str, ...] = ()
        resolved_sha: str | None = None
        workdir: str | None = None
        try:
            if self._workdir_root:
                os.makedirs(self._workdir_root, exist_ok=True)
            workdir = tempfile.mkdtemp(prefix="stagecoach-build-", dir=self._workdir_root)
        except OSError as exc:
            log.container("Phase complete: PROVISIONING State: FAILED")
            log.container(f"Phase context status code: CLIENT_ERROR Message: {exc}")
        if workdir is not None:
            src_dir = Path(workdir) / "src"
            build = _Build(request=request, log=log, deadline=deadline, src_dir=src_dir, env={})
            try:
                status, failed_phase, artifacts = self._run_build(build)
                resolved_sha = build.env.get("CODEBUILD_RESOLVED_SOURCE_VERSION")
            finally:
                _remove_tree(workdir)
        ended_at = now_iso()
        log.container(f"Build {status}" + (f" in phase {failed_phase}" if failed_phase else ""))
        return LocalBuildResult(
            build_id=request.build_id,
            status=status,
            failed_phase=failed_phase,
            log=log.text(),
            log_tail=log.tail(),
            artifacts=tuple(artifacts),
            started_at=started_at,
            ended_at=ended_at,
            resolved_sha=resolved_sha,
        )

    # ------------------------------------------------------------------ phases
    def _run_build(self, build: _Build) -> tuple[str, str | None, tuple[str, ...]]:
        log = build.log
        build.phase = "DOWNLOAD_SOURCE"
        try:
            spec, resolved = self._download_source(build)
        except _TimedOut:
            return self._timed_out(build)
        except _PhaseFailed as exc:
            self._phase_complete(build, FAILED, exc.code, exc.message)
            return FAILED, build.phase, ()
        self._phase_complete(build, SUCCEEDED)

        build.env = self._command_env(build, spec, resolved)
        first_failed: str | None = None
        for phase in spec.phases:
            build.phase = phase.codebuild_name
            log.container(f"Entering phase {build.phase}")
            try:
                ok, message = self._run_phase(build, phase)
            except _TimedOut:
                return self._timed_out(build)
            if ok:
                self._phase_complete(build, SUCCEEDED)
                continue
            self._phase_complete(build, FAILED, "COMMAND_EXECUTION_ERROR", message)
            first_failed = first_failed or build.phase
            if phase.on_failure == "ABORT":
                break
        if first_failed is not None:
            return FAILED, first_failed, ()

        if spec.artifacts is None:
            return SUCCEEDED, None, ()
        build.phase = "UPLOAD_ARTIFACTS"
        log.container("Entering phase UPLOAD_ARTIFACTS")
        try:
            keys = self._upload_artifacts(build, spec)
        except _PhaseFailed as exc:
            self._phase_complete(build, FAILED, exc.code, exc.message)
            return FAILED, build.phase, ()
        self._phase_complete(build, SUCCEEDED)
        return SUCCEEDED, None, keys

    def _download_source(self, build: _Build) -> tuple[BuildSpec, str]:
        request, log = build.request, build.log
        log.container("Entering phase DOWNLOAD_SOURCE")
        url_error = _check_clone_url(request.clone_url)
        if url_error:
            raise _PhaseFailed("CLIENT_ERROR", url_error)
        if not request.sha or request.sha.startswith("-") or any(c.isspace() for c in request.sha):
            raise _PhaseFailed("CLIENT_ERROR", f"invalid source version {request.sha!r}")

        git_env = {**base_environment(), "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true"}
        src = str(build.src_dir)
        log.container(f"Cloning {redact_url(request.clone_url)}")
        rc = self._exec(
            build,
            [
                self._git,
                "clone",
                "--quiet",
                "--no-checkout",
                "--",
                request.clone_url,
                src,
            ],
            cwd=str(build.src_dir.parent),
            env=git_env,
        )
        if rc != 0:
            raise _PhaseFailed(
                "CLIENT_ERROR",
                f"git clone of {redact_url(request.clone_url)} failed (exit status {rc})",
            )
        resolved = self._resolve_source_version(build, git_env, request.sha)
        if resolved is None:
            raise _PhaseFailed(
                "CLIENT_ERROR",
                f"reference not found for primary source and source version {request.sha}",
            )
        rc = self._exec(
            build,
            [
                self._git,
                "-c",
                "advice.detachedHead=false",
                "checkout",
                "--quiet",
                "--detach",
                resolved,
            ],
            cwd=src,
            env=git_env,
        )
        if rc != 0:
            raise _PhaseFailed("CLIENT_ERROR", f"git checkout of {resolved} failed (exit status {rc})")
        log.container(f"Source version {request.sha} resolved to {resolved}")
        log.container(f"CODEBUILD_SRC_DIR={src}")

        spec_file = _inside(build.src_dir, request.buildspec_path)
        if spec_file is None:
            raise _PhaseFailed(
                "YAML_FILE_ERROR",
                f"buildspec path {request.buildspec_path!r} is not inside the source directory",
            )
        log.container(f"YAML location is {spec_file}")
        try:
            text = spec_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise _PhaseFailed(
                "YAML_FILE_ERROR",
                f"cannot read buildspec {request.buildspec_path}: {exc.strerror if isinstance(exc, OSError) else exc}",
            ) from exc
        try:
            spec = parse_buildspec(text)
        except ValidationError as exc:
            raise _PhaseFailed(
                "YAML_FILE_ERROR",
                f"invalid buildspec {request.buildspec_path}: {exc.message}",
            ) from exc
        log.container(f"Phases found in YAML: {len(spec.phases)}")
        for phase in spec.phases:
            log.container(f" {phase.codebuild_name}: {len(phase.commands)} commands")
        for key in spec.ignored_keys:
            log.container(f"WARNING: buildspec key '{key}' is not supported locally; ignored")
        return spec, resolved

    def _resolve_source_version(self, build: _Build, env: Mapping[str, str], version: str) -> str | None:
        """The commit ``version`` names in the clone; what the clone lacks is fetched from the remote."""
        for candidate in local_candidates(version):
            resolved = self._resolve(build, env, candidate)
            if resolved is not None:
                return resolved
        # Not a branch, tag or commit the clone has: a ref outside refs/heads and refs/tags, or a
        # commit no ref points at any more. Ask the remote for it by name, as CodeBuild does.
        build.log.container(f"Fetching {version} from the source repository")
        rc = self._exec(
            build,
            [self._git, "fetch", "--quiet", "--no-tags", "origin", "--end-of-options", version],
            cwd=str(build.src_dir),
            env=env,
        )
        return self._resolve(build, env, "FETCH_HEAD") if rc == 0 else None

    def _resolve(self, build: _Build, env: Mapping[str, str], ref: str) -> str | None:
        remaining = build.deadline - time.monotonic()
        if remaining <= 0:
            raise _TimedOut()
        try:
            proc = subprocess.run(
                [
                    self._git,
                    "rev-parse",
                    "--verify",
                    "--quiet",
                    "--end-of-options",
                    f"{ref}^{{commit}}",
                ],
                cwd=build.src_dir,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=remaining,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise _TimedOut() from exc
        except OSError:
            return None
        sha = proc.stdout.strip()
        return sha if proc.returncode == 0 and re.fullmatch(r"[0-9a-f]{40,64}", sha) else None

    def _command_env(self, build: _Build, spec: BuildSpec, resolved: str) -> dict[str, str]:
        request = build.request
        env = base_environment()
        env.update(spec.env_variables)
        env.update({str(k): str(v) for k, v in request.env.items()})
        env.update(
            {
                "CODEBUILD_BUILD_ID": request.build_id,
                "CODEBUILD_SRC_DIR": str(build.src_dir),
                "CODEBUILD_RESOLVED_SOURCE_VERSION": resolved,
                "CODEBUILD_SOURCE_VERSION": request.sha,
                "CODEBUILD_SOURCE_REPO_URL": redact_url(request.clone_url),
                "CODEBUILD_CI": "true",
                "CODEBUILD_LOCAL_BUILD": "true",
            }
        )
        return env

    def _run_phase(self, build: _Build, phase: Phase) -> tuple[bool, str]:
        ok, message = self._run_commands(build, phase.commands)
        if phase.finally_commands:
            final_ok, final_message = self._run_commands(build, phase.finally_commands)
            if ok and not final_ok:
                ok, message = final_ok, final_message
        return ok, message

    def _run_commands(self, build: _Build, commands: Sequence[str]) -> tuple[bool, str]:
        session = build.src_dir.parent / "session"
        for command in commands:
            build.log.container(f"Running command {command}")
            rc = self._exec(
                build,
                [self._shell, "-c", _SESSION_WRAPPER, "stagecoach-build", str(session), command],
                cwd=str(build.src_dir),
                env=build.env,
            )
            if rc != 0:
                build.log.container(f"Command did not exit successfully {command} exit status {rc}")
                return (
                    False,
                    f"Error while executing command: {command}. Reason: exit status {rc}",
                )
        return True, ""

    def _upload_artifacts(self, build: _Build, spec: BuildSpec) -> tuple[str, ...]:
        assert spec.artifacts is not None
        artifacts = spec.artifacts
        base = build.src_dir
        if artifacts.base_directory:
            inside = _inside(build.src_dir, artifacts.base_directory)
            if inside is None or not inside.is_dir():
                raise _PhaseFailed(
                    "CLIENT_ERROR",
                    f"base-directory {artifacts.base_directory!r} does not exist in the source",
                )
            base = inside
        candidates = _list_files(base, skip_git=base == build.src_dir)
        try:
            selected = select_artifacts(artifacts, candidates)
        except ValidationError as exc:
            raise _PhaseFailed("CLIENT_ERROR", exc.message) from exc
        if not selected:
            raise _PhaseFailed(
                "CLIENT_ERROR",
                "no matching artifact paths found for " + ", ".join(artifacts.files),
            )
        src_root = build.src_dir.resolve()
        keys: list[str] = []
        for relative, key in selected:
            path = (base / relative).resolve()
            if not path.is_relative_to(src_root) or not path.is_file():
                raise _PhaseFailed(
                    "CLIENT_ERROR",
                    f"artifact {relative!r} is not a regular file inside the source directory",
                )
            try:
                content = path.read_bytes()
                self._upload(key, content)
            except Exception as exc:  # any upload failure fails the phase
                raise _PhaseFailed("CLIENT_ERROR", f"upload of artifact {key!r} failed: {exc}") from exc
            build.log.container(f"Uploaded artifact {key} ({len(content)} bytes)")
            keys.append(key)
        return tuple(keys)

    # ------------------------------------------------------------------ helpers
    def _phase_complete(self, build: _Build, state: str, code: str = "", message: str = "") -> None:
        build.log.container(f"Phase complete: {build.phase} State: {state}")
        build.log.container(f"Phase context status code: {code} Message: {message}")

    def _timed_out(self, build: _Build) -> tuple[str, str | None, tuple[str, ...]]:
        timeout = build.request.timeout_seconds
        build.log.container(f"Build timed out after {timeout} seconds in phase {build.phase}")
        build.log.container(f"Phase complete: {build.phase} State: TIMED_OUT")
        build.log.container(f"Phase context status code: BUILD_TIMED_OUT Message: build timeout of {timeout}s reached")
        return TIMED_OUT, build.phase, ()

    def _exec(self, build: _Build, argv: list[str], cwd: str, env: Mapping[str, str]) -> int:
        """Run ``argv`` in its own process group, output appended to the log.

        Returns the exit status (127 if it cannot start); raises ``_TimedOut`` at the deadline.
        """
        remaining = build.deadline - time.monotonic()
        if remaining <= 0:
            raise _TimedOut()
        with tempfile.TemporaryFile() as out:
            try:
                proc = subprocess.Popen(
                    argv,
                    cwd=cwd,
                    env=dict(env),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            except OSError as exc:
                build.log.output(f"{argv[0]}: {exc.strerror or exc}")
                return 127
            timed_out = False
            try:
                rc = proc.wait(timeout=remaining)
            except subprocess.TimeoutExpired:
                timed_out = True
                _kill_group(proc, signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=_KILL_GRACE_SECONDS)
                rc = -1
            # Processes left in the background by the command do not outlive it.
            _kill_group(proc, signal.SIGKILL)
            if timed_out:
                proc.wait()
            out.seek(0)
            build.log.output(out.read().decode("utf-8", errors="replace"))
        if timed_out:
            raise _TimedOut()
        return rc


# CodeBuild 0.2 runs every command of a build in one shell: `cd`, `export` and plain variables
# carry over to the next command. Each command runs in a fresh bash (so it can be timed and
# killed on its own), which restores the previous command's variables and directory first and
# saves them afterwards (readonly and bash's own variables excluded).
_SESSION_WRAPPER = r"""
__sc_session="$1"; __sc_command="$2"; shift 2
if [ -f "$__sc_session.vars" ]; then . "$__sc_session.vars" 2>/dev/null; fi
if [ -f "$__sc_session.cwd" ]; then cd "$(cat "$__sc_session.cwd")" 2>/dev/null || true; fi
eval "$__sc_command"
__sc_rc=$?
declare -p 2>/dev/null | grep -Ev '^declare -[a-zA-Z]*r[a-zA-Z]* ' \
  | grep -Ev '^declare -[-a-zA-Z]* (BASH[A-Z_]*|SHELLOPTS|PPID|UID|EUID|GROUPS|FUNCNAME|PIPESTATUS|_)=' \
  | grep -Ev '^declare -[-a-zA-Z]* (__sc_[a-z_]*|SHLVL|OLDPWD|PWD|RANDOM|SRANDOM|SECONDS|LINENO|HISTCMD)=' \
  | grep -Ev '^declare -[-a-zA-Z]* (DIRSTACK|COMP_WORDBREAKS|EPOCHREALTIME|EPOCHSECONDS|IFS)=' \
  > "$__sc_session.vars"
pwd > "$__sc_session.cwd"
exit $__sc_rc
"""


def local_candidates(version: str) -> list[str]:
    """What ``version`` may be called in a fresh clone, most specific first.

    A clone has the remote's branches as ``refs/remotes/origin/*`` (only the remote HEAD's branch
    is also a local branch) and its tags as ``refs/tags/*``.
    """
    if version.startswith("refs/heads/"):
        return [f"refs/remotes/origin/{version.removeprefix('refs/heads/')}"]
    if version.startswith("refs/tags/"):
        return [version]
    if version.startswith("refs/"):
        return []
    return [f"refs/remotes/origin/{version}", f"refs/tags/{version}", version]


def _kill_group(proc: subprocess.Popen[Any], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def _url_secrets(url: str) -> tuple[str, ...]:
    match = _URL_USERINFO.match(url)
    if not match:
        return ()
    userinfo = match.group("userinfo")
    return (userinfo, *[part for part in userinfo.split(":") if len(part) >= 8])


def _check_clone_url(url: str) -> str | None:
    if not url:
        return "clone_url is empty"
    if url.startswith("-"):
        return f"invalid clone URL {url!r}"
    if url.startswith(_ALLOWED_SCHEMES) or os.path.isabs(url) or _SCP_LIKE.match(url):
        return None
    return f"unsupported clone URL {redact_url(url)!r} (use https://, ssh://, file:// or an absolute local path)"


def _inside(root: Path, relative: str) -> Path | None:
    """``root/relative`` resolved, or None if it escapes ``root`` (absolute, ``..``, symlink)."""
    if not relative or os.path.isabs(relative):
        return None
    root_resolved = root.resolve()
    candidate = (root / relative).resolve()
    return candidate if candidate.is_relative_to(root_resolved) else None


def _list_files(base: Path, skip_git: bool) -> list[str]:
    files: list[str] = []
    for dirpath, dirnames, filenames in os.walk(base, followlinks=False):
        rel_dir = os.path.relpath(dirpath, base)
        if skip_git and rel_dir == ".":
            dirnames[:] = [d for d in dirnames if d != ".git"]
        for name in filenames:
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            files.append(rel.replace(os.sep, "/"))
    return files


def _remove_tree(path: str) -> None:
    def make_writable_and_retry(func: Callable[[str], object], target: str, _: object) -> None:
        try:
            os.chmod(target, 0o700)
            func(target)
        except OSError:
            pass

    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=make_writable_and_retry)
    else:
        shutil.rmtree(path, onerror=make_writable_and_retry)
