"""The deployed definition (statemachines/release.asl.json) is the rendering of its YAML source."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _render() -> object:
    spec = importlib.util.spec_from_file_location("render", ROOT / "statemachines" / "render.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_checked_in_json_is_the_rendered_yaml() -> None:
    render = _render()
    source = ROOT / "statemachines" / "release.asl.yaml"
    text = render.render(source)  # type: ignore[attr-defined]
    assert (ROOT / "statemachines" / "release.asl.json").read_text() == text, "run `make statemachines`"


def test_rendering_drops_the_anchor_holders_only() -> None:
    render = _render()
    definition = json.loads(render.render(ROOT / "statemachines" / "release.asl.yaml"))  # type: ignore[attr-defined]
    assert set(definition) == {"Comment", "StartAt", "States"}
    assert "x-shared" not in json.dumps(definition)
