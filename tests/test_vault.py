"""Ansible Vault in the operator's inventory, for the API as for `ansible-playbook`.

The API reads plans and naming through ansible-core with the password file of PROXMOXWP_VAULT_PASSWORD_FILE;
the worker's runs get the file's path, so a secret kept in the vault reaches the modules, and neither the
password nor the secret appears in a job's record. A wrong password stops `serve` and `worker` at start.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import BIN, ROOT, wait_job
from sites import site_inventory

from api.config import ConfigError
from api.inventory import Inventory

SERVICE = 5303
PASSWORD = "vault password 5303 {not a template}"
SITE = {"service_id": SERVICE, "email": "owner@example.com", "plan": "basic", "public_ip": "203.0.113.10"}


def password_file(directory: Path, password: str = PASSWORD) -> Path:
    path = directory / "vault-password"
    path.write_text(password + "\n")
    path.chmod(0o600)
    return path


def vault(*args: str, password: Path) -> str:
    command = [str(BIN / "ansible-vault"), args[0], "--vault-password-file", str(password), *args[1:]]
    return subprocess.run(command, capture_output=True, text=True, check=True, timeout=60).stdout


def inline(name: str, value: str, password: Path) -> str:
    """`name: !vault |` and the ciphertext, as `ansible-vault encrypt_string` writes it for a vars file."""
    return vault("encrypt_string", "--name", name, "--", value, password=password)  # `--`: a value may start with -


def encrypted_inventory(inventory: Path, password: Path, how: str) -> None:
    """Move the PVE token secret of a site inventory (tests/sites.py) into the vault, and with it the plans
    (`file`: an encrypted group_vars/all/vault.yml) or the base zone (`inline`: `!vault` values)."""
    folder = inventory / "group_vars" / "all"
    settings = yaml.safe_load((folder / "zz_test.yml").read_text())
    secret = settings["proxmoxwp_pve_api"]["token_secret"]
    settings["proxmoxwp_pve_api"]["token_secret"] = "{{ vault_pve_token_secret }}"
    if how == "file":
        plans = yaml.safe_load((folder / "plans.yml").read_text())
        (folder / "plans.yml").unlink()
        (folder / "vault.yml").write_text(yaml.safe_dump({**plans, "vault_pve_token_secret": secret}))
        vault("encrypt", str(folder / "vault.yml"), password=password)
    else:
        zone = settings.pop("proxmoxwp_base_zone")
        # read after zz_test.yml, in name order, by Ansible and the API alike
        (folder / "zzz_vault.yml").write_text(
            "---\n" + inline("vault_pve_token_secret", secret, password) + inline("proxmoxwp_base_zone", zone, password)
        )
    (folder / "zz_test.yml").write_text("---\n" + yaml.safe_dump(settings, sort_keys=False))
    assert secret not in "".join(path.read_text() for path in folder.iterdir())


@pytest.fixture(params=["file", "inline"])
def how(request) -> str:
    return request.param


@pytest.fixture
def vault_password(tmp_path) -> Path:
    return password_file(tmp_path)


@pytest.fixture
def env(env, tmp_path, pve_api, edge_peers, how, vault_password):
    """The real playbooks against the fake cluster, with an inventory that keeps its secrets in the vault."""
    inventory = site_inventory(tmp_path / "site", pve_api, edge_peers.settings)
    encrypted_inventory(inventory, vault_password, how)
    return {
        **env,
        "PROXMOXWP_INVENTORY": str(inventory),
        "PROXMOXWP_PLAYBOOK_DIR": str(ROOT / "playbooks"),
        "PROXMOXWP_VAULT_PASSWORD_FILE": str(vault_password),
    }


def test_a_vaulted_inventory_works_for_the_api_and_for_a_job(api, worker, pve, edge_peers, how):
    schemas = api.get("/openapi.json").get_json()["components"]["schemas"]
    plans = sorted(yaml.safe_load((ROOT / "inventory/lab/group_vars/all/plans.yml").read_text())["proxmoxwp_plans"])
    assert "basic" in plans and "premium" in plans
    assert schemas["CreateSiteRequest"]["properties"]["plan"]["enum"] == plans, "the vaulted inventory's plans"
    refused = api.post("/create-site", {**SITE, "plan": "gold"})
    assert refused.status_code == 400 and ", ".join(plans) in json.dumps(refused.get_json())

    answer = api.post("/create-site", SITE)
    assert answer.status_code == 202, answer.get_json()
    job = wait_job(api, answer.get_json()["job_id"], timeout=180)

    assert job["state"] == "succeeded", job  # the modules reached the cluster with the vaulted token secret
    site = api.get("/status", service_id=SERVICE).get_json()
    assert site["subdomain"] == edge_peers.subdomain(SERVICE)  # the base zone, inline-vaulted in one case
    assert edge_peers.addresses(site["subdomain"]) == [SITE["public_ip"]]
    record = json.dumps(api.get(f"/jobs/{job['id']}", events=500).get_json())
    assert pve.pve.token_secret not in record and PASSWORD not in record


@pytest.mark.parametrize("command", [["serve", "--bind", "127.0.0.1:0"], ["worker"]])
def test_a_wrong_vault_password_stops_serve_and_worker_at_start(process_env, tmp_path, how, command):
    (tmp_path / "wrong").mkdir()
    wrong = password_file(tmp_path / "wrong", "not the password")
    started = subprocess.run(
        [str(BIN / "proxmoxwp"), *command],
        env={**process_env, "PROXMOXWP_VAULT_PASSWORD_FILE": str(wrong)},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip

    assert started.returncode == 2
    lines = started.stderr.strip().splitlines()
    assert len(lines) == 1 and "PROXMOXWP_VAULT_PASSWORD_FILE" in lines[0], started.stderr
    assert f"the vault password in {wrong} does not decrypt" in lines[0]
    assert "not the password" not in started.stdout + started.stderr


def test_the_inventory_says_what_is_missing_and_refuses_an_open_password_file(tmp_path, vault_password):
    inventory = tmp_path / "inventory"
    (inventory / "group_vars" / "all").mkdir(parents=True)
    (inventory / "hosts.yml").write_text("all:\n  hosts:\n    localhost:\n")
    plans = ROOT / "tests" / "inventory" / "group_vars" / "all"
    for name in ("plans.yml", "naming.yml"):
        (inventory / "group_vars" / "all" / name).write_text((plans / name).read_text())
    vault("encrypt", str(inventory / "group_vars" / "all" / "plans.yml"), password=vault_password)

    with pytest.raises(ConfigError, match=r"plans.yml is encrypted with Ansible Vault: set PROXMOXWP_VAULT_PASSWORD"):
        Inventory(inventory).check()
    vault_password.chmod(0o644)
    with pytest.raises(ConfigError, match="is readable by every user"):
        Inventory(inventory, vault_password).check()
    vault_password.chmod(0o600)
    assert sorted(Inventory(inventory, vault_password).plans) == ["basic", "premium"]
