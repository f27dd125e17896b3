"""pytest fixtures serving the project's fake PVE: pve_pki, pve and pve_api.

Register with `pytest_plugins = ["tests.pve.plugin"]` in tests/conftest.py (needs the repository root on
sys.path: pyproject's `pythonpath = ["."]`). Options per test: @pytest.mark.pve(time_scale=0.01, ha_interval=0.05,
ha_manager_enabled=False).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lab.pve.cluster_pki import ClusterPki
from lab.pve.fake import ProjectPve
from lab.pve.serving import HOST, ServedPve

OPTIONS = {"time_scale": 0, "ha_interval": 0.1, "ha_manager_enabled": True}


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "pve(time_scale=0, ha_interval=0.1, ha_manager_enabled=True): options for the `pve` fixture"
    )


def _options(request) -> dict:
    options = dict(OPTIONS)
    marker = request.node.get_closest_marker("pve")
    if marker:
        unknown = set(marker.kwargs) - set(options)
        if unknown or marker.args:
            raise pytest.UsageError(f"pve marker takes {sorted(OPTIONS)}, not {sorted(unknown) or marker.args}")
        options.update(marker.kwargs)
    return options


@pytest.fixture(scope="session")
def pve_pki(tmp_path_factory) -> ClusterPki:
    """One cluster CA for every fake of the session, and each node's certificate (for 127.0.0.1, localhost and the
    node's name) signed by it."""
    return ClusterPki(tmp_path_factory.mktemp("pve-pki"))


@pytest.fixture
def pve(request, pve_pki) -> Iterator[ServedPve]:
    """A started ProjectPve for one test, stopped at teardown whatever the outcome.

    Yields the ServedPve: .pve is the model (change it through .call), .url/.host/.port/.cafile/.fingerprint of the
    first node's endpoint, .endpoints of every node (stop_endpoint, start_endpoint, pve_api_hosts).
    """
    options = _options(request)
    model = ProjectPve(host=HOST, port=0)
    model.ha_interval = options["ha_interval"]
    model.ha_manager_enabled = options["ha_manager_enabled"]
    served = ServedPve(model, pve_pki, time_scale=options["time_scale"])
    try:
        yield served
    finally:
        served.stop()


@pytest.fixture
def pve_api(pve) -> dict:
    """Connection settings for the project's Ansible modules, pointing at the `pve` fixture (token auth, CA file)."""
    return pve.pve_api()
