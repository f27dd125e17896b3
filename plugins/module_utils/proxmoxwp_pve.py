# Copyright: ProxmoxWP contributors
# GNU Affero General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/agpl-3.0.txt)
"""The Proxmox VE API client shared by the proxmoxwp_* modules.

One connection option (`api`) for every module, each of whose settings can also come from a PROXMOXWP_PVE_*
environment variable (a play sets it once with module_defaults for group/proxmoxwp.hosting.proxmox), and a client
on proxmoxer that:

- sends booleans as 1/0 and drops None values;
- turns every error into PveApiError with one sentence an operator can act on (PVE's own error text, the
  HTTP status, the per-field errors), never containing the token secret;
- polls every UPID until the task stopped and requires exitstatus OK (proxmoxer's Tasks.blocking_status
  returns None on timeout and ignores the exit status);
- waits for a container to reach a status, bounded by task_timeout;
- pins the server certificate by its SHA-256 fingerprint when asked (urllib3 assert_fingerprint), which
  works without a CA;
- retries a request on a blip of the API (proxmoxwp_http.retry_policy: connection errors, and for idempotent
  methods read timeouts and 500/502/503/504), never a POST that may have been received;
- talks to the first of several API hosts that answers (`api.hosts`, proxmoxwp_pve_hosts: which failures move on
  to the next host, and why an answer never does), and keeps to the one that answered.
"""

import re
import time

from ansible.module_utils.basic import missing_required_lib
from ansible_collections.proxmoxwp.hosting.plugins.module_utils.proxmoxwp_env import from_environment, missing_settings
from ansible_collections.proxmoxwp.hosting.plugins.module_utils.proxmoxwp_http import (
    BACKOFF,
    IDEMPOTENT_METHODS,
    RETRIES,
    TRIES,
    retrying_adapter,
    timed_out,
)
from ansible_collections.proxmoxwp.hosting.plugins.module_utils.proxmoxwp_pve_hosts import (
    HOST_OPTIONS,
    HostOrder,
    api_hosts,
    sent_nothing,
)

try:
    import requests
    from proxmoxer import ProxmoxAPI
    from proxmoxer.core import ResourceException
    from requests.adapters import HTTPAdapter

    HAS_PROXMOXER = True
    PROXMOXER_IMPORT_ERROR = None
except ImportError as exc:  # pragma: no cover - reported by the module through missing_required_lib
    HAS_PROXMOXER = False
    PROXMOXER_IMPORT_ERROR = exc
    HTTPAdapter = object

# The environment variable each connection setting falls back on when the task (or module_defaults) leaves it out.
API_ENVIRONMENT = {
    "host": "PROXMOXWP_PVE_HOST",
    "port": "PROXMOXWP_PVE_PORT",
    "token_id": "PROXMOXWP_PVE_TOKEN_ID",
    "token_secret": "PROXMOXWP_PVE_TOKEN_SECRET",
    "validate_certs": "PROXMOXWP_PVE_VALIDATE_CERTS",
    "ca_file": "PROXMOXWP_PVE_CA_FILE",
    "fingerprint": "PROXMOXWP_PVE_FINGERPRINT",
}
# Needed, but not `required`: they may come from the environment, and connect() says which is missing and where
# it could come from.
API_NEEDED = {name: API_ENVIRONMENT[name] for name in ("host", "token_id", "token_secret")}
API_OPTIONS = {
    "host": from_environment(API_ENVIRONMENT["host"], type="str"),
    "port": from_environment(API_ENVIRONMENT["port"], type="int", default=8006),
    "token_id": from_environment(API_ENVIRONMENT["token_id"], type="str"),
    "token_secret": from_environment(API_ENVIRONMENT["token_secret"], type="str", no_log=True),
    "validate_certs": from_environment(API_ENVIRONMENT["validate_certs"], type="bool", default=True),
    "ca_file": from_environment(API_ENVIRONMENT["ca_file"], type="path"),
    "fingerprint": from_environment(API_ENVIRONMENT["fingerprint"], type="str"),
    "timeout": {"type": "int", "default": 30},
    # Several nodes of the cluster, asked in turn when one does not answer; replaces host.
    "hosts": {"type": "list", "elements": "dict", "options": HOST_OPTIONS},
}
# With several hosts, a connection not made within this many seconds (or api.timeout if shorter) moves on to the
# next: a node's pveproxy on the operator's network connects in milliseconds, and every module starts with the first.
CONNECT_TIMEOUT = 10

TOKEN_ID = re.compile(r"^[^!@\s]+@[^!@\s]+![A-Za-z][A-Za-z0-9._-]*$")
FINGERPRINT = re.compile(r"^[0-9a-f]{64}$")
TASK_LOG_LINES = 10
# A task's status (and a container's, while it starts or stops) is polled 0.1 s after it began, then 1.5 times later
# each time up to once a second: most of a site's tasks end within a second or two, and every job waits for them.
POLL_FIRST = 0.1
POLL_MOST = 1.0
UPID = re.compile(r"^UPID:([^:]+):")


def api_argument_spec(**module_options):
    """The argument spec of a module: `api`, `task_timeout` and the module's own options.

    `api` may be left out: apply_defaults makes it a dict all the same, so that its settings' environment fallbacks
    apply."""
    spec = {
        "api": {"type": "dict", "options": API_OPTIONS, "apply_defaults": True},
        "task_timeout": {"type": "int", "default": 900},
    }
    spec.update(module_options)
    return spec


class PveApiError(Exception):
    """A failed call to the PVE API, with a message fit for an operator (never the token secret)."""

    def __init__(self, message, status=None, pve_message=None, errors=None):
        super().__init__(message)
        self.message = message
        self.status = status
        # PVE's own text (HTTP reason phrase or task exit status) and per-field errors, for callers that
        # must tell errors apart (e.g. "already exists").
        self.pve_message = pve_message or message
        self.errors = errors or {}


def clean_params(params):
    """Parameters as PVE takes them: None dropped, booleans as 1/0."""
    out = {}
    for key, value in params.items():
        if value is None:
            continue
        out[key] = int(value) if isinstance(value, bool) else value
    return out


class MultipartFile:
    """A multipart/form-data body of form fields and one file, read from disk as it is sent (requests streams a
    body with read() and len()), so a template of some hundred MiB never sits in memory."""

    def __init__(self, fields, filepath, filename=None):
        import os
        import uuid

        boundary = uuid.uuid4().hex
        self.content_type = "multipart/form-data; boundary=" + boundary
        head = b""
        for name, value in fields.items():
            head += (f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n').encode()
        # PVE takes the file's name from the part (pveproxy, as curl -F filename=@file sends it), not a field.
        filename = filename or os.path.basename(filepath)
        head += (
            f'--{boundary}\r\nContent-Disposition: form-data; name="filename"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        self._parts = [head, None, f"\r\n--{boundary}--\r\n".encode()]
        self._file = open(filepath, "rb")  # noqa: SIM115 - closed by close(), after the request
        self._length = len(head) + os.fstat(self._file.fileno()).st_size + len(self._parts[2])

    def __len__(self):
        return self._length

    def read(self, size=-1):
        while self._parts:
            part = self._parts[0]
            chunk = self._file.read(size) if part is None else part
            if chunk:
                if part is not None:
                    self._parts[0] = chunk[size:] if size and size > 0 else b""
                    chunk = chunk[:size] if size and size > 0 else chunk
                return chunk
            self._parts.pop(0)
        return b""

    def close(self):
        self._file.close()


def normalise_fingerprint(text):
    """The SHA-256 fingerprint as 64 lower-case hex digits, or ValueError."""
    value = re.sub(r"[\s:]", "", str(text)).lower()
    if not FINGERPRINT.match(value):
        raise ValueError(
            "api.fingerprint must be the SHA-256 fingerprint of the PVE certificate: 64 hex digits, colons "
            "optional (for example from `openssl x509 -noout -fingerprint -sha256`)"
        )
    return value


def _pretty_fingerprint(hexdigits):
    return ":".join(hexdigits[i : i + 2] for i in range(0, len(hexdigits), 2)).upper()


class _FingerprintAdapter(HTTPAdapter):
    """An HTTPAdapter whose connections accept only a certificate with this SHA-256 fingerprint (any, if None)."""

    def __init__(self, fingerprint, **kwargs):
        self._fingerprint = fingerprint
        super().__init__(**kwargs)

    def init_poolmanager(self, connections, maxsize, block=False, **pool_kwargs):
        if self._fingerprint:
            pool_kwargs["assert_fingerprint"] = self._fingerprint
        super().init_poolmanager(connections, maxsize, block=block, **pool_kwargs)

    def proxy_manager_for(self, proxy, **proxy_kwargs):
        if self._fingerprint:
            proxy_kwargs["assert_fingerprint"] = self._fingerprint
        return super().proxy_manager_for(proxy, **proxy_kwargs)


def _innermost(exc):
    """The deepest cause of a requests/urllib3 exception (MaxRetryError.reason, args[0], ...)."""
    seen = set()
    while id(exc) not in seen:
        seen.add(id(exc))
        nxt = getattr(exc, "reason", None)
        if not isinstance(nxt, BaseException):
            nxt = exc.args[0] if exc.args and isinstance(exc.args[0], BaseException) else None
        if nxt is None:
            break
        exc = nxt
    return exc


def _pin_mismatch(text):
    """What a failed pin means, from urllib3's words, or None."""
    found = re.search(r'Fingerprints did not match\. Expected "([0-9a-f]+)", got "([0-9a-f]+)"', text)
    if not found:
        return None
    got, expected = _pretty_fingerprint(found.group(2)), _pretty_fingerprint(found.group(1))
    return f"the server certificate's SHA-256 fingerprint is {got}, not the pinned api.fingerprint {expected}"


def _reason_text(exc):
    cause = _innermost(exc)
    if getattr(cause, "verify_message", None):
        return f"certificate verify failed: {cause.verify_message}"
    text = str(cause)
    # "HTTPSConnectionPool(host=..., port=...): Max retries exceeded ... (Caused by X('reason'))" -> reason; the
    # connection that failed (urllib3 1: "<...HTTPSConnection object at 0x...>: ", 2: "HTTPSConnection(host=...): ") is
    # named by the message around it.
    text = re.sub(r"^(<[^>]+>|HTTPS?Connection\([^)]*\)):\s*", "", text)
    return re.sub(r"\s*\(_ssl\.c:\d+\)", "", text).strip()


class PveClient:
    """A connection to the PVE API with the conventions of the proxmoxwp modules."""

    def __init__(self, api, task_timeout=900, warn=None):
        if not HAS_PROXMOXER:
            raise PveApiError("the proxmoxwp modules need the Python packages proxmoxer and requests")
        self.timeout = api.get("timeout") or 30
        self.task_timeout = task_timeout
        self._warn = warn or (lambda message: None)
        self._secret = api["token_secret"]
        token_id = api["token_id"]
        if not TOKEN_ID.match(token_id or ""):
            raise PveApiError("api.token_id must look like user@realm!tokenname, for example proxmoxwp@pve!ansible")
        try:
            self.hosts = api_hosts(api)
        except ValueError as exc:
            raise PveApiError(str(exc)) from None
        if api.get("hosts") and api.get("host") and all(h.host != api["host"] for h in self.hosts):
            self._warn("api.host {} is not asked: api.hosts lists the hosts".format(api["host"]))
        several = len(self.hosts) > 1
        self._order = HostOrder(len(self.hosts))
        # One host: urllib3 tries a connection again itself. Several: the client goes round them instead, as often.
        self._rounds = TRIES if several else 1
        self._connect_timeout = min(self.timeout, CONNECT_TIMEOUT) if several else self.timeout
        self._reported = set()
        self._apis = [
            self._session(host, token_id, api.get("validate_certs", True), 0 if several else RETRIES)
            for host in self.hosts
        ]

    def _session(self, host, token_id, validate_certs, connect_retries):
        """proxmoxer's API object for one host, its certificate checked by the host's pin or CA."""
        user, token_name = token_id.split("!", 1)
        fingerprint = None
        if host.fingerprint:
            try:
                fingerprint = normalise_fingerprint(host.fingerprint)
            except ValueError as exc:
                raise PveApiError(str(exc)) from None
        if fingerprint:
            # The pin is the verification; a CA file, if given, is checked as well.
            verify = host.ca_file or False
        elif validate_certs:
            verify = host.ca_file or True
        else:
            verify = False
        api = ProxmoxAPI(
            host.host,
            port=host.port,
            user=user,
            token_name=token_name,
            token_value=self._secret,
            verify_ssl=verify,
            timeout=(self._connect_timeout, self.timeout),
            service="PVE",
        )
        # proxmoxer has no public accessor for its requests session; _store is where it keeps it.
        api._store["session"].mount(
            "https://", retrying_adapter(_FingerprintAdapter, connect=connect_retries, fingerprint=fingerprint)
        )
        return api

    @property
    def where(self):
        """host:port of the host asked first: the one that answered last."""
        return self.hosts[self._order.current].where

    # ------------------------------------------------------------------ requests

    def _scrub(self, text):
        text = str(text)
        return text.replace(self._secret, "********") if self._secret else text

    def call(self, method, path, /, **params):
        """One API request; the `data` of PVE's answer, or PveApiError. Positional-only: a parameter may be called
        `path` (GET /access/permissions)."""
        path = "/" + path.strip("/")
        params = clean_params(params)
        if method not in ("GET", "POST", "PUT", "DELETE"):
            raise ValueError("unsupported method " + method)

        def send(api):
            return getattr(api(path.lstrip("/")), method.lower())(**params)

        return self._on_a_host(method, path, send)

    def _on_a_host(self, method, path, send):
        """send(proxmoxer API of a host) to the host that answered last, and on to the next ones while a host gets
        nothing (sent_nothing), in rounds as urllib3 retries a single host. Any answer ends it: PveApiError for an
        error, with what an earlier host did reported as a warning."""
        missed = []
        for round_ in range(self._rounds):
            if round_ > 1:
                time.sleep(BACKOFF * 2 ** (round_ - 1))
            for index in self._order.order():
                host = self.hosts[index]
                try:
                    result = send(self._apis[index])
                except ResourceException as exc:
                    self._answered(index, missed)
                    raise self._refused(method, path, exc) from None
                except requests.exceptions.RequestException as exc:
                    if self._rounds > 1 and sent_nothing(exc):
                        missed.append((host, exc))
                        continue
                    raise self._failed(method, path, exc, host) from None
                self._answered(index, missed)
                return result
        raise self._none_answered(method, path, missed)

    def _answered(self, index, missed):
        """Keep to the host that answered; warn once per host about each one that did not."""
        self._order.answered(index)
        for host, exc in missed:
            if host.where != self.where and host.where not in self._reported:
                self._reported.add(host.where)
                self._warn(
                    f"The Proxmox VE API at {host.where} did not answer ({self._why(exc)}); "
                    f"{self.where} answered instead"
                )

    def _failed(self, method, path, exc, host):
        """The PveApiError of a request to host that got no answer, or one that may have been received."""
        if isinstance(exc, requests.exceptions.SSLError):
            return PveApiError(self._tls_message(exc, host.where))
        if not timed_out(exc):
            return self._unreachable(method, path, exc, host.where)
        tries = f"; tried {TRIES} times" if method in IDEMPOTENT_METHODS else ""
        unknown = "" if method == "GET" else "; whether PVE carried out the request is unknown"
        return PveApiError(
            f"Proxmox VE API at {host.where} did not answer within {self.timeout} s ({method} {path}{tries}){unknown}"
        )

    def _none_answered(self, method, path, missed):
        last = {}
        for host, exc in missed:
            last[host.where] = self._why(exc)
        listed = "; ".join(f"{where}: {reason}" for where, reason in last.items())
        text = f"No Proxmox VE API host answered ({method} {path}; tried each {self._rounds} times): {listed}"
        if any(isinstance(exc, requests.exceptions.SSLError) for _host, exc in missed):
            text += (
                " (a host whose certificate was refused needs the CA that signed it in ca_file, or its own "
                "fingerprint in its api.hosts entry)"
            )
        return PveApiError(text)

    def _why(self, exc):
        """Why a host did not answer, in a few words."""
        text = _reason_text(exc)
        return _pin_mismatch(text) or self._scrub(text)

    def _unreachable(self, method, path, exc, where):
        """The PveApiError of a request that got no answer (other than a timeout)."""
        if isinstance(exc, requests.exceptions.ConnectionError):
            return PveApiError(
                f"Could not connect to the Proxmox VE API at {where} ({method} {path}): "
                f"{self._scrub(_reason_text(exc))}"
            )
        return PveApiError(
            f"Request to the Proxmox VE API at {where} failed ({method} {path}): {self._scrub(_reason_text(exc))}"
        )

    def get(self, path, /, **params):
        return self.call("GET", path, **params)

    def post(self, path, /, **params):
        return self.call("POST", path, **params)

    def put(self, path, /, **params):
        return self.call("PUT", path, **params)

    def delete(self, path, /, **params):
        return self.call("DELETE", path, **params)

    def upload(self, path, filepath, /, **fields):
        """POST a file as PVE's upload methods take it (multipart/form-data, the file last as the part `filename`,
        named by fields["filename"] or its own name), streamed from disk; the `data` of PVE's answer (a UPID), or
        PveApiError. Not retried: the file may have arrived."""
        path = "/" + path.strip("/")
        fields = clean_params(fields)
        body = MultipartFile(fields, filepath, fields.pop("filename", None))

        def send(api):
            session = api._store["session"]
            # requests.Session's own request: proxmoxer's would take the body for a dict of form fields.
            return requests.Session.request(
                session,
                "POST",
                api._store["base_url"] + path,
                data=body,
                headers={"Content-Type": body.content_type},
                verify=session.auth.verify_ssl,
                timeout=(self._connect_timeout, self.task_timeout),
            )

        try:
            response = self._on_a_host("POST", path, send)
        finally:
            body.close()
        if response.status_code >= 400:
            try:
                errors = response.json().get("errors")
            except ValueError:
                errors = None
            raise self._refused("POST", path, ResourceException(response.status_code, "", response.reason, errors))
        return response.json().get("data")

    def _refused(self, method, path, exc):
        reason = str(exc.content or "").strip() or str(exc.status_message or "")
        errors = exc.errors if isinstance(exc.errors, dict) else {}
        fields = "; ".join(f"{k}: {str(v).strip()}" for k, v in sorted(errors.items()) if k != "errors")
        text = f"PVE refused {method} {path}: {reason}"
        if fields:
            text += f" ({fields})"
        text += f" [HTTP {exc.status_code}]"
        if exc.status_code == 401:
            text += "; check api.token_id and api.token_secret"
        elif exc.status_code == 403:
            text += "; the API token lacks a privilege (PVE tokens with privilege separation need their own ACL)"
        return PveApiError(self._scrub(text), status=exc.status_code, pve_message=reason, errors=errors)

    def _tls_message(self, exc, where):
        text = _reason_text(exc)
        pin = _pin_mismatch(text)
        if pin:
            return f"TLS verification of the Proxmox VE API at {where} failed: {pin}"
        return (
            f"TLS verification of the Proxmox VE API at {where} failed: {self._scrub(text)} "
            "(give api.ca_file with the CA that signed the PVE certificate, or pin it with api.fingerprint)"
        )

    # --------------------------------------------------------------------- tasks

    @staticmethod
    def is_upid(value):
        return isinstance(value, str) and value.startswith("UPID:")

    def wait_task(self, upid, what=None, timeout=None):
        """Poll a task until it stopped; PveApiError unless its exit status is OK.

        An exit status "WARNINGS: n" is a success with warnings (PVE's own UI shows it so): the warning lines
        of the log are reported through the module's warn().
        """
        found = UPID.match(upid or "")
        if not found:
            raise PveApiError(f"PVE answered {upid!r} where a task id (UPID) was expected")
        node = found.group(1)
        what = what or "task"
        timeout = self.task_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        delay = POLL_FIRST
        while True:
            status = self.get(f"/nodes/{node}/tasks/{upid}/status")
            if status.get("status") == "stopped":
                break
            if time.monotonic() >= deadline:
                raise PveApiError(
                    f"PVE task {upid} ({what}) was still running after {timeout} s (task_timeout); "
                    "it was not cancelled, see its log in PVE"
                )
            time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 1.5, POLL_MOST)
        exitstatus = str(status.get("exitstatus") or "")
        if exitstatus == "OK":
            return status
        if exitstatus.startswith("WARNINGS"):
            lines = [line for line in self.task_log(node, upid) if "warn" in line.lower()]
            self._warn("PVE task {} ({}) ended with {}: {}".format(upid, what, exitstatus, " | ".join(lines)))
            return status
        lines = self.task_log(node, upid)
        text = "PVE task {} failed: {}".format(what, exitstatus or "no exit status")
        if lines:
            text += ". Last lines of its log: " + " | ".join(lines[-TASK_LOG_LINES:])
        text += f" (task {upid})"
        raise PveApiError(self._scrub(text), pve_message=exitstatus)

    def task_log(self, node, upid):
        """The lines of a task log (as much as one request gives), or [] if it cannot be read."""
        try:
            entries = self.get(f"/nodes/{node}/tasks/{upid}/log", start=0, limit=5000) or []
        except PveApiError:
            return []
        return [str(e.get("t", "")) for e in entries if str(e.get("t", "")).strip()]

    def run(self, method, path, what, **params):
        """A mutating request: when PVE answers a UPID, wait for the task. Returns PVE's answer."""
        result = self.call(method, path, **params)
        if self.is_upid(result):
            self.wait_task(result, what)
        return result

    # ---------------------------------------------------------- container status

    def ct_status(self, node, vmid):
        return self.get(f"/nodes/{node}/lxc/{vmid}/status/current")

    def wait_ct_status(self, node, vmid, wanted, timeout=None, resolve_node=None):
        """Poll the container's status/current until `status` is wanted; returns the last status.

        resolve_node(vmid) is asked for the container's node again when status/current fails (the HA
        manager may have moved it).
        """
        timeout = self.task_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        delay = POLL_FIRST
        seen = None
        while True:
            try:
                current = self.ct_status(node, vmid)
                seen = current.get("status")
                if seen == wanted:
                    return current
            except PveApiError:
                if resolve_node is None:
                    raise
                node = resolve_node(vmid)
            if time.monotonic() >= deadline:
                raise PveApiError(
                    "CT {} on {} did not become {} within {} s (task_timeout); last status seen: {}".format(
                        vmid, node, wanted, timeout, seen or "none"
                    )
                )
            time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 1.5, POLL_MOST)


def connect(module):
    """A PveClient for an AnsibleModule with the api/task_timeout options; fails the module on bad options."""
    if not HAS_PROXMOXER:
        module.fail_json(msg=missing_required_lib("proxmoxer and requests"), exception=str(PROXMOXER_IMPORT_ERROR))
    api = module.params["api"]
    # api.hosts stands for api.host
    given = dict(api, host=api.get("host") or api.get("hosts"))
    missing = missing_settings("The connection to the Proxmox VE API", "api", "proxmox", given, API_NEEDED)
    if missing:
        module.fail_json(msg=missing)
    try:
        return PveClient(module.params["api"], module.params["task_timeout"], warn=module.warn)
    except PveApiError as exc:
        module.fail_json(msg=exc.message)
    return None
