"""The house's layers: the product stands on its own, and nothing reads a folder beside the repository.

docs/architecture.md, "What may depend on what": `api` imports neither `lab` nor `tests`; the lab and the tests
stand on the product. The graph is read from the source with `ast`, so an import inside a function, which
runs only on some paths, counts as much as one at the top.
"""

from __future__ import annotations

import ast
import subprocess
from importlib import metadata
from pathlib import Path

from click.testing import CliRunner
from conftest import ROOT

from api.cli import PLUGIN_GROUP, _load, _plugged_in

PRODUCT = ("api",)
ABOVE_THE_PRODUCT = ("lab", "tests", "bench")


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            found.add(str(node.args[0].value))
    return found


def imports_from_above(package: str) -> list[str]:
    wrong = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for module in sorted(imported_modules(path)):
            if module.split(".")[0] in ABOVE_THE_PRODUCT:
                wrong.append(f"{path.relative_to(ROOT)} imports {module}")
    return wrong


def test_the_product_imports_nothing_from_the_lab_or_the_tests():
    for package in PRODUCT:
        assert imports_from_above(package) == []


def test_the_import_check_sees_an_import_inside_a_function(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("def later():\n    from lab.pve.fake import ProjectPve\n    import tests.workers\n")
    assert imported_modules(sample) == {"lab.pve.fake", "tests.workers"}


def test_the_playbooks_and_modules_name_no_lab_or_test_folder():
    """What an operator installs on a real cluster: the playbooks, roles and modules do not reach into the lab
    or the tests (the lab's own role and molecule scenarios may)."""
    hits = subprocess.run(
        [
            "git",
            "grep",
            "-nE",
            r"tests/playbooks|lab_container|-m,? lab\b|import lab\b|from lab\b",
            "--",
            "api",
            "playbooks",
            "plugins",
            "roles/pve_container",
            "roles/pve_backup",
            "roles/wordpress/tasks",
            "roles/dns_record",
            "roles/npm_proxy",
            "roles/build_container/tasks",
            "inventory/production.example",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert hits.stdout == ""


def test_nothing_refers_to_a_folder_beside_the_repository():
    hits = subprocess.run(
        ["git", "grep", "-nE", r"\.\./shared|shared/(reference|DESIGN)"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert hits.returncode == 1, hits.stdout  # 1: git grep found nothing


def test_the_lab_plugs_its_command_into_proxmoxwp():
    entry = _plugged_in()["lab"]
    assert entry.value == "lab.supervisor.commands:lab"
    assert "up" in _load(entry).commands


def test_a_plugged_in_command_whose_package_is_missing_says_what_to_install():
    entry = metadata.EntryPoint(name="lab", value="proxmoxwp_no_such_package.commands:lab", group=PLUGIN_GROUP)
    answer = CliRunner().invoke(_load(entry), ["up"])
    assert answer.exit_code == 1
    assert "`proxmoxwp lab` needs proxmoxwp_no_such_package, which is not installed" in answer.output
    assert "pip install 'proxmoxwp[lab]'" in answer.output
