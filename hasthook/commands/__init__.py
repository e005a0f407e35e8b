"""The `hasthook` sub-commands, one module each (see hasthook.cli.COMMANDS)."""

from __future__ import annotations


def duration(option: str, text: str) -> float:
    """A duration option's value in seconds, or a usage error (exit 64) naming it."""
    from ..errors import UsageError
    from ..units import parse_duration

    try:
        return parse_duration(text)
    except ValueError as e:
        raise UsageError(f"{option}: {e}") from None
