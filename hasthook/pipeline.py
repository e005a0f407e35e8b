"""THE event path: record -> evaluate the rules -> run the jobs -> store the outcome -> deliver.

Every event takes it, whoever made it: hastd's (through hasthook-exec), a
recovery's report, a failover step, `hasthook test` (the same code with
dry_run: nothing written, sent or run). One event, one transaction: the
event, the rules' throttle and repeat state and the messages it queues commit
together, before any action does I/O; jobs run after the commit.

    p = Pipeline(cfg, store, log)
    p.publish(event)              # record, evaluate, run its jobs now
    p.publish(event, later=True)  # ... run them at flush(): after a recovery
    p.deliver()                   # send what is due

A synthetic event may bring a Report: text to tell the given channels unless
a matching rule already told them, and alert_channels when the event is
critical and nothing else told anyone (a stopped failover, a failed recovery
is never only a syslog line).
"""

from __future__ import annotations

from . import actions
from .actions import Report
from .errors import TimeBox
from .event import SEVERITY_RANK, Event
from .record import Record, fresh
from .store import savepoint

TYPE_CHECKING = False  # typing is not imported at run time: hasthook-exec starts faster
if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Callable
    from typing import Any

    from .config import Config
    from .log import Levels
    from .rules import Match
    from .store import Store
    from .turns import Turn

# Seconds of the time box kept for spooling when the database is locked.
SPOOL_MARGIN = 5.0
TURN_SHARE = 3  # a hook waits for earlier ones of its resource a third of its box at most
PRUNE_EVERY = 3600.0  # retention does real work at most this often
# hasthook's own alerts about its config: each problem at most hourly (rule state).
CONFIG_ERROR_RULE = {"name": "(config-error)", "repeat_interval": "1h"}
UNTRUSTED_RULE = {"name": "(untrusted)", "repeat_interval": "1h"}


class Handled(Record):
    """One event through the pipeline: what matched, what was held back, what ran."""

    event: Event
    event_id: int | None
    matches: list[Match] = fresh(list)
    matched: list[str] = fresh(list)    # rule names, as the history records them
    held: list[dict[str, Any]] = fresh(list)
    jobs: list[actions.Job] = fresh(list)
    outcomes: list[dict[str, Any]] = fresh(list)


def counts_toward_state(m: Match, silence: dict[str, Any] | None) -> bool:
    """Does this event count toward the rule's throttle and repeat_interval? Not when a
    silence leaves the rule only actions with guards of their own (recover): the first
    event after the silence is then told at once."""
    from . import silences

    if not m.stateful:
        return False
    acts = silences.unmuted(m.actions) if silence else m.actions
    return not (silence and all(actions.own_guards(n) for n, _ in acts))


class Upkeep(Record):
    """What Pipeline.upkeep did: events taken from the spool, events pruned (None: not
    time yet), the outbox's delivery report, Alertmanager's refresh."""

    spooled: int
    pruned: int | None
    delivery: Any
    alertmanager: dict[str, Any]

    @property
    def failed(self) -> bool:
        return bool(self.delivery.failed or self.alertmanager["failed"])


class Pipeline:
    """The path of events through one config, store and log.

    `hastctl` makes the Hastctl actions use (default: the config's); a dry run
    reads the store (open it read-only) and writes, sends and runs nothing.
    """

    def __init__(self, cfg: Config, store: Store, log: Levels, *, dry_run: bool = False,
                 hastctl: Callable[[], Any] | None = None):
        self.cfg = cfg
        self.store = store
        self.log = log
        self.dry_run = dry_run
        self.hastctl = hastctl or (actions.no_hastctl if dry_run else self._hastctl)
        self.pending: list[Handled] = []

    def _hastctl(self) -> Any:
        from .hast import Hastctl

        return Hastctl.from_settings(self.cfg.settings)

    # -- one event ------------------------------------------------------------------

    def evaluate(self, ev: Event, event_id: int | None, db: sqlite3.Connection, *,
                 config_error: str | None = None, db_notice: str | None = None,
                 report: Report | None = None) -> Handled:
        """Inside the event's transaction: match the rules, apply silences, throttle and
        repeat state, and let each action prepare. A bug here costs the rules, never
        the event: it is logged and the event is committed without actions."""
        from . import rules, silences
        from .actions.notify import prepare_resolved

        h = Handled(ev, event_id)
        after: list[actions.Job] = []
        try:
            with savepoint(db, "rules"):
                if not self.dry_run:
                    self._config_alert(ev, event_id, db, config_error, after)
                    if db_notice:  # this run moved a damaged database aside: say so
                        actions.alert(self.context(ev, event_id, after=after), db,
                                      f"hasthook on {ev.host}: database damaged", db_notice)
                    self.store.resolve(db, ev)
                    # "resolved" messages this event owes (send_resolved)
                    prepare_resolved(self.context(ev, event_id), db)
                # A silence mutes notify only; a silenced rule with nothing else to do
                # leaves its throttle and repeat state alone, so the first event after it
                # is told.
                silence = silences.silencing(ev, self.store.active_silences(ev.time, db))
                if silence:
                    h.held.append(silences.held(silence))
                    self.log.info(f"[{ev.resource}] {ev.event} silenced by silence "
                                  f"{silence['id']}: recorded, not notified")
                for m in rules.match(ev, self.cfg.rules):
                    h.matches.append(m)
                    h.matched.append(m.name)
                    h.jobs += self._rule(ev, event_id, db, m, silence, h.held, after)
                if report is not None:
                    self._report(ev, event_id, db, report, h, after)
        except Exception as e:  # noqa: BLE001
            self.log.crit(f"[{ev.resource}] rules failed on {ev.event}: {type(e).__name__}: "
                          f"{e}; event recorded, no action taken")
            h.jobs, h.held, after = [], [], []
        h.jobs = after + h.jobs
        return h

    def _rule(self, ev: Event, event_id: int | None, db: sqlite3.Connection, m: Match,
              silence: dict[str, Any] | None, held: list[dict[str, Any]],
              after: list[actions.Job]) -> list[actions.Job]:
        """The jobs one matching rule makes, after its silence, throttle and repeat."""
        from . import rules, silences

        acts = silences.unmuted(m.actions) if silence else m.actions
        suppressed = 0
        if counts_toward_state(m, silence):
            key = rules.key_of(m.rule, ev)
            d = rules.decide(m.rule, self.store.rule_state(db, m.name, key), ev.time)
            if not self.dry_run:
                self.store.save_rule_state(db, m.name, key, d.state, ev)
            if not d.fire:
                held.append({"rule": m.name, "by": d.reason, "count": d.state.suppressed})
                self.log.info(f"[{ev.resource}] {ev.event} suppressed by rule {m.name!r} "
                              f"({d.reason}; {d.state.suppressed} since it last acted)")
                # The throttle holds back messages; an action with guards of its own
                # (recover: cooldown, max_attempts) still gets every event.
                acts = tuple((n, p) for n, p in m.actions if actions.own_guards(n))
            else:
                suppressed = d.suppressed
        ctx = self.context(ev, event_id, m, suppressed, after)
        return [actions.prepare(name, params, ctx, db) for name, params in acts]

    def _report(self, ev: Event, event_id: int | None, db: sqlite3.Connection,
                report: Report, h: Handled, after: list[actions.Job]) -> None:
        """The Report's message: to its channels no rule took, else alert_channels when
        the event is critical and nobody was told."""
        taken = {c for j in h.jobs if j.name == "notify" and isinstance(j.params, dict)
                 for c in j.params.get("channels") or ()}
        rest = [c for c in report.channels if c not in taken]
        if not rest and not taken and ev.severity == "critical":
            rest = self.cfg.alert_channels
        if not rest:
            return
        ctx = self.context(ev, event_id, rule=report.rule, after=after)
        h.jobs.append(actions.prepare("notify", {
            "channels": rest, "report": {"title": report.title, "body": report.body},
            "internal": report.rule is None}, ctx, db))
        h.matched.append(report.rule or "(alert_channels)")

    def _config_alert(self, ev: Event, event_id: int | None, db: sqlite3.Connection,
                      config_error: str | None, after: list[actions.Job]) -> None:
        """A broken config, or programs it names that root will not run, is alerted
        through the config in use, at most hourly per problem."""
        if self.cfg.origin == "file":  # just validated after a change: alert anew
            self.store.resolve_rule(db, CONFIG_ERROR_RULE["name"])
            self.store.resolve_rule(db, UNTRUSTED_RULE["name"])
        if config_error:
            using = ("the last good copy" if self.cfg.origin == "last-good"
                     else "the built-in defaults (no good copy yet)")
            self._hourly(CONFIG_ERROR_RULE, config_error.split(" (and ")[0], ev, event_id,
                         db, after, f"hasthook on {ev.host}: config error in {self.cfg.path}",
                         f"{config_error}\nhasthook-exec runs on {using}; every event is "
                         "still recorded. Fix the file and run `hasthook check`.")
        if self.cfg.untrusted:
            self._hourly(UNTRUSTED_RULE, "\n".join(self.cfg.untrusted), ev, event_id, db,
                         after, f"hasthook on {ev.host}: programs refused in {self.cfg.path}",
                         "\n".join(self.cfg.untrusted) + "\nRoot runs only what root owns "
                         "and others cannot change: chown root and chmod go-w the file, the "
                         "program and the directories above them, then `hasthook check`.")

    def _hourly(self, rule: dict[str, Any], key: str, ev: Event, event_id: int | None,
                db: sqlite3.Connection, after: list[actions.Job], title: str,
                body: str) -> None:
        from . import rules

        d = rules.decide(rule, self.store.rule_state(db, rule["name"], key), ev.time)
        self.store.save_rule_state(db, rule["name"], key, d.state, ev)
        if d.fire:
            actions.alert(self.context(ev, event_id, after=after), db, title, body)

    def context(self, ev: Event, event_id: int | None, m: Match | None = None,
                suppressed: int = 0, after: list[actions.Job] | None = None,
                rule: str | None = None) -> actions.Context:
        """What an action acting on this event knows."""
        return actions.Context(
            ev, event_id, m.name if m else rule, self.cfg, self.store, self.log,
            self.hastctl, ev.time, dry_run=self.dry_run, rule_config=m.rule if m else {},
            suppressed=suppressed, after=after if after is not None else [], pipeline=self)

    def record(self, ev: Event, *, report: Report | None = None,
               config_error: str | None = None, db_notice: str | None = None) -> Handled:
        """Record the event and evaluate it, in one transaction; its jobs are not run yet."""
        with self.store.transaction() as db:
            if ev.cause is None:
                self._recognise(ev, db)
            event_id = self.store.record(ev, db)
            return self.evaluate(ev, event_id, db, config_error=config_error,
                                 db_notice=db_notice, report=report)

    def record_all(self, events: list[Event],
                   then: Callable[[sqlite3.Connection], None] | None = None) -> list[Handled]:
        """Several events in one transaction, each recorded and evaluated as record()
        does, and `then(db)` before the commit: a watch pass's conditions and the state
        that found them commit together, so a pass killed half-way neither loses an
        onset nor tells it twice."""
        with self.store.transaction() as db:
            out = [self.evaluate(ev, self.store.record(ev, db), db) for ev in events]
            if then is not None:
                then(db)
        return out

    def _recognise(self, ev: Event, db: sqlite3.Connection) -> None:
        """What hastd's words alone do not say, read from the history.

        `role R X init` and `role R init X` a few seconds apart (either first: their
        hooks race) are hastd restarting R: both halves get cause restart, and a message
        about the first still waiting in the outbox gives way to this one's, so one
        message tells the restart. A `connect` with no `disconnect` since the last one is
        a primary worker restarted: cause reconnect (it ends nothing), taken back when
        the disconnect before it turns up late.
        """
        from .event import RECONNECT, RESTART, RESTART_WINDOW

        old, new = ev.old_role or "", ev.new_role or ""
        if ev.event == "role" and old != new and "init" in (old, new):
            x = new if old == "init" else old
            partner = ("init", x) if new == "init" else (x, "init")
            other = self.store.role_partner(db, ev.resource, ev.host, partner, ev.time,
                                            RESTART_WINDOW)
            if other is not None:
                ev.cause = RESTART
                self.store.set_cause(db, other, RESTART)
                self.store.outbox_drop_pending(db, ev.resource, other)
        elif ev.event == "connect":
            last = self.store.last_event(ev.resource, ("connect", "disconnect"), host=ev.host)
            if last is not None and last["event"] == "connect":
                ev.cause = RECONNECT
        elif ev.event == "disconnect":
            # A connect just after this disconnect, recorded first (their hooks raced),
            # was taken for a reconnect: it was not.
            self.store.clear_cause(db, ev.resource, ev.host, "connect", RECONNECT, ev.time,
                                   ev.time + RESTART_WINDOW)

    def run(self, h: Handled) -> Handled:
        """Run the jobs (after the commit) and store what came of them."""
        h.outcomes = [job.run() for job in h.jobs]
        if (h.matched or h.held or h.outcomes) and h.event_id is not None and not self.dry_run:
            try:
                self.store.set_outcome(h.event_id, h.matched,
                                       {"actions": h.outcomes, "suppressed": h.held})
            except Exception as e:  # noqa: BLE001 - the event and the actions are done
                self.log.error(f"[{h.event.resource}] cannot record the outcome of event "
                               f"{h.event_id}: {e}")
        return h

    def publish(self, ev: Event, report: Report | None = None, later: bool = False) -> int:
        """Record a synthetic event and route it like hastd's; its id.

        `later`: run its jobs at flush(), e.g. after a recovery, so no network I/O
        happens while HAST is being changed.
        """
        h = self.record(ev, report=report)
        if later:
            self.pending.append(h)
        else:
            self.run(h)
            self.deliver(wait=False)  # what is due now (group_wait 0s); the rest waits
        assert h.event_id is not None
        return h.event_id

    def flush(self) -> None:
        """Run the jobs publish(later=True) left."""
        while self.pending:
            self.run(self.pending.pop(0))

    def test(self, ev: Event) -> Handled:
        """The dry run: evaluate against what the store holds now; jobs describe."""
        assert self.dry_run
        return self.run(self.evaluate(ev, None, self.store.db))

    # -- what goes on around events -------------------------------------------------

    def deliver(self, wait: bool = True) -> None:
        """Send what is due, this run's messages and any left by other runs, within the
        time box; what cannot go now stays queued for the next run or `hasthook flush`.

        Only the holder of the delivery lock delivers. It is taken before anything of
        the deliverer is imported: in a burst of hooks the others commit their rows and
        leave at once, loading neither the outbox code nor apprise (the holder sends
        their rows). `wait`: stay for rows still inside their group_wait.
        """
        from .store import DELIVERY_LOCK

        try:
            if self.store.outbox_due() == (None, None, None):
                return  # nothing queued: most events
            held = self.store.lock(DELIVERY_LOCK)
            if held is None:
                return  # another process delivers, our rows included
            from .delivery.outbox import drain

            drain(self.store, self.cfg, self.log, held=held, wait=wait)
        except TimeBox:
            raise
        except Exception as e:  # noqa: BLE001 - the messages wait in the outbox
            self.log.error(f"delivery stopped: {type(e).__name__}: {e}; messages stay queued")

    def upkeep(self, everything: bool = False) -> Upkeep:
        """What runs every minute besides hastd's events (`hasthook flush`, each watch
        pass): spooled events in, recoveries a dead process left told, retention, what
        is due delivered (everything: all pending now), and open conditions re-sent to
        Alertmanager channels."""
        from .delivery.alertmanager import refresh
        from .delivery.outbox import drain

        spooled = self.take_spool()
        self.reap_recoveries()
        pruned = self.retain()
        sent = drain(self.store, self.cfg, self.log, everything=everything)
        return Upkeep(spooled, pruned, sent, refresh(self.store, self.cfg, self.log))

    def retain(self, now: float | None = None) -> int | None:
        """Retention: prune what settings.retention lets go, at most hourly (`hasthook
        flush` runs every minute; a hook never does). None when it was not time yet."""
        import time

        from .actions.recover import guard_window
        from .event import ENDED_BY
        from .units import format_duration

        now = time.time() if now is None else now
        if now - float(self.store.meta("pruned") or 0) < PRUNE_EVERY:
            return None
        keep = self.cfg.settings.retention
        n = self.store.prune(now - keep, ENDED_BY, now - guard_window(self.cfg.rules))
        self.store.set_meta("pruned", repr(now))
        if n:
            self.log.notice(f"retention: {n} events older than {format_duration(keep)} pruned "
                            f"from {self.store.path}")
        return n

    def reap_recoveries(self) -> int:
        """Recoveries a dead process left half done, told once each (critical): the next
        hook, `hasthook flush` and `status` ask, so one is never silent."""
        if not self.store.recoveries_running():
            return 0
        from .actions.recover import publisher
        from .tools.recover import Recoverer

        rec = Recoverer(self.hastctl(), self.log, self.cfg.settings, self.cfg.hostname,
                        store=self.store, publish=publisher(self))
        n = rec.reap()
        self.flush()
        return n

    def take_spool(self) -> int:
        """Take spooled events in; one alert names them (no rule acts on a late event)."""
        from . import spool

        taken: list[tuple[int, Event]] = []
        try:
            spool.take(self.store, self.cfg.settings.state_dir, self.log, taken)
        finally:
            self._tell_late(taken)
        return len(taken)

    def _tell_late(self, taken: list[tuple[int, Event]]) -> None:
        """One hasthook alert naming the events that went in late.

        Their rules did not act (a late recovery or command could do harm; a late
        message could mislead), so the admin is told what happened meanwhile.
        """
        from .units import iso, plural

        if not taken:
            return
        event_id, worst = max(taken, key=lambda t: SEVERITY_RANK.get(t[1].severity, 0))
        lines = [f"  {iso(ev.time)}  {ev.event} {ev.resource} on {ev.host} ({ev.severity})"
                 for _, ev in taken]
        try:
            with self.store.transaction() as db:
                ctx = self.context(worst, event_id, rule="(late-events)")
                actions.alert(
                    ctx, db, f"hasthook on {worst.host}: {plural(len(taken), 'event')} recorded "
                    "late, rules not applied",
                    "The database could not take these events when they happened (locked, "
                    "unwritable or damaged); they were spooled and are in the history now:\n"
                    + "\n".join(lines) + "\nNo rule acted on them: nothing was notified, "
                    "recovered or run for them. Check `hasthook status` and `hasthook history`.")
        except Exception as e:  # noqa: BLE001 - the events are in; only the alert is not
            self.log.crit(f"{len(taken)} spooled events are in the history, but the alert "
                          f"saying so cannot be queued: {type(e).__name__}: {e}")


def hook(ev: Event, cfg: Config, log: Levels, deadline: float,
         config_error: str | None = None, turn: Turn | None = None) -> int:
    """hastd's event through the pipeline, durably: recorded (or spooled when the database
    cannot take it), evaluated, acted on, delivered, before `deadline` (time.monotonic(),
    the end of the hook's time box). Returns the exit status.

    With a turn (hasthook/turns.py), the earlier hooks of the resource record first;
    it is released once this event is recorded or spooled."""
    import time

    # What evaluate() uses, imported before the write lock is taken: importing inside
    # the transaction held the lock ten times longer (35 ms, not 3), and in a burst of
    # 200 hooks some waited past the busy timeout and were spooled, not acted on.
    from . import rules, silences, spool, sysexits  # noqa: F401
    from .actions import notify  # noqa: F401
    from .store import Store, damaged

    if turn is not None and (ahead := turn.ahead()):
        log.info(f"[{ev.resource}] {ev.event}: waiting for {len(ahead)} earlier hook(s) of "
                 "this resource to record first")
        share = max(0.0, deadline - time.monotonic() - SPOOL_MARGIN) / TURN_SHARE
        late = turn.wait(ahead, time.monotonic() + share)
        if late:
            log.warning(f"[{ev.resource}] {ev.event}: {len(late)} earlier hook(s) of it "
                        "still running; recorded before them")
    # A locked database is waited for as long as what is left of the time box allows,
    # less the time to spool: a spooled event is recorded later, but no rule acts on it.
    store = Store(cfg.settings.state_dir,
                  busy_timeout=max(1.0, deadline - time.monotonic() - SPOOL_MARGIN))
    p = Pipeline(cfg, store, log)
    notice = None
    for attempt in (1, 2):
        try:
            if ev.event == "role" and attempt == 1:  # caused by our own recovery?
                from .tools.recover import mark_cause

                mark_cause(ev, store)  # inside: the time box may strike while it waits
            try:
                p.take_spool()
            except Exception as e:  # noqa: BLE001 - the spool waits; this event must not
                log.error(f"cannot take the spool in yet: {type(e).__name__}: {e}")
            h = p.record(ev, config_error=config_error, db_notice=notice)
            break
        except (Exception, TimeBox) as e:  # the database is gone, locked, damaged, or slow
            if attempt == 1 and damaged(e):
                notice = _set_aside(store, e, log)
                continue  # a new database (this run's or another's), or spool below
            saved = spool.write(ev, cfg.settings.state_dir)
            log.crit(f"[{ev.resource}] cannot record {ev.event} in {store.path}: "
                     f"{type(e).__name__}: {e}; "
                     + (f"spooled for later in {saved}" if saved else "EVENT NOT SAVED"))
            return sysexits.EX_OK if saved else sysexits.EX_CANTCREAT
    if turn is not None:
        turn.release()  # recorded: the next hook of the resource may record
    p.run(h)
    try:
        p.reap_recoveries()
    except Exception as e:  # noqa: BLE001 - the event is in; flush asks again
        log.error(f"cannot check for interrupted recoveries: {type(e).__name__}: {e}")
    p.deliver()
    store.close()
    return sysexits.EX_OK


def _set_aside(store: Store, error: BaseException, log: Levels) -> str | None:
    """A damaged database would send every event to the spool and silence every rule:
    move it aside (kept for the admin) and start a new one. Returns the alert text."""
    try:
        aside = store.set_aside()
    except Exception as e:  # noqa: BLE001 - then the event is spooled
        log.error(f"cannot move the damaged database {store.path} aside: {e}")
        return None
    if aside is None:
        return None  # another hook has replaced it already
    text = (f"The database {store.path} was damaged ({error}). It was moved to {aside} and a "
            f"new one started, so events are recorded and rules act again. Its history and "
            f"any messages still queued in it stay there: `sqlite3 {aside} .recover` may "
            "save them.")
    log.crit(text)
    return text
