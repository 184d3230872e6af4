"""``stagecoach watch``: poll a release and print a line whenever something changes.

It returns when the release ends and, unless told to wait through them, when a stage waits for an
approval: a person has to act, and the exit status (4) and the printed command say so.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TextIO

from .api import CliError
from .format import change_table, duration, failure_line, short_ref, short_sha, stage_status

EXIT_SUCCEEDED = 0
EXIT_FAILED = 1
EXIT_ERROR = 2
EXIT_TIMEOUT = 3
EXIT_AWAITING_APPROVAL = 4
NAME_WIDTH = 10


@dataclass(frozen=True)
class WatchResult:
    """How watching ended: the exit status, the last release document, and the problem if any."""

    exit_code: int
    release: Mapping[str, Any]
    problem: CliError | None = None


def states(release: Mapping[str, Any]) -> list[tuple[str, str, Any]]:
    """``(name, status, duration_seconds)`` of the build, each stage in order, then the release."""
    found: list[tuple[str, str, Any]] = []
    build = release.get("build")
    if isinstance(build, Mapping) and build.get("status"):
        found.append(("build", str(build["status"]), build.get("duration_seconds")))
    for stage in release.get("stages") or []:
        found.append((str(stage.get("name")), stage_status(stage), stage.get("duration_seconds")))
    found.append(("release", str(release.get("status")), release.get("duration_seconds")))
    return found


def change_line(stamp: str, name: str, status: str, seconds: Any, width: int = NAME_WIDTH) -> str:
    """``12:00:01  build      SUCCEEDED  (4.2s)``."""
    took = duration(seconds)
    line = f"{stamp}  {name.ljust(width)} {status.ljust(10)}"
    return f"{line} ({took})" if took else line.rstrip()


def awaiting_approval(release: Mapping[str, Any]) -> str | None:
    """The name of the stage that waits for an approval, if one does."""
    for stage in release.get("stages") or []:
        if stage.get("status") == "AWAITING_APPROVAL":
            return str(stage.get("name"))
    return None


def watch_release(
    release_id: str,
    fetch: Callable[[], Mapping[str, Any]],
    out: TextIO,
    interval: float = 1.0,
    timeout: float | None = None,
    stop_at_approval: bool = True,
    command: str = "stagecoach",
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
    clock: Callable[[], str] = lambda: datetime.now().strftime("%H:%M:%S"),
) -> WatchResult:
    """Poll ``fetch`` and print each change until the release ends or waits for a person.

    Exit status: 0 SUCCEEDED, 1 FAILED (or SUPERSEDED, CANCELLED, TIMED_OUT), 2 API error, 3 ``timeout``
    passed, 4 a stage awaits approval (only with ``stop_at_approval``; the approve command is printed).
    ``command`` is how the user runs the CLI (``stagecoach --url ...``), to print commands they can paste.
    """
    deadline = None if timeout is None else monotonic() + timeout
    seen: dict[str, str] = {}
    hinted: set[str] = set()
    release: Mapping[str, Any] = {}
    first = True
    while True:
        try:
            release = fetch()
        except CliError as exc:
            return WatchResult(EXIT_ERROR, release, exc)
        if first:
            first = False
            sha = short_sha(release.get("sha"))
            print(
                f"watching release {release_id}  stack {release.get('stack_id')}  "
                f"{short_ref(release.get('ref'))}{' @ ' + sha if sha else ''}",
                file=out,
            )
        current = states(release)
        width = max([NAME_WIDTH, *(len(name) for name, _, _ in current)])
        for name, status, seconds in current:
            if seen.get(name) == status:
                continue
            seen[name] = status
            print(change_line(clock(), name, status, seconds, width), file=out)
            if status == "AWAITING_APPROVAL" and name not in hinted and not stop_at_approval:
                hinted.add(name)
                print(f"          {name} awaits approval; run: {command} approve {release_id} {name}", file=out)
        out.flush()
        status = str(release.get("status"))
        if status == "SUCCEEDED":
            print(f"release {release_id} SUCCEEDED", file=out)
            return WatchResult(EXIT_SUCCEEDED, release)
        if status == "FAILED":
            print(f"release {release_id} FAILED at {failure_line(release)}", file=out)
            return WatchResult(EXIT_FAILED, release)
        if status == "SUPERSEDED":
            newer = release.get("superseded_by")
            print(f"release {release_id} SUPERSEDED by release {newer}; follow it: {command} watch {newer}", file=out)
            return WatchResult(EXIT_FAILED, release)
        if status == "HELD":
            why = f"release {release_id} HELD by the pin on {release.get('failed_stage')}: {release.get('cause') or ''}"
            print(why.rstrip(": "), file=out)
            return WatchResult(EXIT_FAILED, release)
        if status in ("CANCELLED", "TIMED_OUT"):
            why = release.get("cause") or release.get("error") or ""
            print(f"release {release_id} {status}: {why}".rstrip(": "), file=out)
            return WatchResult(EXIT_FAILED, release)
        gate = awaiting_approval(release) if stop_at_approval else None
        if gate is not None:
            stage = next(s for s in release.get("stages") or [] if s.get("name") == gate)
            print(f"release {release_id} awaits approval at {gate} of these changes:", file=out)
            print(change_table(stage.get("changes")), file=out)
            print("run:", file=out)
            print(f"  {command} approve {release_id} {gate}   (or: {command} reject {release_id} {gate})", file=out)
            print(f"then follow it again: {command} watch {release_id}", file=out)
            return WatchResult(EXIT_AWAITING_APPROVAL, release)
        if deadline is not None and monotonic() >= deadline:
            problem = CliError(
                f"timed out after {timeout:g}s; release {release_id} is still {status}", EXIT_TIMEOUT, "WatchTimedOut"
            )
            return WatchResult(EXIT_TIMEOUT, release, problem)
        sleep(interval)
