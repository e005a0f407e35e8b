"""The notify action: what it queues, in the event's transaction, and resolved messages."""

from __future__ import annotations

import pytest

from hasthook import config
from hasthook.actions import Context, notify
from hasthook.event import classify
from hasthook.log import Log
from hasthook.store import Store

T0 = 1_800_000_000.0


@pytest.fixture
def store(tmp_path):
    s = Store(str(tmp_path / "state"))
    yield s
    s.close()


def cfg(rules=(), channels=None, **settings):
    return config.from_data({
        "settings": settings,
        "channels": channels or {"ops": "json://127.0.0.1:1/", "mail": {
            "urls": "mailto://127.0.0.1:1?to=a@b.c", "title": "MAIL {resource} {event}"}},
        "rules": list(rules)})


def hook(store, conf, words, now, rule=None, params=None, dry_run=False):
    """What hasthook-exec does for one event: record, prepare, all in one transaction."""
    ev = classify(words, "host1", now)
    ev.role, ev.status, ev.dirty = "primary", "degraded", 2 << 20
    rule_cfg = next((r for r in conf.rules if r["name"] == rule), {})
    with store.transaction() as db:
        eid = store.record(ev, db)
        ctx = Context(ev, eid, rule, conf, store, Log(), lambda: None, now, dry_run,
                      rule_cfg)
        if params is not None:
            notify.prepare(params, ctx, db)
        notify.prepare_resolved(ctx, db)
    return ctx


def test_one_row_per_channel_with_defaults(store):
    conf = cfg([{"name": "link", "match": {"event": "disconnect"}}])
    hook(store, conf, ["disconnect", "shared1"], T0, "link", ["ops", "mail"])
    ops, mail = store.outbox_list()
    assert (ops["channel"], ops["group_key"], ops["kind"], ops["state"]) == (
        "ops", "link|warning", "alert", "pending")
    assert ops["title"] == "[warning] shared1 lost its peer (host1)"
    assert "2.0MB" in ops["body"]
    assert mail["title"] == "MAIL shared1 disconnect"           # the channel's template
    assert ops["due"] == T0 + 2 and ops["attempts"] == 0     # default group_wait 2s
    assert (ops["resource"], ops["event"], ops["severity"], ops["host"]) == (
        "shared1", "disconnect", "warning", "host1")


def test_action_text_wins_and_group_wait_comes_from_rule_or_settings(store):
    conf = cfg([{"name": "sb", "group_wait": "0s"}, {"name": "other"}], group_wait="10s")
    hook(store, conf, ["split-brain", "shared1"], T0, "sb",
         {"channels": "mail", "title": "SB {resource}!", "body": "{{literal}} {host}"})
    hook(store, conf, ["split-brain", "shared2"], T0, "other", "ops")
    sb, other = store.outbox_list()
    assert (sb["title"], sb["body"], sb["due"]) == ("SB shared1!", "{literal} host1", T0)
    assert other["due"] == T0 + 10


def test_injection_attempts_stay_text(store):
    conf = cfg([{"name": "r"}])
    hook(store, conf, ["disconnect", "{resource.__class__}"], T0, "r",
         {"channels": "ops", "title": "{resource!r} {0} {resource:>99}"})
    [row] = store.outbox_list()
    assert row["title"] == "{resource!r} {0} {resource:>99}"


def test_dry_run_queues_nothing_and_shows_the_message(store):
    conf = cfg([{"name": "r"}])
    ctx = hook(store, conf, ["disconnect", "shared1"], T0, "r", "ops", dry_run=True)
    assert store.outbox_list() == []
    out = notify.execute("ops", ctx)
    assert out["ok"] and out["detail"] == "would queue for ops"
    assert out["messages"][0]["title"] == "[warning] shared1 lost its peer (host1)"


def test_resolved_after_disconnect_with_the_outage_length(store):
    conf = cfg([{"name": "link", "send_resolved": True, "group_wait": "1s"}])
    hook(store, conf, ["disconnect", "shared1"], T0, "link", ["ops", "mail"])
    hook(store, conf, ["disconnect", "shared2"], T0, "link", ["ops"])
    hook(store, conf, ["connect", "shared1"], T0 + 303)
    rows = [r for r in store.outbox_list() if r["kind"] == "resolved"]
    assert [(r["channel"], r["resource"]) for r in rows] == [("ops", "shared1"),
                                                             ("mail", "shared1")]
    r = rows[0]
    assert r["title"] == "[resolved] connect on shared1 (host1) after 5m3s"
    assert "Resolves disconnect since" in r["body"] and "5m3s in all" in r["body"]
    assert (r["group_key"], r["severity"], r["due"]) == ("link|resolved", "info", T0 + 304)
    # Resolved once: a second connect owes nothing.
    hook(store, conf, ["connect", "shared1"], T0 + 400)
    assert len([r for r in store.outbox_list() if r["kind"] == "resolved"]) == 2


def test_resolved_since_carries_the_date_and_zone_when_not_today(store):
    import re

    conf = cfg([{"name": "link", "send_resolved": True}])
    hook(store, conf, ["disconnect", "shared1"], T0, "link", ["ops"])
    hook(store, conf, ["connect", "shared1"], T0 + 60)
    hook(store, conf, ["disconnect", "shared2"], T0, "link", ["ops"])
    hook(store, conf, ["connect", "shared2"], T0 + 2 * 86400)
    one, two = [r["body"] for r in store.outbox_list() if r["kind"] == "resolved"]
    assert re.search(r"Resolves disconnect since \d\d:\d\d:\d\d \(rule link\)", one), one
    assert re.search(r"Resolves disconnect since \d{4}-\d\d-\d\d \d\d:\d\d:\d\d \S+ "
                     r"\(rule link\)", two), two


@pytest.mark.parametrize("internal", [True, False])
def test_own_alerts_and_reports_take_the_channels_title(store, internal):
    """A recovery's report (a rule's) and hasthook's own alerts are literal text; a
    channel with a title template titles them too, its {summary} their own title,
    which then opens the body."""
    conf = cfg([{"name": "sb"}])
    ctx = hook(store, conf, ["split-brain", "shared1"], T0, "sb")
    report = {"title": "[critical] shared1 (host1): recovery failed: {rule} stays", "body": "b"}
    with store.transaction() as db:
        notify.prepare({"channels": ["ops", "mail"], "report": report, "internal": internal},
                       ctx, db)
    ops, mail = store.outbox_list()
    assert (ops["title"], ops["body"]) == (report["title"], "b")
    assert mail["title"] == "MAIL shared1 split-brain"
    assert mail["body"] == f"{report['title']}\n\nb"
    summary = cfg([], {"mail": {"urls": "json://127.0.0.1:1/", "title": "HAST: {summary}"}})
    assert notify.report_message(report, summary.channels["mail"]["title"], ctx)[0] == (
        f"HAST: {report['title']}")


def test_no_resolved_without_send_resolved_or_without_an_alert(store):
    conf = cfg([{"name": "quiet"}])
    hook(store, conf, ["disconnect", "shared1"], T0, "quiet", "ops")
    hook(store, conf, ["connect", "shared1"], T0 + 5)
    hook(store, conf, ["connect", "shared9"], T0 + 5)
    assert [r["kind"] for r in store.outbox_list()] == ["alert"]


def test_syncdone_resolves_syncintr_and_syncstart_from_the_first(store):
    conf = cfg([{"name": "sync", "send_resolved": True}])
    hook(store, conf, ["syncstart", "shared1"], T0, "sync", "ops")
    hook(store, conf, ["syncintr", "shared1"], T0 + 60, "sync", "ops")
    hook(store, conf, ["syncstart", "shared1"], T0 + 120, "sync", "ops")
    hook(store, conf, ["syncdone", "shared1"], T0 + 3725)
    [r] = [r for r in store.outbox_list() if r["kind"] == "resolved"]
    assert r["title"].endswith("after 1h2m5s")
    assert "Resolves syncstart,syncintr since" in r["body"] or \
        "Resolves syncintr,syncstart since" in r["body"]


def test_group_wait_counts_from_when_the_row_lands(store):
    """A hook slowed down on a loaded host must not find its row already due."""
    import time

    conf = cfg([{"name": "link"}])
    before = time.time()
    hook(store, conf, ["disconnect", "shared1"], before - 60, "link", "ops")
    [row] = store.outbox_list()
    assert row["created"] == before - 60                  # the event's time, for durations
    assert before + 2 <= row["due"] <= time.time() + 2
