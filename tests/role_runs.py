"""Running one entry point of a role as a playbook does, on localhost or on the hosts of an inventory."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from sites import ROOT

# The module_defaults of the project's playbooks, by the inventory variable each reads.
CONNECTIONS = {
    "group/proxmoxwp.hosting.proxmox": ("proxmoxwp_pve_api", {"api": "{{ proxmoxwp_pve_api }}"}),
    "group/proxmoxwp.hosting.npm": ("proxmoxwp_npm_api", {"api": "{{ proxmoxwp_npm_api }}"}),
    "group/proxmoxwp.hosting.dns": ("proxmoxwp_dns", "{{ proxmoxwp_dns }}"),
}


@dataclass
class RoleRun:
    returncode: int
    stdout: str
    stderr: str
    changed: int  # tasks that changed something (PLAY RECAP), -1 when there was no recap

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def run_role(
    tmp_path: Path,
    role: str,
    entry_point: str,
    check: bool = False,
    verbosity: int = 0,
    inventory: Path | None = None,
    env: dict[str, str] | None = None,
    **variables,
) -> RoleRun:
    """Run one entry point of the collection's role as a playbook does: on localhost, or on every host of `inventory`.

    From the repository's root, so that its ansible.cfg finds the collection proxmoxwp.hosting (the checkout). Like
    the project's playbooks, the play hands the connections among `variables` (the inventory's names) to the modules
    with module_defaults; a connection not given is left to the modules' environment variables."""
    hosts = "all" if inventory else "localhost"
    playbook = tmp_path / f"{role}-{entry_point}.yml"
    include = {"ansible.builtin.include_role": {"name": f"proxmoxwp.hosting.{role}", "tasks_from": entry_point}}
    play = {"hosts": hosts, "gather_facts": False, "tasks": [include]}
    defaults = {group: value for group, (name, value) in CONNECTIONS.items() if name in variables}
    if defaults:
        play["module_defaults"] = defaults
    playbook.write_text(json.dumps([play]))
    extra = tmp_path / f"{role}-vars.json"
    extra.write_text(json.dumps(variables))
    argv = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory or "tests/inventory/hosts.yml"),
            "-e", f"@{extra}", str(playbook)]  # fmt: skip
    argv += ["--check"] * check + ["-" + "v" * verbosity] * bool(verbosity)
    result = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    recap = [line for line in result.stdout.splitlines() if " : ok=" in line]
    changed = sum(int(line.split("changed=")[1].split()[0]) for line in recap) if recap else -1
    return RoleRun(result.returncode, result.stdout, result.stderr, changed)
