"""YAML in and out: safe loading only, stable readable output.

Keys keep the model's field order, multi-line text is written as a literal
block, and every file ends with a newline, so diffs on the branch read well.
"""

from __future__ import annotations

import io
import re
import threading
from typing import Any

from pydantic import BaseModel
from ruamel.yaml import YAML
from ruamel.yaml.composer import Composer
from ruamel.yaml.error import YAMLError
from ruamel.yaml.events import AliasEvent

MAX_FILE_BYTES = 256 * 1024
# Outside YAML's printable set (YAML 1.2, 5.1): C0 but tab and line feed, DEL, C1 but NEL,
# surrogates, U+FFFE and U+FFFF.
_UNPRINTABLE = re.compile("[^\t\n\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


class YamlProblem(ValueError):
    pass


NO_ANCHORS = "anchors and aliases are not allowed"


class _PlainComposer(Composer):
    """Refuses every anchor (`&x`) and alias (`*x`) before any node is built from it.

    Aliases let a few hundred bytes stand for millions of nodes (the "billion laughs":
    a 362-byte file cost the server hook 7 s and 590 MB), and coordination files are
    plain data that never need them. Every node of a document, its root and each item,
    key and value, is composed by `compose_node`, and an alias can only appear where a
    node does: checking here refuses them all, in the one pass the parse makes anyway.
    """

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.parser.peek_event()
        if not isinstance(event, AliasEvent) and event.anchor is None:
            return super().compose_node(parent, index)
        line = event.start_mark.line + 1 if event.start_mark is not None else "?"
        raise YamlProblem(f"{NO_ANCHORS} (line {line})")


def _yaml() -> YAML:
    y = YAML(typ="safe", pure=True)
    y.Composer = _PlainComposer
    y.default_flow_style = False
    y.width = 4096
    y.representer.sort_base_mapping_type_on_output = False
    # Never write an anchor either: a document that shares one list between two fields
    # is written out twice, as the reader above requires.
    y.representer.ignore_aliases = lambda data: True

    def str_rep(dumper: Any, data: str) -> Any:
        # A literal block reads best, but YAML folds \r, NEL and the Unicode line and
        # paragraph separators inside one, and cannot hold a character outside YAML's
        # printable set (U+0080, U+FFFE, ...) at all: such text is written double-quoted
        # instead, where those are escaped.
        special = any(c in data for c in "\r\x85\u2028\u2029") or _UNPRINTABLE.search(data)
        if special:  # plain and single-quoted scalars would fold them too
            return dumper.represent_scalar("tag:yaml.org,2002:str", data, style='"')
        if "\n" in data:
            return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|")
        return dumper.represent_str(data)

    y.representer.add_representer(str, str_rep)
    return y


# One parser and emitter per thread: a ruamel YAML object keeps its reader, scanner,
# parser and emitter state on itself, so two threads using one corrupt each other's
# documents (found at 200 sessions as threads of 10 processes: a valid claim file
# failed to parse, "'NoneType' object has no attribute 'anchor'"). Long-lived processes
# work in threads: the web page (reads and actions in worker threads), the API's users.
_LOCAL = threading.local()


def _y() -> YAML:
    y: YAML | None = getattr(_LOCAL, "yaml", None)
    if y is None:
        y = _LOCAL.yaml = _yaml()
    return y


def dump(model: BaseModel) -> bytes:
    """The document as YAML. Fields a newer format added (a model's `NEWER_FIELDS`) are
    left out while they hold their default, so a branch at an older format never holds
    a key that an older gitcoord reading it would refuse."""
    data = model.model_dump(mode="json", exclude_none=True, exclude_defaults=False)
    fields = type(model).model_fields
    for name in getattr(type(model), "NEWER_FIELDS", ()):
        info = fields[name]
        default = info.get_default(call_default_factory=True)
        if getattr(model, name) == default:
            data.pop(name, None)
    buf = io.StringIO()
    _y().dump(data, buf)
    return buf.getvalue().encode("utf-8")


def parser_version() -> str:
    """What `load` depends on besides the bytes (the parse cache keys on it)."""
    import ruamel.yaml

    # "+plain": anchors and aliases are refused (a cache written before that rule may
    # hold a file's expanded aliases as if it were valid; a new version drops it).
    return f"{ruamel.yaml.__version__}+plain"


def load(raw: bytes) -> Any:
    if len(raw) > MAX_FILE_BYTES:
        raise YamlProblem(f"file is {len(raw)} bytes, over the {MAX_FILE_BYTES}-byte limit")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise YamlProblem(f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    deep = _too_deep(text)
    if deep:
        raise YamlProblem(f"malformed YAML: {deep}")
    try:
        return _y().load(text)
    except YamlProblem:
        raise
    except YAMLError as exc:
        raise YamlProblem(f"malformed YAML: {' '.join(str(exc).split())}") from None
    except RecursionError:
        raise YamlProblem("malformed YAML: nested too deeply") from None
    except Exception as exc:  # a constructor's own error: `2026-13-45`, `!!int x`, ...
        raise YamlProblem(f"malformed YAML: {' '.join(str(exc).split())[:200]}") from None


MAX_FLOW_DEPTH = 32
_COMPACT = re.compile(r"(?:[-?][ \t]+){32}")  # `- - - - x`: one level per indicator
MAX_BLOCK_COLUMN = 256
_TOKEN_START = "[{,"


def _too_deep(text: str) -> str | None:
    """Why `text` nests too deeply to parse in bounded time, or None.

    The pure-Python parser spends time quadratic in the nesting depth (a 6 KB file
    of 3000 nested `[` took ~10 s), and recurses once per level. No coordination
    file nests beyond a few levels, so deeper ones are refused before parsing.
    Linear, and free for ordinary files (few brackets, little indentation). It may
    over-count (brackets in exotic multi-line quoted text), never under-count:
    quoted text ends at the end of a line here, and a quote only opens one where
    YAML's would (line start, after `[ { ,`, or after `: - ?` and a space; `-` only
    outside flow collections).
    """
    if (
        text.count("[") + text.count("{") <= MAX_FLOW_DEPTH
        and "\n" + " " * 64 not in text
        and not _COMPACT.search(text)
    ):
        return None
    depth = 0
    block_indent: int | None = None  # inside a block scalar started at this indent
    for line in text.split("\n"):
        indent = len(line) - len(line.lstrip(" "))
        if block_indent is not None:
            if not line.strip() or indent > block_indent:
                continue  # literal or folded text
            block_indent = None
        if depth == 0 and indent + len(line) - len(line.lstrip(" -?")) > MAX_BLOCK_COLUMN:
            return f"nested too deeply (column {MAX_BLOCK_COLUMN})"
        quote = ""
        prev = ""  # the last character that was not a space, on this line
        spaced = True  # whitespace since `prev`
        i = 0
        while i < len(line):
            c = line[i]
            if quote:
                if c == "\\" and quote == '"':
                    i += 1
                elif c == quote:
                    if quote == "'" and line[i + 1 : i + 2] == "'":
                        i += 1
                    else:
                        quote, prev, spaced = "", c, False
            elif c in " \t":
                spaced = True
            else:
                indicators = ":?" if depth else ":-?"  # `-` is plain text in flow context
                opens = prev == "" or prev in _TOKEN_START or (prev in indicators and spaced)
                if c in "!&" and opens:  # a tag or anchor: what follows it still opens
                    while i + 1 < len(line) and line[i + 1] not in " \t":
                        i += 1
                    c = ":"
                elif c in "'\"" and opens:
                    quote = c
                elif c == "#" and spaced:
                    break  # a comment
                elif c in "[{":
                    if not opens and depth == 0:
                        c = "x"  # inside a plain scalar: just text
                    else:
                        depth += 1
                        if depth > MAX_FLOW_DEPTH:
                            return f"nested too deeply (more than {MAX_FLOW_DEPTH} levels)"
                elif c in "]}":
                    depth = max(0, depth - 1)
                elif c in "|>" and opens and depth == 0:
                    rest = line[i + 1 :].split(" #", 1)[0].strip()
                    if all(ch in "0123456789+-" for ch in rest):
                        block_indent = indent
                        break
                prev, spaced = c, False
            i += 1
    return None
