"""A faithful in-process double of the Nginx Proxy Manager v2.15.1 API, for the `npm_proxy` role's tests and
the local lab.

`NpmState` (lab/npm/state.py) is NPM's behaviour without HTTP, with fault hooks and a view of the hosts nginx
serves; `create_app(state)` (lab/npm/app.py) serves it under `/api` like NPM; request bodies are checked
against NPM's own OpenAPI document (lab/npm/schema.py). `python -m lab.npm` serves one from the command line;
with `--nginx-dir` its enabled hosts are served by a real nginx (lab/npm/proxy.py, docs/lab-proxy.md).
"""

from lab.npm.app import create_app
from lab.npm.schema import NpmSchema, default_schema_path
from lab.npm.state import EnabledHost, HostCertificate, Issuance, NpmError, NpmState, User

__all__ = [
    "EnabledHost",
    "HostCertificate",
    "Issuance",
    "NpmError",
    "NpmSchema",
    "NpmState",
    "User",
    "create_app",
    "default_schema_path",
]
