"""The Paymenter extension's Overview in a real browser while a job runs: the page follows the job's true progress
through the extension's JSON route and then shows its result, without being loaded again.

The API runs as in production with a worker running the playbook doubles (tests/playbooks/ops), whose runs the
test holds twice (`block-` and `block2-` files) so that progress moves while the page watches. The service page is
served by the test runtime (paymenter/tests/serve.php under `php -S`: PaymenterRuntime, the extension booted with
its views and routes) and opened in headless Chromium (Debian's `chromium`, driven by Selenium through Debian's
`chromium-driver`), which may reach loopback only. Screenshots of the page running and finished are kept in
tests/artifacts/.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from conftest import ROOT, TOKEN, Process, wait_until

from lab.ports import free_port

pytestmark = pytest.mark.db

SERVICE_ID = 4201
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
# Nothing but loopback: no name resolves, no background service of the browser calls home.
CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--window-size=1100,900",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-domain-reliability",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]


@pytest.fixture
def panel(server, tmp_path) -> Iterator[str]:
    """The test runtime's service pages on a free loopback port; stopped at the end."""
    php = shutil.which("php")
    if php is None:
        pytest.fail("php is not installed: scripts/install.sh --dev installs it from Debian")
    port = free_port()
    php_tmp = tmp_path / "php-tmp"  # where each request compiles its views, and must remove them
    php_tmp.mkdir()
    env = {"PATH": "/usr/bin:/bin", "PROXMOXWP_TEST_API_URL": server, "PROXMOXWP_TEST_API_TOKEN": TOKEN,
           "PROXMOXWP_TEST_PUBLIC_IP": "203.0.113.10", "TMPDIR": str(php_tmp)}  # fmt: skip
    serve = ROOT / "paymenter" / "tests" / "serve.php"
    proc = Process([php, "-S", f"127.0.0.1:{port}", str(serve)], env, tmp_path / "panel.log")
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return requests.get(base + "/", timeout=1).status_code > 0
        except requests.RequestException:
            return proc.proc.poll() is not None and pytest.fail(proc.output())

    try:
        wait_until(up, 30, what="php -S with the test runtime")
        yield base
    finally:
        proc.stop()
    # Every request, a page or a path with no route, removes what it wrote there.
    left = sorted(p.name for p in php_tmp.iterdir())
    assert not left, f"the panel's requests left {left} in {php_tmp}"


@pytest.fixture
def browser() -> Iterator:
    """Headless Chromium through chromedriver; quit at the end."""
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.fail("chromium and chromium-driver are not installed: scripts/install.sh --dev installs them")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


class Api:
    def __init__(self, base: str) -> None:
        self.base, self.headers = base, {"Authorization": f"Bearer {TOKEN}"}

    def post(self, path: str, body: dict) -> dict:
        answer = requests.post(self.base + path, json=body, headers=self.headers, timeout=30)
        assert answer.status_code in (200, 202), answer.text
        return answer.json()

    def job(self, job_id: int) -> dict:
        return requests.get(f"{self.base}/jobs/{job_id}", headers=self.headers, timeout=30).json()["job"]

    def finished(self, job_id: int) -> dict:
        return wait_until(lambda: (job := self.job(job_id))["state"] in ("succeeded", "failed") and job, 90,
                          what=f"job {job_id} to end")  # fmt: skip


def held_at(api: Api, job_id: int, done_before: int) -> int:
    """The progress at which a held run stays: more tasks done than `done_before`, and no more coming."""
    seen: list[int] = []

    def holding() -> int | None:
        done = api.job(job_id)["progress"]["done"]
        seen.append(done)
        # the worker publishes progress at least every heartbeat (0.5 s here): the same count for 1.5 s is a hold
        return done if done > done_before and seen[-4:] == [done] * 4 else None

    return wait_until(holding, 60, interval=0.5, what=f"job {job_id} to hold")


def test_the_overview_follows_a_running_job_and_then_shows_its_result(server, worker, panel, browser, control_dir):
    from selenium.webdriver.support.ui import WebDriverWait

    api = Api(server)
    site = {"service_id": SERVICE_ID, "email": "owner@example.com", "plan": "basic", "public_ip": "203.0.113.10"}
    api.finished(api.post("/create-site", site)["job_id"])
    # A first backup: what a backup takes becomes the total the next one is measured against.
    first = api.finished(api.post("/action/mkbak", {"service_id": SERVICE_ID})["job_id"])
    total = first["progress"]["total"]
    assert first["state"] == "succeeded" and total == first["progress"]["done"] > 0

    (control_dir / "block-backup_create").touch()
    (control_dir / "block2-backup_create").touch()
    job_id = api.post("/action/mkbak", {"service_id": SERVICE_ID})["job_id"]
    first_hold = held_at(api, job_id, 0)

    browser.get(f"{panel}/services/{SERVICE_ID}?tab=overview")
    browser.execute_script("window.proxmoxwpSamePage = true")  # gone if the page were loaded again
    text = browser.find_element("css selector", "[data-activity-text]")
    wait = WebDriverWait(browser, 30, poll_frequency=0.2)
    assert browser.find_element("css selector", "[data-activity-label]").text == "Making a backup"
    wait.until(lambda _: text.text == f"Step {first_hold} of {total}.")
    feed = requests.get(f"{panel}/extensions/proxmoxwp/services/{SERVICE_ID}/activity", timeout=30).json()
    assert feed["busy"] and feed["job"]["state"] == "running"
    assert (feed["job"]["done"], feed["job"]["total"]) == (first_hold, total)

    (control_dir / "release-backup_create").touch()
    second_hold = held_at(api, job_id, first_hold)
    wait.until(lambda _: text.text == f"Step {second_hold} of {total}.")
    bar = browser.find_element("css selector", "[data-activity-bar]")
    assert bar.is_displayed() and bar.get_attribute("value") == str(second_hold)
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "overview-running.png"))

    (control_dir / "release2-backup_create").touch()
    assert api.finished(job_id)["state"] == "succeeded"
    wait.until(lambda _: text.text == "Done.")
    assert browser.find_element("css selector", "[data-part=activity] h3").text == "Last change"
    assert not bar.is_displayed()
    assert browser.execute_script("return window.proxmoxwpSamePage") is True, "updated in place, not reloaded"
    feed = requests.get(f"{panel}/extensions/proxmoxwp/services/{SERVICE_ID}/activity", timeout=30).json()
    assert not feed["busy"] and feed["job"]["state"] == "succeeded"
    browser.save_screenshot(str(ARTIFACTS / "overview-done.png"))
    assert (ARTIFACTS / "overview-done.png").stat().st_size > 0
