"""The monitor's plots, filters, pilot page, live refresh and dark mode in a real browser: each page loads with
the quick start's data, the plots have their series, filtering and sorting change the pilots table without a
reload, a pilot added meanwhile appears without a reload, and screenshots of each page are kept."""

from __future__ import annotations

import json
import uuid

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select

from autopilot_ops.airflow.webapp.history import SERIES

from .conftest import ARTIFACTS, Quickstart, needs_chromium
from .test_monitor_browser import TAG, log_in, queue_with_finished_pilots, table_after, wait

pytestmark = [pytest.mark.browser, pytest.mark.airflow, needs_chromium]


def screenshot(driver: WebDriver, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))


def band_heights(driver: WebDriver, figure_css: str) -> dict[str, float]:
    """``{series: drawn height in pixels}`` of the first stacked plot matching ``figure_css``."""
    return driver.execute_script(
        "const fig = document.querySelector(arguments[0]);"
        "return Object.fromEntries([...fig.querySelectorAll('polygon[data-series]')]"
        ".map((p) => [p.dataset.series, p.getBBox().height]));", figure_css)


def mark_page(driver: WebDriver) -> None:
    """A flag that a reload would drop: whatever changes while it stays was changed in place."""
    driver.execute_script("window.autopilotNoReload = true;")


def not_reloaded(driver: WebDriver) -> bool:
    return driver.execute_script("return window.autopilotNoReload === true;")


def pilot_table(driver: WebDriver) -> list[dict[str, str]]:
    return [{name: cell.text for name, cell in row.items()}
            for row in table_after(driver, "//h2[@id='pilots']")]


@pytest.mark.timeout(900)  # autopilot up and down included, if this module runs alone
def test_plots_filters_pilot_page_and_live_updates(quickstart: Quickstart, browser: WebDriver) -> None:
    log_in(browser, quickstart)
    queue = queue_with_finished_pilots(browser)["queue"]

    # the overview: every series drawn for all queues, finished pilots visibly among them; activated beside
    assert set(band_heights(browser, "figure.plot-pilots")) == set(SERIES)
    wait(browser, "the finished pilots drawn on the overview's plot",
         lambda d: band_heights(d, "figure.plot-pilots")["finished"] > 0)
    assert browser.find_elements(By.CSS_SELECTOR, "figure.plot-lines polyline[data-series='activated']")
    assert "the autopilot-monitor DAG sweeps every 2 min" in browser.find_element(By.ID, "states-lag").text
    wait(browser, "the data's age ticking", lambda d: d.find_element(By.ID, "data-age").text != "0 s ago")
    screenshot(browser, "monitor-overview")

    # the demo tag's page plots each of its sites
    browser.get(f"{quickstart.airflow_url}/autopilot/?tag={TAG}")
    sites = browser.find_elements(By.CSS_SELECTOR, "h2#sites ~ h3")
    assert sites and len(browser.find_elements(By.CSS_SELECTOR, "figure.plot-pilots")) == 1 + len(sites)

    # the queue page: its four series, and a cycle's mark leads to that cycle's reason
    browser.get(f"{quickstart.airflow_url}/autopilot/queues/{queue}")
    lines = {line.get_attribute("data-series") for line in browser.find_elements(
        By.CSS_SELECTOR, "figure.plot-lines polyline[data-series]")}
    assert lines == {"activated", "queued", "running", "decided"}
    marks = browser.find_elements(By.CSS_SELECTOR, "figure.plot-lines a rect.cycle-mark")
    assert marks
    marks[-1].click()
    target = wait(browser, "the cycle's row", lambda d: d.find_element(By.CSS_SELECTOR, "tr:target"))
    assert "submit " in target.text or "-> 0" in target.text

    # filtering and sorting the pilots without a reload
    mark_page(browser)
    Select(browser.find_element(By.ID, "pilot-state")).select_by_value("finished")
    wait(browser, "only finished pilots", lambda d: {p["state"].split()[0] for p in pilot_table(d)} == {"finished"})
    assert "state=finished" in browser.current_url and not_reloaded(browser)
    browser.find_element(By.XPATH, "//th/a[normalize-space() = 'exit']").click()
    wait(browser, "the table sorted by exit code",
         lambda d: d.find_element(By.XPATH, "//th[@aria-sort]").text == "exit")
    assert "sort=-exit" in browser.current_url and "state=finished" in browser.current_url
    assert {p["state"].split()[0] for p in pilot_table(browser)} == {"finished"} and not_reloaded(browser)
    screenshot(browser, "monitor-queue")

    # a pilot submitted meanwhile, with a job, shows up without a reload
    Select(browser.find_element(By.ID, "pilot-state")).select_by_value("")
    wait(browser, "every state again", lambda d: "state=" not in d.current_url)
    batch_id = f"live-{uuid.uuid4().hex[:8]}"
    (new,) = quickstart.rows("INSERT INTO pilots (queue, backend, batch_id, state) SELECT %s, backend, %s, 'running' "
                             "FROM pilots WHERE queue = %s LIMIT 1 RETURNING id", queue, batch_id, queue)
    quickstart.rows("INSERT INTO pilot_events (who, what, queue, pilot_id, details) VALUES ('browser-test', "
                    "'pilot.job', %s, %s, %s) RETURNING id", queue, new["id"], json.dumps({"job_id": 4242}))
    row = wait(browser, "the new pilot in the table", lambda d: next(
        (p for p in pilot_table(d) if p["batch id"] == batch_id), None), timeout=90)
    assert row["PanDA jobs"] == "4242" and not_reloaded(browser)

    # the pilot page: a finished pilot's story, from its submission to its end
    finished = quickstart.rows("SELECT id, exit_code FROM pilots WHERE queue = %s AND state = 'finished' "
                               "ORDER BY id LIMIT 1", queue)[0]
    browser.get(f"{quickstart.airflow_url}/autopilot/pilots/{finished['id']}")
    assert browser.find_element(By.TAG_NAME, "h1").text == f"Pilot {finished['id']}"
    story = browser.find_element(By.CSS_SELECTOR, "ol.story").text
    assert "submitted by cycle" in story and "→ finished" in story
    steps = [li.get_attribute("data-what") for li in browser.find_elements(By.CSS_SELECTOR, "ol.story li")]
    assert steps[0] == "row.submitted" and "row.ended" in steps and "pilot-state" in steps
    assert finished["exit_code"] is not None, "the back end reported the pilot's exit code"
    assert f"ended finished with exit code {finished['exit_code']}" in story
    assert browser.find_element(By.ID, "pilot-exit").text == str(finished["exit_code"])
    assert browser.find_elements(By.LINK_TEXT, "stderr"), "its log is one click away"
    screenshot(browser, "monitor-pilot")

    # Airflow's dark mode, as its UI stores it
    browser.execute_script("window.localStorage.setItem('theme', 'dark');")
    browser.get(f"{quickstart.airflow_url}/autopilot/")
    assert browser.execute_script("return document.documentElement.dataset.theme") == "dark"
    assert browser.execute_script("return getComputedStyle(document.body).backgroundColor") == "rgb(0, 0, 0)"
    screenshot(browser, "monitor-overview-dark")
    browser.execute_script("window.localStorage.setItem('theme', 'light');")
