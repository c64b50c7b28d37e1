"""YAML in and out: safe loading only, stable readable output.

Keys keep the model's field order, multi-line text is written as a literal
block, and every file ends with a newline, so diffs on the branch read well.
"""

from __future__ import annotations

import io
from typing import Any

from pydantic import BaseModel
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

MAX_FILE_BYTES = 256 * 1024


class YamlProblem(ValueError):
    pass


def _yaml() -> YAML:
    y = YAML(typ="safe", pure=True)
    y.default_flow_style = False
    y.width = 4096
    y.representer.sort_base_mapping_type_on_output = False

    def str_rep(dumper: Any, data: str) -> Any:
        # A literal block reads best, but YAML folds \r, NEL and the Unicode line and
        # paragraph separators inside one: such text is written double-quoted instead.
        if "\n" in data and not any(c in data for c in "\r\x85\u2028\u2029"):
            return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|")
        return dumper.represent_str(data)

    y.representer.add_representer(str, str_rep)
    return y


_Y = _yaml()


def dump(model: BaseModel) -> bytes:
    data = model.model_dump(mode="json", exclude_none=True, exclude_defaults=False)
    buf = io.StringIO()
    _Y.dump(data, buf)
    return buf.getvalue().encode("utf-8")


def load(raw: bytes) -> Any:
    if len(raw) > MAX_FILE_BYTES:
        raise YamlProblem(f"file is {len(raw)} bytes, over the {MAX_FILE_BYTES}-byte limit")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise YamlProblem(f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    try:
        return _Y.load(text)
    except YAMLError as exc:
        raise YamlProblem(f"malformed YAML: {' '.join(str(exc).split())}") from None
