"""Parsers for hastctl output, on FreeBSD's real samples (../shared/reference/hastd.md)."""

import pytest
from samples import DUMP_SAMPLE, LIST_SAMPLE

from hasthook.hast import Hastctl, ParseError, parse_dump, parse_list, parse_status
from hasthook.units import humanize

REAL_LIST = LIST_SAMPLE.format(pid=2546)

INIT_AND_ERROR = """\
shared1:
  role: init
  provname: shared1
  localpath: /dev/vtbd1p1
  extentsize: 2097152 (2.0MB)
  keepdirty: 64
  remoteaddr: 192.168.0.102
  sourceaddr: 192.168.0.101
  replication: fullsync
  dirty: 0 (0B)
  statistics:
    reads: 0
    writes: 0
    deletes: 0
    flushes: 0
    activemap updates: 0
    local errors: read: 0, write: 3, delete: 0, flush: 1
nosuch:
  error: 1
"""

REAL_STATUS = (
    "Name\tStatus\t Role\t\tComponents\n"
    "shared1\tcomplete primary        /dev/vtbd1p1\t192.168.0.102\n"
    "shared2\t-        init           /var/hast/shared.img\t192.168.0.102\n"
    "nosuch\tERR1\n"
)

DUMP = DUMP_SAMPLE + """\
resource: shared2
    datasize: 1048576 (1.0MB)
    extentsize: 2097152 (2.0MB)
    keepdirty: 64
    localoff: 1114112
    resuid: 1
    localcnt: 0
    remotecnt: 0
    prevrole: secondary
"""


def test_list_real_sample():
    r = parse_list(REAL_LIST)["storage"]
    assert (r.role, r.provname, r.localpath, r.extentsize, r.keepdirty) == (
        "secondary", "storage", "/dev/ada1", 2097152, 0)
    assert (r.remoteaddr, r.sourceaddr, r.replication, r.status, r.workerpid, r.dirty) == (
        "192.168.1.130", None, "memsync", "complete", 2546, 0)
    assert r.statistics["writes"] == 26 and r.statistics["activemap updates"] == 0
    assert r.errors == {"read": 0, "write": 0, "delete": 0, "flush": 0}
    assert r.queues["idle"] == 255


def test_list_init_role_has_no_status_and_error_block():
    res = parse_list(INIT_AND_ERROR)
    s = res["shared1"]
    assert (s.role, s.status, s.workerpid, s.sourceaddr) == ("init", None, None, "192.168.0.101")
    assert s.errors["write"] == 3
    assert res["nosuch"].error == 1 and res["nosuch"].role is None


@pytest.mark.parametrize("garbage", [
    "Segmentation fault\n", "shared1:\n  role\n", "  role: primary\n",
    "shared1:\n  dirty: lots\n", "shared1:\n      deep: 1\n",
])
def test_list_garbage_is_an_error(garbage):
    with pytest.raises(ParseError):
        parse_list(garbage)


def test_status_table():
    st = parse_status(REAL_STATUS)
    assert (st["shared1"].status, st["shared1"].role, st["shared1"].localpath,
            st["shared1"].remoteaddr) == ("complete", "primary", "/dev/vtbd1p1", "192.168.0.102")
    assert (st["shared2"].status, st["shared2"].role) == (None, "init")
    assert st["nosuch"].error == 1
    with pytest.raises(ParseError):
        parse_status("storage:\n  role: primary\n")


def test_dump_keeps_hast_conf_order():
    d = parse_dump(DUMP)
    assert list(d) == ["shared1", "shared2"]
    assert (d["shared1"].datasize, d["shared1"].localcnt, d["shared1"].prevrole) == (
        10737352704, 5, "primary")


@pytest.mark.parametrize("n,text", [
    (0, "0B"), (999, "999B"), (1000, "1.0KB"), (2097152, "2.0MB"),
    (10737352704, "10GB"), (134217728, "128MB"), (1048576, "1.0MB"),
])
def test_humanize_matches_hastctl(n, text):
    assert humanize(n) == text


def test_client_missing_binary_does_not_raise(tmp_path):
    ctl = Hastctl(str(tmp_path / "nope"), timeout=1)
    res, r = ctl.list("shared1")
    assert res == {} and r.rc is None and "No such file" in r.why()


def test_client_hung_binary_times_out(tmp_path):
    hang = tmp_path / "hastctl"
    hang.write_text("#!/bin/sh\nexec sleep 30\n")
    hang.chmod(0o755)
    res, r = Hastctl(str(hang), timeout=0.5).list("shared1")
    assert res == {} and r.rc is None and "timed out" in r.why()


def test_client_role_and_create_return_status_and_stderr(tmp_path):
    fake = tmp_path / "hastctl"
    fake.write_text("#!/bin/sh\necho \"[$3] Received error 1 from hastd.\" >&2\nexit 1\n")
    fake.chmod(0o755)
    r = Hastctl(str(fake), 5).role("primary", "shared1")
    assert r.argv[1:] == ["role", "primary", "shared1"]
    assert (r.rc, r.stderr.strip()) == (1, "[shared1] Received error 1 from hastd.")
