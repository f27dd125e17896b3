"""A job that fails after billing stopped following it reaches the operator: the worker posts it to the failure
webhook (api/jobs/failure_webhook.py), signed, with the service, the step and the reason; a webhook that is down
costs the worker a warning, never the job's record."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import wait_job, wait_until
from test_jobs import create_active, power

from lab.ports import free_port

pytestmark = pytest.mark.db

SECRET = "webhook-secret-0123456789"


class Receiver(ThreadingHTTPServer):
    """An operator's endpoint on loopback, keeping what it was sent."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.received: list[tuple[dict[str, str], bytes]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hooks/proxmoxwp"


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append((dict(self.headers), body))  # type: ignore[attr-defined]
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args) -> None:  # quiet
        pass


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_a_job_that_fails_later_reaches_the_webhook_signed_with_its_step_and_reason(
    api, start_worker, control_dir, receiver
):
    start_worker(PROXMOXWP_FAILURE_WEBHOOK_URL=receiver.url, PROXMOXWP_FAILURE_WEBHOOK_SECRET=SECRET)
    create_active(api, 81)
    assert receiver.received == [], "a job that succeeds is not reported"

    (control_dir / "fail-site_power").write_text("node pve-test-2 is offline")
    started = power(api, 81, "restart")  # answered at once, as billing's hook is: the failure comes later
    assert wait_job(api, started["job_id"])["state"] == "failed"
    wait_until(lambda: receiver.received, timeout=30, what="the failure to reach the webhook")

    (headers, body), *more = receiver.received
    assert more == []
    report = json.loads(body)
    assert report == {
        "event": "job.failed",
        "service_id": 81,
        "job_id": started["job_id"],
        "kind": "power",
        "step": "Fail when the test asks for it",
        "reason": "node pve-test-2 is offline",
        "finished_at": report["finished_at"],
    }
    expected = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert headers["X-ProxmoxWP-Signature"] == f"sha256={expected}"
    assert SECRET not in body.decode()


def test_a_webhook_that_is_down_leaves_the_failed_job_recorded_and_the_worker_going(api, start_worker, control_dir):
    down = f"http://127.0.0.1:{free_port()}/hooks"
    worker = start_worker(PROXMOXWP_FAILURE_WEBHOOK_URL=down, PROXMOXWP_FAILURE_WEBHOOK_SECRET=SECRET)
    create_active(api, 82)
    (control_dir / "fail-site_power").write_text("node pve-test-3 is offline")
    failed = power(api, 82, "restart")
    assert wait_job(api, failed["job_id"])["state"] == "failed"
    (control_dir / "fail-site_power").unlink()
    assert wait_job(api, power(api, 82, "restart")["job_id"])["state"] == "succeeded", "the worker went on"
    log = worker.log.read_text()
    assert f"job {failed['job_id']}: the failure webhook was not reached: ConnectionError" in log
    assert SECRET not in log and down not in log
