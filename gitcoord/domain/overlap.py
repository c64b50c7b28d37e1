"""When two claims of different names still cover the same work.

Two kinds of names overlap without being equal:

- **path globs** (`claim path 'src/api/**'`), gitignore-style. Whether a path is
  inside a glob is decided by `pathspec` (the gitignore matcher the guard uses).
  Whether two globs can match a common path is a language-intersection question
  no glob library answers, so it is decided here by searching the product of the
  two patterns' automata, segment by segment and, inside a segment, character by
  character. A property test checks it against `pathspec` (never "no overlap"
  when some path matches both).
- **ranges** (`prospects:1-25`, `emails:18-33`, `prospects:7`): items A..B of a set;
  ranges of one set overlap when they share an item. Adjacent ranges do not.
"""

from __future__ import annotations

import re
import string
from collections import deque
from functools import lru_cache
from typing import Any

RANGE_RE = re.compile(r"^(?P<set>[A-Za-z0-9_.@+=,~-]+):(?P<a>\d{1,9})(?:-(?P<b>\d{1,9}))?$")
PATH_TYPE = "path"

# Characters a path segment can hold, for the intersection search: printable ASCII
# but '/', and one stand-in for everything else (no class can name it).
_ALPHABET = [c for c in string.printable if c not in "/\t\n\r\x0b\x0c"] + ["\u00e9"]


def parse_range(name: str) -> tuple[str, int, int] | None:
    """'prospects:1-25' -> ('prospects', 1, 25); None when the name is not a range."""
    m = RANGE_RE.fullmatch(name)
    if not m:
        return None
    a = int(m.group("a"))
    b = int(m.group("b") or a)
    return m.group("set"), a, b


def range_problem(name: str) -> str | None:
    parsed = parse_range(name)
    if parsed and parsed[1] > parsed[2]:
        return f"range {name!r} ends before it starts"
    return None


def overlaps(type_: str, a: str, b: str) -> bool:
    """Do claims `type_/a` and `type_/b` cover some common item or path?"""
    if a == b:
        return True
    if type_ == PATH_TYPE:
        return globs_overlap(a, b)
    ra, rb = parse_range(a), parse_range(b)
    if ra and rb and ra[0] == rb[0]:
        return ra[1] <= rb[2] and rb[1] <= ra[2]
    return False


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
