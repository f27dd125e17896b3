"""The lab's own control of its Proxmox VE cluster, outside the PVE API: fail a node and bring it back.

A real node fails by losing power or its network; nothing in the PVE API does that. The lab's service listens on a
Unix socket in its directory (`control.sock`, only its owner may connect), one JSON request per line, one JSON answer
per line:

    {"command": "fail", "node": "pve2"}     -> {"ok": true, "nodes": {...}}
    {"command": "restore", "node": "pve2"}  -> {"ok": true, "nodes": {...}}
    {"command": "nodes"}                    -> {"ok": true, "nodes": {"pve1": "online", "pve2": "failed"}}
    {"command": "api-stop", "node": "pve1"} -> {"ok": true, "nodes": {...}, "api": {"pve1": "stopped", ...}}
    {"command": "api-start", "node": "pve1"}

A failed node's API endpoint goes down with it and comes back with it; `api-stop` takes only the node's API down
(pveproxy stopped: the node and its guests run on), as a test of the modules' other API hosts needs.

and {"ok": false, "error": "..."} for a request it cannot do. `proxmoxwp lab node fail|restore|list` is the client.
What a failure does is lab.pve.failover's (the HA manager recovers the node's HA guests after its delay).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
from pathlib import Path

from api import unix_socket

SOCKET = "control.sock"
TIMEOUT = 30.0


COMMANDS = ("fail", "restore", "api-stop", "api-start", "nodes")


def node_states(pve) -> dict[str, str]:
    return {node: "failed" if node in pve.failed_nodes else "online" for node in sorted(pve.nodes)}


async def handle(pve, request: dict, endpoints: dict | None = None) -> dict:
    """One request against the model (on its event loop); `endpoints` are the nodes' API endpoints by node."""
    endpoints = endpoints or {}
    command = request.get("command")
    node = request.get("node")
    if command not in COMMANDS:
        return {"ok": False, "error": f"unknown command {command!r}: {', '.join(COMMANDS)}"}
    if command != "nodes" and node not in pve.nodes:
        return {"ok": False, "error": f"no node {node!r}: the lab's nodes are {', '.join(sorted(pve.nodes))}"}
    endpoint = endpoints.get(node)
    if command == "fail":
        await pve.fail_node(node)
    elif command == "restore":
        await pve.restore_node(node)
    if endpoint is not None and command in ("fail", "api-stop"):
        await endpoint.stop()
    elif endpoint is not None and command in ("restore", "api-start"):
        await endpoint.start()
    answer = {"ok": True, "nodes": node_states(pve), "ha_recovery_delay": pve.ha_recovery_delay}
    if endpoints:
        answer["api"] = {name: "listening" if e.listening else "stopped" for name, e in sorted(endpoints.items())}
    return answer


async def serve(pve, directory: Path, endpoints: dict | None = None) -> asyncio.AbstractServer:
    """Listen on directory/control.sock for the model `pve` and its nodes' `endpoints`; the caller closes the
    server."""
    path = directory / SOCKET
    path.unlink(missing_ok=True)

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            try:
                request = json.loads(line)
                answer = await handle(pve, request if isinstance(request, dict) else {}, endpoints)
            except ValueError:
                answer = {"ok": False, "error": "a request is one JSON object on one line"}
            except Exception as exc:  # a real container that would not die: say so rather than hang up
                answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            writer.write(json.dumps(answer).encode() + b"\n")
            await writer.drain()
        finally:
            writer.close()

    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)  # the socket is its owner's only from the start
    try:
        unix_socket.bind(listener, path)  # the lab's directory may be deeper than a socket address
    except OSError:
        listener.close()
        raise
    finally:
        os.umask(old)
    return await asyncio.start_unix_server(client, sock=listener)


def send(directory: Path, request: dict) -> dict:
    """The client: one request to the lab's service whose directory is `directory`; OSError when none listens."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(TIMEOUT)
        unix_socket.connect(conn, directory / SOCKET)
        conn.sendall(json.dumps(request).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
    return json.loads(data)
