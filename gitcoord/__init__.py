"""gitcoord: coordinate many AI coding sessions through a git remote.

The Python API is `gitcoord.Coordinator` (see `gitcoord.api`). It is imported
lazily so that `gitcoord --help` and the hooks do not pay for pydantic.
"""

from __future__ import annotations

# Not `from typing import ...`: typing costs the command line's client ~7 ms at every
# start, and mypy treats any name TYPE_CHECKING as true.
TYPE_CHECKING = False

from .version import __version__  # noqa: E402 (after the TYPE_CHECKING stand-in)

if TYPE_CHECKING:
    from typing import Any

    from .api.coordinator import Coordinator
    from .errors import GitcoordError

__all__ = ["Coordinator", "GitcoordError", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "Coordinator":
        from .api.coordinator import Coordinator

        return Coordinator
    if name == "GitcoordError":
        from .errors import GitcoordError

        return GitcoordError
    raise AttributeError(name)
