"""docs/production.md's commands, read by the tests that run them (tests/test_production_guide.py and the run's
golden image build in tests/lxc.py), so the guide cannot drift from what works.

The guide marks where each command runs: a ```console block runs on the controller unless the line before it
says "On a Proxmox VE node:"; a ```sh block runs on another machine. Within a console block, a command is a line
after the `$ ` prompt.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "production.md"
ON_A_NODE = "On a Proxmox VE node:"
# what the project ships: its command line, Ansible's (the playbooks, the vault) and its two scripts
PROJECT_PROGRAMS = (
    "proxmoxwp",
    "ansible-playbook",
    "ansible-vault",
    "scripts/install.sh",
    "deploy/install-services.sh",
)


@dataclass(frozen=True)
class Command:
    text: str
    where: str  # "controller", "node" or "elsewhere"

    @property
    def program(self) -> str:
        """The program that runs, behind `env VAR=...` and `systemd-run -p ...` and a `cd ... &&`."""
        words = shlex.split(self.text.split("&&")[-1])
        if words[0] == "systemd-run":
            words = [w for i, w in enumerate(words[1:], 1) if not w.startswith("-") and words[i - 1] != "-p"]
        elif words[0] == "env":
            words = [w for w in words[1:] if "=" not in w]
        return words[0] if words else ""

    @property
    def is_project(self) -> bool:
        return self.where == "controller" and self.program.endswith(PROJECT_PROGRAMS)


def commands() -> list[Command]:
    """Every command of the guide, in order."""
    found, where, before = [], None, ""
    for line in GUIDE.read_text().splitlines():
        stripped = line.strip()
        if where is None and stripped.startswith("```") and stripped != "```":
            kind = stripped[3:]
            where = {"console": "node" if before == ON_A_NODE else "controller", "sh": "elsewhere"}.get(kind, "")
        elif where is not None and stripped == "```":
            where = None
        elif where == "elsewhere" and stripped:
            found.append(Command(stripped, where))
        elif where and stripped.startswith("$ "):
            found.append(Command(stripped[2:], where))
        if stripped:
            before = stripped
    return found


def project_commands() -> list[Command]:
    return [command for command in commands() if command.is_project]


def one(pattern: str) -> str:
    """The one project command of the guide that matches the regular expression."""
    matching = [c.text for c in project_commands() if re.search(pattern, c.text)]
    assert len(matching) == 1, f"docs/production.md: {len(matching)} project commands match {pattern!r}: {matching}"
    return matching[0]
