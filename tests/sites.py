"""Running the real lifecycle playbooks the way an operator does, against the project's fake Proxmox VE."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from api.jobs.runner import PlaybookRun
from lab.pve.fake import TEMPLATE_VOLID, ProjectPve

ROOT = Path(__file__).resolve().parent.parent


def load_module_util(name: str):
    """plugins/module_utils/<name>.py as a module of this process, under its name in the collection."""
    dotted = f"ansible_collections.proxmoxwp.hosting.plugins.module_utils.{name}"
    spec = importlib.util.spec_from_file_location(dotted, ROOT / "plugins" / "module_utils" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[dotted] = module  # a dataclass looks its module up there while the module runs
    spec.loader.exec_module(module)
    return module


def load_client_module(name: str = "proxmoxwp_pve", **http_settings):
    """A client of module_utils (proxmoxwp_pve by default, or proxmoxwp_dns), whose imports from the collection
    (proxmoxwp_env, proxmoxwp_http, proxmoxwp_pve_hosts) are lent to it while it loads; `http_settings` replace
    proxmoxwp_http's (BACKOFF=0: retries without waiting)."""
    lent = [load_module_util(util) for util in ("proxmoxwp_env", "proxmoxwp_http", "proxmoxwp_pve_hosts")]
    for key, value in http_settings.items():
        assert hasattr(lent[1], key), key
        setattr(lent[1], key, value)
    sys.modules.update({module.__name__: module for module in lent})
    try:
        return load_module_util(name)
    finally:
        for module in lent:
            del sys.modules[module.__name__]


# How often the modules try a request (plugins/module_utils/proxmoxwp_http.py): a fault must outlast them to fail a run.
HTTP_TRIES = load_module_util("proxmoxwp_http").TRIES


def stored_templates(served, node: str = "pve1", storage: str = "local") -> dict[str, int]:
    """The container templates on a storage of the fake as its API lists them: {volid: size}."""
    client = load_client_module().PveClient(served.pve_api(), task_timeout=60)
    return {v["volid"]: v["size"] for v in client.get(f"/nodes/{node}/storage/{storage}/content", content="vztmpl")}


def site_ct(model: ProjectPve, vmid: int, service_id: int, *extra_tags: str, **kwargs):
    """A container of the service put straight into the fake's model (run it through pve.call(site_ct, pve.pve,
    ...)): tagged as the modules find a site's containers, on local-lvm."""
    tags = ";".join(["proxmoxwp", f"svc-{service_id}", *extra_tags])
    config = {"tags": tags, "rootfs": f"local-lvm:vm-{vmid}-disk-0,size=8G", "onboot": 1, "memory": 1024}
    config.update(kwargs.pop("config", {}))
    model.add_ct(vmid, name=f"site-{service_id}", config=config, **kwargs)
    return model.ct(vmid)


def site_inventory(
    directory: Path, pve_api: dict, edge: dict, storage: str = "drbd1", ha: bool = True, **overrides
) -> Path:
    """A copy of the lab inventory pointing at the fake (HA on; the fake has no container to log in to) and at the
    `edge` settings (tests/edge.py `EdgePeers.settings`: DNS zone and NPM), with `overrides` of its settings."""
    inventory = directory / "inventory"
    shutil.copytree(ROOT / "inventory" / "lab", inventory)
    settings = {
        "proxmoxwp_pve_api": dict(pve_api),
        "proxmoxwp_pve_storage": storage,
        "proxmoxwp_pve_ha_enabled": ha,
        "proxmoxwp_ct_ssh": {"user": "root", "private_key_file": "", "timeout": 30},
        "proxmoxwp_wordpress_install": False,
        # the fake's Debian template, whatever images a lab on this machine has built
        "proxmoxwp_pve_ostemplate": TEMPLATE_VOLID,
        **edge,
        **overrides,
    }
    # Read after every other file of group_vars/all, by Ansible and by the API alike (both merge in name order).
    (inventory / "group_vars" / "all" / "zz_test.yml").write_text("---\n" + yaml.safe_dump(settings, sort_keys=False))
    return inventory


def hand_run(inventory: Path, playbook: str, *args: str) -> subprocess.CompletedProcess:
    """`ansible-playbook -i INVENTORY playbooks/PLAYBOOK ARGS` from the repository root, as an operator runs it."""
    command = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory), f"playbooks/{playbook}"]
    return subprocess.run([*command, *args], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)


@dataclass
class Run:
    status: str
    changed: int
    failed_task: str | None
    message: str | None
    stats: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "successful"


def run_playbook(inventory: Path, runs_dir: Path, playbook: str, **variables) -> Run:
    """Run playbooks/<playbook> as the worker does (ansible-runner, `!unsafe` extra vars); count changed tasks."""
    changed: dict[str, int] = {}

    def on_event(record: dict) -> None:
        if record["event"] == "playbook_on_stats":
            changed.update(record["data"].get("changed") or {})

    result = PlaybookRun(
        project_dir=ROOT,
        playbook=ROOT / "playbooks" / playbook,
        inventory=inventory,
        runs_dir=runs_dir,
        variables=variables,
        secrets={},
        timeout=600,
        ident=playbook.removesuffix(".yml"),
        on_event=on_event,
    ).run()
    return Run(result.status, sum(changed.values()), result.failed_task, result.message, result.stats)


def cluster(served) -> dict[int, dict]:
    """What the fake cluster holds, per vmid: power, requested HA state, tags, config and snapshot names."""

    def read() -> dict[int, dict]:
        return {
            ct.vmid: {
                "status": ct.status,
                "ha": ct.ha_state,
                "tags": sorted(t for t in str(ct.config.get("tags", "")).replace(",", ";").split(";") if t),
                "config": dict(ct.config),
                "snapshots": list(ct.snapshots),
            }
            for ct in served.pve.cts
        }

    return served.call(read)
