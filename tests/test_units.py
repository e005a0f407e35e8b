import pytest

from hasthook.event import EVENTS
from hasthook.units import format_duration, parse_duration, parse_size


@pytest.mark.parametrize("text,secs", [
    ("500ms", 0.5), ("2s", 2), ("10m", 600), ("1h", 3600), ("1d", 86400), (30, 30), ("45", 45),
])
def test_durations(text, secs):
    assert parse_duration(text) == secs


@pytest.mark.parametrize("bad", ["", "10x", "-1s", "1 hour", True, -3])
def test_bad_durations(bad):
    with pytest.raises(ValueError):
        parse_duration(bad)


@pytest.mark.parametrize("text,n", [("1G", 2**30), ("64M", 64 * 2**20), ("512K", 512 * 1024),
                                    ("2GB", 2 * 2**30), ("1GiB", 2**30), (100, 100), ("7", 7)])
def test_sizes(text, n):
    assert parse_size(text) == n


def test_format_duration():
    assert (format_duration(5), format_duration(3725)) == ("5s", "1h2m5s")


def test_when_gives_the_date_and_zone_unless_today():
    import time

    from hasthook.units import when

    now = time.mktime((2026, 11, 25, 15, 0, 0, 0, 0, -1))
    assert when(now - 3600, now) == "14:00:00"
    zone = time.strftime("%Z", time.localtime(now - 86400))
    assert when(now - 86400, now) == f"2026-11-24 15:00:00 {zone}"


def test_plural_and_did_you_mean():
    from hasthook.units import did_you_mean, plural

    assert [plural(n, "event") for n in (0, 1, 2)] == ["0 events", "1 event", "2 events"]
    assert plural(1, "recovery", "recoveries") == "1 recovery"
    assert plural(3, "recovery", "recoveries") == "3 recoveries"
    assert did_you_mean("disconect", EVENTS) == " (did you mean 'disconnect'?)"
    assert did_you_mean("resync-paused", EVENTS) == ""

