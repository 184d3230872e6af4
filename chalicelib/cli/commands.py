"""The ``stagecoach`` command line: argument parsing and one handler per command."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TextIO

from ..domain.notifications import EVENT_TYPES  # pure stdlib, like the CLI
from . import format as fmt
from . import githook
from .api import DEFAULT_TIMEOUT, DEFAULT_URL, Api, CliError, path
from .watch import watch_release

# What the API accepts and answers (docs/openapi.yaml); the CLI only talks HTTP.
EXECUTION_MODES = ("SUPERSEDED", "QUEUED")
RELEASE_STATUSES = ("PENDING", "RUNNING", "SUCCEEDED", "FAILED", "SUPERSEDED", "CANCELLED", "TIMED_OUT")

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_CLOSED_PIPE = 141  # 128 + SIGPIPE, what a tool killed by the closed pipe would exit with
Handler = Callable[["Context"], int]


class UsageError(Exception):
    """Bad command-line arguments (exit status 2)."""


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line, raised instead of exiting."""

    def error(self, message: str) -> NoReturn:
        """Raise UsageError instead of printing usage and exiting."""
        raise UsageError(f"{self.prog}: {message} (see: {self.prog} --help)")


@dataclass
class Context:
    """What a command handler works with."""

    args: argparse.Namespace
    api: Api
    out: TextIO
    err: TextIO
    stdin: TextIO

    @property
    def width(self) -> int | None:
        """The terminal's width when printing to one (tables fit it); None for a pipe or a file."""
        isatty = getattr(self.out, "isatty", None)
        return shutil.get_terminal_size().columns if callable(isatty) and isatty() else None

    @property
    def json(self) -> bool:
        """True when the user asked for the API's JSON."""
        return bool(getattr(self.args, "json", False))

    def emit(self, document: Any, text: str | Callable[[], str]) -> None:
        """Print ``document`` as JSON (``--json``) or ``text`` for people."""
        if self.json:
            print(json.dumps(document, indent=2, sort_keys=False), file=self.out)
        else:
            print(text() if callable(text) else text, file=self.out)


def resolve_url(given: str | None) -> str:
    """``--url``, else ``$STAGECOACH_URL``, else the local default."""
    return (given or os.environ.get("STAGECOACH_URL") or DEFAULT_URL).rstrip("/")


def _param(text: str) -> tuple[str, str]:
    try:
        return fmt.parse_param(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _stage_spec(text: str) -> dict[str, Any]:
    try:
        return fmt.parse_stage_spec(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {text!r}")
    return value


# ------------------------------------------------------------------ stacks


def stacks_list(ctx: Context) -> int:
    """All stacks, each stage with its status and current commit, following ``next_token``."""
    stacks: list[Any] = []
    token: str | None = None
    while True:
        page = ctx.api.get("/stacks", limit=100, next_token=token)
        stacks += page.get("stacks") or []
        token = page.get("next_token")
        if not token:
            break
    ctx.emit({"stacks": stacks, "next_token": None}, lambda: fmt.stacks_table(stacks, ctx.width))
    return 0


def awaiting_approval(stack: dict[str, Any]) -> list[tuple[str, str]]:
    """``(release_id, stage)`` of every stage of the pipeline view that waits for an approval."""
    return [
        (str(stage["awaiting_approval"]), str(stage["name"]))
        for stage in stack.get("stages") or []
        if stage.get("awaiting_approval")
    ]


def stacks_show(ctx: Context) -> int:
    """One stack as a pipeline."""
    stack = ctx.api.get(path("stacks", ctx.args.stack))
    ctx.emit(stack, lambda: fmt.stack_details(stack, awaiting_approval(stack)))
    return 0


def stack_body(args: argparse.Namespace, stdin: TextIO | None = None) -> dict[str, Any]:
    """The ``POST /stacks`` body from ``--file`` and/or flags (flags win)."""
    body: dict[str, Any] = {}
    if args.file:
        try:
            text = (stdin or sys.stdin).read() if args.file == "-" else Path(args.file).read_text()
        except OSError as exc:
            raise CliError(f"cannot read {args.file}: {exc.strerror or exc}") from None
        try:
            loaded = json.loads(text)
        except ValueError as exc:
            raise CliError(f"{args.file} is not JSON: {exc}") from None
        if not isinstance(loaded, dict):
            raise CliError(f"{args.file} must hold a JSON object")
        body.update(loaded)
    for key, value in (
        ("id", args.id),
        ("name", args.name),
        ("template_path", args.template_path),
        ("buildspec_path", args.buildspec_path),
        ("execution_mode", getattr(args, "mode", None)),
    ):
        if value is not None:
            body[key] = value
    if args.branch:
        body["branches"] = list(args.branch)
    if args.tag:
        body["tags"] = list(args.tag)
    if args.stage:
        body["stages"] = list(args.stage)
    if args.repo or args.clone_url or args.provider:
        repository = dict(body.get("repository") or {})
        repository.setdefault("provider", "github")
        for key, value in (("provider", args.provider), ("full_name", args.repo), ("clone_url", args.clone_url)):
            if value is not None:
                repository[key] = value
        body["repository"] = repository
    if not args.file:
        missing = [
            flag
            for flag, key in (("--name", "name"), ("--repo", "repository"), ("--stage", "stages"))
            if key not in body
        ]
        if not missing and "clone_url" not in body["repository"]:
            missing.append("--clone-url")
        if missing:
            raise UsageError(f"stagecoach stacks create: missing {', '.join(missing)} (or give --file stack.json)")
    return body


def stacks_create(ctx: Context) -> int:
    """Create a stack; the webhook secret is shown this once."""
    stack = ctx.api.post("/stacks", stack_body(ctx.args, ctx.stdin))
    ctx.emit(stack, lambda: fmt.created_stack(stack, ctx.api.base_url))
    return 0


def stacks_delete(ctx: Context) -> int:
    """Delete a stack (``--force`` cancels its releases in flight first)."""
    ctx.api.delete(path("stacks", ctx.args.stack), force="true" if ctx.args.force else None)
    ctx.emit({"id": ctx.args.stack, "deleted": True}, f"deleted stack {ctx.args.stack}")
    return 0


def stacks_mode(ctx: Context) -> int:
    """Set a stack's execution mode (SUPERSEDED or QUEUED)."""
    args = ctx.args
    current = ctx.api.get(path("stacks", args.stack))
    stack = ctx.api.patch(path("stacks", args.stack), {"version": current["version"], "execution_mode": args.mode})
    ctx.emit(stack, f"stack {args.stack}: execution mode {stack.get('execution_mode')}")
    return 0


# ------------------------------------------------------------------ stages


def _stage_settings(args: argparse.Namespace) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if args.approval is not None:
        body["approval"] = args.approval
    if args.approval_timeout is not None:
        body["approval_timeout_seconds"] = args.approval_timeout
    if args.region is not None:
        body["region"] = args.region or None
    if args.role_arn is not None:
        body["role_arn"] = args.role_arn or None
    return body


def _pipeline_after(ctx: Context, stack: dict[str, Any], what: str) -> int:
    ctx.emit(stack, lambda: f"{what}\n\n{fmt.pipeline_table(stack.get('stages') or [])}")
    return 0


def stages_add(ctx: Context) -> int:
    """Insert a stage."""
    args = ctx.args
    body: dict[str, Any] = {"name": args.name, **_stage_settings(args)}
    if args.position is not None:
        body["position"] = args.position
    if args.param:
        body["parameters"] = dict(args.param)
    stack = ctx.api.post(path("stacks", args.stack, "stages"), body)
    return _pipeline_after(ctx, stack, f"added stage {args.name} to {args.stack}")


def stages_update(ctx: Context) -> int:
    """Change a stage's settings; ``--param`` merges into its current parameters."""
    args = ctx.args
    body = _stage_settings(args)
    if args.param or args.unset_param:
        stack = ctx.api.get(path("stacks", args.stack))
        current = next((s for s in stack.get("stages") or [] if s.get("name") == args.name), None)
        if current is None:
            raise CliError(f"stack {args.stack!r} has no stage {args.name!r}", code="NotFound")
        parameters = dict(current.get("parameters") or {})
        parameters.update(dict(args.param or []))
        for key in args.unset_param or []:
            parameters.pop(key, None)
        body["parameters"] = parameters
        body["version"] = stack.get("version")
    if not body:
        raise UsageError("stagecoach stages update: nothing to change (give --approval, --no-approval, --param ...)")
    stack = ctx.api.patch(path("stacks", args.stack, "stages", args.name), body)
    return _pipeline_after(ctx, stack, f"updated stage {args.name} of {args.stack}")


def stages_move(ctx: Context) -> int:
    """Move a stage to another position (0 is first)."""
    args = ctx.args
    stack = ctx.api.patch(path("stacks", args.stack, "stages", args.name), {"position": args.position})
    return _pipeline_after(ctx, stack, f"moved stage {args.name} of {args.stack} to position {args.position}")


def stages_remove(ctx: Context) -> int:
    """Remove a stage."""
    args = ctx.args
    stack = ctx.api.delete(path("stacks", args.stack, "stages", args.name), force="true" if args.force else None)
    return _pipeline_after(ctx, stack, f"removed stage {args.name} from {args.stack}")


# ------------------------------------------------------------------ releases


def releases_list(ctx: Context) -> int:
    """A stack's releases, newest first, up to ``--limit``."""
    args = ctx.args
    releases: list[Any] = []
    token: str | None = None
    while len(releases) < args.limit:
        page = ctx.api.get(
            path("stacks", args.stack, "releases"),
            limit=min(100, args.limit - len(releases)),
            next_token=token,
            status=args.status,
            ref=args.ref,
        )
        releases += page.get("releases") or []
        token = page.get("next_token")
        if not token:
            break
    ctx.emit({"releases": releases, "next_token": token}, lambda: fmt.releases_table(releases, ctx.width))
    return 0


def metrics(ctx: Context) -> int:
    """DORA's four keys of a stack's stage (default its last) over the last ``--days`` days."""
    args = ctx.args
    document = ctx.api.get(path("stacks", args.stack, "metrics"), stage=args.stage, days=args.days)
    ctx.emit(document, lambda: fmt.metrics_table(document))
    return 0


def releases_show(ctx: Context) -> int:
    """One release with its build and stages."""
    release = ctx.api.get(path("releases", ctx.args.release))
    ctx.emit(release, lambda: fmt.release_details(release))
    return 0


def history(ctx: Context) -> int:
    """The execution timeline of a release."""
    raw = "true" if ctx.args.raw else None
    document = ctx.api.get(path("releases", ctx.args.release, "history"), raw=raw)
    ctx.emit(document, lambda: fmt.timeline(document))
    return 0


def logs(ctx: Context) -> int:
    """The build log (or where it is)."""
    document = ctx.api.get(path("releases", ctx.args.release, "build-log"))
    ctx.emit(document, lambda: fmt.build_log(document))
    return 0


def _decide(ctx: Context, decision: str) -> int:
    args = ctx.args
    body = {"comment": args.comment} if args.comment is not None else {}
    answer = ctx.api.post(path("releases", args.release, "stages", args.stage, decision), body)
    verb = "approved" if decision == "approve" else "rejected"
    ctx.emit(answer, f"{verb} stage {args.stage} of release {args.release}")
    return 0


def promote(ctx: Context) -> int:
    """Deploy a release's build to one stage (no build); ``--watch`` follows the new release."""
    args = ctx.args
    release = ctx.api.get(path("releases", args.release))
    stack_id = str(release["stack_id"])
    answer = ctx.api.post(path("stacks", stack_id, "stages", args.to, "deployments"), {"release_id": args.release})
    new_id = str(answer.get("release_id"))
    text = f"release {new_id} ({answer.get('trigger')} of {args.release} to {args.to}) {answer.get('status')}"
    ctx.emit(answer, f"{text}\nfollow it: stagecoach watch {new_id}")
    return _watch(ctx, new_id) if args.watch else 0


def redeploy(ctx: Context) -> int:
    """Deploy again, to one stage, the build it runs (no build)."""
    args = ctx.args
    stack = ctx.api.get(path("stacks", args.stack))
    stage = next((s for s in stack.get("stages") or [] if s.get("name") == args.stage), None)
    current = (stage or {}).get("current_release") or {}
    if stage is None or not current.get("release_id"):
        raise CliError(f"stage {args.stage} of {args.stack} runs no release yet; deploy one first")
    answer = ctx.api.post(
        path("stacks", args.stack, "stages", args.stage, "deployments"), {"release_id": current["release_id"]}
    )
    new_id = str(answer.get("release_id"))
    ctx.emit(answer, f"release {new_id} (redeploy of {current['release_id']}) {answer.get('status')}")
    return _watch(ctx, new_id) if args.watch else 0


def rollback(ctx: Context) -> int:
    """Deploy an earlier release to one stage and pin the stage there."""
    args = ctx.args
    body: dict[str, Any] = {"reason": args.reason}
    if args.to:
        body["release_id"] = args.to
    answer = ctx.api.post(path("stacks", args.stack, "stages", args.stage, "rollback"), body)
    new_id = str(answer.get("release_id"))
    text = (
        f"release {new_id} rolls {args.stage} back to {answer.get('source_release_id')}; "
        f"{args.stage} is pinned (automatic releases stop before it) until: stagecoach unpin {args.stack} {args.stage}"
    )
    ctx.emit(answer, text)
    return _watch(ctx, new_id) if args.watch else 0


def unpin(ctx: Context) -> int:
    """Let automatic releases deploy a pinned stage again."""
    args = ctx.args
    answer = ctx.api.delete(path("stacks", args.stack, "stages", args.stage, "pin"))
    ctx.emit(answer, f"{args.stack} {args.stage} unpinned")
    return 0


def cancel(ctx: Context) -> int:
    """Cancel a release: it ends CANCELLED and frees its stages."""
    args = ctx.args
    body = {"reason": args.reason} if args.reason else {}
    answer = ctx.api.post(path("releases", args.release, "cancel"), body)
    ctx.emit(answer, f"release {args.release} {answer.get('status')} ({answer.get('cause')})")
    return 0


def approve(ctx: Context) -> int:
    """Approve a stage waiting for approval."""
    return _decide(ctx, "approve")


def reject(ctx: Context) -> int:
    """Reject a stage waiting for approval (the release fails there)."""
    return _decide(ctx, "reject")


def deploy(ctx: Context) -> int:
    """Start a release of a branch, tag, ref or sha by hand; ``--watch`` follows it."""
    args = ctx.args
    ref = f"refs/tags/{args.tag}" if args.tag else args.ref
    body = {k: v for k, v in (("ref", ref), ("sha", args.sha)) if v}
    headers = {"Idempotency-Key": args.idempotency_key} if args.idempotency_key else None
    answer = ctx.api.post(path("stacks", args.stack, "releases"), body, headers=headers)
    release_id = str(answer.get("release_id"))
    note = " (already started by an earlier request)" if answer.get("duplicate") else ""
    ctx.emit(answer, f"release {release_id} {answer.get('status')}{note}\nfollow it: stagecoach watch {release_id}")
    if not args.watch:
        return 0
    return _watch(ctx, release_id)


def command_prefix(args: argparse.Namespace) -> str:
    """How to run the CLI again against the same control plane (``stagecoach --url URL`` if one was given)."""
    url = getattr(args, "url", None)
    return f"stagecoach --url {shlex.quote(url)}" if url else "stagecoach"


def _watch(ctx: Context, release_id: str) -> int:
    where = path("releases", release_id)
    result = watch_release(
        release_id,
        lambda: ctx.api.get(where),
        ctx.err if ctx.json else ctx.out,
        interval=ctx.args.interval,
        timeout=ctx.args.timeout,
        stop_at_approval=not ctx.args.through_approval,
        command=command_prefix(ctx.args),
    )
    if ctx.json and result.release:
        ctx.emit(result.release, "")
    if result.problem is not None:
        result.problem.exit_code = result.exit_code
        raise result.problem
    return result.exit_code


def watch(ctx: Context) -> int:
    """Follow a release until it ends or waits for an approval (exit codes: docs/cli.md)."""
    return _watch(ctx, ctx.args.release)


def webhook_rotate(ctx: Context) -> int:
    """A new webhook secret, shown once."""
    answer = ctx.api.post(path("stacks", ctx.args.stack, "webhook", "rotate"))
    grace = answer.get("previous_valid_for_seconds")
    ctx.emit(
        answer,
        f"new webhook secret for {ctx.args.stack}: {answer.get('secret')}\n"
        f"  (shown only this once; the previous secret keeps working for {grace} seconds)",
    )
    return 0


# ------------------------------------------------------------------ notifications and audit


def _pages(ctx: Context, where: str, key: str, limit: int) -> tuple[list[Any], str | None]:
    """Up to ``limit`` items of a paged listing, following ``next_token``."""
    items: list[Any] = []
    token: str | None = None
    while len(items) < limit:
        page = ctx.api.get(where, limit=min(100, limit - len(items)), next_token=token)
        items += page.get(key) or []
        token = page.get("next_token")
        if not token:
            break
    return items, token


def audit(ctx: Context) -> int:
    """The audit trail (of one stack, also after it was deleted), newest first."""
    where = path("stacks", ctx.args.stack, "audit") if ctx.args.stack else "/audit"
    entries, token = _pages(ctx, where, "entries", ctx.args.limit)
    ctx.emit({"entries": entries, "next_token": token}, lambda: fmt.audit_table(entries, ctx.width))
    return 0


def notifications_list(ctx: Context) -> int:
    """A stack's notification settings and recent deliveries, newest first."""
    stack = ctx.api.get(path("stacks", ctx.args.stack))
    where = path("stacks", ctx.args.stack, "notifications")
    deliveries, token = _pages(ctx, where, "deliveries", ctx.args.limit)
    ctx.emit(
        {"deliveries": deliveries, "next_token": token},
        lambda: fmt.notification_settings(stack) + "\n\n" + fmt.deliveries_table(deliveries, ctx.width),
    )
    return 0


def _kept(targets: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The stack's targets as a PATCH body keeps them (a webhook's stored secret as ``***``)."""
    return [{k: v for k, v in t.items() if k in ("type", "url", "events", "secret")} for t in targets]


def _patch_notifications(ctx: Context, change: Callable[[dict[str, Any]], dict[str, Any]]) -> int:
    stack = ctx.api.get(path("stacks", ctx.args.stack))
    body = {"version": stack["version"], **change(stack)}
    changed = ctx.api.patch(path("stacks", ctx.args.stack), body)
    ctx.emit(changed, lambda: fmt.notification_settings(changed))
    return 0


def _secret_value(value: str | None, stdin: TextIO) -> str | None:
    """A token or secret given as ``-`` is read from stdin (it then stays out of the shell's history)."""
    return stdin.readline().strip() if value == "-" else value


def notifications_commit_status(ctx: Context) -> int:
    """Set (or ``--off``) the stack's commit statuses; the token is write-only."""
    args = ctx.args
    if args.off:
        return _patch_notifications(ctx, lambda stack: {"commit_status": None})
    token = _secret_value(args.token, ctx.stdin)
    if not token:
        raise UsageError("give --token TOKEN (or --token - to read it from stdin), or --off")
    settings: dict[str, Any] = {"token": token}
    if args.provider:
        settings["provider"] = args.provider
    if args.api_url:
        settings["api_url"] = args.api_url
    return _patch_notifications(ctx, lambda stack: {"commit_status": settings})


def notifications_add(ctx: Context) -> int:
    """Add a Slack or webhook target (a webhook needs ``--secret``)."""
    args = ctx.args
    target: dict[str, Any] = {"type": args.type, "url": args.target_url}
    if args.event:
        target["events"] = args.event
    if args.type == "webhook":
        secret = _secret_value(args.secret, ctx.stdin)
        if not secret:
            raise UsageError("a webhook needs --secret SECRET (or --secret - to read it from stdin)")
        target["secret"] = secret

    def change(stack: dict[str, Any]) -> dict[str, Any]:
        kept = [
            t for t in _kept(stack.get("notifications") or []) if (t["type"], t["url"]) != (args.type, args.target_url)
        ]
        return {"notifications": [*kept, target]}

    return _patch_notifications(ctx, change)


def notifications_remove(ctx: Context) -> int:
    """Remove the targets with this URL."""
    url = ctx.args.target_url

    def change(stack: dict[str, Any]) -> dict[str, Any]:
        current = _kept(stack.get("notifications") or [])
        kept = [t for t in current if t["url"] != url]
        if len(kept) == len(current):
            raise CliError(f"stack {ctx.args.stack} has no notification target {url}", 1, "NotFound")
        return {"notifications": kept}

    return _patch_notifications(ctx, change)


def git_connect(ctx: Context) -> int:
    """Make PATH a bare repository whose pushes release STACK."""
    args = ctx.args
    result = githook.connect(ctx.api, args.stack, args.path, args.secret, args.provider_url)
    ctx.emit(result, lambda: githook.connect_report(result))
    return 0


def git_post_receive(ctx: Context) -> int:
    """Run by the hook: one signed push delivery per ref on stdin."""
    args = ctx.args
    return githook.post_receive(ctx.stdin, ctx.out, url=args.url, stack=args.stack, repo=args.repo)


# ------------------------------------------------------------------ parser


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print the API's JSON")
    common.add_argument("--url", default=argparse.SUPPRESS, help="control plane URL")
    return common


def _watch_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--interval", type=_non_negative, default=1.0, help="seconds between polls (1)")
    parser.add_argument("--timeout", type=_non_negative, default=None, help="give up after SECONDS (exit 3)")
    parser.add_argument(
        "--through-approval",
        action="store_true",
        help="keep watching while a stage awaits approval (by default watch returns there, exit 4)",
    )


def _stage_options(parser: argparse.ArgumentParser, approval_default: bool | None) -> None:
    parser.add_argument(
        "--approval",
        action=argparse.BooleanOptionalAction,
        default=approval_default,
        help="wait for a person's approval before deploying",
    )
    parser.add_argument("--approval-timeout", type=int, metavar="SECONDS", help="how long to wait for it")
    parser.add_argument("--region", help="AWS region of the stage ('' for the default)")
    parser.add_argument("--role-arn", help="CloudFormation role ('' for the default)")
    parser.add_argument("--param", type=_param, action="append", metavar="K=V", help="template parameter")


def build_parser() -> Parser:
    """The whole command tree."""
    common = _common()
    parser = Parser(prog="stagecoach", description="Stagecoach release control plane: command line client.")
    parser.add_argument("--url", default=None, help=f"control plane URL (default $STAGECOACH_URL or {DEFAULT_URL})")
    parser.add_argument("--json", action="store_true", default=False, help="print the API's JSON")
    parser.add_argument("--http-timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds per HTTP request")
    parser.add_argument(
        "--sigv4",
        action="store_true",
        default=False,
        help="sign requests with your AWS credentials (automatic for execute-api URLs; use it for custom domains)",
    )
    top = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=Parser)

    def command(sub: Any, name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
        made: argparse.ArgumentParser = sub.add_parser(name, help=help_text, description=help_text, parents=[common])
        made.set_defaults(handler=handler)
        return made

    def group(name: str, help_text: str) -> Any:
        made = top.add_parser(name, help=help_text, description=help_text)
        return made.add_subparsers(dest=f"{name}_command", metavar="COMMAND", required=True, parser_class=Parser)

    stacks = group("stacks", "create, list, show and delete stacks")
    command(stacks, "list", stacks_list, "list every stack")
    command(stacks, "show", stacks_show, "a stack's pipeline").add_argument("stack")
    create = command(stacks, "create", stacks_create, "create a stack (prints its webhook secret once)")
    create.add_argument("--file", help="JSON body of POST /stacks ('-' for stdin); flags override its fields")
    create.add_argument("--name")
    create.add_argument("--id", help="stack id (default: from the name)")
    create.add_argument("--repo", metavar="OWNER/NAME", help="repository full name")
    create.add_argument("--provider", choices=("github", "gitlab", "bitbucket"))
    create.add_argument("--clone-url", help="https URL, absolute path or file:// URL the builds clone")
    create.add_argument(
        "--stage",
        type=_stage_spec,
        action="append",
        metavar="NAME[:approval]",
        help="a stage, in release order (repeat)",
    )
    create.add_argument("--branch", action="append", metavar="GLOB", help="branches that release (default main)")
    create.add_argument("--tag", action="append", metavar="GLOB", help="tags that release")
    create.add_argument("--template-path")
    create.add_argument("--buildspec-path")
    create.add_argument(
        "--mode",
        choices=EXECUTION_MODES,
        help="SUPERSEDED (default: the newest release wins every stage) or QUEUED (one after another)",
    )
    delete = command(stacks, "delete", stacks_delete, "delete a stack")
    delete.add_argument("stack")
    delete.add_argument("--force", action="store_true", help="cancel its releases in flight first")
    mode = command(stacks, "mode", stacks_mode, "set how releases share the stages (SUPERSEDED or QUEUED)")
    mode.add_argument("stack")
    mode.add_argument("mode", choices=EXECUTION_MODES)

    stages = group("stages", "add, change, move and remove a stack's stages")
    add = command(stages, "add", stages_add, "add a stage")
    add.add_argument("stack")
    add.add_argument("name")
    add.add_argument("--position", type=int, help="0 is first (default: last)")
    _stage_options(add, None)
    update = command(stages, "update", stages_update, "change a stage")
    update.add_argument("stack")
    update.add_argument("name")
    _stage_options(update, None)
    update.add_argument("--unset-param", action="append", metavar="K", help="remove a template parameter")
    move = command(stages, "move", stages_move, "move a stage")
    move.add_argument("stack")
    move.add_argument("name")
    move.add_argument("position", type=int)
    remove = command(stages, "remove", stages_remove, "remove a stage")
    remove.add_argument("stack")
    remove.add_argument("name")
    remove.add_argument("--force", action="store_true", help="cancel the releases still to deploy it first")

    releases = group("releases", "list and show releases")
    rlist = command(releases, "list", releases_list, "a stack's releases, newest first")
    rlist.add_argument("stack")
    rlist.add_argument("--status", choices=RELEASE_STATUSES, help="only releases in this status")
    rlist.add_argument("--ref", help="branch, tag or full ref")
    rlist.add_argument("--limit", type=int, default=25, help="at most this many (25)")
    command(releases, "show", releases_show, "one release").add_argument("release")

    met = command(top, "metrics", metrics, "DORA metrics of a stack's stage (default its last)")
    met.add_argument("stack")
    met.add_argument("--stage", help="the stage (default: the stack's last)")
    met.add_argument("--days", type=int, default=None, help="the window in days, 1 to 365 (default 30)")
    hist = command(top, "history", history, "a release's execution timeline")
    hist.add_argument("release")
    hist.add_argument("--raw", action="store_true", help="every execution event")
    command(top, "logs", logs, "a release's build log").add_argument("release")
    for name, handler in (("approve", approve), ("reject", reject)):
        decide = command(top, name, handler, f"{name} a stage that waits for approval")
        decide.add_argument("release")
        decide.add_argument("stage")
        decide.add_argument("--comment")

    prom = command(top, "promote", promote, "deploy a release's build to a stage (no build)")
    prom.add_argument("release")
    prom.add_argument("--to", required=True, metavar="STAGE")
    prom.add_argument("--watch", action="store_true", help="then follow the new release")
    _watch_options(prom)
    rede = command(top, "redeploy", redeploy, "deploy again, to a stage, the build it runs")
    rede.add_argument("stack")
    rede.add_argument("stage")
    rede.add_argument("--watch", action="store_true", help="then follow the new release")
    _watch_options(rede)
    back = command(top, "rollback", rollback, "deploy an earlier release to a stage and pin it there")
    back.add_argument("stack")
    back.add_argument("stage")
    back.add_argument("--to", metavar="RELEASE", help="default: what the stage ran before its current release")
    back.add_argument("--reason", required=True)
    back.add_argument("--watch", action="store_true", help="then follow the new release")
    _watch_options(back)
    unp = command(top, "unpin", unpin, "let automatic releases deploy a pinned stage again")
    unp.add_argument("stack")
    unp.add_argument("stage")

    stop = command(top, "cancel", cancel, "cancel a release (it ends CANCELLED, its stages are freed)")
    stop.add_argument("release")
    stop.add_argument("--reason")

    dep = command(top, "deploy", deploy, "release a ref or sha by hand")
    dep.add_argument("stack")
    which = dep.add_mutually_exclusive_group(required=True)
    which.add_argument("--ref", help="branch (main), or a full ref (refs/heads/x, refs/tags/v1, refs/pull/1/head)")
    which.add_argument("--tag", help="tag (same as --ref refs/tags/TAG)")
    which.add_argument("--sha", help="commit sha")
    dep.add_argument("--idempotency-key", help="retries with the same key start one release")
    dep.add_argument("--watch", action="store_true", help="then follow the release")
    _watch_options(dep)

    hook = group("webhook", "webhook secrets")
    command(hook, "rotate", webhook_rotate, "a new webhook secret (shown once)").add_argument("stack")

    wat = command(top, "watch", watch, "follow a release until it ends or awaits an approval")
    wat.add_argument("release")
    _watch_options(wat)

    aud = command(top, "audit", audit, "who did what: the audit trail, newest first")
    aud.add_argument("stack", nargs="?", help="only this stack's (also after it was deleted)")
    aud.add_argument("--limit", type=int, default=50, help="at most this many (50)")

    notes = group("notifications", "commit statuses, Slack and webhooks")
    nlist = command(notes, "list", notifications_list, "a stack's notification settings and recent deliveries")
    nlist.add_argument("stack")
    nlist.add_argument("--limit", type=int, default=25, help="at most this many deliveries (25)")
    cstat = command(notes, "commit-status", notifications_commit_status, "post a commit status per stage")
    cstat.add_argument("stack")
    cstat.add_argument("--token", help="provider API token (write-only; '-' reads it from stdin)")
    cstat.add_argument("--provider", choices=("github", "gitlab", "bitbucket", "bitbucket-server"))
    cstat.add_argument("--api-url", help="provider API base URL (default: the provider's public API)")
    cstat.add_argument("--off", action="store_true", help="stop posting commit statuses")
    nadd = command(notes, "add", notifications_add, "notify a Slack incoming webhook or a signed webhook")
    nadd.add_argument("stack")
    nadd.add_argument("type", choices=("slack", "webhook"))
    nadd.add_argument("target_url", metavar="URL")
    nadd.add_argument("--secret", help="webhook signing secret (write-only; '-' reads it from stdin)")
    nadd.add_argument("--event", action="append", choices=EVENT_TYPES, help="events to send (default: the main ones)")
    nrem = command(notes, "remove", notifications_remove, "stop notifying URL")
    nrem.add_argument("stack")
    nrem.add_argument("target_url", metavar="URL")

    gitg = group("git", "push to a local bare repository to release")
    conn = command(gitg, "connect", git_connect, "make PATH a bare repository whose pushes release STACK")
    conn.add_argument("stack")
    conn.add_argument("path")
    conn.add_argument("--secret", help="the stack's webhook secret (default: rotate and use the new one)")
    conn.add_argument("--provider-url", help="URL the hook posts to (default: --url)")
    recv = command(gitg, "post-receive", git_post_receive, "run by the hook (reads <old> <new> <ref> lines)")
    recv.add_argument("--stack")
    recv.add_argument("--repo", default=".", help="the bare repository (default: the current directory)")
    return parser


def report(error: CliError, as_json: bool, err: TextIO) -> int:
    """Print ``error`` on ``err`` (one line: text, or ``{"code","message"}`` with ``--json``); its exit status."""
    print(json.dumps(error.document()) if as_json else f"stagecoach: {error.message}", file=err)
    return error.exit_code


def _silence_stdout() -> None:
    """Point the process's stdout at /dev/null: its reader is gone, and flushing at exit would fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # no real stdout (captured by a test): nothing left to flush
        pass


def main(
    argv: Sequence[str] | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    stdin: TextIO | None = None,
) -> int:
    """Run one command; returns the exit status (errors are one line on stderr)."""
    out, err = stdout or sys.stdout, stderr or sys.stderr
    arguments = list(argv) if argv is not None else sys.argv[1:]
    as_json = "--json" in arguments
    try:
        args = build_parser().parse_args(arguments)
    except UsageError as exc:
        return report(CliError(str(exc), EXIT_USAGE, "UsageError"), as_json, err)
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0
    api = Api(resolve_url(args.url), timeout=args.http_timeout, sign=True if args.sigv4 else None)
    ctx = Context(args, api, out, err, stdin or sys.stdin)
    handler: Handler = args.handler
    try:
        code = handler(ctx)
        out.flush()  # here, not at exit: a closed pipe must end up below, not as "Exception ignored"
        return code
    except UsageError as exc:
        return report(CliError(str(exc), EXIT_USAGE, "UsageError"), ctx.json, err)
    except CliError as exc:
        return report(exc, ctx.json, err)
    except BrokenPipeError:  # `stagecoach ... | head`: the reader has all it wanted
        if out is sys.stdout:
            _silence_stdout()
        return EXIT_CLOSED_PIPE
    except KeyboardInterrupt:
        return report(CliError("interrupted", EXIT_INTERRUPTED, "Interrupted"), ctx.json, err)
