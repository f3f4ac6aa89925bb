"""Exceptions shared across packages, one place, names ending in Error.

An exception that only one module raises and catches stays in that module; one that crosses a package boundary
(raised in one, caught in another) lives here so that the catcher need not import the raiser's package.
"""

from __future__ import annotations

from pathlib import Path


class ConfigurationError(RuntimeError):
    """A setting is missing or unusable; the message says which and how to fix it."""


class LandingFileError(ValueError):
    """A landing file cannot be read as its source's format. Names the file and the line."""

    def __init__(self, path: Path | str, line: int | None, message: str):
        self.path = str(path)
        self.line = line
        self.message = message
        where = f"{self.path}, line {line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")


class PartitionNotValidatedError(RuntimeError):
    """The day's partition is not validated: it must not be repaired or attributed (nor flow anywhere)."""


class ModelInputError(ValueError):
    """A model step cannot use the model catalogue as it is declared or as it holds (a role field's column absent
    from the clean partition, no labelled product, a class the model cannot learn): names the source and the field.
    Deterministic: re-running the step cannot fix it, so it is never retried."""
