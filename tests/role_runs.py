"""Running one entry point of a role on localhost, as a playbook does, for the tests of the edge roles."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from sites import ROOT


@dataclass
class RoleRun:
    returncode: int
    stdout: str
    stderr: str
    changed: int  # tasks that changed something (PLAY RECAP), -1 when there was no recap

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def run_role(tmp_path: Path, role: str, entry_point: str, check: bool = False, verbosity: int = 0, **variables):
    playbook = tmp_path / f"{role}-{entry_point}.yml"
    playbook.write_text(
        "- hosts: localhost\n  gather_facts: false\n  tasks:\n"
        f"    - ansible.builtin.include_role:\n        name: {role}\n        tasks_from: {entry_point}\n"
    )
    extra = tmp_path / f"{role}-vars.json"
    extra.write_text(json.dumps(variables))
    argv = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "tests/inventory/hosts.yml",
            "-e", f"@{extra}", str(playbook)]  # fmt: skip
    argv += ["--check"] * check + ["-" + "v" * verbosity] * bool(verbosity)
    result = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False)
    recap = [line for line in result.stdout.splitlines() if line.startswith("localhost ")]
    changed = int(recap[-1].split("changed=")[1].split()[0]) if recap else -1
    return RoleRun(result.returncode, result.stdout, result.stderr, changed)
