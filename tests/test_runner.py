"""The runner layer: ansible-runner with a private data dir, !unsafe extra vars, events, stats, cancel."""

from __future__ import annotations

import contextlib
import json
import threading
from datetime import datetime
from pathlib import Path

import psutil
import pytest
from conftest import ROOT, TESTS, wait_until

from api.jobs.runner import PlaybookRun, unsafe_yaml

INJECTION = "{{ lookup('pipe','touch /tmp/pwned') }}"


def make_run(tmp_path: Path, playbook: str, variables: dict, **kwargs) -> PlaybookRun:
    return PlaybookRun(
        project_dir=ROOT,
        playbook=TESTS / "playbooks" / playbook,
        inventory=TESTS / "inventory",
        runs_dir=tmp_path / "runs",
        variables=variables,
        secrets=kwargs.pop("secrets", {}),
        timeout=kwargs.pop("timeout", 120),
        ident="test",
        **kwargs,
    )


def no_process_mentions(path: Path) -> bool:
    """No process (ansible's forked workers included) still runs with this path in its command line."""
    return not [
        proc.pid
        for proc in psutil.process_iter(["cmdline"])
        if any(str(path) in arg for arg in proc.info["cmdline"] or ())
    ]


def test_set_stats_come_back(tmp_path):
    result = make_run(tmp_path, "report_stats.yml", {"service_id": 7}).run()
    assert result.status == "successful"
    assert result.stats == {"vmid": 4242, "node": "pve-test-1", "ip": "10.77.0.42", "snapshots": ["initial"]}
    assert result.tasks_done == 2
    assert result.changed == 0
    assert list((tmp_path / "runs").iterdir()) == []  # the private data dir is gone


def test_failure_names_the_task_host_and_message(tmp_path):
    events: list[dict] = []
    result = make_run(tmp_path, "fail_at_task.yml", {"service_id": 7}, on_event=events.append).run()
    assert result.status == "failed"
    assert result.rc == 2
    assert result.failed_task == "Create the container"
    assert result.failed_host == "localhost"
    assert result.message == "storage 'drbd1' is not online on node pve-test-1"
    assert "Never reached" not in {event["task"] for event in events}
    assert result.changed == 0, "the run changed nothing before it failed"
    # each task's module, start and duration are kept (a job's timeline: bench/lab_flows.py), never its arguments
    done = [event["data"] for event in events if event["event"] in ("runner_on_ok", "runner_on_failed")]
    assert done and all({"action", "start", "duration"} <= set(data) for data in done), done
    assert all(datetime.fromisoformat(data["start"]).tzinfo is not None for data in done)


def test_a_task_that_failed_after_acting_counts_as_a_change(tmp_path):
    result = make_run(tmp_path, "fail_at_task.yml", {"service_id": 7, "failed_after_acting": True}).run()
    assert result.status == "failed"
    assert result.changed == 1


@pytest.mark.parametrize("where", ["string", "list", "nested"])
def test_template_injection_stays_literal(tmp_path, where):
    target = Path("/tmp/pwned")
    target.unlink(missing_ok=True)
    echo_file = tmp_path / "echo.json"
    plain = "ordinary"
    variables = {
        "service_id": 7,
        "email": INJECTION,
        "domain": INJECTION,
        "subdomain": "{{ 7 * 6 }}",
        "plan": "{% raw %}x{% endraw %}",
        "bak": "${HOME}$(id)`id`",
        "tags_list": [INJECTION if where == "list" else plain],
        "nested": {"inner": INJECTION if where == "nested" else plain, "deeper": [{"x": INJECTION}]},
        "enabled": True,
        "echo_file": str(echo_file),
    }
    result = make_run(tmp_path, "echo_vars.yml", variables).run()
    assert result.status == "successful", result.message
    assert not target.exists(), "a template in an extra var was executed"
    seen = json.loads(echo_file.read_text())
    assert seen["email"] == INJECTION
    assert seen["domain"] == INJECTION
    assert seen["subdomain"] == "{{ 7 * 6 }}"
    assert seen["plan"] == "{% raw %}x{% endraw %}"
    assert seen["bak"] == "${HOME}$(id)`id`"
    assert seen["nested"]["deeper"][0]["x"] == INJECTION
    assert seen["enabled"] is True
    assert seen["service_id"] == 7
    assert result.stats["printed"] == INJECTION  # passed to a command as the literal text


def test_extra_vars_file_tags_every_string():
    text = unsafe_yaml({"a": "x", "b": ["y"], "c": {"d": "z"}, "n": 3, "t": True})
    assert text.count("!unsafe") == 3
    with pytest.raises(ValueError, match="identifier"):
        unsafe_yaml({"bad key": "x"})


def run_create_double(tmp_path: Path, control_dir: Path, secret: str, events: list[dict]):
    """The create stand-in, handed the admin password as a secret."""
    variables = {"service_id": 7, "op_name": "site_create", "test_control_dir": str(control_dir), "proxmoxwp_job_id": 1}
    return make_run(
        tmp_path, "ops/operation_double.yml", variables, secrets={"admin_password": secret}, on_event=events.append
    ).run()


def test_secrets_reach_the_playbook_but_not_the_events(tmp_path, control_dir):
    secret = "S3cret-Pa55-word-xyz"
    events: list[dict] = []
    result = run_create_double(tmp_path, control_dir, secret, events)
    assert result.status == "successful", result.message
    recorded = json.loads((control_dir / "runs.jsonl").read_text().splitlines()[0])
    assert recorded["vars"]["admin_password"] == secret
    assert secret not in json.dumps(events)


def test_secret_in_a_failure_message_is_masked(tmp_path, control_dir):
    secret = "An0ther-Secret-value"
    (control_dir / "fail-site_create").write_text(f"could not set password {secret}")
    events: list[dict] = []
    result = run_create_double(tmp_path, control_dir, secret, events)
    assert result.status == "failed"
    assert result.message == "could not set password ********"
    assert secret not in json.dumps(events)


def test_cancel_callback_stops_a_long_run(tmp_path):
    started, release = tmp_path / "started", tmp_path / "release"
    cancel = threading.Event()
    run = make_run(
        tmp_path,
        "run_long.yml",
        {"started_file": str(started), "release_file": str(release)},
        cancelled=cancel.is_set,
    )
    thread = threading.Thread(target=run.run)
    thread.start()
    wait_until(started.exists, 60, what="the long playbook to start")
    cancel.set()
    thread.join(60)
    assert not thread.is_alive()
    assert run.result.status == "canceled"
    assert run.result.message == "The job was cancelled."
    assert run.result.changed is None, "a run stopped from outside may have changed anything"
    assert no_process_mentions(tmp_path / "runs")


def test_timeout_ends_the_run(tmp_path):
    started, release = tmp_path / "started", tmp_path / "release"
    variables = {"started_file": str(started), "release_file": str(release)}
    # long enough for ansible-playbook to reach the task on a loaded machine (it takes 1-2 s of CPU to start)
    result = make_run(tmp_path, "run_long.yml", variables, timeout=10).run()
    assert started.exists(), "the timeout struck in the middle of the task, not before it"
    assert result.status == "timeout"
    assert "within 10 seconds" in result.message
    assert result.changed is None
    assert no_process_mentions(tmp_path / "runs")


def test_tasks_done_counts_each_included_task_each_time_and_a_looped_task_once(tmp_path):
    """What a job's progress counts (docs/jobs.md, Progress): a task that ran, on any number of hosts. A looped
    task is one, however many items; a file included in a loop counts its tasks once per item."""
    done: list[int] = []
    modules: dict[str, str] = {}

    def counted(record: dict) -> None:
        if "tasks_done" in record:
            done.append(record["tasks_done"])
        if record["event"] == "runner_on_ok":
            modules[record["task"]] = record["data"].get("action")

    (tmp_path / "steps").write_text("3")
    result = make_run(tmp_path, "include_loop.yml", {"test_control_dir": str(tmp_path)}, on_event=counted).run()
    assert result.status == "successful", result.message
    # the include, 3 × the step's 2 tasks, the loop, the skipped wait, the last task
    assert result.tasks_done == 10
    assert done == list(range(1, 11)), "one more with each task that ends, never two results for one task"
    # each result names its module (bench/lab_flows.py tells the cluster's and the edge's calls from the rest by it)
    assert modules["End the run"] == "ansible.builtin.debug"


def test_secrets_of_the_environment_reach_the_playbook_but_no_file_of_the_run(tmp_path, monkeypatch):
    """ansible-runner writes its command and environment into the run's artifacts; a worker killed mid-run
    leaves them behind. The module credentials of the environment must still reach the playbook; the API's
    own secrets must not reach it at all."""
    token, key, database = "pve-token-5ecret-9f2c", "api-fernet-key-77aa", "postgresql://u:db-pa55@127.0.0.1/x"
    monkeypatch.setenv("PROXMOXWP_PVE_TOKEN_SECRET", token)
    monkeypatch.setenv("PROXMOXWP_SECRET_KEY", key)
    monkeypatch.setenv("PROXMOXWP_DATABASE_URL", database)
    started, release = tmp_path / "started", tmp_path / "release"
    names = ["PROXMOXWP_PVE_TOKEN_SECRET", "PROXMOXWP_SECRET_KEY", "PROXMOXWP_DATABASE_URL"]
    variables = {"started_file": str(started), "release_file": str(release), "names": names}
    run = make_run(tmp_path, "report_env.yml", variables, secrets={"admin_password": "adm-pa55-word-00"})
    thread = threading.Thread(target=run.run)
    thread.start()
    try:
        wait_until(started.exists, 60, what="the playbook to start")
        (private,) = (tmp_path / "runs").iterdir()
        # ansible-runner writes event files under another name and renames them: read what is still there
        contents = {}
        for path in private.rglob("*"):
            with contextlib.suppress(FileNotFoundError, IsADirectoryError):
                contents[path] = path.read_bytes()
        files = list(contents)
        assert any(path.name == "command" for path in files), files
        for path in files:
            content = contents[path]
            for secret in (token, key, b"db-pa55"):
                assert (secret if isinstance(secret, bytes) else secret.encode()) not in content, path
        assert [path.name for path in files if b"adm-pa55-word-00" in contents[path]] == ["extravars"]
        assert {oct(path.stat().st_mode & 0o777) for path in files if path.name in ("command", "extravars")} == {
            "0o600"
        }
    finally:
        release.touch()
        thread.join(60)
    assert run.result.status == "successful", run.result.message
    assert run.result.stats["environment"] == {
        "PROXMOXWP_PVE_TOKEN_SECRET": token,
        "PROXMOXWP_SECRET_KEY": "",
        "PROXMOXWP_DATABASE_URL": "",
    }
    assert list((tmp_path / "runs").iterdir()) == []
