"""The NPM v2.15.1 OpenAPI document, and request bodies checked against it.

The double takes field names, required fields and `additionalProperties: false` from the document NPM serves
itself (`GET /api/schema`), never from a hand-written list, so the double refuses what NPM refuses. Errors are
worded like NPM's Ajv messages (`data/meta must NOT have additional properties`).

One deliberate difference: NPM's Ajv runs with `coerceTypes`, so it would accept `"forward_port": "8080"`. The
double validates strictly (Draft 2020-12, no coercion), so every body it accepts is valid against the schema and
a client that sends loose types is caught by its tests.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from functools import cached_property, lru_cache
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError as SchemaError

SCHEMA_ENV = "PROXMOXWP_NPM_SCHEMA"
SCHEMA_NAME = "npm-openapi-v2.15.1.json"


def default_schema_path() -> Path:
    """$PROXMOXWP_NPM_SCHEMA, else the copy in the package (`lab/reference/`, origin in its README)."""
    configured = os.environ.get(SCHEMA_ENV)
    if configured:
        return Path(configured)
    return Path(str(resources.files("lab.reference") / SCHEMA_NAME))


class NpmSchema:
    """The OpenAPI document (all $refs resolved) with validators per path template and method."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self._validators: dict[tuple[str, str, str, int], Draft202012Validator | None] = {}

    @classmethod
    def load(cls, path: Path | str | None = None) -> NpmSchema:
        return _load(str(path or default_schema_path()))

    @cached_property
    def api_prefix(self) -> str:
        """The path NPM serves its API under, from the document's server URL (`/api`)."""
        return urlparse(self.document["servers"][0]["url"]).path.rstrip("/")

    def operation(self, template: str, method: str) -> dict[str, Any]:
        return self.document["paths"][template][method.lower()]

    def request_schema(self, template: str, method: str) -> dict[str, Any] | None:
        body = self.operation(template, method).get("requestBody")
        return body["content"]["application/json"]["schema"] if body else None

    def response_schema(self, template: str, method: str, status: int) -> dict[str, Any] | None:
        response = self.operation(template, method)["responses"].get(str(status))
        if response is None:
            return None
        return response.get("content", {}).get("application/json", {}).get("schema")

    def request_errors(self, template: str, method: str, body: Any) -> list[str]:
        """Ajv-style messages for everything wrong with `body`; empty when the schema accepts it."""
        return [_ajv_message(error) for error in self._iter_errors("request", template, method, body)]

    def response_errors(self, template: str, method: str, status: int, body: Any) -> list[str]:
        """For tests: what in a response body the document's response schema does not allow."""
        return [_ajv_message(error) for error in self._iter_errors("response", template, method, body, status)]

    def _iter_errors(self, kind: str, template: str, method: str, body: Any, status: int = 0) -> Iterator[SchemaError]:
        validator = self._validator(kind, template, method.lower(), status)
        if validator is None:
            raise KeyError(f"no {kind} schema for {method.upper()} {template} {status or ''}".rstrip())
        return validator.iter_errors(body)

    def _validator(self, kind: str, template: str, method: str, status: int) -> Draft202012Validator | None:
        """Built once per operation (a race only builds it twice: validators are immutable)."""
        key = (kind, template, method, status)
        if key not in self._validators:
            if kind == "request":
                schema = self.request_schema(template, method)
            else:
                schema = self.response_schema(template, method, status)
            self._validators[key] = None if schema is None else Draft202012Validator(schema)
        return self._validators[key]


@lru_cache(maxsize=8)
def _load(path: str) -> NpmSchema:
    return NpmSchema(json.loads(Path(path).read_text()))


def _ajv_message(error: SchemaError) -> str:
    """`data<instancePath> <message>`, the way NPM's `ajv.errorsText` words a failed keyword."""
    where = "data" + "".join(f"/{part}" for part in error.absolute_path)
    return f"{where} {_ajv_text(error)}"


def _ajv_text(error: SchemaError) -> str:
    keyword, value = str(error.validator), error.validator_value
    if keyword == "required":
        missing = error.message.split("'")[1] if "'" in error.message else "?"
        return f"must have required property '{missing}'"
    if keyword == "type":
        return f"must be {','.join(value) if isinstance(value, list) else value}"
    if keyword == "pattern":
        return f'must match pattern "{value}"'
    if keyword in _AJV_LIMITS:
        return _AJV_LIMITS[keyword].format(value)
    return _AJV_FIXED.get(keyword, error.message)


_AJV_LIMITS = {
    "minItems": "must NOT have fewer than {} items",
    "maxItems": "must NOT have more than {} items",
    "minLength": "must NOT have fewer than {} characters",
    "maxLength": "must NOT have more than {} characters",
    "minimum": "must be >= {}",
    "maximum": "must be <= {}",
    "minProperties": "must NOT have fewer than {} properties",
}
_AJV_FIXED = {
    "additionalProperties": "must NOT have additional properties",
    "enum": "must be equal to one of the allowed values",
    "const": "must be equal to constant",
    "uniqueItems": "must NOT have duplicate items",
    "anyOf": "must match a schema in anyOf",
    "oneOf": "must match exactly one schema in oneOf",
}
