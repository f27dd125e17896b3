"""Under CI=true a skipped test fails the run (a pytest plugin, `pytest_plugins = ["tests.skip_policy"]`).

A test skips when something it needs is missing (root, pdns_server, lxc, ...). On a developer's machine that is a
convenience; in CI it would be a green run that proved less than it says. So when the environment variable CI is
`true`, every skip that is not on ALLOWED_SKIPS below fails the run, and the end of the report lists each one with
its reason (which names the missing tool).

Tests that a pass does not need (the PostgreSQL + Redis pass runs only the tests marked `db`) are deselected by
`-m db`, never skipped, so they do not need an entry here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import pytest

# The skips by design, in one place: test id (or a prefix of it ending in "::" or "[") -> why it may skip in CI.
# Keep it empty unless a skip is the right outcome on the CI machine itself; a missing tool never is.
ALLOWED_SKIPS: dict[str, str] = {}


@dataclass(frozen=True)
class Skip:
    nodeid: str
    reason: str


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() == "true"


def allowed(nodeid: str) -> bool:
    return any(nodeid == key or (key.endswith(("::", "[")) and nodeid.startswith(key)) for key in ALLOWED_SKIPS)


def skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


class SkipPolicy:
    def __init__(self) -> None:
        self.skips: list[Skip] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.skipped and not hasattr(report, "wasxfail"):
            self.skips.append(Skip(report.nodeid, skip_reason(report)))

    def forbidden(self) -> list[Skip]:
        return [skip for skip in self.skips if not allowed(skip.nodeid)] if in_ci() else []

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.forbidden() and session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter) -> None:
        forbidden = self.forbidden()
        if not forbidden:
            return
        terminalreporter.section("skips are failures under CI=true", red=True, bold=True)
        terminalreporter.line(
            f"{len(forbidden)} test(s) skipped and are not on tests/skip_policy.py ALLOWED_SKIPS; "
            "install what they name (scripts/install.sh --dev) or run them where they can run:"
        )
        for skip in forbidden:
            terminalreporter.line(f"  SKIPPED {skip.nodeid}: {skip.reason}")


def pytest_configure(config: pytest.Config) -> None:
    # Only the process that reports decides: with pytest-xdist the workers' reports reach the controller.
    if not hasattr(config, "workerinput"):
        config.pluginmanager.register(SkipPolicy(), "proxmoxwp-skip-policy")
