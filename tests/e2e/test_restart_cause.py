"""Causes read from the history: a resource hastd restarted, a connect with no disconnect.

Two simulated nodes run hasthook-exec for every event, as hastd does; the reference
("Corrections and details") says when these happen: a config reload restarts a
secondary resource whose settings changed (`role R secondary init`, then
`role R init secondary`), and a primary worker that dies is restarted with no role
hook, so its node fires a second `connect` with no `disconnect` between.
"""

from __future__ import annotations

import re

import test_recover_sim
from conftest import command, run_cmd
from receivers import wait_until
from test_recover_sim import RES

from hasthook.sim.driver import WORKER_RESTART

pair = test_recover_sim.pair  # the fixture: two nodes whose hooks are hasthook-exec


def titles(messages):
    """Titles without how long the outage lasted (that is the test machine's pace)."""
    return [re.sub(r" after [0-9hms ]+$", " after", m["title"]) for m in messages]


def flush(pair, name):
    r = run_cmd(command("hasthook"), "flush", "-c", str(pair.config(name)))
    assert r.returncode == 0, r.stderr


def test_reload_is_one_restart_message_not_two_role_changes(pair):
    pair.configure(channels=("pager",), rules=[
        {"name": "roles", "match": {"event": "role"}, "group_wait": "3s", "continue": True,
         "actions": [{"notify": "ops"}]},
        {"name": "restarts", "match": {"cause": "restart"}, "group_wait": "0s",
         "actions": [{"notify": "pager"}]}])
    done = pair.c.reload("host2", RES, timeout=30)
    assert done == {RES: "restarted"}
    pair.c.wait_hooks(timeout=60)
    flush(pair, "host2")

    roles = [r for r in pair.history("host2") if r["event"] == "role"]
    assert sorted((r["old_role"], r["new_role"], r["cause"]) for r in roles) == [
        ("init", "secondary", "restart"), ("secondary", "init", "restart")]

    [page] = wait_until(lambda: pair.messages("host2", "pager"), what="the restart page")
    assert page["message"].startswith(
        "hastd restarted shared1 (config reload or an admin's role change): "
        "secondary → init → secondary on host2.")
    [told] = pair.messages("host2")  # the first half's message gave way to this one
    assert told["title"] == "[info] shared1 restarted by hastd on host2"
    assert not pair.messages("host1")  # the primary saw no role change


def test_restarted_primary_worker_reconnects_and_resolves_nothing(pair):
    pair.configure(rules=[{"name": "link", "match": {"event": "disconnect"},
                           "group_wait": "0s", "send_resolved": True,
                           "actions": [{"notify": "ops"}]}])
    pair.c.disconnect(RES)  # a link flap first: told and resolved on both nodes
    # hastd connects again at the guard thread's next pass, seconds later; by then the
    # disconnect hooks have recorded (test_hook_order.py: when one has not).
    pair.c.wait_hooks(timeout=60)
    pair.c.connect(RES)
    pair.c.wait_hooks(timeout=60)
    flap = ["[warning] shared1 lost its peer ({})", "[resolved] connect on shared1 ({}) after"]
    for name in ("host1", "host2"):
        assert titles(pair.wait_messages(name, 2)) == [t.format(name) for t in flap]

    assert pair.c.kill_worker("host1", RES, reconnect=False) == "restarted"
    pair.c.wait_hooks(timeout=60)  # the secondary's disconnect, in the second before...
    pair.c.advance(WORKER_RESTART)
    assert pair.c.connect(RES)  # ... the restarted worker connects
    pair.c.wait_hooks(timeout=60)
    flush(pair, "host1")
    flush(pair, "host2")

    link = ("connect", "disconnect")
    h1 = [(r["event"], r["cause"]) for r in pair.history("host1") if r["event"] in link]
    assert h1 == [("connect", "reconnect"), ("connect", None), ("disconnect", None)]
    assert len(pair.messages("host1")) == 2  # nothing more lost there, nothing resolved
    # The secondary read the end of the connection: lost, then back (its own pair).
    h2 = [(r["event"], r["cause"]) for r in pair.history("host2") if r["event"] in link]
    assert h2 == [("connect", None), ("disconnect", None)] * 2
    assert titles(pair.wait_messages("host2", 4)) == [t.format("host2") for t in flap * 2]
