"""Serve the NPM double: `python -m lab.npm --host 127.0.0.1 --port 8181 --identity ... --secret ...`.

For the lab and for trying a client by hand; tests use the `npm` fixture (tests/npm.py) instead.
"""

from __future__ import annotations

import argparse
import sys
from datetime import timedelta
from pathlib import Path

from werkzeug.serving import make_server

from lab.npm.app import create_app
from lab.npm.schema import SCHEMA_ENV, NpmSchema, default_schema_path
from lab.npm.state import NpmState


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.npm", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8181, help="0 picks a free port (printed on start)")
    parser.add_argument("--identity", default="admin@example.com", help="the admin's email (POST /api/tokens)")
    parser.add_argument("--secret", default="changeme", help="the admin's password")
    parser.add_argument(
        "--schema",
        type=Path,
        default=None,
        help=f"NPM's OpenAPI document (default ${SCHEMA_ENV} or {default_schema_path()})",
    )
    parser.add_argument("--token-lifetime", type=float, default=86400.0, help="seconds a token is valid (NPM: 1 day)")
    args = parser.parse_args(argv)

    state = NpmState(args.identity, args.secret, token_lifetime=timedelta(seconds=args.token_lifetime))
    schema = NpmSchema.load(args.schema)
    server = make_server(args.host, args.port, create_app(state, schema), threaded=True)
    print(f"NPM double on http://{args.host}:{server.server_port}{schema.api_prefix}", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
