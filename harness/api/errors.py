"""Errors that the CLI turns into one clear line on stderr and a non-zero exit code."""

from __future__ import annotations


class HarnessError(Exception):
    """An expected failure with a message meant for the user (exit code 1)."""

    exit_code = 1


class BadInputError(HarnessError):
    """The user's input (a file, a parameter, a dataset) is unusable (exit code 2)."""

    exit_code = 2


class BadClipError(BadInputError):
    """One audio clip cannot be turned into features.

    ``index`` is the clip's position in the batch (or ``None``), ``source`` the file it came
    from when known, so a caller can either stop with a message naming the file or skip the
    clip and count it.
    """

    def __init__(self, reason: str, index: int | None = None, source: str | None = None):
        self.reason = reason
        self.index = index
        self.source = source
        where = source if source is not None else (f"clip {index}" if index is not None else "clip")
        super().__init__(f"{where}: {reason}")


class PluginError(HarnessError):
    """A plugin is missing, duplicated, broken or fails its contract."""


class UnknownPluginError(PluginError):
    """The user named a plugin that is not installed or is blocked: bad input (exit code 2)."""

    exit_code = 2
