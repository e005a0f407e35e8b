"""`hasthook`: the admin's command. Thin: parse arguments, call the library.

Each sub-command is a module in hasthook/commands/ with `add_arguments(parser)`
and `run(args, app) -> int`, so a command is one file and one line here.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__, sysexits
from .errors import HasthookError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

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
    """What every command needs, built lazily: config, log, store, hastctl."""

    def __init__(self, config_path: str | None, echo: bool = True):
        self.config_path = config_path
        self.echo = echo
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
            from .store import Store

            self._store = Store(self.settings.state_dir)
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


def _common() -> argparse.ArgumentParser:
    """The options every command takes, built anew for each parser: argparse shares a
    parent's actions, so a command that resolves a conflict (dirty's -c/--critical)
    would otherwise strip -c from --config for every command."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-c", "--config", metavar="FILE", default=argparse.SUPPRESS,
                        help="rules file (default: $HASTHOOK_CONFIG, "
                             "else /usr/local/etc/hasthook/rules.yaml)")
    return common


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole parser; with `only`, just that command's module is imported (the others
    are listed by name and help): `hasthook watch` runs every minute."""
    p = argparse.ArgumentParser(
        prog="hasthook", parents=[_common()],
        description="Event handler, alerting and operator tools for FreeBSD HAST.")
    p.add_argument("--version", action="version", version=f"hasthook {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name, (modname, helptext) in COMMANDS.items():
        if only is not None and name != only:
            sub.add_parser(name, help=helptext)
            continue
        mod = importlib.import_module(modname)
        sp = sub.add_parser(name, parents=[_common()], help=helptext,
                            description=(mod.__doc__ or helptext).strip().splitlines()[0])
        mod.add_arguments(sp)
        sp.set_defaults(_module=mod)
    return p


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
    parser = build_parser(_command_of(sys.argv[1:] if argv is None else argv))
    args = parser.parse_args(argv)
    if not getattr(args, "_module", None):
        parser.print_help(sys.stderr)
        return sysexits.EX_USAGE
    import sqlite3

    app = App(getattr(args, "config", None))
    # Human output never carries a control character from an event or a config (JSON
    # escapes its own); `dirty` keeps hastdirty.sh's bytes, which scripts compare.
    raw = getattr(args._module, "RAW_OUTPUT", False)
    out, err = sys.stdout, sys.stderr
    if not raw:
        sys.stdout, sys.stderr = _Printable(out), _Printable(err)
    try:
        code = args._module.run(args, app)
    except HasthookError as e:
        print(f"hasthook: {e}", file=sys.stderr)
        code = e.status
    except sqlite3.Error as e:  # one line for the admin, not a traceback
        print(f"hasthook: {_database_error(app, e)}", file=sys.stderr)
        code = sysexits.EX_IOERR
    except KeyboardInterrupt:
        code = 130
    except BrokenPipeError:
        code = sysexits.EX_OK
    finally:
        sys.stdout, sys.stderr = out, err
    if argv is None:
        sys.exit(code)
    return code
