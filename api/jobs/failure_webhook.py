"""Report a failed job to the operator: a JSON POST to PROXMOXWP_FAILURE_WEBHOOK_URL.

Paymenter's hooks follow a job for a few seconds only (they must not hold its queue), so a create, suspend or
upgrade that fails later would be seen only in the client area. The worker therefore posts every job that ends
failed, with what an operator needs to act: the service, the job, its kind, the step that failed and the reason (the
job's message, from which the job's secrets were already removed). With PROXMOXWP_FAILURE_WEBHOOK_SECRET the body is
signed (`X-ProxmoxWP-Signature: sha256=<hex HMAC-SHA256 of the body>`), as GitHub and Stripe sign theirs.

Delivery is best effort and bounded: a connection refused or a 5xx answer is tried twice more with backoff, each
try given a few seconds, then the failure is logged and the worker goes on. The job's record is written first and
never depends on the report.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from api.config import Settings

log = logging.getLogger(__name__)

TIMEOUT = (3.05, 5)  # connect, read: seconds per try
RETRY = Retry(total=2, backoff_factor=0.5, status_forcelist=(500, 502, 503, 504), allowed_methods=None)
SIGNATURE_HEADER = "X-ProxmoxWP-Signature"
EVENT = "job.failed"


def report_failure(settings: Settings, failure: dict) -> bool:
    """Post `failure` (service_id, job_id, kind, step, reason, finished_at) to the webhook, if one is set; True when
    the receiver took it (2xx)."""
    if settings.failure_webhook_url is None:
        return False
    body = json.dumps({"event": EVENT, **failure}, sort_keys=True).encode()
    headers = {"Content-Type": "application/json", "User-Agent": "proxmoxwp-worker"}
    if settings.failure_webhook_secret is not None:
        headers[SIGNATURE_HEADER] = "sha256=" + sign(settings.failure_webhook_secret.get_secret_value(), body)
    with requests.Session() as http:
        http.mount("http://", HTTPAdapter(max_retries=RETRY))
        http.mount("https://", HTTPAdapter(max_retries=RETRY))
        try:
            answer = http.post(str(settings.failure_webhook_url), data=body, headers=headers, timeout=TIMEOUT)
        except requests.RequestException as exc:
            log.warning("job %s: the failure webhook was not reached: %s", failure.get("job_id"), type(exc).__name__)
            return False
    if not answer.ok:
        log.warning("job %s: the failure webhook answered HTTP %s", failure.get("job_id"), answer.status_code)
    return answer.ok


def sign(secret: str, body: bytes) -> str:
    """The hex HMAC-SHA256 of `body` under `secret`: what the receiver computes to check the signature header."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
