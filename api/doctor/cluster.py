"""What only the cluster, Nginx Proxy Manager and the DNS provider can answer: playbooks/doctor.yml, run the way
a job's playbook is run (the configured inventory, its vault password file, the project's ansible.cfg), so that
the doctor sees exactly the connections the jobs will use."""

from __future__ import annotations

from api.doctor.findings import Finding
from api.jobs.runner import operator_run
from api.runtime import Runtime

PLAYBOOK = "doctor.yml"
TIMEOUT_SECONDS = 300


def findings(runtime: Runtime) -> list[Finding]:
    result = operator_run(runtime.settings, PLAYBOOK, TIMEOUT_SECONDS, "doctor")
    reported = (result.stats or {}).get("doctor_checks")
    if result.status != "successful" or not isinstance(reported, list):
        return [
            Finding(
                "doctor",
                False,
                f"playbooks/{PLAYBOOK} could not check the cluster: {result.message or result.status}",
                "Fix what the message says (usually a setting missing from the inventory), then run the doctor again.",
            )
        ]
    return [Finding.of(item) for item in reported]
