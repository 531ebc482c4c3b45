"""Errors a user can act on: each says what was wrong, where, and what is allowed."""

from __future__ import annotations


class WorkbenchError(Exception):
    """Base class of the workbench's own errors."""


class ConfigError(WorkbenchError, ValueError):
    """A bad experiment config; ``key`` is the dotted path of the offending key."""

    def __init__(self, key: str, message: str):
        self.key = key
        super().__init__(f"{key}: {message}" if key else message)


class DatabaseLockedError(WorkbenchError):
    """The DuckDB file is held by another process (usually a replay writing to it)."""


class SourceError(WorkbenchError):
    """A source cannot be read at all (missing file, dataset that must be downloaded...)."""


class BundleError(WorkbenchError):
    """A bundle that cannot be made or must not be loaded (tampered, unsigned, incompatible)."""
