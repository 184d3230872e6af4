"""The ``stagecoach`` command line client of the Stagecoach HTTP API (standard library only)."""

from __future__ import annotations

from .commands import main

__all__ = ["main"]
