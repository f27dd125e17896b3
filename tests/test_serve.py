"""How `proxmoxwp serve` runs the API: a socket per gunicorn worker (api/listen.py), after making sure no other
process listens on the address, which SO_REUSEPORT alone would let it share; and each worker's objects from its start
left out of the garbage collector's full passes.

That connections kept open are spread over the workers is measured by bench/api_load.py (bench/README.md): a test
that opens connections one by one saw them spread over the workers with one shared socket too."""

from __future__ import annotations

import gc
import socket
import subprocess

from conftest import BIN, wait_until

from api.cli import _served_app


def test_serve_refuses_an_address_another_process_listens_on(runtime, process_env):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        started = subprocess.run(
            [str(BIN / "proxmoxwp"), "serve", "--bind", f"127.0.0.1:{port}", "--workers", "2"],
            env=process_env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert started.returncode == 1, started.stderr
    refused = f"cannot listen on 127.0.0.1:{port}: 127.0.0.1:{port} is in use by another process"
    assert started.stderr.strip() == f"Error: {refused}"


def test_serve_listens_with_a_socket_per_worker(start_server):
    base = start_server("--workers", "2")  # answers once one worker is up; the other may still be starting
    port = int(base.rsplit(":", 1)[1])

    def listening() -> list[str]:
        return subprocess.run(
            ["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True, timeout=30, check=True
        ).stdout.splitlines()

    # one socket for each worker (the master holds none); with one shared socket there is only ever one
    wait_until(lambda: len(listening()) == 2, 60, what="a listening socket for each of the two workers")


def test_a_workers_objects_from_its_start_are_left_out_of_full_collections(app):
    before = gc.get_freeze_count()
    try:
        assert _served_app(app) is app
        assert gc.get_freeze_count() > before + 10_000  # the app, its inventory and every module imported
    finally:
        gc.unfreeze()
