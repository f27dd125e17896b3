"""One node's API endpoint of the fake cluster: a TLS listener with the node's own certificate, serving the cluster's
one model, as pveproxy on every node of a real cluster serves the whole API.

A test stops an endpoint to make that node's API a down host: it stops listening (a new connection is refused) and
drops the connections open to it (a client's kept-alive connection breaks, as when the node goes away); start()
listens again on the same port. Everything runs on the model's event loop (lab.pve.serving.ServedPve).
"""

from __future__ import annotations

import ssl

from aiohttp import web

from .cluster_pki import NodeCert


class Endpoint:
    """The API of `node` at host:port. The first node's endpoint is the model's own listener (its runner, which the
    model's start() made and its stop() ends); another node's has a runner of its own on the same routes."""

    def __init__(self, node: str, runner: web.AppRunner, host: str, port: int, cert: NodeCert, own: bool):
        self.node = node
        self.host = host
        self.port = port
        self.cert = cert
        self._runner = runner
        self._own = own

    @classmethod
    async def open(cls, node: str, model, host: str, cert: NodeCert) -> Endpoint:
        """A new endpoint for node on a port the system picks, serving model's routes."""
        runner = web.AppRunner(model._build_app())  # fakepve builds its routes there, bound to the model
        await runner.setup()
        endpoint = cls(node, runner, host, 0, cert, own=True)
        await endpoint.start()
        endpoint.port = runner.addresses[0][1]
        return endpoint

    @property
    def fingerprint(self) -> str:
        """The SHA-256 fingerprint of this node's certificate, 64 lower-case hex digits."""
        return self.cert.fingerprint

    @property
    def listening(self) -> bool:
        return bool(self._runner.sites)

    async def start(self) -> None:
        """Listen (again) on the endpoint's port; nothing when it listens already."""
        if self.listening:
            return
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(self.cert.certfile, self.cert.keyfile)
        await web.TCPSite(self._runner, self.host, self.port, ssl_context=tls).start()

    async def stop(self) -> None:
        """Stop listening and drop the open connections: the node's API is down."""
        for site in list(self._runner.sites):
            await site.stop()
        server = self._runner.server
        for handler in server.connections if server is not None else ():
            handler.force_close()

    async def close(self) -> None:
        """At the end: an endpoint with its own runner frees it (the model's stop() frees the first one's)."""
        if self._own:
            await self._runner.cleanup()
        else:
            await self.stop()
