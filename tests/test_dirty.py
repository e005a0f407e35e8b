"""`hasthook dirty`: the pure pieces, then the article's own hastdirty.sh against it."""

from __future__ import annotations

import pytest

from hasthook.hast import Result
from hasthook.tools.dirty import (
    DirtyState,
    awk_field2,
    dirty_count,
    exit_status,
    ifs_split,
    nagios,
    script_human,
    script_output,
    sh_int,
    to_json,
)

LIST_PRIMARY = """\
shared1:
  role: primary
  provname: shared1
  localpath: /dev/vtbd1p1
  extentsize: 2097152 (2.0MB)
  keepdirty: 64
  remoteaddr: 192.168.0.102
  replication: memsync
  status: complete
  workerpid: 2546
  dirty: 4194304 (4.0MB)
  statistics:
    reads: 0
    writes: 26
"""


def state(name: str, role: str, dirty: str = "0", rc: int = 0) -> DirtyState:
    return DirtyState(name, role, dirty, Result(["hastctl", "list", name], rc))


# -- what the script's pipelines capture -------------------------------------

def test_awk_field2_reads_role_and_dirty_not_keepdirty():
    assert awk_field2(LIST_PRIMARY, "role") == "primary"
    assert awk_field2(LIST_PRIMARY, "dirty") == "4194304"
    assert awk_field2("", "role") == ""


def test_awk_field2_needs_a_blank_after_the_colon_and_joins_many():
    text = "a:\n  role: primary\nb:\n\trole:\tsecondary\nc:\n  role:\nd:\n  role: \n"
    # "  role:" has no blank after the colon; "  role: " has one and an empty $2.
    assert awk_field2(text, "role") == "primary\nsecondary"
    assert awk_field2("x:\n  error: 1\n", "role") == ""


def test_ifs_split_is_sh_word_splitting():
    assert ifs_split(" a\tb\n c  ") == ["a", "b", "c"]
    assert ifs_split(" ") == []


@pytest.mark.parametrize("text,value", [
    ("0", 0), ("5", 5), (" 5", 5), ("5 ", 5), ("+5", 5), ("-3", -3), ("-0", 0),
    ("010", 10), (str(2**63 - 1), 2**63 - 1),
    ("", None), ("abc", None), ("0x10", None), ("1e3", None), ("1 2", None),
    ("1\n2", None), ("+", None), (str(2**63), None),
])
def test_sh_int_matches_dash_test(text, value):
    assert sh_int(text) == value


@pytest.mark.parametrize("text,shown", [
    ("0", "0"), ("1023", "1023"), ("1024", "1024"), ("1025", "1K"),
    (str(1024**2), "1024K"), (str(1024**2 + 1), "1024K"), (str(1025 * 1024), "1M"),
    (str(5 * 1024**3), "5G"),
    (str(3 * 1024**4), "3T"), (str(1024**5), "1024T"),
    # Past T the script's case has no branch: the suffix stays T.
    (str(2 * 1024**5), "2T"), (str(2**63 - 1), "7T"),
    ("+5", "+5"),
])
def test_script_human_is_the_articles_arithmetic(text, shown):
    assert script_human(text) == shown


# -- what it prints ----------------------------------------------------------

STATES = [state("clean", "primary", "0"), state("busy", "primary", "4194304"),
          state("other", "secondary", "0"), state("ghost", "", "", rc=1)]


def test_default_prints_only_dirty_and_not_primary():
    assert script_output(STATES) == (
        "busy 4194304\nresource other role is not primary\nresource ghost role is not primary\n")


def test_all_human_and_quiet():
    assert script_output(STATES, all_=True, human=True) == (
        "clean 0\nbusy 4M\nresource other role is not primary\n"
        "resource ghost role is not primary\n")
    assert script_output(STATES, all_=True, quiet=True, human=True) == ""


def test_a_dirty_value_test_rejects_is_neither_printed_nor_counted():
    bad = [state("all", "primary", "5\n7"), state("odd", "primary", "")]
    assert script_output(bad, all_=True) == ""
    assert dirty_count(bad) == 0


def test_exit_status_counts_dirty_primaries_and_caps_at_255():
    assert dirty_count(STATES) == 1
    assert exit_status(3) == (3, None)
    assert exit_status(255) == (255, None)
    code, note = exit_status(256)
    assert code == 255 and "256" in note and "exited 0" in note


def test_json_view():
    j = to_json(STATES)
    assert j["dirty_resources"] == 1
    busy = j["resources"][1]
    assert busy == {"resource": "busy", "role": "primary", "primary": True, "dirty": 4194304,
                    "dirty_human": "4.0MB", "error": None}
    assert j["resources"][3]["role"] is None and j["resources"][3]["error"]


# -- --nagios ----------------------------------------------------------------

def test_nagios_ok_warning_critical():
    line, code = nagios([state("s1", "primary", "0"), state("s2", "secondary", "0")])
    assert code == 0
    assert line == "HAST DIRTY OK - s1 dirty 0B, s2 is secondary | 's1'=0B;0;;0; 's2'=0B;0;;0;"
    line, code = nagios([state("s1", "primary", "2097152")])
    assert code == 1 and line.startswith("HAST DIRTY WARNING - s1 dirty 2.0MB > 0B |")
    line, code = nagios([state("s1", "primary", "2097152"), state("s2", "primary", "10")],
                        warn=1024, crit=1048576)
    assert code == 2
    assert line == ("HAST DIRTY CRITICAL - s1 dirty 2.0MB > 1.0MB, s2 dirty 10B | "
                    "'s1'=2097152B;1024;1048576;0; 's2'=10B;1024;1048576;0;")


def test_nagios_unknown_and_hostile_names():
    line, code = nagios([state("gone", "", "", rc=1)])
    assert code == 3 and line.startswith("HAST DIRTY UNKNOWN - gone: ")
    line, code = nagios([])
    assert code == 3 and line == "HAST DIRTY UNKNOWN - no HAST resources"
    # A CRITICAL outranks an UNKNOWN; a quote is doubled, a pipe cannot end the text.
    line, code = nagios([state("gone", "", "", rc=1), state("it's|x", "primary", "9")],
                        crit=1)
    assert code == 2
    text, perf = line.split(" | ")
    assert "|" not in text and perf == "'it''s/x'=9B;0;1;0;"
