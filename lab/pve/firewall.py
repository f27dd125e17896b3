"""The guest firewall's life with its guest, as pve-container keeps it: a container's firewall config
(/etc/pve/firewall/<vmid>.fw: its options, rules, aliases and IP sets) goes when the container is destroyed
(API2/LXC.pm destroy_vm calls PVE::Firewall::remove_vmfw_conf), so a new guest with the same vmid starts with none.

fakepve keeps the firewall API itself (fakepve.firewall: options, rules, IP sets with PVE's checks and texts; its
permissions are the reference's, checked in ProjectPve.answer) but keeps a guest's config by vmid for ever.
"""

from __future__ import annotations


class GuestFirewall:
    """Mixin of ProjectPve: the guest firewall config removed with its container."""

    def _drop(self, ct):
        super()._drop(ct)
        # fakepve marks a container being destroyed so; the other drops undo a create or clone that failed, for
        # which PVE writes no firewall file.
        if getattr(ct, "lock", None) == "destroyed":
            self._fw()["guests"].pop(int(ct.vmid), None)

    def guest_firewall(self, vmid: int) -> dict | None:
        """The firewall config PVE keeps for the guest (options, rules, ipset, ...), or None when it has none."""
        return self._fw()["guests"].get(int(vmid))

    def set_datacenter_firewall(self, enable: bool) -> None:
        """Datacenter > Firewall > Options > Firewall, as root sets it (`pvesh set /cluster/firewall/options
        --enable 1`); PVE's default is off."""
        self.firewall_config("cluster")["options"]["enable"] = 1 if enable else 0
