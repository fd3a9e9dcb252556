"""`deploy/local/stack install` on a machine without the Debian packages: a fake apt-get on PATH."""

import os
import stat
import sys

import pytest

from tests.harness import REPO

# deploy/local is not a Python package; its stackctl package is found the way the entry point finds it.
sys.path.insert(0, str(REPO / "deploy" / "local"))
from stackctl import install as stack  # noqa: E402
from stackctl.paths import StackError  # noqa: E402

FAKE_APT = """#!/bin/sh
echo "$*" >> "{calls}"
if [ "$1" = update ]; then touch "{updated}"; exit 0; fi
if [ "$1" = install ] && [ -f "{updated}" ]; then printf '#!/bin/sh\\n' > "{bin}/zzcmd"; chmod +x "{bin}/zzcmd"; exit 0; fi
exit 100
"""


@pytest.fixture
def fake_apt(tmp_path, monkeypatch):
    b = tmp_path / "bin"
    b.mkdir()
    apt = b / "apt-get"
    apt.write_text(FAKE_APT.format(calls=tmp_path / "calls", updated=tmp_path / "updated", bin=b))
    apt.chmod(apt.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{b}{os.pathsep}/usr/bin{os.pathsep}/bin")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    return tmp_path


def test_missing_command_is_installed_with_one_update_retry(fake_apt):
    assert stack.ensure_debian_package("zzcmd", "zz-pkg", "zz") is True
    calls = (fake_apt / "calls").read_text().splitlines()
    assert calls == ["install -y --no-install-recommends zz-pkg", "update", "install -y --no-install-recommends zz-pkg"]
    assert stack.ensure_debian_package("zzcmd", "zz-pkg", "zz") is False  # present now: no apt call
    assert len((fake_apt / "calls").read_text().splitlines()) == 3


def test_install_that_cannot_succeed_says_so(fake_apt):
    with pytest.raises(StackError, match="could not install nope-pkg"):
        stack.ensure_debian_package("nopecmd", "nope-pkg", "nope")
