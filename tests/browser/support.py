"""Where the browser tests find Chromium: Debian's ``chromium`` package (Playwright cannot download its own here)."""

from __future__ import annotations

import os
import shutil

import pytest

CHROMIUM_VARIABLE = "STAGECOACH_CHROMIUM"
MISSING = "Chromium is missing: install the Debian package `chromium` (apt-get install -y chromium)"


def chromium_path() -> str:
    """``$STAGECOACH_CHROMIUM``, else ``chromium`` on PATH; fails the test with one line naming the package."""
    found = os.environ.get(CHROMIUM_VARIABLE) or shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.fail(MISSING, pytrace=False)
    return found
