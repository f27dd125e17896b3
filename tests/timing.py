"""Where the time of a pytest run goes, by tier (a pytest plugin, `pytest_plugins = ["tests.timing"]`).

Each test belongs to one tier, the first of TIERS whose marker it carries (`containers`, `collection`, `cluster`,
`db`), or `other`. At the end the report has a section with, per tier, the number of tests, the sum of their times
(setup, call and teardown) and the tier's span (from the start of its first test to the end of its last: with
several workers the span is what the tier costs the run). With PROXMOXWP_TEST_TIMES=<file> the same figures, the 15
slowest tests and the timeline of the run (each test's worker, start and end) are written to that file as JSON:
scripts/test.sh prints them in its table at the end.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

TIERS = ("containers", "collection", "cluster", "db")
SLOWEST = 15


@dataclass
class TestTime:
    tier: str
    start: float
    stop: float
    seconds: float = 0.0
    worker: str = ""


@dataclass
class RunTimes:
    started: float = field(default_factory=time.time)
    tests: dict[str, TestTime] = field(default_factory=dict)

    def add(self, report: pytest.TestReport) -> None:
        tier = next((name for name in TIERS if name in report.keywords), "other")
        node = getattr(report, "node", None)  # pytest-xdist: the worker that ran it
        worker = getattr(getattr(node, "gateway", None), "id", "")
        entry = self.tests.setdefault(report.nodeid, TestTime(tier, report.start, report.stop, worker=worker))
        entry.start, entry.stop = min(entry.start, report.start), max(entry.stop, report.stop)
        entry.seconds += report.duration

    def tiers(self) -> dict[str, dict]:
        found: dict[str, dict] = {}
        for entry in self.tests.values():
            tier = found.setdefault(entry.tier, {"tests": 0, "seconds": 0.0, "first": entry.start, "last": entry.stop})
            tier["tests"] += 1
            tier["seconds"] += entry.seconds
            tier["first"], tier["last"] = min(tier["first"], entry.start), max(tier["last"], entry.stop)
        return {
            name: {"tests": t["tests"], "seconds": round(t["seconds"], 1), "span": round(t["last"] - t["first"], 1)}
            for name, t in sorted(found.items(), key=lambda item: (item[0] not in TIERS, item[0]))
        }

    def timeline(self) -> list[list]:
        """[test, worker, start, stop] from the start of the run, in order of start: where a run's time went."""
        ranked = sorted(self.tests.items(), key=lambda item: item[1].start)
        return [[nodeid, t.worker, round(t.start - self.started, 1), round(t.stop - self.started, 1)]
                for nodeid, t in ranked]  # fmt: skip

    def slowest(self) -> list[dict]:
        ranked = sorted(self.tests.items(), key=lambda item: item[1].seconds, reverse=True)[:SLOWEST]
        return [{"test": nodeid, "seconds": round(entry.seconds, 1), "tier": entry.tier} for nodeid, entry in ranked]


class Timing:
    def __init__(self) -> None:
        self.times = RunTimes()

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.times.add(report)

    def pytest_terminal_summary(self, terminalreporter) -> None:
        tiers = self.times.tiers()
        if not tiers:
            return
        terminalreporter.section("time by tier")
        terminalreporter.line(f"  {'tier':<12} {'tests':>6} {'sum of tests':>14} {'span':>10}")
        for name, tier in tiers.items():
            terminalreporter.line(f"  {name:<12} {tier['tests']:>6} {tier['seconds']:>13.0f}s {tier['span']:>9.0f}s")
        target = os.environ.get("PROXMOXWP_TEST_TIMES")
        if target:
            document = {"wall": round(time.time() - self.times.started, 1), "tiers": tiers,
                        "slowest": self.times.slowest(), "timeline": self.times.timeline()}  # fmt: skip
            Path(target).write_text(json.dumps(document, indent=1) + "\n")


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput"):  # with pytest-xdist, the controller sees every worker's reports
        config.pluginmanager.register(Timing(), "proxmoxwp-timing")


def print_pass(name: str, document: dict) -> None:
    """The rows scripts/test.sh prints at the end for one pass: its tiers, then its slowest tests."""
    print(f"\n==> {name}: {document['wall']:.0f}s of wall time, by tier")
    print(f"  {'tier':<12} {'tests':>6} {'sum of tests':>14} {'span':>10}")
    for tier, times in document["tiers"].items():
        print(f"  {tier:<12} {times['tests']:>6} {times['seconds']:>13.0f}s {times['span']:>9.0f}s")
    print(f"==> {name}: the {len(document['slowest'])} slowest tests (setup, call and teardown)")
    for test in document["slowest"]:
        print(f"  {test['seconds']:>7.1f}s  {test['tier']:<11} {test['test']}")


if __name__ == "__main__":
    import sys

    print_pass(sys.argv[1], json.loads(Path(sys.argv[2]).read_text()))
