"""hast.conf as hastd parses it (sbin/hastd/token.l, parse.y)."""

import pytest

from hasthook.hastconf import HastConfError, parse

# The article's /etc/hast.conf, with an exec line and a node-level provider name.
ARTICLE = """\
replication memsync
exec /usr/local/bin/hasthook-exec   # every resource
resource shared1 {
    local /dev/vtbd1p1
    on host1 {
        remote 192.168.0.102
    }
    on host2 {
        remote 192.168.0.101
    }
}
resource shared2 {
    local /var/hast/shared.img
    exec /usr/local/libexec/other-hook
    on host1 {
        remote 192.168.0.102
        name disk2
    }
    on host2 {
        remote 192.168.0.101
    }
}
"""


def test_the_articles_file_gives_each_resource_its_exec_hosts_and_provider():
    conf = parse(ARTICLE)
    assert list(conf.resources) == ["shared1", "shared2"]
    s1, s2 = conf.resources["shared1"], conf.resources["shared2"]
    assert s1.exec == "/usr/local/bin/hasthook-exec"       # the global one
    assert s2.exec == "/usr/local/libexec/other-hook"      # its own
    assert s1.hosts == ["host1", "host2"]
    assert s1.node("host2.example.org").settings["remote"] == "192.168.0.101"
    assert s2.provname("host1") == "disk2" and s2.provname("host2") == "shared2"
    assert s1.settings["local"] == "/dev/vtbd1p1"


def test_both_nodes_name_the_pair_alike():
    conf = parse(ARTICLE)
    assert conf.resources["shared1"].pair() == "host1+host2"
    reversed_order = ARTICLE.replace("on host1", "on hostX").replace("on host2", "on host1") \
        .replace("on hostX", "on host2")
    assert parse(reversed_order).resources["shared1"].pair() == "host1+host2"


def test_no_exec_anywhere_is_none():
    assert parse("resource r { local /dev/x on a { remote b } }").resources["r"].exec is None


@pytest.mark.parametrize("text, where", [
    ("resource r { local /x\n bogus 1 }", "line 2"),
    ("resource none { }", "keyword"),
    ("resource r { } resource r { }", "more than once"),
    ("resource r { local /x", "end of file"),
    ("resource r { local ; }", "unexpected ';'"),
])
def test_a_broken_file_says_where(text, where):
    with pytest.raises(HastConfError, match=where):
        parse(text)
