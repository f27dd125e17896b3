"""A skipped test cannot hide in a green CI run (tests/skip_policy.py): shown on a real test of the suite, run by a
pytest of its own on a PATH that lacks one of the tools it needs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests import skip_policy
from tests.lxc import TOOLS

ROOT = Path(__file__).resolve().parent.parent
NEEDS_DEBOOTSTRAP = "tests/test_lab_containers.py::test_a_bridge_comes_and_goes_with_its_nat_table"


def path_without(directory: Path, missing: str) -> str:
    """A PATH of links to every tool the container tests need, but `missing`."""
    directory.mkdir()
    for tool in TOOLS:
        found = shutil.which(tool)
        if tool != missing and found:
            (directory / tool).symlink_to(found)
    return str(directory)


def pytest_run(tmp_path: Path, test: str, **env: str) -> subprocess.CompletedProcess[str]:
    """pytest on one test, in a process of its own: not a worker of this run, and with its own temporary folder."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "PROXMOXWP_")) and k != "CI"}
    temporary = tmp_path / "tmp"
    temporary.mkdir(exist_ok=True)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:xdist", "-rs", test],
        cwd=ROOT, env={**base, "PYTEST_DEBUG_TEMPROOT": str(temporary), **env},
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def test_a_skip_for_a_missing_tool_fails_a_ci_run_and_names_the_tool(tmp_path):
    path = path_without(tmp_path / "bin", "debootstrap")

    in_ci = pytest_run(tmp_path, NEEDS_DEBOOTSTRAP, PATH=path, CI="true")
    assert in_ci.returncode == pytest.ExitCode.TESTS_FAILED, in_ci.stdout[-3000:]
    assert "skips are failures under CI=true" in in_ci.stdout
    reason = "missing debootstrap" if os.geteuid() == 0 else "real LXC containers need root"
    assert f"SKIPPED {NEEDS_DEBOOTSTRAP}: {reason}" in in_ci.stdout, in_ci.stdout[-3000:]

    elsewhere = pytest_run(tmp_path, NEEDS_DEBOOTSTRAP, PATH=path)
    assert elsewhere.returncode == pytest.ExitCode.OK, elsewhere.stdout[-3000:]
    assert "1 skipped" in elsewhere.stdout


def test_only_what_the_allowlist_names_may_skip(monkeypatch):
    monkeypatch.setattr(skip_policy, "ALLOWED_SKIPS", {
        "tests/test_a.py::test_one": "a reason",
        "tests/test_b.py::": "the whole module, for a reason",
        "tests/test_c.py::test_param[": "every parameter, for a reason",
    })  # fmt: skip
    assert skip_policy.allowed("tests/test_a.py::test_one")
    assert not skip_policy.allowed("tests/test_a.py::test_one_more")
    assert skip_policy.allowed("tests/test_b.py::test_anything")
    assert skip_policy.allowed("tests/test_c.py::test_param[x]")
    assert not skip_policy.allowed("tests/test_c.py::test_param_other")


def test_every_allowed_skip_says_why():
    assert all(reason.strip() for reason in skip_policy.ALLOWED_SKIPS.values())
