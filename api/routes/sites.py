"""The site's life as the billing panel drives it: create, delete, suspend, unsuspend, upgrade, status."""

from flask import Blueprint, jsonify

from api import schemas
from api.openapi import route
from api.routes import lifecycle, reply

bp = Blueprint("sites", __name__)


@route(
    bp,
    "/create-site",
    "POST",
    "Create a WordPress site",
    {200: schemas.SiteCreated, 202: schemas.SiteCreated},
    body=schemas.CreateSite,
    errors=(400, 409),
    error_notes={
        503: "No allowed node has room for the plan's memory and disk (no_capacity), or Proxmox VE did not answer "
        "(pve_unavailable): nothing was made, try again later; or the database is unreachable, or the awaited job "
        "failed",
    },
)
def create_site(data: schemas.CreateSite):
    return reply(lifecycle().create_site(data), data)


@route(
    bp,
    "/delete-site",
    "POST",
    "Delete a site and everything it has",
    {200: schemas.Accepted, 202: schemas.Accepted},
    body=schemas.ChangeRequest,
    errors=(400,),
)
def delete_site(data: schemas.ChangeRequest):
    return reply(lifecycle().delete_site(data), data)


@route(
    bp,
    "/suspend-site",
    "POST",
    "Stop a site and keep it stopped",
    {200: schemas.Accepted, 202: schemas.Accepted},
    body=schemas.ChangeRequest,
    errors=(400, 404, 409),
)
def suspend_site(data: schemas.ChangeRequest):
    return reply(lifecycle().suspend_site(data), data)


@route(
    bp,
    "/unsuspend-site",
    "POST",
    "Start a suspended site again",
    {200: schemas.Accepted, 202: schemas.Accepted},
    body=schemas.ChangeRequest,
    errors=(400, 404, 409),
)
def unsuspend_site(data: schemas.ChangeRequest):
    return reply(lifecycle().unsuspend_site(data), data)


@route(
    bp,
    ["/wp/upgrade/", "/wp/upgrade"],
    "POST",
    "Move a site to another plan",
    {200: schemas.Accepted, 202: schemas.Accepted},
    body=schemas.Upgrade,
    errors=(400, 404, 409, 422),
)
def upgrade(data: schemas.Upgrade):
    return reply(lifecycle().upgrade(data), data)


@route(
    bp,
    "/status",
    "GET",
    "A site's state, plan, quotas and last job",
    {200: schemas.StatusAnswer},
    query=schemas.ServiceRef,
)
def status(data: schemas.ServiceRef):
    return jsonify(lifecycle().status(data))
