"""The HTTP face of the NPM double: NPM v2.15.1's routes, status codes and error bodies over an NpmState.

Per request, in NPM's order: the bearer token is read (expired: 400, unknown: 500), the body is validated
against the OpenAPI document (400 with Ajv-style text), then the state operation runs (permission, existence,
business rules). Errors answer `{"error": {"code", "message"}}`, plus `debug` on /nginx/certificates paths as
NPM's error handler does; errors NPM does not mark public answer "Internal Error". Of the 404 and redirection
hosts' routes only list, create, get and delete are served: the double keeps those hosts for their names.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from lab.npm.schema import NpmSchema
from lab.npm.state import (
    DEAD,
    REDIRECTION,
    VERSION,
    InternalError,
    ItemNotFoundError,
    NpmError,
    NpmState,
    PermissionDenied,
    User,
)
from lab.npm.state import ValidationError as NpmValidationError

log = logging.getLogger(__name__)

ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"]
HOSTS = "/nginx/proxy-hosts"
HOST = "/nginx/proxy-hosts/{hostID}"
CERTIFICATES = "/nginx/certificates"
# 404 hosts and redirection hosts: the state's kind for each path (only list, create, get and delete)
OTHER_HOSTS = {"/nginx/dead-hosts": DEAD, "/nginx/redirection-hosts": REDIRECTION}


class _BadJson(InternalError):
    """body-parser's error: it has status 400 but is not public."""

    status = 400


def create_app(state: NpmState, schema: NpmSchema | None = None) -> Flask:
    """A Flask app serving `state` under the document's API prefix (`/api`)."""
    schema = schema or NpmSchema.load()
    app = Flask(__name__)
    app.json.sort_keys = False  # type: ignore[attr-defined]  # NPM's column order
    app.extensions["npm"] = state
    api = Blueprint("npm", __name__, url_prefix=schema.api_prefix)
    _routes(api, state, schema)
    app.register_blueprint(api)
    _error_handlers(app, schema.api_prefix)
    return app


def _routes(api: Blueprint, state: NpmState, schema: NpmSchema) -> None:
    def body(template: str, method: str) -> dict[str, Any]:
        """Express 5 + body-parser: no JSON body is `undefined`, a broken one a non-public 400."""
        raw = request.get_data()
        if not request.is_json or not raw:
            raise NpmValidationError("Payload is undefined")
        try:
            payload = json.loads(raw)
        except ValueError as error:
            raise _BadJson(str(error)) from None
        errors = schema.request_errors(template, method, payload)
        if errors:
            raise NpmValidationError(", ".join(errors))
        return payload

    @api.get("/")
    def health() -> Response:
        major, minor, revision = VERSION
        return jsonify(status="OK", setup=True, version={"major": major, "minor": minor, "revision": revision})

    @api.get("/schema")
    def openapi() -> Response:
        return jsonify(schema.document)

    @api.post("/tokens")
    def request_token() -> Response:
        data = body("/tokens", "post")
        return jsonify(state.login(data["identity"], data["secret"]))

    @api.get("/tokens")
    def refresh_token() -> Response:
        return jsonify(state.refresh(_actor(state), request.args.get("expiry")))

    @api.get(HOSTS)
    def list_hosts() -> Response:
        return jsonify(state.list_proxy_hosts(_actor(state), _expand()))

    @api.post(HOSTS)
    def create_host() -> tuple[Response, int]:
        actor = _actor(state)
        return jsonify(state.create_proxy_host(actor, body(HOSTS, "post"))), 201

    @api.get(f"{HOSTS}/<int:host_id>")
    def get_host(host_id: int) -> Response:
        return jsonify(state.get_proxy_host(_actor(state), host_id, _expand()))

    @api.put(f"{HOSTS}/<int:host_id>")
    def update_host(host_id: int) -> Response:
        actor = _actor(state)
        return jsonify(state.update_proxy_host(actor, host_id, body(HOST, "put")))

    @api.delete(f"{HOSTS}/<int:host_id>")
    def delete_host(host_id: int) -> Response:
        return jsonify(state.delete_proxy_host(_actor(state), host_id))

    @api.post(f"{HOSTS}/<int:host_id>/enable")
    def enable_host(host_id: int) -> Response:
        return jsonify(state.enable_proxy_host(_actor(state), host_id))

    @api.post(f"{HOSTS}/<int:host_id>/disable")
    def disable_host(host_id: int) -> Response:
        return jsonify(state.disable_proxy_host(_actor(state), host_id))

    @api.get(CERTIFICATES)
    def list_certificates() -> Response:
        return jsonify(state.list_certificates(_actor(state), _expand()))

    @api.post(CERTIFICATES)
    def create_certificate() -> tuple[Response, int]:
        actor = _actor(state)
        return jsonify(state.create_certificate(actor, body(CERTIFICATES, "post"))), 201

    @api.get(f"{CERTIFICATES}/<int:cert_id>")
    def get_certificate(cert_id: int) -> Response:
        return jsonify(state.get_certificate(_actor(state), cert_id, _expand()))

    @api.delete(f"{CERTIFICATES}/<int:cert_id>")
    def delete_certificate(cert_id: int) -> Response:
        return jsonify(state.delete_certificate(_actor(state), cert_id))

    for path, kind in OTHER_HOSTS.items():
        _other_host_routes(api, state, path, kind, body)

    @api.route("/<path:rest>", methods=ALL_METHODS)
    def not_found(rest: str) -> Response:
        """NPM's catch-all `router.all(/(.+)/)`: anything else under /api."""
        raise ItemNotFoundError(f"/{rest}")


def _other_host_routes(
    api: Blueprint, state: NpmState, path: str, kind: str, body: Callable[[str, str], dict[str, Any]]
) -> None:
    name = kind.removesuffix("s")

    def list_hosts() -> Response:
        return jsonify(state.list_other_hosts(_actor(state), kind, _expand()))

    def create_host() -> tuple[Response, int]:
        actor = _actor(state)
        return jsonify(state.create_other_host(actor, kind, body(path, "post"))), 201

    def get_host(host_id: int) -> Response:
        return jsonify(state.get_other_host(_actor(state), kind, host_id, _expand()))

    def delete_host(host_id: int) -> Response:
        return jsonify(state.delete_other_host(_actor(state), kind, host_id))

    api.add_url_rule(path, f"list_{name}", list_hosts, methods=["GET"])
    api.add_url_rule(path, f"create_{name}", create_host, methods=["POST"])
    api.add_url_rule(f"{path}/<int:host_id>", f"get_{name}", get_host, methods=["GET"])
    api.add_url_rule(f"{path}/<int:host_id>", f"delete_{name}", delete_host, methods=["DELETE"])


def _actor(state: NpmState) -> User | None:
    """lib/express/jwt.js: only `Authorization: Bearer <token>` counts."""
    parts = request.headers.get("Authorization", "").split(" ")
    token = parts[1] if len(parts) > 1 and parts[0] == "Bearer" else None
    return state.authenticate(token)


def _expand() -> list[str] | None:
    value = request.args.get("expand")
    return value.split(",") if value is not None else None


def _error_handlers(app: Flask, prefix: str) -> None:
    @app.errorhandler(NpmError)
    def npm_error(error: NpmError) -> tuple[Response, int]:
        if isinstance(error, PermissionDenied):
            # NPM's permission failure falls through to its catch-all route, which names the path
            error = ItemNotFoundError(request.path.removeprefix(prefix))
        payload: dict[str, Any] = {
            "error": {"code": error.status, "message": error.message if error.public else "Internal Error"}
        }
        if "nginx/certificates" in request.path:
            payload["debug"] = error.debug()
        return jsonify(payload), error.status

    @app.errorhandler(Exception)
    def unexpected(error: Exception) -> Response | tuple[Response, int]:
        if isinstance(error, HTTPException):
            return error  # type: ignore[return-value]
        log.exception("NPM double: unexpected error")
        return jsonify(error={"code": 500, "message": "Internal Error"}), 500
