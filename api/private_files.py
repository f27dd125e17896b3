"""Files only the service's own user may open: the SQLite databases with their -wal and -shm, huey's queue
database and the key that seals job secrets, in a folder of their own (DATA_DIR/private, 0700).

The rest of the data dir keeps the modes it has: the lab keeps folders there that its containers and nginx read.
"""

from __future__ import annotations

import fcntl
import logging
import os
from contextlib import suppress
from pathlib import Path

from api.config import ConfigError, Settings

FILE_MODE = 0o600
DIR_MODE = 0o700
KEY_FILE = "secret.key"
# What SQLite keeps beside a database; it gives them the database file's mode.
SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")

log = logging.getLogger(__name__)


def companions(database: Path) -> list[Path]:
    return [database.with_name(database.name + suffix) for suffix in SQLITE_COMPANIONS]


def sqlite_path(url: str) -> Path | None:
    """The file of a `sqlite:///PATH` URL; None for another database or an in-memory one."""
    if not url.startswith("sqlite:///"):
        return None
    path = url.removeprefix("sqlite:///")
    return None if path in ("", ":memory:") else Path(path)


def private_folder(path: Path) -> Path:
    """`path` made (its missing parents with the usual mode) and closed to everyone but its owner."""
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    path.chmod(DIR_MODE)  # an older install made it 0755
    return path


def private_sqlite_file(path: Path) -> None:
    """Make a SQLite database file 0600 before SQLite opens it, so that its -wal and -shm are 0600 too; an older
    install's files (0644) are made 0600. A folder made for it is 0700; an existing one is the operator's."""
    try:
        if not path.parent.is_dir():
            path.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        # Only a new file is opened here: closing a descriptor of a database that this process's SQLite already
        # has open would drop its POSIX locks on it.
        with suppress(FileExistsError):
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
        for file in (path, *companions(path)):
            with suppress(FileNotFoundError):
                file.chmod(FILE_MODE)
    except OSError as exc:
        raise ConfigError(f"{exc.filename or path}: cannot make it private (mode 0600): {exc.strerror}") from None


def prepare(settings: Settings) -> Path:
    """DATA_DIR/private, 0700, with what an install from before it kept in the data dir itself moved in."""
    folder = settings.private_dir
    try:
        private_folder(folder)
        lock = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)  # the API's and the workers' processes start at once: one moves
            for older, newer in _older_files(settings):
                _move(older, newer)
            key = folder / KEY_FILE
            with suppress(FileNotFoundError):
                key.chmod(FILE_MODE)
        finally:
            os.close(lock)
    except OSError as exc:
        raise ConfigError(f"PROXMOXWP_DATA_DIR: {exc.filename or folder}: {exc.strerror}") from None
    return folder


def _older_files(settings: Settings) -> list[tuple[Path, Path]]:
    """(where an older install kept a file, where it goes) for each default file this configuration uses."""
    folder = settings.private_dir
    files = []
    for url in (settings.database_url, settings.queue_url):
        path = sqlite_path(url)
        if path is not None and path.parent == folder:
            files.append((settings.data_dir / path.name, path))
    if not settings.secret_key:
        files.append((settings.data_dir / KEY_FILE, folder / KEY_FILE))
    return files


def _move(older: Path, newer: Path) -> None:
    if not older.exists():
        return
    if newer.exists():
        raise ConfigError(
            f"{older} and {newer} both exist: keep the one in use at {newer} (stop the API and the workers first) "
            f"and remove the other"
        )
    # The database's companions first and the database last: a process that finds the database in its new place
    # finds its write-ahead log there too. Same file system, so each rename is atomic.
    for companion, new_companion in zip(companions(older), companions(newer), strict=True):
        with suppress(FileNotFoundError):
            companion.rename(new_companion)
            new_companion.chmod(FILE_MODE)
    older.rename(newer)
    newer.chmod(FILE_MODE)
    log.warning("moved %s to %s (the private folder of the data dir)", older, newer)
