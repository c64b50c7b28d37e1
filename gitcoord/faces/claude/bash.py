"""Which files a Bash command writes, for the Claude Code path guard.

Read conservatively, with `shlex` and no shell: what the shell itself writes
(redirections `>`, `>>`, `&>`, `>|`, `<>`), the commands that write the files they
are given (`rm`, `mv`, `cp`, `tee`, `touch`, `sed -i`, `perl -i`, `ln`, `install`,
`truncate`, `chmod`, `dd of=`, `curl -o`, `wget -O`, `git rm | mv | checkout -- |
restore`), and what `sh -c`, `eval`, `$(...)` and `<(...)` run inside. A folder or a
glob stands for everything below it (`rm -r src`, `sed -i s/a/b/ src/*.py`).

Where a command hides what it writes, it says so instead of guessing (`unclear`):
a file named by a variable or a command substitution, `xargs` or `find -exec`
feeding a writer, `cd` to a folder it cannot name, `patch` and `git apply`, an
archive extracted, a here-document never closed, quotes that do not close.

What programs do inside (a script, `python -c`, `make`) is not judged: the guard
sees the command line, as a reviewer would.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass, field

GLOB_CHARS = frozenset("*?[")
SUBST = "\x00subst\x00"  # stands for text the shell computes when the command runs
_SEPARATORS = frozenset({";", "&", "&&", "||", "|", "|&", ";;", ";&", ";;&", "(", ")", "\n"})
_WRITE_REDIRECTS = frozenset({">", ">>", ">|", "&>", "&>>", "<>", ">&", "&>|"})
_READ_REDIRECTS = frozenset({"<", "<&", "<<<"})
_KEYWORDS = frozenset({"if", "then", "else", "elif", "while", "until", "do", "!", "{", "time"})
_ENDS = frozenset({"fi", "done", "esac", "}"})
_WRAPPERS = frozenset({"sudo", "nice", "nohup", "command", "builtin", "exec", "stdbuf", "ionice"})
_SHELLS = frozenset({"sh", "bash", "zsh", "dash", "ksh"})
_WRITERS = frozenset(
    {"rm", "unlink", "rmdir", "shred", "touch", "truncate", "chmod", "chown", "chgrp", "tee"}
    | {"mv", "cp", "install", "ln", "rsync", "sed", "perl", "dd", "curl", "wget", "git"}
)
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_HEREDOC = re.compile(r"(?<!<)<<(?!<)(-?)\s*(['\"]?)([A-Za-z_][A-Za-z0-9_.-]*)\2")
MAX_DEPTH = 4


@dataclass
class Writes:
    """What a command writes: `files`, `trees` (a folder or glob: everything below it)
    and, for each part it cannot read, why (`unclear`)."""

    files: list[str] = field(default_factory=list)
    trees: list[str] = field(default_factory=list)
    unclear: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.files or self.trees or self.unclear)


def writes(command: str, cwd: str) -> Writes:
    """The files `command` (a Bash tool call's command) writes, run in `cwd`."""
    out = Writes()
    _Reader(out, cwd).script(command, 0)
    # each once, in order
    out.files = list(dict.fromkeys(out.files))
    out.trees = list(dict.fromkeys(out.trees))
    out.unclear = list(dict.fromkeys(out.unclear))
    return out


class _Reader:
    def __init__(self, out: Writes, cwd: str) -> None:
        self.out = out
        self.cwd: str | None = cwd

    # --- text to simple commands -----------------------------------------------------

    def script(self, text: str, depth: int) -> None:
        if depth > MAX_DEPTH:
            self.out.unclear.append("commands nested too deep to read")
            return
        plain = self._heredocs(text)
        if plain is None:
            return
        flat, inner = _substitutions(plain)
        if flat is None:
            self.out.unclear.append("a quote or $( that does not close")
            return
        for sub in inner:
            self.script(sub, depth + 1)
        text = flat.replace("\\\n", "")
        try:
            lex = shlex.shlex(text, posix=True, punctuation_chars=";&|<>()\n")
            lex.whitespace = " \t\r"
            lex.whitespace_split = True
            lex.commenters = ""
            tokens = list(lex)
        except ValueError:
            self.out.unclear.append("a quote that does not close")
            return
        words: list[str] = []
        for tok in tokens:
            if tok in _SEPARATORS or (set(tok) <= set(";&|\n()") and tok):
                self.simple(words, depth)
                words = []
            else:
                words.append(tok)
        self.simple(words, depth)

    def _heredocs(self, text: str) -> str | None:
        """`text` without here-document bodies (data, not commands)."""
        lines = text.split("\n")
        kept: list[str] = []
        i = 0
        while i < len(lines):
            line = lines[i]
            found = list(_HEREDOC.finditer(line))
            kept.append(_HEREDOC.sub(" ", line))
            i += 1
            for m in found:
                strip_tabs, delimiter = m.group(1) == "-", m.group(3)
                while i < len(lines):
                    body = lines[i].lstrip("\t") if strip_tabs else lines[i]
                    i += 1
                    if body == delimiter:
                        break
                else:
                    self.out.unclear.append(f"a here-document that never ends ({delimiter})")
                    return None
        return "\n".join(kept)

    # --- one simple command ----------------------------------------------------------

    def simple(self, words: list[str], depth: int) -> None:
        argv: list[str] = []
        i = 0
        while i < len(words):
            w = words[i]
            if w in _WRITE_REDIRECTS or w in _READ_REDIRECTS or w == "<<":
                target = words[i + 1] if i + 1 < len(words) else ""
                if argv and argv[-1].isdigit():
                    argv.pop()  # `2>file`: the fd, not an argument
                if w in _WRITE_REDIRECTS and not (
                    w == ">&" and (target.isdigit() or target == "-")
                ):
                    self.file(target, "a redirection")
                i += 2
                continue
            argv.append(w)
            i += 1
        while argv and argv[0] in _KEYWORDS:
            argv.pop(0)
        while argv and _ASSIGNMENT.match(argv[0]):
            argv.pop(0)
        if not argv or argv[0] in _ENDS:
            return
        self.command(argv, depth)

    def command(self, argv: list[str], depth: int) -> None:
        name = os.path.basename(argv[0])
        args = argv[1:]
        if name in _WRAPPERS:
            rest = _drop_options(args)
            if rest:
                self.command(rest, depth)
            return
        if name == "env":
            rest = [a for a in _drop_options(args) if not _ASSIGNMENT.match(a)]
            skip = next((k for k, a in enumerate(rest) if not _ASSIGNMENT.match(a)), None)
            if skip is not None:
                self.command(rest[skip:], depth)
            return
        if name == "timeout":
            rest = _drop_options(args)
            if len(rest) > 1:
                self.command(rest[1:], depth)
            return
        if name in ("cd", "pushd"):
            self._cd(args)
            return
        if name == "popd":
            self.cwd = None
            return
        if name in _SHELLS:
            for k, a in enumerate(args):
                if a.startswith("-") and not a.startswith("--") and "c" in a:
                    if k + 1 < len(args):
                        self.script(args[k + 1], depth + 1)
                    break
            return
        if name == "eval":
            self.script(" ".join(args), depth + 1)
            return
        if name == "xargs":
            inner = _drop_options(args)
            if inner:  # the names it reads at run time come last
                self.command([*inner, SUBST], depth)
            return
        if name == "find":
            self._find(args, depth)
            return
        if name in ("patch",) or (name == "tar" and _tar_extracts(args)) or name == "unzip":
            self.out.unclear.append(f"{name} writes the files its input names")
            return
        handler = getattr(self, "_" + name.replace("-", "_"), None)
        if name in _WRITERS and handler is not None:
            handler(args)
        elif name in ("unlink", "rmdir", "shred", "touch", "tee"):
            for a in _operands(args):
                self.operand(a, name)

    # --- the writers -------------------------------------------------------------------

    def _find(self, args: list[str], depth: int) -> None:
        if "-delete" in args:
            self.out.unclear.append("find -delete removes files only the run finds")
        k = 0
        while k < len(args):
            if args[k] in ("-exec", "-execdir", "-ok", "-okdir"):
                end = k + 1
                while end < len(args) and args[end] not in (";", "+"):
                    end += 1
                inner = [SUBST if "{}" in a else a for a in args[k + 1 : end]]
                if inner:
                    self.command(inner, depth)
                k = end
            k += 1

    def _rm(self, args: list[str]) -> None:
        for a in _operands(args):
            self.operand(a, "rm")

    def _truncate(self, args: list[str]) -> None:
        for a in _operands(args, takes_value={"-s", "-r", "--size", "--reference"}):
            self.operand(a, "truncate")

    def _chmod(self, args: list[str]) -> None:
        ops = _operands(args, takes_value={"--reference"})
        for a in ops[1:]:
            self.operand(a, "chmod")

    _chown = _chmod
    _chgrp = _chmod

    def _mv(self, args: list[str], verb: str = "mv", sources_written: bool = True) -> None:
        target, ops = _target_dir(args, takes_value={"-S", "--suffix"})
        if target is None:
            if len(ops) < 2:
                return
            *sources, dest = ops
        else:
            sources, dest = ops, target
        if sources_written:
            for s in sources:
                self.operand(s, verb)
        folder = target is not None or len(sources) > 1 or self._is_dir(dest)
        whole = any(self._is_dir(s) or _is_glob(s) for s in sources)
        if folder:
            for s in sources:
                self.operand(os.path.join(dest, os.path.basename(s.rstrip("/"))), verb, whole)
        else:
            self.operand(dest, verb, whole)

    def _cp(self, args: list[str]) -> None:
        self._mv(args, "cp", sources_written=False)

    def _install(self, args: list[str]) -> None:
        values = {"-m", "--mode", "-o", "--owner", "-g", "--group", "-S", "--suffix"}
        target, ops = _target_dir(args, takes_value=values)
        if "-d" in args or "--directory" in args:
            return
        if target is not None:
            for s in ops:
                self.operand(os.path.join(target, os.path.basename(s)), "install")
        elif len(ops) >= 2:
            self._mv([*ops], "install", sources_written=False)

    def _ln(self, args: list[str]) -> None:
        target, ops = _target_dir(args, takes_value={"-S", "--suffix"})
        if target is not None:
            for s in ops:
                self.operand(os.path.join(target, os.path.basename(s)), "ln")
        elif len(ops) == 1:
            self.operand(os.path.basename(ops[0].rstrip("/")), "ln")
        elif len(ops) >= 2:
            self._mv(ops, "ln", sources_written=False)

    def _rsync(self, args: list[str]) -> None:
        ops = _operands(args)
        if len(ops) >= 2:
            self.operand(ops[-1], "rsync", whole=True)

    def _tee(self, args: list[str]) -> None:
        for a in _operands(args):
            self.operand(a, "tee")

    def _dd(self, args: list[str]) -> None:
        for a in args:
            if a.startswith("of="):
                self.file(a[3:], "dd")

    def _curl(self, args: list[str]) -> None:
        for k, a in enumerate(args):
            if a in ("-o", "--output") and k + 1 < len(args):
                self.file(args[k + 1], "curl -o")
            elif a.startswith("--output="):
                self.file(a.split("=", 1)[1], "curl -o")

    def _wget(self, args: list[str]) -> None:
        for k, a in enumerate(args):
            if a in ("-O", "--output-document") and k + 1 < len(args):
                self.file(args[k + 1], "wget -O")
            elif a.startswith("--output-document="):
                self.file(a.split("=", 1)[1], "wget -O")

    def _sed(self, args: list[str]) -> None:
        in_place = any(
            a.startswith("--in-place")
            or (a.startswith("-") and not a.startswith("--") and "i" in a)
            for a in args
            if a != "-"
        )
        if not in_place:
            return
        script_given = any(
            a in ("-e", "-f", "--expression", "--file")
            or a.startswith(("--expression=", "--file="))
            for a in args
        )
        ops = _operands(args, takes_value={"-e", "-f", "-l", "--expression", "--file"})
        ops = [a for a in ops if a]  # BSD sed's `-i ''`
        for a in ops if script_given else ops[1:]:
            self.operand(a, "sed -i")

    def _perl(self, args: list[str]) -> None:
        flags = [a for a in args if a.startswith("-") and not a.startswith("--")]
        if not any("i" in f[1:].split(".")[0] for f in flags):
            return
        script_given = any(f.endswith(("e", "E")) for f in flags)
        ops = _operands(args, takes_value={"-e", "-E"}, clusters_take_value="eE")
        for a in ops if script_given else ops[1:]:
            self.operand(a, "perl -i")

    def _git(self, args: list[str]) -> None:
        k = 0
        cwd = self.cwd
        while k < len(args) and args[k].startswith("-"):
            if args[k] == "-C" and k + 1 < len(args):
                cwd = self._join(cwd, args[k + 1])
                k += 2
            elif args[k] in ("-c", "--git-dir", "--work-tree", "--namespace"):
                if args[k] in ("--git-dir", "--work-tree"):
                    self.out.unclear.append(f"git {args[k]}: another work tree")
                    return
                k += 2
            else:
                k += 1
        if k >= len(args):
            return
        sub, rest = args[k], args[k + 1 :]
        saved, self.cwd = self.cwd, cwd
        try:
            if sub in ("rm", "restore"):
                values = {"-s", "--source", "--pathspec-from-file"}
                if any(a.startswith("--pathspec-from-file") for a in rest):
                    self.out.unclear.append(f"git {sub} --pathspec-from-file")
                    return
                for a in _operands(rest, takes_value=values):
                    self.operand(a, f"git {sub}")
            elif sub == "mv":
                self._mv(rest, "git mv")
            elif sub == "checkout":
                self._git_checkout(rest)
            elif sub in ("apply", "am") and not {"--cached", "--check", "--stat"} & set(rest):
                self.out.unclear.append(f"git {sub} writes the files its patch names")
        finally:
            self.cwd = saved

    def _git_checkout(self, rest: list[str]) -> None:
        values = {"-b", "-B", "--orphan", "--conflict", "--pathspec-from-file"}
        if "--" in rest:
            k = rest.index("--")
            for a in rest[k + 1 :]:
                self.operand(a, "git checkout --")
            return
        if any(a in ("-b", "-B", "--orphan") for a in rest):
            return  # a new branch: nothing checked out over the work tree's files
        ops = _operands(rest, takes_value=values)
        # `git checkout X` switches to branch X, unless X is a path
        for n, a in enumerate(ops):
            if n > 0 or self._exists(a):
                self.operand(a, "git checkout")

    # --- operands ------------------------------------------------------------------------

    def _cd(self, args: list[str]) -> None:
        ops = _operands(args)
        if not ops:
            self.cwd = os.path.expanduser("~")
        elif ops[0] == "-" or _computed(ops[0]):
            self.cwd = None
        else:
            self.cwd = self._join(self.cwd, ops[0])

    def _join(self, base: str | None, path: str) -> str | None:
        if _computed(path):
            return None
        path = os.path.expanduser(path)
        if os.path.isabs(path):
            return path
        return None if base is None else os.path.normpath(os.path.join(base, path))

    def _where(self, path: str, what: str) -> str | None:
        if not path:
            return None
        if _computed(path):
            self.out.unclear.append(f"{what} writes a file named at run time ({_shown(path)})")
            return None
        full = self._join(self.cwd, path)
        if full is None:
            self.out.unclear.append(f"{what} writes {path} in a folder named at run time")
        return full

    def _is_dir(self, path: str) -> bool:
        full = self._join(self.cwd, path)
        return path.endswith("/") or (full is not None and os.path.isdir(full))

    def _exists(self, path: str) -> bool:
        full = self._join(self.cwd, path)
        return full is not None and os.path.lexists(full)

    def file(self, path: str, what: str) -> None:
        for one in _braces(path):
            full = self._where(one, what)
            if full is not None and not full.startswith("/dev/"):
                self.out.files.append(full)

    def operand(self, path: str, what: str, whole: bool = False) -> None:
        """A file, or (a folder, a glob, or `whole`) everything below it."""
        for one in _braces(path):
            full = self._where(one, what)
            if full is None or full.startswith("/dev/"):
                continue
            if whole or _is_glob(one) or self._is_dir(one):
                self.out.trees.append(full)
            else:
                self.out.files.append(full)


# --- helpers ---------------------------------------------------------------------------------


def _shown(path: str) -> str:
    return path.replace(SUBST, "$(...)")


def _computed(word: str) -> bool:
    """A word the shell expands into a name: a variable or a command substitution."""
    return SUBST in word or "$" in word


def _is_glob(word: str) -> bool:
    return any(c in GLOB_CHARS for c in word)


_BRACE = re.compile(r"\{([^{}]*,[^{}]*)\}")


def _braces(word: str, limit: int = 64) -> list[str]:
    """Bash's brace expansion: `src/{a,b}.py` is two names (at most `limit`)."""
    m = _BRACE.search(word)
    if m is None:
        return [word]
    out: list[str] = []
    for alt in m.group(1).split(","):
        out += _braces(word[: m.start()] + alt + word[m.end() :], limit)
        if len(out) >= limit:
            break
    return out[:limit]


def _drop_options(args: list[str]) -> list[str]:
    k = 0
    while k < len(args) and args[k].startswith("-") and args[k] != "-":
        k += 1
    return args[k:]


def _operands(
    args: list[str],
    takes_value: set[str] | frozenset[str] = frozenset(),
    clusters_take_value: str = "",
) -> list[str]:
    """The non-option arguments (`--` ends the options; `-x VALUE` for `takes_value`)."""
    out: list[str] = []
    k = 0
    while k < len(args):
        a = args[k]
        if a == "--":
            out += args[k + 1 :]
            break
        if a.startswith("-") and a != "-":
            if a in takes_value or (
                clusters_take_value and not a.startswith("--") and a[-1] in clusters_take_value
            ):
                k += 2
                continue
            k += 1
            continue
        out.append(a)
        k += 1
    return out


def _target_dir(
    args: list[str], takes_value: set[str] | frozenset[str] = frozenset()
) -> tuple[str | None, list[str]]:
    """`-t DIR` / `--target-directory=DIR` and the other operands."""
    target = None
    rest: list[str] = []
    k = 0
    while k < len(args):
        a = args[k]
        if a in ("-t", "--target-directory") and k + 1 < len(args):
            target = args[k + 1]
            k += 2
            continue
        if a.startswith("--target-directory="):
            target = a.split("=", 1)[1]
            k += 1
            continue
        rest.append(a)
        k += 1
    return target, _operands(rest, takes_value=takes_value)


def _tar_extracts(args: list[str]) -> bool:
    first = args[0] if args else ""
    return bool(
        any(a in ("-x", "--extract", "--get") for a in args)
        or (first and not first.startswith("-") and "x" in first)
        or any(a.startswith("-") and not a.startswith("--") and "x" in a for a in args)
    )


def _substitutions(text: str) -> tuple[str | None, list[str]]:
    """`text` with each `$(...)`, backtick, `<(...)` and `>(...)` outside single quotes
    replaced by SUBST, and the commands inside them (None: one does not close)."""
    out: list[str] = []
    inner: list[str] = []
    i, n = 0, len(text)
    quote = ""
    while i < n:
        c = text[i]
        if quote == "'":
            out.append(c)
            if c == "'":
                quote = ""
            i += 1
            continue
        if c == "\\" and i + 1 < n:
            out.append(text[i : i + 2])
            i += 2
            continue
        if c == "'" and not quote:
            quote = "'"
            out.append(c)
            i += 1
            continue
        if c == '"':
            quote = "" if quote == '"' else '"'
            out.append(c)
            i += 1
            continue
        if c == "#" and not quote and (i == 0 or text[i - 1] in " \t\n;&|()"):
            eol = text.find("\n", i)  # a comment, to the end of its line
            i = n if eol < 0 else eol
            continue
        opens = text.startswith("$(", i) or (
            not quote and (text.startswith("<(", i) or text.startswith(">(", i))
        )
        if opens:
            end = _closing(text, i + 2)
            if end is None:
                return None, inner
            body = text[i + 2 : end]
            if not (text.startswith("$((", i) and body.startswith("(")):
                inner.append(body)  # $((...)) is arithmetic, not a command
            if text[i] == ">":
                out.append(f" > {SUBST} ")  # >(cmd): the shell writes into cmd
            elif text[i] == "<":
                out.append(f" {SUBST} ")
            else:
                out.append(SUBST)
            i = end + 1
            continue
        if c == "`":
            end = text.find("`", i + 1)
            if end < 0:
                return None, inner
            inner.append(text[i + 1 : end])
            out.append(SUBST)
            i = end + 1
            continue
        out.append(c)
        i += 1
    return "".join(out), inner


def _closing(text: str, start: int) -> int | None:
    """The index of the `)` that closes a `(` just before `start`."""
    depth = 1
    quote = ""
    i = start
    while i < len(text):
        c = text[i]
        if quote:
            if c == "\\" and quote == '"':
                i += 2
                continue
            if c == quote:
                quote = ""
        elif c == "\\":
            i += 2
            continue
        elif c in "'\"":
            quote = c
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return None
