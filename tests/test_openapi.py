"""GET /openapi.json: a valid OpenAPI 3.1 document of exactly the routes served, and answers that keep to it.

The document is generated from the same pydantic models that validate requests (api/openapi.py), so the
schemathesis run below checks the API against its own declarations: no 5xx, every status code, content type
and body documented.
"""

from __future__ import annotations

import json

import jsonschema
import pytest
import schemathesis
from conftest import TOKEN
from hypothesis import HealthCheck, given, settings
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.jobs.engine import claim, finish
from api.models import JobState

AUTH = {"Authorization": f"Bearer {TOKEN}"}

SEED = {
    ("post", "/create-site"),
    ("post", "/delete-site"),
    ("post", "/wp/upgrade/"),
    ("post", "/wp/upgrade"),
    ("get", "/action/getdomain"),
    ("post", "/action/setdomain"),
    ("post", "/action/deldomain"),
    ("get", "/action/getbak"),
    ("post", "/action/mkbak"),
    ("post", "/action/delbak"),
    ("post", "/action/rollback"),
    ("post", "/action/toggle"),
}
EVERY = SEED | {
    ("post", "/suspend-site"),
    ("post", "/unsuspend-site"),
    ("post", "/action/power"),
    ("post", "/action/ssl-retry"),
    ("post", "/action/login-link"),
    ("post", "/action/admin-password"),
    ("get", "/status"),
    ("get", "/jobs/{job_id}"),
    ("get", "/jobs"),
    ("get", "/health"),
}
EXAMPLES = 20  # per operation and generation mode: the run stays well under a minute
QUERIES = {"/status", "/action/getdomain", "/action/getbak", "/jobs"}


@pytest.fixture
def document(api) -> dict:
    answer = api.get("/openapi.json", token=None)
    assert answer.status_code == 200 and answer.mimetype == "application/json"
    return answer.get_json()


def operations(document: dict):
    for path, item in document["paths"].items():
        for method, operation in item.items():
            yield method, path, operation


def test_the_document_is_valid_openapi_3_1(document):
    assert document["openapi"].startswith("3.1")
    try:
        from openapi_spec_validator import validate
    except ImportError:  # not installed: the OpenAPI 3.1 meta-schema that schemathesis ships
        from schemathesis.specs.openapi.definitions import OPENAPI_31

        jsonschema.Draft202012Validator(OPENAPI_31).validate(document)
    else:
        validate(document)
    # every schema is a JSON Schema 2020-12 schema and every reference resolves
    registry = Registry().with_resource("urn:doc", Resource(document, specification=DRAFT202012))
    resolver = registry.resolver(base_uri="urn:doc")
    text = json.dumps(document)
    for name, schema in document["components"]["schemas"].items():
        jsonschema.Draft202012Validator.check_schema(schema)
        assert f'"#/components/schemas/{name}"' in text or name.endswith("Request"), f"{name} is never used"
    for ref in {part.split('"')[0] for part in text.split('"$ref": "')[1:]}:
        assert resolver.lookup("urn:doc" + ref).contents, ref


def test_it_lists_exactly_the_routes_served(document, app):
    documented = {(method, path) for method, path, _ in operations(document)}
    assert documented >= SEED, SEED - documented
    assert documented == EVERY
    served = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint in ("static", "meta.openapi"):
            continue
        path = rule.rule.replace("<int:", "{").replace("<", "{").replace(">", "}")
        served |= {(method.lower(), path) for method in rule.methods - {"HEAD", "OPTIONS"}}
    assert served == documented


def test_every_operation_is_described(document):
    ids = [operation["operationId"] for _, _, operation in operations(document)]
    assert len(ids) == len(set(ids)), "operationIds are unique"
    for method, path, operation in operations(document):
        where = f"{method.upper()} {path}"
        assert operation["summary"], where
        responses = operation["responses"]
        assert all(r["content"].keys() == {"application/json"} for r in responses.values()), where
        if path == "/health":
            assert operation["security"] == [] and "200" in responses
            continue
        assert operation["security"] == [{"bearer": []}], where
        assert {"401", "503"} <= responses.keys(), where
        assert responses["401"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorAnswer"}
        if method == "post":
            assert operation["requestBody"]["required"] is True, where
            ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
            body = document["components"]["schemas"][ref.rsplit("/", 1)[1]]
            assert body["additionalProperties"] is False, f"{where}: unknown fields are rejected"
            assert "service_id" in body["required"], where
            assert "400" in responses and ("202" in responses or "200" in responses), where
        if path in QUERIES:
            params = {p["name"]: p for p in operation["parameters"] if p["in"] == "query"}
            assert params["service_id"]["required"] is True, where
            assert params["service_id"]["schema"]["type"] == "string", where
    security = document["components"]["securitySchemes"]["bearer"]
    assert (security["type"], security["scheme"]) == ("http", "bearer")


def test_plans_come_from_the_inventory(document):
    schemas = document["components"]["schemas"]
    for name in ("CreateSiteRequest", "UpgradeRequest"):
        assert schemas[name]["properties"]["plan"]["enum"] == ["basic", "premium"]


# ---- schemathesis ----------------------------------------------------------------------------------------


@pytest.fixture
def api_schema(app, api, runtime):
    """The served document, with two active sites (17 basic, 18 premium) for generated requests to hit."""
    # No worker runs: a generated `wait` waits all of it. The document states the server's limit, so generated
    # requests keep to one second.
    runtime.settings.max_wait_seconds = 1
    for service_id, plan in ((17, "basic"), (18, "premium")):
        body = {"service_id": service_id, "email": "owner@example.com", "plan": plan, "public_ip": "203.0.113.10"}
        created = api.post("/create-site", body).get_json()
        assert claim(runtime, created["job_id"])
        finish(runtime, created["job_id"], JobState.SUCCEEDED, stats={"vmid": 100000 + service_id})
    return schemathesis.openapi.from_wsgi("/openapi.json", app)


CONFORMANCE = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


def steer(case) -> None:
    """Most generated ids name no service (a documented 404): send two in three to the sites that exist."""
    for container in (case.body, case.query):
        if isinstance(container, dict) and isinstance(container.get("service_id"), int | str):
            digits = str(container["service_id"])
            if digits.isdigit() and int(digits) % 3:
                container["service_id"] = 17 if int(digits) % 3 == 1 else "18"


# schemathesis.pytest.from_fixture() needs pytest < 9 (it sets Node._nodeid): drive its strategies directly.
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda mode: mode.value)
def test_every_answer_keeps_to_the_document(api_schema, subtests, mode):
    tested = []
    for result in api_schema.get_all_operations():
        operation = result.ok()
        tested.append((operation.method, operation.path))
        spec = operation.definition.raw
        if mode == GenerationMode.NEGATIVE and not (spec.get("parameters") or spec.get("requestBody")):
            continue  # nothing to make invalid (GET /health)

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def run(case):
            steer(case)
            case.call_and_validate(headers=AUTH, checks=CONFORMANCE)

        with subtests.test(operation=operation.label):
            run()
    assert len(tested) == len(EVERY)


def test_setdomain_documents_its_dns_answers(document):
    responses = document["paths"]["/action/setdomain"]["post"]["responses"]
    for code in ("domain_quota", "dns_not_pointing", "dns_no_records"):
        assert code in responses["422"]["description"], code
    assert "dns_unavailable" in responses["503"]["description"]
    error = document["components"]["schemas"]["ErrorAnswer"]["properties"]
    assert {"found", "expected"} <= error.keys()


def test_create_site_documents_that_it_makes_nothing_without_room(document):
    responses = document["paths"]["/create-site"]["post"]["responses"]
    assert "no_capacity" in responses["503"]["description"]
    assert "pve_unavailable" in responses["503"]["description"]


def test_the_document_states_this_servers_wait_limit_and_refusals(api, runtime):
    runtime.settings.max_wait_seconds = 42
    document = api.get("/openapi.json", token=None).get_json()
    schemas = document["components"]["schemas"]
    posts = [(path, operation) for method, path, operation in operations(document) if method == "post"]
    assert posts
    for path, operation in posts:
        ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        assert schemas[ref.rsplit("/", 1)[1]]["properties"]["wait"]["maximum"] == 42, path
        responses = operation["responses"]
        assert "application/json" in responses["415"]["description"], path
        assert "too_many_waiters" in responses["503"]["description"], path
        assert "Retry-After" in responses["503"]["headers"], path
    site = {"service_id": 17, "email": "owner@example.com", "plan": "basic", "public_ip": "203.0.113.10"}
    over = api.post("/create-site", {**site, "wait": 43})
    assert over.status_code == 400 and "at most 42 seconds" in over.get_json()["error"]
    for method, path, operation in operations(document):
        if "parameters" in operation and any(p["in"] == "query" for p in operation["parameters"]):
            assert "400" in operation["responses"], f"{method} {path}: a parameter given twice"
