"""The Cloudflare API v4 double as a Flask app: `create_app(state)`, routes under /client/v4.

What a DNS client of Cloudflare meets, and no more: API-token auth, the envelope on every answer (also errors and
unknown routes), finding a zone by name, and listing, creating, changing and deleting DNS records. The rules and
codes are in rules.py and state.py.

Auth, as Cloudflare answers it: no credentials at all is 400/9106; an Authorization header that is not
`Bearer <token>` is 400/6003 (error_chain 6111); a token that is not the state's is 403/10000 "Authentication
error". Global API keys (X-Auth-Key/X-Auth-Email) are not modelled: they count as a wrong token.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound

from .listing import RECORD_PAGING, ZONE_PAGING, filter_records, paginate
from .rules import CloudflareError
from .state import Call, CloudflareState

PREFIX = "/client/v4"
UNAUTHENTICATED = ("/user/tokens/verify",)  # answers itself whether the token is valid


def envelope(
    result: Any, result_info: dict[str, int] | None = None, messages: list[dict[str, Any]] | None = None
) -> tuple[Response, int]:
    """A success answer: Cloudflare's envelope, with result_info on lists."""
    body: dict[str, Any] = {"success": True, "errors": [], "messages": messages or [], "result": result}
    if result_info is not None:
        body["result_info"] = result_info
    return jsonify(body), 200


def failure(error: CloudflareError) -> tuple[Response, int]:
    """An error answer: the same envelope, success false, result null."""
    return jsonify({"success": False, "errors": error.errors(), "messages": [], "result": None}), error.status


def _body() -> dict[str, Any]:
    body = request.get_json(force=True, silent=True)
    if not isinstance(body, dict):
        raise CloudflareError(400, 6007, "Malformed JSON in request body")
    return body


def _api_path() -> str:
    return request.path.removeprefix(PREFIX) or "/"


def _authenticate(state: CloudflareState) -> None:
    header = request.headers.get("Authorization")
    if header is None and not request.headers.get("X-Auth-Key"):
        raise CloudflareError(400, 9106, "Missing X-Auth-Key, X-Auth-Email or Authorization headers")
    if header is not None:
        scheme, _, token = header.partition(" ")
        if scheme != "Bearer" or not token.strip():
            raise CloudflareError(
                400, 6003, "Invalid request headers", [(6111, "Invalid format for Authorization header")]
            )
        if token.strip() == state.token:
            return
    raise CloudflareError(403, 10000, "Authentication error")


def _routes(state: CloudflareState) -> Blueprint:
    api = Blueprint("cloudflare_v4", __name__, url_prefix=PREFIX)

    @api.get("/user/tokens/verify")
    def verify_token():
        header = request.headers.get("Authorization", "")
        if header != f"Bearer {state.token}":
            raise CloudflareError(401, 1000, "Invalid API Token")
        valid = {"code": 10000, "message": "This API Token is valid and active", "type": None}
        return envelope({"id": state.token_id, "status": "active"}, messages=[valid])

    @api.get("/zones")
    def list_zones():
        zones = state.find_zones(request.args.get("name"))
        if "status" in request.args:
            zones = [zone for zone in zones if request.args["status"] == "active"]
        page, info = paginate(zones, request.args, ZONE_PAGING)
        return envelope([zone.to_api() for zone in page], result_info=info)

    @api.get("/zones/<zone_id>")
    def get_zone(zone_id: str):
        return envelope(state.zone(zone_id, _api_path()).to_api())

    @api.get("/zones/<zone_id>/dns_records")
    def list_records(zone_id: str):
        zone = state.zone(zone_id, _api_path())
        records = filter_records(state.zone_records(zone), request.args)
        page, info = paginate(records, request.args, RECORD_PAGING)
        return envelope([record.to_api() for record in page], result_info=info)

    @api.post("/zones/<zone_id>/dns_records")
    def create_record(zone_id: str):
        zone = state.zone(zone_id, _api_path())
        return envelope(state.create_record(zone, _body()).to_api())

    @api.get("/zones/<zone_id>/dns_records/<record_id>")
    def get_record(zone_id: str, record_id: str):
        return envelope(state.record(state.zone(zone_id, _api_path()), record_id).to_api())

    @api.route("/zones/<zone_id>/dns_records/<record_id>", methods=["PATCH", "PUT"])
    def update_record(zone_id: str, record_id: str):
        zone = state.zone(zone_id, _api_path())
        record = state.update_record(zone, record_id, _body(), partial=request.method == "PATCH")
        return envelope(record.to_api())

    @api.delete("/zones/<zone_id>/dns_records/<record_id>")
    def delete_record(zone_id: str, record_id: str):
        return envelope({"id": state.delete_record(state.zone(zone_id, _api_path()), record_id)})

    return api


def create_app(state: CloudflareState) -> Flask:
    """The double serving `state`; every request is appended to state.calls before it is answered."""
    app = Flask(__name__)
    app.json.sort_keys = False

    @app.before_request
    def record_and_authenticate():
        body = request.get_json(force=True, silent=True) if request.content_length else None
        with state.lock:
            state.calls.append(Call(request.method, _api_path(), dict(request.args), body))
        if request.path.startswith(PREFIX) and _api_path() not in UNAUTHENTICATED:
            _authenticate(state)

    app.register_blueprint(_routes(state))
    app.register_error_handler(CloudflareError, failure)

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        if isinstance(error, MethodNotAllowed):
            return failure(
                CloudflareError(
                    405, 10000, f"{request.method} method not allowed for the api_token authentication scheme"
                )
            )
        if isinstance(error, NotFound):
            return failure(CloudflareError(400, 7000, "No route for that URI"))
        return failure(CloudflareError(error.code or 500, error.code or 500, error.description or error.name))

    return app
