"""The API's blueprints, and what their views share."""

from flask import current_app, jsonify

from api.lifecycle import Answer, Lifecycle


def lifecycle() -> Lifecycle:
    return current_app.extensions["proxmoxwp"].lifecycle


def reply(answer: Answer, data):
    """Queue the answer's job, wait for it if the caller asked to, and answer 200 or 202."""
    body, status = lifecycle().dispatch(answer, data.wait)
    return jsonify(body), status
