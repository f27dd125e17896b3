"""The repository as the Ansible collection proxmoxwp.hosting (galaxy.yml, meta/runtime.yml).

The artifact holds the collection and nothing else, ansible-test's sanity tests pass on it installed, and an operator
who installed it runs a playbook of it by its full name against the project's fake Proxmox VE. A checkout finds the
collection through its ansible.cfg from any directory (as ansible-runner runs it), and every call of the
collection's modules uses their full names.
"""

from __future__ import annotations

import json
import re
import subprocess
import tarfile
import tempfile
from pathlib import Path

import pytest
from collection import BIN, ROOT, build, environment, install, sanity

# What the artifact holds at its top, and what of tests/ (ansible-test's ignore files).
ARTIFACT_TOP = {"CHANGELOG.md", "FILES.json", "LICENSE", "MANIFEST.json", "README.md", "docs", "meta", "playbooks",
                "plugins", "roles", "tests"}  # fmt: skip
MODULES = sorted(path.stem for path in (ROOT / "plugins" / "modules").glob("*.py"))
# A task calling one of the modules by its short name: `proxmoxwp_lxc:` as a task's key.
SHORT_NAME = re.compile(r"^\s*(?:- )?(?:{})\s*:\s*$".format("|".join(MODULES)), re.MULTILINE)
# Where plays and tasks are: the product's, the molecule scenarios', the tests', and the examples in the documents.
CALLERS = ["playbooks", "roles", "tests/playbooks", "docs", "README.md", "plugins/modules"]


@pytest.fixture(scope="module")
def artifact():
    """The artifact of the working tree, in a folder removed afterwards, pass or fail."""
    with tempfile.TemporaryDirectory(prefix="proxmoxwp-collection-") as scratch:
        yield build(Path(scratch))


@pytest.fixture(scope="module")
def installed(artifact):
    """The artifact installed as an operator installs it: (collections folder, the collection's folder)."""
    with tempfile.TemporaryDirectory(prefix="proxmoxwp-collection-") as scratch:
        yield Path(scratch), install(artifact, Path(scratch))


@pytest.mark.collection
def test_the_artifact_holds_the_collection_and_nothing_else(artifact):
    with tarfile.open(artifact) as tar:
        names = tar.getnames()
        manifest = json.load(tar.extractfile("MANIFEST.json"))["collection_info"]
    assert (manifest["namespace"], manifest["name"]) == ("proxmoxwp", "hosting")
    assert manifest["license"] == ["AGPL-3.0-or-later"]
    assert {name.split("/")[0] for name in names} == ARTIFACT_TOP, "a new top-level entry? galaxy.yml's build_ignore"
    wanted = {
        "meta/runtime.yml",
        "plugins/modules/proxmoxwp_lxc.py",
        "plugins/module_utils/proxmoxwp_pve.py",
        "plugins/doc_fragments/proxmoxwp_api.py",
        "roles/pve_container/tasks/create.yml",
        "playbooks/site_create.yml",
        "playbooks/tasks/site_restore.yml",
        "tests/sanity/ignore-2.19.txt",
    }
    assert wanted <= set(names)
    tests = [name for name in names if name.startswith("tests/") and name != "tests/sanity"]
    assert all(name.startswith("tests/sanity/") for name in tests), f"the pytest suite is in the artifact: {tests}"
    assert not [name for name in names if "/molecule" in name or "__pycache__" in name or name.startswith("docs/lab")]


@pytest.mark.collection
def test_ansible_test_sanity_passes_on_the_installed_collection(installed):
    _, collection = installed
    result = sanity(collection)
    assert result.returncode == 0, (result.stdout + result.stderr)[-8000:]
    assert "sanity test(s) listed below" not in result.stdout + result.stderr


@pytest.mark.collection
@pytest.mark.cluster
def test_an_operator_runs_a_playbook_of_the_installed_collection_by_its_name(installed, pve, pve_api, tmp_path):
    """ansible-playbook proxmoxwp.hosting.backup_create, from a folder of the operator's, with the collection found
    in the installed folder only: the play's module_defaults give the role's modules the inventory's connection."""
    collections, _ = installed

    def site(model):
        config = {"tags": "proxmoxwp;svc-7", "rootfs": "local-lvm:vm-100-disk-0,size=8G", "memory": 1024}
        model.add_ct(100, name="site-7", config=config)

    pve.call(site, pve.pve)
    inventory = tmp_path / "inventory"
    (inventory / "group_vars" / "all").mkdir(parents=True)
    (inventory / "hosts.yml").write_text(json.dumps({"all": {"hosts": {"localhost": {
        "ansible_connection": "local", "ansible_python_interpreter": str(BIN / "python")}}}}))  # fmt: skip
    (inventory / "group_vars" / "all" / "cluster.yml").write_text(json.dumps({
        "proxmoxwp_pve_api": pve_api, "proxmoxwp_pve_storage": "local-lvm",
        "proxmoxwp_pve_storages": {"local-lvm": {"rollback": "any"}}, "proxmoxwp_pve_ha_enabled": False,
        "proxmoxwp_ct_network": "10.77.0.0/16", "proxmoxwp_ct_gateway": "10.77.0.1", "proxmoxwp_ct_bridge": "vmbr0",
    }))  # fmt: skip
    argv = [str(BIN / "ansible-playbook"), "-i", str(inventory), "proxmoxwp.hosting.backup_create",
            "-e", "service_id=7", "-e", "bak=BAK01012026-1"]  # fmt: skip
    played = subprocess.run(argv, cwd=tmp_path, env={**environment(), "ANSIBLE_COLLECTIONS_PATH": str(collections)},
                            capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
    assert played.returncode == 0, (played.stdout + played.stderr)[-4000:]
    assert pve.call(lambda: set(pve.pve.ct(100).snapshots)) == {"BAK01012026-1"}


def short_module_calls(text: str) -> list[str]:
    return [match.group(0).strip() for match in SHORT_NAME.finditer(text)]


def test_the_short_name_check_sees_a_task_calling_a_module_by_its_short_name():
    task = "- name: Find the site\n  proxmoxwp_lxc_info:\n    service_id: 1\n"
    assert short_module_calls(task) == ["proxmoxwp_lxc_info:"]
    assert short_module_calls(task.replace("proxmoxwp_lxc_info", "proxmoxwp.hosting.proxmoxwp_lxc_info")) == []
    assert short_module_calls("module: proxmoxwp_lxc_info\nshort_description: the module's own documentation\n") == []


def test_every_call_of_the_collection_s_modules_uses_its_full_name():
    files = subprocess.run(["git", "ls-files", "-z", "--", *CALLERS], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.split("\0")  # fmt: skip
    checked = [name for name in files if name.endswith((".yml", ".yaml", ".md", ".py"))]
    assert any(name.startswith("roles/pve_container/tasks/") for name in checked)
    found = {name: calls for name in checked if (calls := short_module_calls((ROOT / name).read_text()))}
    assert found == {}, "call the modules as proxmoxwp.hosting.<module>"


def test_a_checkout_finds_the_collection_from_another_directory_with_its_ansible_cfg(tmp_path):
    """ansible-runner runs ansible-playbook with ANSIBLE_CONFIG set to the project's ansible.cfg from a directory of
    its own: collections_path is taken from the file's folder, so the checkout's collection is found."""
    argv = [str(BIN / "ansible-playbook"), "--syntax-check", "-i", str(ROOT / "inventory" / "lab"),
            str(ROOT / "playbooks" / "site_create.yml")]  # fmt: skip
    env = {**environment(), "ANSIBLE_HOME": str(tmp_path / "ansible-home")}
    found = subprocess.run(argv, cwd=tmp_path, env={**env, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg")},
                           capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert found.returncode == 0, found.stdout + found.stderr
    # Without the configuration nothing finds the collection: the check above is not vacuous.
    lost = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert lost.returncode != 0 and "could not resolve the module_defaults group proxmoxwp.hosting" in lost.stderr
