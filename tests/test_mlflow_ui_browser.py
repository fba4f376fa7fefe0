"""The MLflow UI as a person uses it, in headless Chromium: two tiny runs (LSTM and GRU) in a
temporary store, `rnnpipe ui` serving it on a free loopback port, then: open the experiment, see
both runs, compare them, see their metric charts, open a PNG artifact, see the logged models.

Slow (pipelines + a server + a browser). Skips when Chromium is missing, except under
RNNPIPE_REQUIRE_BROWSER=1 (CI, `.ci/run`), where it fails. Screenshots go to a temporary folder
(its path is printed), or to $RNNPIPE_SCREENSHOTS when set.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from tests.conftest import CONFIGS, ROOT, isolated, tiny

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1400,900")
WAIT_S = 60  # generous: the React app loads slowly on a busy 2-core CI machine


def _need_browser() -> None:
    """Skip (or, with RNNPIPE_REQUIRE_BROWSER=1, fail) without Chromium, chromedriver and selenium."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not (Path(p).is_file() or shutil.which(Path(p).name))]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (pip install -e '.[test]')")
    if missing:
        why = f"browser test needs {', '.join(missing)}; apt-get install chromium chromium-driver"
        if os.environ.get("RNNPIPE_REQUIRE_BROWSER"):
            pytest.fail(why)
        pytest.skip(why)


# --------------------------------------------------------------------------------------------
# Fixtures: two runs, the UI, a browser


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two tiny names -> gender runs, LSTM and GRU, 2 epochs each (so val_loss has a curve)."""
    _need_browser()
    from components import config as cfgmod
    from pipeline import runner

    tmp = tmp_path_factory.mktemp("ui_store")
    runs = {}
    for cell in ("lstm", "gru"):
        raw = isolated(yaml.safe_load((CONFIGS / "names_gender_lstm.yaml").read_text()), tmp)
        for key, value in tiny(train__epochs=2, model__cell=cell).items():
            cfgmod.apply_override(raw, f"{key.replace('__', '.')}={value}")
        config = cfgmod.from_dict(raw)
        result = runner.run(config, to_stage="evaluate", log=lambda _: None)
        runs[cell] = result.run_id
    from mlflow import MlflowClient

    client = MlflowClient(config.tracking.uri)
    names = {cell: client.get_run(run_id).info.run_name for cell, run_id in runs.items()}
    exp_id = client.get_run(runs["lstm"]).info.experiment_id
    return {"uri": config.tracking.uri, "exp_id": exp_id, "ids": runs, "names": names}


@pytest.fixture(scope="module")
def ui(store: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """`rnnpipe ui` on the store, on a free loopback port; yields its base URL and printed lines."""
    from components.serving import local_server

    log_path = tmp_path_factory.mktemp("ui_log") / "ui.log"
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    argv = [sys.executable, "-m", "pipeline.cli", "ui", "--tracking-uri", store["uri"], "--port", "{port}",
            "--workers", "1"]
    with local_server(argv, "/health", env=env, cwd=ROOT, log_path=log_path) as base:
        yield {"base": base, "output": log_path.read_text()}


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = Path(os.environ.get("RNNPIPE_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    print(f"\nscreenshots: {folder}")
    return folder


@pytest.fixture(scope="module")
def browser(ui: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium_profile')}")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(WAIT_S)
    try:
        yield driver
    finally:
        driver.quit()


# --------------------------------------------------------------------------------------------
# Helpers


def _wait(driver: Any, condition: Any, what: str) -> Any:
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, WAIT_S).until(condition)
    except TimeoutException:
        body = driver.find_element("tag name", "body").text[:1500]
        pytest.fail(f"timed out waiting for {what} on {driver.current_url}; the page shows:\n{body}")


def _wait_text(driver: Any, *texts: str) -> None:
    def shown(d: Any) -> bool:
        body = d.find_element("tag name", "body").text
        return all(t in body for t in texts)

    _wait(driver, shown, " and ".join(repr(t) for t in texts))


def _css(driver: Any, selector: str, clickable: bool = False) -> Any:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC

    cond = EC.element_to_be_clickable if clickable else EC.presence_of_element_located
    return _wait(driver, cond((By.CSS_SELECTOR, selector)), selector)


def _close_assistant(driver: Any) -> None:
    """Close the MLflow Assistant side panel (it takes a third of the window)."""
    for button in driver.find_elements("css selector", 'button[aria-label="Close"]'):
        if button.is_displayed():
            button.click()


def _open_experiment(driver: Any, ui: dict[str, Any], store: dict[str, Any]) -> None:
    """Open the experiment with the link `rnnpipe ui` printed; wait for the runs table."""
    link = next(line.split(": ", 1)[1].strip() for line in ui["output"].splitlines()
                if f"/#/experiments/{store['exp_id']}/" in line)
    driver.get(link)
    _css(driver, '[aria-label="Select all runs"]')
    _wait_text(driver, *store["names"].values())
    _close_assistant(driver)


# --------------------------------------------------------------------------------------------
# What a person does


def test_ui_prints_a_link_to_the_experiment(ui: dict[str, Any], store: dict[str, Any]) -> None:
    out = ui["output"]
    assert f"MLflow UI on {ui['base']}" in out and store["uri"] in out
    assert f"names_gender_lstm: {ui['base']}/#/experiments/{store['exp_id']}/runs?workflowType=machine_learning" \
        in out


def test_experiment_page_lists_both_runs(browser: Any, ui: dict[str, Any], store: dict[str, Any],
                                         shots: Path) -> None:
    _open_experiment(browser, ui, store)
    _wait_text(browser, "2 matching runs")
    browser.save_screenshot(str(shots / "1_runs.png"))


def test_compare_view_shows_the_two_runs_side_by_side(browser: Any, ui: dict[str, Any], store: dict[str, Any],
                                                      shots: Path) -> None:
    _open_experiment(browser, ui, store)
    _css(browser, '[aria-label="Select all runs"]').click()  # a styled checkbox: present, never "clickable"
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC

    _wait(browser, EC.element_to_be_clickable((By.XPATH, '//button[normalize-space()="Compare"]')),
          "the Compare button").click()
    _wait_text(browser, "Comparing 2 Runs", *store["names"].values())
    assert all(run_id in browser.current_url for run_id in store["ids"].values())
    # the parallel-coordinates plot (params vs a metric): swap its default metric for val_loss
    from selenium.webdriver.common.keys import Keys

    _css(browser, ".pcp-plot")
    metrics = browser.find_element(By.XPATH, '//div[normalize-space(text())="Metrics:"]/following-sibling::div[1]')
    metrics.find_element(By.CSS_SELECTOR, '[class*="select-selection-item-remove"]').click()
    metrics.find_element(By.CSS_SELECTOR, '[class*="select-selector"]').click()
    metrics.find_element(By.TAG_NAME, "input").send_keys("val_loss", Keys.ENTER, Keys.ESCAPE)
    _wait(browser, lambda _: metrics.text.strip() == "val_loss", "val_loss chosen as the plot's metric")
    plot = browser.find_element(By.CSS_SELECTOR, ".pcp-plot")
    _wait(browser, lambda _: "val_loss" in plot.text and "model.cell" in plot.text, "the plot's val_loss axis")
    browser.execute_script("window.scrollTo(0, 0)")
    browser.save_screenshot(str(shots / "2_compare.png"))
    # "Show diff only" on the parameters: the cell is the one parameter that differs
    _css(browser, 'button[aria-label="Parameters - Show diff only"]', clickable=True).click()
    table = browser.find_element(By.XPATH, '//button[@aria-label="Parameters - Show diff only"]'
                                           '/ancestor::div[contains(@class, "collapse-content-box")][1]//table')
    _wait(browser, lambda _: len(table.find_elements(By.TAG_NAME, "tr")) == 1, "one differing parameter")
    assert table.text.split() in (["model.cell", "gru", "lstm"], ["model.cell", "lstm", "gru"]), table.text
    _wait_text(browser, "Metrics", "Tags")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", table)
    browser.save_screenshot(str(shots / "2_compare_params.png"))


def test_chart_view_plots_each_metric_for_both_runs(browser: Any, ui: dict[str, Any], store: dict[str, Any],
                                                    shots: Path) -> None:
    _open_experiment(browser, ui, store)
    browser.execute_script("arguments[0].click()", _css(browser, 'input[name="runs-view-mode"][value="CHART"]'))
    search = _css(browser, 'input[placeholder="Search metric charts"]', clickable=True)
    search.send_keys("val_loss")

    def val_loss_card(d: Any) -> str | bool:
        """The val_loss chart's text once only val_loss charts are left (cards re-render meanwhile)."""
        from selenium.common.exceptions import StaleElementReferenceException

        try:
            cards = d.find_elements("css selector", '[data-testid="experiment-view-compare-runs-card"]')
            texts = [c.text for c in cards]
            titles = [t.splitlines()[0] for t in texts if t]
            if "val_loss" not in titles or not all("val_loss" in t for t in titles):
                return False
            index = [t.split("\n")[0] for t in texts].index("val_loss")
            drawn = cards[index].find_elements("css selector", ".js-plotly-plot, svg")
            legend = all(name[:20] in texts[index] for name in store["names"].values())  # drawn after the plot
            return texts[index] if drawn and legend else False
        except StaleElementReferenceException:
            return False

    text = _wait(browser, val_loss_card, "only the val_loss charts, each drawn with both runs in its legend")
    assert all(name[:20] in text for name in store["names"].values())  # both runs in the chart's legend
    browser.save_screenshot(str(shots / "3_charts.png"))


def test_a_plot_artifact_opens_as_an_image(browser: Any, ui: dict[str, Any], store: dict[str, Any],
                                           shots: Path) -> None:
    from selenium.webdriver.common.by import By

    _open_experiment(browser, ui, store)
    _css(browser, f'a[href*="{store["ids"]["gru"]}"]', clickable=True).click()
    _wait_text(browser, store["names"]["gru"], "Artifacts")
    _close_assistant(browser)
    next(b for b in browser.find_elements(By.CSS_SELECTOR, "button") if b.text == "Artifacts").click()
    _css(browser, '[data-testid="artifact-tree-node"][artifact-name="plots"]', clickable=True).click()
    _css(browser, '[data-testid="artifact-tree-node"][artifact-name="learning_curves.png"]', clickable=True).click()
    _wait_text(browser, "plots/learning_curves.png")

    def rendered(d: Any) -> bool:
        return any(d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img) > 300
                   and "base64" not in (img.get_attribute("src") or "") for img in d.find_elements(By.TAG_NAME, "img"))

    _wait(browser, rendered, "the PNG to render")
    browser.save_screenshot(str(shots / "4_artifact.png"))


def test_models_tab_lists_each_logged_model_with_its_run(browser: Any, ui: dict[str, Any], store: dict[str, Any],
                                                         shots: Path) -> None:
    browser.get(f"{ui['base']}/#/experiments/{store['exp_id']}/models?workflowType=machine_learning")
    _wait_text(browser, "keras_model", *store["names"].values())
    _close_assistant(browser)
    assert browser.find_element("tag name", "body").text.count("keras_model") >= 2
    browser.save_screenshot(str(shots / "5_models.png"))
    # a model's page lists the run's metrics, linked to that run
    browser.find_element("link text", "keras_model").click()
    search = _css(browser, 'input[placeholder="Search metrics"]', clickable=True)
    search.send_keys("test_")
    _wait_text(browser, "test_accuracy", "test_macro_f1", "Source run")
    assert any(name in browser.find_element("tag name", "body").text for name in store["names"].values())
    browser.save_screenshot(str(shots / "6_model_metrics.png"))
