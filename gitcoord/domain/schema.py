"""JSON Schemas of the branch's files, generated from the models.

    python -m gitcoord.domain.schema            # rewrite coordination/schema/*.schema.json
    python -m gitcoord.domain.schema --check    # exit 1 if they are out of date

Editors (YAML language servers) and non-Python tools validate the YAML with
these; a test keeps them identical to what the models generate.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .kinds import DOCUMENTS

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "coordination" / "schema"


def render() -> dict[str, str]:
    out = {}
    for kind, model in DOCUMENTS.items():
        schema = model.model_json_schema(mode="serialization")
        schema = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"https://gitcoord.invalid/schema/{kind}.schema.json",
            **schema,
        }
        out[f"{kind}.schema.json"] = json.dumps(schema, indent=2, sort_keys=False) + "\n"
    return out


def main(argv: list[str]) -> int:
    target = SCHEMA_DIR
    stale = []
    for name, text in render().items():
        path = target / name
        if "--check" in argv:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            target.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if stale:
        print(
            f"out of date: {', '.join(stale)}; run `python -m gitcoord.domain.schema`",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
