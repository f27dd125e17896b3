"""Run results: state, progress, timings, the failed task and its message."""

from flask import Blueprint, jsonify

from api import schemas
from api.lifecycle import JOB_ID_MAX
from api.openapi import route
from api.routes import lifecycle

bp = Blueprint("jobs", __name__, url_prefix="/jobs")


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
    return jsonify({"success": True, "job": lifecycle().job(job_id)})


@route(bp, "", "GET", "A service's jobs, newest first", {200: schemas.JobList}, query=schemas.JobListQuery)
def index(data: schemas.JobListQuery):
    return jsonify({"success": True, "jobs": lifecycle().jobs(data.service_id, data.limit)})
