"""What every channel kind shares: its error, concurrent sends, and the delivery lock.

A target (one apprise URL, or one Alertmanager cluster) has a `key` that
names it everywhere (secret-free), `compose(rows)` and `send(what, timeout)`
returning None or why it failed. Only the holder of the delivery lock sends,
so messages reach each channel in the order the database changed.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from ..errors import ConfigError


class ChannelError(ConfigError):
    """A channel cannot be used as configured; the message holds no secret."""


def send_all(jobs: list[tuple[Any, Any]], timeout: float) -> dict[str, str | None]:
    """Send each (target, message) at once, each in a thread; {key: None or why it failed}.

    A target still busy after `timeout` counts as failed. Its thread may yet
    deliver, so a retry can repeat that message: at least once, never lost.
    """
    out: dict[str, str | None] = {}
    threads = [threading.Thread(target=lambda t=t, m=m: out.__setitem__(t.key, t.send(m, timeout)),
                                name=f"send {t.key}", daemon=True) for t, m in jobs]
    end = time.monotonic() + timeout
    for th in threads:
        th.start()
    for th in threads:
        th.join(max(0.0, end - time.monotonic()))
    return {t.key: out[t.key] if t.key in out else f"no answer within {timeout:g}s"
            for t, _ in jobs}
