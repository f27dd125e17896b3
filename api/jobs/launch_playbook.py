"""Starts ansible-playbook for ansible-runner with the secrets of its environment put back.

ansible-runner writes the command it starts and its whole environment into `artifacts/<ident>/command`, a
file that outlives a killed worker. So the runner is given an environment without the secret values, and the
path of a private file holding them; this launcher reads that file, removes it, and becomes ansible-playbook
with the complete environment (the collection's modules take credentials from PROXMOXWP_* variables).

It is run by its path, not imported: it must start fast and needs nothing of the product.
"""

import json
import os
import sys

SECRETS_FILE = "PROXMOXWP_RUN_SECRETS_FILE"
PLAYBOOK_COMMAND = "PROXMOXWP_RUN_ANSIBLE_PLAYBOOK"


def main() -> None:
    secrets_file = os.environ.pop(SECRETS_FILE, "")
    if secrets_file:
        with open(secrets_file, encoding="utf-8") as handle:
            os.environ.update(json.load(handle))
        os.unlink(secrets_file)
    command = os.environ.pop(PLAYBOOK_COMMAND)
    os.execv(command, [command, *sys.argv[1:]])  # noqa: S606 - the worker's own ansible-playbook


if __name__ == "__main__":
    main()
