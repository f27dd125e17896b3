"""pytest fixture `cloudflare`: the Cloudflare API v4 double served on 127.0.0.1 for one test.

Register with `pytest_plugins = ["tests.cloudflare.plugin"]` in tests/conftest.py. Function-scoped, so every test
starts with no zones and an empty call log: add zones with `cloudflare.add_zone(name)`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from werkzeug.serving import BaseWSGIServer, make_server

from .app import PREFIX, create_app
from .state import CloudflareState, Zone

HOST = "127.0.0.1"
STOP_TIMEOUT = 10.0
POLL_INTERVAL = 0.05  # how often serve_forever looks for shutdown(): bounds the teardown


class ServedCloudflare:
    """The double, listening: `.url` is the API base (`http://127.0.0.1:PORT/client/v4`), `.token` the API token it
    accepts, `.state` its zones, records and received calls (hold `state.lock` to change them while it serves)."""

    def __init__(self, state: CloudflareState | None = None):
        self.state = state if state is not None else CloudflareState()
        self.server: BaseWSGIServer = make_server(HOST, 0, create_app(self.state), threaded=True)
        self.thread = threading.Thread(
            target=self.server.serve_forever,
            kwargs={"poll_interval": POLL_INTERVAL},
            name="cloudflare-double",
            daemon=True,
        )
        self.thread.start()

    @property
    def port(self) -> int:
        return self.server.server_port

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}{PREFIX}"

    @property
    def token(self) -> str:
        return self.state.token

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def add_zone(self, name: str, *, subdomain_setup: bool = False) -> Zone:
        """A zone in the account (its `.id` is what the API calls zone_id): a registered domain, or with
        `subdomain_setup` (Enterprise) a name under one."""
        return self.state.add_zone(name, subdomain_setup=subdomain_setup)

    def stop(self) -> None:
        """Stop serving and close the socket. Idempotent."""
        if self.thread.is_alive():
            self.server.shutdown()
            self.thread.join(STOP_TIMEOUT)
        self.server.server_close()

    def __enter__(self) -> ServedCloudflare:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@pytest.fixture
def cloudflare() -> Iterator[ServedCloudflare]:
    """A Cloudflare API v4 double for one test (see ServedCloudflare); stopped at teardown whatever the outcome."""
    with ServedCloudflare() as served:
        yield served
