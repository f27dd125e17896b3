"""The product's wheels for an install without the package index (tests/test_clean_install.py, the production guide's
`scripts/install.sh --no-lab` in tests/test_production_guide.py): the folder scripts/test.sh fills while installing
(`PROXMOXWP_TEST_WHEELHOUSE`), or, run alone, one fetched here first."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from api.waiting import wait_for

ROOT = Path(__file__).resolve().parent.parent
WHEELS_TIMEOUT = 900.0  # scripts/test.sh fetches them beside the first tests; about two minutes
EXTRAS = "postgres,redis,lab"  # what scripts/install.sh installs by default


@pytest.fixture
def product_wheels(tmp_path_factory) -> Path:
    given = os.environ.get("PROXMOXWP_TEST_WHEELHOUSE")
    if given:
        folder = Path(given)
        status = wait_for(
            lambda: (folder / ".status").is_file() and (folder / ".status").read_text().strip(),
            timeout=WHEELS_TIMEOUT,
            what=f"scripts/test.sh to fetch the product's wheels into {folder}",
            interval=1.0,
            error=pytest.fail.Exception,
        )
        assert status == "0", f"fetching the wheels failed (exit {status}): see wheelhouse.log beside {folder}"
        return folder
    folder = tmp_path_factory.mktemp("wheelhouse")
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "-d", str(folder), "setuptools>=77", f".[{EXTRAS}]"],
        cwd=ROOT, check=True, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    return folder
