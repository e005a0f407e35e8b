"""One finding in a config file, printed as `FILE:LINE:COL: path: message`."""

from __future__ import annotations

from ..record import Record


class Problem(Record, frozen=True):
    """An error (or, with `warning`, a risk) found in a rules file, with where it is."""

    file: str
    line: int
    col: int
    path: str
    message: str
    warning: bool = False

    def __str__(self) -> str:
        kind = "warning: " if self.warning else ""
        return f"{self.file}:{self.line}:{self.col}: {kind}{self.path}: {self.message}"
