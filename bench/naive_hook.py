#!/usr/bin/env python3
"""The naive hook hasthook is measured against: what an admin writes in ten lines.

hast.conf `exec` runs it with the event's words; it imports apprise and sends
one message per event to $NAIVE_HOOK_URL. Nothing is recorded, grouped or
retried: a message that fails to go out is the event lost.

    NAIVE_HOOK_URL=json://127.0.0.1:8080/naive naive_hook.py disconnect shared1
"""

import os
import socket
import sys

import apprise


def main() -> int:
    event, resource = (sys.argv[1:3] + ["?", "?"])[:2]
    host = socket.gethostname().split(".")[0]
    a = apprise.Apprise()
    a.add(os.environ["NAIVE_HOOK_URL"])
    ok = a.notify(title=f"HAST {event} on {resource} ({host})",
                  body=f"hastd reported {' '.join(sys.argv[1:])} on {host}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
