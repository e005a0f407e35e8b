"""The outbox and its deliverer, in process, against real receivers on loopback."""

from __future__ import annotations

import os
import re
import time

import pytest
from receivers import SmtpSink

from hasthook import config, redact
from hasthook.delivery import apprise_target, channel
from hasthook.delivery import outbox as deliver
from hasthook.log import Log
from hasthook.store import DELIVERY_LOCK, Store


class Env:
    def __init__(self, tmp_path, syslog):
        self.state = str(tmp_path / "state")
        self.store = Store(self.state)
        self.syslog = syslog
        self.log = Log(sock_path=syslog.path)
        self.channels: dict = {}
        self.settings: dict = {"state_dir": self.state, "send_timeout": "5s"}

    @property
    def cfg(self):
        return config.from_data({"settings": self.settings, "channels": self.channels})

    def queue(self, channel: str, resource: str = "shared1", event: str = "disconnect",
              severity: str = "warning", wait: float = 0, created: float | None = None,
              group: str = "link-loss|warning", title: str | None = None) -> int:
        now = time.time() if created is None else created
        with self.store.transaction() as db:
            return self.store.outbox_add(
                db, created=now, event_id=None, rule="link-loss", channel=channel,
                group_key=group, kind="alert", severity=severity, event=event,
                resource=resource, host="host1",
                title=title or f"[{severity}] {resource} lost its peer (host1)",
                body=f"[{resource}] lost the connection to the peer on host1", due=now + wait)

    def drain(self, **kw) -> deliver.Report:
        return deliver.drain(self.store, self.cfg, self.log, **kw)

    def rows(self, *states):
        return self.store.outbox_list(states or ("pending", "sending", "dead", "sent"))


@pytest.fixture
def env(tmp_path, syslog):
    e = Env(tmp_path, syslog)
    yield e
    e.store.close()


# -- pure parts ---------------------------------------------------------------


def test_backoff_doubles_with_jitter_and_a_cap():
    assert deliver.backoff(1, lambda: 0.0) == deliver.RETRY_BASE / 2
    assert deliver.backoff(1, lambda: 1.0) == deliver.RETRY_BASE
    assert deliver.backoff(3, lambda: 1.0) == deliver.RETRY_BASE * 4
    assert deliver.backoff(50, lambda: 1.0) == deliver.RETRY_CAP
    assert deliver.backoff(50, lambda: 0.0) == deliver.RETRY_CAP / 2


def _row(i, event="disconnect", resource=None, kind="alert", severity="warning"):
    resource = resource or f"r{i:02d}"
    return {"id": i, "created": 1_700_000_000 + i, "kind": kind, "severity": severity,
            "event": event, "resource": resource, "host": "host1",
            "title": f"[{severity}] {resource} {event} (host1)", "body": f"body {resource}"}


def test_compose_one_row_is_sent_as_rendered():
    m = apprise_target.compose([_row(1, severity="critical")])
    assert (m.title, m.body, m.notify_type) == (
        "[critical] r01 disconnect (host1)", "body r01", "failure")


def test_compose_burst_names_every_resource_and_event():
    rows = [_row(i) for i in range(1, 21)] + [_row(i, "syncintr") for i in range(21, 31)]
    m = apprise_target.compose(rows, "markdown")
    assert m.title == ("[warning] 30 events on 30 resources: disconnect x20, syncintr x10 "
                       "(host1)")
    assert m.notify_type == "warning" and m.body_format == "markdown"
    first, second = m.body.splitlines()[:2]
    assert first == "disconnect: " + ", ".join(f"r{i:02d}" for i in range(1, 21))
    assert second == "syncintr: " + ", ".join(f"r{i:02d}" for i in range(21, 31))
    for i in range(1, 31):
        assert f"r{i:02d}" in m.body


def test_compose_repeats_of_one_resource_and_resolved_bursts():
    m = apprise_target.compose([_row(i, "split-brain", "shared1", severity="critical")
                         for i in range(3)])
    assert m.title == "[critical] split-brain x3 on shared1 (host1)"
    m = apprise_target.compose([_row(i, "connect", kind="resolved", severity="info")
                                for i in (1, 2)])
    assert m.title == "[resolved] connect on 2 resources (host1)" and m.notify_type == "success"


def test_compose_times_a_burst_with_the_date_and_zone_when_not_today():
    rows = [_row(1), _row(2)]
    today = apprise_target.compose(rows, now=rows[1]["created"] + 60).body.splitlines()
    assert re.fullmatch(r"\d\d:\d\d:\d\d \[warning\] r01 disconnect \(host1\)", today[-2])
    later = apprise_target.compose(rows, now=rows[1]["created"] + 2 * 86400).body.splitlines()
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \S+ \[warning\] r01 disconnect "
                        r"\(host1\)", later[-2])
    assert apprise_target.compose([_row(1), _row(2, resource="r01")]).title == (
        "[warning] disconnect x2 on r01 (host1)")
    assert apprise_target.compose([_row(1), _row(2, "syncintr", resource="r01")]).title == (
        "[warning] 2 events on 1 resource: disconnect x1, syncintr x1 (host1)")


def test_compose_html_keeps_lines_and_escapes_markup():
    rows = [_row(1, resource="<b>r1</b>"), _row(2)]
    m = apprise_target.compose(rows, "html")
    assert m.body_format == "html" and "\n" not in m.body
    lines = m.body.split("<br>")
    assert lines[0] == "disconnect: &lt;b&gt;r1&lt;/b&gt;, r02" and lines[2].endswith(
        "[warning] &lt;b&gt;r1&lt;/b&gt; disconnect (host1)")
    single = apprise_target.compose([{**_row(1), "body": "a & b\nc"}], "html")
    assert single.body == "a &amp; b<br>c"
    assert apprise_target.compose(rows, "markdown").body == apprise_target.compose(rows).body


@pytest.mark.parametrize("url,fmt", [
    ("mailto://u:p@127.0.0.1:25?from=h@example.org&to=a@example.org&mode=insecure", "html"),
    ("mailto://u:p@127.0.0.1:25?from=h@example.org&to=a@example.org&mode=insecure&format=text",
     "text"),
    ("json://127.0.0.1/x", "text"),
    ("slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7/#ops", "markdown"),
])
def test_a_target_composes_in_its_services_format(url, fmt):
    [t] = apprise_target.targets("ch", url)
    assert apprise_target.native_format(t.server) == fmt
    assert t.compose([_row(1), _row(2)]).body_format == fmt
    [t] = apprise_target.targets("ch", {"urls": url, "format": "text"})
    assert t.compose([_row(1)]).body_format == "text"


def test_redact_removes_what_the_privacy_form_hides():
    url = "mailto://alerts:s3cret%2FPw0rd@mail.example.org?to=ops@example.org"
    shown = "mailto://alerts:****@mail.example.org/ops%40example.org"
    text = ("SMTP error for mailto://alerts:s3cret%2FPw0rd@mail.example.org: "
            "auth s3cret/Pw0rd refused")
    out = redact.text(text, [(url, shown)])
    assert "s3cret" not in out and "Pw0rd" not in out
    assert "mail.example.org" in out and "alerts" in out and "refused" in out


@pytest.mark.parametrize("spec,want", [
    ("json://h/", (["json://h/"], None, None)),
    (["json://a/", "json://b/"], (["json://a/", "json://b/"], None, None)),
    ({"urls": "json://a/", "format": "markdown"}, (["json://a/"], None, None)),
    ({"apprise_config": "/etc/apprise.yml", "tag": "ops"}, ([], "/etc/apprise.yml", ["ops"])),
])
def test_channel_urls(spec, want):
    assert apprise_target.channel_urls(spec) == want


def test_channel_without_urls_is_an_error():
    with pytest.raises(channel.ChannelError):
        apprise_target.channel_urls({"format": "text"})


# -- real transports ----------------------------------------------------------


def test_json_webhook_payload(env, http):
    env.channels = {"hooks": f"json://{http.base}/alerts"}
    env.queue("hooks", severity="critical", event="split-brain",
              title="[critical] SPLIT-BRAIN on shared1 (host1)")
    rep = env.drain()
    assert (rep.sent, rep.failed, rep.rows_sent) == (1, 0, 1)
    [req] = http.received("/alerts")
    body = req["body"]
    assert body["title"] == "[critical] SPLIT-BRAIN on shared1 (host1)"
    assert body["message"] == "[shared1] lost the connection to the peer on host1"
    assert body["type"] == "failure"
    [row] = env.rows()
    assert row["state"] == "sent" and row["attempts"] == 1
    assert row["delivered"] == [apprise_target.targets("hooks", env.channels["hooks"])[0].key]


def test_mattermost_slack_compatible_payload(env, http):
    env.channels = {"chat": f"mmost://{http.base}/hooktoken123?channel=ops"}
    env.queue("chat")
    assert env.drain().sent == 1
    [req] = http.received("/hooks/")
    assert req["path"] == "/hooks/hooktoken123"
    body = req["body"]
    # Slack-compatible incoming webhook: a text field carrying title and body.
    assert "[warning] shared1 lost its peer (host1)" in body["text"]
    assert "lost the connection to the peer" in body["text"]
    assert body["channel"] == "ops"


def test_slack_message_shape(env, http, monkeypatch):
    """slack:// posts to hooks.slack.com; point that one endpoint at loopback."""
    from apprise.plugins.slack import NotifySlack

    monkeypatch.setattr(NotifySlack, "webhook_url", f"http://{http.base}/services")
    env.channels = {"slack": "slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7/#ops"}
    for i in range(3):
        env.queue("slack", resource=f"r{i}", severity="critical", event="split-brain")
    assert env.drain().sent == 1
    [req] = http.received("/services/")
    assert req["path"] == "/services/T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7"
    body = req["body"]
    assert body["channel"] == "#ops"
    [att] = body["attachments"]
    assert att["title"] == "[critical] split-brain on 3 resources (host1)"
    assert att["text"].splitlines()[0] == "split-brain: r0, r1, r2"
    assert att["color"] == "#A32037"  # apprise's failure colour: critical is red


def test_email_through_a_real_smtp_server(env, smtp, syslog):
    env.channels = {"mail": smtp.url()}
    env.queue("mail")
    assert env.drain().sent == 1
    [mail] = smtp.mails
    assert mail["Subject"] == "[warning] shared1 lost its peer (host1)"
    assert mail["To"] == "ops@example.org" and mail["From"] == "hasthook@example.org"
    assert "lost the connection to the peer on host1" in SmtpSink.text(mail)
    logged = "\n".join(syslog.drain())
    assert "sent to mail via mailto://alerts:****@127.0.0.1" in logged
    assert smtp.password not in logged


def test_a_grouped_email_has_one_line_per_event_in_both_parts(env, smtp):
    """Read from the real SMTP server: the text part keeps one line per event and the
    HTML part breaks its lines (markdown and HTML join single newlines into one
    paragraph, which is how the lines used to run together)."""
    env.channels = {"mail": smtp.url()}
    names = ["r01", "r02", "<r3>"]
    for name in names:
        env.queue("mail", resource=name)
    assert env.drain().sent == 1
    [mail] = smtp.mails
    assert mail["Subject"] == "[warning] disconnect on 3 resources (host1)"
    text = mail.get_body(preferencelist=("plain",)).get_content()
    html = mail.get_body(preferencelist=("html",)).get_content()
    lines = [ln.strip() for ln in text.splitlines()]
    assert lines[0] == "disconnect: <r3>, r01, r02"
    for name in names:
        [line] = [ln for ln in lines if ln.endswith(f"{name} lost its peer (host1)")]
        assert re.fullmatch(rf"\d\d:\d\d:\d\d \[warning\] {re.escape(name)} lost its peer "
                            r"\(host1\)", line), line
    breaks = re.split(r"<br\s*/?>", html)
    assert len(breaks) >= 5, html
    for name in names:
        shown = name.replace("<", "&lt;").replace(">", "&gt;")
        assert sum(f"[warning] {shown} lost its peer (host1)" in b for b in breaks) == 1, html
    assert "<r3>" not in html


def test_a_grouped_webhook_message_has_one_line_per_event(env, http):
    env.channels = {"hooks": f"json://{http.base}/j"}
    for name in ("r01", "r02"):
        env.queue("hooks", resource=name)
    assert env.drain().sent == 1
    [req] = http.received("/j")
    lines = req["body"]["message"].splitlines()
    assert lines[0] == "disconnect: r01, r02" and lines[1] == ""
    assert [ln.split(" ", 1)[1] for ln in lines[2:]] == [
        "[warning] r01 lost its peer (host1)", "[warning] r02 lost its peer (host1)"]


def test_burst_is_one_message_per_channel(env, http, smtp):
    env.channels = {"hooks": f"json://{http.base}/j", "mail": smtp.url()}
    for i in range(30):
        for ch in ("hooks", "mail"):
            env.queue(ch, resource=f"r{i:02d}")
    rep = env.drain()
    assert (rep.sent, rep.rows_sent) == (2, 60)
    [req] = http.received("/j")
    [mail] = smtp.mails
    for i in range(30):
        assert f"r{i:02d}" in req["body"]["message"]
        assert f"r{i:02d}" in SmtpSink.text(mail)
    assert mail["Subject"] == "[warning] disconnect on 30 resources (host1)"


def test_group_wait_holds_then_sends_together(env, http):
    env.channels = {"hooks": f"json://{http.base}/j"}
    env.queue("hooks", resource="a", wait=60)
    assert env.drain(wait=False).sent == 0      # not due: stays queued
    assert http.received() == []
    env.queue("hooks", resource="b", wait=0)    # a due row brings its whole group
    assert env.drain(wait=False).sent == 1
    [req] = http.received()
    assert req["body"]["message"].splitlines()[0] == "disconnect: a, b"


def test_a_deliverer_waits_out_group_wait_within_its_time_box(env, http):
    env.channels = {"hooks": f"json://{http.base}/j"}
    env.queue("hooks", resource="a", wait=0.5)
    assert env.drain().sent == 1


def test_down_then_up_is_sent_exactly_once_to_each_url(env, http, smtp, syslog):
    env.channels = {"both": [f"json://{http.base}/j", smtp.url()]}
    smtp.down()
    env.queue("both")
    rep = env.drain()
    assert (rep.sent, rep.failed) == (1, 1)
    [row] = env.rows()
    assert row["state"] == "pending" and row["attempts"] == 1 and len(row["delivered"]) == 1
    assert row["due"] > time.time() + deliver.RETRY_BASE / 2 - 1
    assert "mailto://alerts:****@127.0.0.1" in row["last_error"]
    assert smtp.password not in row["last_error"]
    assert smtp.password not in "\n".join(syslog.drain())
    assert env.drain().sent == 0                # in backoff: not yet
    smtp.up()
    rep = env.drain(everything=True)            # flush --all
    assert (rep.sent, rep.failed) == (1, 0)
    assert len(http.received()) == 1 and len(smtp.mails) == 1
    [row] = env.rows()
    assert row["state"] == "sent" and row["attempts"] == 2 and row["last_error"] is None
    assert env.drain(everything=True).sent == 0


def test_webhook_error_status_is_retried(env, http):
    env.channels = {"hooks": f"json://{http.base}/j"}
    http.status = 500
    env.queue("hooks")
    assert env.drain().failed == 1
    [row] = env.rows()
    assert "500" in row["last_error"] or "Internal Server Error" in row["last_error"]
    http.status = 200
    assert env.drain(everything=True).sent == 1
    assert len(http.received()) == 2 and env.rows()[0]["state"] == "sent"


def test_send_timeout_leaves_the_row_queued(env, http):
    env.channels = {"hooks": f"json://{http.base}/j"}
    env.settings["send_timeout"] = "1s"
    http.hold.clear()
    env.queue("hooks")
    rep = env.drain()
    assert rep.failed == 1
    [row] = env.rows()
    assert row["state"] == "pending" and "no answer within 1s" in row["last_error"]


def test_old_rows_become_dead_logged_crit_and_stay_visible(env, syslog):
    env.channels = {"hooks": "json://127.0.0.1:1/j"}
    env.queue("hooks", created=time.time() - 90000)
    rep = env.drain()
    assert rep.dead == 1 and rep.sent == 0
    [row] = env.store.outbox_list()
    assert row["state"] == "dead"
    line = syslog.wait_for("given up")
    assert line.startswith("<26>")  # daemon.crit


def test_unknown_channel_stays_queued_with_the_reason(env):
    env.queue("nowhere")
    assert env.drain().failed == 1
    [row] = env.rows()
    assert row["state"] == "pending" and "'nowhere' is not in the config" in row["last_error"]


def test_only_one_process_delivers(env, http):
    env.channels = {"hooks": f"json://{http.base}/j"}
    env.queue("hooks")
    held = Store(env.state).lock(DELIVERY_LOCK)
    try:
        rep = env.drain()
        assert rep.busy and rep.sent == 0 and http.received() == []
    finally:
        held.close()
    assert env.drain().sent == 1


def test_an_abandoned_claim_is_sent_again_after_its_lease(env, http, syslog):
    env.channels = {"hooks": f"json://{http.base}/j"}
    env.queue("hooks")
    [row] = env.store.outbox_claim("hooks", "link-loss|warning", time.time() - 1)
    assert env.store.outbox_list(("sending",))[0]["id"] == row["id"]
    assert env.drain().sent == 1
    syslog.wait_for("stopped between sending and marking")


def test_a_live_claim_is_left_alone(env, http):
    env.channels = {"hooks": f"json://{http.base}/j"}
    env.queue("hooks")
    env.store.outbox_claim("hooks", "link-loss|warning", time.time() + 300)
    assert env.drain(everything=True).sent == 0


def test_apprise_config_file_with_tags(env, http, tmp_path):
    conf = tmp_path / "apprise.yml"
    conf.write_text(f"urls:\n  - json://{http.base}/ops:\n      tag: ops\n"
                    f"  - json://{http.base}/dev:\n      tag: dev\n")
    os.chmod(conf, 0o600)
    env.channels = {"ops": {"apprise_config": str(conf), "tag": "ops"}}
    env.queue("ops")
    assert env.drain().sent == 1
    assert [r["path"] for r in http.received()] == ["/ops"]


def test_notify_test_reports_per_url(env, http, smtp):
    env.channels = {"both": [f"json://{http.base}/j", smtp.url()]}
    smtp.down()
    res = deliver.test_channel(env.cfg, "both", 5)
    [(k1, ok), (k2, bad)] = res.items()
    assert k1.startswith("json://127.0.0.1") and ok is None
    assert k2.startswith("mailto://alerts:****@") and bad and smtp.password not in bad
    assert http.received()[0]["body"]["title"] == "hasthook test message"
