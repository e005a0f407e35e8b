"""The one exception base: library code raises it, only commands print it and exit.

Each error carries the sysexits(3) status the admin's command leaves with, so
a library function says *what* went wrong and `hasthook` (hasthook/cli.py)
turns it into one line on stderr and that status. hasthook-exec never lets
one escape: hastd reads nothing but the exit status.
"""

from __future__ import annotations

from . import sysexits


class HasthookError(Exception):
    """A one-line error for the admin, with the sysexits(3) status to leave with."""

    status = sysexits.EX_SOFTWARE

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        if status is not None:
            self.status = status


class UsageError(HasthookError, ValueError):
    """A malformed call: bad arguments, or an argv hastd would not pass."""

    status = sysexits.EX_USAGE


class ConfigError(HasthookError):
    """A file the admin wrote cannot be used; the message names the file and line.

    `problems` lists every finding (config.problem.Problem) when validation made them.
    """

    status = sysexits.EX_CONFIG

    def __init__(self, message: str, problems: list | None = None, status: int | None = None):
        super().__init__(message, status)
        self.problems = list(problems or [])


class Unavailable(HasthookError):
    """hastd, a program or a service cannot be reached or failed."""

    status = sysexits.EX_UNAVAILABLE


class TimeBox(BaseException):
    """hasthook-exec ran past settings.hook_timeout; what is left stays queued.

    A BaseException, so an action's `except Exception` cannot swallow it and run on.
    """
