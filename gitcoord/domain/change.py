"""A `Change`: what one operation does to the branch, decided on one State.

The operations (`gitcoord.ops`) return it; the store writes it as one commit whose
subject and trailers make `git log` the audit trail. It holds no git and no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .state import Doc


@dataclass
class Change:
    op: str
    subject: str
    session: str | None = None
    resource: str | None = None
    writes: dict[str, Doc] = field(default_factory=dict)
    trailers: dict[str, str] = field(default_factory=dict)
    # Trailers said once per item, in order (leave's `Gitcoord-Released`, one per claim).
    repeated: dict[str, list[str]] = field(default_factory=dict)
    result: dict[str, Any] = field(default_factory=dict)

    @property
    def noop(self) -> bool:
        return not self.writes
