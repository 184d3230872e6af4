"""Pure text formatting of API documents for people: tables, times, durations, pipeline views."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

Json = dict[str, Any]
DASH = "-"


MIN_FLEXIBLE_WIDTH = 12


class Blank:
    """A cell left empty on purpose (``-`` would say "none"): a stack's second and later stage rows."""


BLANK = Blank()


def cell(value: Any) -> str:
    """A table cell: ``None``/empty → ``-``, booleans → yes/no, newlines flattened, ``BLANK`` → nothing."""
    if isinstance(value, Blank):
        return ""
    if value is None or value == "":
        return DASH
    if isinstance(value, bool):
        return "yes" if value else "no"
    return " ".join(str(value).split()) if isinstance(value, str) else str(value)


def table(
    headers: Sequence[str], rows: Iterable[Sequence[Any]], width: int | None = None, flexible: str | None = None
) -> str:
    """Left-aligned columns separated by two spaces; no trailing whitespace.

    With ``width`` (a terminal's), the ``flexible`` column's cells are cut (``…``) so that lines fit,
    down to ``MIN_FLEXIBLE_WIDTH`` characters.
    """
    body = [[cell(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in body:
        for i, text in enumerate(row):
            widths[i] = max(widths[i], len(text))
    if width is not None and flexible in headers:
        column = list(headers).index(str(flexible))
        excess = sum(widths) + 2 * (len(widths) - 1) - width
        if excess > 0:
            widths[column] = max(widths[column] - excess, MIN_FLEXIBLE_WIDTH, len(headers[column]))
            for row in body:
                row[column] = truncate(row[column], widths[column])
    lines = []
    for row in [list(headers), *body]:
        lines.append("  ".join(text.ljust(widths[i]) for i, text in enumerate(row)).rstrip())
    return "\n".join(lines)


def truncate(text: Any, width: int = 50) -> str:
    """The first line of ``text``, at most ``width`` characters (``…`` marks a cut)."""
    if not text:
        return ""
    line = str(text).strip().splitlines()[0] if str(text).strip() else ""
    return line if len(line) <= width else line[: width - 1] + "…"


def short_sha(sha: Any) -> str:
    """The first 8 characters of a commit sha."""
    return str(sha)[:8] if sha else ""


def when(stamp: Any) -> str:
    """An ISO-8601 UTC time as ``YYYY-MM-DD HH:MM:SS`` (UTC); empty for none."""
    if not stamp:
        return ""
    text = str(stamp).replace("T", " ")
    for end in ("Z", "+00:00"):
        if text.endswith(end):
            text = text[: -len(end)]
    return text.split(".")[0]


def duration(seconds: Any) -> str:
    """``4.2s``, ``2m05s`` or ``1h02m``; empty for none."""
    if seconds is None or isinstance(seconds, bool):
        return ""
    value = float(seconds)
    if value < 60:
        return f"{value:.1f}s"
    whole = round(value)
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def short_ref(ref: Any) -> str:
    """``refs/heads/main`` → ``main``, ``refs/tags/v1`` → ``v1``."""
    text = str(ref or "")
    for prefix in ("refs/heads/", "refs/tags/"):
        if text.startswith(prefix):
            return text[len(prefix) :]
    return text


# ------------------------------------------------------------------ stacks


def stacks_table(stacks: Iterable[Mapping[str, Any]], width: int | None = None) -> str:
    """One line per stage of each stack: its status and the commit it runs (``*``: approval first)."""
    rows = []
    for s in stacks:
        repository = s.get("repository") or {}
        for position, st in enumerate(s.get("stages") or [{}]):
            current = st.get("current_release") or {}
            rows.append(
                (
                    s.get("id") if position == 0 else BLANK,
                    repository.get("full_name") if position == 0 else BLANK,
                    str(st.get("name") or "") + ("*" if st.get("approval") else ""),
                    st.get("status"),
                    short_sha(current.get("sha")) or current.get("release_id"),
                    when(current.get("deployed_at")),
                )
            )
    if not rows:
        return "no stacks yet (create one with: stagecoach stacks create ...)"
    headers = ("STACK", "REPOSITORY", "STAGE", "STATUS", "COMMIT", "DEPLOYED (UTC)")
    return table(headers, rows, width, flexible="REPOSITORY")


def pipeline_table(stages: Iterable[Mapping[str, Any]]) -> str:
    """A stack's stages in release order with their state and current release."""
    rows = []
    for st in stages:
        current = st.get("current_release") or {}
        rows.append(
            (
                st.get("position"),
                st.get("name"),
                st.get("status"),
                bool(st.get("approval")),
                short_sha(current.get("sha")) or (current.get("release_id") if current else None),
                truncate(current.get("message"), 40),
                when(current.get("deployed_at")),
                st.get("locked_by"),
                ", ".join(st.get("waiting") or []),
                f"pinned by {pin.get('by')}" if (pin := st.get("pin")) else "",
            )
        )
    headers = ("#", "STAGE", "STATUS", "APPROVAL", "RELEASE", "MESSAGE", "DEPLOYED (UTC)", "IN STAGE", "WAITING", "PIN")
    return table(headers, rows)


def stack_details(stack: Mapping[str, Any], awaiting: Sequence[tuple[str, str]] = ()) -> str:
    """``stacks show``: settings, the pipeline, and what waits for an approval."""
    repo = stack.get("repository") or {}
    webhook = stack.get("webhook") or {}
    urls = webhook.get("urls") or {}
    verified = webhook.get("verified_at")
    lines = [
        f"{stack.get('id')}  ({stack.get('name')})  version {stack.get('version')}"
        f"  mode {stack.get('execution_mode') or 'SUPERSEDED'}",
        f"repository  {repo.get('full_name')} on {repo.get('provider')}  clone {repo.get('clone_url')}",
        f"branches    {', '.join(stack.get('branches') or []) or DASH}",
        f"tags        {', '.join(stack.get('tags') or []) or DASH}",
        f"template    {stack.get('template_path')}   buildspec {stack.get('buildspec_path')}",
        f"webhook     {urls.get(repo.get('provider', 'github'), DASH)}  "
        + (f"(verified {when(verified)})" if verified else "(no verified delivery yet)"),
        "",
        pipeline_table(stack.get("stages") or []),
    ]
    for st in stack.get("stages") or []:
        pin = st.get("pin")
        if pin:
            lines.append(
                f"\n{st.get('name')} is pinned on release {pin.get('release_id')} ({short_sha(pin.get('sha'))}) "
                f"by {pin.get('by')} at {when(pin.get('at'))}: {pin.get('reason')}\n"
                f"  automatic releases stop before it; run: stagecoach unpin {stack.get('id')} {st.get('name')}"
            )
    if awaiting:
        lines.append("")
        for release_id, stage in awaiting:
            lines.append(f"awaiting approval: release {release_id} at {stage}")
            lines.append(f"  run: stagecoach approve {release_id} {stage}   (or: stagecoach reject ...)")
    return "\n".join(lines)


def created_stack(stack: Mapping[str, Any], base_url: str) -> str:
    """``stacks create``: a summary and the webhook secret, shown once."""
    webhook = stack.get("webhook") or {}
    repo = stack.get("repository") or {}
    provider = repo.get("provider", "github")
    hook_path = (webhook.get("urls") or {}).get(provider, f"/webhooks/{provider}/{stack.get('id')}")
    stages = " → ".join(str(s.get("name")) + (" (approval)" if s.get("approval") else "") for s in stack["stages"])
    return "\n".join(
        [
            f"created stack {stack.get('id')}: {stages}",
            "",
            f"webhook URL:    {base_url.rstrip('/')}{hook_path}",
            f"webhook secret: {webhook.get('secret')}",
            "  (shown only this once: store it now; `stagecoach webhook rotate` makes a new one)",
        ]
    )


# ------------------------------------------------------------------ releases


def releases_table(releases: Iterable[Mapping[str, Any]], width: int | None = None) -> str:
    """One line per release, newest first as the API returns them."""
    rows = [
        (
            r.get("id"),
            release_status(r),
            short_ref(r.get("ref")),
            short_sha(r.get("sha")),
            truncate(r.get("message"), 40),
            r.get("trigger"),
            when(r.get("received_at")),
            duration(r.get("duration_seconds")),
            r.get("failed_stage"),
        )
        for r in releases
    ]
    if not rows:
        return "no releases"
    headers = ("ID", "STATUS", "REF", "SHA", "MESSAGE", "TRIGGER", "RECEIVED (UTC)", "DURATION", "FAILED AT")
    return table(headers, rows, width, flexible="MESSAGE")


def stage_status(stage: Mapping[str, Any]) -> str:
    """A stage run's status, with whom it waits for or was superseded by."""
    status = str(stage.get("status"))
    if status == "WAITING" and stage.get("waiting_for"):
        return f"WAITING for {stage['waiting_for']}"
    if status == "SUPERSEDED" and stage.get("superseded_by"):
        return f"SUPERSEDED by {stage['superseded_by']}"
    return status


def release_status(release: Mapping[str, Any]) -> str:
    """``SUPERSEDED by r…`` / ``CANCELLED by alice`` / ``HELD by pin on prod`` / the plain status."""
    status = str(release.get("status"))
    if status == "HELD":
        return f"HELD by pin on {release.get('failed_stage')}"
    if status == "SUPERSEDED" and release.get("superseded_by"):
        return f"{status} by {release['superseded_by']}"
    if status == "CANCELLED" and release.get("cancelled_by"):
        return f"{status} by {release['cancelled_by']}"
    return status


def release_details(release: Mapping[str, Any]) -> str:
    """``releases show``: the release, its build and every stage."""
    lines = [
        f"release {release.get('id')}  {release_status(release)}  stack {release.get('stack_id')}",
        f"ref       {release.get('ref')} @ {short_sha(release.get('sha')) or DASH}",
        f"message   {truncate(release.get('message'), 72) or DASH}",
        f"author    {release.get('author') or DASH}   trigger {release.get('trigger')}",
        f"received  {when(release.get('received_at')) or DASH}   started {when(release.get('started_at')) or DASH}"
        f"   ended {when(release.get('ended_at')) or DASH}   {duration(release.get('duration_seconds'))}".rstrip(),
    ]
    if release.get("error") or release.get("failed_stage"):
        lines.append(f"failed    {failure_line(release)}")
    build = release.get("build")
    if build:
        lines.append(
            f"build     {build.get('id') or DASH}  {build.get('status') or DASH}"
            f"  {duration(build.get('duration_seconds'))}"
            + (f"  failed phase {build['failed_phase']}" if build.get("failed_phase") else "")
        )
    rows = []
    for st in release.get("stages") or []:
        changes = st.get("change_summary") or {}
        summary = ", ".join(f"{k} {v}" for k, v in changes.items() if v) if changes else ""
        approval = st.get("approval") or {}
        rows.append(
            (
                st.get("position"),
                st.get("name"),
                stage_status(st),
                duration(st.get("duration_seconds")),
                "no changes" if st.get("no_changes") else summary,
                approval.get("decision") or ("requested" if approval.get("requested_at") else ""),
                truncate(st.get("error") or "", 40),
            )
        )
    lines += ["", table(("#", "STAGE", "STATUS", "DURATION", "CHANGES", "APPROVAL", "ERROR"), rows)]
    for st in release.get("stages") or []:
        if st.get("status") == "AWAITING_APPROVAL":
            lines.append(f"\n{st.get('name')} awaits approval of these changes:")
            lines.append(change_table(st.get("changes")))
            lines.append(f"run: stagecoach approve {release.get('id')} {st.get('name')}")
    return "\n".join(lines)


def change_table(changes: Sequence[Mapping[str, Any]] | None) -> str:
    """A change set, one line per resource (and per changed property); replacements and removals marked."""
    if not changes:
        return "  (no changes)"
    rows = []
    for change in changes:
        action = str(change.get("action") or "")
        replacement = str(change.get("replacement") or "")
        mark = "!! REMOVE" if action == "Remove" else "!! REPLACE" if replacement == "True" else ""
        if replacement == "Conditional" and not mark:
            mark = "may replace"
        details = change.get("details") or [{}]
        for i, detail in enumerate(details):
            what = ".".join(str(p) for p in (detail.get("attribute"), detail.get("name")) if p)
            before, after = detail.get("before"), detail.get("after")
            known = before is not None or after is not None
            values = f"{truncate(before, 30)} → {truncate(after, 30)}" if known else ""
            rows.append(
                (
                    action if i == 0 else BLANK,
                    change.get("logical_id") if i == 0 else BLANK,
                    change.get("resource_type") if i == 0 else BLANK,
                    mark if i == 0 else BLANK,
                    what,
                    values,
                )
            )
    return table(("ACTION", "RESOURCE", "TYPE", "", "PROPERTY", "BEFORE → AFTER"), rows)


def failure_line(release: Mapping[str, Any]) -> str:
    """Where and why a release failed, from its fields (falling back to the failed stage's)."""
    stage = release.get("failed_stage")
    error, cause = release.get("error"), release.get("cause")
    for st in release.get("stages") or []:
        if st.get("status") == "FAILED" and (stage is None or st.get("name") == stage):
            stage = stage or st.get("name")
            error, cause = error or st.get("error"), cause or st.get("cause")
            break
    if not stage and (release.get("build") or {}).get("status") == "FAILED":
        stage = "build"
    parts = [f"stage {stage}" if stage else "release"]
    if error:
        parts.append(str(error))
    if cause:
        parts.append(str(cause))  # the whole cause: the end of a build log tail is what matters
    return ": ".join(parts)


def timeline(history: Mapping[str, Any]) -> str:
    """``history``: one line per event of the release's execution."""
    rows = [
        (
            when(e.get("started_at")),
            duration(e.get("duration_seconds")),
            e.get("stage"),
            e.get("name"),
            e.get("type"),
            e.get("outcome"),
            truncate(" ".join(str(x) for x in (e.get("error"), e.get("cause")) if x), 60),
        )
        for e in history.get("events") or []
    ]
    head = f"release {history.get('release_id')}"
    if not rows:
        return f"{head}: no events yet"
    return head + "\n\n" + table(("STARTED (UTC)", "DURATION", "STAGE", "STEP", "TYPE", "OUTCOME", "ERROR"), rows)


def build_log(document: Mapping[str, Any]) -> str:
    """``logs``: the log text, or where to find it."""
    log = document.get("log")
    if isinstance(log, str) and log:
        return log.rstrip("\n")
    pointer = document.get("pointer")
    head = f"build {document.get('build_id') or DASH} ({document.get('status') or 'no status'})"
    if isinstance(pointer, Mapping) and pointer:
        details = "\n".join(f"  {k}: {v}" for k, v in pointer.items())
        return f"{head}: the log is not stored inline; it is at:\n{details}"
    return f"{head}: no log yet"


# ------------------------------------------------------------------ arguments


def parse_param(text: str) -> tuple[str, str]:
    """``K=V`` → ``(K, V)``; ValueError if there is no ``=`` or no key."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), value


def parse_stage_spec(text: str) -> Json:
    """``prod`` or ``prod:approval`` → a stage object for ``POST /stacks``."""
    name, sep, flags = text.partition(":")
    if not name:
        raise ValueError(f"expected NAME or NAME:approval, got {text!r}")
    stage: Json = {"name": name}
    for flag in filter(None, flags.split(",")) if sep else ():
        if flag != "approval":
            raise ValueError(f"unknown stage flag {flag!r} in {text!r} (only :approval)")
        stage["approval"] = True
    if sep and "approval" not in stage:
        raise ValueError(f"expected NAME or NAME:approval, got {text!r}")
    return stage


# ------------------------------------------------------------------ notifications and audit


def deliveries_table(deliveries: Iterable[Mapping[str, Any]], width: int | None = None) -> str:
    """One line per delivery attempt, newest first."""
    rows = [
        (
            when(d.get("at")),
            d.get("event"),
            d.get("stage"),
            d.get("target_type"),
            d.get("attempt"),
            d.get("outcome"),
            d.get("status_code"),
            truncate(d.get("error"), 60),
        )
        for d in deliveries
    ]
    if not rows:
        return "no deliveries"
    headers = ("AT (UTC)", "EVENT", "STAGE", "TARGET", "ATTEMPT", "OUTCOME", "HTTP", "ERROR")
    return table(headers, rows, width, flexible="ERROR")


def notification_settings(stack: Mapping[str, Any]) -> str:
    """A stack's commit-status provider and notification targets (tokens and secrets shown as ***)."""
    lines = []
    status = stack.get("commit_status")
    if status:
        lines.append(f"commit statuses: {status.get('provider')} at {status.get('api_url')} (token ***)")
    else:
        lines.append("commit statuses: off")
    targets = stack.get("notifications") or []
    if not targets:
        lines.append("notifications: none")
    for target in targets:
        events = ", ".join(target.get("events") or [])
        lines.append(f"{target.get('type')}: {target.get('url')} ({events})")
    return "\n".join(lines)


def audit_table(entries: Iterable[Mapping[str, Any]], width: int | None = None) -> str:
    """One line per audit entry, newest first."""
    rows = [
        (
            when(e.get("at")),
            e.get("actor"),
            e.get("action"),
            e.get("target"),
            truncate(json.dumps(e.get("detail") or {}, separators=(",", ":")) if e.get("detail") else "", 60),
        )
        for e in entries
    ]
    if not rows:
        return "no audit entries"
    return table(("AT (UTC)", "ACTOR", "ACTION", "TARGET", "DETAIL"), rows, width, flexible="DETAIL")


def _days(seconds: Any) -> str:
    """A median duration for the metrics table: ``duration`` below a day, else days."""
    if seconds is None:
        return ""
    value = float(seconds)
    return duration(value) if value < 86400 else f"{value / 86400:.1f}d"


def metrics_table(metrics: Mapping[str, Any]) -> str:
    """DORA's four keys of one stage (``GET /stacks/{id}/metrics``), one line each with its level."""
    frequency = metrics["deployment_frequency"]
    lead = metrics["lead_time"]
    failures = metrics["change_failure_rate"]
    restore = metrics["time_to_restore"]
    rate = failures["rate"]
    window = metrics["window"]
    rows = [
        (
            "deployment frequency",
            f"{frequency['per_week']:.1f}/week",
            f"{frequency['deployments']} deploys, {frequency['days_with_deployments']} days ({frequency['bucket']})",
            frequency["level"],
        ),
        ("lead time for changes", _days(lead["median_seconds"]), f"median of {lead['samples']}", lead["level"]),
        (
            "change failure rate",
            "" if rate is None else f"{rate * 100:.0f}%",
            f"{failures['failed']} of {failures['deployments']} changes",
            failures["level"],
        ),
        (
            "time to restore",
            _days(restore["median_seconds"]),
            f"median of {restore['samples']}" + (", failing now" if restore["failing_now"] else ""),
            restore["level"],
        ),
    ]
    head = f"{metrics['stack_id']} / {metrics['stage']}: last {window['days']} days (to {when(window['end'])} UTC)"
    notes = f"{metrics['releases_read']} releases read" + (" (older ones left out)" if metrics["truncated"] else "")
    return "\n".join([head, "", table(("METRIC", "VALUE", "FROM", "LEVEL"), rows), "", notes])
