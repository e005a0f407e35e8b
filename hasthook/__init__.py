"""hasthook: event handler, alerting and operator tools for FreeBSD HAST."""

__version__ = "0.1.0"
