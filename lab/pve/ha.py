"""Stateful HA resources and an HA manager that converges guests to their requested state.

fakepve answers /cluster/ha/resources from the schema only (nothing is stored), but its guests carry `ha_state`
and its container routes already obey it: a start or stop of an HA-managed guest becomes an HA request (which
sets the requested state, as `ha-manager set --state` does), a destroy needs purge=1, and create with
`ha-managed=1` adds the resource. So `guest.ha_state` stays the single source of the *requested* state, and
`ha_resources` holds the rest of each resource's resources.cfg entry (type, comment, max_restart, ... and `state`
only once it was set explicitly, because PVE omits it otherwise). `_ha_sync` reconciles the two after fakepve's
own routes changed `ha_state`.

Wording is pve-ha-manager's (API2/HA/Resources.pm, HA/Config.pm, HA/Resources/PVECT.pm, PVEVM.pm at
b71218f, PVE 9): config writes run under lock_ha_domain, which prefixes "create resource failed: " /
"update resources config failed: " to the errors raised inside it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time

from fakepve.lxc import FakeCt
from fakepve.model import TaskError
from fakepve.routing import DIGEST_CHANGED, die, sha1, split_list

# The options of the ct and vm resource plugins (`type` is the section type, not an option).
OPTIONS = ("state", "group", "comment", "failback", "max_restart", "max_relocate")
DEFAULTS = {"state": "started", "failback": 1, "max_restart": 1, "max_relocate": 1}
HA_USER = "root@pam"
log = logging.getLogger("lab.pve.ha")


def requested(state: str | None) -> str | None:
    """A state as the HA manager reads it: 'enabled' is the old spelling of 'started'."""
    return "started" if state == "enabled" else state


class HaApi:
    """Mixin of ProjectPve: /cluster/ha/resources, /cluster/ha/status/current and the HA manager task."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # sid -> resources.cfg entry (type and the options set; state only if set explicitly)
        self.ha_resources: dict[str, dict] = {}
        # Real seconds between two passes of the HA manager; ha_manager_enabled pauses it.
        self.ha_interval = 0.1
        self.ha_manager_enabled = True
        # Passes of the background loop so far, paused or not: lets a test wait for the manager's chances to act.
        self.ha_ticks = 0
        # sids in the 'error' service state: a start failed more than max_restart times.
        self.ha_errors: set[str] = set()
        self._ha_failures: dict[str, int] = {}
        self._ha_inflight: dict[str, str] = {}
        self._ha_task: asyncio.Task | None = None
        self._ha_pass: asyncio.Lock | None = None

    def _routes_ha(self):
        one = "/cluster/ha/resources/{sid}"
        return [
            ("GET", "/cluster/ha/resources", self._ha_index),
            ("POST", "/cluster/ha/resources", self._ha_create),
            ("GET", one, self._ha_read),
            ("PUT", one, self._ha_update),
            ("DELETE", one, self._ha_delete),
            ("GET", "/cluster/ha/status/current", self._ha_status),
        ]

    # --------------------------------------------------------------------------------------- bookkeeping

    @staticmethod
    def ha_sid(guest) -> str:
        return f"{'ct' if isinstance(guest, FakeCt) else 'vm'}:{guest.vmid}"

    def _ha_guests(self) -> dict:
        """sid -> guest of every guest with a requested HA state."""
        return {self.ha_sid(g): g for g in [*self.vms, *self.cts] if g.ha_state is not None}

    def _ha_sync(self) -> dict:
        """Bring ha_resources in step with the guests' ha_state (see the module docstring); returns _ha_guests()."""
        guests = self._ha_guests()
        for sid in list(self.ha_resources):
            if sid not in guests:  # destroyed with purge=1, or ha_state cleared by a test
                del self.ha_resources[sid]
                self._ha_forget(sid)
        for sid, guest in guests.items():
            entry = self.ha_resources.setdefault(sid, {"type": sid.split(":")[0], "state": guest.ha_state})
            if requested(entry.get("state", "started")) != requested(guest.ha_state):
                entry["state"] = guest.ha_state
        return guests

    def ha_resources_left(self) -> list[str]:
        """The sids configured now, sorted (what a test checks is cleaned up after a failed provisioning)."""
        self._ha_sync()
        return sorted(self.ha_resources)

    def _ha_forget(self, sid: str) -> None:
        self.ha_errors.discard(sid)
        self._ha_failures.pop(sid, None)
        self._ha_inflight.pop(sid, None)

    def _ha_digest(self) -> str:
        return sha1(json.dumps(self.ha_resources, sort_keys=True))

    def _ha_parse_sid(self, text: str) -> tuple[str, str, str]:
        """PVE::HA::Config::parse_sid: (sid, type, name); a bare vmid is looked up among the guests."""
        if re.fullmatch(r"\d+", text):
            guest = self.guest(int(text))
            if guest is None:
                raise die(f"unable to detect SID from VMID - VM/CT {text} does not exist")
            sid = self.ha_sid(guest)
            return sid, sid.split(":")[0], text
        found = re.fullmatch(r"(\S+):(\S+)", text)
        if not found:
            raise die(f"unable to parse service id '{text}'")
        return text, found.group(1), found.group(2)

    def _ha_check_guest(self, kind: str, name: str):
        """The resource plugin's lookup, verify_name and exists: the guest, or PVE's error."""
        if kind not in ("ct", "vm"):
            raise die(f"unknown section type '{kind}'")
        if not re.fullmatch(r"[1-9][0-9]+", name):
            raise die("invalid VMID")
        guest = self.guest(int(name))
        if guest is None:
            raise die(f"resource '{kind}:{name}' does not exist in cluster")
        if (kind == "ct") != isinstance(guest, FakeCt):
            what = "a container" if kind == "ct" else "a VM"
            raise die(f"resource '{kind}:{name}' - guest with ID {name} is not {what}")
        return guest

    def _ha_view(self, sid: str) -> dict:
        entry = self.ha_resources.get(sid)
        if entry is None:
            raise die(f"no such resource '{sid}'")
        return dict(entry, sid=sid, digest=self._ha_digest())

    # -------------------------------------------------------------------------------------------- routes

    async def _ha_index(self, v, user):
        self._ha_sync()
        return [self._ha_view(sid) for sid in sorted(self.ha_resources) if v.get("type") in (None, sid.split(":")[0])]

    async def _ha_read(self, v, user):
        self._ha_sync()
        return self._ha_view(self._ha_parse_sid(v["sid"])[0])

    async def _ha_create(self, v, user):
        self.need_quorum()
        self._ha_sync()
        sid, kind, name = self._ha_parse_sid(v["sid"])
        if v.get("type") and v["type"] != kind:
            raise die("types does not match")
        if v.get("group") is not None:
            raise die("invalid parameter 'group': ha groups have been migrated to rules")
        guest = self._ha_check_guest(kind, name)
        if sid in self.ha_resources:
            raise die(f"create resource failed: resource ID '{sid}' already defined")
        self.ha_resources[sid] = dict({"type": kind}, **{k: v[k] for k in OPTIONS if v.get(k) is not None})
        guest.ha_state = requested(v.get("state")) or "started"
        self._ha_forget(sid)
        return None

    async def _ha_update(self, v, user):
        self.need_quorum()
        self._ha_sync()
        sid, _kind, _name = self._ha_parse_sid(v["sid"])
        if v.get("group"):
            raise die("invalid parameter 'group': ha groups have been migrated to rules")
        if sid in self.ha_errors and v.get("state") != "disabled":
            raise die(f"service '{sid}' in error state, must be disabled and fixed first")
        fail = "update resources config failed: "
        if v.get("digest") and v["digest"] != self._ha_digest():
            raise die(fail + DIGEST_CHANGED)
        entry = self.ha_resources.get(sid)
        if entry is None:
            raise die(f"{fail}no such resource '{sid}'")
        deletes = split_list(v.get("delete"))
        for key in deletes:
            if key not in OPTIONS:
                raise die(f"{fail}no such option '{key}'")
        before = requested(entry.get("state", "started"))
        entry.update((k, v[k]) for k in OPTIONS if v.get(k) is not None)
        for key in deletes:
            entry.pop(key, None)
        state = requested(entry.get("state", "started"))
        self._ha_guest(sid).ha_state = state
        if state != before:
            self._ha_forget(sid)
        return None

    def _ha_guest(self, sid: str):
        return self.guest(int(sid.split(":")[1]))

    async def _ha_delete(self, v, user):
        self.need_quorum()
        self._ha_sync()
        sid = self._ha_parse_sid(v["sid"])[0]
        if sid not in self.ha_resources:
            raise die(f"cannot delete service '{sid}', not HA managed!")
        del self.ha_resources[sid]
        self._ha_forget(sid)
        # The guest stays as it is: removing the resource only ends HA's management.
        self._ha_guest(sid).ha_state = None
        return None

    async def _ha_status(self, v, user):
        """GET /cluster/ha/status/current: quorum, master, one lrm per node, then the services."""
        self._ha_sync()
        first = self.ha_master()
        stamp = time.strftime("%a %b %d %H:%M:%S %Y")
        out = [
            {
                "id": "quorum",
                "type": "quorum",
                "node": first,
                "quorate": 1 if self.quorate else 0,
                "status": "OK" if self.quorate else f"No quorum on node '{first}'!",
            },
            {
                "id": "master",
                "type": "master",
                "node": first,
                "status": f"{first} (active, {stamp})",
                "timestamp": int(time.time()),
            },
        ]
        for node, state in sorted(self.nodes.items()):
            alive = "active, watchdog active" if state.get("online", True) else "old timestamp - dead?"
            if node in self.maintenance and state.get("online", True):
                alive = "maintenance mode"  # API2/HA/Status.pm: "$lrm_mode mode" when the LRM is not active
            out.append({"id": f"lrm:{node}", "type": "lrm", "node": node, "status": f"{node} ({alive}, {stamp})"})
        for sid, entry in sorted(self.ha_resources.items()):
            guest = self._ha_guest(sid)
            crm = self._ha_crm_state(sid, guest)
            options = dict(DEFAULTS, **entry)
            out.append(
                {
                    "id": f"service:{sid}",
                    "type": "service",
                    "sid": sid,
                    "node": guest.node,
                    "crm_state": crm,
                    "state": crm,
                    "request_state": options["state"],
                    "status": f"{sid} ({guest.node}, {crm})",
                    "max_restart": options["max_restart"],
                    "max_relocate": options["max_relocate"],
                    "failback": options["failback"],
                }
            )
        return out

    def ha_master(self) -> str:
        """The node whose CRM is master: the first online node (the first node when none is)."""
        online = [node for node in sorted(self.nodes) if self.nodes[node].get("online", True)]
        return (online or sorted(self.nodes))[0]

    def _ha_crm_state(self, sid: str, guest) -> str:
        want = requested(guest.ha_state)
        if sid in self.ha_errors:
            return "error"
        if want in ("stopped", "disabled") and guest.status == "running":
            return "request_stop"
        return want

    # ---------------------------------------------------------------------------------------- the manager

    async def ha_start_manager(self) -> None:
        """Start the background HA manager on the running loop (ProjectPve.start does this)."""
        self._ha_pass = asyncio.Lock()
        self._ha_task = asyncio.get_running_loop().create_task(self._ha_loop(), name="ha-manager")

    async def ha_stop_manager(self) -> None:
        task, self._ha_task = self._ha_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _ha_loop(self) -> None:
        while True:
            await asyncio.sleep(self.ha_interval)
            try:
                if self.ha_manager_enabled:
                    await self.ha_converge()
            except Exception:  # a bug in one pass must not end the manager for the rest of the test
                log.exception("HA manager pass failed")
            self.ha_ticks += 1

    async def ha_converge(self) -> None:
        """One pass of the HA manager over every HA-managed guest, whether or not the background loop is paused.

        requested started and stopped -> start (pending config applied, new pid); stopped/disabled and running ->
        shut down; ignored -> nothing. Guests whose config is locked (a task holds the lock, or a `lock` such as
        backup, snapshot or rollback is set), whose node is offline, or that are templates are left alone, so the
        manager never fights a running task. A start that fails more than max_restart times puts the service in
        the 'error' state (PUT state=disabled clears it), as the CRM does when it cannot relocate.
        """
        self._ha_pass = self._ha_pass or asyncio.Lock()
        async with self._ha_pass:
            for sid, guest in self._ha_sync().items():
                self._ha_reap(sid)
                want = requested(guest.ha_state)
                if want == "ignored" or sid in self.ha_errors or sid in self._ha_inflight or self._ha_blocked(guest):
                    continue
                if want == "started" and guest.status != "running":
                    self._ha_inflight[sid] = await self._ha_power(guest, True)
                elif want in ("stopped", "disabled") and guest.status == "running":
                    self._ha_inflight[sid] = await self._ha_power(guest, False)
                self._ha_reap(sid)

    def _ha_blocked(self, guest) -> bool:
        online = self.nodes.get(guest.node, {}).get("online", True)
        return guest.lock_holder is not None or bool(guest.lock) or not online or bool(guest.template)

    def _ha_reap(self, sid: str) -> None:
        """Count the outcome of the manager's finished start task for the sid (tasks run later at time_scale > 0)."""
        upid = self._ha_inflight.get(sid)
        task = self.tasks.get(upid) if upid else None
        if task is None or task["status"] != "stopped":
            return
        del self._ha_inflight[sid]
        if task["exitstatus"] == "OK":
            self._ha_failures.pop(sid, None)
            return
        if task["type"] not in ("vzstart", "qmstart"):
            return
        self._ha_failures[sid] = self._ha_failures.get(sid, 0) + 1
        limit = int(self.ha_resources.get(sid, {}).get("max_restart", DEFAULTS["max_restart"]))
        if self._ha_failures[sid] > limit:
            self.ha_errors.add(sid)

    async def _ha_power(self, guest, start: bool) -> str:
        """The LRM's start or shutdown of a guest: a task by root@pam holding the guest's config lock."""
        is_ct = isinstance(guest, FakeCt)

        async def up():
            if is_ct:
                await self._start_steps(guest, HA_USER)
                return
            if guest.start_error:
                raise TaskError(guest.start_error)
            guest.apply_pending()
            guest.status = guest.qmpstatus = "running"
            guest.started_at = time.time()

        async def down():
            if is_ct:
                await self._ct_powerdown(guest, 60, True)  # PVECT::shutdown: 60 s, then it is stopped hard
                return
            await self.pause(guest.shutdown_secs)
            guest.status = guest.qmpstatus = "stopped"

        kind = ("vzstart" if start else "vzshutdown") if is_ct else ("qmstart" if start else "qmshutdown")
        return await self.task(guest.node, kind, guest.vmid, HA_USER, up if start else down, vm=guest)

    def stop_behind_back(self, vmid: int) -> None:
        """The guest stops on its own (a `poweroff` inside it, an OOM kill): HA's requested state is untouched."""
        guest = self.guest(vmid)
        if guest is None:
            raise ValueError(f"no guest {vmid}")
        guest.status = "stopped"
        if isinstance(guest, FakeCt):
            guest.pid = None
        else:
            guest.qmpstatus = "stopped"

    # -------------------------------------------------------------------- fakepve's direct power requests

    async def _ct_ha(self, ct, user, state, timeout=None):
        """fakepve turns a start/stop/shutdown of an HA-managed CT into an HA request. PVE does not for the
        'ignored' state (such resources "behave as if they were not managed by HA"): act on the CT directly."""
        if ct.ha_state != "ignored":
            return await super()._ct_ha(ct, user, state, timeout)
        if state == "started":

            async def start():
                await self._start_steps(ct, user)

            return await self._ct_task(ct, "vzstart", user, start)

        async def stop():
            self._task_lock(ct, allow=("mounted",))
            if timeout is None:
                await self.pause(ct.stop_secs)
                await self.stop_now(ct)
            else:
                await self._ct_powerdown(ct, timeout, False)

        return await self._ct_task(ct, "vzstop" if timeout is None else "vzshutdown", user, stop)
