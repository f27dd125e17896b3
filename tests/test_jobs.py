"""The job engine with real worker processes: order per service, parallelism, crashes, timeouts, progress."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess

import pytest
from conftest import BIN, TESTS, runs, wait_job, wait_until

from api.models import Job, JobEvent, JobState

pytestmark = pytest.mark.db

CREATE = {"email": "owner@example.com", "plan": "basic", "public_ip": "203.0.113.10"}


def proxmoxwp(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """Run the operator command as an operator would, and insist that it succeeds."""
    return subprocess.run(
        [str(BIN / "proxmoxwp"), *args], env=env, capture_output=True, text=True, timeout=60, check=True
    )


def create_active(api, service_id: int, plan: str = "basic") -> None:
    answer = api.post("/create-site", {"service_id": service_id, **CREATE, "plan": plan})
    assert answer.status_code == 202, answer.get_json()
    created = wait_job(api, answer.get_json()["job_id"])
    assert created["state"] == "succeeded", created  # its message and failed task say why


def job(api, job_id: int) -> dict:
    return api.get(f"/jobs/{job_id}").get_json()["job"]


def power(api, service_id: int, action: str = "restart", **extra) -> dict:
    answer = api.post("/action/power", {"service_id": service_id, "action": action, **extra})
    assert answer.status_code == 202, answer.get_json()
    return answer.get_json()


def running(api, job_id: int) -> bool:
    return job(api, job_id)["state"] == "running"


def test_jobs_of_one_service_run_in_order_and_other_services_in_parallel(api, worker, control_dir):
    create_active(api, 1)
    create_active(api, 2)
    (control_dir / "block-site_power").touch()
    first = power(api, 1)["job_id"]
    wait_until(lambda: running(api, first), what="the blocked job to run")
    second = api.post("/action/toggle", {"service_id": 1}).get_json()["job_id"]
    other = api.post("/action/toggle", {"service_id": 2}).get_json()["job_id"]
    assert wait_job(api, other)["state"] == "succeeded"  # service 2 is not held up by service 1
    assert job(api, second)["state"] == "queued"  # service 1's second job waits for its first
    (control_dir / "release-site_power").touch()
    assert wait_job(api, second)["state"] == "succeeded"
    order = [(run["op"], run["job"]) for run in runs(control_dir) if run["vars"]["service_id"] == 1]
    assert order[-2:] == [("site_power", first), ("proxy_toggle", second)]
    assert job(api, first)["finished_at"] <= job(api, second)["started_at"]


def test_parallel_jobs_are_capped_by_the_worker_concurrency(api, start_worker, control_dir):
    start_worker(concurrency=2)
    for service_id in (11, 12, 13):
        create_active(api, service_id)
    (control_dir / "block-site_power").touch()
    jobs = [power(api, service_id)["job_id"] for service_id in (11, 12, 13)]
    wait_until(lambda: sum(running(api, j) for j in jobs) == 2, what="two jobs running")
    states = sorted(job(api, j)["state"] for j in jobs)
    assert states == ["queued", "running", "running"]
    (control_dir / "release-site_power").touch()
    assert all(wait_job(api, j)["state"] == "succeeded" for j in jobs)


def _playbook_processes(runtime, job_id: int, attempt: int) -> list[int]:
    marker = f"{runtime.settings.data_dir}/runs/job{job_id}-{attempt}-"
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                if marker.encode() in handle.read():
                    found.append(int(pid))
        except OSError:
            continue
    return found


def test_a_worker_killed_mid_job_is_detected_and_the_job_retried(api, runtime, start_worker, control_dir):
    doomed = start_worker()
    create_active(api, 21)
    (control_dir / "block-site_power").touch()
    job_id = power(api, 21)["job_id"]
    wait_until(lambda: running(api, job_id), what="the job to run")
    wait_until(lambda: _playbook_processes(runtime, job_id, 1), what="ansible-playbook to start")
    doomed.kill(signal.SIGKILL)
    start_worker()
    # the new worker's reaper ends what the dead worker's playbook left running before it retries
    wait_until(lambda: not _playbook_processes(runtime, job_id, 1), 30, what="the orphaned playbook to end")
    (control_dir / "release-site_power").touch()
    finished = wait_job(api, job_id, timeout=60)
    assert finished["state"] == "succeeded"
    assert finished["attempts"] == 2
    assert api.get("/status", service_id=21).get_json()["state"] == "active"
    # the dead attempt's private dir (its extra vars, ansible-runner's artifacts) is gone as well as the retry's
    runs = runtime.settings.data_dir / "runs"
    wait_until(lambda: not list(runs.iterdir()), 30, what=f"the run dirs to be removed: {list(runs.iterdir())}")


def test_a_killed_worker_without_attempts_left_fails_the_job_visibly(app, api, start_worker, control_dir):
    app.extensions["proxmoxwp"].settings.job_max_attempts = 1
    doomed = start_worker()
    create_active(api, 22)
    (control_dir / "block-site_power").touch()
    job_id = power(api, 22, action="stop")["job_id"]
    wait_until(lambda: running(api, job_id), what="the job to run")
    doomed.kill(signal.SIGKILL)
    start_worker()
    finished = wait_job(api, job_id, timeout=60)
    assert finished["state"] == "failed"
    assert "stopped unexpectedly" in finished["message"]
    status = api.get("/status", service_id=22).get_json()
    assert status["state"] == "failed"
    assert "stopped unexpectedly" in status["failure_reason"]
    assert status["heading_to"] is None  # nothing left in flight


def test_a_creation_cut_off_with_no_attempts_left_is_cleaned_up_and_status_says_so(app, api, start_worker, control_dir):
    """The killed run never reached its rescue: a clean-up job removes what it may have left, and /status shows
    it being removed, then nothing left; the site stays failed with the creation's reason."""
    app.extensions["proxmoxwp"].settings.job_max_attempts = 1
    doomed = start_worker()
    (control_dir / "block-site_create").touch()
    (control_dir / "block-site_delete").touch()
    job_id = api.post("/create-site", {"service_id": 23, **CREATE}).get_json()["job_id"]
    wait_until(lambda: running(api, job_id), what="the creation to run")
    doomed.kill(signal.SIGKILL)
    start_worker()
    assert wait_job(api, job_id, timeout=60)["state"] == "failed"
    status = wait_until(
        lambda: (seen := api.get("/status", service_id=23).get_json())["leftovers"] and seen,
        what="the clean-up to be shown",
    )
    assert status["state"] == "failed" and "stopped unexpectedly" in status["failure_reason"]
    assert status["leftovers"]["state"] == "removing"
    cleanup = status["leftovers"]["job_id"]
    assert job(api, cleanup)["kind"] == "cleanup"
    (control_dir / "release-site_delete").touch()
    assert wait_job(api, cleanup)["state"] == "succeeded"
    status = api.get("/status", service_id=23).get_json()
    assert status["leftovers"] is None
    assert status["state"] == "failed" and "stopped unexpectedly" in status["failure_reason"]
    (removal,) = [run for run in runs(control_dir) if run["op"] == "site_delete"]
    assert removal["vars"]["subdomain"] == status["subdomain"]


def test_a_job_that_runs_too_long_is_stopped_at_its_kind_timeout(app, api, runtime, worker, control_dir):
    app.extensions["proxmoxwp"].settings.job_timeouts = {"power": 4}
    create_active(api, 31)
    (control_dir / "block-site_power").touch()
    job_id = power(api, 31)["job_id"]
    finished = wait_job(api, job_id, timeout=60)
    assert finished["state"] == "failed"
    assert finished["message"] == "The playbook did not finish within 4 seconds."
    assert _playbook_processes(runtime, job_id, 1) == []
    assert api.get("/status", service_id=31).get_json()["state"] == "failed"


def progress(api, job_id: int) -> dict:
    """The job's progress as the API shows it, which is never more done than its total."""
    shown = job(api, job_id)["progress"]
    assert shown["total"] is None or shown["done"] <= shown["total"], shown
    return shown


def test_progress_counts_included_and_looped_tasks_and_gives_no_total_it_does_not_know(
    api, start_worker, control_dir, tmp_path
):
    """`power` runs tests/playbooks/include_loop.yml: a file included `steps` times in a loop (2 tasks each), a
    looped task, a wait while `block` exists, a last task; 2 × steps + 4 tasks in all."""
    playbooks = tmp_path / "playbooks"
    shutil.copytree(TESTS / "playbooks" / "ops", playbooks)
    shutil.copy(TESTS / "playbooks" / "include_loop.yml", playbooks / "site_power.yml")
    shutil.copytree(TESTS / "playbooks" / "tasks", playbooks / "tasks")
    start_worker(PROXMOXWP_PLAYBOOK_DIR=str(playbooks))
    create_active(api, 41)
    (control_dir / "block").touch()

    def held_run(steps: int) -> int:
        """A power job with `steps` includes, held at its wait, after 2 × steps + 2 tasks."""
        (control_dir / "release").unlink(missing_ok=True)
        (control_dir / "steps").write_text(str(steps))
        job_id = power(api, 41)["job_id"]
        wait_until(lambda: progress(api, job_id)["done"] == 2 * steps + 2, what="the run to reach its wait")
        return job_id

    def released(job_id: int) -> dict:
        (control_dir / "release").touch()
        assert wait_job(api, job_id)["state"] == "succeeded"
        return progress(api, job_id)

    # the kind's first run: no run has measured it, so no total is made up
    first = held_run(steps=2)
    assert progress(api, first) == {"done": 6, "total": None}
    assert released(first) == {"done": 8, "total": 8}

    # a run that includes the file more often goes past what the last one ran: the total is unknown again
    second = held_run(steps=4)
    assert progress(api, second) == {"done": 10, "total": None}
    assert released(second) == {"done": 12, "total": 12}

    # the same run again: the last one's 12 tasks are its total
    third = held_run(steps=4)
    assert progress(api, third) == {"done": 10, "total": 12}
    assert released(third) == {"done": 12, "total": 12}


def test_progress_stored_before_it_was_kept_honest_is_shown_honestly(api, runtime):
    """Rows written when the total came from `--list-tasks` (which misses includes and loops) or from a run
    that was not this one: the API still never shows more done than expected, nor a success short of its total."""
    assert api.post("/create-site", {"service_id": 42, **CREATE}).status_code == 202  # no worker: it stays queued
    rows = {JobState.RUNNING: (58, 13), JobState.SUCCEEDED: (69, 71), JobState.FAILED: (30, 69)}
    ids = {}
    with runtime.db.session(write=True) as session:
        for state, (done, total) in rows.items():
            row = Job(service_id=42, kind="create", params={}, state=state, progress_done=done, progress_total=total)
            session.add(row)
            session.flush()
            ids[state] = row.id
    assert progress(api, ids[JobState.RUNNING]) == {"done": 58, "total": None}
    assert progress(api, ids[JobState.SUCCEEDED]) == {"done": 69, "total": 69}
    assert progress(api, ids[JobState.FAILED]) == {"done": 30, "total": 69}


def test_failed_task_name_host_and_message_reach_job_and_api(api, worker, control_dir):
    create_active(api, 51)
    (control_dir / "fail-site_power").write_text("node pve-test-1 is offline")
    answer = api.post("/action/power", {"service_id": 51, "action": "start", "wait": 60})
    assert answer.status_code == 503
    body = answer.get_json()
    assert body["code"] == "job_failed"
    assert body["error"] == "Task 'Fail when the test asks for it' failed: node pve-test-1 is offline"
    failed = job(api, body["job_id"])
    assert failed["failed_task"] == "Fail when the test asks for it"
    assert failed["failed_host"] == "localhost"
    assert failed["message"] == "node pve-test-1 is offline"
    status = api.get("/status", service_id=51).get_json()
    assert status["state"] == "failed"
    assert "node pve-test-1 is offline" in status["failure_reason"]
    (control_dir / "fail-site_power").unlink()
    retry = api.post("/action/power", {"service_id": 51, "action": "start", "wait": 60})
    assert retry.status_code == 200
    assert api.get("/status", service_id=51).get_json()["state"] == "active"


def test_wait_answers_with_the_finished_job(api, worker):
    answer = api.post("/create-site", {"service_id": 61, **CREATE, "wait": 60})
    assert answer.status_code == 200
    body = answer.get_json()
    assert body["job"]["state"] == "succeeded"
    assert body["state"] == "active"
    assert body["job"]["stats"]["vmid"] == 100061


def test_events_are_stored_and_bounded(api, start_worker, runtime):
    start_worker(PROXMOXWP_MAX_EVENTS_PER_JOB="10")
    answer = api.post("/create-site", {"service_id": 71, **CREATE})
    job_id = answer.get_json()["job_id"]
    assert wait_job(api, job_id)["state"] == "succeeded"
    with runtime.db.session() as session:
        events = session.query(JobEvent).filter_by(job_id=job_id).order_by(JobEvent.seq).all()
        stored = session.get(Job, job_id).events_stored
    names = [event.event for event in events]
    assert len(events) == stored
    assert 10 <= len(events) <= 11  # the bound, plus the stats event that is always kept
    assert names[-1] == "playbook_on_stats"
    assert events[-1].data["artifact_data"]["vmid"] == 100071


def test_a_running_job_can_be_cancelled_from_the_cli(api, runtime, worker, control_dir, process_env):
    create_active(api, 81)
    (control_dir / "block-site_power").touch()
    job_id = power(api, 81)["job_id"]
    wait_until(lambda: running(api, job_id), what="the job to run")
    out = proxmoxwp(process_env, "jobs", "cancel", str(job_id))
    assert "will stop it" in out.stdout
    finished = wait_job(api, job_id)
    assert finished["state"] == "cancelled"
    assert _playbook_processes(runtime, job_id, 1) == []
    assert api.get("/status", service_id=81).get_json()["state"] == "failed"


def test_a_queued_job_cancelled_from_the_cli_leaves_the_service_as_it_was(api, worker, control_dir, process_env):
    create_active(api, 82)
    (control_dir / "block-site_power").touch()
    first = power(api, 82)["job_id"]
    wait_until(lambda: running(api, first), what="the job to run")
    backup = api.post("/action/mkbak", {"service_id": 82}).get_json()
    proxmoxwp(process_env, "jobs", "cancel", str(backup["job_id"]))
    assert job(api, backup["job_id"])["state"] == "cancelled"
    assert api.get("/action/getbak", service_id=82).get_json()["backups"] == []
    (control_dir / "release-site_power").touch()
    assert wait_job(api, first)["state"] == "succeeded"
    assert api.get("/status", service_id=82).get_json()["state"] == "active"


def test_jobs_list_and_show_on_the_cli(api, worker, process_env):
    create_active(api, 91)
    listing = proxmoxwp(process_env, "jobs", "list", "--service-id", "91").stdout
    assert "create" in listing and "succeeded" in listing
    job_id = api.get("/jobs", service_id=91).get_json()["jobs"][0]["id"]
    shown = proxmoxwp(process_env, "jobs", "show", str(job_id)).stdout
    assert '"state": "succeeded"' in shown
    assert "playbook_on_stats" in shown


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        (
            "PROXMOXWP_API_TOKENS",
            "short",
            "PROXMOXWP_API_TOKENS: every API token must be at least 16 characters",
        ),
        (
            "PROXMOXWP_DATABASE_URL",
            "mysql://x",
            "PROXMOXWP_DATABASE_URL must be sqlite:///PATH or postgresql",
        ),
        ("PROXMOXWP_QUEUE_URL", "amqp://x", "PROXMOXWP_QUEUE_URL must be sqlite:///PATH or redis://"),
        ("PROXMOXWP_WORKERS", "many", "PROXMOXWP_WORKERS: Input should be a valid integer"),
        ("PROXMOXWP_INVENTORY", "/nonexistent", "PROXMOXWP_INVENTORY: /nonexistent is not a directory"),
        ("PROXMOXWP_JOB_TIMEOUTS", "power", "PROXMOXWP_JOB_TIMEOUTS: 'power' is not KIND=SECONDS"),
    ],
)
def test_a_wrong_setting_fails_at_start_with_one_line(process_env, runtime, name, value, expected):
    for command in (["worker"], ["serve", "--bind", "127.0.0.1:1"], ["jobs", "list"]):
        out = subprocess.run(
            [str(BIN / "proxmoxwp"), *command],
            env={**process_env, name: value},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 2
        assert out.stdout == ""
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1, out.stderr
        assert expected in lines[0]


def test_serve_refuses_to_start_without_tokens(process_env, runtime):
    env = {k: v for k, v in process_env.items() if k != "PROXMOXWP_API_TOKENS"}
    out = subprocess.run([str(BIN / "proxmoxwp"), "serve"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert out.stderr.strip() == (
        "proxmoxwp: configuration error: PROXMOXWP_API_TOKENS (or PROXMOXWP_API_TOKENS_FILE) must name at least one "
        "token"
    )


def test_a_database_behind_its_schema_is_reported(process_env, tmp_path):
    env = {**process_env, "PROXMOXWP_DATABASE_URL": f"sqlite:///{tmp_path / 'empty.sqlite3'}"}
    out = subprocess.run([str(BIN / "proxmoxwp"), "worker"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "run `proxmoxwp db upgrade`" in out.stderr
    upgraded = proxmoxwp(env, "db", "upgrade")
    assert upgraded.stdout.startswith("database at revision")


def test_a_worker_stopped_with_sigterm_ends_its_playbooks_and_the_job_is_retried(
    api, runtime, start_worker, control_dir
):
    stopping = start_worker()
    create_active(api, 23)
    (control_dir / "block-site_power").touch()
    job_id = power(api, 23)["job_id"]
    wait_until(lambda: _playbook_processes(runtime, job_id, 1), what="ansible-playbook to start")
    stopping.kill(signal.SIGTERM)
    assert _playbook_processes(runtime, job_id, 1) == []
    (control_dir / "release-site_power").touch()
    start_worker()
    finished = wait_job(api, job_id, timeout=60)
    assert (finished["state"], finished["attempts"]) == ("succeeded", 2)
