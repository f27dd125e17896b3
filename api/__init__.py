"""ProxmoxWP's control plane: the API that Paymenter calls, its database and its job engine."""

from __future__ import annotations

import logging

from flask import Flask

from api.config import DEFAULT_THREADS, Settings, load_settings
from api.errors import register_error_handlers
from api.json_provider import OrjsonProvider
from api.lifecycle import Lifecycle
from api.read_gate import ReadGate
from api.runtime import Runtime
from api.waiting import Places


class Extension:
    """What the views reach through `current_app.extensions["proxmoxwp"]`."""

    def __init__(self, runtime: Runtime, threads: int) -> None:
        self.runtime = runtime
        self.settings = runtime.settings
        self.inventory = runtime.inventory
        self.tokens = runtime.tokens
        self.lifecycle = Lifecycle(runtime)
        self.waiters = Places(runtime.settings.waiter_limit(threads))


def create_app(settings: Settings | None = None, *, check: bool = True, threads: int = DEFAULT_THREADS) -> Flask:
    """The application factory: settings from the environment unless given; `threads` is the number of threads
    of the process that serves it (the waiting requests are a part of them)."""
    from api.routes import actions, jobs, meta, sites

    runtime = Runtime(settings or load_settings())
    if check:
        runtime.check(need_tokens=True)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = 64 * 1024
    app.json = OrjsonProvider(app)
    app.json.sort_keys = False
    app.extensions["proxmoxwp"] = Extension(runtime, threads)
    register_error_handlers(app)
    for blueprint in (meta.bp, sites.bp, actions.bp, jobs.bp):
        app.register_blueprint(blueprint)
    if runtime.db.is_sqlite:
        app.wsgi_app = ReadGate(app.wsgi_app)  # type: ignore[method-assign]
    logging.getLogger("api").setLevel(logging.INFO)
    return app
