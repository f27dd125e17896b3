"""pytest fixture `npm`: the Nginx Proxy Manager double (lab/npm) served over real HTTP for one test.

Register with `pytest_plugins = ["tests.npm"]` in tests/conftest.py. The fixture yields a ServedNpm: `.url` is
the API's base URL (`http://127.0.0.1:<port>/api`), `.identity`/`.secret` log in as the admin, `.state` is the
NpmState for assertions and fault hooks (`fail_certificates`, `fail_nginx`, `expire_tokens`, `add_user`, ...).
`serve_npm(state)` serves a state built by the test itself (another clock, token lifetime or identity).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
import requests
from werkzeug.serving import WSGIRequestHandler, make_server

from lab.npm import NpmSchema, NpmState, create_app

HOST = "127.0.0.1"
IDENTITY = "admin@example.com"
SECRET = "npm-double-secret"


class _QuietHandler(WSGIRequestHandler):
    """No access log line per request in the test output."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


@dataclass(frozen=True)
class ServedNpm:
    url: str
    identity: str
    secret: str
    state: NpmState

    def token(self, identity: str | None = None, secret: str | None = None) -> str:
        """Log in through the API (as the admin by default) and return the bearer token."""
        response = requests.post(
            f"{self.url}/tokens",
            json={"identity": identity or self.identity, "secret": secret or self.secret},
            timeout=10,
        )
        response.raise_for_status()
        return response.json()["token"]


@contextmanager
def serve_npm(state: NpmState, identity: str = IDENTITY, secret: str = SECRET) -> Iterator[ServedNpm]:
    """Serve `state` on a free port of 127.0.0.1 in a thread (one thread per request) until the block ends.

    `identity`/`secret` are only reported back: they must be the ones `state` was made with.
    """
    schema = NpmSchema.load()
    server = make_server(HOST, 0, create_app(state, schema), threaded=True, request_handler=_QuietHandler)
    # shutdown() waits for the loop's next poll: poll often so that teardown is quick
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), name="npm-double", daemon=True)
    thread.start()
    try:
        yield ServedNpm(f"http://{HOST}:{server.server_port}{schema.api_prefix}", identity, secret, state)
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()


@pytest.fixture
def npm() -> Iterator[ServedNpm]:
    """A fresh NPM double per test, with one admin user (IDENTITY/SECRET)."""
    with serve_npm(NpmState(IDENTITY, SECRET)) as served:
        yield served
