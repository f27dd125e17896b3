"""Liveness and the API's own description."""

from importlib.metadata import version

from flask import Blueprint, current_app, jsonify

from api import schemas
from api.openapi import document, route

bp = Blueprint("meta", __name__)


@route(
    bp,
    "/health",
    "GET",
    "Liveness (no authentication)",
    {200: schemas.Health},
    errors=(),
    authenticated=False,
)
def health():
    return jsonify({"success": True, "status": "ok", "version": version("proxmoxwp")})


@bp.get("/openapi.json")
def openapi():
    plans = sorted(current_app.extensions["proxmoxwp"].inventory.plans)
    return jsonify(document(plans))
