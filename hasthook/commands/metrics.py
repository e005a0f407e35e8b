"""Print HAST's and hasthook's state as Prometheus metrics, or write them for node_exporter.

With --textfile PATH the file is replaced atomically (cron: every minute,
into node_exporter's --collector.textfile.directory). Exit 0, also when hastd
cannot be asked (hasthook_hastd_up is 0 then) or hast.conf cannot be read
(the pair label is empty then, with a warning in syslog); 73 (EX_CANTCREAT)
when the file cannot be written.
"""

from __future__ import annotations

import argparse
import sys

from .. import sysexits
from ..errors import HasthookError
from ..tools import metrics

READ_ONLY = True


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--textfile", metavar="PATH",
                   help="write to PATH (e.g. /var/db/node_exporter/hasthook.prom) instead "
                        "of stdout, atomically")


def run(args: argparse.Namespace, app) -> int:
    conf = metrics.read_hast_conf(app.settings, app.log)
    text = metrics.render(metrics.gather(app.hastctl, app.store, app.cfg, conf))
    if not args.textfile:
        sys.stdout.write(text)
        return sysexits.EX_OK
    try:
        metrics.write_textfile(args.textfile, text)
    except OSError as e:
        raise HasthookError(f"cannot write {args.textfile}: {e.strerror or e}",
                           sysexits.EX_CANTCREAT) from None
    return sysexits.EX_OK
