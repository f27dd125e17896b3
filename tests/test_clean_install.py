"""A fresh clone, installed as a new user installs it: the README's first command, in an empty folder, then the
lab's status and down.

The clone gets a venv of its own with the product and the `lab` extra only (no test extra): an import that only
the test tools satisfied, or a file read from beside the repository, fails here. Its packages come from a folder
of wheels that scripts/test.sh fetches from the package index while installing (`PROXMOXWP_TEST_WHEELHOUSE`), so
the test itself needs no network; run alone, the test fetches them first. Its lab has its own data directory,
bridge, subnet and ports (tests/labs.py) and shares only the run's Debian rootfs; no golden image is built.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import BIN, ROOT
from labs import lab_environment
from readme import shell_block

from api.build_host.network import bridge_exists, remove_bridge

pytestmark = pytest.mark.containers


def readme_first_command() -> str:
    """The first line of the README's first shell block, without its comment."""
    return shell_block().splitlines()[0].split("#")[0].strip()


@pytest.fixture
def clone(tmp_path) -> Path:
    target = tmp_path / "proxmoxwp"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(target)], check=True, stdin=subprocess.DEVNULL)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["proxmoxwp"], "nothing beside the clone"
    return target


@pytest.fixture
def own_lab(tmp_path, lab_dir, lab_rootfs, product_wheels) -> Iterator[dict[str, str]]:
    """The clone's lab environment: its own ports, bridge and subnet, the wheels instead of the index, no golden
    image, and nothing of this test run's venv on PATH."""
    env = lab_environment(tmp_path / "data", lab_dir)
    images = tmp_path / "data" / "lab" / "images"
    images.unlink()  # the run's golden image stays out of it: this lab must come up without one
    images.mkdir()
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if Path(p) != BIN)
    env.update(PROXMOXWP_LAB_GOLDEN="0", PIP_NO_INDEX="1", PIP_FIND_LINKS=str(product_wheels))
    yield env
    if bridge_exists(env["PROXMOXWP_LAB_BRIDGE"]):  # only when `lab down` did not run or failed
        remove_bridge(env["PROXMOXWP_LAB_BRIDGE"])


IMPORT_EVERYTHING = """
import importlib, pkgutil, sys
import api, lab
failed = []
for package in (api, lab):
    for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        if module.name.rsplit(".", 1)[-1] == "__main__":
            continue  # runs its command when imported
        try:
            importlib.import_module(module.name)
        except Exception as error:
            failed.append(f"{module.name}: {type(error).__name__}: {error}")
for name in ("pytest", "schemathesis", "molecule"):
    if importlib.util.find_spec(name) is not None:
        failed.append(f"{name} is installed: the clone got the test extra")
print("\\n".join(failed))
sys.exit(1 if failed else 0)
"""


@pytest.mark.timeout(1800)
def test_the_readmes_first_command_installs_a_fresh_clone_and_brings_its_lab_up(clone, own_lab):
    command = readme_first_command()
    assert command == "./scripts/install.sh"
    proxmoxwp = clone / ".venv" / "bin" / "proxmoxwp"
    try:
        installed = subprocess.run(["bash", "-c", command], cwd=clone, env=own_lab, capture_output=True, text=True,
                                   timeout=1500, stdin=subprocess.DEVNULL, check=False)  # fmt: skip
        assert installed.returncode == 0, installed.stdout[-3000:] + installed.stderr[-3000:]
        api_url = f"http://{own_lab['PROXMOXWP_LAB_BIND']}"
        assert f"API at {api_url}" in installed.stdout

        imported = subprocess.run([str(clone / ".venv" / "bin" / "python"), "-c", IMPORT_EVERYTHING], cwd=clone,
                                  env=own_lab, capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
        assert imported.returncode == 0, imported.stdout + imported.stderr

        status = subprocess.run([str(proxmoxwp), "lab", "status", "--json"], env=own_lab, capture_output=True,
                                text=True, timeout=120, check=False)  # fmt: skip
        assert status.returncode == 0, status.stdout + status.stderr
        report = json.loads(status.stdout)
        assert report["up"] is True and report["api_url"] == api_url
        parts = {part["name"]: part["state"] for part in report["parts"]}
        assert parts["image"] == "absent", "no golden image: PROXMOXWP_LAB_GOLDEN=0 reached `lab up`"
        assert all(state == "running" for name, state in parts.items() if name != "image"), parts
    finally:
        down = None
        if proxmoxwp.exists():
            down = subprocess.run([str(proxmoxwp), "lab", "down"], env=own_lab, capture_output=True, text=True,
                                  timeout=600, check=False)  # fmt: skip
    assert down is not None and down.returncode == 0, down and down.stdout + down.stderr
    after = subprocess.run([str(proxmoxwp), "lab", "status", "--json"], env=own_lab, capture_output=True,
                           text=True, timeout=120, check=False)  # fmt: skip
    assert after.returncode == 3
    assert not bridge_exists(own_lab["PROXMOXWP_LAB_BRIDGE"]), "`lab down` removes the lab's bridge"
