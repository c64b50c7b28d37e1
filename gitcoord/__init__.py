"""gitcoord: coordinate many AI coding sessions through a git remote.

The Python API is `gitcoord.Coordinator` (see `gitcoord.api`). It is imported
lazily so that `gitcoord --help` and the hooks do not pay for pydantic.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .api import Coordinator
    from .errors import GitcoordError

__all__ = ["Coordinator", "GitcoordError", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "Coordinator":
        from .api import Coordinator

        return Coordinator
    if name == "GitcoordError":
        from .errors import GitcoordError

        return GitcoordError
    raise AttributeError(name)
