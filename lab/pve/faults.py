"""Fault injection in the shapes the project's modules must survive, each documented by what the client sees.

fail_http and node_offline are thin wrappers of fakepve's fail() and set_node_offline(). fakepve has no
per-path "task fails with my message" (fail(error=...) only knows the catalogue's messages) and no per-path hang
(flaky_network hangs a random share of all requests), so those two are implemented here, in front of fakepve's
own request handling (FakePve._answer runs after authentication and recording, so like fakepve's own failures
they only hit authenticated requests).

Two faults of container creation are hooked into fakepve's own routes instead: take_ids_after_nextid (the race
between `nextid` and `create` that PVE leaves to its clients) and fail_create_leaving_container (a create task
that fails after the container was made, as when its cleanup fails too).

refuse_connections closes the fake's listening socket for a while and opens it again on the same port, as while
pveproxy restarts: no request reaches the fake, so none is recorded.

A path_suffix is matched as fakepve's fail() matches it: the end of the request path
('/nodes/pve1/lxc/100/status/start'), or a schema template ('/nodes/{node}/lxc/{vmid}/status/start').
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import ssl

from aiohttp import web
from fakepve.model import TaskError
from fakepve.server import API, error, ok

# The hostname parameter of the container create being handled (None outside one); per request, because the
# requests of the fake run concurrently on its loop.
_CREATING: contextvars.ContextVar[tuple[str | None] | None] = contextvars.ContextVar("creating", default=None)


class Faults:
    """Mixin of ProjectPve: fail_task, fail_http, hang, refuse_connections, node_offline, take_ids_after_nextid,
    fail_create_leaving_container; clear_faults."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # (method, path_suffix) -> {'message' or 'secs', 'times'}
        self.task_failures: dict[tuple[str, str], dict] = {}
        self.hangs: dict[tuple[str, str], dict] = {}
        # {'count', 'hostname'} of take_ids_after_nextid, while ids are left to take.
        self.id_takeover: dict | None = None
        # hostname or None (any create) -> {'message', 'times'}
        self.create_failures: dict[str | None, dict] = {}
        self._closing: asyncio.Event | None = None
        self._pem: tuple[str, str] | None = None
        self._reopening: asyncio.Task | None = None

    async def start(self, certfile, keyfile):
        self._pem = (certfile, keyfile)  # to listen again after refuse_connections
        await super().start(certfile, keyfile)

    async def stop(self):
        if self._reopening is not None:
            self._reopening.cancel()
        await super().stop()

    def fail_task(self, method: str, path_suffix: str, message: str, times: int | None = 1) -> None:
        """The next `times` matching requests (None: all) answer 200 with a fresh UPID and do nothing else; the task
        ends at once with status 'stopped', exitstatus == message, and its log ends with 'TASK ERROR: <message>'.
        Meant for methods that answer with a UPID. A request for an offline node still gets 595 first."""
        self.task_failures[(method.upper(), path_suffix)] = {"message": message, "times": times}

    def fail_http(
        self, method: str, path_suffix: str, status: int = 500, message: str = "internal error", times: int | None = 1
    ) -> None:
        """The next `times` matching requests (None: all) get HTTP `status` with the first line of `message` as the
        reason phrase (PVE's way) and the JSON body {"data": null, "message": "<message>\\n"}; nothing is done.
        fakepve's fail(): one rule per (method, path_suffix), a new one replaces it."""
        self.fail(method.upper(), path_suffix, status, message, times=times)

    def hang(self, method: str, path_suffix: str, secs: float, times: int | None = 1) -> None:
        """The next `times` matching requests (None: all) get no answer for `secs` real seconds, so a client with a
        shorter timeout sees a read timeout. Afterwards the request is carried out as usual: the action happens
        although the client gave up, as on a real overloaded node. Stopping the fake ends the wait early."""
        self.hangs[(method.upper(), path_suffix)] = {"secs": secs, "times": times}

    async def refuse_connections(self, secs: float) -> None:
        """Stop listening at once, and listen again on the same port after `secs` real seconds: meanwhile a client's
        connection is refused (nothing reaches the API, nothing is recorded), as while pveproxy restarts.
        Connections already open stay open. Call it through ServedPve.call, which waits until it stopped listening."""
        for site in list(self.runner.sites):
            await site.stop()

        async def reopen() -> None:
            await asyncio.sleep(secs)
            tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            tls.load_cert_chain(*self._pem)
            await web.TCPSite(self.runner, self.host, self.port, ssl_context=tls).start()

        self._reopening = asyncio.get_running_loop().create_task(reopen())

    def clear_faults(self) -> None:
        """Drop every fault rule not used up yet (fail_task, fail_http, hang, take_ids_after_nextid,
        fail_create_leaving_container) and bring every node online. Requests hanging already go on hanging."""
        for rules in (self.failures, self.task_failures, self.hangs, self.create_failures):
            rules.clear()
        self.id_takeover = None
        for node in self.nodes:
            self.set_node_offline(node, False)

    def node_offline(self, node: str, offline: bool = True) -> None:
        """fakepve's set_node_offline: every request with the node in its path answers HTTP 595 'No route to host'
        (reason phrase and message); /nodes lists it 'offline' and /cluster/resources shows its guests' status as
        'unknown'; the HA manager leaves its guests alone. offline=False brings it back."""
        self.set_node_offline(node, offline)

    def take_ids_after_nextid(self, count: int, hostname: str = "somebody-else") -> None:
        """The next `count` GET /cluster/nextid that ask for a free id (no vmid parameter) answer it as usual, and
        right after, another client takes it: a stopped container with that id and `hostname` (fakepve's add_ct
        defaults otherwise: local-lvm rootfs, 512 MiB) appears on the first node. A create with that id is then
        refused before any task with HTTP 500 "CT <id> already exists on node 'pve1'" (reason phrase and message),
        and the next nextid answers the next free id. A nextid with a vmid (the "is this id free" check) is
        answered as usual and does not count. A new call replaces the count left."""
        self.id_takeover = {"count": count, "hostname": hostname} if count > 0 else None

    def fail_create_leaving_container(self, message: str, times: int | None = 1, hostname: str | None = None) -> None:
        """The next `times` (None: all) container creates (POST /nodes/{node}/lxc without restore; with `hostname`,
        only those whose hostname parameter is that) are checked and run as usual: the request answers 200 with a
        UPID, and the task makes the container, its volumes and config (and starts it if start=1). Then the task
        ends with status 'stopped', exitstatus == message and a log ending '<message>', 'TASK ERROR: <message>';
        the container stays behind, unlocked, as after a failed create whose cleanup failed too. A create refused
        before its task (id taken, bad parameter) or failing in its task on its own (a missing template) does not
        count. One rule per hostname (None: any), a new one replaces it; a hostname rule goes before the any-rule."""
        self.create_failures[hostname] = {"message": message, "times": times}

    # ------------------------------------------------------------------------------------------- plumbing

    async def _nextid(self, v, user):
        vmid = await super()._nextid(v, user)
        takeover = self.id_takeover
        if takeover is not None and v.get("vmid") in (None, ""):
            takeover["count"] -= 1
            if takeover["count"] <= 0:
                self.id_takeover = None
            self.add_ct(int(vmid), name=takeover["hostname"], node=sorted(self.nodes)[0])
        return vmid

    async def _lxc_create(self, user, v):
        token = _CREATING.set((v.get("hostname"),))
        try:
            return await super()._lxc_create(user, v)
        finally:
            _CREATING.reset(token)

    async def task(self, node, ttype, tid, user, body, *args, **kwargs):
        creating = _CREATING.get()
        if ttype == "vzcreate" and creating is not None and self.create_failures:
            hostname = creating[0]
            inner = body

            async def body():
                # The rule is taken once the create itself has succeeded, so a create that fails on its own,
                # or a concurrent one that already took the last use, leaves it alone.
                note = await inner()
                rule = self._take_create_failure(hostname)
                if rule is None:
                    return note
                raise TaskError(rule["message"])

        return await super().task(node, ttype, tid, user, body, *args, **kwargs)

    def _take_create_failure(self, hostname: str | None) -> dict | None:
        for key in (hostname, None) if hostname is not None else (None,):
            rule = self.create_failures.get(key)
            if rule is None:
                continue
            if rule["times"] is not None:
                rule["times"] -= 1
                if rule["times"] <= 0:
                    del self.create_failures[key]
            return rule
        return None

    def _take_rule(self, rules: dict, request, generic) -> dict | None:
        for key, rule in list(rules.items()):
            if request.method != key[0] or not self._failure_matches(request, generic, key[1]):
                continue
            if rule["times"] is not None:
                rule["times"] -= 1
                if rule["times"] <= 0:
                    del rules[key]
            return rule
        return None

    async def _answer(self, request, handler, generic, path_node):
        hang = self._take_rule(self.hangs, request, generic)
        if hang:
            self._closing = self._closing or asyncio.Event()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), hang["secs"])
        rule = self._take_rule(self.task_failures, request, generic)
        if rule is None:
            return await super()._answer(request, handler, generic, path_node)
        if path_node in self.nodes and not self.nodes[path_node].get("online", True):
            return error(595, "No route to host")
        match = generic or self.resolve(request, API)
        return ok(await self._failed_task(request, path_node, rule["message"], match))

    def _release_hangs(self) -> None:
        """Wake every hanging request (at stop, so the server shuts down without waiting for them)."""
        if self._closing is not None:
            self._closing.set()
