"""Turns: the hooks of one resource record in the order hastd started them."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from hasthook import turns


def soon(seconds: float = 0.05) -> float:
    return time.monotonic() + seconds


def test_a_later_hook_waits_for_the_earlier_one_of_its_resource(tmp_path):
    first = turns.take(str(tmp_path), "shared1", 100.0)
    second = turns.take(str(tmp_path), "shared1", 100.5)
    assert first is not None and second is not None
    assert first.ahead() == []
    ahead = second.ahead()
    assert ahead == [first.name]
    assert second.wait(ahead, soon()) == ahead  # still held at the deadline

    first.release()
    assert second.wait(ahead, soon(30)) == []
    assert second.ahead() == []
    second.release()
    assert os.listdir(tmp_path / turns.DIR) == []


def test_other_resources_and_later_hooks_are_not_waited_for(tmp_path):
    other = turns.take(str(tmp_path), "shared2", 100.0)
    mine = turns.take(str(tmp_path), "shared1", 101.0)
    later = turns.take(str(tmp_path), "shared1", 102.0)
    assert other and mine and later
    assert mine.ahead() == []
    assert later.ahead() == [mine.name]


def test_a_hook_that_died_holding_its_turn_holds_nobody_up(tmp_path):
    # A hook killed before it recorded: its file stays, its lock goes with it.
    code = ("import os, sys; from hasthook import turns; "
            f"t = turns.take({str(tmp_path)!r}, 'shared1', 100.0); "
            "os._exit(0 if t else 1)")
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0
    late = turns.take(str(tmp_path), "shared1", 101.0)
    assert late is not None
    ahead = late.ahead()
    assert len(ahead) == 1
    assert late.wait(ahead, soon(30)) == []
    assert os.listdir(tmp_path / turns.DIR) == [late.name]  # the dead one's is gone


def test_a_state_dir_others_can_write_keeps_no_turns(tmp_path):
    shared = tmp_path / "state"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    assert turns.take(str(shared), "shared1", 100.0) is None
    assert not (shared / turns.DIR).exists()


def test_a_hostile_resource_name_is_only_a_key(tmp_path):
    name = "../../etc/passwd\n" + "x" * 300
    t = turns.take(str(tmp_path), name, 100.0)
    assert t is not None
    assert os.listdir(tmp_path / turns.DIR) == [t.name]
    assert "/" not in t.name and len(t.name) < 64
