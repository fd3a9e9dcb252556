"""`deploy/tools/install` (run by `make setup`) is idempotent and cached: once the tools are
there, running it again rebuilds nothing, and what it installed is the pinned version."""

from __future__ import annotations

import re
import subprocess

from tests.deploy.tools import BIN, CRDS, REPO, go, tool

INSTALL = REPO / "deploy" / "tools" / "install"


def pinned(name: str) -> str:
    return re.search(rf"^{name}=(\S+)$", INSTALL.read_text(), re.M).group(1)


def test_second_run_builds_nothing():
    r = subprocess.run([str(INSTALL)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "building" not in r.stderr and "fetching" not in r.stderr, r.stderr
    assert "[deploy-tools] ok:" in r.stderr


def test_helm_is_the_pinned_module_version():
    out = subprocess.run([go(), "version", "-m", tool("helm")], capture_output=True, text=True).stdout
    assert re.search(rf"^\s*mod\s+helm\.sh/helm/v3\s+{re.escape(pinned('HELM_VERSION'))}\s", out, re.M), out


def test_keda_crds_come_from_the_module_crdcheck_is_built_with():
    tool("crdcheck")
    gomod = (REPO / "deploy" / "tools" / "crdcheck" / "go.mod").read_text()
    version = re.search(r"github\.com/kedacore/keda/v2 (v\S+)", gomod).group(1)
    assert (CRDS / "keda.version").read_text().strip() == version
    for f in ("keda.sh_scaledobjects.yaml", "keda.sh_triggerauthentications.yaml"):
        assert "kind: CustomResourceDefinition" in (CRDS / f).read_text()
    assert any(p.name.startswith(".crdcheck-") for p in BIN.iterdir())
