"""Send a real test message to every URL of a channel and say how each went.

Nothing is queued or retried: this is for checking a channel by hand. Exits 0
when every URL took the message, 69 (EX_UNAVAILABLE) when any did not, 78
(EX_CONFIG) when the channel is unknown or cannot be built.
"""

from __future__ import annotations

import argparse

from .. import sysexits
from . import duration


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("channel", metavar="CHANNEL", help="a channel name from the config")
    p.add_argument("--timeout", metavar="DURATION",
                   help="per-URL time limit (default: settings.send_timeout)")


def run(args: argparse.Namespace, app) -> int:
    from ..delivery.outbox import test_channel

    timeout = duration("--timeout", args.timeout) if args.timeout else app.settings.send_timeout
    results = test_channel(app.cfg, args.channel, timeout)
    for key, why in results.items():
        print(f"ok    {key}" if why is None else f"FAIL  {key}: {why}")
    return sysexits.EX_OK if all(v is None for v in results.values()) else \
        sysexits.EX_UNAVAILABLE
