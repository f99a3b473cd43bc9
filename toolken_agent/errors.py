"""User-facing errors.

Every mistake a user can make (a missing file, a malformed data line, a checkpoint for
another model) raises :class:`ToolkenError` with a one-line message. The CLI prints that
line and exits non-zero; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class ToolkenError(Exception):
    """A problem with the user's input, stated in one line."""


class DataError(ToolkenError):
    """Training or evaluation data that cannot be used, with file and line."""

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None):
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(where + message)
        self.path = path
        self.line = line


class CheckpointError(ToolkenError):
    """A toolken checkpoint that is missing, damaged, or made for something else."""


class ToolsetError(ToolkenError):
    """A toolset that cannot be loaded: no tools, duplicate names, missing descriptions."""


class ModelError(ToolkenError):
    """A model spec that cannot be resolved or loaded."""
