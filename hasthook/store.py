"""The one place that speaks SQL: event history and the state that outlives a hook run.

Times go in and come out as epoch seconds (floats), whatever the method;
commands format them for people (units.iso).

hastd forks one hook per event, so many processes write at once: WAL, a busy
timeout, and short `BEGIN IMMEDIATE` transactions keep every one of them
succeeding. The directory is 0700 and the database 0600: events name hosts and
addresses, and later tables hold delivery state.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager

from . import trust
from .event import Event
from .proc import FileLock
from .rules import RuleState

TYPE_CHECKING = False  # typing is not imported at run time: hasthook-exec starts faster
if TYPE_CHECKING:
    from typing import Any

DB_NAME = "hasthook.db"
DELIVERY_LOCK = "deliver"  # state_dir/deliver.lock: held by the one process delivering
# SQLITE_CORRUPT, SQLITE_NOTADB: the file is damaged (not locked, full or read-only).
DAMAGED = (11, 26)
BUSY_TIMEOUT_MS = 15000

# Every statement is idempotent; bump SCHEMA_VERSION when adding one.
SCHEMA_VERSION = 7
SCHEMA = [
    """CREATE TABLE IF NOT EXISTS events (
        id INTEGER PRIMARY KEY,
        time REAL NOT NULL,
        host TEXT NOT NULL,
        event TEXT NOT NULL,
        resource TEXT NOT NULL,
        old_role TEXT,
        new_role TEXT,
        severity TEXT NOT NULL,
        known INTEGER NOT NULL DEFAULT 1,
        role TEXT,
        status TEXT,
        dirty INTEGER,
        provname TEXT,
        remoteaddr TEXT,
        replication TEXT,
        errors TEXT,
        cause TEXT,
        extra TEXT,
        rules TEXT,
        outcome TEXT
    )""",
    # Every read path is an index search, on a history of millions (tests/test_store.py
    # reads the query plans): by time, by resource in time order, by kind in time
    # order, and the newest of a kind on one resource and host.
    "CREATE INDEX IF NOT EXISTS events_time ON events(time)",
    "DROP INDEX IF EXISTS events_resource",
    "CREATE INDEX IF NOT EXISTS events_place ON events(resource, host, event, id)",
    "CREATE INDEX IF NOT EXISTS events_resource_time ON events(resource, time)",
    "CREATE INDEX IF NOT EXISTS events_kind ON events(event, time)",
    # Each resource and host the history knows, kept by a trigger: what status, metrics
    # and `silence add` ask without reading the history.
    """CREATE TABLE IF NOT EXISTS places (
        resource TEXT NOT NULL,
        host TEXT NOT NULL,
        last REAL NOT NULL,
        last_id INTEGER NOT NULL,
        PRIMARY KEY (resource, host)
    ) WITHOUT ROWID""",
    """CREATE TRIGGER IF NOT EXISTS events_place AFTER INSERT ON events BEGIN
        INSERT INTO places (resource, host, last, last_id)
        VALUES (NEW.resource, NEW.host, NEW.time, NEW.id)
        ON CONFLICT (resource, host) DO UPDATE SET
            last = MAX(last, excluded.last), last_id = MAX(last_id, excluded.last_id);
    END""",
    "INSERT OR IGNORE INTO places SELECT resource, host, MAX(time), MAX(id) FROM events "
    "GROUP BY resource, host",
    # Small facts of the database itself, e.g. when retention last pruned it.
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)",
    # What each rule remembers per key for throttle and repeat_interval (rules.decide);
    # event/resource/host are the last event's, so a resolving event can find the row.
    """CREATE TABLE IF NOT EXISTS rule_state (
        rule TEXT NOT NULL,
        key TEXT NOT NULL,
        event TEXT NOT NULL,
        resource TEXT NOT NULL,
        host TEXT NOT NULL,
        window_start REAL,
        count INTEGER NOT NULL DEFAULT 0,
        last_fired REAL,
        suppressed INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (rule, key)
    )""",
    "CREATE INDEX IF NOT EXISTS rule_state_resource ON rule_state(resource, host, event)",
    # Split-brain recoveries (hasthook/tools/recover.py): cooldown and max_attempts
    # must hold across hook processes, and `expect` lists the role changes
    # [old, new] a running recovery will cause, each claimed once by the role
    # hook it fires, so that event is recorded with cause `recover`.
    """CREATE TABLE IF NOT EXISTS recoveries (
        id INTEGER PRIMARY KEY,
        resource TEXT NOT NULL,
        host TEXT NOT NULL,
        origin TEXT NOT NULL,
        event_id INTEGER,
        state TEXT NOT NULL,
        reason TEXT,
        dry_run INTEGER NOT NULL DEFAULT 0,
        pid INTEGER,
        started REAL NOT NULL,
        finished REAL,
        role_before TEXT,
        role_after TEXT,
        expect TEXT,
        steps TEXT,
        detail TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS recoveries_resource ON recoveries(resource, started)",
    # The outbox (hasthook/delivery/outbox.py): a message is a row before any network
    # I/O, so an alert outlives the hook that raised it. `due` is when it may
    # go (group_wait, then backoff); `sending` rows carry a lease so a
    # deliverer killed mid-send leaves them to the next one; `delivered` lists
    # the channel's URLs (privacy form) already done, so a retry skips them.
    """CREATE TABLE IF NOT EXISTS outbox (
        id INTEGER PRIMARY KEY,
        created REAL NOT NULL,
        event_id INTEGER,
        rule TEXT,
        channel TEXT NOT NULL,
        group_key TEXT NOT NULL,
        kind TEXT NOT NULL DEFAULT 'alert',
        severity TEXT NOT NULL,
        event TEXT,
        resource TEXT,
        host TEXT,
        title TEXT NOT NULL,
        body TEXT NOT NULL,
        send_resolved INTEGER NOT NULL DEFAULT 0,
        state TEXT NOT NULL DEFAULT 'pending',
        due REAL NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        lease_until REAL,
        delivered TEXT,
        sent_at REAL,
        last_error TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS outbox_state ON outbox(state, due)",
    "CREATE INDEX IF NOT EXISTS outbox_resource ON outbox(resource, event_id)",
    "CREATE INDEX IF NOT EXISTS outbox_age ON outbox(state, created)",
    "CREATE INDEX IF NOT EXISTS outbox_channel ON outbox(channel, kind, event, resource, host)",
    "CREATE INDEX IF NOT EXISTS outbox_sent ON outbox(channel, sent_at)",
    "CREATE INDEX IF NOT EXISTS outbox_rule ON outbox(rule, created)",
    # Silences (hasthook/silences.py): `resource` is a rule-style pattern (`*`: all),
    # `event` NULL is every event. AUTOINCREMENT: an id in an event's outcome
    # never comes to name a later silence.
    """CREATE TABLE IF NOT EXISTS silences (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        created REAL NOT NULL,
        ends REAL NOT NULL,
        resource TEXT NOT NULL,
        event TEXT,
        author TEXT,
        comment TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS silences_ends ON silences(ends)",
    # `hasthook watch` (hasthook/watch.py): what the last pass saw of each resource
    # (`seen`: error counters, dirty, since when degraded or in init), and each
    # condition's hysteresis: consecutive bad and good passes, active once it fired.
    """CREATE TABLE IF NOT EXISTS watch_seen (
        host TEXT NOT NULL,
        resource TEXT NOT NULL,
        time REAL NOT NULL,
        seen TEXT NOT NULL,
        PRIMARY KEY (host, resource)
    ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS watch_conditions (
        host TEXT NOT NULL,
        resource TEXT NOT NULL,
        condition TEXT NOT NULL,
        active INTEGER NOT NULL DEFAULT 0,
        bad INTEGER NOT NULL DEFAULT 0,
        good INTEGER NOT NULL DEFAULT 0,
        since REAL,
        severity TEXT,
        detail TEXT,
        PRIMARY KEY (host, resource, condition)
    ) WITHOUT ROWID""",
]

TABLES = {"events", "rule_state", "recoveries", "outbox", "silences"}  # of every version
OUTBOX_COLUMNS = ("created", "event_id", "rule", "channel", "group_key", "kind", "severity",
                  "event", "resource", "host", "title", "body", "send_resolved", "due")
EVENT_COLUMNS = ("time", "host", "event", "resource", "old_role", "new_role", "severity",
                 "known", "role", "status", "dirty", "provname", "remoteaddr", "replication",
                 "errors", "cause", "extra")


class Store:
    """A connection to the state database, created on first use."""

    def __init__(self, state_dir: str, busy_timeout: float | None = None,
                 readonly: bool = False):
        """busy_timeout: seconds a statement waits for another process's lock.
        readonly: only read the database (a dry run): never create, migrate or write
        it; a missing file reads as an empty history."""
        self.state_dir = state_dir
        self.path = os.path.join(state_dir, DB_NAME)
        self.busy_ms = int(BUSY_TIMEOUT_MS if busy_timeout is None else busy_timeout * 1000)
        self.readonly = readonly
        self._db: sqlite3.Connection | None = None

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            self._db = self._open()
        return self._db

    @classmethod
    def scratch(cls) -> Store:
        """An empty history in memory: a dry run with nothing (readable) on disk."""
        store = cls(":memory:", readonly=True)
        store.path = ":memory:"
        return store

    def _open(self) -> sqlite3.Connection:
        if self.readonly:
            from urllib.parse import quote

            if self.path != ":memory:":
                trust.state_dir(self.state_dir, create=False)
            if self.path == ":memory:" or not os.path.exists(self.path):
                db = sqlite3.connect(":memory:", isolation_level=None)
                for stmt in SCHEMA:
                    db.execute(stmt)
            else:
                db = sqlite3.connect(f"file:{quote(os.path.abspath(self.path))}?mode=ro",
                                     uri=True, timeout=self.busy_ms / 1000,
                                     isolation_level=None)
            db.row_factory = sqlite3.Row
            return db
        trust.state_dir(self.state_dir)
        if not os.path.exists(self.path):
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600))
        elif os.path.islink(self.path):
            raise trust.Untrusted(f"{self.path} is a symlink; hasthook opens only the file")
        db = sqlite3.connect(self.path, timeout=self.busy_ms / 1000, isolation_level=None)
        db.row_factory = sqlite3.Row
        db.execute(f"PRAGMA busy_timeout={self.busy_ms}")
        if db.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
            # Freed pages go back to the file system (prune): set before the first table.
            db.execute("PRAGMA auto_vacuum=INCREMENTAL")
            db.execute("PRAGMA journal_mode=WAL")
            with _immediate(db):
                if db.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
                    for stmt in SCHEMA:
                        db.execute(stmt)
                    db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        db.execute("PRAGMA synchronous=NORMAL")
        return db

    def set_aside(self) -> str | None:
        """Move a damaged database file (and its WAL) aside, so the next open starts anew.

        Under a lock, and only when a fresh look still finds the file at the path
        damaged: another hook may have replaced it a moment ago. Returns the new
        name, or None when the file was left where it is.
        """
        self.close()
        with FileLock(os.path.join(self.state_dir, "db.lock")):
            if not os.path.isfile(self.path):
                return None
            try:
                db = sqlite3.connect(self.path, timeout=self.busy_ms / 1000)
                try:
                    intact = db.execute("PRAGMA quick_check(1)").fetchone()[0] == "ok"
                    tables = {r[0] for r in db.execute(
                        "SELECT name FROM sqlite_master WHERE type = 'table'")}
                    # A file with a table of ours gone is damaged too (a dropped table
                    # would send every event to the spool for ever).
                    if intact and (tables >= TABLES or not tables):
                        return None
                finally:
                    db.close()
            except sqlite3.DatabaseError as e:
                if not damaged(e):
                    return None
            aside = (f"{self.path}.damaged-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
                     f"-{os.getpid()}")
            os.rename(self.path, aside)
            for ext in ("-wal", "-shm"):
                try:
                    os.rename(self.path + ext, aside + ext)
                except FileNotFoundError:
                    pass
            return aside

    def lock(self, name: str) -> FileLock | None:
        """Take state_dir/NAME.lock without waiting (e.g. `deliver`: one deliverer at a
        time); None when another process holds it."""
        trust.state_dir(self.state_dir)
        held = FileLock(os.path.join(self.state_dir, f"{name}.lock"))
        if not held.acquire(wait=False):
            held.close()
            return None
        held.mark_owner()
        return held

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken up front so concurrent writers queue, not deadlock."""
        with _immediate(self.db) as db:
            yield db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    # -- events ---------------------------------------------------------

    def record(self, ev: Event, db: sqlite3.Connection | None = None) -> int:
        """Insert the event and return its id; inside `transaction()` when db is given."""
        row = (ev.time, ev.host, ev.event, ev.resource, ev.old_role, ev.new_role, ev.severity,
               int(ev.known), ev.role, ev.status, ev.dirty, ev.provname, ev.remoteaddr,
               ev.replication, _json(ev.errors), ev.cause, _json(ev.extra or None))
        sql = (f"INSERT INTO events ({', '.join(EVENT_COLUMNS)}) "
               f"VALUES ({', '.join('?' * len(EVENT_COLUMNS))})")
        if db is not None:
            return _rowid(db.execute(sql, row))
        with self.transaction() as tx:
            return _rowid(tx.execute(sql, row))

    def role_partner(self, db: sqlite3.Connection, resource: str, host: str,
                     roles: tuple[str, str], at: float, window: float) -> int | None:
        """The id of a role event [old, new] on the resource and host within `window`
        seconds of `at`, recorded with no cause (hastd's own), or None."""
        r = db.execute(
            "SELECT id FROM events WHERE resource = ? AND host = ? AND event = 'role' "
            "AND old_role = ? AND new_role = ? AND time BETWEEN ? AND ? AND cause IS NULL "
            "ORDER BY id DESC LIMIT 1",
            (resource, host, *roles, at - window, at + window)).fetchone()
        return r[0] if r else None

    def set_cause(self, db: sqlite3.Connection, event_id: int, cause: str) -> None:
        db.execute("UPDATE events SET cause = ? WHERE id = ?", (cause, event_id))

    def clear_cause(self, db: sqlite3.Connection, resource: str, host: str, event: str,
                    cause: str, after: float, until: float) -> None:
        """Take a cause read from the history back from the events it no longer fits."""
        db.execute("UPDATE events SET cause = NULL WHERE resource = ? AND host = ? AND "
                   "event = ? AND cause = ? AND time > ? AND time <= ?",
                   (resource, host, event, cause, after, until))

    def outbox_drop_pending(self, db: sqlite3.Connection, resource: str,
                            event_id: int) -> int:
        """Drop the messages about an event not sent yet (a later one tells it instead)."""
        return db.execute("DELETE FROM outbox WHERE resource = ? AND event_id = ? "
                          "AND state = 'pending'", (resource, event_id)).rowcount

    def recorded(self, ev: Event, db: sqlite3.Connection) -> bool:
        """Is this very event (same host, resource, kind and time) in the history already?"""
        return db.execute("SELECT 1 FROM events WHERE resource = ? AND event = ? AND time = ? "
                          "AND host = ? LIMIT 1",
                          (ev.resource, ev.event, ev.time, ev.host)).fetchone() is not None

    def set_outcome(self, event_id: int, rules: list[str], outcome: dict[str, Any],
                    db: sqlite3.Connection | None = None) -> None:
        """The rules an event matched and what came of them; in `transaction()` when db is given."""
        args = (_json(rules), _json(outcome), event_id)
        sql = "UPDATE events SET rules = ?, outcome = ? WHERE id = ?"
        if db is not None:
            db.execute(sql, args)
            return
        with self.transaction() as tx:
            tx.execute(sql, args)

    # -- rule state (throttle, repeat_interval) ---------------------------

    def rule_state(self, db: sqlite3.Connection, rule: str, key: str) -> RuleState | None:
        r = db.execute("SELECT window_start, count, last_fired, suppressed FROM rule_state "
                       "WHERE rule = ? AND key = ?", (rule, key)).fetchone()
        return RuleState(*r) if r else None

    def save_rule_state(self, db: sqlite3.Connection, rule: str, key: str, state: RuleState,
                        ev: Event) -> None:
        db.execute(
            "INSERT OR REPLACE INTO rule_state (rule, key, event, resource, host, window_start, "
            "count, last_fired, suppressed) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (rule, key, ev.event, ev.resource, ev.host, state.window_start, state.count,
             state.last_fired, state.suppressed))

    def resolve_rule(self, db: sqlite3.Connection, rule: str) -> None:
        """Forget what one rule remembers (throttle and repeat), for every key."""
        db.execute("DELETE FROM rule_state WHERE rule = ?", (rule,))

    def resolve(self, db: sqlite3.Connection, ev: Event) -> int:
        """End repeat reminders for what this event resolves; throttle windows stay."""
        if not ev.resolves:
            return 0
        return db.execute(
            f"UPDATE rule_state SET last_fired = NULL WHERE resource = ? AND host = ? "
            f"AND event IN ({', '.join('?' * len(ev.resolves))}) AND last_fired IS NOT NULL",
            (ev.resource, ev.host, *ev.resolves)).rowcount

    def history(self, resource: str | None = None, event: str | None = None,
                since: float | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        """Newest first."""
        where: list[str] = []
        args: list[Any] = []
        if resource:
            where.append("resource = ?")
            args.append(resource)
        if event:
            where.append("event = ?")
            args.append(event)
        if since is not None:
            where.append("time >= ?")
            args.append(since)
        sql = "SELECT * FROM events"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY time DESC, id DESC"
        if limit:
            sql += " LIMIT ?"
            args.append(int(limit))
        return [_event_row(r) for r in self.db.execute(sql, args)]

    def resource_names(self) -> list[str]:
        """Every resource the history has seen, sorted."""
        return [r[0] for r in self.db.execute(
            "SELECT DISTINCT resource FROM places ORDER BY resource")]

    def places(self) -> list[tuple[str, str]]:
        """Every (resource, host) the history has seen."""
        return [(r[0], r[1]) for r in self.db.execute(
            "SELECT resource, host FROM places ORDER BY resource, host")]

    def oldest(self) -> float | None:
        """The time of the oldest event kept: how far back the history reaches."""
        return self.db.execute("SELECT MIN(time) FROM events").fetchone()[0]

    def last_event(self, resource: str, events: tuple[str, ...], before_id: int | None = None,
                   host: str | None = None) -> dict[str, Any] | None:
        """The newest event of one of these kinds on a resource (what a resolver ends)."""
        sql = (f"SELECT * FROM events WHERE resource = ? AND event IN "
               f"({', '.join('?' * len(events))})")
        args: list[Any] = [resource, *events]
        if before_id is not None:
            sql += " AND id < ?"
            args.append(before_id)
        if host is not None:
            sql += " AND host = ?"
            args.append(host)
        r = self.db.execute(sql + " ORDER BY id DESC LIMIT 1", args).fetchone()
        return _event_row(r) if r else None

    def unresolved_alerts(self, resolvers: dict[str, tuple[str, ...]],
                          resource: str | None = None) -> list[dict[str, Any]]:
        """Warning/critical events no later resolver has ended, one row per host, resource, kind.

        `resolvers` maps an alert event to the events that end it (event.RESOLVES,
        inverted); with none, every one in the history counts. Each row: host,
        resource, event, severity, count, first and last (times) and last_id.
        A split-brain storm is one row, not fifty. Index searches per resource and
        host (places), however long the history.
        """
        out: list[dict[str, Any]] = []
        for res, host in self.places():
            if resource is not None and res != resource:
                continue
            for kind, ends in resolvers.items():
                after = 0
                if ends:
                    after = self.db.execute(
                        f"SELECT MAX(id) FROM events WHERE resource = ? AND host = ? AND event "
                        f"IN ({', '.join('?' * len(ends))})", (res, host, *ends)
                    ).fetchone()[0] or 0
                r = self.db.execute(
                    "SELECT COUNT(*) AS count, MAX(severity = 'critical') AS critical, "
                    "MIN(time) AS first, MAX(time) AS last, MAX(id) AS last_id FROM events "
                    "WHERE resource = ? AND host = ? AND event = ? AND id > ? "
                    "AND severity IN ('warning', 'critical')",
                    (res, host, kind, after)).fetchone()
                if r["count"]:
                    out.append({"host": host, "resource": res, "event": kind,
                                "severity": "critical" if r["critical"] else "warning",
                                "count": r["count"], "first": r["first"], "last": r["last"],
                                "last_id": r["last_id"]})
        return sorted(out, key=lambda d: d["last_id"], reverse=True)

    # -- silences -------------------------------------------------------

    def active_silences(self, now: float | None = None,
                        db: sqlite3.Connection | None = None) -> list[dict[str, Any]]:
        """Silences in force at `now`, oldest first; expired ones drop out by themselves.
        Each: id, resource, event, ends, author, comment, created."""
        now = time.time() if now is None else now
        rows = (db or self.db).execute(
            "SELECT id, resource, event, ends, author, comment, created FROM silences "
            "WHERE ends > ? ORDER BY id", (now,))
        return [dict(r) for r in rows]

    def silence_add(self, created: float, ends: float, resource: str, event: str | None,
                    author: str | None, comment: str | None) -> int:
        """Insert one silence; returns its id."""
        with self.transaction() as db:
            return _rowid(db.execute(
                "INSERT INTO silences (created, ends, resource, event, author, comment) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (created, ends, resource, event, author, comment)))

    def silence_delete(self, silence_id: int) -> dict[str, Any] | None:
        """Remove a silence (active or expired); returns the row it was, None if unknown."""
        with self.transaction() as db:
            r = db.execute("SELECT * FROM silences WHERE id = ?", (silence_id,)).fetchone()
            if r is not None:
                db.execute("DELETE FROM silences WHERE id = ?", (silence_id,))
        return dict(r) if r is not None else None

    # -- recoveries -----------------------------------------------------

    def recovery_add(self, resource: str, host: str, origin: str, state: str,
                     started: float, **fields: Any) -> int:
        """Insert a recovery row (fields: any other column); returns its id."""
        cols = {"resource": resource, "host": host, "origin": origin, "state": state,
                "started": started, **fields}
        for k in ("expect", "steps"):
            if k in cols:
                cols[k] = _json(cols[k])
        if "dry_run" in cols:
            cols["dry_run"] = int(bool(cols["dry_run"]))
        with self.transaction() as db:
            return _rowid(db.execute(
                f"INSERT INTO recoveries ({', '.join(cols)}) "
                f"VALUES ({', '.join('?' * len(cols))})", list(cols.values())))

    def recovery_update(self, rec_id: int, **fields: Any) -> None:
        """Set columns of one recovery row (steps/expect as lists)."""
        for k in ("expect", "steps"):
            if k in fields:
                fields[k] = _json(fields[k])
        with self.transaction() as db:
            db.execute(f"UPDATE recoveries SET {', '.join(f'{k} = ?' for k in fields)} "
                       "WHERE id = ?", [*fields.values(), rec_id])

    def recoveries(self, resource: str, since: float | None = None,
                   dry_run: bool | None = None) -> list[dict[str, Any]]:
        """A resource's recovery rows, newest first (times as epoch seconds)."""
        sql = "SELECT * FROM recoveries WHERE resource = ?"
        args: list[Any] = [resource]
        if since is not None:
            sql += " AND (started >= ? OR finished >= ? OR finished IS NULL)"
            args += [since, since]
        if dry_run is not None:
            sql += " AND dry_run = ?"
            args.append(int(dry_run))
        return [_recovery_row(r)
                for r in self.db.execute(sql + " ORDER BY started DESC, id DESC", args)]

    def recoveries_running(self) -> list[dict[str, Any]]:
        """Recovery rows still `running`, of any resource (a dead process may have left
        some)."""
        return [dict(r) for r in self.db.execute(
            "SELECT id, resource FROM recoveries WHERE state = 'running'")]

    def recovery_reap(self, resource: str, now: float) -> list[dict[str, Any]]:
        """Mark `running` rows as `interrupted` and return them.

        Only the holder of the resource's recovery lock calls this, so a row
        still `running` belongs to a process that died mid-recovery.
        """
        with self.transaction() as db:
            rows = [_recovery_row(r) for r in db.execute(
                "SELECT * FROM recoveries WHERE resource = ? AND state = 'running'",
                (resource,))]
            db.execute("UPDATE recoveries SET state = 'interrupted', finished = ?, expect = NULL "
                       "WHERE resource = ? AND state = 'running'", (now, resource))
        return rows

    def recovery_claim(self, resource: str, old_role: str, new_role: str, at: float,
                       grace: float) -> int | None:
        """Claim the role change [old, new] a recovery said it would cause.

        Returns the recovery's id, or None when no recovery running, or ended
        less than `grace` seconds before `at`, still expects that change.
        """
        with self.transaction() as db:
            for r in db.execute(
                    "SELECT id, expect FROM recoveries WHERE resource = ? AND expect IS NOT NULL "
                    "AND started <= ? AND (finished IS NULL OR finished >= ?) "
                    "ORDER BY id DESC", (resource, at, at - grace)).fetchall():
                expect = json.loads(r["expect"])
                if [old_role, new_role] in expect:
                    expect.remove([old_role, new_role])
                    db.execute("UPDATE recoveries SET expect = ? WHERE id = ?",
                               (_json(expect) if expect else None, r["id"]))
                    return r["id"]
        return None

    # -- outbox ---------------------------------------------------------

    def outbox_add(self, db: sqlite3.Connection, **row: Any) -> int:
        """Queue one message inside the event's transaction, before any network I/O."""
        unknown = set(row) - set(OUTBOX_COLUMNS)
        if unknown:
            raise ValueError(f"not outbox columns: {sorted(unknown)}")
        row["send_resolved"] = int(bool(row.get("send_resolved")))
        return _rowid(db.execute(f"INSERT INTO outbox ({', '.join(row)}) "
                                 f"VALUES ({', '.join('?' * len(row))})", list(row.values())))

    def outbox_due(self) -> tuple[float | None, float | None, float | None]:
        """(earliest due pending row, earliest due never-tried row, earliest lease).

        One cheap query, so a hook asks it before importing apprise. Never-tried
        rows are the ones a deliverer waits for (their group_wait); rows in
        backoff go when due, and an expired lease marks an abandoned claim.
        """
        r = self.db.execute(
            "SELECT MIN(CASE WHEN state = 'pending' THEN due END), "
            "MIN(CASE WHEN state = 'pending' AND attempts = 0 THEN due END), "
            "MIN(CASE WHEN state = 'sending' THEN lease_until END) "
            "FROM outbox WHERE state IN ('pending', 'sending')").fetchone()
        return r[0], r[1], r[2]

    def outbox_requeue_abandoned(self, now: float, why: str) -> list[dict[str, Any]]:
        """Put `sending` rows whose lease ran out back to pending, and return them.

        Their deliverer stopped (killed, crashed) between claiming and marking.
        """
        with self.transaction() as db:
            rows = [_outbox_row(r) for r in db.execute(
                "SELECT * FROM outbox WHERE state = 'sending' AND lease_until < ?", (now,))]
            db.execute("UPDATE outbox SET state = 'pending', lease_until = NULL, due = ?, "
                       "last_error = ? WHERE state = 'sending' AND lease_until < ?",
                       (now, why, now))
        return rows

    def outbox_expire(self, created_before: float, now: float) -> list[dict[str, Any]]:
        """Pending rows queued before `created_before` become dead (their `due` says when
        they died); returns them."""
        with self.transaction() as db:
            rows = [_outbox_row(r) for r in db.execute(
                "SELECT * FROM outbox WHERE state = 'pending' AND created < ?",
                (created_before,))]
            db.execute("UPDATE outbox SET state = 'dead', due = ? WHERE state = 'pending' "
                       "AND created < ?", (now, created_before))
        return rows

    def outbox_ready(self, now: float, everything: bool = False) -> list[tuple[str, str]]:
        """(channel, group_key) of each group whose earliest pending row is due (or all)."""
        sql = ("SELECT channel, group_key, MIN(due) AS due FROM outbox WHERE state = 'pending' "
               "GROUP BY channel, group_key")
        args: list[Any] = []
        if not everything:
            sql += " HAVING MIN(due) <= ?"
            args.append(now)
        rows = self.db.execute(sql + " ORDER BY due", args)
        return [(r["channel"], r["group_key"]) for r in rows]

    def outbox_claim(self, channel: str, group_key: str,
                     lease_until: float) -> list[dict[str, Any]]:
        """Take a group's pending rows for sending; they stay `sending` until settled."""
        with self.transaction() as db:
            rows = [_outbox_row(r) for r in db.execute(
                "SELECT * FROM outbox WHERE state = 'pending' AND channel = ? AND group_key = ? "
                "ORDER BY created, id", (channel, group_key))]
            db.executemany("UPDATE outbox SET state = 'sending', lease_until = ? WHERE id = ?",
                           [(lease_until, r["id"]) for r in rows])
        return rows

    def outbox_settle(self, outcomes: list[dict[str, Any]], now: float) -> None:
        """Record what sending did: each {id, delivered, sent, due, error}."""
        with self.transaction() as db:
            for o in outcomes:
                if o["sent"]:
                    db.execute("UPDATE outbox SET state = 'sent', sent_at = ?, delivered = ?, "
                               "lease_until = NULL, attempts = attempts + 1, last_error = NULL "
                               "WHERE id = ?", (now, _json(o["delivered"]), o["id"]))
                else:
                    db.execute("UPDATE outbox SET state = 'pending', due = ?, delivered = ?, "
                               "lease_until = NULL, attempts = attempts + 1, last_error = ? "
                               "WHERE id = ?",
                               (o["due"], _json(o["delivered"]), o["error"], o["id"]))

    def outbox_told(self, rule: str, title: str, since: float) -> bool:
        """Was an alert with this rule and title queued after `since`?"""
        return self.db.execute("SELECT 1 FROM outbox WHERE rule = ? AND created > ? "
                               "AND title = ? LIMIT 1", (rule, since, title)).fetchone() \
            is not None

    def outbox_dead_since(self, since: float) -> int:
        """How many messages went dead (were given up) after `since`."""
        return self.db.execute("SELECT COUNT(*) FROM outbox WHERE state = 'dead' AND "
                               "due > ?", (since,)).fetchone()[0]

    def outbox_list(self, states: tuple[str, ...] = ("pending", "sending", "dead"),
                    limit: int | None = None) -> list[dict[str, Any]]:
        """Rows in these states, oldest first."""
        sql = (f"SELECT * FROM outbox WHERE state IN ({', '.join('?' * len(states))}) "
               "ORDER BY created, id")
        args: list[Any] = list(states)
        if limit:
            sql += " LIMIT ?"
            args.append(int(limit))
        return [_outbox_row(r) for r in self.db.execute(sql, args)]

    def outbox_to_resolve(self, resource: str, host: str, events: tuple[str, ...],
                          after_event_id: int) -> list[dict[str, Any]]:
        """The send_resolved alerts a resolving event ends: one row per rule and channel.

        Only alerts for events after `after_event_id` (the previous resolving
        event) count, so a condition is resolved once. `since` is when the
        first of them was queued: the start of the outage.
        """
        return [dict(r) for r in self.db.execute(
            "SELECT rule, channel, group_key, MIN(created) AS since, "
            "GROUP_CONCAT(DISTINCT event) AS events FROM outbox "
            "WHERE kind = 'alert' AND send_resolved = 1 AND resource = ? AND host = ? "
            f"AND event IN ({', '.join('?' * len(events))}) AND event_id > ? "
            "GROUP BY rule, channel ORDER BY since, MIN(id)",
            (resource, host, *events, after_event_id))]

    def outbox_conditions(self, channel: str, resolved_by: dict[str, tuple[str, ...]],
                          resources: list[str] | None = None,
                          exclude_rule: str | None = None) -> list[dict[str, Any]]:
        """Each condition (event, resource, host) a channel was sent an alert for, as it
        stands now (delivery/alertmanager.py sends these, not the queued rows).

        `resolved_by` maps a condition's event kind to the events that end it.
        Each row: event, resource, host; severity, title and body of the latest
        alert; `since`, when this episode's first alert was queued; `resolved_at`,
        the time of the first resolving event after the latest alert, None while open.
        """
        out: list[dict[str, Any]] = []
        for kind, ends in resolved_by.items():
            marks = ", ".join("?" * len(ends))
            where, args = "channel = ? AND kind = 'alert' AND event = ?", [channel, kind]
            if exclude_rule is not None:
                where += " AND (rule IS NULL OR rule != ?)"
                args.append(exclude_rule)
            if resources is not None:
                where += f" AND resource IN ({', '.join('?' * len(resources))})"
                args += resources
            latest = [r[0] for r in self.db.execute(
                f"SELECT MAX(id) FROM outbox WHERE {where} GROUP BY resource, host", args)]
            for oid in sorted(latest):
                o = self.db.execute("SELECT * FROM outbox WHERE id = ?", (oid,)).fetchone()
                place = (o["resource"], o["host"])
                event_id = o["event_id"] or 0
                resolved_at = self.db.execute(
                    f"SELECT MIN(time) FROM events WHERE resource = ? AND host = ? AND event IN "
                    f"({marks}) AND id > ?", (*place, *ends, event_id)).fetchone()[0]
                # This episode began after the resolver before the latest alert.
                began = self.db.execute(
                    f"SELECT MAX(id) FROM events WHERE resource = ? AND host = ? AND event IN "
                    f"({marks}) AND id < ?", (*place, *ends, event_id)).fetchone()[0] or 0
                since = self.db.execute(
                    "SELECT MIN(created) FROM outbox WHERE channel = ? AND kind = 'alert' AND "
                    "event = ? AND resource = ? AND host = ? AND event_id > ?",
                    (channel, kind, *place, began)).fetchone()[0]
                out.append({"event": o["event"], "resource": o["resource"], "host": o["host"],
                            "severity": o["severity"], "title": o["title"], "body": o["body"],
                            "resolved_at": resolved_at,
                            "since": o["created"] if since is None else min(since,
                                                                             o["created"])})
        return out

    # -- watch ----------------------------------------------------------

    def watch_state(self, host: str) -> tuple[dict[str, dict[str, Any]],
                                              dict[tuple[str, str], dict[str, Any]]]:
        """What the last watch passes on this host left: ({resource: seen},
        {(resource, condition): {active, bad, good, since, severity, detail}})."""
        seen = {r[0]: json.loads(r[1]) for r in self.db.execute(
            "SELECT resource, seen FROM watch_seen WHERE host = ?", (host,))}
        conds = {(r["resource"], r["condition"]): {
            "active": bool(r["active"]), "bad": r["bad"], "good": r["good"],
            "since": r["since"], "severity": r["severity"], "detail": r["detail"]}
            for r in self.db.execute("SELECT * FROM watch_conditions WHERE host = ?", (host,))}
        return seen, conds

    def save_watch_state(self, db: sqlite3.Connection, host: str, now: float,
                         seen: dict[str, dict[str, Any]],
                         conds: dict[tuple[str, str], dict[str, Any]]) -> None:
        """Replace this host's watch state (inside the pass's transaction)."""
        db.execute("DELETE FROM watch_seen WHERE host = ?", (host,))
        db.execute("DELETE FROM watch_conditions WHERE host = ?", (host,))
        db.executemany("INSERT INTO watch_seen (host, resource, time, seen) VALUES (?, ?, ?, ?)",
                       [(host, res, now, _json(v)) for res, v in seen.items()])
        db.executemany(
            "INSERT INTO watch_conditions (host, resource, condition, active, bad, good, since, "
            "severity, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(host, res, cond, int(c["active"]), c["bad"], c["good"], c["since"],
              c.get("severity"), c.get("detail")) for (res, cond), c in conds.items()])
        db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('watch_pass', ?)",
                   (repr(now),))

    def watch_active(self) -> list[dict[str, Any]]:
        """The conditions watch has raised and not yet resolved, oldest first: host,
        resource, condition, severity, since, detail."""
        return [dict(r) for r in self.db.execute(
            "SELECT host, resource, condition, severity, since, detail FROM watch_conditions "
            "WHERE active = 1 ORDER BY since, resource, condition")]

    def watch_last_pass(self) -> float | None:
        """When the last watch pass completed (None: never)."""
        value = self.meta("watch_pass")
        return float(value) if value is not None else None

    # -- metrics --------------------------------------------------------

    def metrics(self) -> dict[str, dict[Any, Any]]:
        """What `hasthook metrics` exports from the database, read in one snapshot.

        events {event: count}, last_event {resource: time}, outbox {(channel,
        state): count}, last_sent {channel: time}, recoveries {(resource, state):
        count}, watch {(resource, condition, severity): since} of the active
        conditions, meta {"watch_pass": time} once a watch pass completed. Counts
        cover what the retention keeps.
        """
        queries = {
            "last_event": "SELECT resource, MAX(last) FROM places GROUP BY resource",
            "outbox": "SELECT channel, state, COUNT(*) FROM outbox GROUP BY channel, state",
            "last_sent": "SELECT channel, MAX(sent_at) FROM outbox WHERE sent_at IS NOT NULL "
                         "GROUP BY channel",
            "recoveries": "SELECT resource, state, COUNT(*) FROM recoveries "
                          "GROUP BY resource, state",
            "watch": "SELECT resource, condition, severity, since FROM watch_conditions "
                     "WHERE active = 1",
            "meta": "SELECT key, value FROM meta WHERE key = 'watch_pass'",
        }
        out: dict[str, dict[Any, Any]] = {}
        self.db.execute("BEGIN")
        try:
            for name, sql in queries.items():
                out[name] = {(tuple(r[:-1]) if len(r) > 2 else r[0]): r[-1]
                             for r in self.db.execute(sql)}
            out["events"] = self._kind_counts()
        finally:
            self.db.execute("COMMIT")
        return out

    def _kind_counts(self) -> dict[str, int]:
        """Events per kind, one index search per kind (a handful of kinds, millions of rows)."""
        out: dict[str, int] = {}
        kind = self.db.execute("SELECT MIN(event) FROM events").fetchone()[0]
        while kind is not None:
            out[kind] = self.db.execute("SELECT COUNT(*) FROM events WHERE event = ?",
                                        (kind,)).fetchone()[0]
            kind = self.db.execute("SELECT MIN(event) FROM events WHERE event > ?",
                                   (kind,)).fetchone()[0]
        return out

    # -- retention ------------------------------------------------------

    def meta(self, key: str) -> str | None:
        r = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return r[0] if r else None

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def prune(self, older_than: float, resolvers: dict[str, tuple[str, ...]] | None = None,
              guard_since: float | None = None) -> int:
        """Drop the history older than `older_than`; returns how many events went.

        Kept whatever their age: the events of a condition still open (an alert kind
        no resolver has ended since, see `resolvers`), recovery rows newer than
        `guard_since` (cooldown and max_attempts count them) or still running,
        silences not yet ended, messages not yet delivered, and sent alerts whose
        event is kept (Alertmanager re-sends open conditions from them). The file
        gives the freed pages back (incremental auto-vacuum; a database made before
        that setting is vacuumed once).
        """
        resolvers = resolvers or {}
        gone = 0
        # An alert kind's events after its last resolver are an open condition.
        keep = " AND NOT (event = ? AND id > ?)" * len(resolvers)
        with self.transaction() as db:
            for res, host in self.places():
                args: list[Any] = [res, host, older_than]
                for kind, ends in resolvers.items():
                    after = db.execute(
                        f"SELECT MAX(id) FROM events WHERE resource = ? AND host = ? AND event "
                        f"IN ({', '.join('?' * len(ends))})", (res, host, *ends)
                    ).fetchone()[0] or 0 if ends else 0
                    args += [kind, after]
                gone += db.execute("DELETE FROM events WHERE resource = ? AND host = ? AND "
                                   f"time < ?{keep}", args).rowcount
                if db.execute("SELECT 1 FROM events WHERE resource = ? AND host = ? LIMIT 1",
                              (res, host)).fetchone() is None:
                    db.execute("DELETE FROM places WHERE resource = ? AND host = ?", (res, host))
            db.execute("DELETE FROM recoveries WHERE started < ? AND state != 'running'",
                       (older_than if guard_since is None else min(older_than, guard_since),))
            db.execute("DELETE FROM silences WHERE ends < ?", (older_than,))
            db.execute("DELETE FROM outbox WHERE created < ? AND state IN ('sent', 'dead') "
                       "AND NOT (kind = 'alert' AND event_id IS NOT NULL "
                       "AND event_id IN (SELECT id FROM events))", (older_than,))
        self._shrink()
        return gone

    def _shrink(self) -> None:
        """Give freed pages back to the file system."""
        if self.db.execute("PRAGMA auto_vacuum").fetchone()[0] == 0:
            self.db.execute("PRAGMA auto_vacuum=INCREMENTAL")  # takes effect with VACUUM
            self.db.execute("VACUUM")
        else:
            # sqlite3_exec steps it to the end; one execute() step frees one page only.
            self.db.executescript("PRAGMA incremental_vacuum;")
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def damaged(e: BaseException) -> bool:
    """Is this error a damaged database file (or schema), rather than a lock, a full disk
    or a mode?"""
    code = getattr(e, "sqlite_errorcode", None)
    if isinstance(e, sqlite3.OperationalError) and str(e).startswith(("no such table",
                                                                       "no such column")):
        return True
    return isinstance(e, sqlite3.DatabaseError) and code is not None and code & 0xFF in DAMAGED


@contextmanager
def savepoint(db: sqlite3.Connection, name: str) -> Iterator[sqlite3.Connection]:
    """A nested transaction inside `transaction()`: a failure undoes only its own writes
    (then the exception goes on), the enclosing transaction carries on."""
    db.execute(f"SAVEPOINT {name}")
    try:
        yield db
    except BaseException:
        db.execute(f"ROLLBACK TO {name}")
        db.execute(f"RELEASE {name}")
        raise
    db.execute(f"RELEASE {name}")


@contextmanager
def _immediate(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _rowid(cur: sqlite3.Cursor) -> int:
    """The id an INSERT gave its row."""
    assert cur.lastrowid is not None
    return cur.lastrowid


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True)


def _recovery_row(r: sqlite3.Row) -> dict[str, Any]:
    d = dict(r)
    for k in ("expect", "steps"):
        d[k] = json.loads(d[k]) if d[k] else []
    d["dry_run"] = bool(d["dry_run"])
    return d


def _outbox_row(r: sqlite3.Row) -> dict[str, Any]:
    d = dict(r)
    d["delivered"] = json.loads(d["delivered"]) if d["delivered"] else []
    d["send_resolved"] = bool(d["send_resolved"])
    return d


def _event_row(r: sqlite3.Row) -> dict[str, Any]:
    d = dict(r)
    for k in ("errors", "extra", "rules", "outcome"):
        if d.get(k):
            d[k] = json.loads(d[k])
    d["known"] = bool(d["known"])
    return d
