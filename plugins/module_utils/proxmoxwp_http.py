# Copyright: ProxmoxWP contributors
# GNU Affero General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/agpl-3.0.txt)
"""requests for the modules that speak HTTP (PVE, DNS, NPM): imported once, its absence reported by the module;
and the retries every one of their sessions makes on a blip of the API it talks to."""

from ansible.module_utils.basic import missing_required_lib

try:
    import requests
    from requests.adapters import HTTPAdapter
    from urllib3.exceptions import ReadTimeoutError
    from urllib3.util.retry import Retry

    REQUESTS_IMPORT_ERROR = None
except ImportError as exc:  # pragma: no cover - reported by the module through require_requests
    requests = None
    HTTPAdapter = object
    REQUESTS_IMPORT_ERROR = exc

# A request is tried at most TRIES times. Between tries urllib3 waits 0 s, then BACKOFF * 2, BACKOFF * 4 ...:
# long enough to ride out a daemon restarting (pveproxy, NPM) or a proxy without its upstream for a moment.
RETRIES = 3
TRIES = RETRIES + 1
BACKOFF = 0.5
# Up to this many seconds are added at random to each wait (urllib3 2's backoff_jitter; 1.26 has none): clients
# that failed together, as writers that met on one database lock, do not all come back at the same moment.
JITTER = 0.5
# The answers of an API that is there but cannot serve now. PVE's 595 (node offline) is not one: it lasts.
RETRY_STATUSES = (500, 502, 503, 504)
# Only these are sent again after the request may have reached the server (a read timeout, a 5xx): sending them
# twice does what sending them once does. A POST is sent again only when it never left (the connection was
# refused or could not be made), as a POST that was received may have acted.
IDEMPOTENT_METHODS = frozenset(("GET", "HEAD", "OPTIONS", "PUT", "DELETE"))


def require_requests(module):
    """Fail the module, saying what to install, when requests is missing."""
    if requests is None:
        module.fail_json(msg=missing_required_lib("requests"), exception=str(REQUESTS_IMPORT_ERROR))


def retry_policy(connect=RETRIES, methods=IDEMPOTENT_METHODS, retries=RETRIES):
    """urllib3's Retry for the modules' sessions: connection errors of any method (`connect` times: a client with
    other hosts to ask gives 0 and goes round them itself); read errors and the statuses of RETRY_STATUSES for
    idempotent methods only (`methods`: an API whose PATCH is idempotent adds it), `retries` times. When the tries
    run out, the last answer is given back as it came (raise_on_status=False), so the caller reports the API's own
    error."""
    options = dict(
        total=retries,
        connect=connect,
        read=retries,
        status=retries,
        other=0,
        allowed_methods=methods,
        status_forcelist=RETRY_STATUSES,
        backoff_factor=BACKOFF,
        raise_on_status=False,
        # a Retry-After could hold a module far beyond its own timeouts
        respect_retry_after_header=False,
    )
    try:
        return Retry(backoff_jitter=JITTER if BACKOFF else 0, **options)
    except TypeError:  # urllib3 1.26
        return Retry(**options)


def retrying_adapter(adapter_class=None, connect=RETRIES, methods=IDEMPOTENT_METHODS, retries=RETRIES, **kwargs):
    """An HTTPAdapter (or adapter_class) that retries by retry_policy(connect, methods, retries)."""
    return (adapter_class or HTTPAdapter)(max_retries=retry_policy(connect, methods, retries), **kwargs)


def retrying_session(session=None, methods=IDEMPOTENT_METHODS, retries=RETRIES):
    """session (a new requests.Session by default) with a retrying adapter for http:// and https:// that sends
    `methods` again after a read error or a status of RETRY_STATUSES, `retries` times."""
    session = session if session is not None else requests.Session()
    adapter = retrying_adapter(methods=methods, retries=retries)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def timed_out(exc):
    """Whether a requests exception is a read timeout (the server took the request and did not answer), also when
    urllib3 gave up after retrying one: requests then raises a ConnectionError around urllib3's MaxRetryError."""
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return True
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(reason, ReadTimeoutError)
