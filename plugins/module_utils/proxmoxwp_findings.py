# Copyright: ProxmoxWP contributors
# GNU Affero General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/agpl-3.0.txt)
"""The one shape of what the check modules (proxmoxwp_*_check, playbooks/doctor.yml) report for each check."""


def finding(check_id, ok, summary, fix=""):
    """One check: its id, whether it passed, what was found, and how to fix it (empty when it passed)."""
    return {"id": check_id, "ok": bool(ok), "summary": summary, "fix": "" if ok else fix}
