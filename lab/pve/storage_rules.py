"""What each storage can do with container volumes, and the DRBD/LINSTOR storage type fakepve lacks.

fakepve lets any lvmthin/rbd/zfspool/btrfs volume snapshot and roll back to any snapshot, and knows no `drbd`
type at all (it refuses snapshots there). The project runs on DRBD/LINSTOR, whose rules bite (docs/real-systems.md):

- snapshots work, but a rollback only goes to the most recent snapshot of the volume (as on ZFS);
- a rollback needs the volume unused: while the HA manager wants the container started it would start it again
  under the rollback, so the rollback fails;
- no templates (LINSTOR's create_base dies), so no linked clones; full clones work, also from a snapshot.

Each storage declares these as capabilities: defaults per storage type (STORAGE_CAPS), overridden by a `caps`
dict in the storage's entry of `pve.storages` (the API never shows it). The container routes that depend on them
are re-implemented from fakepve's own (lxc.py) with the capability checks at the place PVE makes them.
"""

from __future__ import annotations

import re
import time

from fakepve.lxc import parse_mount, print_mount, to_base
from fakepve.model import PveError, TaskError
from fakepve.routing import die

# volume_rollback_is_possible of ZFSPoolPlugin.pm; the project's DRBD storage must be treated the same way.
NOT_MOST_RECENT = "can't rollback, '{snap}' is not most recent snapshot on '{volid}'"
# linstor-proxmox (LINBIT/Linstor.pm rollback_snapshot) wraps LINSTOR's refusal this way; the cause is LINSTOR's
# "resource is in use", shortened to one line so it is the task's exit status.
IN_USE = "Could not rollback cluster wide snapshot snap_{name}_{snap} of {name}, because: resource '{name}' is in use"
# PVE::LXC::template_create, when the storage plugin has no 'template' feature (LINSTOR: "can't create base images").
NO_TEMPLATE = "Template feature is not available for '{volid}'"
# API2/LXC.pm clone_vm, when volume_has_feature('clone') is false.
NO_LINKED_CLONE = "Linked clone feature for '{volid}' is not available"

_FULL = {"snapshot": True, "rollback": "any", "template": True, "linked_clone": True, "rollback_needs_unused": False}
_NONE = dict(_FULL, snapshot=False)
STORAGE_CAPS = {
    "drbd": {
        "snapshot": True,
        "rollback": "latest",
        "template": False,
        "linked_clone": False,
        "rollback_needs_unused": True,
    },
    "zfspool": dict(_FULL, rollback="latest"),
    "lvmthin": _FULL,
    "rbd": _FULL,
    "btrfs": _FULL,
}
# Keys of a pve.storages entry that are this extension's state, never storage.cfg options.
PRIVATE_KEYS = ("caps",)
LINSTOR_NAME = re.compile(r"^(vm-(\d+)-[a-z][a-z0-9\-_.]*[a-z0-9]+|pm-[\da-f]{8}_(\d+))$")


def drbd_storage(controller: str = "192.0.2.10", resourcegroup: str = "proxmoxwp", **caps) -> dict:
    """A pve.storages entry for a LINSTOR storage (storage.cfg options plus fakepve's own state keys)."""
    store = {
        "type": "drbd",
        "shared": 1,
        "content": "images,rootdir",
        "controller": controller,
        "resourcegroup": resourcegroup,
        "active": 1,
        "files": set(),
        "volumes": {},
    }
    if caps:
        store["caps"] = caps
    return store


class StorageRules:
    """Mixin of ProjectPve: storage capabilities, the drbd type, and the container routes that obey them."""

    def storage_caps(self, sid: str) -> dict:
        """What the storage can do: snapshot, rollback ('any' or 'latest'), template, linked_clone,
        rollback_needs_unused. Unknown storages and types get fakepve's behaviour (no snapshots)."""
        store = self.storages.get(sid) or {}
        return dict(STORAGE_CAPS.get(store.get("type"), _NONE), **store.get("caps", {}))

    def _volume_caps(self, volume: str) -> dict:
        return self.storage_caps(volume.split(":", 1)[0])

    # ------------------------------------------- where the storage acts (LabPve does it for real there)

    async def storage_snapshot(self, ct, name: str) -> None:
        """The storage snapshots the CT's volumes (the model has nothing to do: the snapshot is in ct.snapshots)."""

    async def storage_rollback(self, ct, name: str) -> None:
        """The storage rolls the stopped CT's volumes back to the snapshot (the model only swaps the config)."""

    # ------------------------------------------------------------- the drbd type in fakepve's storage views

    def _options_of(self, store):
        # fakepve calls it as self._options_of(...), so an instance method can hide the capability keys.
        return {k: v for k, v in super()._options_of(store).items() if k not in PRIVATE_KEYS}

    def _ct_volume_name(self, vmid, sid, n):
        # The project's LINSTOR setup uses legacy names, as the other block storages do.
        if self.storages.get(sid, {}).get("type") == "drbd":
            return f"vm-{vmid}-disk-{n}"
        return super()._ct_volume_name(vmid, sid, n)

    def _parse_volname(self, store, volname):
        if store.get("type") != "drbd":
            return super()._parse_volname(store, volname)
        found = LINSTOR_NAME.match(volname)
        if not found:
            raise die(f"unable to parse PVE volume name '{volname}'")
        return "images", int(found.group(2) or found.group(3)), "raw"

    def _volume_path(self, name, volname, vtype):
        if self.storages[name].get("type") == "drbd":
            return f"/dev/drbd/by-res/{volname}/0"
        return super()._volume_path(name, volname, vtype)

    # ------------------------------------------------------------------------------------------- snapshots

    async def _lxc_snapshot(self, user, v):
        """fakepve's snapshot, with the storage's `snapshot` capability instead of its fixed list of types."""
        ct = self._find_ct(v["node"], v["vmid"])
        name = v["snapname"]
        if name in ("current", "vzdump"):
            raise PveError(500, f"unable to use snapshot name '{name}' (reserved name)")
        self.need_quorum()

        async def body():
            if ct.template:
                raise TaskError("you can't take a snapshot if it's a template")
            self._task_lock(ct)
            if name in ct.snapshots:
                raise TaskError(f"snapshot name '{name}' already used")
            if not all(self._volume_caps(m["volume"])["snapshot"] for _, m in ct.volumes()):
                raise TaskError("snapshot feature is not available")
            ct.lock = "snapshot"
            try:
                snap = {
                    k: x
                    for k, x in ct.config.items()
                    if k not in ("lock", "description") and not k.startswith("unused")
                }
                snap.update(snapstate="prepare", snaptime=int(time.time()))
                if v.get("description"):
                    snap["description"] = v["description"]
                ct.snapshots[name] = snap
                try:
                    await self.ceph_io(ct, [k for k, _ in ct.volumes()])
                    await self.pause(self.ct_secs["snapshot"])
                    await self.storage_snapshot(ct, name)
                except TaskError:
                    del ct.snapshots[name]
                    raise
                snap.pop("snapstate")
                ct.config["parent"] = name
            finally:
                ct.lock = None

        return await self._ct_task(ct, "vzsnapshot", user, body, lock=False)

    def _rollback_blocker(self, ct, name: str, snap: dict) -> str | None:
        """PVE's volume_rollback_is_possible for every volume of the snapshot: the refusal, or None.

        A volume's snapshots are ordered by creation, which is the order of ct.snapshots (snaptime has only
        second resolution); a later snapshot that holds the same volume blocks a 'latest'-only storage.
        """
        names = list(ct.snapshots)
        later = [ct.snapshots[n] for n in names[names.index(name) + 1 :]]
        for _key, mount in ct.volumes(snap):
            volid = mount["volume"]
            if self._volume_caps(volid)["rollback"] != "latest":
                continue
            if any(volid in {m["volume"] for _, m in ct.volumes(other)} for other in later):
                return NOT_MOST_RECENT.format(snap=name, volid=volid)
        return None

    def _rollback_in_use(self, ct, name: str, snap: dict) -> str | None:
        """The refusal of a storage whose volume must be unused, while HA would start the container again."""
        if ct.ha_state != "started":
            return None
        for _key, mount in ct.volumes(snap):
            if self._volume_caps(mount["volume"])["rollback_needs_unused"]:
                return IN_USE.format(name=mount["volume"].split(":", 1)[1], snap=name)
        return None

    async def _lxc_rollback(self, user, v):
        """fakepve's rollback with the storage rules, in PVE's order (AbstractConfig::snapshot_rollback): the
        rollback-possible check before anything changes, then lock and stop, then the volume rollback."""
        ct = self._find_ct(v["node"], v["vmid"])
        name = v["snapname"]
        if v.get("start"):
            self.require(user, f"/vms/{ct.vmid}", "VM.PowerMgmt")
        self.need_quorum()

        async def body():
            if ct.template:
                raise TaskError("you can't rollback if vm is a template")
            snap = ct.snapshots.get(name)
            if snap is None:
                raise TaskError(f"snapshot '{name}' does not exist")
            blocker = self._rollback_blocker(ct, name, snap)
            if blocker:
                raise TaskError(blocker)
            if snap.get("snapstate"):
                raise TaskError(f"unable to rollback to incomplete snapshot (snapstate = {snap['snapstate']})")
            self._task_lock(ct)
            ct.lock = "rollback"
            try:
                if ct.status == "running":
                    await self.stop_now(ct)
                # The CT is stopped now; the HA manager (if it wants it started) brings it back after the failure.
                in_use = self._rollback_in_use(ct, name, snap)
                if in_use:
                    raise TaskError(in_use)
                await self.pause(self.ct_secs["rollback"])
                await self.storage_rollback(ct, name)
                keep = {k: x for k, x in ct.config.items() if k == "description" or k.startswith("unused")}
                config = {k: x for k, x in snap.items() if k not in ("snapstate", "snaptime", "description")}
                config.update(keep)
                config["parent"] = name
                ct.config = config
                ct.pending = {}
            finally:
                ct.lock = None
            if v.get("start"):
                # PVE starts it through vm_start, which for an HA-managed CT is an HA request (state started);
                # without that, the HA manager would stop it again if HA wanted it stopped.
                if ct.ha_state not in (None, "ignored"):
                    ct.ha_state = "started"
                await self._start_steps(ct, user)

        return await self._ct_task(ct, "vzrollback", user, body, lock=False)

    # ---------------------------------------------------------------------------------- template and clone

    async def _lxc_template(self, user, v):
        """fakepve's template conversion; the worker first asks every volume's storage for the feature."""
        ct = self._find_ct(v["node"], v["vmid"])
        await self._config_lock(ct)
        try:
            self._ct_check_lock(ct)
            if ct.snapshots:
                raise PveError(500, "unable to create template, because CT contains snapshots")
            if ct.template:
                raise PveError(500, "you can't convert a template to a template")
            if ct.status == "running":
                raise PveError(500, "you can't convert a CT to template if the CT is running")
        finally:
            self.release(ct, "config")

        async def body():
            for _key, mount in ct.volumes():
                if not self._volume_caps(mount["volume"])["template"]:
                    raise TaskError(NO_TEMPLATE.format(volid=mount["volume"]))
            await self.pause(self.ct_secs["template"])
            for key, mount in ct.volumes():
                mount["volume"] = to_base(mount["volume"])
                ct.config[key] = print_mount(mount, key == "rootfs")
            ct.config["template"] = 1

        return await self._ct_task(ct, "vztemplate", user, body, lock=False)

    async def _lxc_clone(self, user, v):
        """A linked clone needs the 'clone' feature of every source volume's storage; fakepve checks the rest."""
        src = self.ct(int(v["vmid"]))
        if src is not None and src.node == v["node"]:
            full = v.get("full")
            if full is None:
                full = not src.template
            source = src.snapshots.get(v["snapname"]) if v.get("snapname") else src.config
            if not full and source is not None:
                for key in sorted(source):
                    if key == "rootfs" or re.fullmatch(r"mp\d+", key):
                        volume = parse_mount(source[key]).get("volume", "")
                        if ":" in volume and not self._volume_caps(volume)["linked_clone"]:
                            raise PveError(500, NO_LINKED_CLONE.format(volid=volume))
        return await super()._lxc_clone(user, v)
