"""The trust rule: what root runs, reads or writes because a config says so must be root's.

A file (and the directories above it) must be owned by root, or by the user
hasthook runs as, and writable by neither group nor others, as cron and sshd
require of what they run; else anyone who can change it runs code as root.
The state dir is stricter: a real directory (not a symlink), root's, 0700 when
hasthook makes it, writable by no one else; a directory others can write would
let them plant links or hard links where root writes.
"""

from __future__ import annotations

import os
import stat

from . import sysexits
from .errors import HasthookError

_GOOD_STATE_DIRS: set[str] = set()  # checked once per process


class Untrusted(HasthookError):
    """A path fails the trust rule; the message names it and says how to fix it."""

    status = sysexits.EX_NOPERM


def owner_and_mode(p: str, st: os.stat_result, sticky_ok: bool) -> str | None:
    """Why `p` (already stat'ed) fails the trust rule by itself, or None; `sticky_ok`: a
    sticky directory others may write to (/tmp) passes."""
    if st.st_uid not in (0, os.geteuid()):
        return f"{p} is owned by uid {st.st_uid}, not root"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not (
            sticky_ok and stat.S_ISDIR(st.st_mode) and st.st_mode & stat.S_ISVTX):
        return f"{p} is writable by group or other (mode {stat.S_IMODE(st.st_mode):04o})"
    return None


def problem(path: str) -> str | None:
    """Why `path` (after symlinks) fails the trust rule, or None: it and every directory
    above it, a sticky one (/tmp) allowed but for its own."""
    full = os.path.realpath(path)
    dirs = [os.path.dirname(full)]
    while dirs[-1] != "/":
        dirs.append(os.path.dirname(dirs[-1]))
    for i, p in enumerate((full, *dirs)):
        try:
            st = os.stat(p)
        except OSError as e:
            return f"{p}: {e.strerror}"
        why = owner_and_mode(p, st, sticky_ok=i > 1)
        if why:
            return why
    return None


def program(path: str) -> str | None:
    """Why root must not run `path`, or None. A bare name is looked up in the
    minimal PATH programs get (proc.PATH)."""
    if os.sep not in path:
        import shutil  # 3 ms of imports (bz2, lzma): not on a hook's path to an absolute one

        from .proc import PATH

        found = shutil.which(path, path=PATH)
        if found is None:
            return None  # nothing to run: it fails as "not found", harmlessly
        path = found
    if not os.path.lexists(path):
        return None
    return problem(path)


def state_dir(path: str, create: bool = True) -> str:
    """The state dir, made 0700 if missing (and `create`), or Untrusted saying why it is
    refused: hasthook writes there as root."""
    full = os.path.abspath(path)
    if full in _GOOD_STATE_DIRS:
        return path
    try:
        st = os.lstat(full)
    except FileNotFoundError:
        if not create:
            return path
        os.makedirs(full, mode=0o700, exist_ok=True)
        st = os.lstat(full)
    why = None
    if stat.S_ISLNK(st.st_mode):
        why = f"{full} is a symlink"
    elif not stat.S_ISDIR(st.st_mode):
        why = f"{full} is not a directory"
    else:
        why = owner_and_mode(full, st, sticky_ok=False) or problem(full)
    if why:
        raise Untrusted(f"state dir refused: {why}; make it a directory owned by root, "
                        f"mode 0700 (or remove it: hasthook makes it)")
    _GOOD_STATE_DIRS.add(full)
    return path
