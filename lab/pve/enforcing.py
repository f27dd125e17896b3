"""LabPve's firewall, enforced: after every change of a guest's firewall config, the datacenter's options, a
container's config (net0), its start or its destroy, the guests' rules are applied to the lab's bridge with nftables
(lab.pve.netfilter), before the API answers the change (a start: before its task ends)."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import subprocess
import threading

from lab.pve import netfilter

log = logging.getLogger("lab.pve")


class EnforcedFirewall:
    """Mixin of LabPve (before ProjectPve): needs self.guests (its bridge), self._real and the fake's firewall."""

    _fw_lock = threading.Lock()
    _fw_tasks: set = set()

    async def answer(self, request, match, params, user, call=None):
        result = await super().answer(request, match, params, user, call)
        # A guest's firewall, the datacenter's, or its config (net0's firewall flag, its address).
        changes = ("/firewall", "/lxc/{vmid}/config")
        if request.method != "GET" and match is not None and any(part in match.template for part in changes):
            await self.enforce_firewall()
        return result

    async def _start_steps(self, ct, user, skiplock=False):
        await super()._start_steps(ct, user, skiplock)
        await self.enforce_firewall()  # its veth is new: the IP filter names it

    def _drop(self, ct):
        super()._drop(ct)
        with contextlib.suppress(RuntimeError):  # no loop: the model is used without its server
            task = asyncio.get_running_loop().create_task(self.enforce_firewall(), name=f"lab-firewall-{ct.vmid}")
            self._fw_tasks.add(task)  # held until done: the loop keeps only a weak reference
            task.add_done_callback(self._fw_tasks.discard)

    async def stop(self):
        await super().stop()
        await asyncio.get_running_loop().run_in_executor(None, netfilter.remove_tables, self.guests.bridge)

    async def enforce_firewall(self) -> None:
        """Apply the guests' rules as they are now (read here, on the event loop; nft runs in a worker thread)."""
        datacenter = dict(self.firewall_config("cluster")["options"])
        wanted = []
        for ct in list(self.cts):
            rules = netfilter.guest_rules(
                ct.vmid, dict(ct.config), copy.deepcopy(self.guest_firewall(ct.vmid)), datacenter
            )
            if rules is not None:
                wanted.append((rules, ct.pid if ct.status == "running" else None))
        await asyncio.get_running_loop().run_in_executor(None, self._apply_firewall, wanted)

    def _apply_firewall(self, wanted) -> None:
        with self._fw_lock:
            guests = []
            for rules, pid in wanted:
                rules.port = netfilter.veth_of(pid)
                guests.append(rules)
            try:
                netfilter.apply(self.guests.bridge, guests)
            except (OSError, subprocess.CalledProcessError) as exc:
                # As on PVE, where pve-firewall compiles the rules apart from the guests' tasks: the request or the
                # start goes on, and the log says why the rules are not in place.
                log.error(
                    "applying the guests' firewall on %s failed: %s", self.guests.bridge, getattr(exc, "stderr", exc)
                )
