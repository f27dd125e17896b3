"""Run results: state, progress, timings, the failed task and its message."""

from flask import Blueprint, current_app, jsonify

from api import schemas
from api.lifecycle import JOB_ID_MAX
from api.openapi import route

bp = Blueprint("jobs", __name__, url_prefix="/jobs")


def _lifecycle():
    return current_app.extensions["proxmoxwp"].lifecycle


@route(
    bp,
    "/<int:job_id>",
    "GET",
    "One job",
    {200: schemas.JobAnswer},
    errors=(404,),
    path_params={"job_id": {"type": "integer", "minimum": 1, "maximum": JOB_ID_MAX}},
)
def show(job_id: int):
    return jsonify({"success": True, "job": _lifecycle().job(job_id)})


@route(bp, "", "GET", "A service's jobs, newest first", {200: schemas.JobList}, query=schemas.JobListQuery)
def index(data: schemas.JobListQuery):
    return jsonify({"success": True, "jobs": _lifecycle().jobs(data.service_id, data.limit)})
