"""One click command per verb, made from its declaration (`gitcoord.api.verbs`).

Positional parameters become arguments, the others options; types, ranges,
choices, defaults and help come from the `Param`. Each command runs the verb on
the Coordinator that the root options describe and prints its result through
`emit` (the verb's text, or its JSON document with --json). Nothing here knows
any particular verb.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

import click

from ...api.verb import Param, Verb
from .app import Ctx, common, emit


def _percent(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """PROGRESS as people write it: 40 or 40% (`api.verb.percent`)."""
    from ...api.verb import percent

    if value is None:
        return None
    try:
        return percent(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


def _click_type(p: Param) -> Any:
    if p.percent:
        return str  # converted by `_percent`, which takes 40%
    if p.choices is not None:
        return click.Choice(list(p.choices))
    if p.kind is int and (p.low is not None or p.high is not None):
        return click.IntRange(
            None if p.low is None else int(p.low), None if p.high is None else int(p.high)
        )
    if p.kind is float and (p.low is not None or p.high is not None):
        return click.FloatRange(p.low, p.high, min_open=p.low_open)
    if p.kind in (int, float):
        return p.kind
    return str


def _decorate(p: Param) -> Any:
    if p.positional:
        if p.kind is list:
            return click.argument(p.name, nargs=-1, metavar=p.metavar)
        return click.argument(
            p.name,
            required=p.required,
            type=_click_type(p),
            metavar=p.metavar,
            callback=_percent if p.percent else None,
        )
    if p.kind is bool:
        return click.option(p.option, p.name, is_flag=True, help=p.help)
    return click.option(
        p.option,
        p.name,
        type=_click_type(p),
        multiple=p.kind is list,
        required=p.required,
        default=None if p.required or p.kind is list else p.default,
        show_default=p.show_default,
        metavar=p.metavar,
        help=p.help,
    )


def _read_stdin(values: dict[str, Any], verb: Verb) -> None:
    """`-` for a parameter that takes standard input (send's BODY)."""
    from ...domain.models import BODY_MAX_BYTES

    for p in verb.params:
        if p.stdin and values.get(p.name) == "-":
            raw = sys.stdin.buffer.read(BODY_MAX_BYTES + 1)
            values[p.name] = raw.decode("utf-8", "replace")


def help_text(text: str) -> str:
    """Click rewraps every paragraph; keep the line breaks of those that have them
    (examples, lists) with click's `\\b` marker."""
    return "\n\n".join(f"\b\n{para}" if "\n" in para else para for para in text.split("\n\n"))


def _arguments(verb: Verb) -> str:
    """Click lists options but not arguments: say what each positional one is."""
    rows = [p for p in verb.params if p.positional]
    if not rows:
        return ""
    width = max(len(p.metavar or p.name.upper()) for p in rows)
    lines = [f"  {(p.metavar or p.name.upper()).ljust(width)}  {p.help}" for p in rows]
    return "\n\nArguments:\n" + "\n".join(lines)


@contextlib.contextmanager
def stopping() -> Iterator[None]:
    """Ctrl-C or SIGTERM (`timeout`) while a verb runs: the first asks it to stop before
    it writes anything (`store.cancel`: exit 130, or what landed if a push was under
    way); a second one stops the process at once."""
    from ...store.cancel import CANCELLED

    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers belong to the main thread
        return

    def ask(signum: int, frame: object) -> None:
        if CANCELLED.is_set():
            raise KeyboardInterrupt
        CANCELLED.set()

    old = {s: signal.signal(s, ask) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
        # for the next command of this process (the CLI may run many in one: tests do);
        # not at the start, where it could erase a cancel the agent's child already heard
        CANCELLED.clear()


def command(verb: Verb) -> click.Command:
    """The click command for `verb` (named by its last word: `task add` -> `add`)."""

    def callback(**values: Any) -> None:
        _read_stdin(values, verb)
        for p in verb.params:
            if p.kind is list:
                values[p.name] = tuple(values[p.name] or ())
        ctx = click.get_current_context().ensure_object(Ctx)
        with stopping():
            result = verb.run(ctx.coordinator(), **values)
        doc = verb.json(result)
        emit(doc, verb.text(doc))

    params: list[click.Parameter] = []
    fn: Any = callback
    for p in reversed(verb.params):  # decorators apply bottom-up
        fn = _decorate(p)(fn)
    fn = common(fn, session=not any(p.option == "--session" for p in verb.params))
    params = list(getattr(fn, "__click_params__", []))
    params.reverse()
    return click.Command(
        verb.name.rsplit(" ", 1)[-1],
        callback=callback,
        params=params,
        help=help_text(verb.help + _arguments(verb)),
        short_help=verb.summary,
    )


def attach(root: click.Group, verbs: tuple[Verb, ...], groups: dict[str, str]) -> None:
    """Add every verb to `root`, inside its group (`task`, ...) when it has one."""
    made: dict[str, click.Group] = {}
    for verb in verbs:
        group_name, _, _ = verb.name.rpartition(" ")
        parent = root
        if group_name:
            if group_name not in made:
                made[group_name] = click.Group(
                    group_name, help=help_text(groups.get(group_name, ""))
                )
                root.add_command(made[group_name])
            parent = made[group_name]
        parent.add_command(command(verb))
