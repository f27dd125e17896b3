"""LabPve: the project's Proxmox VE API (ProjectPve) whose containers are real LXC containers on this machine.

The API is fakepve's and ProjectPve's, unchanged: the same routes, checks, errors, locks, tasks and HA manager. The
real work is hooked in where the model changes the state of a container, inside the task that changes it, so a
task ends (OK or with an error) only when the real work is done, and a real failure fails the task with its reason
as the exit status and a task-log line, leaving the model as PVE would leave the cluster:

- create: the container is made from the template (lab.pve.images) before the model records it; a failure drops it;
- start (direct, HA's, after create, rollback or reboot): the LXC config is written from the model's config, as PVE
  does at every start, and the container boots; shutdown and stop (hard) likewise; reboot is both;
- snapshot, rollback and snapshot delete: copies of the container's writable layer (lab.snapshots);
- full clone (also from a snapshot): a new container with a copy of that layer; destroy: container and snapshots;
- a config change of a running container's memory, swap or cores is applied to its cgroup at once;
- resize grows a real root disk (a small one: lab.pve.guests) after fakepve's checks (no shrinking, PVE's words);
- a template uploaded to `local` (lab.pve.uploads) goes into the templates directory, so containers are made from it.

Real work runs in a thread pool, never on the event loop. Containers are `<prefix><vmid>` (lab.pve.guests). A
watcher notices containers that stopped (or started) behind the API's back, as PVE's status does, so the HA
manager restarts a crashed one. What stays in the model only, and why: docs/lab-pve.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import os
import shutil
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from fakepve.lxc import CREATE_ONLY, MOUNT_KEY
from fakepve.model import PveError, TaskError

from api.build_host.errors import BuildHostError
from lab.pve.enforcing import EnforcedFirewall
from lab.pve.fake import ProjectPve
from lab.pve.guests import Guests
from lab.pve.images import STORAGE
from lab.pve.spec import DEFAULT_MEMORY_MB, DEFAULT_SWAP_MB, GuestSpec, guest_spec, limits_of, rootfs_bytes

T = TypeVar("T")
Body = Callable[[], Awaitable[Any]]
log = logging.getLogger("lab.pve")

# (task type, request parameters) of the container request being handled, for the task it starts: the routes whose
# real work wraps fakepve's task body (create, clone, destroy, snapshot delete) set it.
_REQUEST: contextvars.ContextVar[tuple[str, dict] | None] = contextvars.ContextVar("lab_pve_request", default=None)
# The log lines of the task whose body runs (a list inside fakepve's task record).
_TASK_LOG: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("lab_pve_task_log", default=None)


class LabPve(EnforcedFirewall, ProjectPve):
    """A ProjectPve on real containers. Serve it like ProjectPve (lab.pve.serving.ServedPve with time_scale=1, or
    `python -m lab.pve serve`); tasks run in the background, so time_scale must stay above 0 (1: PVE seconds are
    seconds, e.g. the 10 s a request waits for a config lock and the 60 s of a shutdown)."""

    def __init__(
        self, guests: Guests, *, host: str = "127.0.0.1", port: int = 0, reference_path: str | None = None
    ) -> None:
        super().__init__(host=host, port=port, reference_path=reference_path)
        self.guests = guests
        self.time_scale = 1.0
        # Seconds between two looks at which containers really run.
        self.watch_interval = 2.0
        # At stop, seconds that tasks under way get to finish their real work.
        self.drain_timeout = 25.0
        self.workers = 4
        self._executor: ThreadPoolExecutor | None = None
        self._watcher: asyncio.Task | None = None
        # vmid -> monotonic time the model's power state last followed a real change (observations older than that
        # are stale and ignored).
        self._changed: dict[int, float] = {}

    # ------------------------------------------------------------------------------------------ lifecycle

    async def start(self, certfile, keyfile):
        if not self.time_scale > 0:
            raise ValueError("LabPve runs its tasks in the background while containers work: time_scale must be > 0")
        self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="lab-pve")
        await super().start(certfile, keyfile)
        self._watcher = asyncio.get_running_loop().create_task(self._watch(), name="lab-pve-watcher")

    async def stop(self):
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        await super().stop()
        await self._drain()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    async def _drain(self) -> None:
        """Wait (at most drain_timeout) for the tasks under way, so none is cut off in the middle of real work."""
        deadline = time.monotonic() + self.drain_timeout
        while (
            running := [t["upid"] for t in self.tasklog if t["status"] == "running"]
        ) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        if running:
            log.warning("stopping with %d task(s) still running: %s", len(running), ", ".join(running))

    # ------------------------------------------------------------------------------------ running real work

    async def _real(self, what: str, fn: Callable[..., T], *args: Any, failure: str | None = None) -> T:
        """fn(*args) in the thread pool. Its failure becomes the task's: TaskError(failure + reason), where failure
        defaults to "<what> failed: "; success and failure are logged and noted in the task's log."""
        assert self._executor is not None, "LabPve is not started"
        started = time.monotonic()
        try:
            result = await asyncio.get_running_loop().run_in_executor(self._executor, functools.partial(fn, *args))
        except BuildHostError as exc:
            reason = str(exc)
        except Exception as exc:  # a bug or an OSError must end the task too, not leave it running for ever
            log.exception("%s failed", what)
            reason = f"{type(exc).__name__}: {exc}"
        else:
            secs = time.monotonic() - started
            log.info("%s: done in %.1f s", what, secs)
            _note(f"lab: {what}: done in {secs:.1f} s")
            return result
        message = f"{failure if failure is not None else what + ' failed: '}{reason}"
        log.error("%s", message)
        raise TaskError(message)

    def _spec(self, vmid: int, config: dict) -> GuestSpec:
        try:
            return guest_spec(vmid, config)
        except BuildHostError as exc:
            raise TaskError(f"CT {vmid}: {exc}") from exc

    async def task(self, node, ttype, tid, user, body, *args, **kwargs):
        """fakepve's task, with the real work of a create, clone, destroy or snapshot delete wrapped around its body,
        and the task's log reachable from the body (for the lines _real notes)."""
        request = _REQUEST.get()
        if request is not None and request[0] == ttype:
            body = self._wrap(ttype, request[1], body)
        record: list[list[str]] = []
        inner = body

        async def logged():
            token = _TASK_LOG.set(record[0] if record else None)
            try:
                return await inner()
            finally:
                _TASK_LOG.reset(token)

        upid = await super().task(node, ttype, tid, user, logged, *args, **kwargs)
        # time_scale > 0: the body has not run yet (fakepve starts it in the background), so it sees this.
        record.append(self.tasks[upid]["log"])
        return upid

    def _wrap(self, ttype: str, v: dict, body: Body) -> Body:
        wrappers = {
            "vzcreate": self._creating,
            "vzclone": self._cloning,
            "vzdestroy": self._destroying,
            "vzdelsnapshot": self._deleting_snapshot,
            "resize": self._resizing,
        }
        return wrappers[ttype](v, body)

    @staticmethod
    async def _marked(ttype: str, v: dict, handling: Awaitable[Any]) -> Any:
        """Await fakepve's handling of a request with the request marked, so that `task` wraps the real work of its
        task (of type `ttype`) around the task's body."""
        token = _REQUEST.set((ttype, v))
        try:
            return await handling
        finally:
            _REQUEST.reset(token)

    async def _discard(self, vmid: int) -> None:
        """Remove a real container the model does not keep (after a failed create or clone); a failure is logged."""
        with contextlib.suppress(TaskError):
            await self._real(f"removal of the unfinished CT {vmid}", self.guests.destroy, vmid)

    # -------------------------------------------------------------------------------------------- create

    async def _lxc_create(self, user, v):
        if v.get("restore"):
            raise PveError(500, f"unable to restore CT {v.get('vmid')} - the lab cannot restore backups")
        return await self._marked("vzcreate", v, super()._lxc_create(user, v))

    def _creating(self, v: dict, inner: Body) -> Body:
        vmid = int(v["vmid"])
        ostemplate = v["ostemplate"]
        keys = v.get("ssh-public-keys") or None
        # The config fakepve's create will write (its defaults, then the request's settings).
        config = {"hostname": f"CT{vmid}", "memory": DEFAULT_MEMORY_MB, "swap": DEFAULT_SWAP_MB}
        config.update((k, x) for k, x in v.items() if k not in CREATE_ONLY)
        config["unprivileged"] = v.get("unprivileged", 1)  # PVE's default for a new container

        async def body():
            ct = self.ct(vmid)
            if self.volume_exists(ostemplate) is False:
                return await inner()  # fakepve's own refusal of a missing template; nothing real is made
            try:
                try:
                    spec = guest_spec(vmid, config)
                except BuildHostError as exc:
                    raise TaskError(f"unable to create CT {vmid} - {exc}") from exc
                await self._real(
                    f"create of CT {vmid} from {ostemplate}",
                    self.guests.create,
                    vmid,
                    ostemplate,
                    spec,
                    keys,
                    failure=f"unable to create CT {vmid} - ",
                )
            except TaskError:
                if ct is not None and self.ct(vmid) is ct:
                    self._drop(ct)
                raise
            try:
                return await inner()
            finally:
                if self.ct(vmid) is not ct:  # the model's create failed and dropped it: so goes the real one
                    await self._discard(vmid)

        return body

    # --------------------------------------------------------------------------------------------- clone

    async def _lxc_clone(self, user, v):
        return await self._marked("vzclone", v, super()._lxc_clone(user, v))

    def _cloning(self, v: dict, inner: Body) -> Body:
        vmid, newid, snapname = int(v["vmid"]), int(v["newid"]), v.get("snapname")

        async def body():
            src, new = self.ct(vmid), self.ct(newid)
            what = f"full clone of CT {vmid}{f' at {snapname}' if snapname else ''} to CT {newid}"
            try:
                spec = self._spec(newid, new.config)
                await self._real(what, self.guests.clone, vmid, newid, snapname, spec)
            except TaskError:
                self._drop(new)
                if src is not None and src.lock == "disk":
                    src.lock = None
                raise
            try:
                return await inner()
            finally:
                if self.ct(newid) is not new:
                    await self._discard(newid)

        return body

    # ------------------------------------------------------------------------------------------- destroy

    async def _lxc_destroy(self, user, v):
        return await self._marked("vzdestroy", v, super()._lxc_destroy(user, v))

    def _destroying(self, v: dict, inner: Body) -> Body:
        vmid = int(v["vmid"])

        async def body():
            ct = self.ct(vmid)
            # fakepve's body refuses a protected, locked or (without force) running CT: then nothing real happens.
            refused = ct is None or ct.config.get("protection") or ct.lock
            if not refused and not (ct.status == "running" and not v.get("force")):
                await self._real(f"destroy of CT {vmid}", self.guests.destroy, vmid)
                self._power(ct, "stopped")
            return await inner()

        return body

    # ------------------------------------------------------------------------------------------ snapshots

    async def storage_snapshot(self, ct, name: str) -> None:
        await self._real(f"snapshot '{name}' of CT {ct.vmid}", self.guests.snapshot, ct.vmid, name)

    async def storage_rollback(self, ct, name: str) -> None:
        await self._real(f"rollback of CT {ct.vmid} to '{name}'", self.guests.rollback, ct.vmid, name)

    async def _lxc_snapshot_delete(self, user, v):
        return await self._marked("vzdelsnapshot", v, super()._lxc_snapshot_delete(user, v))

    def _deleting_snapshot(self, v: dict, inner: Body) -> Body:
        vmid, name = int(v["vmid"]), v["snapname"]

        async def body():
            note = await inner()  # fakepve's checks and the model first: a refused delete touches nothing
            await self._real(f"delete of snapshot '{name}' of CT {vmid}", self.guests.delete_snapshot, vmid, name)
            return note

        return body

    # --------------------------------------------------------------------------------------------- resize

    async def _lxc_resize(self, user, v):
        return await self._marked("resize", v, super()._lxc_resize(user, v))

    def _resizing(self, v: dict, inner: Body) -> Body:
        vmid, disk = int(v["vmid"]), v["disk"]

        async def body():
            ct = self.ct(vmid)
            before = ct.config.get(disk) if ct is not None else None
            note = await inner()  # fakepve's checks (a smaller size: 'unable to shrink disk size') and the model
            size = rootfs_bytes(ct.config.get(disk)) if ct is not None and disk == "rootfs" else None
            if size is not None:
                try:
                    pid = await self._real(f"resize of CT {vmid}'s {disk}", self.guests.resize, vmid, size)
                except TaskError:
                    ct.config[disk] = before  # the disk did not grow: neither does its size in the config
                    raise
                if pid is not None:
                    _note("lab: this host cannot grow a mounted file system: the CT was restarted to grow it offline")
                    self._power(ct, "running", pid)
            return note

        return body

    # ---------------------------------------------------------------------------------------------- power

    async def _start_steps(self, ct, user, skiplock=False):
        """fakepve's vzstart worker steps, with the real start where the model marks the CT running."""
        if ct.template:
            raise TaskError("you can't start a CT if it's a template")
        if not skiplock:
            self._task_lock(ct, allow=("mounted",))
        await self.ceph_io(ct, [k for k in ct.config if MOUNT_KEY.match(k)])
        await self.pause(ct.start_secs)
        if ct.start_error:
            raise TaskError(ct.start_error)
        self._apply(ct)
        spec = self._spec(ct.vmid, ct.config)
        pid = await self._real(f"startup for container '{ct.vmid}'", self.guests.start, ct.vmid, spec)
        self._power(ct, "running", pid)

    async def _ct_powerdown(self, ct, timeout, force):
        """A clean shutdown: init gets `timeout` seconds, then the container is killed (force) or the task fails."""
        stopped = await self._real(f"shutdown of CT {ct.vmid}", self.guests.shutdown, ct.vmid, timeout, force)
        if not stopped:
            raise TaskError("container did not stop")
        self._power(ct, "stopped")

    async def stop_now(self, ct) -> None:
        await self._real(f"stop of CT {ct.vmid}", self.guests.stop, ct.vmid)
        self._power(ct, "stopped")

    async def _lxc_stop(self, user, v):
        """fakepve's direct stop of a running CT not under HA, killing the real container; the rest is fakepve's."""
        ct = self._here(v)
        if ct is None or ct.status != "running" or ct.ha_managed:
            return await super()._lxc_stop(user, v)
        skiplock = self._skiplock(user, v)

        async def body():
            if v.get("overrule-shutdown"):
                for task in self.tasklog:
                    if task["type"] == "vzshutdown" and task["id"] == str(ct.vmid) and task["status"] == "running":
                        task["overruled"] = True
            if not skiplock:
                self._task_lock(ct, allow=("mounted",))
            await self.stop_now(ct)

        return await self._ct_task(ct, "vzstop", user, body)

    async def _ct_ha(self, ct, user, state, timeout=None):
        """A start or stop of a CT under HA is a request to the HA manager, as in PVE: the task sets the requested
        state and ends, the manager starts or shuts the container down in a task of its own. ('ignored' resources
        are acted on directly: ProjectPve's.)"""
        if ct.ha_state == "ignored":
            return await super()._ct_ha(ct, user, state, timeout)
        verb = "start" if state == "started" else "stop"

        async def body():
            ct.ha_state = state

        log_line = f"Requesting HA {verb} for CT {ct.vmid}"
        return await self._ct_task(ct, "ha" + verb, user, body, lock=False, log=[log_line])

    async def _lxc_suspend(self, user, v):
        ct = self._here(v)
        self._ct_running(ct, f"CT {v['vmid']} not running")

        async def body():
            raise TaskError("suspend is not available in the lab (PVE's uses CRIU checkpoints, which the lab has not)")

        return await self._ct_task(ct, "vzsuspend", user, body)

    def _power(self, ct, status: str, pid: int | None = None) -> None:
        ct.status = status
        ct.pid = pid if status == "running" else None
        if status == "running":
            ct.started_at = time.time()
        self._changed[ct.vmid] = time.monotonic()

    # --------------------------------------------------------------------------------------------- config

    async def _update_config(self, ct, user, values, deletes, reverts):
        """PVE applies memory, swap and cores to a running CT at once: so does the lab, to its cgroup."""
        before = limits_of(ct.config)
        await super()._update_config(ct, user, values, deletes, reverts)
        after = limits_of(ct.config)
        if ct.status == "running" and after != before:
            try:
                await self._real(f"new limits of CT {ct.vmid}", self.guests.set_limits, ct.vmid, after)
            except TaskError as exc:
                raise PveError(500, str(exc)) from exc

    # -------------------------------------------------------------------------------------------- storage

    def keep_upload(self, storage, content, filename, path):
        """An uploaded template on the template storage goes into the templates directory, where containers are
        made from (lab.pve.images); written beside it first, so the directory never holds half an archive."""
        templates = self.guests.images.templates
        if storage != STORAGE or content != "vztmpl" or templates is None:
            return
        partial = templates / f".{filename}.upload"
        shutil.copyfile(path, partial)
        os.replace(partial, templates / filename)

    def _volumes(self, name):
        """The template storage lists the archives of the templates directory too (they are usable ostemplates)."""
        volumes = super()._volumes(name)
        if name == STORAGE:
            for volname, volume in self.guests.images.archives().items():
                volumes.setdefault(volname, volume)
        return volumes

    # ---------------------------------------------------------------------------------- the real state

    async def _lxc_status_current(self, user, v):
        ct = self._here(v)
        if ct is not None:
            seen_at = time.monotonic()
            with contextlib.suppress(TaskError):
                real = await self._real_quietly(self.guests.state, ct.vmid)
                self._reconcile(ct, real, seen_at)
        return await super()._lxc_status_current(user, v)

    async def _real_quietly(self, fn: Callable[..., T], *args: Any) -> T:
        """A look at the real containers (no log line, no task): fn(*args) in the thread pool, TaskError on failure."""
        assert self._executor is not None
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, functools.partial(fn, *args))
        except BuildHostError as exc:
            raise TaskError(str(exc)) from exc

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.watch_interval)
            try:
                seen_at = time.monotonic()
                running = await self._real_quietly(self.guests.running)
                for ct in list(self.cts):
                    if self.guests.exists(ct.vmid):
                        self._reconcile(ct, "running" if ct.vmid in running else "stopped", seen_at)
            except Exception:  # one bad look must not end the watching
                log.exception("looking at the containers failed")

    def _reconcile(self, ct, real: str | None, seen_at: float) -> None:
        """Take the real power state into the model when nothing else is changing it: no task holds the CT, it has
        no lock, and the look is newer than the model's last change (a task's own result always wins)."""
        if real is None or real == ct.status or ct.lock_holder is not None or ct.lock:
            return
        if self._changed.get(ct.vmid, 0.0) > seen_at or self.ct(ct.vmid) is not ct:
            return
        log.warning("CT %s is %s, not %s: it changed outside the API", ct.vmid, real, ct.status)
        self._power(ct, real)


def _note(line: str) -> None:
    """A line in the log of the task whose body runs (nothing outside a task)."""
    lines = _TASK_LOG.get()
    if lines is not None:
        lines.append(line)
