"""Render a state machine's YAML source (anchors, comments) into the JSON that is deployed and tested.

    python statemachines/render.py            # writes every statemachines/*.asl.json from its .asl.yaml
    python statemachines/render.py --check    # exits 1 if a checked-in JSON is not current

Top-level keys starting with ``x-`` only hold YAML anchors and are dropped.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent


def render(source: Path) -> str:
    """The JSON text of a YAML state machine definition."""
    data = yaml.safe_load(source.read_text())
    definition = {k: v for k, v in data.items() if not k.startswith("x-")}
    return json.dumps(definition, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    """Write (or with ``--check`` compare) every rendered definition."""
    stale = []
    for source in sorted(HERE.glob("*.asl.yaml")):
        target = source.with_name(source.name.removesuffix(".yaml") + ".json")
        text = render(source)
        if "--check" in argv:
            if not target.exists() or target.read_text() != text:
                stale.append(target.name)
        else:
            target.write_text(text)
    for name in stale:
        print(f"{name} is not current: run `make statemachines`", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
