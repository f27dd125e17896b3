"""The job queue: huey on a SQLite file by default, on Redis when workers run on several machines.

Only job ids travel through the queue; the database row holds everything else, so a lost message costs a
short delay (the reaper sends it again), never a job.
"""

from __future__ import annotations

from collections.abc import Callable

from huey import Huey, RedisHuey, SqliteHuey

from api.private_files import private_sqlite_file, sqlite_path

TASK_NAME = "proxmoxwp.run_job"


def make_huey(queue_url: str) -> Huey:
    if queue_url.startswith("sqlite:///"):
        path = sqlite_path(queue_url)
        if path is not None:  # a file, not memory: huey makes its -wal and -shm with this file's mode
            private_sqlite_file(path)
        return SqliteHuey(name="proxmoxwp", filename=queue_url.removeprefix("sqlite:///"), timeout=30)
    return RedisHuey(name="proxmoxwp", url=queue_url, blocking=True, read_timeout=1)


class JobQueue:
    def __init__(self, queue_url: str) -> None:
        self.huey = make_huey(queue_url)
        self._handler: Callable[[int], None] | None = None
        self._task = self.huey.task(name=TASK_NAME)(self._dispatch)

    def _dispatch(self, job_id: int) -> None:
        if self._handler is None:
            raise RuntimeError("this process does not run jobs")
        self._handler(job_id)

    def serve(self, handler: Callable[[int], None]) -> None:
        """Make this process a worker: queue messages now call `handler(job_id)`."""
        self._handler = handler

    def enqueue(self, job_id: int) -> None:
        self._task(job_id)

    def pending(self) -> int:
        return self.huey.pending_count()

    def flush(self) -> None:
        self.huey.flush()
