"""User-facing errors: one line that says what is wrong and what to do.

Library code raises these; `main.py` prints `error: <message>` and exits with status 2, never a
traceback. Anything else that escapes is a bug and keeps its traceback.
"""
from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix (bad path, missing camera, corrupt file, port in use...)."""


class CheckpointError(UserError):
    """A missing, corrupt or incompatible model checkpoint or derived asset."""


class SourceError(UserError):
    """A camera, video or image source that cannot be opened or read."""


class BackendUnavailable(UserError):
    """An inference back-end that cannot run here; the message says what is missing."""
