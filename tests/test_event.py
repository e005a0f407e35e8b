"""classify(): hastd's argv to an Event, and the calls hastd never makes."""

import pytest

from hasthook.event import EVENTS, UsageError, classify


@pytest.mark.parametrize("word,severity", [
    ("connect", "info"), ("disconnect", "warning"), ("syncstart", "info"),
    ("syncdone", "info"), ("syncintr", "warning"), ("split-brain", "critical"),
])
def test_single_resource_events(word, severity):
    ev = classify([word, "shared1"], "host1", now=100.0)
    assert (ev.event, ev.resource, ev.host, ev.time, ev.severity) == (
        word, "shared1", "host1", 100.0, severity)
    assert ev.known and ev.old_role is None


def test_role_event_carries_both_roles():
    ev = classify(["role", "shared1", "secondary", "primary"], "host1")
    assert (ev.old_role, ev.new_role, ev.severity) == ("secondary", "primary", "info")
    assert ev.summary == "[shared1] role changed from secondary to primary on host1"


def test_what_resolves_what():
    assert classify(["connect", "r"], "h").resolves == ("disconnect",)
    assert classify(["syncdone", "r"], "h").resolves == ("syncintr", "syncstart", "split-brain")
    assert classify(["disconnect", "r"], "h").resolves == ()


@pytest.mark.parametrize("argv", [
    [], [""], ["connect"], ["connect", ""], ["connect", "a", "b"],
    ["role", "r", "init"], ["role", "r", "init", "primary", "x"],
    ["role", "r", "master", "primary"], ["role", "r", "init", "Primary"],
    ["split-brain"],
])
def test_malformed_calls(argv):
    with pytest.raises(UsageError):
        classify(argv, "h")


def test_unknown_event_word_is_kept_as_warning():
    ev = classify(["resync-paused", "shared1", "x"], "h")
    assert (ev.event, ev.known, ev.severity, ev.extra) == (
        "resync-paused", False, "warning", {"args": ["x"]})
    assert "unknown event" in ev.summary


def test_seven_events():
    assert len(EVENTS) == 7


def test_event_names_typed_by_an_admin():
    from hasthook.errors import UsageError
    from hasthook.event import check_name

    assert check_name("split-brain") == "split-brain"
    assert check_name("resync-paused") == "resync-paused"   # a newer hastd's word
    with pytest.raises(UsageError, match=r"unknown event 'splitbrain' \(did you mean "
                                         r"'split-brain'\?\)"):
        check_name("splitbrain")
    with pytest.raises(UsageError, match="did you mean 'recover'"):
        check_name("recovr", own=True)
    assert check_name("failover", own=True) == "failover"
