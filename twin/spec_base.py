"""The building blocks of every scenario section: the strict pydantic base and the
constrained number types (shared by :mod:`twin.scenario` and the market services' specs in
``twin/services/<name>/spec.py``, which :mod:`twin.scenario` assembles)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["NonNegFloat", "PosFloat", "Share", "SpecModel"]

PosFloat = Annotated[float, Field(gt=0)]
NonNegFloat = Annotated[float, Field(ge=0)]
Share = Annotated[float, Field(ge=0, le=1)]


class SpecModel(BaseModel):
    """A scenario section: unknown keys are errors, sections are immutable, defaults are
    validated."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)
