"""The trust rule: what root runs or reads because a config says so must be root's.

A file (and the directories above it) must be owned by root, or by the user
hasthook runs as, and writable by neither group nor others, as cron and sshd
require of what they run; else anyone who can change it runs code as root.
"""

from __future__ import annotations

import os
import stat


def problem(path: str, chain: bool = False) -> str | None:
    """Why `path` fails the trust rule, or None. `chain`: every directory above it
    too (else only its own directory)."""
    trusted = {0, os.geteuid()}
    full = os.path.abspath(path)
    dirs = [os.path.dirname(full)]
    if chain:
        while dirs[-1] != "/":
            dirs.append(os.path.dirname(dirs[-1]))
    for p in (full, *dirs):
        try:
            st = os.stat(p)
        except OSError as e:
            return f"{p}: {e.strerror}"
        if st.st_uid not in trusted:
            return f"{p} is owned by uid {st.st_uid}, not root"
        if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not (
                stat.S_ISDIR(st.st_mode) and st.st_mode & stat.S_ISVTX and p != dirs[0]):
            return f"{p} is writable by group or other (mode {stat.S_IMODE(st.st_mode):04o})"
    return None
