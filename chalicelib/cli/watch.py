"""``stagecoach watch``: poll a release and print a line whenever something changes."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, TextIO

from .api import CliError
from .format import duration, failure_line, short_ref, short_sha

EXIT_SUCCEEDED = 0
EXIT_FAILED = 1
EXIT_ERROR = 2
EXIT_TIMEOUT = 3
NAME_WIDTH = 10


def states(release: Mapping[str, Any]) -> list[tuple[str, str, Any]]:
    """``(name, status, duration_seconds)`` of the build, each stage in order, then the release."""
    found: list[tuple[str, str, Any]] = []
    build = release.get("build")
    if isinstance(build, Mapping) and build.get("status"):
        found.append(("build", str(build["status"]), build.get("duration_seconds")))
    for stage in release.get("stages") or []:
        found.append((str(stage.get("name")), str(stage.get("status")), stage.get("duration_seconds")))
    found.append(("release", str(release.get("status")), release.get("duration_seconds")))
    return found


def change_line(stamp: str, name: str, status: str, seconds: Any, width: int = NAME_WIDTH) -> str:
    """``12:00:01  build      SUCCEEDED  (4.2s)``."""
    took = duration(seconds)
    line = f"{stamp}  {name.ljust(width)} {status.ljust(10)}"
    return f"{line} ({took})" if took else line.rstrip()


def watch_release(
    release_id: str,
    fetch: Callable[[], Mapping[str, Any]],
    out: TextIO,
    err: TextIO,
    interval: float = 1.0,
    timeout: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
    clock: Callable[[], str] = lambda: datetime.now().strftime("%H:%M:%S"),
) -> int:
    """Poll ``fetch`` until the release ends: 0 SUCCEEDED, 1 FAILED, 2 API error, 3 timeout."""
    deadline = None if timeout is None else monotonic() + timeout
    seen: dict[str, str] = {}
    hinted: set[str] = set()
    first = True
    while True:
        try:
            release = fetch()
        except CliError as exc:
            print(f"stagecoach: {exc.message}", file=err)
            return EXIT_ERROR
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
            if status == "AWAITING_APPROVAL" and name not in hinted:
                hinted.add(name)
                print(f"          {name} awaits approval; run: stagecoach approve {release_id} {name}", file=out)
        out.flush()
        status = str(release.get("status"))
        if status == "SUCCEEDED":
            print(f"release {release_id} SUCCEEDED", file=out)
            return EXIT_SUCCEEDED
        if status == "FAILED":
            print(f"release {release_id} FAILED at {failure_line(release)}", file=out)
            return EXIT_FAILED
        if deadline is not None and monotonic() >= deadline:
            print(f"stagecoach: timed out after {timeout:g}s; release {release_id} is still {status}", file=err)
            return EXIT_TIMEOUT
        sleep(interval)
