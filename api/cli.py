"""The `proxmoxwp` command: serve the API, run a worker, upgrade the database, look at jobs.

Other packages add commands through the `proxmoxwp.commands` entry point group (the lab adds `lab`); they are
imported only when called, and one whose dependencies are missing says what to install.
"""

from __future__ import annotations

import functools
import gc
import json
import logging
import sys
import threading
import time
from importlib import metadata

import click
from sqlalchemy import select

from api.config import DEFAULT_THREADS, ConfigError, load_settings
from api.doctor.command import doctor
from api.image.command import image
from api.runtime import Runtime


def _runtime() -> Runtime:
    return Runtime(load_settings())


PLUGIN_GROUP = "proxmoxwp.commands"


@functools.cache
def _plugged_in() -> dict[str, metadata.EntryPoint]:
    return {entry.name: entry for entry in metadata.entry_points(group=PLUGIN_GROUP)}


def _load(entry: metadata.EntryPoint) -> click.Command:
    try:
        return entry.load()
    except ImportError as exc:
        missing = exc.name or str(exc)
        extra = entry.dist.name if entry.dist else "proxmoxwp"

        def refuse() -> None:
            raise click.ClickException(
                f"`proxmoxwp {entry.name}` needs {missing}, which is not installed: "
                f"pip install '{extra}[{entry.name}]' (scripts/install.sh installs it)"
            )

        return click.Command(
            entry.name,
            callback=refuse,
            help=f"Not installed (needs {missing}).",
            # whatever follows (`lab up --bind …`) gets the same answer, not a usage error
            context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
        )


class _Group(click.Group):
    """Turns configuration errors into one line on stderr and exit status 2; finds plugged-in commands."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *_plugged_in()})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        command = super().get_command(ctx, name)
        if command is None and name in _plugged_in():
            command = _load(_plugged_in()[name])
        return command

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            click.echo(f"proxmoxwp: configuration error: {exc}", err=True)
            sys.exit(2)


@click.group(cls=_Group)
def main() -> None:
    """ProxmoxWP control plane."""


@main.command()
@click.option("--bind", default="127.0.0.1:8080", show_default=True, help="Address and port to listen on.")
@click.option("--workers", default=2, show_default=True, help="gunicorn worker processes.")
@click.option(
    "--threads",
    default=DEFAULT_THREADS,
    show_default=True,
    type=click.IntRange(1, 1000),
    help="Threads per worker process; PROXMOXWP_MAX_WAITERS of them may wait for jobs (default half).",
)
def serve(bind: str, workers: int, threads: int) -> None:
    """Serve the API with gunicorn."""
    from gunicorn.app.base import BaseApplication

    from api import create_app
    from api.listen import AddressInUse, check_free, tcp_address

    settings = load_settings()
    Runtime(settings).check(need_tokens=True)
    settings.waiter_limit(threads)  # a limit that takes every thread stops here, not in each gunicorn worker
    address = tcp_address(bind)
    # a socket per worker (api/listen.py); port 0 would give each worker a port of its own
    reuse_port = address is not None and address[1] != 0 and workers > 1
    if reuse_port:
        try:
            check_free(*address)
        except (AddressInUse, OSError) as exc:
            raise click.ClickException(f"cannot listen on {bind}: {exc}") from None

    class _Gunicorn(BaseApplication):
        def load_config(self) -> None:
            for key, value in {
                "bind": bind,
                "workers": workers,
                "threads": threads,
                "worker_class": "gthread",
                "reuse_port": reuse_port,
                "accesslog": "-",
                "errorlog": "-",
                "timeout": 700,
                "graceful_timeout": 30,
                "access_log_format": '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(M)sms',
            }.items():
                self.cfg.set(key, value)

        def load(self):
            return _served_app(create_app(settings, check=False, threads=threads))

    _Gunicorn().run()


def _served_app(app):
    """`app` with every object made so far (the app, its inventory, the imported modules) left out of the garbage
    collector's full passes: a worker made about 160,000 of them at start, and a full pass over them stopped every
    thread of the process for about 90 ms, once every few thousand requests (bench/README.md). They live as long as
    the process; what requests make is collected as before."""
    gc.collect()
    gc.freeze()
    return app


@main.command()
@click.option(
    "--concurrency",
    type=int,
    default=None,
    help="Jobs run at once by this worker (default: PROXMOXWP_WORKERS).",
)
def worker(concurrency: int | None) -> None:
    """Run jobs from the queue until stopped."""
    from api.jobs import engine
    from api.jobs.runner import end_active_runs

    runtime = _runtime()
    runtime.check()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    Runtime.put_tools_on_path()
    runtime.queue.serve(lambda job_id: engine.execute(runtime, job_id))
    stop = threading.Event()

    def reaper() -> None:
        while True:
            try:
                engine.reap(runtime)
            except Exception:
                logging.getLogger("api.reaper").exception("reaper pass failed")
            if stop.wait(runtime.settings.reaper_seconds):
                return

    threading.Thread(target=reaper, name="reaper", daemon=True).start()
    if runtime.settings.reconcile_seconds > 0:
        threading.Thread(target=_reconciler, args=(runtime, stop), name="reconciler", daemon=True).start()
    if runtime.settings.ssl_retry_seconds > 0:
        threading.Thread(target=_ssl_retrier, args=(runtime, stop), name="ssl-retrier", daemon=True).start()
    if runtime.settings.pool_seconds > 0:
        threading.Thread(target=_pool_keeper, args=(runtime, stop), name="pool-keeper", daemon=True).start()
    consumer = runtime.queue.huey.create_consumer(
        workers=concurrency or runtime.settings.workers,
        worker_type="thread",
        periodic=False,
        # On SQLite the consumer polls the queue: at most 0.1 s between looks, so a job waits for a worker that is
        # free about 0.05 s on average (a look is one indexed SELECT). Redis hands jobs over at once.
        initial_delay=0.05,
        backoff=1.5,
        max_delay=0.1,
        check_worker_health=True,
    )
    try:
        consumer.run()
    finally:
        stop.set()
        # SIGTERM stops at once: the playbooks of this worker end too, and the jobs are retried by the next
        # worker's reaper. SIGINT lets running jobs finish first.
        end_active_runs()


def _reconciler(runtime: Runtime, stop: threading.Event) -> None:
    """Queue a reconcile of every live site that was not checked for PROXMOXWP_RECONCILE_SECONDS. It looks more
    often than that (at most every minute), so that sites come due one by one rather than all at one moment."""
    from api.reconcile import queue_reconciles

    interval = runtime.settings.reconcile_seconds
    while True:
        try:
            queued = [o for o in queue_reconciles(runtime, due_seconds=interval) if o.job_id is not None]
            if queued:
                logging.getLogger("api.reconcile").info("queued the reconcile of %d sites", len(queued))
        except Exception:
            logging.getLogger("api.reconcile").exception("reconcile pass failed")
        if stop.wait(min(interval, 60.0)):
            return


def _ssl_retrier(runtime: Runtime, stop: threading.Event) -> None:
    """Queue an ssl_retry of every active site with a certificate in error whose retry time has come. Retry times
    are minutes to a day apart (PROXMOXWP_SSL_RETRY_SECONDS, doubled after each failure): a look every minute
    keeps a retry at most a minute late."""
    from api.ssl_retry import queue_ssl_retries

    log = logging.getLogger("api.ssl_retry")
    while True:
        try:
            queued = [o for o in queue_ssl_retries(runtime) if o.job_id is not None]
            if queued:
                log.info("queued the certificate retry of %d sites", len(queued))
        except Exception:
            log.exception("certificate retry pass failed")
        if stop.wait(60.0):
            return


# How long `proxmoxwp pool fill|drain` waits for a worker's pass under way.
POOL_WAIT_SECONDS = 900.0


def _pool_keeper(runtime: Runtime, stop: threading.Event) -> None:
    """Keep the warm pool (docs/pool.md): a whole pass every PROXMOXWP_POOL_SECONDS, and one soon after a node is
    short of members (a site took one), once the creations under way have ended (api/pool/schedule.py). Passes of
    all workers take turns (a lock); a pass already under way elsewhere is enough."""
    from api.pool.keeper import Keeper, creating, has_members, shortfall
    from api.pool.schedule import LOOK_SECONDS, KeeperSchedule

    log = logging.getLogger("api.pool")
    keeper = Keeper(runtime)
    schedule = KeeperSchedule(
        pool_seconds=runtime.settings.pool_seconds,
        wanted=lambda: runtime.inventory.pool.size > 0 or has_members(runtime),
        short=lambda: shortfall(runtime) > 0,
        creating=lambda: creating(runtime),
    )
    while True:
        try:
            if schedule.due(time.monotonic()):
                result = keeper.run()
                if result.ran:
                    schedule.ran(time.monotonic(), made=len(result.made))
                    if result.made or result.removed or result.problems:
                        log.info("pool pass: %s", result.as_dict())
        except Exception:
            log.exception("pool pass failed")
        if stop.wait(LOOK_SECONDS):
            return


@main.command()
@click.option("--service-id", type=int, default=None, help="Only this site (default: every live site).")
@click.option("--wait", is_flag=True, help="Wait for the jobs and print what was repaired and what drift remains.")
@click.option("--timeout", type=int, default=900, show_default=True, help="Seconds --wait waits for all jobs.")
def reconcile(service_id: int | None, wait: bool, timeout: int) -> None:
    """Compare sites with Proxmox VE, NPM and DNS now: repair what is safe, record the rest as drift.

    A running worker carries out the jobs. A site with a job queued or running is skipped (and said so).
    Exit status: 0, or 1 when the site asked for was skipped or a job did not succeed.
    """
    from api.models import Drift, Job, JobState
    from api.presenters import drift_view
    from api.reconcile import queue_reconciles
    from api.waiting import TimedOut, wait_for

    runtime = _runtime()
    runtime.check()
    outcomes = queue_reconciles(runtime, [service_id] if service_id is not None else None)
    for outcome in outcomes:
        if outcome.job_id is None:
            click.echo(f"service {outcome.service_id}: skipped: {outcome.skipped}")
        else:
            click.echo(f"service {outcome.service_id}: job {outcome.job_id} queued")
    bad = service_id is not None and outcomes[0].job_id is None
    if not wait:
        sys.exit(1 if bad else 0)
    jobs = {o.job_id: o.service_id for o in outcomes if o.job_id is not None}

    def ended() -> list[Job] | None:
        with runtime.db.session() as session:
            rows = session.scalars(select(Job).where(Job.id.in_(jobs))).all()
            session.expunge_all()
        return rows if all(job.state not in (JobState.QUEUED, JobState.RUNNING) for job in rows) else None

    try:
        finished = wait_for(ended, timeout=timeout, what=f"{len(jobs)} reconcile jobs to end", interval=0.5)
    except TimedOut as exc:
        raise click.ClickException(f"{exc} (is a worker running?)") from None
    for job in sorted(finished, key=lambda j: j.service_id):
        if job.state != JobState.SUCCEEDED:
            bad = True
            click.echo(f"service {job.service_id}: job {job.id} {job.state}: {job.message or 'no message'}")
            continue
        click.echo(f"service {job.service_id}: job {job.id} succeeded")
        for item in (job.stats or {}).get("repaired") or []:
            click.echo(f"  repaired: {item.get('what')} ({item.get('action')})")
        with runtime.db.session() as session:
            rows = session.scalars(select(Drift).where(Drift.service_id == job.service_id).order_by(Drift.id))
            drift = [drift_view(row) for row in rows]
        for item in drift:
            click.echo(
                f"  drift: {item['what']}: expected {item['expected']}, found {item['found']} "
                f"(since {item['found_at'][:19]})"
            )
        if not drift:
            click.echo("  no drift")
    sys.exit(1 if bad else 0)


@main.group()
def pool() -> None:
    """The warm pool of containers waiting for new sites (docs/pool.md)."""


@pool.command("status")
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
def pool_status(as_json: bool) -> None:
    """The pool's settings and its members as the API knows them (no call to the cluster)."""
    from api.pool.members import listing, status

    runtime = _runtime()
    runtime.check()
    shown = {**status(runtime), "members": listing(runtime)}
    if as_json:
        click.echo(json.dumps(shown))
        return
    state = "paused (proxmoxwp pool fill resumes it)" if shown["paused"] else "kept filled"
    if not shown["size"]:
        click.echo("pool: off (proxmoxwp_pool.size is 0 in the inventory)")
    else:
        click.echo(f"pool: {shown['size']} per node of plan {shown['plan']}, from {shown['image']}; {state}")
    for member in shown["members"]:
        owner = f" for service {member['service_id']}" if member["service_id"] else ""
        click.echo(
            f"  CT {member['vmid']} on {member['node']} ({member['ip'] or 'no address'}): {member['state']}{owner}, "
            f"checked {member['checked_at'][:19]}"
        )


def _pool_pass(keep_filled: bool) -> None:
    """Keep the pool filled or empty from now on, then do one pass that makes it so."""
    from api.pool.keeper import Keeper
    from api.pool.members import set_paused

    runtime = _runtime()
    runtime.check()
    Runtime.put_tools_on_path()
    set_paused(runtime, not keep_filled)
    result = Keeper(runtime).run(wait=POOL_WAIT_SECONDS)
    if not result.ran:
        raise click.ClickException(f"a worker's pool pass did not end within {POOL_WAIT_SECONDS:.0f} s; try again")
    click.echo(f"checked {result.checked} members; removed {result.removed or 'none'}; made {result.made or 'none'}")
    for vmid, reason in result.failed.items():
        click.echo(f"  CT {vmid} failed its check and was removed: {reason}")
    for problem in result.problems:
        click.echo(f"  problem: {problem}")
    if result.problems or result.failed:
        sys.exit(1)


@pool.command("fill")
def pool_fill() -> None:
    """Keep the pool filled again (after a drain) and fill it now: check every member, replace those not ready."""
    _pool_pass(keep_filled=True)


@pool.command("drain")
def pool_drain() -> None:
    """Remove every member and keep the pool empty until `proxmoxwp pool fill`. Members already given to sites
    being created stay theirs."""
    _pool_pass(keep_filled=False)


@main.group()
def db() -> None:
    """The database schema."""


@db.command()
def upgrade() -> None:
    """Create or migrate the database schema to the newest version."""
    from api.migrate import upgrade as run_upgrade

    runtime = _runtime()
    runtime.check(need_schema=False)
    try:
        revision = run_upgrade(runtime.db)
    except Exception as exc:
        raise ConfigError(f"PROXMOXWP_DATABASE_URL: {str(getattr(exc, 'orig', exc)).splitlines()[0]}") from None
    click.echo(f"database at revision {revision}")


@main.group()
def jobs() -> None:
    """Jobs and their results."""


@jobs.command("list")
@click.option("--service-id", type=int, default=None)
@click.option("--state", type=click.Choice(["queued", "running", "succeeded", "failed", "cancelled"]))
@click.option("--limit", type=int, default=30, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def list_jobs(service_id: int | None, state: str | None, limit: int, as_json: bool) -> None:
    """The newest jobs."""
    from api.models import Job
    from api.presenters import job_view

    runtime = _runtime()
    runtime.check()
    with runtime.db.session() as session:
        query = select(Job).order_by(Job.id.desc()).limit(limit)
        if service_id is not None:
            query = query.where(Job.service_id == service_id)
        if state:
            query = query.where(Job.state == state)
        rows = [job_view(job) for job in session.scalars(query)]
    if as_json:
        for row in rows:
            click.echo(json.dumps(row))
        return
    click.echo(f"{'ID':>6}  {'SERVICE':>12}  {'KIND':<13} {'STATE':<10} {'PROGRESS':<9} {'CREATED':<20} MESSAGE")
    for row in rows:
        progress = f"{row['progress']['done']}/{row['progress']['total'] or '?'}"
        click.echo(
            f"{row['id']:>6}  {row['service_id']:>12}  {row['kind']:<13} {row['state']:<10} {progress:<9} "
            f"{row['created_at'][:19]:<20} {(row['message'] or '')[:60]}"
        )


@jobs.command("show")
@click.argument("job_id", type=int)
@click.option("--events", type=int, default=20, show_default=True, help="How many of the last events to show.")
def show_job(job_id: int, events: int) -> None:
    """One job with its result and its last events."""
    from api.models import Job, JobEvent
    from api.presenters import job_view

    runtime = _runtime()
    runtime.check()
    with runtime.db.session() as session:
        job = session.get(Job, job_id)
        if job is None:
            click.echo(f"proxmoxwp: there is no job {job_id}", err=True)
            sys.exit(1)
        view = job_view(job)
        tail = session.scalars(
            select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.seq.desc()).limit(events)
        ).all()
    click.echo(json.dumps(view, indent=2))
    if tail:
        click.echo("events:")
    for event in reversed(tail):
        message = (event.data or {}).get("msg", "")
        click.echo(f"  {event.seq:>4} {event.event:<24} {event.host or '':<16} {event.task or ''} {message}".rstrip())


@jobs.command("cancel")
@click.argument("job_id", type=int)
def cancel_job(job_id: int) -> None:
    """Cancel a queued job, or ask the worker to stop a running one."""
    from api.jobs import engine
    from api.models import Job, JobState

    runtime = _runtime()
    runtime.check()

    def work(session):
        job = session.get(Job, job_id)
        if job is None:
            return "missing"
        if job.state == JobState.RUNNING:
            job.cancel_requested = True
            return "requested"
        return "queued" if job.state == JobState.QUEUED else job.state

    outcome = runtime.db.write(work)
    if outcome == "missing":
        click.echo(f"proxmoxwp: there is no job {job_id}", err=True)
        sys.exit(1)
    if outcome == "queued":
        engine.finish(runtime, job_id, JobState.CANCELLED, message="Cancelled by an operator.")
        engine.wake_next(runtime, job_id)
        click.echo(f"job {job_id} cancelled")
    elif outcome == "requested":
        click.echo(f"job {job_id} is running; the worker will stop it")
    else:
        click.echo(f"job {job_id} has already ended ({outcome})")


main.add_command(doctor)  # with its checks, in api/doctor
main.add_command(image)  # build and upload the golden image, in api/image
