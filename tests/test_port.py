"""ports/sysutils/py-hasthook: the FreeBSD port skeleton agrees with the repository.

Its version is the package's, its dependencies are pyproject's (by their ports
origins), every file it installs comes from the repository and is in the source
distribution it builds from, and pkg-plist lists exactly what it installs.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tarfile
import tomllib

import pytest
from conftest import COPY_IGNORE, REPO

import hasthook

PORT = REPO / "ports" / "sysutils" / "py-hasthook"
# pyproject's dependencies as FreeBSD packages them: (package name, origin).
ORIGINS = {"apprise": ("apprise", "net-im/py-apprise"),
           "pyyaml": ("pyyaml", "devel/py-pyyaml"),
           "jsonschema": ("jsonschema", "devel/py-jsonschema")}
PLACES = {"${STAGEDIR}${PREFIX}/": "", "${STAGEDIR}${ETCDIR}/": "etc/hasthook/",
          "${STAGEDIR}${EXAMPLESDIR}/": "%%PORTEXAMPLES%%%%EXAMPLESDIR%%/"}


def variables() -> dict[str, str]:
    """The Makefile's `NAME=value` assignments, continuation lines joined."""
    text = (PORT / "Makefile").read_text().replace("\\\n", " ")
    return {m[1]: " ".join(m[2].split()) for m in
            re.finditer(r"^([A-Z_]+)=\s*(.*)$", text, re.M)}


def installs() -> list[tuple[str, str]]:
    """(file in the source distribution, path in the package) for each install line."""
    text = (PORT / "Makefile").read_text()
    out = []
    for src, dst in re.findall(r"\$\{INSTALL_(?:SCRIPT|MAN|DATA)\} \$\{WRKSRC\}/(\S+) (\S+)",
                               text):
        place = next(p for p in PLACES if dst.startswith(p))
        dst = PLACES[place] + dst[len(place):]
        out.append((src, dst + ".gz" if re.search(r"/man/man\d/", dst) else dst))
    return out


def plist() -> list[str]:
    return [line.removeprefix("@sample ") for line in
            (PORT / "pkg-plist").read_text().splitlines() if line.strip()]


def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def test_the_port_is_this_version_and_license():
    v = variables()
    assert v["DISTVERSION"] == hasthook.__version__
    assert (v["PORTNAME"], v["CATEGORIES"].split()[0]) == ("hasthook", "sysutils")
    assert v["LICENSE"] == "BSD2CLAUSE" and v["LICENSE_FILE"] == "${WRKSRC}/LICENSE"
    assert pyproject()["project"]["license"] == {"text": "BSD-2-Clause"}
    license_text = (REPO / "LICENSE").read_text()
    assert license_text.startswith("BSD 2-Clause License\n")
    assert "Redistributions in binary form must reproduce" in license_text


def test_the_port_depends_on_what_pyproject_does_by_ports_origin():
    v = variables()
    deps = {m[1]: (m[2], m[3]) for m in re.finditer(
        r"\$\{PYTHON_PKGNAMEPREFIX\}([\w.-]+)([<>=]+[\w.]+):([\w-]+/[\w.-]+)@\$\{PY_FLAVOR\}",
        v["RUN_DEPENDS"])}
    for req in pyproject()["project"]["dependencies"]:
        name, version = re.fullmatch(r"([\w.-]+)(>=[\w.]+)", req).groups()
        pkg, origin = ORIGINS[name.lower()]
        assert deps.pop(pkg) == (version, origin), req
    # FreeBSD's Python has no sqlite3 module of its own: the history needs the package.
    assert deps == {"sqlite3": (">0", "databases/py-sqlite3")}
    floor = re.search(r">=(\d+\.\d+)", pyproject()["project"]["requires-python"])[1]
    assert v["USES"] == f"python:{floor}+"
    assert set(v["USE_PYTHON"].split()) == {"autoplist", "concurrent", "pep517"}


def test_pkg_plist_lists_exactly_what_the_makefile_installs():
    assert sorted(dst for _, dst in installs()) == sorted(plist())
    samples = [ln for ln in (PORT / "pkg-plist").read_text().splitlines()
               if ln.startswith("@sample ")]
    assert samples and all(s.endswith(".sample") for s in samples)
    # cron reads every file in cron.d, a .sample too: never install one there.
    assert not [p for p in plist() if "/cron.d/" in p]


def test_every_installed_file_is_in_the_repository():
    sources = [src for src, _ in installs()]
    missing = [s for s in sources if not (REPO / s).is_file()]
    assert missing == []
    assert set(sources) >= {f"man/{p.name}" for p in (REPO / "man").iterdir()}
    etc = {p.relative_to(REPO).as_posix() for p in (REPO / "etc").rglob("*") if p.is_file()}
    assert etc <= set(sources), etc - set(sources)
    assert "etc/rc.d/hasthook" in sources and "rules.example.yaml" in sources


def test_the_source_distribution_carries_what_the_port_installs(tmp_path):
    """Built for real (setuptools, as the port's pep517 build does), from a copy."""
    src = tmp_path / "src"
    shutil.copytree(REPO, src, ignore=COPY_IGNORE)
    r = subprocess.run([sys.executable, "-c",
                        "from setuptools import build_meta; print(build_meta.build_sdist('dist'))"],
                       cwd=src, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    name = r.stdout.split()[-1]
    assert name == f"hasthook-{hasthook.__version__}.tar.gz"
    with tarfile.open(src / "dist" / name) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    wanted = {s for s, _ in installs()} | {"LICENSE", "pyproject.toml"}
    assert wanted <= names, wanted - names


@pytest.mark.parametrize("name", ["pkg-descr", "files/pkg-message.in"])
def test_the_ports_texts_exist(name):
    text = (PORT / name).read_text()
    assert "hasthook" in text
    if name.endswith("pkg-message.in"):
        assert "exec %%PREFIX%%/bin/hasthook-exec" in text
        assert "service hasthook enable" in text
        assert "SUB_FILES=\tpkg-message" in (PORT / "Makefile").read_text()
