# Copyright: ProxmoxWP contributors
# GNU Affero General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/agpl-3.0.txt)
"""requests for the modules that speak HTTP themselves (DNS, NPM): imported once, its absence reported by the module."""

from ansible.module_utils.basic import missing_required_lib

try:
    import requests

    REQUESTS_IMPORT_ERROR = None
except ImportError as exc:  # pragma: no cover - reported by the module through require_requests
    requests = None
    REQUESTS_IMPORT_ERROR = exc


def require_requests(module):
    """Fail the module, saying what to install, when requests is missing."""
    if requests is None:
        module.fail_json(msg=missing_required_lib("requests"), exception=str(REQUESTS_IMPORT_ERROR))
