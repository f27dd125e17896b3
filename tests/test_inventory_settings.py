"""The settings of inventory/production.example reach a playbook with the values docs/operations.md documents.

The table "The inventory's settings" in docs/operations.md is the contract: each row names a setting (a dotted
path into a variable), the file of group_vars/all that sets it and the value the example gives it. Ansible merges
group_vars/all/*.yml in name order, so a variable set in two files takes the later file's value without a word:
each variable must be set in one file, and the value a playbook sees must be the one documented.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.parsing.vault import VaultLib, VaultSecret
from conftest import BIN, ROOT

from api.config import ConfigError
from api.inventory import Inventory

DOC = ROOT / "docs" / "operations.md"
EXAMPLE = ROOT / "inventory" / "production.example"
INVENTORIES = {"production.example": EXAMPLE, "lab": ROOT / "inventory" / "lab"}
SECTION = "## The inventory's settings"
ROW = re.compile(r"^\| `(?P<setting>[a-z0-9_.]+)` \| `(?P<file>[a-z0-9_]+\.yml)` \| (?P<value>.+?) \| .+ \|$")
VAULTED = re.compile(r"^\*vault\* `(?P<name>\w+)`$")
PLAIN = re.compile(r"^`(?P<yaml>.+)`$")
PASSWORD = "settings test {not a template}"
# The example's values that come from the environment when it is set: the documented values are those without.
ENVIRONMENT = ("PROXMOXWP_BUILD_DIR", "PROXMOXWP_BUILD_ADDRESS")


def documented() -> dict[str, tuple[str, str]]:
    """{setting: (file, value cell)} from the table of docs/operations.md."""
    text = DOC.read_text()
    assert SECTION in text, f"{DOC} has no section {SECTION!r}"
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        if match := ROW.match(line):
            assert match["setting"] not in rows, f"{match['setting']} is documented twice"
            rows[match["setting"]] = (match["file"], match["value"])
    assert len(rows) > 10, f"the table of {SECTION!r} was not read"
    return rows


def definitions(inventory: Path) -> dict[str, list[str]]:
    """Each variable set in group_vars/all of `inventory`, with the files that set it."""
    found = defaultdict(list)
    for path in sorted((inventory / "group_vars" / "all").glob("*.yml")):
        for name in yaml.safe_load(path.read_text()) or {}:
            found[name].append(path.name)
    return dict(found)


def expected(cell: str, vault: dict[str, Any]) -> Any:
    if match := VAULTED.match(cell):
        return vault[match["name"]]
    match = PLAIN.match(cell)
    assert match, f"not a value the test can read: {cell}"
    return yaml.safe_load(match["yaml"])


def at(variables: dict[str, Any], setting: str) -> Any:
    value: Any = variables
    for key in setting.split("."):
        assert isinstance(value, dict) and key in value, f"{setting}: the playbook has no {key!r} there"
        value = value[key]
    return value


@pytest.mark.parametrize("name", INVENTORIES)
def test_no_variable_is_set_in_two_files(name):
    twice = {variable: files for variable, files in definitions(INVENTORIES[name]).items() if len(files) > 1}
    assert twice == {}


def test_every_setting_of_the_example_is_documented_in_the_file_that_sets_it():
    rows = documented()
    defined = definitions(EXAMPLE)
    vaulted = {match["name"] for _file, cell in rows.values() if (match := VAULTED.match(cell))}
    heads = {setting.split(".")[0] for setting in rows}
    assert sorted(set(defined) - heads - vaulted) == [], "set in the example but not in the table"
    misplaced = {s: (file, defined.get(s.split(".")[0])) for s, (file, _cell) in rows.items()
                 if file not in defined.get(s.split(".")[0], [])}  # fmt: skip
    assert misplaced == {}, "documented in a file that does not set it: setting: (documented, sets it)"
    assert sorted(vaulted - set(defined)) == [], "documented as kept in the vault, but the example has no such secret"
    assert all(defined[name] == ["vault.yml"] for name in vaulted), "secrets are kept in vault.yml"


def test_each_documented_setting_reaches_a_playbook_with_its_value(tmp_path):
    rows = documented()
    vault = yaml.safe_load((EXAMPLE / "group_vars" / "all" / "vault.yml").read_text())
    # The example as an operator sets it up: copied, its vault.yml encrypted (docs/operations.md).
    inventory = tmp_path / "production"
    shutil.copytree(EXAMPLE, inventory)
    password = tmp_path / "vault-password"
    password.write_text(PASSWORD + "\n")
    password.chmod(0o600)
    vault_file = inventory / "group_vars" / "all" / "vault.yml"
    secret = [("default", VaultSecret(PASSWORD.encode()))]
    vault_file.write_bytes(VaultLib(secret).encrypt(vault_file.read_text()))  # as `ansible-vault encrypt` does
    assert vault_file.read_text().startswith("$ANSIBLE_VAULT")

    # A playbook writes what it sees of each variable, templated, as the lifecycle playbooks would use it.
    names = sorted({setting.split(".")[0] for setting in rows})
    seen = tmp_path / "seen.json"
    task = {"ansible.builtin.copy": {"dest": str(seen), "mode": "0600",
            "content": "{{ dict(names | zip(query('ansible.builtin.vars', *names))) | to_json }}"}}  # fmt: skip
    playbook = tmp_path / "settings.yml"
    playbook.write_text(json.dumps([{"hosts": "localhost", "gather_facts": False, "tasks": [task]}]))
    env = {key: value for key, value in os.environ.items() if key not in ENVIRONMENT}
    run = subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", str(inventory), "--vault-password-file", str(password),
         "-e", json.dumps({"names": names}), str(playbook)],
        cwd=ROOT, env={**env, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg")}, capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    variables = json.loads(seen.read_text())

    wrong = {
        setting: {"documented": want, "playbook": got}
        for setting, (_file, cell) in rows.items()
        if (got := at(variables, setting)) != (want := expected(cell, vault))
    }
    assert wrong == {}


@pytest.mark.parametrize(
    ("setting", "error"),
    [
        ("proxmoxwp_wordpress_admin_user: admin", "proxmoxwp_wordpress_admin_user is no longer read"),
        ("proxmoxwp_wordpress_admin_prefix: " + "a" * 54, "proxmoxwp_wordpress_admin_prefix must be 3-53 of"),
        ("proxmoxwp_wordpress_admin_prefix: Admin", "proxmoxwp_wordpress_admin_prefix must be 3-53 of"),
    ],
    ids=["the old single login", "a prefix too long for WordPress", "a capital letter"],
)
def test_the_api_refuses_an_admin_login_setting_it_cannot_follow(tmp_path, setting, error):
    """One setting names the administrators (the prefix); the old one for every site is refused, not ignored."""
    inventory = tmp_path / "inventory"
    shutil.copytree(ROOT / "tests" / "inventory", inventory)
    (inventory / "group_vars" / "all" / "site.yml").write_text(f"---\n{setting}\n")
    with pytest.raises(ConfigError, match=re.escape(error)):
        Inventory(inventory).check()
