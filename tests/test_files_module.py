"""proxmoxwp_files, the module the role wordpress writes a site's configuration with in one step, run by
ansible-playbook on this machine as the role runs it in a container: what it writes, what it reports changed,
check mode, and that a file's content never shows in the output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SECRET = "db-password-that-must-never-show-0123456789"


def play(tmp_path: Path, args: dict, check: bool = False) -> tuple[dict, str]:
    """Run the module once with `args`; its result and the whole output (at -vvv, where arguments show)."""
    result = tmp_path / "result.json"
    playbook = tmp_path / "play.yml"
    tasks = [
        {"name": "Hold the files", "proxmoxwp.hosting.proxmoxwp_files": args, "register": "held"},
        {"name": "Keep the result", "ansible.builtin.copy": {"content": "{{ held | to_json }}", "dest": str(result)},
         "check_mode": False},
    ]  # fmt: skip
    playbook.write_text(json.dumps([{"hosts": "localhost", "gather_facts": False, "tasks": tasks}]))
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_LOCALHOST_WARNING="false")
    argv = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", "-c", "local", "-vvv",
            "-e", f"ansible_python_interpreter={sys.executable}", str(playbook)]  # fmt: skip
    argv += ["--check"] if check else []
    run = subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    return json.loads(result.read_text()), run.stdout + run.stderr


def test_it_writes_what_differs_reports_it_once_and_never_shows_a_content(tmp_path):
    site = tmp_path / "site"
    args = {
        "directories": [{"path": str(site)}, {"path": str(site / "conf.d"), "mode": "0750"}],
        "files": [
            {"path": str(site / "conf.d" / "pool.conf"), "content": "workers = 5\n", "service": "php-fpm"},
            {"path": str(site / "wp-config.php"), "content": f"password = {SECRET}\n", "mode": "0640"},
            {"path": str(site / "sshd" / "keys-only.conf"), "content": "x\n", "service": "ssh",
             "only_if_folder": True},
        ],
        "links": [{"path": str(site / "enabled"), "src": str(site / "conf.d" / "pool.conf"), "service": "nginx"}],
    }  # fmt: skip

    imagined, _ = play(tmp_path, args, check=True)
    assert imagined["changed"] and not site.exists(), "check mode changes nothing"

    first, output = play(tmp_path, args)
    assert first["changed"] is True
    assert first["changed_paths"] == [
        str(site), str(site / "conf.d"), str(site / "conf.d" / "pool.conf"), str(site / "wp-config.php"),
        str(site / "enabled"),
    ]  # fmt: skip
    assert first["services"] == ["nginx", "php-fpm"]
    assert first["left_out"] == [str(site / "sshd" / "keys-only.conf")], "its folder does not exist"
    assert (site / "wp-config.php").read_text() == f"password = {SECRET}\n"
    assert oct((site / "wp-config.php").stat().st_mode & 0o777) == "0o640"
    assert oct((site / "conf.d").stat().st_mode & 0o777) == "0o750"
    assert os.readlink(site / "enabled") == str(site / "conf.d" / "pool.conf")
    assert SECRET not in output, "a file's content is never logged"
    assert not [p.name for p in site.rglob(".proxmoxwp-*")], "no temporary file is left"

    again, _ = play(tmp_path, args)
    assert (again["changed"], again["changed_paths"], again["services"]) == (False, [], [])

    (site / "wp-config.php").chmod(0o644)
    before = (site / "conf.d" / "pool.conf").stat().st_ino
    args["files"][0]["content"] = "workers = 8\n"
    changed, _ = play(tmp_path, args)
    assert changed["changed_paths"] == [str(site / "conf.d" / "pool.conf"), str(site / "wp-config.php")]
    assert changed["services"] == ["php-fpm"], "a mode change of a file without a service notifies nothing"
    assert (site / "conf.d" / "pool.conf").read_text() == "workers = 8\n"
    assert (site / "conf.d" / "pool.conf").stat().st_ino != before, "replaced by a rename, never written in place"
    assert oct((site / "wp-config.php").stat().st_mode & 0o777) == "0o640"


def test_the_hosts_log_never_holds_a_content(tmp_path, monkeypatch, capsys):
    """Ansible logs each invocation to the host's journal or syslog, masking no_log values in the text of each
    parameter; a content of several lines (wp-config.php) is there with its newlines escaped, and must not show."""
    import importlib
    import syslog

    import pytest
    from ansible.module_utils import basic
    from ansible.module_utils.testing import patch_module_args

    from api.pve import init_collection_loader

    init_collection_loader(ROOT)
    files = importlib.import_module("ansible_collections.proxmoxwp.hosting.plugins.modules.proxmoxwp_files")
    logged: list[str] = []
    monkeypatch.setattr(basic, "has_journal", False)
    monkeypatch.setattr(syslog, "openlog", lambda *args: None)
    monkeypatch.setattr(syslog, "syslog", lambda priority, message: logged.append(message))
    config = tmp_path / "wp-config.php"
    content = f"<?php\ndefine( 'DB_PASSWORD', '{SECRET}' );\ndefine( \"AUTH_KEY\", 'k\\\\ey' );\n"
    args = {"files": [{"path": str(config), "content": content, "mode": "0640"}], "_ansible_check_mode": True}
    with patch_module_args(args), pytest.raises(SystemExit):
        files.main()
    answer = json.loads(capsys.readouterr().out)
    assert answer["changed"] and answer["changed_paths"] == [str(config)], answer
    assert len(logged) == 1 and "Invoked with" in logged[0] and str(config) in logged[0], logged
    assert SECRET not in logged[0] and "k\\\\ey" not in logged[0], logged[0]
