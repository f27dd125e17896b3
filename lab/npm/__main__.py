"""Serve the NPM double: `python -m lab.npm [serve] --host 127.0.0.1 --port 8181 --identity ... --secret ...`.

`--dir DIR` makes it the lab's NPM (docs/lab-proxy.md): its state is kept in DIR/state.json across restarts, the
admin's secret is `--secret` or else DIR/secret (made once, 0600), and DIR/npm.json says how to reach it (`url`,
`identity`, `secret_file`, and with nginx `http`/`https`) while it runs. `--nginx-dir NDIR` adds the proxy: the
enabled proxy hosts are served by a real nginx of its own (prefix, config, pid, logs and self-signed certificates
in NDIR) on `--listen` ports `--http-port`/`--https-port`; without `--dir`, NDIR holds the files above too.
SIGTERM stops nginx, then the API.

For the lab and for trying a client by hand; tests use the `npm` fixture (tests/npm.py) instead.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import os
import secrets
import signal
import sys
import threading
from datetime import timedelta
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from werkzeug.serving import make_server

from lab.npm.app import create_app
from lab.npm.files import write_atomic
from lab.npm.nginx import Layout
from lab.npm.nginx_process import NGINX
from lab.npm.schema import SCHEMA_ENV, NpmSchema, default_schema_path
from lab.npm.state import NpmState

if TYPE_CHECKING:
    from lab.npm.proxy import LabProxy

DEFAULT_SECRET = "changeme"  # noqa: S105 - the plain double's, as before; the lab's NPM makes one at random
INFO_FILE = "npm.json"
SECRET_FILE = "secret"  # noqa: S105 - a file name
STATE_FILE = "state.json"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["serve"]:
        argv = argv[1:]
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.dir is None and args.nginx_dir is None:
        return _serve_plain(args)
    return _serve_lab(args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lab.npm [serve]", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="the API's address")
    parser.add_argument("--port", type=int, default=8181, help="the API's port; 0 picks a free one (see npm.json)")
    parser.add_argument("--identity", default="admin@example.com", help="the admin's email (POST /api/tokens)")
    parser.add_argument(
        "--secret",
        default=None,
        help=f"the admin's password (default: {DEFAULT_SECRET!r}; for the lab's NPM the one in DIR/{SECRET_FILE})",
    )
    parser.add_argument(
        "--schema",
        type=Path,
        default=None,
        help=f"NPM's OpenAPI document (default ${SCHEMA_ENV} or {default_schema_path()})",
    )
    parser.add_argument("--token-lifetime", type=float, default=86400.0, help="seconds a token is valid (NPM: 1 day)")
    lab = parser.add_argument_group("the lab's NPM")
    lab.add_argument(
        "--dir", type=Path, default=None, help=f"{INFO_FILE}, {STATE_FILE} and {SECRET_FILE} (default: --nginx-dir)"
    )
    lab.add_argument(
        "--nginx-dir", type=Path, default=None, help="serve the enabled hosts by a real nginx with its files here"
    )
    lab.add_argument("--listen", default="127.0.0.1", type=_address, help="nginx's address (default 127.0.0.1)")
    lab.add_argument("--http-port", type=int, default=8880, help="nginx's HTTP port (default 8880; the API has 8080)")
    lab.add_argument("--https-port", type=int, default=8443, help="nginx's HTTPS port (default 8443)")
    lab.add_argument("--nginx", default=NGINX, help=f"the nginx binary (default {NGINX})")
    return parser


def _address(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an IP address: {value}") from None


def _serve_plain(args: argparse.Namespace) -> int:
    state = NpmState(args.identity, args.secret or DEFAULT_SECRET, token_lifetime=_lifetime(args))
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


def _serve_lab(args: argparse.Namespace) -> int:
    # Imported here: the plain double needs neither nginx nor cryptography.
    from lab.npm.proxy import LabProxy
    from lab.npm.store import StateFile

    layout = None
    if args.nginx_dir is not None:
        try:
            layout = Layout(args.nginx_dir.resolve(), args.listen, args.http_port, args.https_port)
        except ValueError as error:
            print(f"python -m lab.npm: {error}", file=sys.stderr)
            return 2
    directory: Path = (args.dir or args.nginx_dir).resolve()
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    secret_file = directory / SECRET_FILE
    secret = args.secret or _secret(secret_file)
    if args.secret:
        write_atomic(secret_file, secret + "\n", mode=0o600)
    state = NpmState(args.identity, secret, token_lifetime=_lifetime(args))
    store = StateFile(directory / STATE_FILE)
    try:
        store.load(state)
    except (ValueError, KeyError, TypeError) as error:
        print(f"python -m lab.npm: {store.path} is not a saved state ({error}); move it away to start empty",
              file=sys.stderr)  # fmt: skip
        return 1
    schema = NpmSchema.load(args.schema)
    info_file = directory / INFO_FILE
    info_file.unlink(missing_ok=True)
    proxy = None if layout is None else LabProxy(state, layout, args.nginx)

    stopping, nginx_died = threading.Event(), threading.Event()
    status = 0

    def terminate(signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, terminate)
    server = make_server(args.host, args.port, create_app(state, schema), threaded=True)
    try:
        url = f"http://{_url_host(args.host)}:{server.server_port}{schema.api_prefix}"
        info: dict[str, Any] = {
            "url": url,
            "identity": state.admin.email,
            "secret_file": str(secret_file),
            "state_file": str(store.path),
            "pid": os.getpid(),
        }
        if proxy is not None:
            proxy.start()
            watch = threading.Thread(target=_watch, args=(proxy, stopping, nginx_died), name="nginx", daemon=True)
            watch.start()
            info |= {
                "http": f"http://{proxy.layout.address(proxy.layout.http_port)}",
                "https": f"https://{proxy.layout.address(proxy.layout.https_port)}",
                "nginx_dir": str(proxy.layout.directory),
                "nginx_pid": proxy.nginx.pid,
            }
        store.follow(state)
        store.save(state)
        write_atomic(info_file, json.dumps(info, indent=1) + "\n", mode=0o644)
        proxied = f", its proxy on {info['http']} and {info['https']}" if proxy is not None else ""
        print(f"NPM double on {url}{proxied}; {info_file}", file=sys.stderr, flush=True)
        server.serve_forever()
    except (KeyboardInterrupt, SystemExit):
        pass
    except Exception:
        logging.getLogger("lab.npm").exception("the lab's NPM failed")
        status = 1
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # one stop at a time
        stopping.set()
        info_file.unlink(missing_ok=True)
        if proxy is not None:
            proxy.stop()
        server.server_close()
        try:
            store.save(state)  # also the tokens issued since the last change
        except OSError as error:
            print(f"cannot save the state: {error}", file=sys.stderr)
    return 1 if nginx_died.is_set() else status


def _watch(proxy: LabProxy, stopping: threading.Event, died: threading.Event) -> None:
    """nginx exiting without being asked to stops the whole part, so the lab sees it down: with status 1 when
    it failed or was killed, 0 when it was stopped (the lab's SIGTERM reaches the whole process group)."""
    code = proxy.nginx.wait()
    if not stopping.is_set():
        print(f"nginx exited with status {code}: stopping", file=sys.stderr, flush=True)
        if code != 0:
            died.set()
        os.kill(os.getpid(), signal.SIGTERM)


def _secret(path: Path) -> str:
    try:
        secret = path.read_text().strip()
    except FileNotFoundError:
        secret = ""
    if not secret:
        secret = secrets.token_urlsafe(24)
        write_atomic(path, secret + "\n", mode=0o600)
    return secret


def _lifetime(args: argparse.Namespace) -> timedelta:
    return timedelta(seconds=args.token_lifetime)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


if __name__ == "__main__":
    sys.exit(main())
