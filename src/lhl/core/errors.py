"""The two kinds of error a user can fix from the command line, and nothing else.

`lhl` turns these into one line and exit code 2 (a usage error); every other exception is a bug or
a failure during the work itself, and keeps its traceback (exit code 1, also written to the run
folder's log by `lhl run`).
"""
from __future__ import annotations


class UsageError(ValueError):
    """A mistake in what the user typed or pointed at (a bad key or value, a run folder of the
    wrong kind); the message names the file, the field and the fix."""


class MissingInput(FileNotFoundError):
    """A file or folder the user named (a dataset root, a run folder) does not exist."""


#: what the command line reports as one line with exit code 2
USER_ERRORS = (UsageError, MissingInput)
