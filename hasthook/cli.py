"""`hasthook`: the admin's command. Thin: parse arguments, call the library.

Each sub-command is a module in hasthook/commands/ with `add_arguments(parser)`
and `run(args, app) -> int`, so a command is one file and one line here. A
module may say `READ_ONLY = True`, or `read_only(args)` when it depends (it opens
the database read-only and never creates the state directory), and
`USES_CONFIG = False` (it takes no -c).

One contract for every command (hasthook(8), EXIT STATUS): a usage error is 64,
a rules file that is missing or unreadable 66, broken 78; a state directory or
database that cannot be used is one line naming the path and 74, or 77 when
permission is denied; never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys

from . import __version__, sysexits
from .errors import HasthookError
from .units import did_you_mean

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NoReturn

    from .config import Config
    from .config.settings import Settings
    from .hast import Hastctl
    from .log import Log
    from .pipeline import Pipeline
    from .store import Store

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "history": ("hasthook.commands.history", "show recorded events"),
    "check": ("hasthook.commands.check", "check the rules file; exit 78 on errors"),
    "test": ("hasthook.commands.test", "dry-run an event through the rules"),
    "schema": ("hasthook.commands.schema", "print the rules file's JSON Schema"),
    "queue": ("hasthook.commands.queue", "list queued, failing and dead messages"),
    "watch": ("hasthook.commands.watch",
              "alert on what hastd never announces, then flush (cron: every minute)"),
    "flush": ("hasthook.commands.flush", "send queued messages now"),
    "notify-test": ("hasthook.commands.notify_test", "send a test message to a channel"),
    "metrics": ("hasthook.commands.metrics", "Prometheus metrics, for node_exporter's textfile"),
    "dirty": ("hasthook.commands.dirty", "dirty bytes per resource (hastdirty.sh)"),
    "role": ("hasthook.commands.role", "change roles safely (hastrole.sh, fixed)"),
    "status": ("hasthook.commands.status", "every resource at a glance; exit 1 when unwell"),
    "failover": ("hasthook.commands.failover", "promote or demote this node"),
    "recover": ("hasthook.commands.recover", "reset a split-brained resource (hastrecover.sh)"),
    "silence": ("hasthook.commands.silence", "mute notifications for a while: add, list, del"),
    "demo": ("hasthook.commands.demo", "see it work: a simulated HAST pair, no FreeBSD needed"),
    "sim": ("hasthook.commands.sim", "try your rules on a simulated HAST pair: start, play, stop"),
}


class App:
    """What every command needs, built lazily: config, log, store, hastctl.

    `readonly`: the store is opened read-only (a missing database reads as an
    empty history) and the state directory is never created.
    """

    def __init__(self, config_path: str | None, echo: bool = True, readonly: bool = False):
        self.config_path = config_path
        self.echo = echo
        self.readonly = readonly
        self._cfg: Config | None = None
        self._log: Log | None = None
        self._store: Store | None = None
        self._hastctl: Hastctl | None = None

    @property
    def cfg(self) -> Config:
        if self._cfg is None:
            from .config import load

            self._cfg = load(self.config_path)
        return self._cfg

    @property
    def settings(self) -> Settings:
        return self.cfg.settings

    @property
    def log(self):
        if self._log is None:
            from .log import Log

            self._log = Log.from_settings(self.settings)
        return self._log

    @property
    def store(self):
        if self._store is None:
            from .store import SCHEMA_VERSION, Store

            state_dir = self.settings.state_dir
            usable_state_dir(state_dir, write=not self.readonly)
            # Set before the first query: a damaged database's error names its path.
            self._store = Store(state_dir, readonly=self.readonly)
            if (self.readonly and os.path.isfile(self._store.path) and self._store.db.execute(
                    "PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION):
                # A database an older version made: read-only, what this version's schema
                # adds would be missing. Migrate it, as the next hook would.
                self._store.close()
                self._store = Store(state_dir)
        return self._store

    @property
    def hastctl(self):
        if self._hastctl is None:
            from .hast import Hastctl

            self._hastctl = Hastctl.from_settings(self.settings)
        return self._hastctl

    def pipeline(self) -> Pipeline:
        """The event path, for commands that make events (recover, failover)."""
        from .pipeline import Pipeline

        return Pipeline(self.cfg, self.store, self.log)


class _Printable:
    """A text stream that escapes control characters on their way out (redact.printable)."""

    def __init__(self, stream: Any):
        self._stream = stream

    def write(self, text: str) -> int:
        from .redact import printable

        return self._stream.write(printable(text))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def usable_state_dir(path: str, write: bool) -> None:
    """Raise a one-line HasthookError naming the path when the state directory or its
    database cannot be used as asked: 77 (EX_NOPERM) for permission, else 74 (EX_IOERR).
    A directory that does not exist yet is fine: read, it is an empty history; written,
    the store creates it."""
    import stat

    from .store import DB_NAME

    what = "settings.state_dir"
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return
    except OSError as e:
        raise _os_error(e, what) from None
    if not stat.S_ISDIR(st.st_mode):
        raise HasthookError(f"{path}: not a directory ({what})", sysexits.EX_IOERR)
    rw = os.R_OK | (os.W_OK if write else 0)
    for p, mode in ((path, rw | os.X_OK), (os.path.join(path, DB_NAME), rw)):
        if os.path.lexists(p) and not os.access(p, mode):
            raise HasthookError(f"{p}: permission denied ({what}; hasthook-exec keeps it "
                                "as root: run this as root)", sysexits.EX_NOPERM)


def _os_error(e: OSError, what: str | None = None) -> HasthookError:
    """An OSError as one line naming its path: 77 when permission is denied, else 74."""
    where = f"{e.filename}: " if e.filename else ""
    also = f" ({what})" if what else ""
    status = sysexits.EX_NOPERM if isinstance(e, PermissionError) else sysexits.EX_IOERR
    return HasthookError(f"{where}{e.strerror or e}{also}", status)


class Parser(argparse.ArgumentParser):
    """argparse with the sysexits contract: a usage error exits 64 (EX_USAGE), not 2,
    and a mistyped choice (a command, a role) gets a did-you-mean."""

    def error(self, message: str) -> NoReturn:
        m = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)$", message)
        if m:
            message += did_you_mean(m[1], re.findall(r"'([^']*)'", m[2]))
        self.print_usage(sys.stderr)
        self.exit(sysexits.EX_USAGE, f"{self.prog}: error: {message}\n")


def _common() -> Parser:
    """The options every command takes, built anew for each parser: argparse shares a
    parent's actions, so a command that resolves a conflict (dirty's -c/--critical)
    would otherwise strip -c from --config for every command."""
    common = Parser(add_help=False)
    common.add_argument("-c", "--config", metavar="FILE", default=argparse.SUPPRESS,
                        help="rules file (default: $HASTHOOK_CONFIG, "
                             "else /usr/local/etc/hasthook/rules.yaml)")
    return common


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole parser; with `only`, just that command's module is imported (the others
    are listed by name and help): `hasthook watch` runs every minute."""
    p = Parser(
        prog="hasthook", parents=[_common()],
        description="Event handler, alerting and operator tools for FreeBSD HAST.")
    p.add_argument("--version", action="version", version=f"hasthook {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name, (modname, helptext) in COMMANDS.items():
        if only is not None and name != only:
            sub.add_parser(name, help=helptext)
            continue
        mod = importlib.import_module(modname)
        sp = sub.add_parser(name, parents=[_common()] if uses_config(mod) else [],
                            help=helptext,
                            description=(mod.__doc__ or helptext).strip().splitlines()[0])
        mod.add_arguments(sp)
        sp.set_defaults(_module=mod, _parser=sp)
    return p


def uses_config(mod) -> bool:
    return getattr(mod, "USES_CONFIG", True)


def _database_error(app: App, e: Exception) -> str:
    from .store import damaged

    path = app._store.path if app._store is not None else "the database"
    if damaged(e):
        return (f"{path}: {e}. The next hook that meets the damage moves it aside and starts "
                "a new one; or move it aside yourself (`sqlite3 FILE .recover` may save "
                "its history).")
    return f"{path}: {e}"


def _command_of(argv: list[str]) -> str | None:
    """The command word of argv (skipping -c FILE), when it is one of COMMANDS."""
    skip = False
    for word in argv:
        if skip:
            skip = False
        elif word in ("-c", "--config"):
            skip = True
        elif not word.startswith("-"):
            return word if word in COMMANDS else None
    return None


def main(argv: list[str] | None = None) -> int:
    code = _main(argv)
    if argv is None:
        sys.exit(code)
    return code


def _main(argv: list[str] | None) -> int:
    parser = build_parser(_command_of(sys.argv[1:] if argv is None else argv))
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version (0) and usage errors (64)
        return e.code if isinstance(e.code, int) else sysexits.EX_USAGE
    mod = getattr(args, "_module", None)
    if mod is None:
        parser.print_help(sys.stderr)
        return sysexits.EX_USAGE
    if not uses_config(mod) and getattr(args, "config", None):
        # `hasthook -c FILE demo`: an option the command would ignore is refused.
        try:
            args._parser.error(f"-c/--config: {args.command} reads no rules file")
        except SystemExit as e:
            return e.code if isinstance(e.code, int) else sysexits.EX_USAGE
    readonly = (mod.read_only(args) if hasattr(mod, "read_only")
                else getattr(mod, "READ_ONLY", False))
    app = App(getattr(args, "config", None), readonly=readonly)
    # Human output never carries a control character from an event or a config (JSON
    # escapes its own); `dirty` keeps hastdirty.sh's bytes, which scripts compare.
    out, err = sys.stdout, sys.stderr
    if not getattr(mod, "RAW_OUTPUT", False):
        sys.stdout, sys.stderr = _Printable(out), _Printable(err)
    try:
        return _run(mod, args, app)
    finally:
        sys.stdout, sys.stderr = out, err


def _run(mod: Any, args: argparse.Namespace, app: App) -> int:
    """The command, its errors as one line and a sysexits status."""
    import sqlite3

    try:
        return mod.run(args, app)
    except HasthookError as e:
        print(f"hasthook: {e}", file=sys.stderr)
        return e.status
    except sqlite3.Error as e:  # one line for the admin, not a traceback
        print(f"hasthook: {_database_error(app, e)}", file=sys.stderr)
        return sysexits.EX_IOERR
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return sysexits.EX_OK
    except OSError as e:  # a path the command could not use: one line naming it
        err = _os_error(e)
        print(f"hasthook: {err}", file=sys.stderr)
        return err.status
