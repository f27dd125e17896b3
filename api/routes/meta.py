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
    waiters = current_app.extensions["proxmoxwp"].waiters
    return jsonify(
        {
            "success": True,
            "status": "ok",
            "version": version("proxmoxwp"),
            "waiters": waiters.taken,
            "max_waiters": waiters.limit,
        }
    )


@bp.get("/openapi.json")
def openapi():
    ctx = current_app.extensions["proxmoxwp"]
    return jsonify(document(sorted(ctx.inventory.plans), ctx.settings.max_wait_seconds))
