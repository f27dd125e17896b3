"""Serve a ProjectPve over TLS on its own event loop in a daemon thread, so plain (sync) tests and subprocesses
(ansible-playbook) can talk to it while the test reads and changes its model safely through call(). A LabPve
(real containers) is served the same way with time_scale=1; `python -m lab.pve serve` serves one on its main loop.

Like fakepve's pytest_plugin._Serving, but for ProjectPve: 127.0.0.1 and a port the system picks (parallel tests
never collide), time_scale 0 by default, and a stop() that also ends the HA manager and is safe to call twice.

Every node of the model has its own API endpoint (lab.pve.endpoints), as every node of a real cluster runs pveproxy:
each on its own port, with the node's own certificate signed by the cluster's CA (lab.pve.cluster_pki), all serving
the one model. A test stops one (stop_endpoint) to make that node's API a down host and starts it again.
"""

from __future__ import annotations

import asyncio
import inspect
import tempfile
import threading
from collections.abc import Callable
from typing import Any, NamedTuple

from fakepve import settle
from fakepve.certs import make_cert

from .cluster_pki import ClusterPki
from .endpoints import Endpoint
from .fake import ProjectPve

HOST = "127.0.0.1"
TIMEOUT = 30.0


class Pki(NamedTuple):
    """A self-signed server certificate: the PEM files and the DER bytes (the certificate is its own CA). The fake
    serves the cluster's certificates (ClusterPki); one of these is a CA that did not sign them."""

    certfile: str
    keyfile: str
    der: bytes


def make_pki(directory: str) -> Pki:
    """A certificate for localhost and 127.0.0.1 in directory (needs the cryptography package)."""
    return Pki(*make_cert(directory, name="proxmoxwp-fakepve", hosts=(HOST,)))


class ServedPve:
    """A started ProjectPve. `pve` is the model: touch it only through call() while the server runs.

    `endpoints` holds each node's API endpoint by node name; the first node's is the model's own listener
    (host, port, url); `cafile` is the cluster's CA, `fingerprint` the first node's certificate's."""

    def __init__(self, pve: ProjectPve | None = None, pki: ClusterPki | None = None, time_scale: float = 0):
        self.pve = pve if pve is not None else ProjectPve(host=HOST, port=0)
        self.pve.time_scale = time_scale
        self._tmp = None
        if pki is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="proxmoxwp-fakepve-")
            pki = ClusterPki(self._tmp.name)
        self.pki = pki
        self.cafile = pki.cafile
        nodes = sorted(self.pve.nodes)
        first = pki.node(nodes[0])
        self.fingerprint = first.fingerprint
        self.endpoints: dict[str, Endpoint] = {}
        self._stopped = False
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, name=f"project-pve-{id(self.pve)}", daemon=True)
        self.thread.start()
        try:
            self._submit(self.pve.start(first.certfile, first.keyfile))
            self.endpoints[nodes[0]] = Endpoint(nodes[0], self.pve.runner, self.pve.host, self.pve.port, first, False)
            for node in nodes[1:]:
                self.serve_node(node)
        except BaseException:
            self._stopped = True
            self._halt()
            raise

    # --------------------------------------------------------------------------------------------- endpoints

    def serve_node(self, node: str) -> Endpoint:
        """The API endpoint of a node of the model, opened if it has none yet (a node added after the start)."""
        if node not in self.endpoints:
            if not self.call(lambda: node in self.pve.nodes):
                raise KeyError(f"the fake cluster has no node {node}")
            self.endpoints[node] = self._submit(Endpoint.open(node, self.pve, self.pve.host, self.pki.node(node)))
        return self.endpoints[node]

    def stop_endpoint(self, node: str) -> None:
        """The node's API is down: connections to its port are refused, those open to it are dropped. The node
        itself, its guests and its tasks go on (only pveproxy is gone); the other endpoints answer for it."""
        self.call(self.endpoints[node].stop)

    def start_endpoint(self, node: str) -> None:
        """The node's API listens again on its port."""
        self.call(self.endpoints[node].start)

    def fail_node(self, node: str, recovery_delay: float | None = None) -> None:
        """The node fails (lab.pve.failover): its API endpoint goes down with it, the cluster sees it offline, and
        the HA manager recovers its HA guests on another node after recovery_delay real seconds (default: the
        model's ha_recovery_delay)."""
        if recovery_delay is not None:
            self.call(setattr, self.pve, "ha_recovery_delay", recovery_delay)
        self.call(self.pve.fail_node, node)
        if node in self.endpoints:
            self.stop_endpoint(node)

    def restore_node(self, node: str) -> None:
        """The failed node is back: online for the cluster, its API endpoint listening again."""
        self.call(self.pve.restore_node, node)
        if node in self.endpoints:
            self.start_endpoint(node)

    def pve_api_hosts(self, nodes: list[str] | None = None, pin: bool = False) -> dict:
        """Connection settings with `hosts`: the endpoints of nodes (default: every node, in name order), trusted
        through the cluster's CA, or each by its own fingerprint with pin=True."""
        hosts = []
        for node in nodes or sorted(self.endpoints):
            endpoint = self.endpoints[node]
            entry = {"host": endpoint.host, "port": endpoint.port}
            if pin:
                entry["fingerprint"] = endpoint.fingerprint
            hosts.append(entry)
        api = self.pve_api()
        del api["host"], api["port"]
        return dict(api, hosts=hosts, ca_file=None if pin else self.cafile)

    # ------------------------------------------------------------------------------------------------ info

    @property
    def host(self) -> str:
        return self.pve.host

    @property
    def port(self) -> int:
        return self.pve.port

    @property
    def url(self) -> str:
        """https://127.0.0.1:<port>"""
        return self.pve.url

    def pve_api(self) -> dict:
        """The connection settings the project's Ansible modules take (the `pve_api` fixture)."""
        return {
            "host": self.host,
            "port": self.port,
            "token_id": self.pve.token_id,
            "token_secret": self.pve.token_secret,
            "validate_certs": True,
            "ca_file": self.cafile,
            "fingerprint": None,
            "timeout": 10,
        }

    # ------------------------------------------------------------------------------------------ the loop

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run fn(*args) on the fake's loop and return its result (awaited if it is a coroutine); its exception is
        raised here. The way for a test thread to read or change the model without racing the server."""

        async def run():
            result = fn(*args)
            return await result if inspect.isawaitable(result) else result

        if self._stopped:
            raise RuntimeError("the fake PVE is stopped")
        return self._submit(run())

    def _submit(self, coro) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(TIMEOUT)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def _halt(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(TIMEOUT)
        if not self.thread.is_alive():
            self.loop.close()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def stop(self) -> None:
        """Stop the HA manager, the server, the loop and the thread. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        try:
            self._submit(settle())
            for endpoint in self.endpoints.values():
                self._submit(endpoint.close())
            self._submit(self.pve.stop())
        finally:
            self._halt()

    def __enter__(self) -> ServedPve:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
