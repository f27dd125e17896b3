"""Claiming, running and finishing jobs; finding jobs whose worker died.

The database row is the truth. A job runs only when it is the oldest unfinished job of its service, so jobs
of one service run strictly in order; the claim is one conditional UPDATE, so two workers never run the same
job. A finished job wakes the next one of its service.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import threading
import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, exists, func, select, update
from sqlalchemy.orm import Session, aliased

from api.jobs.failure_webhook import report_failure
from api.jobs.kinds import KINDS, SERVICE_STATS, queue_job, sync_backups
from api.jobs.leftovers import terminate_run_processes
from api.jobs.runner import PlaybookRun
from api.jobs.secrets import forget_sealed, scrub
from api.models import UNFINISHED, Job, JobEvent, JobState, Service, ServiceState
from api.runtime import Runtime

log = logging.getLogger(__name__)

HOSTNAME = socket.gethostname()


def now() -> datetime:
    return datetime.now(UTC)


def worker_id() -> str:
    return f"{HOSTNAME}:{os.getpid()}:{threading.get_ident()}"


def _head_condition(job_id: int):
    earlier = aliased(Job)
    return and_(
        Job.id == job_id,
        Job.state == JobState.QUEUED,
        ~exists(
            select(earlier.id).where(
                earlier.service_id == Job.service_id, earlier.id < Job.id, earlier.state.in_(UNFINISHED)
            )
        ),
    )


def claim(runtime: Runtime, job_id: int) -> bool:
    """Mark the job running if it is the head of its service's queue and nobody else took it."""

    def work(session: Session) -> bool:
        result = session.execute(
            update(Job)
            .where(_head_condition(job_id))
            .values(
                state=JobState.RUNNING,
                attempts=Job.attempts + 1,
                started_at=now(),
                heartbeat_at=now(),
                worker=worker_id(),
                cancel_requested=False,
            )
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:
            return False
        job = session.get(Job, job_id)
        kind = KINDS[job.kind]
        service = session.get(Service, job.service_id)
        if kind.running_state and service.state != kind.running_state:
            if service.state != ServiceState.FAILED:
                service.settled_state = service.state
            service.state = kind.running_state
        if kind.shown:
            service.last_job_id = job.id
        return True

    return runtime.db.write(work)


def execute(runtime: Runtime, job_id: int) -> None:
    """The queue task: run the job if it can run now; otherwise its predecessor will wake it."""
    if not claim(runtime, job_id):
        return
    try:
        _run_claimed(runtime, job_id)
    finally:
        wake_next(runtime, job_id)


def _run_claimed(runtime: Runtime, job_id: int) -> None:
    with runtime.db.session(write=True) as session:
        job = session.get(Job, job_id)
        kind = KINDS[job.kind]
        params, attempt, timeout = dict(job.params), job.attempts, job.timeout_seconds
        secrets = runtime.secret_box.open(job.sealed_secrets)
        # a new attempt starts counting again, against what the last successful run of the kind ran
        expected = _tasks_last_time(session, job.kind)
        job.progress_done, job.progress_total = 0, expected
        behind = None if kind.shown else _queued_behind(session, job)
    if behind is not None:  # a background job never works on a site that another job is about to change
        message = f"Skipped: job {behind} of this site is queued; the site is checked again after it."
        finish(runtime, job_id, JobState.CANCELLED, message=message, changed=0)
        return
    playbook = runtime.settings.playbook_dir / kind.playbook
    if not playbook.is_file():
        finish(runtime, job_id, JobState.FAILED, message=f"The playbook {kind.playbook} is not installed.", changed=0)
        return

    events = EventSink(runtime, job_id, attempt, expected)
    stop_heartbeat = threading.Event()
    heartbeat = threading.Thread(
        target=_heartbeat, args=(events, runtime.settings.heartbeat_seconds, stop_heartbeat), daemon=True
    )
    heartbeat.start()
    run = PlaybookRun(
        project_dir=runtime.settings.project_dir,
        playbook=playbook,
        inventory=runtime.settings.inventory,
        runs_dir=runtime.settings.data_dir / "runs",
        variables={**params, "proxmoxwp_job_id": job_id},
        secrets=secrets,
        timeout=timeout,
        ident=f"job{job_id}-{attempt}",
        on_event=events.add,
        cancelled=CancelCheck(runtime, job_id),
        vault_password_file=runtime.settings.vault_password_file,
        locks_db=runtime.db,
    )
    try:
        result = run.run()
    except Exception as exc:  # an error of the runner itself, not of the playbook
        log.exception("job %s: ansible-runner failed", job_id)
        finish(runtime, job_id, JobState.FAILED, message=f"The job runner failed: {type(exc).__name__}.", cut_off=True)
        return
    finally:
        stop_heartbeat.set()
        heartbeat.join()
        events.flush()
    if result.status == "successful":
        finish(
            runtime,
            job_id,
            JobState.SUCCEEDED,
            rc=result.rc,
            stats=result.stats,
            tasks_done=result.tasks_done,
        )
    else:
        state = JobState.CANCELLED if result.status == "canceled" else JobState.FAILED
        finish(
            runtime,
            job_id,
            state,
            rc=result.rc,
            stats=result.stats,
            failed_task=result.failed_task,
            failed_host=result.failed_host,
            message=result.message,
            # a playbook that failed on its own ran its rescue; one stopped from outside did not
            cut_off=result.status != "failed",
            # only a run that ended on its own can say what it changed: one stopped from outside may have done anything
            changed=result.changed if result.status == "failed" else None,
        )


def _queued_behind(session: Session, job: Job) -> int | None:
    """The first unfinished job of the same service queued after `job`, if any."""
    return session.scalar(
        select(Job.id)
        .where(Job.service_id == job.service_id, Job.id > job.id, Job.state.in_(UNFINISHED))
        .order_by(Job.id)
        .limit(1)
    )


def _tasks_last_time(session: Session, kind: str) -> int | None:
    """Tasks run by the last successful job of this kind, counted as this run counts its own (its `done`, includes
    and loops with it): the expected total of the next one. None when no job of the kind has succeeded.

    `ansible-playbook --list-tasks` is not asked the first time: it lists a dynamic include (include_tasks,
    include_role) as one task and none of the tasks it brings, however often a loop includes them."""
    return (
        session.scalar(
            select(Job.progress_done)
            .where(Job.kind == kind, Job.state == JobState.SUCCEEDED)
            .order_by(Job.id.desc())
            .limit(1)
        )
        or None
    )


def _heartbeat(events: EventSink, interval: float, stop: threading.Event) -> None:
    """Tell the reapers this job is alive, and publish progress while a long task keeps ansible quiet."""
    while not stop.wait(interval):
        try:
            events.flush(beat=True)
        except Exception:
            log.warning("job %s: heartbeat not written", events.job_id, exc_info=True)


class CancelCheck:
    """ansible-runner's cancel_callback: asks the database at most once a second."""

    def __init__(self, runtime: Runtime, job_id: int) -> None:
        self.runtime, self.job_id = runtime, job_id
        self._checked = 0.0
        self._cancel = False

    def __call__(self) -> bool:
        if not self._cancel and time.monotonic() - self._checked >= 1.0:
            self._checked = time.monotonic()
            with self.runtime.db.session() as session:
                self._cancel = bool(session.scalar(select(Job.cancel_requested).where(Job.id == self.job_id)))
        return self._cancel


class EventSink:
    """Stores a bounded number of events per job and keeps the progress counters current: the tasks done and the
    `expected` total, which becomes unknown (None) once this run has done more than that."""

    FLUSH_EVERY = 1.0

    def __init__(self, runtime: Runtime, job_id: int, attempt: int, expected: int | None = None) -> None:
        self.runtime, self.job_id, self.attempt, self.expected = runtime, job_id, attempt, expected
        self.limit = runtime.settings.max_events_per_job
        self._pending: list[dict] = []
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._flushed = time.monotonic()
        self._done = 0
        with runtime.db.session() as session:
            self._seq = (
                session.scalar(select(func.coalesce(func.max(JobEvent.seq), 0)).where(JobEvent.job_id == job_id)) or 0
            )
            self._stored = session.scalar(select(Job.events_stored).where(Job.id == job_id)) or 0

    def add(self, record: dict) -> None:
        with self._lock:
            self._done = max(self._done, record.pop("tasks_done", 0))
            keep = self._stored + len(self._pending) < self.limit or record["event"] in (
                "runner_on_failed",
                "runner_on_unreachable",
                "playbook_on_stats",
            )
            if keep and record["event"] != "verbose":
                self._seq += 1
                self._pending.append({**record, "seq": self._seq})
            due = time.monotonic() - self._flushed >= self.FLUSH_EVERY
        if due:
            self.flush()

    def flush(self, beat: bool = False) -> None:
        with self._flush_lock:
            self._flush(beat)

    def _flush(self, beat: bool) -> None:
        with self._lock:
            pending, self._pending = self._pending, []
            done = self._done
            self._flushed = time.monotonic()
            # Counted as stored now, while add() is locked out: an event arriving during the write below must
            # see them, or the bound is exceeded.
            self._stored += len(pending)
            stored = self._stored
        total = self.expected if self.expected is not None and done <= self.expected else None
        values = {"progress_done": done, "progress_total": total, "events_stored": stored}
        if beat:
            values["heartbeat_at"] = now()
        with self.runtime.db.session(write=True) as session:
            for record in pending:
                session.add(
                    JobEvent(
                        job_id=self.job_id,
                        seq=record["seq"],
                        attempt=self.attempt,
                        event=record["event"],
                        task=record["task"],
                        host=record["host"],
                        data=record["data"],
                    )
                )
            session.execute(update(Job).where(Job.id == self.job_id, Job.state == JobState.RUNNING).values(**values))


def finish(
    runtime: Runtime,
    job_id: int,
    state: JobState,
    *,
    rc: int | None = None,
    stats: dict | None = None,
    failed_task: str | None = None,
    failed_host: str | None = None,
    message: str | None = None,
    tasks_done: int | None = None,
    cut_off: bool = False,
    changed: int | None = None,
) -> None:
    """Record the job's end and let its outcome move the service. A run `cut_off` (worker killed, timeout,
    cancel, runner error) never reached its own undo: its kind's clean-up, if it has one, is queued. `changed` is
    what a failed run reports it changed (RunResult.changed); None when that is unknown. A job that ends failed is
    then reported to the operator's failure webhook, if one is set (api/jobs/failure_webhook.py)."""
    failure: dict = {}

    def work(session: Session) -> int | None:
        job = session.get(Job, job_id)
        if job.state not in UNFINISHED:
            return None
        secrets = list(runtime.secret_box.open(job.sealed_secrets).values())
        job.state = state
        job.finished_at = now()
        job.rc = rc
        job.stats = scrub(stats, secrets) if stats else stats
        job.failed_task = failed_task
        job.failed_host = failed_host
        job.message = scrub(message, secrets)
        forget_sealed(session, job)
        if state == JobState.FAILED:
            failure.update(service_id=job.service_id, job_id=job.id, kind=job.kind, step=failed_task,
                           reason=job.message, finished_at=job.finished_at.isoformat())  # fmt: skip
        if tasks_done is not None:  # it succeeded: what it did is all it had to do
            job.progress_done = job.progress_total = tasks_done
        service = session.get(Service, job.service_id)
        if KINDS[job.kind].shown:
            service.last_job_id = job.id
        session.info["settings"] = runtime.settings  # for the outcomes that need one (certificates' backoff)
        if state == JobState.SUCCEEDED:
            _succeeded(session, service, job)
        elif state == JobState.CANCELLED and job.started_at is None:
            KINDS[job.kind].on_failure(session, service, job)  # never ran: the service itself is unchanged
        else:
            # Only a run whose stats say it changed nothing is known to have left the site as it was; any other
            # (`changed` None: unknown) may have broken it.
            _failed(session, service, job, unchanged=changed == 0)
            undo = KINDS[job.kind].cut_off_undo
            if cut_off and undo and job.started_at is not None:
                params = {"subdomain": service.subdomain, "domains": [], "undoes": job.id}
                return queue_job(session, runtime.settings, service, undo, params).id
        return None

    undo_id = runtime.db.write(work)
    if undo_id is not None:
        log.warning("job %s: cut off; job %s removes what it may have left", job_id, undo_id)
        runtime.queue.enqueue(undo_id)
    if failure:
        report_failure(runtime.settings, failure)


def _succeeded(session: Session, service: Service, job: Job) -> None:
    for key, cast in SERVICE_STATS.items():
        if job.stats and key in job.stats and job.stats[key] is not None:
            setattr(service, key, cast(job.stats[key]))
    KINDS[job.kind].on_success(session, service, job)
    sync_backups(session, service, job)
    if not KINDS[job.kind].settles:
        return
    if job.heading_to:
        service.state = job.heading_to
    elif service.state in (ServiceState.FAILED, KINDS[job.kind].running_state):
        service.state = service.settled_state or ServiceState.ACTIVE
    if service.state != ServiceState.FAILED:
        service.settled_state = service.state
        service.failure_reason = None


def _failed(session: Session, service: Service, job: Job, unchanged: bool = False) -> None:
    KINDS[job.kind].on_failure(session, service, job)
    # what the run found on the cluster before it failed (a backup deleted by hand) is true all the same
    sync_backups(session, service, job)
    if not KINDS[job.kind].settles:
        return
    if unchanged:
        _failed_unchanged(service, job)
        return
    if service.state not in (ServiceState.FAILED, KINDS[job.kind].running_state):
        service.settled_state = service.state
    service.state = ServiceState.FAILED
    service.failure_reason = describe_failure(job)


def _failed_unchanged(service: Service, job: Job) -> None:
    """A failed job that changed nothing leaves the service as it was: the job keeps its error, /status shows it as
    the last job. Only the state shown while the job ran goes back: to the settled one, unless there is none (a
    creation: the site does not exist) or the site was failed before (its reason stays)."""
    if service.state != KINDS[job.kind].running_state:
        return
    if service.settled_state and not service.failure_reason:
        service.state = service.settled_state
    else:
        service.state = ServiceState.FAILED
        service.failure_reason = service.failure_reason or describe_failure(job)


def describe_failure(job: Job) -> str:
    what = job.message or "the job failed"
    if job.failed_task:
        where = f" on {job.failed_host}" if job.failed_host else ""
        return f"Task '{job.failed_task}' failed{where}: {what}"
    return what


def wake_next(runtime: Runtime, job_id: int) -> None:
    """Enqueue the next unfinished job of the same service, if any."""
    with runtime.db.session() as session:
        service_id = session.scalar(select(Job.service_id).where(Job.id == job_id))
        next_id = session.scalar(
            select(Job.id).where(Job.service_id == service_id, Job.state == JobState.QUEUED).order_by(Job.id).limit(1)
        )
    if next_id is not None:
        runtime.queue.enqueue(next_id)


def reap(runtime: Runtime) -> list[int]:
    """Find running jobs whose worker is gone; retry them or fail them. Re-send queued heads nobody took."""
    settings = runtime.settings
    stale = now() - timedelta(seconds=settings.stale_after_seconds)
    touched: list[int] = []
    with runtime.db.session() as session:
        running = session.execute(
            select(Job.id, Job.worker, Job.heartbeat_at, Job.attempts).where(Job.state == JobState.RUNNING)
        ).all()
    for job_id, worker, heartbeat, attempt in running:
        if not _worker_gone(worker, heartbeat, stale):
            continue
        if (worker or "").startswith(HOSTNAME + ":"):
            # what the dead worker's playbook left running must not race the retry
            terminate_run_processes(f"{settings.data_dir / 'runs'}/job{job_id}-{attempt}-")
        if _requeue_or_fail(runtime, job_id):
            touched.append(job_id)
    with runtime.db.session() as session:
        earlier = aliased(Job)
        heads = session.scalars(
            select(Job.id).where(
                Job.state == JobState.QUEUED,
                Job.created_at < stale,
                ~exists(
                    select(earlier.id).where(
                        earlier.service_id == Job.service_id,
                        earlier.id < Job.id,
                        earlier.state.in_(UNFINISHED),
                    )
                ),
            )
        ).all()
    for job_id in heads:
        runtime.queue.enqueue(job_id)
    sweep_run_dirs(runtime)
    return touched


RUN_DIR = re.compile(r"^job(\d+)-(\d+)-")


def sweep_run_dirs(runtime: Runtime) -> list[str]:
    """Remove the private data dirs that no live run owns: those of a worker that was killed (a finished run
    removes its own). They hold the job's extra vars, the admin password among them, and ansible-runner's
    artifacts. A dir is live while its job is running the attempt the dir is named after."""
    runs = runtime.settings.data_dir / "runs"
    try:
        entries = [entry for entry in runs.iterdir() if entry.is_dir() and RUN_DIR.match(entry.name)]
    except FileNotFoundError:
        return []
    wanted = {int(RUN_DIR.match(entry.name).group(1)) for entry in entries}
    with runtime.db.session() as session:
        live = set(
            session.execute(select(Job.id, Job.attempts).where(Job.id.in_(wanted), Job.state == JobState.RUNNING)).all()
        )
    removed = []
    for entry in entries:
        match = RUN_DIR.match(entry.name)
        if (int(match.group(1)), int(match.group(2))) in live:
            continue
        terminate_run_processes(str(entry))
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry.name)
    if removed:
        log.info("removed the run dirs of runs that were cut off: %s", ", ".join(sorted(removed)))
    return removed


def _worker_gone(worker: str | None, heartbeat: datetime | None, stale: datetime) -> bool:
    if heartbeat is not None and heartbeat.tzinfo is None:
        heartbeat = heartbeat.replace(tzinfo=UTC)
    if heartbeat is None or heartbeat < stale:
        return True
    host, _, rest = (worker or "").partition(":")
    if host != HOSTNAME:
        return False
    pid = int(rest.split(":", 1)[0] or 0)
    if pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _requeue_or_fail(runtime: Runtime, job_id: int) -> bool:
    def work(session: Session) -> str | None:
        job = session.get(Job, job_id)
        if job.state != JobState.RUNNING:
            return None
        if job.attempts < job.max_attempts:
            job.state = JobState.QUEUED
            job.message = f"The worker running attempt {job.attempts} stopped unexpectedly; the job is retried."
            job.worker = None
            job.heartbeat_at = None
            return "retry"
        return "fail"

    decision = runtime.db.write(work)
    if decision == "retry":
        log.warning("job %s: worker lost, retrying", job_id)
        runtime.queue.enqueue(job_id)
    elif decision == "fail":
        log.warning("job %s: worker lost, no attempts left", job_id)
        finish(
            runtime,
            job_id,
            JobState.FAILED,
            message="The worker running this job stopped unexpectedly and no attempts are left.",
            cut_off=True,
        )
    return decision is not None
