"""When two claims of different names still cover the same work.

Two kinds of names overlap without being equal:

- **path globs** (`claim path 'src/api/**'`), gitignore-style. Whether a path is
  inside a glob is decided by `pathspec` (the gitignore matcher the guard uses).
  Whether two globs can match a common path is a language-intersection question
  no glob library answers, so it is decided here by searching the product of the
  two patterns' automata, segment by segment and, inside a segment, character by
  character. A property test checks it against `pathspec` (never "no overlap"
  when some path matches both).
- **items of a set** (`batch prospects:1-25`, `prospects:1,3,7`, `prospects:1..5`,
  `prospects`): one grammar (`items_of`, `items_problem`) for every claim name
  that covers items. `SET` and `SET:*` cover every item of the set; `SET:SPEC`
  the items SPEC lists — numbers, ranges `A-B` or `A..B`, separated by commas.
  Two names of one set overlap when they share an item; adjacent ranges do not.
  A `batch` claim's name must be in this grammar (the command line refuses other
  forms, showing the accepted ones, and the verifier refuses a new claim of
  another form); names of other types (not `path`) that have this form are
  compared the same way, and a bare name covers every `NAME:...` claim of its type.
  One function, `overlaps`, answers for the claim check, the validator (and so
  `doctor` and the server hook) and `metrics`.
"""

from __future__ import annotations

import re
import string
from collections import deque
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

# The one form `range_problem` has always judged (a single range that ends before it
# starts is a claim-name problem of the state): kept exactly, so that no claim an
# older gitcoord wrote becomes a problem of the branch.
RANGE_RE = re.compile(r"^(?P<set>[A-Za-z0-9_.@+=,~-]+):(?P<a>\d{1,9})(?:-(?P<b>\d{1,9}))?$")
PATH_TYPE = "path"
ITEMS_TYPE = "batch"  # the type whose names are always items of a set

# Characters a path segment can hold, for the intersection search: printable ASCII
# but '/', and one stand-in for everything else (no class can name it).
_ALPHABET = [c for c in string.printable if c not in "/\t\n\r\x0b\x0c"] + ["\u00e9"]

# --- items of a set -------------------------------------------------------------------

SET_PATTERN = r"[A-Za-z0-9_][A-Za-z0-9_.@+=~-]{0,63}"
_SET_RE = re.compile(SET_PATTERN)
_PART = r"\d{1,9}(?:(?:-|\.\.)\d{1,9})?"
_SPEC_RE = re.compile(rf"{_PART}(?:,{_PART})*")
_PART_RE = re.compile(r"(?P<a>\d{1,9})(?:(?:-|\.\.)(?P<b>\d{1,9}))?")
FORMS = (
    "SET (every item), SET:* (every item), SET:7 (one item), SET:1-25 or SET:1..25 "
    "(a range), SET:1,3,7 or SET:1-5,9 (a list), e.g. prospects:1-25"
)

Span = tuple[int, int]


@dataclass(frozen=True)
class Items:
    """What a claim name covers as items of a set: every item (`spans` and `opaque`
    None), the items of `spans` (sorted, merged), or, for a part that is not a list of
    items (`api:v2`, a name an older gitcoord let through), only itself."""

    set: str
    spans: tuple[Span, ...] | None = None
    opaque: str | None = None

    @property
    def whole(self) -> bool:
        return self.spans is None and self.opaque is None


def _merge(spans: list[Span]) -> tuple[Span, ...]:
    """Sorted, with overlapping and adjacent spans joined (items are whole numbers)."""
    out: list[Span] = []
    for a, b in sorted(spans):
        if out and a <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return tuple(out)


def _spans(spec: str) -> list[Span] | str:
    """The spans a list of items names, or why it names none (a reversed range)."""
    found = []
    for part in spec.split(","):
        m = _PART_RE.fullmatch(part)
        if m is None:  # pragma: no cover - _SPEC_RE matched the whole list
            return f"{part!r} is not an item or a range"
        a = int(m.group("a"))
        b = int(m.group("b") or a)
        if a > b:
            return f"range {part!r} ends before it starts"
        found.append((a, b))
    return found


@lru_cache(maxsize=8192)
def items_of(name: str) -> Items:
    """What `name` covers, leniently (any name a claim file may hold): `SET` and
    `SET:*` every item; `SET:<list of items>` those; any other part only itself."""
    set_, sep, spec = name.partition(":")
    if not sep or spec == "*":
        return Items(set_)
    if _SPEC_RE.fullmatch(spec):
        spans = _spans(spec)
        if not isinstance(spans, str):
            return Items(set_, _merge(spans))
    return Items(set_, opaque=spec)


def items_problem(type_: str, name: str) -> str | None:
    """Why the item grammar refuses `type_/name` (None: it does not). A `batch` name
    must be items of a set; a name of another type (not `path`) is judged only where
    it has the form of a list of items, whose ranges must not end before they start."""
    if type_ == PATH_TYPE:
        return None
    set_, sep, spec = name.partition(":")
    if type_ == ITEMS_TYPE:
        why = None
        if not _SET_RE.fullmatch(set_):
            why = f"{set_!r} is not a set name (letters, digits and _ . @ + = ~ -)"
        elif sep and spec != "*":
            if not _SPEC_RE.fullmatch(spec):
                why = f"{spec!r} is not a list of items"
            else:
                spans = _spans(spec)
                why = spans if isinstance(spans, str) else None
        if why is None:
            return None
        return f"invalid batch name {name!r}: {why}; a batch names items of a set: {FORMS}"
    if sep and _SPEC_RE.fullmatch(spec):
        spans = _spans(spec)
        if isinstance(spans, str):
            return f"{spans} (items of a set: {FORMS})"
    return None


def canonical(name: str) -> str:
    """One spelling for the items a name covers: `prospects:*` -> `prospects`,
    `prospects:1..5` -> `prospects:1-5`, `prospects:9,1-3,2` -> `prospects:1-3,9`
    (a name with another part is returned as it is)."""
    items = items_of(name)
    if items.opaque is not None:
        return name
    if items.spans is None:
        return items.set
    parts = [str(a) if a == b else f"{a}-{b}" for a, b in items.spans]
    return f"{items.set}:{','.join(parts)}"


def parse_range(name: str) -> tuple[str, int, int] | None:
    """'prospects:1-25' -> ('prospects', 1, 25); None when the name is not one range."""
    m = RANGE_RE.fullmatch(name)
    if not m:
        return None
    a = int(m.group("a"))
    b = int(m.group("b") or a)
    return m.group("set"), a, b


def range_problem(name: str) -> str | None:
    """A single range that ends before it starts: a problem of the state (it covers
    nothing, so it would never conflict with anything)."""
    parsed = parse_range(name)
    if parsed and parsed[1] > parsed[2]:
        return f"range {name!r} ends before it starts"
    return None


def _items_overlap(a: str, b: str) -> bool:
    ia, ib = items_of(a), items_of(b)
    if ia.set != ib.set:
        return False
    if ia.whole or ib.whole:
        return True
    if ia.spans is None or ib.spans is None:
        return False  # a part that is not items is only itself (equal names: above)
    i = j = 0
    while i < len(ia.spans) and j < len(ib.spans):
        (a1, b1), (a2, b2) = ia.spans[i], ib.spans[j]
        if a1 <= b2 and a2 <= b1:
            return True
        if b1 < b2:
            i += 1
        else:
            j += 1
    return False


def overlaps(type_: str, a: str, b: str) -> bool:
    """Do claims `type_/a` and `type_/b` cover some common item or path? The one
    answer for the claim check, the validator (doctor, the hooks) and metrics."""
    if a == b:
        return True
    if type_ == PATH_TYPE:
        return globs_overlap(a, b)
    return _items_overlap(a, b)


def folder_glob(name: str) -> str:
    """A path claim of a folder: `docs/` means everything below it, `docs/**`."""
    if name.endswith("/") and name.strip("/"):
        return name.rstrip("/") + "/**"
    return name


# --- path globs ------------------------------------------------------------------------


def matcher(glob: str) -> Any:
    """A pathspec matcher for one gitignore-style glob (raises ValueError if malformed)."""
    import pathspec

    try:
        return pathspec.GitIgnoreSpec.from_lines([glob])
    except Exception as exc:  # pathspec raises its own error types for bad patterns
        raise ValueError(f"invalid glob {glob!r}: {exc}") from None


@lru_cache(maxsize=4096)
def glob_problem(glob: str) -> str | None:
    """Why `matcher` cannot compile `glob`, or None. Cached: the validator asks about
    every path claim of a state on every load, and a glob's answer never changes."""
    try:
        matcher(glob)
    except ValueError as exc:
        return str(exc)
    return None


def path_in(glob: str, path: str) -> bool:
    return bool(matcher(glob).match_file(path))


def _segments(glob: str) -> tuple[str, ...]:
    """gitignore semantics as segments: unanchored names match at any depth, a match
    covers everything below it, and a trailing '/' means the folder's contents."""
    g = glob.strip()
    anchored = "/" in g.rstrip("/")
    g = g.strip("/")
    segs = [s for s in g.split("/") if s]
    if not anchored:
        segs = ["**", *segs]
    segs.append("**")
    collapsed: list[str] = []
    for s in segs:
        if s == "**" and collapsed and collapsed[-1] == "**":
            continue
        collapsed.append(s)
    return tuple(collapsed)


def _tokens(seg: str) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    i = 0
    while i < len(seg):
        c = seg[i]
        if c == "*":
            while i < len(seg) and seg[i] == "*":
                i += 1
            out.append(("star", None))
            continue
        if c == "?":
            out.append(("one", None))
        elif c == "[":
            end = seg.find("]", i + 2 if i + 1 < len(seg) and seg[i + 1] in "!^" else i + 1)
            if end == -1:
                out.append(("lit", c))
            else:
                body = seg[i + 1 : end]
                neg = body[:1] in ("!", "^")
                if neg:
                    body = body[1:]
                chars: set[str] = set()
                j = 0
                while j < len(body):
                    if j + 2 < len(body) and body[j + 1] == "-":
                        chars.update(chr(k) for k in range(ord(body[j]), ord(body[j + 2]) + 1))
                        j += 3
                    else:
                        chars.add(body[j])
                        j += 1
                out.append(("class", (neg, frozenset(chars))))
                i = end + 1
                continue
        else:
            out.append(("lit", c))
        i += 1
    return out


def _accepts(tok: tuple[str, Any], ch: str) -> bool:
    kind, arg = tok
    if kind in ("star", "one"):
        return True
    if kind == "lit":
        return bool(ch == arg)
    neg, chars = arg
    return bool((ch in chars) != neg)


@lru_cache(maxsize=4096)
def _segment_overlap(p: str, q: str) -> bool:
    """Is there a non-empty segment (no '/') matched by both segment patterns?"""
    if p == "**" or q == "**":
        return True
    tp, tq = _tokens(p), _tokens(q)
    start = (0, 0, False)
    seen = {start}
    todo = deque([start])
    while todo:
        i, j, used = todo.popleft()
        if i == len(tp) and j == len(tq) and used:
            return True
        nxt: list[tuple[int, int, bool]] = []
        if i < len(tp) and tp[i][0] == "star":
            nxt.append((i + 1, j, used))
        if j < len(tq) and tq[j][0] == "star":
            nxt.append((i, j + 1, used))
        if i < len(tp) and j < len(tq):
            ip = i if tp[i][0] == "star" else i + 1
            jq = j if tq[j][0] == "star" else j + 1
            if any(_accepts(tp[i], ch) and _accepts(tq[j], ch) for ch in _ALPHABET):
                nxt.append((ip, jq, True))
        for state in nxt:
            if state not in seen:
                seen.add(state)
                todo.append(state)
    return False


def globs_overlap(a: str, b: str) -> bool:
    """Can some path match both gitignore-style globs? (product-automaton search)"""
    sa, sb = _segments(a), _segments(b)
    start = (0, 0)
    seen = {start}
    todo = deque([start])
    while todo:
        i, j = todo.popleft()
        if i == len(sa) and j == len(sb):
            return True
        moves: list[tuple[int, int]] = []
        if i < len(sa) and sa[i] == "**":
            moves.append((i + 1, j))
        if j < len(sb) and sb[j] == "**":
            moves.append((i, j + 1))
        if i < len(sa) and j < len(sb) and _segment_overlap(sa[i], sb[j]):
            # consume one path segment on both sides; '**' may keep consuming
            moves.append((i if sa[i] == "**" else i + 1, j if sb[j] == "**" else j + 1))
        for m in moves:
            if m not in seen:
                seen.add(m)
                todo.append(m)
    return False
