"""Two hooks of one resource race: the event hastd fired first is recorded first.

hastd forks a hook per event and does not wait for it. Here the secondary's
disconnect hook is slow (its `hastctl list` is held) while the connect after it
runs at full speed: the connect waits for the disconnect to be recorded, so it
resolves the alert the disconnect raised, as it would have with no race.
"""

from __future__ import annotations

import test_recover_sim
from receivers import wait_until
from test_recover_sim import RES
from test_restart_cause import flush, titles

pair = test_recover_sim.pair  # the fixture: two nodes whose hooks are hasthook-exec


def test_a_fast_connect_waits_for_the_slow_disconnect_before_it(pair):
    pair.configure(rules=[{"name": "link", "match": {"event": "disconnect"},
                           "group_wait": "0s", "send_resolved": True,
                           "actions": [{"notify": "ops"}]}])
    host2 = pair.node("host2")
    host2.hold("list")
    pair.c.disconnect(RES)
    wait_until(lambda: host2.holding("list"), what="the disconnect hook's hastctl")
    pair.c.connect(RES)
    pair.syslog["host2"].wait_for(
        f"[{RES}] connect: waiting for 1 earlier hook(s) of this resource", timeout=60)
    host2.let_go("list")
    pair.c.wait_hooks(timeout=60)
    flush(pair, "host2")

    assert [r["event"] for r in pair.history("host2")][:2] == ["connect", "disconnect"]
    assert titles(pair.wait_messages("host2", 2)) == [
        "[warning] shared1 lost its peer (host2)",
        "[resolved] connect on shared1 (host2) after"]
