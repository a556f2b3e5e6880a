"""The FiftyOne App in headless Chromium: the dataset renders and the plugin's operator runs."""

from __future__ import annotations

import time

import pytest
from browser import chromium, page_text, require_browser, running_app, wait_until
from PIL import Image

from curation.app.operators import operator_names

pytestmark = pytest.mark.browser

OPERATOR_LABEL = "Roadwork: dataset status"


@pytest.fixture(autouse=True)
def _needs_browser():
    """Skip before the dataset is built when Chromium or chromedriver is missing."""
    require_browser()


def _make_dataset(dataset, tmp_path):
    import fiftyone as fo

    labels = ["roadwork", "no_roadwork", "roadwork", "no_roadwork"]
    samples = []
    for i, label in enumerate(labels):
        path = tmp_path / f"street_{i}.jpg"
        color = (230, 120, 30) if label == "roadwork" else (90, 110, 140)
        Image.new("RGB", (320, 240), color).save(path, quality=90)
        samples.append(fo.Sample(filepath=str(path), ground_truth=fo.Classification(label=label), split="train"))
    dataset.add_samples(samples)
    del samples
    # Real Stage-1 fields (tiny random-weight model): stage1 chips and stage1_views boxes.
    from curation.predict.job import predict_collection
    from curation.stage1.backbone import tiny_random_backbone
    from curation.stage1.model import Stage1Config, Stage1Model

    model = Stage1Model.build(Stage1Config(), backbone=tiny_random_backbone(seed=0))
    predict_collection(dataset, model, progress=False)
    return labels


def _click_button(driver, text: str) -> None:
    from selenium.webdriver.common.by import By

    buttons = wait_until(
        lambda: [b for b in driver.find_elements(By.TAG_NAME, "button") if b.text.strip() == text and b.is_displayed()],
        timeout=15,
        what=f"a {text!r} button",
    )
    buttons[0].click()


def test_app_renders_dataset_and_runs_plugin_operator(settings, dataset, tmp_path, artifacts_dir):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    assert "dataset_status" in operator_names()
    labels = _make_dataset(dataset, tmp_path)
    started = time.monotonic()
    with running_app(settings, tmp_path) as server, chromium(tmp_path) as driver:
        driver.get(server.dataset_url(dataset.name))

        # The grid: one label chip per sample, with the ground-truth label text.
        def grid_chips():
            chips = driver.find_elements(By.CSS_SELECTOR, '[data-cy="tag-ground_truth"]')
            return len(chips) == len(labels) and chips

        chips = wait_until(
            grid_chips,
            timeout=60,
            what="the sample grid's ground_truth chips",
        )
        assert sorted(c.text for c in chips) == sorted(labels)
        stage1_chips = wait_until(
            lambda: driver.find_elements(By.CSS_SELECTOR, '[data-cy="tag-stage1"]'), timeout=30, what="stage1 chips"
        )
        assert {c.text for c in stage1_chips} <= {"roadwork", "no_roadwork"}
        sidebar = page_text(driver)
        assert "stage1_views" in sidebar and "gate_features" in sidebar
        selector = driver.find_element(By.CSS_SELECTOR, '[data-cy="selector-dataset"]')
        assert selector.get_attribute("value") == dataset.name
        assert dataset.name in driver.page_source
        for button in driver.find_elements(By.TAG_NAME, "button"):  # the Enterprise promotion covers the grid
            if button.text.strip() == "Dismiss" and button.is_displayed():
                button.click()
        time.sleep(0.5)
        driver.save_screenshot(str(artifacts_dir / "app.png"))

        # The operator browser (backtick) lists the plugin's operator.
        ActionChains(driver).send_keys("`").perform()
        ActionChains(driver).send_keys("roadwork").perform()
        wait_until(
            lambda: OPERATOR_LABEL in page_text(driver), timeout=15, what=f"{OPERATOR_LABEL!r} in the operator browser"
        )
        listed = page_text(driver)
        for label in ("Roadwork: predict (Stage-1)", "Roadwork: evaluate", "Roadwork: mine hard cases", "Roadwork: retrain and export"):
            assert label in listed, label
        driver.save_screenshot(str(artifacts_dir / "app-operator-browser.png"))

        # Running it from the App goes App -> server -> plugin -> curation and shows the counts.
        ActionChains(driver).send_keys(Keys.ENTER).perform()
        _click_button(driver, "Execute")
        text = wait_until(lambda: "Label:" in (t := page_text(driver)) and t, timeout=30, what="the operator's output")
        assert f"{dataset.name}: 4 samples" in text
        assert "Label: no_roadwork 2, roadwork 2" in text
        driver.save_screenshot(str(artifacts_dir / "app-operator-output.png"))
    assert time.monotonic() - started < 90
