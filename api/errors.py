"""API errors: every failure leaves as `{"success": false, "error": ..., "code": ...}`."""

from __future__ import annotations

import logging

from flask import Flask, jsonify
from pydantic import ValidationError
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)


class ApiError(Exception):
    def __init__(self, status: int, code: str, error: str, *, headers: dict[str, str] | None = None, **extra: object):
        super().__init__(error)
        self.status, self.code, self.error, self.extra = status, code, error, extra
        self.headers = headers or {}


def bad_request(code: str, error: str) -> ApiError:
    return ApiError(400, code, error)


def not_found(code: str, error: str) -> ApiError:
    return ApiError(404, code, error)


def conflict(code: str, error: str, **extra: object) -> ApiError:
    return ApiError(409, code, error, **extra)


def unprocessable(code: str, error: str, **extra: object) -> ApiError:
    return ApiError(422, code, error, **extra)


def unavailable(code: str, error: str, **extra: object) -> ApiError:
    return ApiError(503, code, error, **extra)


# What a value that does not match a field's pattern should look like, in words.
PATTERN_TEXT = {
    "bak": "must look like BAKDDMMYYYY-N",
    "plan": "must be a plan name (lower-case letters, digits, '-' and '_')",
}


def describe_validation(exc: ValidationError) -> str:
    """The first problem of a pydantic error as one readable sentence."""
    error = exc.errors()[0]
    # Leave out the tags pydantic adds for union members and validators ("constrained-str", "function-after")
    field = ".".join(str(part) for part in error["loc"] if not _is_tag(part))
    kind = error["type"]
    if kind == "extra_forbidden":
        return f"Unknown field '{field}'."
    if kind == "missing":
        return f"Field '{field}' is required."
    message = str(error["msg"]).removeprefix("Value error, ").rstrip(".")
    if kind == "string_pattern_mismatch" and field in PATTERN_TEXT:
        message = PATTERN_TEXT[field]
    elif kind.endswith("_type") or kind == "union_tag_invalid":
        message = f"has the wrong type ({message.lower()})"
    message = message[:1].lower() + message[1:] or "is not valid"
    return f"Field '{field}' {message}." if field else f"{message[:1].upper() + message[1:]}."


def _is_tag(part: object) -> bool:
    text = str(part)
    return not isinstance(part, int) and (
        text.startswith(("function-", "constrained-", "lax-", "json-or-python")) or text in ("str", "int")
    )


def _answer(status: int, code: str, error: str, headers: dict[str, str] | None = None, **extra: object):
    body = {"success": False, "error": error, "code": code}
    body.update({key: value for key, value in extra.items() if value is not None})
    response = jsonify(body)
    response.status_code = status
    response.headers.update(headers or {})
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="proxmoxwp"'
    return response


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError):
        return _answer(exc.status, exc.code, exc.error, exc.headers, **exc.extra)

    @app.errorhandler(ValidationError)
    def _validation(exc: ValidationError):
        return _answer(400, "invalid_request", describe_validation(exc))

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        codes = {404: "not_found", 405: "method_not_allowed", 413: "too_large", 415: "unsupported_media"}
        text = {404: "No such endpoint.", 405: "This endpoint does not accept that method."}
        status = exc.code or 500
        return _answer(status, codes.get(status, "http_error"), text.get(status, exc.name + "."))

    @app.errorhandler(OperationalError)
    def _database(exc: OperationalError):
        log.error("database unavailable: %s", exc.orig.__class__.__name__ if exc.orig else exc)
        return _answer(503, "unavailable", "The service is temporarily unavailable, please try again shortly.")

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("unexpected error")
        return _answer(500, "internal_error", "Something went wrong on our side; it has been logged.")
