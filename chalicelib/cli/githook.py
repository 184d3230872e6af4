"""``stagecoach git``: turn a bare repository into a push source that sends GitHub-format webhooks."""

from __future__ import annotations

import getpass
import hashlib
import hmac
import json
import os
import shlex
import subprocess
import sys
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from .api import Api, ApiError, CliError, path

ZERO_SHA = "0" * 40
CONFIG_KEYS = ("url", "stack", "secret", "fullname")
HOOK_TIMEOUT = 10.0
_LOG_FORMAT = "%H%x00%an%x00%ae%x00%aI%x00%B"


@dataclass(frozen=True)
class RefUpdate:
    """One ``<old> <new> <ref>`` line that git gives a post-receive hook."""

    old: str
    new: str
    ref: str


@dataclass(frozen=True)
class Commit:
    """What a GitHub ``head_commit`` carries."""

    id: str
    message: str
    timestamp: str
    author_name: str
    author_email: str


def parse_ref_updates(lines: Iterable[str]) -> list[RefUpdate]:
    """The ref updates of a post-receive stdin; blank or malformed lines are skipped."""
    updates = []
    for line in lines:
        parts = line.split()
        if len(parts) == 3:
            updates.append(RefUpdate(*parts))
    return updates


def is_zero(sha: str) -> bool:
    """True for git's all-zeros sha (a created or deleted ref)."""
    return bool(sha) and set(sha) == {"0"}


def push_payload(
    update: RefUpdate, full_name: str, clone_url: str, commit: Commit | None, pusher: str
) -> dict[str, Any]:
    """The GitHub ``push`` event body for one ref update."""
    deleted = is_zero(update.new)
    head = None
    if commit is not None and not deleted:
        head = {
            "id": commit.id,
            "message": commit.message,
            "timestamp": commit.timestamp,
            "author": {"name": commit.author_name, "email": commit.author_email},
        }
    return {
        "ref": update.ref,
        "before": update.old,
        "after": update.new,
        "created": is_zero(update.old),
        "deleted": deleted,
        "repository": {"full_name": full_name, "clone_url": clone_url},
        "head_commit": head,
        "pusher": {"name": pusher},
    }


def sign(secret: str, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` value: ``sha256=`` + hex HMAC-SHA256 of the body."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def webhook_request(
    payload: Mapping[str, Any], secret: str, delivery_id: str | None = None
) -> tuple[bytes, dict[str, str]]:
    """The body and headers of a signed GitHub ``push`` delivery."""
    body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": delivery_id or str(uuid.uuid4()),
        "X-Hub-Signature-256": sign(secret, body),
        "User-Agent": "stagecoach-git-hook",
    }
    return body, headers


def describe_response(ref: str, status: int, body: Any) -> str:
    """The line the pusher sees for one ref."""
    data = body if isinstance(body, Mapping) else {}
    if "ignored" in data:
        return f"stagecoach: {ref} ignored: {data['ignored']} ({status})"
    releases = data.get("releases") or [data]
    ids = ", ".join(str(r.get("release_id")) for r in releases if isinstance(r, Mapping) and r.get("release_id"))
    if ids:
        note = ", already released" if data.get("duplicate") else ""
        return f"stagecoach: {ref} -> release {ids} ({status}{note})"
    return f"stagecoach: {ref} -> {status}"


# ------------------------------------------------------------------ git plumbing


def git(repo: Path | str, *args: str) -> str:
    """Run git in ``repo``; its stdout; CliError with git's message on failure."""
    env = {k: v for k, v in os.environ.items() if k not in ("GIT_DIR", "GIT_WORK_TREE")}
    done = subprocess.run(["git", *args], cwd=str(repo), env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        message = (done.stderr or done.stdout).strip().splitlines()
        raise CliError(f"git {' '.join(args)}: {message[-1] if message else 'failed'}")
    return done.stdout


def head_commit(repo: Path | str, sha: str) -> Commit | None:
    """The commit ``sha`` points at (peeling tags), or None if git cannot show it."""
    try:
        text = git(repo, "log", "-1", f"--format={_LOG_FORMAT}", sha, "--")
    except (CliError, OSError):
        return None
    parts = text.split("\x00", 4)
    if len(parts) != 5:
        return None
    return Commit(parts[0], parts[4].strip(), parts[3], parts[1], parts[2])


def read_config(repo: Path | str) -> dict[str, str]:
    """The ``stagecoach.*`` settings of a repository's git config."""
    try:
        text = git(repo, "config", "--get-regexp", r"^stagecoach\.")
    except CliError:
        return {}
    found = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        found[key.removeprefix("stagecoach.")] = value
    return found


def hook_script(url: str, stack: str, python: str | None = None) -> str:
    """The post-receive script: it hands stdin to ``python -m chalicelib.cli git post-receive``."""
    python = python or sys.executable
    root = Path(__file__).resolve().parents[2]
    return (
        "#!/bin/sh\n"
        "# Installed by `stagecoach git connect`: sends each pushed ref to Stagecoach as a GitHub push webhook.\n"
        "# Settings (and the secret) are in this repository's git config, section [stagecoach].\n"
        f"PYTHONPATH={shlex.quote(str(root))}${{PYTHONPATH:+:$PYTHONPATH}}\n"
        "export PYTHONPATH\n"
        f"exec {shlex.quote(str(python))} -m chalicelib.cli git post-receive"
        f" --url {shlex.quote(url)} --stack {shlex.quote(stack)}\n"
    )


def ensure_bare_repository(repo: Path) -> bool:
    """Make ``repo`` a bare repository; True if it was created, CliError if it is something else."""
    if repo.exists() and not repo.is_dir():
        raise CliError(f"{repo} exists and is not a directory")
    if repo.is_dir() and any(repo.iterdir()):
        try:
            bare = git(repo, "rev-parse", "--is-bare-repository").strip()
        except CliError:
            bare = "false"
        if bare != "true" or Path(git(repo, "rev-parse", "--absolute-git-dir").strip()).resolve() != repo.resolve():
            raise CliError(f"{repo} exists and is not a bare git repository")
        return False
    repo.mkdir(parents=True, exist_ok=True)
    git(repo, "init", "--quiet", "--bare")
    return True


def head_branch(branches: Iterable[str]) -> str | None:
    """The first of the stack's branch patterns that names one branch (``release/*`` does not)."""
    return next((b for b in branches if b and not any(c in b for c in "*?[")), None)


def connect(
    api: Api,
    stack_id: str,
    repo_path: str,
    secret: str | None = None,
    hook_url: str | None = None,
) -> dict[str, Any]:
    """``git connect``: bare repository, git config and an executable post-receive hook."""
    stack = api.get(path("stacks", stack_id))
    repo = Path(repo_path).expanduser().absolute()
    repository = stack.get("repository") or {}
    created = ensure_bare_repository(repo)
    rotated = False
    if not secret:
        secret = str(api.post(path("stacks", stack_id, "webhook", "rotate"))["secret"])
        rotated = True
    url = (hook_url or api.base_url).rstrip("/")
    settings = {"url": url, "stack": stack_id, "secret": secret, "fullname": str(repository.get("full_name", ""))}
    for key, value in settings.items():
        git(repo, "config", f"stagecoach.{key}", value)
    # Clones (and `git clone` of the stack's clone URL by anyone) check out HEAD: make it the branch
    # that releases, not git's default (master) that the stack may not even have.
    branch = head_branch(stack.get("branches") or ["main"])
    head = f"refs/heads/{branch}" if branch else None
    if head is not None:
        git(repo, "symbolic-ref", "HEAD", head)
    hook = repo / "hooks" / "post-receive"
    hook.parent.mkdir(exist_ok=True)
    hook.write_text(hook_script(url, stack_id))
    hook.chmod(0o755)
    clone_url = str(repository.get("clone_url", ""))
    return {
        "stack_id": stack_id,
        "path": str(repo),
        "created": created,
        "hook": str(hook),
        "url": url,
        "head": head,
        "full_name": settings["fullname"],
        "secret_rotated": rotated,
        "clone_url_matches": clone_url in (str(repo), f"file://{repo}"),
        "stack_clone_url": clone_url,
    }


def connect_report(result: Mapping[str, Any]) -> str:
    """What ``git connect`` tells a person."""
    lines = [
        f"{'created' if result['created'] else 'using'} bare repository {result['path']}",
        f"installed {result['hook']}: pushes go to {result['url']}/webhooks/github/{result['stack_id']}",
    ]
    if result.get("head"):
        lines.append(f"HEAD is {result['head']} (the stack's first branch)")
    if result["secret_rotated"]:
        lines.append(
            "no --secret given: rotated the stack's webhook secret and stored the new one in the repository's "
            "git config (stagecoach.secret); the previous secret keeps working for an hour"
        )
    else:
        lines.append("stored the webhook secret in the repository's git config (stagecoach.secret)")
    if not result["clone_url_matches"]:
        lines.append(
            f"note: the stack's clone_url is {result['stack_clone_url']!r}; builds clone from there, "
            f"so create the stack with --clone-url {result['path']}"
        )
    branch = str(result.get("head") or "refs/heads/main").removeprefix("refs/heads/")
    lines.append(f"push to it: git remote add stagecoach {result['path']} && git push stagecoach {branch}")
    return "\n".join(lines)


def post_receive(
    stdin: TextIO,
    out: TextIO,
    url: str | None = None,
    stack: str | None = None,
    repo: str = ".",
    pusher: str | None = None,
    timeout: float = HOOK_TIMEOUT,
) -> int:
    """The hook: one signed delivery per pushed ref; always 0 so a push never fails because of us."""
    try:
        config = read_config(repo)
        url = url or config.get("url")
        stack = stack or config.get("stack")
        secret = config.get("secret")
        full_name = config.get("fullname") or ""
        if not (url and stack and secret):
            print(
                "stagecoach: warning: stagecoach.url, .stack or .secret missing in git config; run git connect",
                file=out,
            )
            return 0
        api = Api(url, timeout=timeout)
        clone_url = str(Path(repo).absolute())
        who = pusher or os.environ.get("GIT_PUSHER") or _user()
        for update in parse_ref_updates(stdin):
            commit = None if is_zero(update.new) else head_commit(repo, update.new)
            payload = push_payload(update, full_name, clone_url, commit, who)
            body, headers = webhook_request(payload, secret)
            try:
                status, answer = api.send("POST", path("webhooks", "github", stack), body, headers)
                print(describe_response(update.ref, status, answer), file=out)
            except ApiError as exc:
                print(f"stagecoach: warning: {update.ref} not released: {exc.message}", file=out)
            except CliError as exc:
                print(f"stagecoach: warning: {update.ref} not sent: {exc.message}", file=out)
    except Exception as exc:  # the push has happened; never fail it
        print(f"stagecoach: warning: hook error: {exc}", file=out)
    out.flush()
    return 0


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"
