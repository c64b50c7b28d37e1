"""Rosters to start from: `init --template marketing-12 | dev-12 | NAME | PATH`.

A template names the slots (number, suggested session id, role, goal,
responsibilities) and may seed the board with tasks and milestones. Shipped
templates live in `gitcoord/templates/`; users add their own as YAML files in
`.gitcoord/templates/` of the repository or `$XDG_CONFIG_HOME/gitcoord/templates/`
(`~/.config/...`), or pass a file's path.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import InvalidError, UsageError
from . import yamlio
from .models import DEPENDS_MAX, MilestoneName, Note, Priority, SessionId, Slot, Subject


class TemplateTask(BaseModel):
    model_config = ConfigDict(extra="forbid")
    key: str = Field(min_length=1, max_length=64)
    title: Subject
    priority: Priority = "P2"
    depends_on: list[str] = Field(default_factory=list, max_length=DEPENDS_MAX)
    milestone: MilestoneName | None = None
    note: Note = ""


class TemplateStep(BaseModel):
    """A step that names who ticks it: `{name: ..., by: human}` (an approver) or a
    session id; a plain string is a step any session ticks."""

    model_config = ConfigDict(extra="forbid")
    name: Subject
    by: SessionId | None = None


class TemplateMilestone(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: MilestoneName
    steps: list[Subject | TemplateStep] = Field(min_length=1, max_length=100)

    def step_docs(self) -> list[dict[str, str | None]]:
        return [
            {"name": s, "by": None} if isinstance(s, str) else {"name": s.name, "by": s.by}
            for s in self.steps
        ]


class Template(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=100)
    description: Note = ""
    slots: list[Slot] = Field(min_length=1, max_length=1000)
    tasks: list[TemplateTask] = Field(default_factory=list)
    milestones: list[TemplateMilestone] = Field(default_factory=list)


def _user_dirs(repo_top: str | None) -> list[Path]:
    dirs = []
    if repo_top:
        dirs.append(Path(repo_top) / ".gitcoord" / "templates")
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    dirs.append(Path(base) / "gitcoord" / "templates")
    return dirs


def available(repo_top: str | None = None) -> dict[str, str]:
    """name -> where it comes from ('shipped' or a path)."""
    found: dict[str, str] = {}
    shipped = resources.files("gitcoord").joinpath("templates")
    for entry in shipped.iterdir():
        if entry.name.endswith(".yaml"):
            found[entry.name[: -len(".yaml")]] = "shipped"
    for folder in _user_dirs(repo_top):
        if folder.is_dir():
            for path in sorted(folder.glob("*.yaml")):
                found[path.stem] = str(path)
    return found


def load(name_or_path: str, repo_top: str | None = None) -> Template:
    if name_or_path.endswith((".yaml", ".yml")) or os.sep in name_or_path:
        path = Path(name_or_path)
        if not path.is_file():
            raise UsageError(f"no template file {name_or_path}")
        raw = path.read_bytes()
    else:
        where = available(repo_top).get(name_or_path)
        if where is None:
            known = ", ".join(sorted(available(repo_top))) or "none"
            raise UsageError(f"no template {name_or_path!r} (available: {known})")
        if where == "shipped":
            shipped = resources.files("gitcoord").joinpath("templates")
            raw = shipped.joinpath(f"{name_or_path}.yaml").read_bytes()
        else:
            raw = Path(where).read_bytes()
    try:
        template = Template.model_validate(yamlio.load(raw))
    except (yamlio.YamlProblem, ValidationError) as exc:
        raise InvalidError(f"template {name_or_path}: {' '.join(str(exc).split())[:300]}") from None
    numbers = [s.number for s in template.slots]
    if sorted(numbers) != list(range(1, len(numbers) + 1)):
        raise InvalidError(f"template {name_or_path}: slots must be numbered 1..{len(numbers)}")
    keys = {t.key for t in template.tasks}
    milestones = {m.name for m in template.milestones}
    for t in template.tasks:
        missing = [d for d in t.depends_on if d not in keys]
        if missing:
            raise InvalidError(
                f"template {name_or_path}: task {t.key} depends on unknown {missing}"
            )
        if t.milestone is not None and t.milestone not in milestones:
            raise InvalidError(
                f"template {name_or_path}: task {t.key} belongs to unknown milestone "
                f"{t.milestone!r}"
            )
    return template
