"""The NPM double (lab/npm) through real HTTP: the behaviours of NPM v2.15.1 the `npm_proxy` role relies on.

Every call goes through `Api`, which checks each accepted exchange against NPM's OpenAPI document: the request
body the double accepted must be valid for the request schema, and the answer valid for the response schema.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from api.waiting import wait_for
from lab.npm import NpmSchema, NpmState, default_schema_path
from lab.npm.state import CERTIFICATE_COLUMNS, DEAD_HOST_COLUMNS, HOST_COLUMNS, REDIRECTION_HOST_COLUMNS
from tests.npm import IDENTITY, SECRET, ServedNpm, serve_npm

pytestmark = pytest.mark.cluster

SCHEMA = NpmSchema.load()
TEMPLATES = [
    (re.compile(r"^/nginx/(proxy|dead|redirection)-hosts/\d+(/enable|/disable)?$"), r"/nginx/\1-hosts/{hostID}\2"),
    (re.compile(r"^/nginx/certificates/\d+$"), "/nginx/certificates/{certID}"),
]


def template(path: str) -> str:
    path = path.split("?")[0]
    for pattern, replacement in TEMPLATES:
        if pattern.match(path):
            return pattern.sub(replacement, path)
    return path


class Api:
    """requests against the double as one user; accepted exchanges are checked against the schema."""

    def __init__(self, npm: ServedNpm, token: str | None = None) -> None:
        self.npm = npm
        self.token = token if token is not None else npm.token()

    def call(self, method: str, path: str, body: Any = None, *, check_response: bool = True) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        response = requests.request(method, self.npm.url + path, json=body, headers=headers, timeout=30)
        if response.ok:
            operation = template(path)
            if body is not None:
                assert SCHEMA.request_errors(operation, method, body) == [], f"double accepted an invalid {body}"
            if check_response and SCHEMA.response_schema(operation, method, response.status_code):
                errors = SCHEMA.response_errors(operation, method, response.status_code, response.json())
                assert errors == [], f"{method} {path} answered outside the schema: {errors}"
        return response

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.call("GET", path, **kwargs)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> requests.Response:
        return self.call("POST", path, body, **kwargs)

    def put(self, path: str, body: Any, **kwargs: Any) -> requests.Response:
        return self.call("PUT", path, body, **kwargs)

    def delete(self, path: str) -> requests.Response:
        return self.call("DELETE", path)

    def create_host(self, *domains: str, **fields: Any) -> requests.Response:
        return self.post("/nginx/proxy-hosts", host_body(*domains, **fields))


def host_body(*domains: str, **fields: Any) -> dict[str, Any]:
    return {
        "domain_names": list(domains),
        "forward_scheme": "http",
        "forward_host": "10.10.0.5",
        "forward_port": 80,
        "block_exploits": True,
        "allow_websocket_upgrade": True,
        "locations": [],
        **fields,
    }


def assert_error(response: requests.Response, status: int, message: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"] == {"code": status, "message": message}


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value)


@pytest.fixture
def api(npm: ServedNpm) -> Api:
    return Api(npm)


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


# Health and routing


def test_health_and_unknown_paths_answer_like_npm(api: Api):
    health = api.get("/")
    assert health.json() == {"status": "OK", "setup": True, "version": {"major": 2, "minor": 15, "revision": 1}}
    assert_error(api.get("/nginx/nothing"), 404, "Not Found - /nginx/nothing")
    assert_error(api.call("PATCH", "/nginx/proxy-hosts"), 404, "Not Found - /nginx/proxy-hosts")


# Tokens


def test_token_is_valid_one_day_and_refreshes(npm: ServedNpm):
    response = requests.post(f"{npm.url}/tokens", json={"identity": npm.identity, "secret": npm.secret}, timeout=10)
    assert response.status_code == 200
    assert SCHEMA.response_errors("/tokens", "post", 200, response.json()) == []
    issued = response.json()
    lifetime = parse_time(issued["expires"]) - datetime.now(UTC)
    assert timedelta(hours=23, minutes=59) < lifetime <= timedelta(days=1)

    api = Api(npm, issued["token"])
    renewed = api.get("/tokens").json()
    assert renewed["token"] != issued["token"]
    assert parse_time(renewed["expires"]) >= parse_time(issued["expires"])
    assert Api(npm, renewed["token"]).get("/nginx/proxy-hosts").json() == []
    shorter = api.call("GET", "/tokens?expiry=12h").json()
    assert parse_time(shorter["expires"]) - datetime.now(UTC) <= timedelta(hours=12)
    assert_error(api.get("/tokens?expiry=soon"), 400, "Invalid expiry time: soon")


def test_login_refusals(npm: ServedNpm):
    wrong = requests.post(f"{npm.url}/tokens", json={"identity": npm.identity, "secret": "wrong"}, timeout=10)
    assert_error(wrong, 400, "Invalid email or password")
    extra = {"identity": npm.identity, "secret": npm.secret, "expiry": "10y"}
    assert_error(
        requests.post(f"{npm.url}/tokens", json=extra, timeout=10), 400, "data must NOT have additional properties"
    )
    assert_error(requests.post(f"{npm.url}/tokens", data="x", timeout=10), 400, "Payload is undefined")


def test_expired_tokens_get_400_and_cannot_be_refreshed(npm: ServedNpm, api: Api):
    npm.state.expire_tokens()
    assert_error(api.get("/nginx/proxy-hosts"), 400, "Token has expired")
    assert_error(api.get("/tokens"), 400, "Token has expired")
    assert Api(npm).get("/nginx/proxy-hosts").status_code == 200  # logging in again works


def test_token_lifetime_is_configurable():
    clock = Clock()
    with serve_npm(NpmState(IDENTITY, SECRET, token_lifetime=timedelta(hours=1), clock=clock)) as npm:
        api = Api(npm)
        clock.now += timedelta(minutes=59)
        assert api.get("/nginx/proxy-hosts").status_code == 200
        clock.now += timedelta(minutes=1)
        assert_error(api.get("/nginx/proxy-hosts"), 400, "Token has expired")


def test_unknown_token_is_500_and_no_token_is_404(npm: ServedNpm):
    """NPM: a token it cannot verify raises jsonwebtoken's error (no status: 500); no token at all fails the
    permission check, which since v2.13 falls through to the catch-all 404."""
    assert_error(Api(npm, "not.a.token").get("/nginx/proxy-hosts"), 500, "Internal Error")
    assert_error(Api(npm, "").get("/nginx/proxy-hosts"), 404, "Not Found - /nginx/proxy-hosts")


# Permissions


def test_user_without_proxy_host_permission_gets_404(npm: ServedNpm, api: Api):
    host_id = api.create_host("site.example.com").json()["id"]
    npm.state.add_user("limited@example.com", "limited-secret", proxy_hosts="hidden")
    limited = Api(npm, npm.token("limited@example.com", "limited-secret"))

    assert_error(limited.get("/nginx/proxy-hosts"), 404, "Not Found - /nginx/proxy-hosts")
    assert_error(limited.create_host("other.example.com"), 404, "Not Found - /nginx/proxy-hosts")
    assert_error(limited.get(f"/nginx/proxy-hosts/{host_id}"), 404, f"Not Found - /nginx/proxy-hosts/{host_id}")
    assert_error(
        limited.post(f"/nginx/proxy-hosts/{host_id}/disable"), 404, f"Not Found - /nginx/proxy-hosts/{host_id}/disable"
    )
    assert limited.get("/nginx/certificates").status_code == 200  # other permissions are untouched
    assert [host["domain_names"] for host in npm.state.proxy_hosts()] == [["site.example.com"]]


def test_viewer_reads_but_cannot_change_and_visibility_user_sees_own_hosts(npm: ServedNpm, api: Api):
    api.create_host("admins.example.com")
    npm.state.add_user("viewer@example.com", "viewer-secret", proxy_hosts="view")
    viewer = Api(npm, npm.token("viewer@example.com", "viewer-secret"))
    assert len(viewer.get("/nginx/proxy-hosts").json()) == 1
    assert_error(viewer.create_host("viewer.example.com"), 404, "Not Found - /nginx/proxy-hosts")

    npm.state.add_user("own@example.com", "own-secret", visibility="user")
    own = Api(npm, npm.token("own@example.com", "own-secret"))
    assert own.get("/nginx/proxy-hosts").json() == []
    assert own.create_host("own.example.com").status_code == 201
    assert [host["domain_names"] for host in own.get("/nginx/proxy-hosts").json()] == [["own.example.com"]]


# Proxy hosts


def test_create_answers_before_nginx_and_get_shows_nginx_state(npm: ServedNpm, api: Api):
    created = api.create_host("www.example.com", "example.com", ssl_forced=True)
    assert created.status_code == 201
    host = created.json()
    assert host["domain_names"] == ["example.com", "www.example.com"]  # NPM sorts them
    assert host["meta"] == {}  # the create answer is read before nginx is configured
    assert host["certificate"] is None and host["access_list"] is None
    assert host["owner"]["email"] == IDENTITY
    assert (host["ssl_forced"], host["certificate_id"], host["enabled"]) == (False, 0, True)

    fetched = api.get(f"/nginx/proxy-hosts/{host['id']}").json()
    assert fetched["meta"] == {"nginx_online": True, "nginx_err": None}
    assert "owner" not in fetched and "certificate" not in fetched

    listed = api.get("/nginx/proxy-hosts?expand=certificate,owner,access_list").json()
    assert [(h["id"], h["certificate"], h["owner"]["id"]) for h in listed] == [(host["id"], None, 1)]
    assert_error(api.get("/nginx/proxy-hosts?expand=secrets"), 500, "Internal Error")


def test_locations_is_null_when_not_sent(api: Api):
    """The column has no default: NPM answers null although its response schema says array."""
    body = host_body("bare.example.com")
    del body["locations"]
    host = api.post("/nginx/proxy-hosts", body, check_response=False).json()
    assert host["locations"] is None


def test_a_domain_of_another_host_is_already_in_use(api: Api):
    first = api.create_host("taken.example.com").json()
    api.post(f"/nginx/proxy-hosts/{first['id']}/disable")  # disabled hosts keep their names
    assert_error(api.create_host("new.example.com", "Taken.Example.com"), 400, "Taken.Example.com is already in use")

    second = api.create_host("second.example.com").json()
    clash = api.put(f"/nginx/proxy-hosts/{second['id']}", {"domain_names": ["taken.example.com"]})
    assert_error(clash, 400, "taken.example.com is already in use")
    same = api.put(
        f"/nginx/proxy-hosts/{first['id']}", {"domain_names": ["taken.example.com", "www.taken.example.com"]}
    )
    assert same.status_code == 200


def test_enable_and_disable_refuse_the_state_the_host_is_in(npm: ServedNpm, api: Api):
    host_id = api.create_host("toggle.example.com").json()["id"]
    assert_error(api.post(f"/nginx/proxy-hosts/{host_id}/enable"), 400, "Host is already enabled")
    assert api.post(f"/nginx/proxy-hosts/{host_id}/disable").json() is True
    assert npm.state.enabled_hosts() == []
    assert_error(api.post(f"/nginx/proxy-hosts/{host_id}/disable"), 400, "Host is already disabled")
    assert api.post(f"/nginx/proxy-hosts/{host_id}/enable").json() is True
    assert [host.id for host in npm.state.enabled_hosts()] == [host_id]


def test_update_then_delete(api: Api):
    host_id = api.create_host("move.example.com").json()["id"]
    updated = api.put(f"/nginx/proxy-hosts/{host_id}", {"forward_port": 8080, "advanced_config": ""}).json()
    assert updated["forward_port"] == 8080
    assert updated["meta"] == {"nginx_online": True, "nginx_err": None}
    assert api.delete(f"/nginx/proxy-hosts/{host_id}").json() is True
    assert_error(api.get(f"/nginx/proxy-hosts/{host_id}"), 404, f"Not Found - {host_id}")
    assert api.create_host("move.example.com").status_code == 201  # the name is free again


def test_unknown_ids_are_404(api: Api):
    for method, path in [
        ("GET", "/nginx/proxy-hosts/999"),
        ("DELETE", "/nginx/proxy-hosts/999"),
        ("POST", "/nginx/proxy-hosts/999/enable"),
        ("POST", "/nginx/proxy-hosts/999/disable"),
        ("GET", "/nginx/certificates/999"),
        ("DELETE", "/nginx/certificates/999"),
    ]:
        assert_error(api.call(method, path), 404, "Not Found - 999")
    assert_error(api.put("/nginx/proxy-hosts/999", {"forward_port": 81}), 404, "Not Found - 999")


def test_bodies_with_unknown_fields_are_refused(npm: ServedNpm, api: Api):
    unknown = "data must NOT have additional properties"
    assert_error(api.create_host("x.example.com", ssl_enabled=True), 400, unknown)
    host_id = api.create_host("y.example.com").json()["id"]
    assert_error(api.put(f"/nginx/proxy-hosts/{host_id}", {"forward_port": 81, "name": "y"}), 400, unknown)
    assert_error(api.put(f"/nginx/proxy-hosts/{host_id}", {}), 400, "data must NOT have fewer than 1 properties")
    assert_error(api.post("/nginx/certificates", {"provider": "letsencrypt", "domain_names": [], "x": 1}), 400, unknown)
    wrong_type = api.create_host("z.example.com", forward_port="80")
    assert_error(wrong_type, 400, "data/forward_port must be integer")
    assert [host["domain_names"] for host in npm.state.proxy_hosts()] == [["y.example.com"]]
    assert npm.state.certificates() == []


def test_missing_fields_are_named_like_npm_names_them(api: Api):
    response = api.post("/nginx/proxy-hosts", {"domain_names": ["m.example.com"], "forward_host": "10.0.0.1"})
    assert_error(
        response,
        400,
        "data must have required property 'forward_scheme', data must have required property 'forward_port'",
    )


def test_rows_have_the_columns_the_response_schema_requires():
    """The state's column lists are NPM's tables; the document lists the same fields as required."""
    host = SCHEMA.response_schema("/nginx/proxy-hosts/{hostID}", "get", 200)
    certificate = SCHEMA.response_schema("/nginx/certificates/{certID}", "get", 200)
    assert host is not None and certificate is not None
    assert list(HOST_COLUMNS) == host["required"]
    assert list(CERTIFICATE_COLUMNS) == certificate["required"]
    for path, columns in (("dead-hosts", DEAD_HOST_COLUMNS), ("redirection-hosts", REDIRECTION_HOST_COLUMNS)):
        other = SCHEMA.response_schema(f"/nginx/{path}/{{hostID}}", "get", 200)
        assert other is not None and list(columns) == other["required"]


def test_schema_path_comes_from_the_environment_or_the_package(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("PROXMOXWP_NPM_SCHEMA", raising=False)
    bundled = default_schema_path()
    assert bundled.parts[-3:] == ("lab", "reference", "npm-openapi-v2.15.1.json") and bundled.is_file()
    monkeypatch.setenv("PROXMOXWP_NPM_SCHEMA", "/elsewhere/npm.json")
    assert str(default_schema_path()) == "/elsewhere/npm.json"


def test_letsencrypt_email_and_agree_are_refused_by_the_schema_itself(api: Api):
    for meta in ({"letsencrypt_email": "ops@example.com"}, {"letsencrypt_agree": True}):
        body = {"provider": "letsencrypt", "domain_names": ["le.example.com"], "meta": meta}
        assert SCHEMA.request_errors("/nginx/certificates", "post", body) == [
            "data/meta must NOT have additional properties"
        ]
        response = api.post("/nginx/certificates", body)
        assert_error(response, 400, "data/meta must NOT have additional properties")
    # a proxy host's meta is a free object: NPM takes these there (and passes them to a "new" certificate)
    assert api.create_host("le.example.com", meta={"letsencrypt_agree": True}).status_code == 201


# Certificates


def test_letsencrypt_certificate_is_issued_for_90_days(npm: ServedNpm, api: Api):
    body = {"provider": "letsencrypt", "domain_names": ["www.cert.example.com", "cert.example.com"]}
    created = api.post("/nginx/certificates", body)
    assert created.status_code == 201
    certificate = created.json()
    assert certificate["nice_name"] == "www.cert.example.com, cert.example.com"
    assert certificate["domain_names"] == ["cert.example.com", "www.cert.example.com"]
    validity = parse_time(certificate["expires_on"]) - datetime.now(UTC)
    assert timedelta(days=89) < validity <= timedelta(days=90)
    assert certificate["meta"]["letsencrypt_certificate"]["cn"] == "cert.example.com"

    fetched = api.get(f"/nginx/certificates/{certificate['id']}?expand=owner").json()
    assert fetched["meta"] == {} and fetched["owner"]["email"] == IDENTITY
    assert [c["id"] for c in api.get("/nginx/certificates").json()] == [certificate["id"]]
    assert [(i.domain_names, i.succeeded) for i in npm.state.issuances] == [
        (("cert.example.com", "www.cert.example.com"), True)
    ]


def test_failed_letsencrypt_request_is_500_with_only_certbots_stderr_and_leaves_no_certificate(
    npm: ServedNpm, api: Api
):
    """certbot prints the CA's reasons (Domain/Type/Detail) on stdout, which NPM drops."""
    npm.state.fail_certificates("nodns.example.com")
    response = api.post("/nginx/certificates", {"provider": "letsencrypt", "domain_names": ["nodns.example.com"]})
    assert_error(response, 500, "Internal Error")
    assert response.json()["debug"]["stack"][:3] == [
        "Error: Saving debug log to /data/logs/letsencrypt.log",
        "Some challenges have failed.",
        "Ask for help or search for solutions at https://community.letsencrypt.org. See the logfile "
        "/data/logs/letsencrypt.log or re-run Certbot with -v for more details.",
    ]
    assert "Detail" not in response.text and "NXDOMAIN" not in response.text
    assert npm.state.certificates() == []
    assert npm.state.issuances[-1].succeeded is False
    assert "Detail: DNS problem: NXDOMAIN looking up A for nodns.example.com" in str(npm.state.issuances[-1].output)


def test_new_certificate_on_create_is_attached_but_ssl_switches_are_dropped(npm: ServedNpm, api: Api):
    """NPM clears ssl_forced/http2 before the certificate exists and never restores them (issues #516, #3956)."""
    response = api.create_host("secure.example.com", certificate_id="new", ssl_forced=True, http2_support=True)
    assert response.status_code == 201
    host = response.json()
    assert host["certificate_id"] == host["certificate"]["id"] > 0
    assert host["certificate"]["meta"] == {}
    assert (host["ssl_forced"], host["http2_support"]) == (False, False)
    served = npm.state.enabled_hosts()
    assert served[0].certificate is not None and served[0].certificate.domain_names == ("secure.example.com",)


def test_failed_new_certificate_leaves_the_host_without_certificate(npm: ServedNpm, api: Api):
    npm.state.fail_certificates("late-dns.example.com")
    response = api.create_host("late-dns.example.com", certificate_id="new", ssl_forced=True)
    assert_error(response, 500, "Internal Error")
    assert "debug" not in response.json()  # NPM only adds it on /nginx/certificates paths
    [host] = api.get("/nginx/proxy-hosts").json()
    assert (host["domain_names"], host["certificate_id"], host["meta"]) == (["late-dns.example.com"], 0, {})
    assert npm.state.certificates() == []
    assert npm.state.enabled_hosts() == []  # never configured

    # retrying the create now fails on the name; the way out is to attach a certificate to the host
    assert_error(api.create_host("late-dns.example.com"), 400, "late-dns.example.com is already in use")
    npm.state.clear_faults()
    attached = api.put(f"/nginx/proxy-hosts/{host['id']}", {"certificate_id": "new", "ssl_forced": True}).json()
    assert attached["certificate_id"] > 0 and attached["ssl_forced"] is True
    assert attached["meta"] == {"nginx_online": True, "nginx_err": None}


def test_host_then_certificate_then_attach(npm: ServedNpm, api: Api):
    host_id = api.create_host("flow.example.com").json()["id"]
    certificate = {"provider": "letsencrypt", "domain_names": ["flow.example.com"]}
    cert_id = api.post("/nginx/certificates", certificate).json()["id"]
    body = {"certificate_id": cert_id, "ssl_forced": True, "http2_support": True, "hsts_enabled": True}
    host = api.put(f"/nginx/proxy-hosts/{host_id}", body).json()
    assert host["certificate_id"] == cert_id
    assert host["ssl_forced"] and host["http2_support"] and host["hsts_enabled"]
    [served] = npm.state.enabled_hosts()
    assert served.ssl_forced and served.certificate is not None and served.certificate.id == cert_id


def test_deleting_a_certificate_in_use_breaks_nginx_until_the_host_config_goes(npm: ServedNpm, api: Api):
    """NPM allows it: the host keeps certificate_id, the files are revoked and deleted, and from then on every
    `nginx -t` fails (500 on anything that writes a config) until that host's config file is removed."""
    host = api.create_host("used.example.com", certificate_id="new").json()
    host_id, cert_id = host["id"], host["certificate_id"]
    assert api.delete(f"/nginx/certificates/{cert_id}").json() is True
    assert_error(api.get(f"/nginx/certificates/{cert_id}"), 404, f"Not Found - {cert_id}")
    fetched = api.get(f"/nginx/proxy-hosts/{host_id}?expand=certificate").json()
    assert (fetched["certificate_id"], fetched["certificate"]) == (cert_id, None)
    assert npm.state.enabled_hosts()[0].certificate is None

    assert_error(api.create_host("victim.example.com"), 500, "Internal Error")
    assert "victim.example.com" in [d for h in npm.state.proxy_hosts() for d in h["domain_names"]]  # stored anyway
    # NPM tests nginx before rewriting the config: dropping the certificate is stored but still answers 500
    assert_error(api.put(f"/nginx/proxy-hosts/{host_id}", {"certificate_id": 0}), 500, "Internal Error")
    assert api.post(f"/nginx/proxy-hosts/{host_id}/disable").json() is True
    assert api.post(f"/nginx/proxy-hosts/{host_id}/enable").json() is True
    assert api.get(f"/nginx/proxy-hosts/{host_id}").json()["meta"] == {"nginx_online": True, "nginx_err": None}
    assert api.create_host("after.example.com").status_code == 201


def test_put_enabled_false_keeps_serving_the_written_config(npm: ServedNpm, api: Api):
    """Only POST .../disable removes the config: PUT {"enabled": false} stores the flag and skips nginx."""
    host_id = api.create_host("sticky.example.com").json()["id"]
    assert api.put(f"/nginx/proxy-hosts/{host_id}", {"enabled": False, "forward_port": 81}).json()["enabled"] is False
    [served] = npm.state.enabled_hosts()
    assert (served.id, served.forward_port) == (host_id, 80)
    assert_error(api.post(f"/nginx/proxy-hosts/{host_id}/disable"), 400, "Host is already disabled")
    assert api.post(f"/nginx/proxy-hosts/{host_id}/enable").json() is True
    assert [host.forward_port for host in npm.state.enabled_hosts()] == [81]


# Nginx


def test_nginx_fault_sets_meta_and_keeps_the_host_out_of_nginx(npm: ServedNpm, api: Api):
    npm.state.fail_nginx("broken.example.com")
    host_id = api.create_host("broken.example.com").json()["id"]
    meta = api.get(f"/nginx/proxy-hosts/{host_id}").json()["meta"]
    assert meta["nginx_online"] is False
    assert meta["nginx_err"].endswith("nginx: configuration file /etc/nginx/nginx.conf test failed")
    assert npm.state.enabled_hosts() == []

    npm.state.clear_faults()
    assert api.put(f"/nginx/proxy-hosts/{host_id}", {"forward_port": 81}).json()["meta"]["nginx_online"] is True
    assert [host.id for host in npm.state.enabled_hosts()] == [host_id]


def test_observers_are_told_of_each_change(npm: ServedNpm, api: Api):
    seen: list[list[str]] = []
    unsubscribe = npm.state.subscribe(
        lambda state: seen.append([d for h in state.enabled_hosts() for d in h.domain_names])
    )
    host_id = api.create_host("watched.example.com").json()["id"]
    api.post(f"/nginx/proxy-hosts/{host_id}/disable")
    unsubscribe()
    api.post(f"/nginx/proxy-hosts/{host_id}/enable")
    assert seen == [["watched.example.com"], []]


# Concurrency


def test_parallel_requests_are_serialised(npm: ServedNpm, api: Api):
    names = [f"site{i}.example.com" for i in range(12)] + ["same.example.com"] * 6

    def create(name: str) -> int:
        return api.create_host(name).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(create, names))
    assert statuses[:12] == [201] * 12
    assert sorted(statuses[12:]) == [201] + [400] * 5
    hosts = npm.state.proxy_hosts()
    assert len(hosts) == 13 and len({host["id"] for host in hosts}) == 13


def test_one_certbot_at_a_time_and_other_requests_are_answered_meanwhile(npm: ServedNpm, api: Api):
    """NPM runs certbot without blocking its other requests; a second certificate request while certbot runs
    is refused with certbot's own complaint and stores nothing."""
    npm.state.issuance_seconds = 4
    host_id = api.create_host("busy.example.com").json()["id"]
    with ThreadPoolExecutor(max_workers=1) as pool:
        first = pool.submit(api.post, "/nginx/certificates", {"provider": "letsencrypt", "domain_names": ["a.test"]})
        # the row is stored before certbot runs and shows while it runs
        wait_for(lambda: api.get("/nginx/certificates").json(), timeout=10, what="the certificate being issued")
        assert api.put(f"/nginx/proxy-hosts/{host_id}", {"forward_port": 81}).status_code == 200
        second = api.post("/nginx/certificates", {"provider": "letsencrypt", "domain_names": ["b.test"]})
        assert not first.done()
        assert first.result(timeout=30).status_code == 201
    assert_error(second, 500, "Internal Error")
    assert second.json()["debug"]["stack"][0] == "Error: Another instance of Certbot is already running."
    assert [c["domain_names"] for c in api.get("/nginx/certificates").json()] == [["a.test"]]
    assert (npm.state.certbot_refusals, npm.state.certbot_most_at_once) == (1, 1)


def test_certificate_for_a_refused_host_breaks_nginx_for_every_host_until_it_is_deleted(npm: ServedNpm, api: Api):
    """NPM writes the refused host's config untested for the certificate request; every later `nginx -t`
    fails, so every change answers 500 (reads still work) until that host is deleted."""
    npm.state.fail_nginx("refused.example.com")
    refused_id = api.create_host("refused.example.com").json()["id"]
    other_id = api.create_host("fine.example.com").json()["id"]
    assert api.get(f"/nginx/proxy-hosts/{refused_id}").json()["meta"]["nginx_online"] is False

    request = api.post("/nginx/certificates", {"provider": "letsencrypt", "domain_names": ["refused.example.com"]})
    assert_error(request, 500, "Internal Error")
    config = f"/data/nginx/proxy_host/{refused_id}.conf"
    assert config in "\n".join(request.json()["debug"]["stack"])
    assert npm.state.certificates() == []
    for response in (
        api.create_host("new.example.com"),
        api.put(f"/nginx/proxy-hosts/{other_id}", {"forward_port": 81}),
        api.post("/nginx/certificates", {"provider": "letsencrypt", "domain_names": ["fine.example.com"]}),
        api.post(f"/nginx/proxy-hosts/{other_id}/disable"),
        api.post(f"/nginx/proxy-hosts/{other_id}/enable"),
    ):
        assert_error(response, 500, "Internal Error")
    assert api.get("/nginx/proxy-hosts").status_code == 200
    assert refused_id not in [host.id for host in npm.state.enabled_hosts()]

    assert api.delete(f"/nginx/proxy-hosts/{refused_id}").json() is True
    assert api.create_host("after.example.com").status_code == 201
    assert api.put(f"/nginx/proxy-hosts/{other_id}", {"forward_port": 82}).status_code == 200


def test_interrupted_operations_answer_500_after_their_write(npm: ServedNpm, api: Api):
    npm.state.interrupt_next("create_host")
    assert_error(api.create_host("half.example.com"), 500, "Internal Error")
    [stored] = npm.state.proxy_hosts()
    assert (stored["domain_names"], stored["meta"]) == (["half.example.com"], {})
    assert npm.state.enabled_hosts() == []

    host_id = api.create_host("whole.example.com").json()["id"]  # one-shot: the next create is whole
    npm.state.interrupt_next("update_host")
    assert_error(api.put(f"/nginx/proxy-hosts/{host_id}", {"forward_port": 81}), 500, "Internal Error")
    assert api.get(f"/nginx/proxy-hosts/{host_id}").json()["forward_port"] == 81
    assert [host.forward_port for host in npm.state.enabled_hosts()] == [80]  # the config was not rewritten

    npm.state.interrupt_next("disable_host")
    assert_error(api.post(f"/nginx/proxy-hosts/{host_id}/disable"), 500, "Internal Error")
    assert api.get(f"/nginx/proxy-hosts/{host_id}").json()["enabled"] is False
    assert npm.state.enabled_hosts() == []
    with pytest.raises(ValueError):
        npm.state.interrupt_next("delete_host")


def test_dead_and_redirection_hosts_hold_their_names_against_proxy_hosts(npm: ServedNpm, api: Api):
    dead = api.post("/nginx/dead-hosts", {"domain_names": ["gone.example.com"]})
    assert dead.status_code == 201
    assert dead.json()["owner"]["email"] == IDENTITY
    moved = npm.state.add_redirection_host("moved.example.com", forward_domain_name="example.net")
    assert api.get(f"/nginx/redirection-hosts/{moved['id']}").json()["forward_domain_name"] == "example.net"
    assert [h["domain_names"] for h in api.get("/nginx/dead-hosts").json()] == [["gone.example.com"]]

    assert_error(api.create_host("Gone.example.com"), 400, "Gone.example.com is already in use")
    site_id = api.create_host("site.example.com").json()["id"]
    clash = api.put(f"/nginx/proxy-hosts/{site_id}", {"domain_names": ["moved.example.com"]})
    assert_error(clash, 400, "moved.example.com is already in use")
    assert_error(
        api.post("/nginx/dead-hosts", {"domain_names": ["site.example.com"]}), 400, "site.example.com is already in use"
    )
    redirection = {"domain_names": ["site.example.com"], "forward_scheme": "auto", "forward_http_code": 301}
    assert_error(
        api.post("/nginx/redirection-hosts", {**redirection, "forward_domain_name": "example.org"}),
        400,
        "site.example.com is already in use",
    )
    assert [host.domain_names for host in npm.state.enabled_hosts()] == [("site.example.com",)]

    restored = NpmState(IDENTITY, SECRET)
    restored.restore(npm.state.export())
    assert [h["domain_names"] for h in restored.redirection_hosts()] == [["moved.example.com"]]
    assert [h["domain_names"] for h in restored.dead_hosts()] == [["gone.example.com"]]

    assert api.delete(f"/nginx/dead-hosts/{dead.json()['id']}").json() is True
    assert api.create_host("gone.example.com").status_code == 201
    assert_error(api.get(f"/nginx/dead-hosts/{dead.json()['id']}"), 404, f"Not Found - {dead.json()['id']}")
