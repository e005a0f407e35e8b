"""`hasthook dirty`: the pure pieces, then the article's own hastdirty.sh against it.

The differential tests need the article (tests/article.py says where it is looked
for); without it they are skipped with that reason, and `.ci/run` fails first.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import article
import pytest
from conftest import command, run_cmd

from hasthook.hast import Result
from hasthook.sim import SimNode
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


# -- the article's own hastdirty.sh against `hasthook dirty`, on the simulator --------

SEED, NO_SEED = article.find()
FLAGS = [[f"-{c}" for c in combo] for n in range(4) for combo in itertools.combinations("aqh", n)]
# getopts takes bundled flags too; so must we.
FLAGS += [["-" + "".join(c[1] for c in f)] for f in FLAGS if len(f) > 1]


def article_script(title: str) -> str:
    """A script from the article: from `#!/bin/sh` after its title line to the next section.

    The article's sections are headed in Japanese; the scripts are plain ASCII, so
    the first unindented non-ASCII line after the script is where it ends.
    """
    if SEED is None:
        pytest.skip(f"{NO_SEED}: the differential test against the article's hastdirty.sh "
                    "cannot run")
    lines = SEED.read_text(encoding="utf-8").splitlines()
    body = lines[lines.index(title) + 1:]
    assert body[0] == "#!/bin/sh", f"{title}: no #!/bin/sh after the title"
    out = []
    for line in body:
        if line and not line[0].isspace() and not line.isascii():
            break
        out.append(line)
    return "\n".join(out).rstrip("\n") + "\n"


@pytest.fixture(scope="module")
def script_text() -> str:
    text = article_script("hastdirty.sh")
    # What the article's script must contain, so a changed article fails loudly here.
    for needle in ("while getopts aqh opt", "/sbin/hastctl dump | /usr/bin/awk",
                   'echo -n "$size$type"', "exit $dirtycount"):
        assert needle in text
    assert text.count("/sbin/hastctl") == 3
    return text


@pytest.fixture
def hastdirty(tmp_path, script_text):
    """write(hastctl_path) -> the article's hastdirty.sh pointed at that hastctl."""

    def write(hastctl: str) -> Path:
        path = tmp_path / f"hastdirty-{abs(hash(hastctl))}.sh"
        path.write_text(script_text.replace("/sbin/hastctl", hastctl))
        return path

    return write


def test_the_extracted_script_uses_tools_that_exist(script_text):
    assert os.path.exists("/usr/bin/awk"), "hastdirty.sh runs /usr/bin/awk (.ci/run installs mawk)"
    assert os.path.exists("/bin/sh")


def compare(script: Path, config: Path, cases: list[list[str]]) -> None:
    """Run hastdirty.sh and `hasthook dirty` on each argv; stdout and exit status must match."""
    hasthook = command("hasthook")

    def both(args: list[str]):
        sh = subprocess.run(["/bin/sh", str(script), *args], capture_output=True, text=True,
                            timeout=120)
        py = subprocess.run([hasthook, "-c", str(config), "dirty", *args], capture_output=True,
                            text=True, timeout=120)
        return args, sh, py

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(both, cases))
    bad = [f"{args}: sh rc={sh.returncode} {sh.stdout!r}\n"
           f"{' ' * len(str(args))}  py rc={py.returncode} {py.stdout!r} {py.stderr!r}"
           for args, sh, py in results
           if (sh.stdout, sh.returncode) != (py.stdout, py.returncode)]
    assert not bad, "hasthook dirty differs from hastdirty.sh:\n" + "\n".join(bad)
    assert any(sh.stdout for _, sh, _ in results) or all(a == ["-q"] for a in cases)


@pytest.fixture
def sim(tmp_path):
    nodes = []

    def make(resources: list[dict]) -> SimNode:
        n = SimNode(tmp_path / f"node{len(nodes)}", "host1",
                    [{"localpath": f"/dev/ada{i}", "remoteaddr": "10.0.0.2", **r}
                     for i, r in enumerate(resources)])
        nodes.append(n)
        return n

    yield make
    for n in nodes:
        n.close()


def test_every_flag_combination_matches_hastdirty_sh(sim, hastdirty, write_config):
    node = sim([{"name": n} for n in ("clean", "busy", "big", "sec", "idle")])
    node.set_state("clean", role="primary", connected=True, dirty_extents=0)
    node.set_state("busy", role="primary", connected=True, dirty_extents=3)
    node.set_state("big", role="primary", dirty_extents=3 * 2**19)      # 3 TiB
    node.set_state("sec", role="secondary", connected=True)
    cfg = write_config(hastctl=node.hastctl_path)
    names = ["busy", "sec", "nosuch", "clean"]
    cases = [f for f in FLAGS] + [f + names for f in FLAGS[:8]]
    cases += [["-a", "busy sec"], ["-a", "", ""], ["-a", ""], ["-a", "all"], ["-a", "--", "busy"],
              ["-ah", "big"]]
    compare(hastdirty(node.hastctl_path), cfg, cases)


def test_sizes_match_hastdirty_sh(sim, hastdirty, write_config):
    sizes = {  # name: (extentsize, dirty extents)
        "b1024": (1024, 1), "b1025": (1025, 1), "mib": (1024, 1024), "mibp": (1025, 1024),
        "g5": (2097152, 2560), "odd": (2097152, 12345), "t3": (2097152, 3 * 2**19),
        "p1": (2**30, 2**20), "p2": (2**30, 2**21),
    }
    node = sim([{"name": n} for n in sizes])
    for name, (ext, n) in sizes.items():
        node.set_state(name, role="primary", extentsize=ext, dirty_extents=n)
    cfg = write_config(hastctl=node.hastctl_path)
    compare(hastdirty(node.hastctl_path), cfg, [[], ["-h"], ["-ah"], ["-q"]])
    r = run_cmd(command("hasthook"), "-c", str(cfg), "dirty", "-h", "b1024", "mib", "p1", "p2")
    assert r.stdout == "b1024 1024\nmib 1024K\np1 1024T\np2 2T\n" and r.returncode == 4


def test_clean_and_hastd_down_match_hastdirty_sh(sim, hastdirty, write_config):
    node = sim([{"name": "r1"}, {"name": "r2"}])
    node.set_state("r1", role="primary", connected=True)
    node.set_state("r2", role="secondary", connected=True)
    cfg = write_config(hastctl=node.hastctl_path)
    script = hastdirty(node.hastctl_path)
    compare(script, cfg, [[], ["-a"], ["-ah"]])
    node.stop_hastd()   # dump still works (metadata), list cannot reach hastd
    compare(script, cfg, [[], ["-q"], ["-a", "r1"]])


def test_256_dirty_resources_exit_255_where_sh_says_0(tmp_path, hastdirty, write_config):
    """Too many resources for the simulator to be quick; a shell hastctl does it."""
    fake = tmp_path / "hastctl"
    fake.write_text(textwrap.dedent("""\
        #!/bin/sh
        case "$1" in
        dump) i=0; while [ $i -lt 256 ]; do echo "resource: r$i"; i=$((i + 1)); done ;;
        list) printf '%s:\\n  role: primary\\n  dirty: 2097152 (2.0MB)\\n' "$2" ;;
        esac
        """))
    fake.chmod(0o755)
    script = hastdirty(str(fake))
    sh = subprocess.run(["/bin/sh", str(script)], capture_output=True, text=True, timeout=120)
    py = run_cmd(command("hasthook"), "-c", str(write_config(hastctl=str(fake))), "dirty")
    assert sh.returncode == 0 and py.returncode == 255
    assert py.stdout == sh.stdout and sh.stdout.count("\n") == 256
    assert "256 resources are dirty; exit status capped at 255" in py.stderr
