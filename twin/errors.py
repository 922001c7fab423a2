"""The project's exception root: the CLI turns any :class:`TwinError` into a clear message."""

from __future__ import annotations

__all__ = ["TwinError"]


class TwinError(Exception):
    """A failure with a message meant for the user (what went wrong, where, how to fix)."""
