"""The key that seals job secrets: every process of a deployment must end up with the same one."""

from __future__ import annotations

import multiprocessing

from api.jobs.secrets import SecretBox


def _seal_at_once(args) -> bytes:
    data_dir, barrier = args
    barrier.wait()
    return SecretBox(None, data_dir).seal({"admin_password": "same for all"})


def test_processes_that_start_at_once_share_one_key(tmp_path):
    """gunicorn workers and job workers start together; none may read a key file another is still writing."""
    for round_ in range(5):
        data_dir = tmp_path / f"round-{round_}"
        with multiprocessing.Manager() as manager:
            barrier = manager.Barrier(6)
            with multiprocessing.Pool(6) as pool:
                sealed = pool.map(_seal_at_once, [(data_dir, barrier)] * 6)
        box = SecretBox(None, data_dir)
        assert [box.open(token) for token in sealed] == [{"admin_password": "same for all"}] * 6
        assert len((data_dir / "secret.key").read_text().strip()) >= 48
        assert [p.name for p in data_dir.iterdir()] == ["secret.key"], "no draft key file is left"
