"""Fault injection in the shapes the project's modules must survive, each documented by what the client sees.

fail_http and node_offline are thin wrappers of fakepve's fail() and set_node_offline(). fakepve has no
per-path "task fails with my message" (fail(error=...) only knows the catalogue's messages) and no per-path hang
(flaky_network hangs a random share of all requests), so those two are implemented here, in front of fakepve's
own request handling (FakePve._answer runs after authentication and recording, so like fakepve's own failures
they only hit authenticated requests).

A path_suffix is matched as fakepve's fail() matches it: the end of the request path
('/nodes/pve1/lxc/100/status/start'), or a schema template ('/nodes/{node}/lxc/{vmid}/status/start').
"""

from __future__ import annotations

import asyncio
import contextlib

from fakepve.server import API, error, ok


class Faults:
    """Mixin of ProjectPve: fail_task, fail_http, hang, node_offline."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # (method, path_suffix) -> {'message' or 'secs', 'times'}
        self.task_failures: dict[tuple[str, str], dict] = {}
        self.hangs: dict[tuple[str, str], dict] = {}
        self._closing: asyncio.Event | None = None

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

    def node_offline(self, node: str, offline: bool = True) -> None:
        """fakepve's set_node_offline: every request with the node in its path answers HTTP 595 'No route to host'
        (reason phrase and message); /nodes lists it 'offline' and /cluster/resources shows its guests' status as
        'unknown'; the HA manager leaves its guests alone. offline=False brings it back."""
        self.set_node_offline(node, offline)

    # ------------------------------------------------------------------------------------------- plumbing

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
