"""Files hasthook writes as root, written so that nobody else can steer the write.

A file is never written in place: the data goes to a new temporary name in the
same directory, created with O_EXCL|O_NOFOLLOW (a planted file or symlink there
makes the write fail, never follow), its mode set on the descriptor, synced,
then renamed over the target (readers see the old file or the new one, whole).
"""

from __future__ import annotations

import os


def write(path: str, data: bytes, mode: int = 0o600) -> None:
    """Replace `path` with `data` atomically; OSError when it cannot."""
    d = os.path.dirname(os.path.abspath(path))
    base = os.path.basename(path)
    for _ in range(100):
        tmp = os.path.join(d, f".{base}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                         | os.O_CLOEXEC, 0o600)
            break
        except FileExistsError:
            continue
    else:
        raise FileExistsError(f"cannot make a temporary file in {d}")
    try:
        try:
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
