"""Build the golden image the way the lab does: playbooks/template_build.yml with the configured inventory (and its
vault password file), run like a job's playbook; the archive's path comes back through the play's set_stats."""

from __future__ import annotations

from pathlib import Path

from api.config import Settings
from api.jobs.runner import operator_run

PLAYBOOK = "template_build.yml"
TIMEOUT_SECONDS = 1800  # a first build installs packages in the build container: minutes, not seconds


class BuildError(Exception):
    pass


def build(settings: Settings) -> Path:
    """The archive the playbook wrote; BuildError with the playbook's reason when it failed."""
    result = operator_run(settings, PLAYBOOK, TIMEOUT_SECONDS, "image-build")
    archive = (result.stats or {}).get("template_archive")
    if result.status != "successful" or not archive:
        raise BuildError(f"playbooks/{PLAYBOOK} failed: {result.message or result.status}")
    return Path(archive)
