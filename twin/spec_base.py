"""The building blocks of every scenario section: the strict pydantic base and the
constrained number types (shared by :mod:`twin.scenario` and the market services' specs in
``twin/services/<name>/spec.py``, which :mod:`twin.scenario` assembles)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["CrossFieldError", "NonNegFloat", "PosFloat", "Share", "SpecModel"]

PosFloat = Annotated[float, Field(gt=0)]
NonNegFloat = Annotated[float, Field(ge=0)]
Share = Annotated[float, Field(ge=0, le=1)]


class SpecModel(BaseModel):
    """A scenario section: unknown keys are errors, sections are immutable, defaults are
    validated."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class CrossFieldError(ValueError):
    """Cross-field rules a scenario breaks, as ``(field path, message)`` pairs."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{path}: {msg}" for path, msg in problems))
        self.problems = problems
