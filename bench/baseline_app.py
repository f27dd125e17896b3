"""The benchmark's baseline: a minimal Flask app (one JSON endpoint, no database, no token).

Run as `python bench/baseline_app.py --bind HOST:PORT --workers N --threads M`: it replaces the API's
application factory with this app and then runs `proxmoxwp serve` itself, so that the baseline goes through
exactly the same gunicorn set-up (worker class, workers, threads, access log, timeouts) as the API, even if
that set-up changes. It needs the same PROXMOXWP_* environment as `proxmoxwp serve` (serve checks it).
"""

from __future__ import annotations

import sys

from flask import Flask, jsonify


def create_baseline_app(*_args: object, **_kwargs: object) -> Flask:
    app = Flask("baseline")

    @app.get("/ping")
    def ping():
        return jsonify({"success": True, "status": "ok"})

    return app


def main() -> None:
    import api
    from api.cli import main as cli

    # `serve` imports create_app from the package when it starts, so it picks up this one.
    api.create_app = create_baseline_app
    cli(["serve", *sys.argv[1:]], prog_name="proxmoxwp")


if __name__ == "__main__":
    main()
