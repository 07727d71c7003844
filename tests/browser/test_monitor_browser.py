"""The monitor as a user sees it: log in to Airflow, find the demo queue's finished pilots and last decision,
read a pilot's log, pause the demo scheduler's tag with the monitor's button, and see the next cycle submit
nothing, for the reason the pause gave."""

from __future__ import annotations

import datetime as dt
import re
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
import requests
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException, WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from autopilot_ops.panda.devserver.database import Database
from autopilot_ops.panda.devserver.jobspec import build_job_spec
from autopilot_ops.panda.devserver.jobstore import JobStore
from autopilot_ops.panda.devserver.submitter import submit_specs

from .conftest import ARTIFACTS, Quickstart, needs_chromium

pytestmark = [pytest.mark.browser, pytest.mark.airflow, needs_chromium]

T = TypeVar("T")
TAG = "demo"
DAG_ID = "autopilot_demo"
REASON = f"browser test {uuid.uuid4().hex[:6]}"


def wait(driver: WebDriver, what: str, condition: Callable[[WebDriver], T], timeout: float = 30) -> T:
    """``condition``'s first truthy value; elements that vanish while a page reloads are looked up again."""

    def across_reloads(d: WebDriver) -> T | bool:
        try:
            return condition(d)
        except WebDriverException as error:
            # Chrome reports an element of the page being replaced as an "unknown error", not as stale
            if "does not belong to the document" not in str(error.msg):
                raise
            return False
    waiter = WebDriverWait(driver, timeout, poll_frequency=0.25,
                           ignored_exceptions=(NoSuchElementException, StaleElementReferenceException))
    return waiter.until(across_reloads, f"waiting {timeout:.0f} s for {what}")


def table_after(driver: WebDriver, heading_xpath: str) -> list[dict[str, WebElement]]:
    """The rows of the first table after a heading, each as ``{column header: cell}``."""
    table = driver.find_element(By.XPATH, f"{heading_xpath}/following-sibling::table[1]")
    headers = [th.text for th in table.find_elements(By.TAG_NAME, "th")]
    rows = []
    for tr in table.find_elements(By.TAG_NAME, "tr")[1:]:
        cells = tr.find_elements(By.TAG_NAME, "td")
        if len(cells) == len(headers):
            rows.append(dict(zip(headers, cells)))
    return rows


def log_in(driver: WebDriver, quickstart: Quickstart) -> None:
    """Open the monitor: the visitor is sent to Airflow's login page, and back to the monitor after it."""
    driver.get(f"{quickstart.airflow_url}/autopilot/")
    wait(driver, "Airflow's login form", lambda d: d.find_element(By.NAME, "username")).send_keys("admin")
    driver.find_element(By.NAME, "password").send_keys(quickstart.admin_password)
    submit = driver.find_element(By.CSS_SELECTOR, "button[type=submit]")
    wait(driver, "the sign-in button to be enabled", lambda d: submit.is_enabled())
    submit.click()
    wait(driver, "the monitor after the login",
         lambda d: d.find_element(By.TAG_NAME, "h1").text == "AutoPilot schedulers")
    assert driver.current_url == f"{quickstart.airflow_url}/autopilot/"
    assert "signed in as user:admin (admin)" in driver.find_element(By.TAG_NAME, "nav").text


def queue_with_finished_pilots(driver: WebDriver) -> dict[str, Any]:
    """Reload the overview until a demo queue shows finished pilots (the sweep after the pilots' end)."""

    def finished_row(d: WebDriver) -> dict[str, Any] | None:
        d.refresh()
        for row in table_after(d, f"//h2[@id='tag-{TAG}']"):
            if int(row["finished"].text) > 0:
                return {"queue": row["queue"].text, "finished": int(row["finished"].text)}
        time.sleep(2)
        return None

    return wait(driver, "a demo queue with finished pilots", finished_row, timeout=150)


def control_state(driver: WebDriver) -> WebElement:
    return driver.find_element(By.CSS_SELECTOR, f"#control-tag-{TAG} .control-state")


def press(driver: WebDriver, label: str, reason: str = "") -> None:
    panel = driver.find_element(By.ID, f"control-tag-{TAG}")
    if reason:
        panel.find_element(By.CLASS_NAME, "control-reason").send_keys(reason)
    panel.find_element(By.XPATH, f".//button[normalize-space()='{label}']").click()


def trigger_cycle(quickstart: Quickstart) -> str:
    """One run of the demo scheduler DAG now, through Airflow's REST API; its run id (the cycle id)."""
    token = requests.post(f"{quickstart.airflow_url}/auth/token", timeout=30,
                          json={"username": "admin", "password": quickstart.admin_password}).json()["access_token"]
    reply = requests.post(f"{quickstart.airflow_url}/api/v2/dags/{DAG_ID}/dagRuns", timeout=30,
                          headers={"Authorization": f"Bearer {token}"},
                          json={"logical_date": dt.datetime.now(dt.timezone.utc).isoformat()})
    assert reply.status_code == 200, reply.text
    return reply.json()["dag_run_id"]


def panda_jobs(quickstart: Quickstart) -> dict[int, str]:
    """``{PanDA id: status}`` of every job in the dev server's database."""
    database = Database(quickstart.home / "panda-devserver.db")
    try:
        return {job["panda_id"]: job["status"] for job in JobStore(database).jobs()}
    finally:
        database.close()


def inject_jobs(quickstart: Quickstart, queues: list[str]) -> None:
    """One new job per queue: without the pause, the next cycle would submit a pilot for each."""
    transformation = f"{quickstart.panda_url}/demo-transformation.sh"
    specs = [build_job_spec(queue, transformation, f"--n 1000 --output after-pause.{queue}.out",
                            out_files=[f"after-pause.{queue}.out"], label="demo") for queue in queues]
    assert len(submit_specs(quickstart.panda_url, specs)) == len(queues)


@pytest.mark.timeout(600)  # autopilot up and down included (about 1 min each on 2 busy cores)
def test_monitor_in_a_browser(quickstart: Quickstart, browser: WebDriver) -> None:
    assert "jobs finished" in quickstart.up_output
    log_in(browser, quickstart)

    # the demo queue with finished pilots, and its last decision's reason as the scheduler recorded it
    queue = queue_with_finished_pilots(browser)["queue"]

    def last_decision(d: WebDriver) -> tuple[str, list[str]] | None:
        """The queue's last cycle and reason trace, its details opened (looked up again after a live refresh)."""
        row = next(r for r in table_after(d, f"//h2[@id='tag-{TAG}']") if r["queue"].text == queue)
        if not row["reason"].find_element(By.TAG_NAME, "details").get_attribute("open"):
            row["reason"].find_element(By.TAG_NAME, "summary").click()
        trace = [li.text for li in row["reason"].find_elements(By.TAG_NAME, "li")]
        return (row["last cycle"].text, trace) if all(trace) else None

    last_cycle, trace = wait(browser, f"the last decision of {queue}", last_decision)
    (recorded,) = quickstart.rows(
        "SELECT reason FROM cycles WHERE queue = %s AND to_char(started_at AT TIME ZONE 'UTC', "
        "'YYYY-MM-DD HH24:MI:SS') || ' UTC' = %s", queue, last_cycle)
    assert trace == recorded["reason"] and trace[-1].startswith("submit ")

    # a finished pilot's log, from the queue page
    browser.find_element(By.LINK_TEXT, queue).click()
    wait(browser, f"the page of {queue}", lambda d: d.find_element(By.TAG_NAME, "h1").text == queue)

    def finished_pilot(d: WebDriver) -> tuple[str, str] | None:
        """A finished pilot's id and the link to its stderr (looked up again after a live refresh)."""
        pilots = [p for p in table_after(d, "//h2[text()='Recent pilots']") if p["state"].text == "finished"]
        return (pilots[0]["id"].text, pilots[0]["logs"].find_element(By.LINK_TEXT, "stderr").get_attribute(
            "href")) if pilots else None

    pilot_id, stderr_link = wait(browser, "a finished pilot on the queue page", finished_pilot)
    (pilot,) = quickstart.rows("SELECT stderr_path FROM pilots WHERE id = %s", int(pilot_id))
    browser.get(stderr_link)
    log_text = wait(browser, "the pilot's log", lambda d: d.find_element(By.TAG_NAME, "pre").text)
    assert log_text == Path(pilot["stderr_path"]).read_text().strip()
    done = re.findall(r"job (\d+): finished", log_text)
    assert done and "pilot exiting with code 0" in log_text, log_text
    assert {panda_jobs(quickstart)[int(job)] for job in done} == {"finished"}, "PanDA has the pilot's jobs finished"

    # pause the demo scheduler's tag with the monitor's button: the reloaded page shows the pause in force
    browser.get(f"{quickstart.airflow_url}/autopilot/")
    assert control_state(browser).text == "not paused"
    press(browser, "Pause", reason=REASON)
    wait(browser, "the tag shown paused", lambda d: control_state(d).get_attribute("data-paused") == "true")
    panel_text = browser.find_element(By.ID, f"control-tag-{TAG}").text
    assert "paused" in panel_text and "user:admin" in panel_text and REASON in panel_text
    (control,) = quickstart.rows("SELECT paused, set_by, reason FROM controls WHERE scope = 'tag' AND target = %s", TAG)
    assert control == {"paused": True, "set_by": "user:admin", "reason": REASON}

    # new work arrives, a cycle runs: it decides 0 for every demo queue because of the pause
    demo_queues = [r["panda_queue"] for r in quickstart.rows(
        "SELECT panda_queue FROM schedconfig WHERE %s = ANY(tags) ORDER BY panda_queue", TAG)]
    pilots_before = quickstart.rows("SELECT count(*) AS n FROM pilots")[0]["n"]
    inject_jobs(quickstart, demo_queues)
    run_id = trigger_cycle(quickstart)
    deadline = time.monotonic() + 150
    while len(cycles := quickstart.rows("SELECT * FROM cycles WHERE cycle_id = %s", run_id)) < len(demo_queues):
        assert time.monotonic() < deadline, f"cycle {run_id} recorded {len(cycles)} of {len(demo_queues)} queues"
        time.sleep(2)
    paused_line = f"control tag:{TAG} (by user:admin: {REASON}) paused -> 0"
    for cycle in cycles:
        assert (cycle["decided"], cycle["submitted"]) == (0, 0), cycle
        assert cycle["inputs"]["activated"] >= 1, "the new job was seen, and still nothing was submitted"
        assert paused_line in cycle["reason"], cycle["reason"]
    assert quickstart.rows("SELECT count(*) AS n FROM pilots WHERE cycle_id = %s", run_id)[0]["n"] == 0
    assert quickstart.rows("SELECT count(*) AS n FROM pilots")[0]["n"] == pilots_before

    # the queue page shows that cycle's reason and the pause in force
    browser.get(f"{quickstart.airflow_url}/autopilot/queues/{queue}")
    page = browser.find_element(By.TAG_NAME, "body").text
    assert paused_line in page
    assert f"No pilot is submitted: tag {TAG} paused ({REASON})." in page
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "monitor-queue-paused.png"))

    # the overview kept as the test's artefact; then Resume lifts the pause
    browser.get(f"{quickstart.airflow_url}/autopilot/")
    browser.save_screenshot(str(ARTIFACTS / "monitor-overview-paused.png"))
    press(browser, "Resume")
    wait(browser, "the tag shown resumed", lambda d: control_state(d).get_attribute("data-paused") == "false")
    assert quickstart.rows("SELECT paused FROM controls WHERE scope = 'tag' AND target = %s", TAG) == [
        {"paused": False}]
