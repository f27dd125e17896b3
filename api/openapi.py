"""Routes declared with their schemas: one declaration validates the request and documents it."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from flask import Blueprint, current_app, request
from pydantic import BaseModel

from api.auth import require_token
from api.errors import ApiError, bad_request
from api.schemas import ErrorAnswer

ERROR_STATUSES = {
    400: "Bad input",
    401: "Missing or wrong bearer token",
    404: "Unknown service, domain or backup",
    409: "State conflict",
    415: "The body is not JSON in UTF-8 sent as Content-Type application/json (unsupported_media)",
    422: "Quota exceeded or DNS not pointing to us",
    503: "Infrastructure or database unreachable, or the awaited job failed",
}
WAITERS_FULL = (
    "; with `wait` > 0, also when this server already has as many requests waiting as it allows (too_many_waiters:"
    " nothing was done, retry after Retry-After seconds or without `wait`)"
)
RETRY_AFTER_HEADER = {
    "description": "With too_many_waiters: seconds after which the request may be sent again.",
    "schema": {"type": "integer", "minimum": 0},
}
JSON_CHARSETS = ("utf-8", "utf8")
# Seconds a caller refused for too many waiters is told to wait before it tries again (Retry-After).
WAITERS_RETRY_AFTER = 5


@dataclass
class Operation:
    paths: list[str]
    method: str
    summary: str
    responses: dict[int, type[BaseModel]]
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    errors: list[int] = field(default_factory=list)
    authenticated: bool = True
    path_params: dict[str, dict] = field(default_factory=dict)
    error_notes: dict[int, str] = field(default_factory=dict)


OPERATIONS: list[Operation] = []


def route(
    blueprint: Blueprint,
    paths: str | list[str],
    method: str,
    summary: str,
    responses: dict[int, type[BaseModel]],
    body: type[BaseModel] | None = None,
    query: type[BaseModel] | None = None,
    errors: tuple[int, ...] = (400, 404),
    authenticated: bool = True,
    path_params: dict[str, dict] | None = None,
    error_notes: dict[int, str] | None = None,
) -> Callable:
    """Register a view; it receives the validated request model as `data` when a body or query is declared.
    `error_notes` describe an error status for this operation in place of the general ERROR_STATUSES text."""
    paths = [paths] if isinstance(paths, str) else paths
    # Every body may be of the wrong media type (415) and every body or query may repeat a key (400).
    parsed = body is not None or query is not None
    all_errors = sorted(
        {*errors, 503}
        | ({401} if authenticated else set())
        | ({400} if parsed else set())
        | ({415} if body is not None else set())
    )
    prefix = blueprint.url_prefix or ""  # the document lists the paths as served, prefix included
    OPERATIONS.append(
        Operation(
            [prefix + path for path in paths],
            method,
            summary,
            responses,
            body,
            query,
            all_errors,
            authenticated,
            path_params or {},
            error_notes or {},
        )
    )

    model = body or query
    waits = model is not None and "wait" in model.model_fields  # a request that may hold a thread for its job

    def decorate(view: Callable) -> Callable:
        @functools.wraps(view)
        def wrapper(**kwargs):
            if authenticated:
                require_token()
            if body is not None:
                kwargs["data"] = body.model_validate(_json_body(), context=_context())
            elif query is not None:
                kwargs["data"] = query.model_validate(_query(), context=_context())
            if waits and kwargs["data"].wait > 0:
                # A waiting request holds a server thread: take one of the process's waiter places before
                # anything is done, so that a refused request changed nothing and other requests keep threads.
                waiters = current_app.extensions["proxmoxwp"].waiters
                if not waiters.enter():
                    raise ApiError(
                        503,
                        "too_many_waiters",
                        "Too many requests are waiting for their jobs; nothing was done. "
                        "Try again shortly, or without wait.",
                        headers={"Retry-After": str(WAITERS_RETRY_AFTER)},
                    )
                try:
                    return view(**kwargs)
                finally:
                    waiters.leave()
            return view(**kwargs)

        for index, path in enumerate(paths):
            endpoint = view.__name__ if index == 0 else f"{view.__name__}_{index}"
            blueprint.add_url_rule(path, endpoint, wrapper, methods=[method], strict_slashes=True)
        return wrapper

    return decorate


def _context() -> dict:
    ctx = current_app.extensions["proxmoxwp"]
    return {
        "public_ips": ctx.settings.public_ips,
        "base_zone": ctx.inventory.naming.base_zone,
        "max_wait": ctx.settings.max_wait_seconds,
    }


def _json_body() -> dict:
    """The body as a JSON object, taken only as what it says it is: application/json in UTF-8 (RFC 8259), each
    key once. json.loads alone would guess UTF-16 or UTF-32 and keep the last of two equal keys."""
    raw = request.get_data(cache=True)
    if not raw.strip():
        return {}
    charset = request.mimetype_params.get("charset", "utf-8").lower()
    if request.mimetype != "application/json" or charset not in JSON_CHARSETS:
        raise ApiError(415, "unsupported_media", "The request body must be sent as Content-Type application/json.")
    if json.detect_encoding(raw) != "utf-8":
        raise ApiError(415, "unsupported_media", "The request body must be JSON encoded in UTF-8, without a BOM.")
    try:
        data = json.loads(raw.decode("utf-8"), object_pairs_hook=_unique_keys)
    except UnicodeDecodeError:
        raise bad_request("invalid_json", "The request body is not valid UTF-8.") from None
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than the parser's stack
        raise bad_request("invalid_json", "The request body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise bad_request("invalid_json", "The request body must be a JSON object.")
    return data


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise bad_request("duplicate_key", f"The request body has {_named(key)} more than once.")
        seen.add(key)
    return dict(pairs)


def _query() -> dict:
    query: dict[str, str] = {}
    for key, value in request.args.items(multi=True):
        if key in query:
            raise bad_request("duplicate_key", f"The query string has {_named(key)} more than once.")
        query[key] = value
    return query


def _named(key: str) -> str:
    """A repeated key in an error: named when it looks like a field, so that the answer echoes no markup."""
    return f"the key '{key}'" if re.fullmatch(r"[A-Za-z0-9_]{1,40}", key) else "a key"


def document(plans: list[str], max_wait: int) -> dict:
    """The OpenAPI 3.1 document of every registered operation, with this server's plans and longest `wait`."""
    components: dict[str, dict] = {}

    def ref(model: type[BaseModel]) -> dict:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}", mode="serialization")
        for name, sub in schema.pop("$defs", {}).items():
            components[name] = sub
        components[model.__name__] = schema
        return {"$ref": f"#/components/schemas/{model.__name__}"}

    def request_schema(model: type[BaseModel]) -> dict:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}", mode="validation")
        schema.pop("$defs", None)
        if "plan" in schema.get("properties", {}):
            schema["properties"]["plan"]["enum"] = plans
        if "wait" in schema.get("properties", {}):
            schema["properties"]["wait"]["maximum"] = max_wait  # PROXMOXWP_MAX_WAIT_SECONDS, not the model's bound
        components[model.__name__ + "Request"] = schema
        return {"$ref": f"#/components/schemas/{model.__name__}Request"}

    paths: dict[str, dict] = {}
    for op in OPERATIONS:
        spec: dict = {"summary": op.summary, "operationId": _operation_id(op), "responses": {}}
        for status, model in op.responses.items():
            spec["responses"][str(status)] = {
                "description": "Done" if status == 200 else "Accepted: a job carries out the change",
                "content": {"application/json": {"schema": ref(model)}},
            }
        waits = op.body is not None and "wait" in op.body.model_fields
        for status in op.errors:
            answer = {
                "description": op.error_notes.get(status, ERROR_STATUSES[status]),
                "content": {"application/json": {"schema": ref(ErrorAnswer)}},
            }
            if status == 503 and waits:
                answer["description"] += WAITERS_FULL
                answer["headers"] = {"Retry-After": RETRY_AFTER_HEADER}
            spec["responses"][str(status)] = answer
        if op.body is not None:
            spec["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": request_schema(op.body)}},
            }
        parameters = [
            {"name": name, "in": "path", "required": True, "schema": schema} for name, schema in op.path_params.items()
        ]
        if op.query is not None:
            schema = op.query.model_json_schema(mode="validation")
            required = set(schema.get("required", []))
            for name, prop in schema["properties"].items():
                prop = _query_schema(prop)
                parameters.append({"name": name, "in": "query", "required": name in required, "schema": prop})
        if parameters:
            spec["parameters"] = parameters
        spec["security"] = [{"bearer": []}] if op.authenticated else []
        for path in op.paths:
            openapi_path = path.replace("<int:", "{").replace("<", "{").replace(">", "}")
            paths.setdefault(openapi_path, {})[op.method.lower()] = dict(
                spec,
                operationId=spec["operationId"] + ("_slash" if path.endswith("/") and len(op.paths) > 1 else ""),
            )
    return {
        "openapi": "3.1.0",
        "info": {"title": "ProxmoxWP API", "version": _version()},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def _query_schema(prop: dict) -> dict:
    """Query strings are text: keep the string form of a field that also takes an integer."""
    prop = {key: value for key, value in prop.items() if key != "title"}
    if "anyOf" in prop:
        strings = [option for option in prop["anyOf"] if option.get("type") == "string"]
        if strings:
            return strings[0]
    return prop


def _operation_id(op: Operation) -> str:
    return (
        op.method.lower()
        + "_"
        + op.paths[0]
        .strip("/")
        .replace("/", "_")
        .replace("-", "_")
        .replace("<", "")
        .replace(">", "")
        .replace("int:", "")
    )


def _version() -> str:
    from importlib.metadata import version

    return version("proxmoxwp")
