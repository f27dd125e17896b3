"""A golden image's tag on the containers made from it, as the collection's modules compute it."""

from __future__ import annotations

import importlib

from api.config import Settings
from api.pve import load_collections

POOL_UTIL = "ansible_collections.proxmoxwp.hosting.plugins.module_utils.proxmoxwp_pool"


def image_tag(settings: Settings, ostemplate: str) -> str:
    """`img-<digest>` of the template's volume id: what proxmoxwp_lxc_pool tags its members with."""
    load_collections(settings)
    return importlib.import_module(POOL_UTIL).image_tag(ostemplate)
