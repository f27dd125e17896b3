"""The Proxmox VE API from the API's own processes, through the collection's client.

The playbooks' modules and the API (placement, the golden image's upload) talk to PVE with one client,
plugins/module_utils/proxmoxwp_pve.py, so they share its conventions: PVE's errors as one sentence without the
token secret, the certificate pinned or checked against the CA, retries on a blip. It is imported from this
checkout through Ansible's collection loader (collections/ links the collection's name here), which also gives
the inventory's lookups (`ansible.builtin.env`) what they need when the API reads the connection settings.
"""

from __future__ import annotations

import functools
import importlib
from pathlib import Path
from typing import Any

from api.config import ConfigError, Settings

CLIENT = "ansible_collections.proxmoxwp.hosting.plugins.module_utils.proxmoxwp_pve"


def load_collections(settings: Settings) -> None:
    """Ansible's collection loader, as ansible-playbook sets it up (once per process: Ansible warns otherwise)."""
    init_collection_loader(settings.project_dir)


def init_collection_loader(project_dir: Path) -> None:
    """The same for a project directory: its `collections/` links the collection's name to the checkout."""
    _init_loader(str(project_dir / "collections"))


@functools.cache
def _init_loader(collections: str) -> None:
    # once a process: a second set-up makes Ansible warn that its collection finder is configured already
    from ansible.plugins.loader import init_plugin_loader

    init_plugin_loader([collections])


def pve_client(settings: Settings, api: dict[str, Any], task_timeout: int = 1800):
    """The collection's PveClient for these connection settings (`proxmoxwp_pve_api`), and its PveApiError."""
    load_collections(settings)
    module = importlib.import_module(CLIENT)
    try:
        return module.PveClient(api, task_timeout=task_timeout), module.PveApiError
    except module.PveApiError as exc:
        raise ConfigError(f"proxmoxwp_pve_api: {exc.message}") from None
