"""hastctl output from ../shared/reference/hastd.md, shared by the parser and simulator tests."""

# The `hastctl list` sample of the reference (a real FreeBSD 11 node), workerpid aside.
LIST_SAMPLE = """\
storage:
  role: secondary
  provname: storage
  localpath: /dev/ada1
  extentsize: 2097152 (2.0MB)
  keepdirty: 0
  remoteaddr: 192.168.1.130
  replication: memsync
  status: complete
  workerpid: {pid}
  dirty: 0 (0B)
  statistics:
    reads: 0
    writes: 26
    deletes: 0
    flushes: 0
    activemap updates: 0
    local errors: read: 0, write: 0, delete: 0, flush: 0
    queues: local: 0, send: 0, recv: 0, done: 0, idle: 255
"""

DUMP_SAMPLE = """\
resource: shared1
    datasize: 10737352704 (10GB)
    extentsize: 2097152 (2.0MB)
    keepdirty: 64
    localoff: 1114112
    resuid: 2827596446382431553
    localcnt: 5
    remotecnt: 4
    prevrole: primary
"""
