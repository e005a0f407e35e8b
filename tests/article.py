"""Where the source article is: the differential test runs its hastdirty.sh.

The article is not part of the repository: it is `../shared/seed/` beside the
checkout (as CI has it), or wherever $HASTHOOK_ARTICLE points (the file, or the
directory holding it). A fresh clone with neither skips the differential test
and says why; `.ci/run` runs this file first, so CI fails instead of skipping.

    python tests/article.py     # prints the path; exit 1 and why when not found
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ENV = "HASTHOOK_ARTICLE"
NAME = "000_19f174c6ee4e0dd1.txt"
BESIDE = Path(__file__).resolve().parent.parent.parent / "shared" / "seed"


def find() -> tuple[Path | None, str]:
    """(the article's path, None) or (None, why it was not found)."""
    given = os.environ.get(ENV)
    where = Path(given) if given else BESIDE
    path = where / NAME if where.is_dir() else where
    if path.is_file():
        return path, ""
    if given:
        return None, f"${ENV}={given} names no {NAME} (give the file or its directory)"
    return None, (f"the source article ({BESIDE / NAME}) is not beside this checkout and "
                  f"${ENV} is not set")


if __name__ == "__main__":
    found, why = find()
    if found is None:
        print(f"article: {why}: the differential test against its hastdirty.sh "
              "would be skipped", file=sys.stderr)
        sys.exit(1)
    print(found)
