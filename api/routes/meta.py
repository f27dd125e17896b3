"""Liveness and the API's own description."""

from dataclasses import asdict
from importlib.metadata import version

from flask import Blueprint, current_app, jsonify

from api import schemas
from api.auth import require_token
from api.doctor import local
from api.openapi import document, route
from api.pool import members as pool_members

bp = Blueprint("meta", __name__)


@route(
    bp,
    "/health",
    "GET",
    "Liveness (no authentication); with deep=1 (authenticated) the API's own dependencies too",
    {200: schemas.Health},
    query=schemas.HealthQuery,
    errors=(401,),
    authenticated=False,
)
def health(data: schemas.HealthQuery):
    ctx = current_app.extensions["proxmoxwp"]
    answer = {
        "success": True,
        "status": "ok",
        "version": version("proxmoxwp"),
        "waiters": ctx.waiters.taken,
        "max_waiters": ctx.waiters.limit,
    }
    if data.deep:
        require_token()
        found = local.cheap(ctx.runtime, local.current_user())
        answer["checks"] = [asdict(finding) for finding in found]
        answer["pool"] = pool_members.status(ctx.runtime)
        answer["status"] = "ok" if all(finding.ok for finding in found) else "failing"
    return jsonify(answer)


@bp.get("/openapi.json")
def openapi():
    ctx = current_app.extensions["proxmoxwp"]
    return jsonify(document(sorted(ctx.inventory.plans), ctx.settings.max_wait_seconds))
